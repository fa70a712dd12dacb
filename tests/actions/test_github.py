"""GitHub Actions rollback against a local GitHub API stand-in (pytest-httpserver).

Each test asserts what the server received (method, path, query, headers, JSON body).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from incident_ops.actions.base import DONE_EARLIER, ActionError, GuardRailError
from incident_ops.actions.github import GITHUB_ROLLBACK_TAG, github_rollback
from incident_ops.actions.registry import Clients
from incident_ops.clients.github import GitHubClient, iso_time
from incident_ops.clients.http import HttpError, RetryPolicy

from .conftest import INCIDENT
from .inventory import Inventory

REPO = "/repos/peoplebooster/peoplebooster"
DISPATCH = f"{REPO}/actions/workflows/rollback.yml/dispatches"
RUNS = f"{REPO}/actions/workflows/rollback.yml/runs"
SINCE = "2026-01-05T10:00:00+09:00"


class FakeTime:
    """sleep() advances clock(): the tests never wait."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def gh(httpserver: HTTPServer, fake_time: FakeTime) -> GitHubClient:
    return GitHubClient("ghs_test_token", base_url=httpserver.url_for(""),
                        policy=RetryPolicy(attempts=4, backoff=0.5, timeout=5),
                        sleep=fake_time.sleep, clock=fake_time.clock)


def gparams(**extra: Any) -> dict[str, Any]:
    return {"repository": "peoplebooster/peoplebooster", "workflow": "rollback.yml", "ref": "main",
            "environment": "production", "service": "backend", "version": "latest-1", "incident_id": INCIDENT,
            "timeout_seconds": 900, "poll_seconds": 15, "allow_remediation": True, **extra}


def run(run_id: int, status: str, conclusion: str | None = None, title: str = "Rollback") -> dict[str, Any]:
    return {"id": run_id, "name": "Rollback", "display_title": title, "status": status, "conclusion": conclusion,
            "event": "workflow_dispatch", "html_url": f"https://github.com/peoplebooster/peoplebooster/actions/runs/{run_id}",
            "created_at": "2026-01-05T01:05:00Z"}


def received(httpserver: HTTPServer, method: str, path: str) -> list[Any]:
    return [req for req, _ in httpserver.log if req.method == method and req.path == path]


EXPECTED_BODY = {"ref": "main", "inputs": {"environment": "production", "service": "backend", "version": "latest-1"},
                 "return_run_details": True}


def serve_run_details(httpserver: HTTPServer, run_id: int = 4242) -> None:
    httpserver.expect_request(DISPATCH, method="POST").respond_with_json(
        {"workflow_run_id": run_id, "run_url": f"https://api.github.com{REPO}/actions/runs/{run_id}",
         "html_url": f"https://github.com/peoplebooster/peoplebooster/actions/runs/{run_id}"}, status=200)


def test_dispatch_follow_success_then_again(httpserver: HTTPServer, gh: GitHubClient, clients: Clients,
                                            inventory: Inventory, fake_time: FakeTime) -> None:
    httpserver.expect_request(RUNS, method="GET").respond_with_json({"total_count": 0, "workflow_runs": []})
    serve_run_details(httpserver)
    httpserver.expect_oneshot_request(f"{REPO}/actions/runs/4242").respond_with_json(run(4242, "queued"))
    httpserver.expect_oneshot_request(f"{REPO}/actions/runs/4242").respond_with_json(run(4242, "in_progress"))
    httpserver.expect_request(f"{REPO}/actions/runs/4242").respond_with_json(run(4242, "completed", "success"))
    clients.github = gh
    p = gparams(cluster=inventory.cluster, ecs_service="peoplebooster-backend")

    result = github_rollback(clients, p, check_mode=False)

    assert result.ok and result.changed
    assert result.after["id"] == 4242 and result.after["conclusion"] == "success"
    assert "dispatched and completed successfully" in result.message
    posts = received(httpserver, "POST", DISPATCH)
    assert len(posts) == 1
    assert posts[0].get_json() == EXPECTED_BODY
    assert posts[0].headers["Authorization"] == "Bearer ghs_test_token"
    assert posts[0].headers["Accept"] == "application/vnd.github+json"
    assert posts[0].headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert len(received(httpserver, "GET", f"{REPO}/actions/runs/4242")) == 3
    assert fake_time.sleeps == [15, 15]
    tags = clients.ecs.list_tags_for_resource(resourceArn=inventory.service("backend").arn)["tags"]
    assert {"key": GITHUB_ROLLBACK_TAG, "value": f"{INCIDENT} 4242"} in tags

    again = github_rollback(clients, p, check_mode=False)
    assert again.ok and not again.changed and "already completed successfully" in again.message
    assert again.details["found_by"] == f"ECS service tag {GITHUB_ROLLBACK_TAG}"
    assert again.details[DONE_EARLIER]  # this incident's run (e.g. dispatched by a killed try) did the change
    assert len(received(httpserver, "POST", DISPATCH)) == 1  # not dispatched again


