"""A small JSON-over-HTTP client; its retries are urllib3's `Retry` on a requests Session's HTTPAdapter.

`RetryPolicy.retry()` is the `Retry` every `HttpClient` mounts:

- idempotent methods only (`allowed_methods`: GET, HEAD, PUT, DELETE, OPTIONS — never POST) are
  retried after 429, 500, 502, 503, 504 (`status_forcelist`), a read timeout or a dropped connection;
- a connection that could not be opened is retried for any method (the server never saw the request);
- a POST that was sent is never retried here: its timeout, 5xx or dropped connection may come after
  the server acted. A caller whose POST has an effect looks the effect up before sending again
  (`GitHubClient.dispatch_workflow`); `HttpError.may_have_acted` tells that case apart;
- backoff as urllib3 computes it (none before the first retry, then `backoff` × 2, × 4, …, at most
  `max_backoff`); a `Retry-After` header (seconds or an HTTP date) is honoured, capped by `max_backoff`.

Other 4xx answers are not retried: they raise `HttpError` at once with the status and the body.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, InvalidHeader, MaxRetryError
from urllib3.util.retry import Retry

__all__ = ["IDEMPOTENT_METHODS", "RETRY_STATUSES", "HttpClient", "HttpError", "RetryPolicy", "retry_after_seconds"]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def _never_sent(exc: BaseException | None) -> bool:
    """True when the request never reached the server (the connection could not be opened)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if isinstance(exc, requests.RequestException) and exc.args else exc
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, ConnectTimeoutError)  # urllib3's NewConnectionError is one too


class HttpError(RuntimeError):
    def __init__(self, method: str, url: str, status: int | None, body: str, attempts: int,
                 headers: Mapping[str, str] | None = None, cause: BaseException | None = None) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.body = body
        self.attempts = attempts
        self.headers = dict(headers or {})
        self.cause = cause
        what = f"HTTP {status}" if status is not None else "no answer"
        super().__init__(f"{method} {url}: {what} after {attempts} attempt(s): {body[:300]}")

    @property
    def may_have_acted(self) -> bool:
        """A 5xx, a timeout or a dropped connection: the server may have done what was asked."""
        if self.status is None:
            return not _never_sent(self.cause)
        return self.status >= 500

    @property
    def retry_after(self) -> float | None:
        return retry_after_seconds(self.headers.get("Retry-After"))


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts (first try included), backoff and timeout; `retry()` is the urllib3 `Retry`."""

    attempts: int = 5
    backoff: float = 0.5
    max_backoff: float = 30.0
    timeout: float = 10.0
    methods: frozenset[str] = IDEMPOTENT_METHODS

    def retry(self) -> Retry:
        retries = max(self.attempts - 1, 0)
        return Retry(
            total=retries,
            # A read error with no retry left re-raises the timeout itself (requests.ReadTimeout).
            read=retries if retries else False,
            other=0,  # e.g. a certificate refused: trying again changes nothing
            allowed_methods=self.methods,
            status_forcelist=RETRY_STATUSES,
            backoff_factor=self.backoff,
            backoff_max=self.max_backoff,
            respect_retry_after_header=True,
            retry_after_max=int(self.max_backoff),
            raise_on_status=False,  # the last answer is returned, and becomes an HttpError with its body
        )


def retry_after_seconds(value: str | None, cap: float = Retry.DEFAULT_RETRY_AFTER_MAX) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), parsed by urllib3."""
    if not value:
        return None
    try:
        return float(Retry(retry_after_max=int(cap)).parse_retry_after(value))
    except InvalidHeader:
        return None


def _attempts(response: requests.Response) -> int:
    retries = getattr(response.raw, "retries", None)
    return len(retries.history) + 1 if isinstance(retries, Retry) else 1


class HttpClient:
    """JSON HTTP client bound to a base URL, with default headers and the retry policy."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str] | None = None,
        policy: RetryPolicy | None = None,
        verify: bool | str = True,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers or {})
        self.policy = policy or RetryPolicy()
        self.verify = verify
        self.session = session or requests.Session()
        adapter = HTTPAdapter(max_retries=self.policy.retry())
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._once: HttpClient | None = None

    def once(self) -> HttpClient:
        """The same client without retries (its own Session): one request, one answer."""
        if self._once is None:
            self._once = HttpClient(self.base_url, self.headers, dataclasses.replace(self.policy, attempts=1),
                                    self.verify)
        return self._once

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def request(self, method: str, path: str, *, expect: tuple[int, ...] | None = None, **kwargs: Any) -> requests.Response:
        """Send (retried per the policy); return the response (2xx/3xx, or a status in `expect`) or raise HttpError."""
        url = self.url(path)
        headers = {**self.headers, **kwargs.pop("headers", {})}
        kwargs.setdefault("timeout", self.policy.timeout)
        kwargs.setdefault("verify", self.verify)
        try:
            response = self.session.request(method, url, headers=headers, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            exhausted = bool(exc.args) and isinstance(exc.args[0], MaxRetryError)
            raise HttpError(method, url, None, f"{type(exc).__name__}: {exc}",
                            self.policy.attempts if exhausted else 1, cause=exc) from exc
        if (expect is not None and response.status_code in expect) or response.status_code < 400:
            return response
        raise HttpError(method, url, response.status_code, response.text, _attempts(response), response.headers)

    def get_json(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def post_json(self, path: str, body: Any, **kwargs: Any) -> Any:
        response = self.request("POST", path, json=body, **kwargs)
        return response.json() if response.content else None
