"""GitHub Actions REST client: dispatch a workflow, list its runs, follow one run to completion.

Built on `HttpClient`: GETs are retried by urllib3 (429/5xx, Retry-After honoured). What urllib3 does
not retry is decided here, with tenacity:

- GitHub's secondary rate limit (403 with "rate limit" in the body) and a 429 to the dispatch POST:
  the request was refused, so it is sent again after Retry-After (capped at `rate_limit_wait` or the
  policy's `max_backoff`, whichever is longer; `rate_limit_wait` without the header);
- the workflow dispatch (a POST that starts a run) after a timeout, a 5xx or a dropped connection:
  GitHub may have started the run, so it is never sent again blind. The runs of the workflow are
  listed first (`find_new_run`: a run that was not there before the dispatch) and that run is
  adopted; only when none shows up within `adopt_wait` is the dispatch sent again.

`sleep` and `clock` are injectable so that tests run without waiting.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Collection, Iterable
from typing import Any
from urllib.parse import quote

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_none

from incident_ops.clients.http import HttpClient, HttpError, RetryPolicy

__all__ = ["DEFAULT_BASE_URL", "GitHubClient", "iso_time"]

DEFAULT_BASE_URL = "https://api.github.com"
API_VERSION = "2022-11-28"

log = logging.getLogger(__name__)


def _may_have_acted(exc: BaseException) -> bool:
    return isinstance(exc, HttpError) and exc.may_have_acted


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
        self.policy = policy or RetryPolicy()
        self.http = HttpClient(base_url, headers=headers, policy=self.policy, verify=verify, session=session)
        self.sleep = sleep
        self.clock = clock
        self.rate_limit_retries = rate_limit_retries
        self.rate_limit_wait = rate_limit_wait

    # -- plumbing -------------------------------------------------------------------------------

    def _refused(self, exc: BaseException) -> bool:
        """The request was turned away unprocessed: the secondary rate limit, or a 429 urllib3 left alone."""
        if not isinstance(exc, HttpError):
            return False
        if exc.status == 403 and "rate limit" in exc.body.lower():
            return True
        return exc.status == 429 and exc.method not in self.policy.methods

    def _refusal_wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        after = exc.retry_after if isinstance(exc, HttpError) else None
        if after is None:
            return self.rate_limit_wait
        return min(after, max(self.rate_limit_wait, self.policy.max_backoff))

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        retrying = Retrying(
            retry=retry_if_exception(self._refused),
            wait=self._refusal_wait,
            stop=stop_after_attempt(self.rate_limit_retries + 1),
            sleep=self.sleep,
            reraise=True,
        )
        return retrying(self.http.request, method, path, **kwargs)

    @staticmethod
    def _repo(repository: str) -> str:
        owner, _, name = repository.partition("/")
        if not owner or not name:
            raise ValueError(f"repository must be 'owner/name', got {repository!r}")
        return f"/repos/{quote(owner)}/{quote(name)}"

    # -- endpoints ------------------------------------------------------------------------------

    def dispatch_workflow(self, repository: str, workflow: str, ref: str, inputs: dict[str, Any],
                          *, return_run_details: bool = True, known_run_ids: Iterable[int] | None = None,
                          created_since: str | dt.datetime | None = None, adopt_wait: float = 30.0,
                          adopt_poll: float = 5.0) -> dict[str, Any] | None:
        """POST .../actions/workflows/{workflow}/dispatches — never twice for one run.

        Returns {"workflow_run_id", "run_url", "html_url"} when GitHub answers 200 with run details,
        None when it answers 204 (no details: find the run with `find_new_run`), and
        {"workflow_run_id", "adopted": True} when the answer was lost (timeout, 5xx, dropped
        connection) and the run it started was found instead of dispatching again.
        `known_run_ids` are the runs there before the dispatch (listed here when not given);
        `policy.attempts` bounds the dispatches.
        """
        body: dict[str, Any] = {"ref": ref, "inputs": dict(inputs)}
        if return_run_details:
            body["return_run_details"] = True
        path = f"{self._repo(repository)}/actions/workflows/{quote(workflow)}/dispatches"
        if known_run_ids is None:
            known_run_ids = [int(r["id"]) for r in self.list_workflow_runs(repository, workflow,
                                                                            created_since=created_since)]
        known = {int(run_id) for run_id in known_run_ids}

        def adopt() -> dict[str, Any] | None:
            run_id = self.find_new_run(repository, workflow, known, created_since, wait=adopt_wait, poll=adopt_poll)
            if run_id is None:
                return None
            log.warning("the dispatch of %s on %s lost its answer but started run %s: adopting it, not dispatching "
                        "again", workflow, repository, run_id)
            return {"workflow_run_id": run_id, "adopted": True}

        retrying = Retrying(
            retry=retry_if_exception(_may_have_acted),
            wait=wait_none(),  # looking for the run (adopt_wait) is the pause between dispatches
            stop=stop_after_attempt(self.policy.attempts),
            sleep=self.sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    if attempt.retry_state.attempt_number > 1 and (adopted := adopt()) is not None:
                        return adopted
                    response = self._request("POST", path, json=body)
                    if response.status_code == 204 or not response.content:
                        return None
                    return response.json()
        except HttpError as exc:
            if not exc.may_have_acted:
                raise
            if (adopted := adopt()) is not None:  # the last dispatch may have started it too
                return adopted
            dispatches = int(retrying.statistics.get("attempt_number", 1))
            raise HttpError(exc.method, exc.url, exc.status, f"{exc.body} (no run of it found)", dispatches,
                            exc.headers, exc.cause) from exc
        raise AssertionError("unreachable")

    def find_new_run(self, repository: str, workflow: str, known: Collection[int],
                     created_since: str | dt.datetime | None = None, *, wait: float, poll: float) -> int | None:
        """The newest workflow_dispatch run not in `known`, looked for during `wait` seconds (None if none)."""
        deadline = self.clock() + wait
        while True:
            for run in self.list_workflow_runs(repository, workflow, created_since=created_since):
                if int(run["id"]) not in known:
                    return int(run["id"])
            if self.clock() >= deadline:
                return None
            self.sleep(max(min(poll, deadline - self.clock()), 0.0))

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
