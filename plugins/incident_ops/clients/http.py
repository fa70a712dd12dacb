"""A small JSON-over-HTTP client with the retry policy every integration shares.

429 and 5xx answers, connection errors and timeouts are retried with exponential backoff; a
`Retry-After` header (seconds or an HTTP date) is honoured, capped by `max_backoff`. Other 4xx
answers are not retried: they raise `HttpError` at once with the status and the body.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

__all__ = ["HttpClient", "HttpError", "RetryPolicy", "retry_after_seconds"]

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class HttpError(RuntimeError):
    def __init__(self, method: str, url: str, status: int | None, body: str, attempts: int) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.body = body
        self.attempts = attempts
        what = f"HTTP {status}" if status is not None else "no answer"
        super().__init__(f"{method} {url}: {what} after {attempts} attempt(s): {body[:300]}")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    backoff: float = 0.5
    max_backoff: float = 30.0
    timeout: float = 10.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_backoff)
        return min(self.backoff * (2 ** (attempt - 1)), self.max_backoff)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(when.timestamp() - current, 0.0)


class HttpClient:
    """JSON HTTP client bound to a base URL, with default headers and the retry policy."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str] | None = None,
        policy: RetryPolicy | None = None,
        verify: bool | str = True,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers or {})
        self.policy = policy or RetryPolicy()
        self.verify = verify
        self.session = session or requests.Session()
        self._sleep = sleep

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def request(self, method: str, path: str, *, expect: tuple[int, ...] | None = None, **kwargs: Any) -> requests.Response:
        """Send with retries; return the response (2xx/3xx, or a status in `expect`) or raise HttpError."""
        url = self.url(path)
        headers = {**self.headers, **kwargs.pop("headers", {})}
        kwargs.setdefault("timeout", self.policy.timeout)
        kwargs.setdefault("verify", self.verify)
        last_status: int | None = None
        last_body = ""
        for attempt in range(1, self.policy.attempts + 1):
            retry_after: float | None = None
            try:
                response = self.session.request(method, url, headers=headers, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                last_status, last_body = None, f"{type(exc).__name__}: {exc}"
            else:
                if expect is not None and response.status_code in expect:
                    return response
                if response.status_code < 400:
                    return response
                last_status, last_body = response.status_code, response.text
                if response.status_code not in RETRY_STATUSES:
                    raise HttpError(method, url, last_status, last_body, attempt)
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            if attempt < self.policy.attempts:
                delay = self.policy.delay(attempt, retry_after)
                log.warning("%s %s: %s; retry %d/%d in %.1fs", method, url, last_status or last_body, attempt,
                            self.policy.attempts - 1, delay)
                self._sleep(delay)
        raise HttpError(method, url, last_status, last_body, self.policy.attempts)

    def get_json(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def post_json(self, path: str, body: Any, **kwargs: Any) -> Any:
        response = self.request("POST", path, json=body, **kwargs)
        return response.json() if response.content else None