def test_dispatch_answered_204_finds_the_new_run(httpserver: HTTPServer, gh: GitHubClient) -> None:
    before = {"total_count": 1, "workflow_runs": [run(100, "completed", "success")]}
    after = {"total_count": 2, "workflow_runs": [run(101, "queued"), run(100, "completed", "success")]}
    httpserver.expect_oneshot_request(RUNS, method="GET").respond_with_json(before)
    httpserver.expect_request(RUNS, method="GET").respond_with_json(after)
    httpserver.expect_request(DISPATCH, method="POST").respond_with_response(Response(status=204))
    httpserver.expect_request(f"{REPO}/actions/runs/101").respond_with_json(run(101, "completed", "success"))

    result = github_rollback(Clients(github=gh), gparams(since=SINCE), check_mode=False)

    assert result.ok and result.changed and result.details["run_id"] == 101
    listings = received(httpserver, "GET", RUNS)
    assert len(listings) == 2
    assert listings[0].args["event"] == "workflow_dispatch"
    assert listings[0].args["created"] == ">=2026-01-05T01:00:00Z"
    assert received(httpserver, "POST", DISPATCH)[0].get_json() == EXPECTED_BODY


def test_rate_limited_dispatch_is_retried_after_retry_after(httpserver: HTTPServer, gh: GitHubClient,
                                                            fake_time: FakeTime) -> None:
    httpserver.expect_request(RUNS).respond_with_json({"total_count": 0, "workflow_runs": []})
    httpserver.expect_oneshot_request(DISPATCH, method="POST").respond_with_response(
        Response(json.dumps({"message": "API rate limit exceeded"}), status=429, headers={"Retry-After": "7"},
                 content_type="application/json"))
    serve_run_details(httpserver, 77)
    httpserver.expect_request(f"{REPO}/actions/runs/77").respond_with_json(run(77, "completed", "success"))

    result = github_rollback(Clients(github=gh), gparams(), check_mode=False)

    assert result.ok and result.changed
    posts = received(httpserver, "POST", DISPATCH)
    assert len(posts) == 2 and all(p.get_json() == EXPECTED_BODY for p in posts)
    assert fake_time.sleeps[0] == 7.0


def test_server_errors_after_retries_raise(httpserver: HTTPServer, gh: GitHubClient, fake_time: FakeTime) -> None:
    httpserver.expect_request(RUNS).respond_with_json({"total_count": 0, "workflow_runs": []})
    httpserver.expect_request(DISPATCH, method="POST").respond_with_data("upstream broke", status=500)

    with pytest.raises(ActionError, match="GitHub API error: POST .* HTTP 500 after 4 attempt.*no run of it found"):
        github_rollback(Clients(github=gh), gparams(), check_mode=False)
    # A 500 may come after GitHub started the run: before each new dispatch (and before giving up)
    # the runs are looked up for 30 s (every 5 s); none appeared, so it was dispatched again.
    assert len(received(httpserver, "POST", DISPATCH)) == 4
    assert [s for s in fake_time.sleeps if s] == [5.0] * 6 * 4
    assert len(received(httpserver, "GET", RUNS)) == 1 + 7 * 4


def test_a_failed_run_is_a_result_pointing_at_the_fallback(httpserver: HTTPServer, gh: GitHubClient) -> None:
    httpserver.expect_request(RUNS).respond_with_json({"total_count": 0, "workflow_runs": []})
    serve_run_details(httpserver, 55)
    httpserver.expect_request(f"{REPO}/actions/runs/55").respond_with_json(run(55, "completed", "failure"))

    result = github_rollback(Clients(github=gh), gparams(), check_mode=False)

    assert not result.ok and result.changed
    assert result.after["conclusion"] == "failure"
    assert "concluded failure" in result.message and "fall back to the ECS rollback" in result.message


def test_a_run_that_never_completes_times_out(httpserver: HTTPServer, gh: GitHubClient, fake_time: FakeTime) -> None:
    httpserver.expect_request(RUNS).respond_with_json({"total_count": 0, "workflow_runs": []})
    serve_run_details(httpserver, 56)
    httpserver.expect_request(f"{REPO}/actions/runs/56").respond_with_json(run(56, "in_progress"))

    result = github_rollback(Clients(github=gh), gparams(timeout_seconds=60, poll_seconds=15), check_mode=False)

    assert not result.ok
    assert "did not complete within 60s (still in_progress)" in result.message
    assert "fall back to the ECS rollback" in result.message
    assert sum(fake_time.sleeps) == 60
    assert len(received(httpserver, "GET", f"{REPO}/actions/runs/56")) == 5


def test_check_mode_dispatches_nothing(httpserver: HTTPServer, gh: GitHubClient) -> None:
    result = github_rollback(Clients(github=gh), gparams(allow_remediation=False), check_mode=True)
    assert result.changed and result.check_mode
    assert result.message.endswith(
        "gh workflow run rollback.yml --ref main -f environment=production -f service=backend -f version=latest-1")
    assert httpserver.log == []


