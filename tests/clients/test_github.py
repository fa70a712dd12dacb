"""GitHubClient.dispatch_workflow against a local fake GitHub that acts, then answers too late or with 5xx.

The fake is a threaded pytest-httpserver: the dispatch handler records the dispatch and starts a run,
then holds its answer past the client's timeout while the run listing answers at once.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from incident_ops.clients.github import GitHubClient
from incident_ops.clients.http import HttpError, RetryPolicy

REPOSITORY = "peoplebooster/peoplebooster"
REPO = f"/repos/{REPOSITORY}"
DISPATCH = f"{REPO}/actions/workflows/rollback.yml/dispatches"
RUNS = f"{REPO}/actions/workflows/rollback.yml/runs"
INPUTS = {"environment": "production", "service": "backend", "version": "latest-1"}


class FakeGitHub:
    """Workflow dispatch + run listing. `delay` holds the dispatch answer; `fail_with` answers it with a status
    after the run was started; `refuse` answers the next dispatches 5xx without starting anything."""

    def __init__(self, server: HTTPServer) -> None:
        self.dispatches: list[dict[str, Any]] = []
        self.runs: list[dict[str, Any]] = [self._run(100, "completed")]
        self.delay = 0.0
        self.fail_with: int | None = None
        self.refuse = 0
        self.answered = threading.Event()
        self._ids = itertools.count(4242)
        self._lock = threading.Lock()
        server.expect_request(DISPATCH, method="POST").respond_with_handler(self._dispatch)
        server.expect_request(RUNS, method="GET").respond_with_handler(self._list)

    @staticmethod
    def _run(run_id: int, status: str) -> dict[str, Any]:
        return {"id": run_id, "name": "Rollback", "display_title": "Rollback", "status": status, "conclusion": None,
                "event": "workflow_dispatch", "created_at": "2026-01-05T01:05:00Z"}

    def _dispatch(self, request: Request) -> Response:
        if self.refuse:
            self.refuse -= 1
            return Response("upstream connect error", status=503)
        with self._lock:
            self.dispatches.append(request.get_json())
            self.runs.insert(0, self._run(next(self._ids), "queued"))
        time.sleep(self.delay)
        self.answered.set()
        if self.fail_with is not None:
            return Response("bad gateway", status=self.fail_with)
        return Response(status=204)

    def _list(self, request: Request) -> Response:
        with self._lock:
            body = {"total_count": len(self.runs), "workflow_runs": list(self.runs)}
        return Response(json.dumps(body), content_type="application/json")


@pytest.fixture
def threaded_server() -> Iterator[HTTPServer]:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    try:
        yield server
    finally:
        server.clear()
        server.stop()


@pytest.fixture
def fake_github(threaded_server: HTTPServer) -> FakeGitHub:
    return FakeGitHub(threaded_server)


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        if seconds:
            self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def github(server: HTTPServer, fake_time: FakeTime, timeout: float = 5.0) -> GitHubClient:
    return GitHubClient("ghs_test", base_url=server.url_for("").rstrip("/"),
                        policy=RetryPolicy(attempts=3, backoff=0.0, timeout=timeout),
                        sleep=fake_time.sleep, clock=fake_time.clock)


@pytest.mark.server
def test_dispatch_that_times_out_after_github_acted_is_adopted_not_sent_again(
        threaded_server: HTTPServer, fake_github: FakeGitHub, fake_time: FakeTime) -> None:
    fake_github.delay = 1.5  # the run is started, the answer comes after the client gave up
    gh = github(threaded_server, fake_time, timeout=0.3)

    answer = gh.dispatch_workflow(REPOSITORY, "rollback.yml", "main", INPUTS, known_run_ids=[100])

    assert answer == {"workflow_run_id": 4242, "adopted": True}
    assert fake_github.dispatches == [{"ref": "main", "inputs": INPUTS, "return_run_details": True}]
    assert fake_github.answered.wait(5)  # the server did answer, too late
    assert len(fake_github.dispatches) == 1


@pytest.mark.server
def test_dispatch_answered_502_after_github_acted_is_adopted(
        threaded_server: HTTPServer, fake_github: FakeGitHub, fake_time: FakeTime) -> None:
    fake_github.fail_with = 502
    gh = github(threaded_server, fake_time)

    answer = gh.dispatch_workflow(REPOSITORY, "rollback.yml", "main", INPUTS)  # known runs listed first

    assert answer == {"workflow_run_id": 4242, "adopted": True} and len(fake_github.dispatches) == 1


@pytest.mark.server
def test_dispatch_refused_with_503_is_sent_again_once_no_run_shows_up(
        threaded_server: HTTPServer, fake_github: FakeGitHub, fake_time: FakeTime) -> None:
    fake_github.refuse = 1  # 503 before anything was started
    gh = github(threaded_server, fake_time)

    answer = gh.dispatch_workflow(REPOSITORY, "rollback.yml", "main", INPUTS, known_run_ids=[100],
                                  adopt_wait=10, adopt_poll=5)

    assert answer is None  # the second dispatch's 204
    assert len(fake_github.dispatches) == 1 and fake_github.runs[0]["id"] == 4242
    assert fake_time.sleeps == [5.0, 5.0]  # looked for a run for adopt_wait before dispatching again


@pytest.mark.server
def test_dispatch_that_never_acts_gives_up_after_the_attempts(
        threaded_server: HTTPServer, fake_github: FakeGitHub, fake_time: FakeTime) -> None:
    fake_github.refuse = 10
    gh = github(threaded_server, fake_time)

    with pytest.raises(HttpError, match=r"HTTP 503 after 3 attempt\(s\).*no run of it found"):
        gh.dispatch_workflow(REPOSITORY, "rollback.yml", "main", INPUTS, known_run_ids=[100], adopt_wait=0)
    assert fake_github.refuse == 7 and fake_github.dispatches == []
