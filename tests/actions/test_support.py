"""AWS Support case module against moto: check mode, apply, apply again; guard rails; severity codes."""

from __future__ import annotations

from typing import Any

import pytest

from incident_ops.actions import support as support_actions
from incident_ops.actions.base import DONE_EARLIER, ActionError, GuardRailError
from incident_ops.actions.registry import Clients, run_action, step_params
from incident_ops.core.runbook import Runbook

from .conftest import INCIDENT


def params(**extra: Any) -> dict[str, Any]:
    return {"incident_id": INCIDENT, "severity": "P1", "environment": "production", "allow_remediation": True,
            "subject": "PeopleBooster production: フェイルオーバーの失敗（P1）", "body": "調査をお願いします。", **extra}


def cases(support) -> list[dict[str, Any]]:
    return support.describe_cases(includeResolvedCases=True, includeCommunications=True)["cases"]


@pytest.fixture
def support(clients: Clients):
    assert clients.support.meta.region_name == support_actions.SUPPORT_REGION  # the API lives in us-east-1
    return clients.support


def test_check_then_apply_then_again(support) -> None:
    check = support_actions.aws_support_case(support, params(), check_mode=True)
    assert check.changed and check.check_mode and check.before is None
    assert check.after["subject"] == f"[{INCIDENT}] PeopleBooster production: フェイルオーバーの失敗（P1）"
    assert check.after["severity_code"] == "urgent"
    assert cases(support) == []

    applied = support_actions.aws_support_case(support, params(), check_mode=False)
    assert applied.changed and applied.after["case_id"]
    [case] = cases(support)
    assert case["caseId"] == applied.after["case_id"] == applied.details["case_id"]
    assert case["subject"].startswith(f"[{INCIDENT}]") and case["language"] == "ja"
    assert case["recentCommunications"]["communications"][0]["body"] == "調査をお願いします。"

    again = support_actions.aws_support_case(support, params(), check_mode=False)
    assert not again.changed and again.details[DONE_EARLIER]
    assert again.after["case_id"] == applied.after["case_id"]
    assert len(cases(support)) == 1
    # check mode after the fact: nothing would change either
    assert not support_actions.aws_support_case(support, params(), check_mode=True).changed


def test_a_resolved_case_of_the_incident_is_not_opened_again(support) -> None:
    first = support_actions.aws_support_case(support, params(), check_mode=False)
    support.resolve_case(caseId=first.after["case_id"])
    again = support_actions.aws_support_case(support, params(), check_mode=False)
    assert not again.changed and again.after["case_id"] == first.after["case_id"]
    assert len(cases(support)) == 1


def test_another_incidents_case_does_not_count(support) -> None:
    support.create_case(subject="[INC-20260101-001] older incident", communicationBody="x")
    result = support_actions.aws_support_case(support, params(), check_mode=False)
    assert result.changed
    subjects = sorted(c["subject"] for c in cases(support))
    assert len(subjects) == 2 and subjects[0].startswith("[INC-20260101-001]") and subjects[1].startswith(f"[{INCIDENT}]")


def test_the_subject_always_names_the_incident(support) -> None:
    result = support_actions.aws_support_case(support, params(subject=None), check_mode=False)
    assert result.after["subject"].startswith(f"[{INCIDENT}] ")


@pytest.mark.parametrize(("severity", "code"), [("P1", "urgent"), ("P2", "high"), ("P3", "normal"), ("P4", "low")])
def test_severity_code_from_the_incidents_severity(support, severity: str, code: str) -> None:
    result = support_actions.aws_support_case(support, params(severity=severity), check_mode=False)
    assert result.details["severity_code"] == code
    assert result.after["severity_code"] == code


def test_guard_rails(support) -> None:
    # production only: refused even in check mode (a staging drill shows the refusal)
    with pytest.raises(GuardRailError, match="only for production"):
        support_actions.aws_support_case(support, params(environment="staging"), check_mode=True)
    # remediation not allowed: check mode reports, a real run is refused
    assert support_actions.aws_support_case(support, params(allow_remediation=False), check_mode=True).changed
    with pytest.raises(GuardRailError, match="remediation is not allowed"):
        support_actions.aws_support_case(support, params(allow_remediation=False), check_mode=False)
    with pytest.raises(ActionError, match="severity"):
        support_actions.aws_support_case(support, params(severity=None), check_mode=True)
    with pytest.raises(ActionError, match="severity code"):
        support_actions.aws_support_case(support, params(severity_codes={"P1": "panic"}), check_mode=True)
    with pytest.raises(ActionError, match="incident_id"):
        support_actions.aws_support_case(support, params(incident_id="bad id!"), check_mode=True)
    assert cases(support) == []


def test_through_the_registry_with_the_runbooks_step(runbook: Runbook, clients: Clients) -> None:
    step = runbook.scenario("database").step("support_case")
    built = step_params(runbook, "production", step, incident_id=INCIDENT, severity="P3")
    assert built["severity"] == "P3" and built["severity_codes"]["P3"] == "normal"
    result = run_action("aws_support_case", clients, built, check_mode=False)
    assert result.changed and result.details["severity_code"] == "normal"
    assert not run_action("aws_support_case", clients, built, check_mode=False).changed
    # the step's params cannot choose the severity (it is the incident's)
    forged = step.model_copy(update={"params": {**step.params, "severity": "P4"}})
    assert step_params(runbook, "production", forged, incident_id=INCIDENT, severity="P1")["severity"] == "P1"