def test_an_existing_run_is_followed_not_dispatched_again(httpserver: HTTPServer, gh: GitHubClient) -> None:
    httpserver.expect_request(f"{REPO}/actions/runs/9").respond_with_json(run(9, "completed", "success"))
    result = github_rollback(Clients(github=gh), gparams(existing_run_id=9), check_mode=False)
    assert result.ok and not result.changed and result.details["found_by"] == "existing_run_id"
    assert DONE_EARLIER not in result.details  # a run a person named: not a change of the automation's
    assert received(httpserver, "POST", DISPATCH) == []


def test_a_run_titled_with_the_incident_is_found(httpserver: HTTPServer, gh: GitHubClient) -> None:
    runs = {"total_count": 1, "workflow_runs": [run(31, "in_progress", title=f"Rollback backend ({INCIDENT})")]}
    httpserver.expect_request(RUNS).respond_with_json(runs)
    httpserver.expect_request(f"{REPO}/actions/runs/31").respond_with_json(run(31, "completed", "success"))

    check = github_rollback(Clients(github=gh), gparams(since=SINCE), check_mode=True)
    assert not check.changed and "would follow it, not dispatch" in check.message

    result = github_rollback(Clients(github=gh), gparams(since=SINCE), check_mode=False)
    assert result.ok and not result.changed and result.details[DONE_EARLIER]
    assert received(httpserver, "POST", DISPATCH) == []


def test_guard_rail_refuses_before_any_request(httpserver: HTTPServer, gh: GitHubClient) -> None:
    with pytest.raises(GuardRailError, match="remediation is not allowed in staging"):
        github_rollback(Clients(github=gh), gparams(allow_remediation=False, environment="staging"), check_mode=False)
    assert httpserver.log == []


def test_client_retries_the_secondary_rate_limit(httpserver: HTTPServer, gh: GitHubClient,
                                                 fake_time: FakeTime) -> None:
    httpserver.expect_oneshot_request(f"{REPO}/actions/runs/5").respond_with_json(
        {"message": "You have exceeded a secondary rate limit."}, status=403)
    httpserver.expect_request(f"{REPO}/actions/runs/5").respond_with_json(run(5, "completed", "success"))
    assert gh.get_run("peoplebooster/peoplebooster", 5)["id"] == 5
    assert fake_time.sleeps == [60.0]


def test_client_does_not_retry_other_client_errors(httpserver: HTTPServer, gh: GitHubClient) -> None:
    httpserver.expect_request(DISPATCH, method="POST").respond_with_json(
        {"message": "Unexpected inputs provided: [\"incident\"]"}, status=422)
    with pytest.raises(HttpError, match="HTTP 422 after 1 attempt"):
        gh.dispatch_workflow("peoplebooster/peoplebooster", "rollback.yml", "main", {"incident": "x"}, known_run_ids=[])
    assert len(httpserver.log) == 1


def test_iso_time() -> None:
    assert iso_time(SINCE) == "2026-01-05T01:00:00Z"
    assert iso_time("2026-01-05T01:00:00Z") == "2026-01-05T01:00:00Z"
    with pytest.raises(ValueError, match="UTC offset"):
        iso_time("2026-01-05T01:00:00")


def test_a_204_dispatch_whose_run_never_shows_up(httpserver: HTTPServer, gh: GitHubClient,
                                                 fake_time: FakeTime) -> None:
    httpserver.expect_request(RUNS).respond_with_json({"total_count": 1, "workflow_runs": [run(1, "completed")]})
    httpserver.expect_request(DISPATCH, method="POST").respond_with_response(Response(status=204))

    result = github_rollback(Clients(github=gh), gparams(timeout_seconds=60), check_mode=False)

    assert not result.ok and result.changed
    assert "could not find its run" in result.message and "fall back to the ECS rollback" in result.message
    assert sum(fake_time.sleeps) == 60


def test_a_dispatch_answered_502_after_github_started_the_run_is_adopted_not_sent_again(
        httpserver: HTTPServer, gh: GitHubClient, clients: Clients, inventory: Inventory) -> None:
    runs: list[dict[str, Any]] = [run(100, "completed", "success")]

    def dispatch(request: Any) -> Response:
        runs.insert(0, run(4343, "queued"))  # GitHub acted, then the gateway lost the answer
        return Response("bad gateway", status=502)

    httpserver.expect_request(RUNS).respond_with_handler(
        lambda _: Response(json.dumps({"total_count": len(runs), "workflow_runs": runs}), content_type="application/json"))
    httpserver.expect_request(DISPATCH, method="POST").respond_with_handler(dispatch)
    httpserver.expect_request(f"{REPO}/actions/runs/4343").respond_with_json(run(4343, "completed", "success"))
    clients.github = gh

    result = github_rollback(clients, gparams(cluster=inventory.cluster, ecs_service="peoplebooster-backend"),
                             check_mode=False)

    assert result.ok and result.changed and result.details["run_id"] == 4343 and result.details["adopted"]
    assert len(received(httpserver, "POST", DISPATCH)) == 1
    tags = clients.ecs.list_tags_for_resource(resourceArn=inventory.service("backend").arn)["tags"]
    assert {"key": GITHUB_ROLLBACK_TAG, "value": f"{INCIDENT} 4343"} in tags
