"""GitHub Actions REST client: dispatch a workflow, list its runs, follow one run to completion.

Built on `HttpClient` (retries with backoff on 429/5xx, Retry-After honoured). GitHub's secondary
rate limit may also answer 403 with "rate limit" in the body; that is retried here. `sleep` and
`clock` are injectable so that tests run without waiting.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import requests

from incident_ops.clients.http import HttpClient, HttpError, RetryPolicy

__all__ = ["DEFAULT_BASE_URL", "GitHubClient", "iso_time"]

DEFAULT_BASE_URL = "https://api.github.com"
API_VERSION = "2022-11-28"


def iso_time(value: str | dt.datetime) -> str:
    """GitHub's search-qualifier form of a time: `YYYY-MM-DDTHH:MM:SSZ` (UTC)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"time {value!r} needs a UTC offset")
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class GitHubClient:
    """The few GitHub Actions endpoints the rollback needs."""

    def __init__(
        self,
        token: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        *,
        policy: RetryPolicy | None = None,
        session: requests.Session | None = None,
        verify: bool | str = True,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rate_limit_retries: int = 3,
        rate_limit_wait: float = 60.0,
    ) -> None:
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": "incident-ops",
        }
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = HttpClient(base_url, headers=headers, policy=policy, verify=verify, session=session, sleep=sleep)
        self.sleep = sleep
        self.clock = clock
        self.rate_limit_retries = rate_limit_retries
        self.rate_limit_wait = rate_limit_wait

    # -- plumbing -------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        for attempt in range(self.rate_limit_retries + 1):
            try:
                return self.http.request(method, path, **kwargs)
            except HttpError as exc:
                limited = exc.status == 403 and "rate limit" in exc.body.lower()
                if not limited or attempt == self.rate_limit_retries:
                    raise
                self.sleep(self.rate_limit_wait)
        raise AssertionError("unreachable")

    @staticmethod
    def _repo(repository: str) -> str:
        owner, _, name = repository.partition("/")
        if not owner or not name:
            raise ValueError(f"repository must be 'owner/name', got {repository!r}")
        return f"/repos/{quote(owner)}/{quote(name)}"

    # -- endpoints ------------------------------------------------------------------------------

    def dispatch_workflow(self, repository: str, workflow: str, ref: str, inputs: dict[str, Any],
                          *, return_run_details: bool = True) -> dict[str, Any] | None:
        """POST .../actions/workflows/{workflow}/dispatches.

        Returns {"workflow_run_id", "run_url", "html_url"} when GitHub answers 200 with run details,
        None when it answers 204 (no details: find the run with `list_workflow_runs`).
        """
        body: dict[str, Any] = {"ref": ref, "inputs": dict(inputs)}
        if return_run_details:
            body["return_run_details"] = True
        path = f"{self._repo(repository)}/actions/workflows/{quote(workflow)}/dispatches"
        response = self._request("POST", path, json=body)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def list_workflow_runs(self, repository: str, workflow: str, *, event: str | None = "workflow_dispatch",
                           created_since: str | dt.datetime | None = None, per_page: int = 30) -> list[dict[str, Any]]:
        """GET .../actions/workflows/{workflow}/runs (newest first)."""
        query: dict[str, Any] = {"per_page": per_page}
        if event:
            query["event"] = event
        if created_since is not None:
            query["created"] = f">={iso_time(created_since)}"
        path = f"{self._repo(repository)}/actions/workflows/{quote(workflow)}/runs"
        return list(self._request("GET", path, params=query).json().get("workflow_runs", []))

    def get_run(self, repository: str, run_id: int | str) -> dict[str, Any]:
        """GET .../actions/runs/{run_id}."""
        return self._request("GET", f"{self._repo(repository)}/actions/runs/{int(run_id)}").json()

    def wait_for_run(self, repository: str, run_id: int | str, *, timeout: float, poll: float) -> dict[str, Any]:
        """Poll the run until `status == completed` or `timeout` seconds passed; return the last state."""
        deadline = self.clock() + timeout
        while True:
            run = self.get_run(repository, run_id)
            if run.get("status") == "completed" or self.clock() >= deadline:
                return run
            self.sleep(max(min(poll, deadline - self.clock()), 0.0))
