"""The GitHub rollback's deferred wait: the run followed in the triggerer, against a local GitHub API
stand-in (pytest-httpserver): success, failure, timeout, API error."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from incident_ops.clients.github import GitHubClient
from incident_ops.clients.http import RetryPolicy
from incident_ops.triggers import github as github_trigger
from incident_ops.triggers import health
from incident_ops.triggers.github import GitHubRunTrigger

REPO = "peoplebooster/peoplebooster"
RUN = f"/repos/{REPO}/actions/runs/4242"


@pytest.fixture(autouse=True)
def client(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "MIN_FIRST_WAIT", 0.0)
    gh = GitHubClient("ghs_test_token", base_url=httpserver.url_for(""),
                      policy=RetryPolicy(attempts=1, backoff=0.0, timeout=5))
    monkeypatch.setattr(github_trigger, "github_client", lambda environment: gh)


def run(status: str, conclusion: str | None = None) -> dict[str, Any]:
    return {"id": 4242, "status": status, "conclusion": conclusion, "display_title": "Rollback",
            "html_url": f"https://github.com/{REPO}/actions/runs/4242", "created_at": "2026-01-05T01:05:00Z"}


def serve(httpserver: HTTPServer, *answers: dict[str, Any]) -> list[str]:
    """Answer the run's GETs in turn (the last one for ever); returns the statuses served."""
    served: list[str] = []

    def handler(request: Request) -> Response:
        answer = answers[min(len(served), len(answers) - 1)]
        served.append(answer["status"])
        return Response(json.dumps(answer), status=200, content_type="application/json")

    httpserver.expect_request(RUN, method="GET").respond_with_handler(handler)
    return served


def first_event(trigger: GitHubRunTrigger) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    return asyncio.run(go())


def trigger(seconds: float = 30.0, poll: float = 0.02) -> GitHubRunTrigger:
    return GitHubRunTrigger("production", REPO, 4242, deadline=time.time() + seconds, poll=poll)


def test_fires_when_the_run_completes_successfully(httpserver: HTTPServer) -> None:
    served = serve(httpserver, run("queued"), run("in_progress"), run("completed", "success"))
    event = first_event(trigger())
    assert event == {"run": run("completed", "success"), "timed_out": False}
    assert served == ["queued", "in_progress", "completed"]
    assert all(req.headers["Authorization"] == "Bearer ghs_test_token" for req, _ in httpserver.log)


def test_fires_with_a_failed_run(httpserver: HTTPServer) -> None:
    serve(httpserver, run("in_progress"), run("completed", "failure"))
    event = first_event(trigger())
    assert event["run"]["conclusion"] == "failure" and event["timed_out"] is False


def test_times_out_with_the_run_still_in_progress(httpserver: HTTPServer) -> None:
    served = serve(httpserver, run("in_progress"))
    started = time.monotonic()
    event = first_event(trigger(seconds=0.3, poll=0.05))
    assert event["timed_out"] is True and event["run"]["status"] == "in_progress"
    assert 0.2 < time.monotonic() - started < 5
    assert len(served) >= 3  # it polled meanwhile


def test_an_api_error_ends_the_wait_with_the_error(httpserver: HTTPServer) -> None:
    httpserver.expect_request(RUN, method="GET").respond_with_json({"message": "Not Found"}, status=404)
    event = first_event(trigger())
    assert "404" in event["error"]


def test_without_a_github_token_it_says_which_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(github_trigger, "github_client", lambda environment: None)
    assert "github_default" in first_event(trigger())["error"]


def test_serializes_to_its_plugin_import_path() -> None:
    path, kwargs = GitHubRunTrigger("production", REPO, 4242, deadline=1e9, poll=15).serialize()
    assert path == "incident_ops.triggers.github.GitHubRunTrigger"
    assert kwargs == {"environment": "production", "repository": REPO, "run_id": 4242, "deadline": 1e9, "poll": 15.0}
    assert GitHubRunTrigger(**kwargs).serialize() == (path, kwargs)
