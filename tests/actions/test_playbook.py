"""run_playbook (the break-glass command line's engine) decides conditional steps like the DAG."""

from __future__ import annotations

import pytest
from pytest_httpserver import HTTPServer

from incident_ops.actions.playbook import run_playbook
from incident_ops.actions.registry import Clients
from incident_ops.clients.http import HttpClient, RetryPolicy
from incident_ops.core.runbook import Runbook

from .conftest import INCIDENT
from .inventory import Inventory


def steps(report: dict) -> dict[str, tuple[bool, bool, str]]:
    return {s["step"]: (s["skipped"], s["changed"], s["message"]) for s in report["steps"]}


def test_a_healed_database_needs_no_restore_and_no_support_case(runbook: Runbook, clients: Clients,
                                                                inventory: Inventory) -> None:
    report = run_playbook(runbook, "database", "production", clients, check_mode=False, incident_id=INCIDENT,
                          confirm=True, include_optional=True, severity="P1", health=lambda: {"healthy": True})
    assert report["ok"]
    found = steps(report)
    assert found["failover"][:2] == (False, True)
    assert found["restore"] == (True, False, "フェイルオーバーで復旧したためスナップショット復元は不要")
    assert found["support_case"][0] and found["support_case"][2].endswith("AWS サポートへの問い合わせは不要")
    assert clients.support.describe_cases(includeResolvedCases=True)["cases"] == []


def test_without_a_health_answer_the_next_rung_is_offered(runbook: Runbook, clients: Clients,
                                                          inventory: Inventory) -> None:
    report = run_playbook(runbook, "resource", "production", clients, check_mode=True, incident_id=INCIDENT,
                          include_optional=True, severity="P2")
    found = steps(report)
    assert not found["scale_up"][0] and found["scale_up"][1]  # a dry run reports what it would do
    assert found["support_case"][0]  # no AWS step failed


@pytest.mark.parametrize(("indicator", "waits", "falls_back"), [("none", True, False), ("major", False, True)])
def test_the_status_page_decides_between_wait_and_fallback(runbook: Runbook, clients: Clients, inventory: Inventory,
                                                           httpserver: HTTPServer, indicator: str, waits: bool,
                                                           falls_back: bool) -> None:
    httpserver.expect_request("/status.json").respond_with_json({"status": {"indicator": indicator,
                                                                            "description": indicator}})
    clients.http = HttpClient("", policy=RetryPolicy(attempts=1))
    report = run_playbook(runbook, "external", "production", clients, check_mode=False, incident_id=INCIDENT,
                          overrides={"external_status_check": {"url": httpserver.url_for("/status.json")}})
    found = steps(report)
    assert found["wait"][0] is (not waits) and found["fallback"][0] is (not falls_back)
    assert found["fallback"][1] is falls_back
