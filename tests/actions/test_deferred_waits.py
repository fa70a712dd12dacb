"""The long waits split into start and finish: `run_step(defer_waits=True)` stops after the write with a
pending report, and `finish_step` on the trigger's event reports what the synchronous module (the
break-glass command line's) reports. GitHub against pytest-httpserver, RDS against moto."""

from __future__ import annotations

from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from incident_ops.actions import playbook
from incident_ops.actions import rds as rds_actions
from incident_ops.actions.base import DONE_EARLIER
from incident_ops.actions.github import github_rollback, start_rollback
from incident_ops.actions.registry import Clients
from incident_ops.clients.github import GitHubClient
from incident_ops.clients.http import RetryPolicy
from incident_ops.core.runbook import Runbook

from .conftest import INCIDENT
from .inventory import Inventory
from .test_github import DISPATCH, REPO, RUNS, gparams, received, run, serve_run_details
from .test_rds import rparams


@pytest.fixture
def gh(httpserver: HTTPServer) -> GitHubClient:
    return GitHubClient("ghs_test_token", base_url=httpserver.url_for(""),
                        policy=RetryPolicy(attempts=2, backoff=0.0, timeout=5), sleep=lambda _: None)


def test_github_start_dispatches_once_and_names_the_run_to_follow(httpserver: HTTPServer, gh: GitHubClient,
                                                                  clients: Clients, inventory: Inventory) -> None:
    httpserver.expect_request(RUNS, method="GET").respond_with_json({"total_count": 0, "workflow_runs": []})
    serve_run_details(httpserver)
    clients.github = gh
    p = gparams(cluster=inventory.cluster, ecs_service="peoplebooster-backend")

    started = start_rollback(clients, p, check_mode=False)

    assert started.ok and started.changed and started.details["run_id"] == 4242
    assert started.details["wait_for"] == {"repository": "peoplebooster/peoplebooster", "run_id": 4242,
                                           "timeout": 900.0, "poll": 15.0, "dispatched": True, "found_by": None}
    assert len(received(httpserver, "POST", DISPATCH)) == 1
    assert received(httpserver, "GET", f"{REPO}/actions/runs/4242") == []  # no waiting here
    # A retry of the task finds the run by the ECS tag: nothing dispatched again.
    again = start_rollback(clients, p, check_mode=False)
    assert not again.changed and again.details["wait_for"]["found_by"].startswith("ECS service tag")
    assert len(received(httpserver, "POST", DISPATCH)) == 1


def test_github_check_mode_has_nothing_to_wait_for(httpserver: HTTPServer, gh: GitHubClient) -> None:
    started = start_rollback(Clients(github=gh), gparams(), check_mode=True)
    assert started.changed and "would dispatch" in started.message and "wait_for" not in started.details
    assert received(httpserver, "POST", DISPATCH) == []


def test_run_step_defers_then_finish_step_reports_as_the_synchronous_module(
        httpserver: HTTPServer, gh: GitHubClient, runbook: Runbook, inventory: Inventory, clients: Clients) -> None:
    httpserver.expect_request(RUNS, method="GET").respond_with_json({"total_count": 0, "workflow_runs": []})
    serve_run_details(httpserver)
    clients.github = gh
    kwargs = {"check_mode": False, "incident_id": INCIDENT, "service": "backend", "confirm": True}

    reports = playbook.run_step(runbook, "production", "deploy", "rollback", clients, defer_waits=True, **kwargs)

    assert [r["step"] for r in reports] == ["rollback"]
    wait = playbook.pending_wait(reports[0])
    assert wait is not None and wait["run_id"] == 4242
    final = playbook.finish_step(runbook, "deploy", reports[0], {"run": run(4242, "completed", "success")})
    assert playbook.pending_wait(final) is None

    # The same step run synchronously (the command line) reports the same once the run completed.
    httpserver.expect_request(f"{REPO}/actions/runs/4242").respond_with_json(run(4242, "completed", "success"))
    sync = github_rollback(clients, {**reports[0]["details"]["inputs"], **gparams(existing_run_id=4242)},
                           check_mode=False)
    assert final["ok"] and final["changed"] and "dispatched and completed successfully" in final["message"]
    assert sync.after == final["after"] and final["before"] is None
    assert DONE_EARLIER not in final["details"]


