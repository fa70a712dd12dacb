"""The runbook's consent policy (issue 14 item 5): `on_timeout` of the scenario choice (per severity,
per scenario) and of approvals (global, per step, per severity), `auto` steps with their one-line
reason, `responders` — and every refusal names the key path it concerns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from incident_ops.core import decisions
from incident_ops.core.runbook import DEFAULT_RUNBOOK_PATH, Runbook, RunbookError, parse_runbook, timeout_policy
from tests.conftest import runbook_data


def data_with(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    data = runbook_data()
    change(data)
    return data


def variant(change: Callable[[dict[str, Any]], None]) -> Runbook:
    return parse_runbook(data_with(change))


def refused(change: Callable[[dict[str, Any]], None]) -> RunbookError:
    with pytest.raises(RunbookError) as raised:
        parse_runbook(data_with(change))
    return raised.value


def step(data: dict[str, Any], scenario: str, step_id: str) -> dict[str, Any]:
    return next(s for s in data["scenarios"][scenario]["steps"] if s["id"] == step_id)


def all_approvals_auto(data: dict[str, Any]) -> None:
    """Every step with an approval marked auto (so a global `approve` passes the cross-check)."""
    for scenario in data["scenarios"].values():
        for entry in scenario["steps"]:
            if entry.get("approval"):
                entry.update(auto=True, auto_reason="テスト用")


# --- what the project ships --------------------------------------------------------------------------


def test_the_shipped_policy(runbook: Runbook) -> None:
    choice = runbook.decisions.scenario_choice
    assert (choice.timeout_minutes, choice.on_timeout) == (10, {"P1": "suggested", "P2": "suggested",
                                                                "default": "manual"})
    assert (runbook.decisions.approval.timeout_minutes, runbook.decisions.approval.on_timeout) == (15, "reject")
    assert runbook.decisions.responders == ["roster", "dev_lead", "cto"]
    assert all(scenario.on_timeout is None for scenario in runbook.scenarios.values())


def test_only_scale_out_and_the_fallback_flag_run_unanswered(runbook: Runbook) -> None:
    auto = {(name, s.id) for name, scenario in runbook.scenarios.items() for s in scenario.steps if s.auto}
    assert auto == {("resource", "scale_out"), ("external", "fallback")}
    scale_out = runbook.scenario("resource").step("scale_out")
    assert scale_out.auto_reason == "タスクを増やすだけで、サービスごとのタスク数の上限を超えず、いつでも元の数に戻せるため"
    assert runbook.scenario("external").step("fallback").auto_reason == (
        "外部サービスが落ちている間だけ用意済みの代替動作に切り替えるフラグで、戻すのもフラグ1つのため")
    # Every other step that changes something needs a person's consent.
    consent = {(name, s.id) for name, scenario in runbook.scenarios.items() for s in scenario.steps
               if s.needs_consent}
    assert ("deploy", "rollback") in consent and ("database", "failover") in consent
    assert ("resource", "scale_out") not in consent and ("external", "fallback") not in consent


def test_a_status_page_read_is_read_only_and_needs_no_consent(runbook: Runbook) -> None:
    check = runbook.scenario("external").step("check_status")
    assert check.read_only and not check.auto and not check.needs_consent
    assert not runbook.scenario("deploy").step("rollback").read_only


def test_the_yaml_says_why_each_auto_step_may_run() -> None:
    text = DEFAULT_RUNBOOK_PATH.read_text(encoding="utf-8")
    assert text.count("auto: true") == 2 and text.count("auto_reason:") == 2


# --- the scenario choice's timeout ------------------------------------------------------------------


@pytest.mark.parametrize(("severity", "expected"),
                         [("P1", "suggested"), ("P2", "suggested"), ("P3", "manual"), ("P4", "manual")])
def test_the_choice_on_timeout_per_severity(runbook: Runbook, severity: str, expected: str) -> None:
    for scenario in runbook.scenarios:
        assert decisions.choice_on_timeout(runbook, severity, scenario) == expected


@pytest.mark.parametrize("suggested", [None, "", "no_such_scenario"])
def test_no_suggestion_is_manual(runbook: Runbook, suggested: str | None) -> None:
    assert decisions.choice_on_timeout(runbook, "P1", suggested) == "manual"


def test_a_scenarios_own_on_timeout_overrides_the_default() -> None:
    runbook = variant(lambda data: (data["scenarios"]["security"].update(on_timeout="manual"),
                                    data["scenarios"]["resource"].update(on_timeout={"P3": "suggested",
                                                                                     "default": "manual"})))
    assert decisions.choice_on_timeout(runbook, "P1", "security") == "manual"
    assert decisions.choice_on_timeout(runbook, "P1", "deploy") == "suggested"  # the global default
    assert decisions.choice_on_timeout(runbook, "P3", "resource") == "suggested"
    assert decisions.choice_on_timeout(runbook, "P1", "resource") == "manual"


def test_one_value_for_every_severity() -> None:
    runbook = variant(lambda data: data["decisions"]["scenario_choice"].update(on_timeout="suggested"))
    assert [decisions.choice_on_timeout(runbook, s, "deploy") for s in ("P1", "P4")] == ["suggested", "suggested"]


def test_a_map_naming_every_severity_needs_no_default() -> None:
    runbook = variant(lambda data: data["decisions"]["scenario_choice"].update(
        on_timeout={"P1": "suggested", "P2": "manual", "P3": "manual", "P4": "suggested"}))
    assert [decisions.choice_on_timeout(runbook, s, "deploy") for s in ("P1", "P2", "P3", "P4")] == [
        "suggested", "manual", "manual", "suggested"]


def test_timeout_policy() -> None:
    assert timeout_policy("reject", "P1") == "reject"
    assert timeout_policy({"P1": "approve", "default": "reject"}, "P1") == "approve"
    assert timeout_policy({"P1": "approve", "default": "reject"}, "P3") == "reject"
    assert timeout_policy({"P1": "a", "P2": "b", "P3": "c", "P4": "d"}, "P4") == "d"


# --- an approval's timeout ---------------------------------------------------------------------------


def test_the_approval_on_timeout_is_reject_by_default(runbook: Runbook) -> None:
    for severity in ("P1", "P2", "P3", "P4"):
        assert decisions.approval_on_timeout(runbook, "database", "failover", severity) == "reject"


def test_a_step_may_approve_on_timeout_when_it_is_auto_per_severity() -> None:
    def change(data: dict[str, Any]) -> None:
        step(data, "database", "failover").update(auto=True, auto_reason="テスト用",
                                                  on_timeout={"P1": "approve", "default": "reject"})
    runbook = variant(change)
    assert decisions.approval_on_timeout(runbook, "database", "failover", "P1") == "approve"
    assert decisions.approval_on_timeout(runbook, "database", "failover", "P2") == "reject"
    assert decisions.approval_on_timeout(runbook, "database", "restore", "P1") == "reject"  # the global one


def test_a_step_may_reject_where_the_global_policy_approves() -> None:
    def change(data: dict[str, Any]) -> None:
        all_approvals_auto(data)
        data["decisions"]["approval"]["on_timeout"] = "approve"
        step(data, "database", "restore")["on_timeout"] = "reject"
    runbook = variant(change)
    assert decisions.approval_on_timeout(runbook, "database", "failover", "P3") == "approve"
    assert decisions.approval_on_timeout(runbook, "database", "restore", "P3") == "reject"


def test_a_per_severity_global_approval_policy() -> None:
    def change(data: dict[str, Any]) -> None:
        all_approvals_auto(data)
        data["decisions"]["approval"]["on_timeout"] = {"P1": "approve", "P2": "approve", "default": "reject"}
    runbook = variant(change)
    assert [decisions.approval_on_timeout(runbook, "security", "isolate", s) for s in ("P1", "P2", "P3", "P4")] == [
        "approve", "approve", "reject", "reject"]


def test_a_consent_decision_always_rejects_on_timeout() -> None:
    """A step with no approval of its own is asked (consent) only in a scenario nobody chose; the global
    `approve` (allowed when every approval step is auto) must not make it run unanswered."""
    def change(data: dict[str, Any]) -> None:
        all_approvals_auto(data)
        data["decisions"]["approval"]["on_timeout"] = "approve"
    runbook = variant(change)
    assert not runbook.scenario("deploy").step("rollback").approval
    assert decisions.approval_on_timeout(runbook, "deploy", "rollback", "P1") == "reject"
    assert decisions.outcome_on_timeout(runbook, kind="consent", severity="P1", scenario="deploy",
                                        step_id="rollback") == (
        "既定値「却下」: 手順「ロールバック」は実行しません（本番環境は変更しません）。")


# --- refusals ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "path", "reason"),
    [
        (lambda d: step(d, "resource", "scale_out").pop("auto_reason"), "scenarios.resource.steps[0]",
         "step 'scale_out': auto: true needs auto_reason (one line: why it may run unanswered)"),
        (lambda d: step(d, "resource", "scale_out").update(auto_reason="  "), "scenarios.resource.steps[0]",
         "step 'scale_out': auto: true needs auto_reason"),
        (lambda d: step(d, "resource", "scale_out").update(auto_reason="一行目\n二行目"), "scenarios.resource.steps[0]",
         "step 'scale_out': auto_reason is one line, on a step with auto: true"),
        (lambda d: step(d, "resource", "scale_up").update(auto_reason="理由"), "scenarios.resource.steps[1]",
         "step 'scale_up': auto_reason is one line, on a step with auto: true"),
        (lambda d: step(d, "resource", "scale_out").update(on_timeout="reject"), "scenarios.resource.steps[0]",
         "step 'scale_out': on_timeout applies to an approval; the step has approval: false"),
        (lambda d: step(d, "deploy", "ecs_rollback").update(auto=True, auto_reason="理由"), "scenarios.deploy.steps[1]",
         "step 'ecs_rollback': a fallback runs under its step's consent; auto goes on that step"),
    ],
    ids=["auto-without-reason", "auto-blank-reason", "multi-line-reason", "reason-without-auto",
         "on-timeout-without-approval", "auto-fallback"],
)
def test_a_bad_step_names_its_key(change: Callable[[dict[str, Any]], None], path: str, reason: str) -> None:
    error = refused(change)
    assert error.path == path
    assert reason in error.reason


APPROVE_REFUSED = "would run with nobody answering (its approval's on_timeout is approve)"


def test_approve_on_a_step_that_is_not_auto_is_refused() -> None:
    error = refused(lambda d: step(d, "database", "failover").update(on_timeout="approve"))
    assert error.path == "scenarios.database.steps"
    assert error.reason.startswith(f"step 'failover' {APPROVE_REFUSED}")
    assert "mark it auto: true with an auto_reason, or reject" in error.reason


def test_approve_for_one_severity_on_a_step_that_is_not_auto_is_refused() -> None:
    error = refused(lambda d: step(d, "security", "isolate").update(on_timeout={"P1": "approve", "default": "reject"}))
    assert error.path == "scenarios.security.steps"
    assert error.reason.startswith(f"step 'isolate' {APPROVE_REFUSED}")


@pytest.mark.parametrize("policy", ["approve", {"P2": "approve", "default": "reject"}])
def test_a_global_approve_is_refused_while_an_approval_step_is_not_auto(policy: Any) -> None:
    error = refused(lambda d: d["decisions"]["approval"].update(on_timeout=policy))
    assert error.path == "scenarios.resource.steps"
    assert error.reason.startswith(f"step 'scale_up' {APPROVE_REFUSED}")


def test_a_step_rejecting_on_timeout_is_not_refused_under_a_global_approve() -> None:
    def change(data: dict[str, Any]) -> None:
        all_approvals_auto(data)
        entry = step(data, "security", "isolate")
        entry.pop("auto"), entry.pop("auto_reason")
        entry["on_timeout"] = "reject"
        data["decisions"]["approval"]["on_timeout"] = "approve"
    runbook = variant(change)
    assert decisions.approval_on_timeout(runbook, "security", "isolate", "P1") == "reject"


@pytest.mark.parametrize(
    ("change", "path", "reason"),
    [
        (lambda d: d["decisions"]["scenario_choice"].update(on_timeout={"P5": "manual", "default": "manual"}),
         "decisions.scenario_choice.on_timeout", "unknown key 'P5': use severities (P1-P4) and default"),
        (lambda d: d["scenarios"]["deploy"].update(on_timeout={"p1": "manual", "default": "manual"}),
         "scenarios.deploy.on_timeout", "unknown key 'p1': use severities (P1-P4) and default"),
        (lambda d: step(d, "database", "failover").update(on_timeout={"P0": "reject", "default": "reject"}),
         "scenarios.database.steps[0].on_timeout", "unknown key 'P0': use severities (P1-P4) and default"),
        (lambda d: d["decisions"]["approval"].update(on_timeout={"P9": "reject", "default": "reject"}),
         "decisions.approval.on_timeout", "unknown key 'P9'"),
        (lambda d: d["decisions"]["scenario_choice"].update(on_timeout={"P1": "suggested", "P2": "suggested"}),
         "decisions.scenario_choice.on_timeout", "name every severity (P1-P4) or give a default"),
        (lambda d: d["decisions"]["approval"].update(on_timeout={"P1": "reject"}),
         "decisions.approval.on_timeout", "name every severity (P1-P4) or give a default"),
        (lambda d: d["decisions"]["scenario_choice"].update(on_timeout="deploy"),
         "decisions.scenario_choice.on_timeout", "'manual' or 'suggested'"),
        (lambda d: d["decisions"]["approval"].update(on_timeout="maybe"),
         "decisions.approval.on_timeout", "'reject' or 'approve'"),
        (lambda d: d["decisions"].update(responders=["roster", "nobody"]),
         "decisions.responders", "unknown person 'nobody'; use roster or ids of contacts.people (cto, dev_lead)"),
        (lambda d: d["decisions"].update(responders=["tanaka"]),  # a roster id is not a contacts.people id
         "decisions.responders", "unknown person 'tanaka'"),
    ],
    ids=["choice-unknown-severity", "scenario-unknown-severity", "step-unknown-severity",
         "approval-unknown-severity", "choice-map-without-default", "approval-map-without-default",
         "choice-bad-value", "approval-bad-value", "unknown-responder", "roster-id-as-responder"],
)
def test_a_bad_decision_setting_names_its_key(change: Callable[[dict[str, Any]], None], path: str,
                                              reason: str) -> None:
    error = refused(change)
    assert error.path == path
    assert reason in error.reason


def test_responders_may_name_people_and_the_roster() -> None:
    runbook = variant(lambda d: d["decisions"].update(responders=["roster", "cto"]))
    assert runbook.decisions.responders == ["roster", "cto"]


def test_responders_default_to_the_roster_the_lead_and_the_cto() -> None:
    runbook = variant(lambda d: d["decisions"].pop("responders"))
    assert runbook.decisions.responders == ["roster", "dev_lead", "cto"]