def test_a_failed_run_continues_with_the_fallback(httpserver: HTTPServer, gh: GitHubClient, runbook: Runbook,
                                                  inventory: Inventory, clients: Clients) -> None:
    httpserver.expect_request(RUNS, method="GET").respond_with_json({"total_count": 0, "workflow_runs": []})
    serve_run_details(httpserver)
    clients.github = gh
    kwargs = {"check_mode": False, "incident_id": INCIDENT, "service": "backend", "confirm": True, "defer_waits": True}
    reports = playbook.run_step(runbook, "production", "deploy", "rollback", clients, **kwargs)

    reports = [playbook.finish_step(runbook, "deploy", reports[0], {"run": run(4242, "completed", "failure")})]
    reports = playbook.continue_step(runbook, "production", "deploy", reports, clients, **kwargs)

    assert [(r["step"], r["ok"]) for r in reports] == [("rollback", False), ("ecs_rollback", True)]
    assert "concluded failure" in reports[0]["message"] and reports[1]["changed"]


def test_rds_start_restores_without_waiting_and_the_outcome_finishes_it(rds, inventory: Inventory,
                                                                         sleeps: list[float]) -> None:
    started = rds_actions.start_restore(rds, rparams(inventory), check_mode=False)
    wait = started.details["wait_for"]
    assert started.changed and sleeps == []
    assert wait["cluster"].endswith("-restore-inc-20260105-001") and wait["started"] is True
    assert (wait["timeout"], wait["poll"]) == (60.0, 5.0)

    outcome = rds_actions.restore_progress(rds, wait)  # moto: available at once
    assert outcome["state"] == "available"
    final = rds_actions.finish_restore(started, outcome)
    assert final.changed and final.message.startswith("restored snapshot") and "wait_for" not in final.details
    assert final.details["endpoint"] == outcome["endpoint"]

    # The retry of the task: nothing restored again; the wait confirms it; the record says done earlier.
    again = rds_actions.start_restore(rds, rparams(inventory), check_mode=False)
    assert not again.changed and again.details["wait_for"]["started"] is False
    done = rds_actions.finish_restore(again, rds_actions.restore_progress(rds, again.details["wait_for"]))
    assert "already restored" in done.message and done.details[DONE_EARLIER] and "endpoint" not in done.details


@pytest.mark.parametrize("state", ["failed", "timeout"])
def test_a_failed_or_timed_out_restore_is_a_failed_report(rds, inventory: Inventory, runbook: Runbook,
                                                          clients: Clients, state: str) -> None:
    kwargs: dict[str, Any] = {"check_mode": False, "incident_id": INCIDENT, "confirm": True, "defer_waits": True,
                              "overrides": {"rds_restore_snapshot": {"restore_instance_class": "db.r6g.large"}}}
    reports = playbook.run_step(runbook, "production", "database", "restore", clients, **kwargs)
    assert playbook.pending_wait(reports[0]) is not None

    final = playbook.finish_step(runbook, "database", reports[0], {"state": state, "message": f"it is {state}"})

    assert final["ok"] is False and final["changed"] is False and final["message"] == f"failed: it is {state}"


def test_check_mode_and_the_command_line_never_leave_a_wait(rds, inventory: Inventory, runbook: Runbook,
                                                             clients: Clients) -> None:
    kwargs: dict[str, Any] = {"incident_id": INCIDENT, "confirm": True,
                              "overrides": {"rds_restore_snapshot": {"restore_instance_class": "db.r6g.large"}}}
    check = playbook.run_step(runbook, "production", "database", "restore", clients, check_mode=True,
                              defer_waits=True, **kwargs)
    assert playbook.pending_wait(check[0]) is None and "would restore" in check[0]["message"]
    applied = playbook.run_step(runbook, "production", "database", "restore", clients, check_mode=False, **kwargs)
    assert applied[0]["ok"] and playbook.pending_wait(applied[0]) is None
    assert applied[0]["message"].startswith("restored snapshot")
