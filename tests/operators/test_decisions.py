"""The decision operators with a fake context (the HITL parents' Task SDK calls replaced by recorders):
the scenario choice's timeout default per severity and what it records when nobody answers; a step's
approval (its default per `on_timeout`), the consent a person's choice of the scenario gives, and
check mode; the notifier that posts the question to Slack."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLBranchOperator, HITLOperator

from incident_ops.core import narrative
from incident_ops.core.ledger import LEDGER_URL_ENV, Ledger
from incident_ops.core.runbook import SCENARIOS, Runbook, load_runbook, parse_runbook
from incident_ops.flows import decisions as decision_flow
from incident_ops.flows import incident as incident_flow
from incident_ops.operators.decisions import DecisionAnnouncement, ScenarioChoiceOperator, StepApprovalOperator
from tests.conftest import runbook_data
from tests.flows.test_decisions import DecisionSlack

RUNBOOK = load_runbook()
MANUAL = "手動対応（自動復旧なし）"
RESPONDED_AT = dt.datetime(2026, 12, 1, 1, 10, tzinfo=dt.UTC)
TANAKA = {"id": "U0TANAKA1", "name": "田中 太郎"}


def option(name: str) -> str:
    """The DAG's option (the HITL value, the button's value): people's words, as the DAG builds it."""
    from incident_ops.core.decisions import scenario_options

    return scenario_options(RUNBOOK, "手動対応（自動復旧なし）")[name]


def label(name: str) -> str:
    """What people read for it: no scenario key."""
    scenario = RUNBOOK.scenarios[name]
    return f"{scenario.label}（{scenario.remediation}）"


class FakeTI:
    def __init__(self, task_id: str, xcoms: dict[tuple[str, str | None], Any] | None = None) -> None:
        self.task_id = task_id
        self.dag_id = "incident_response"
        self.run_id = "manual__r1"
        self.map_index = -1
        self.try_number = 1
        self.xcoms = dict(xcoms or {})
        self.pushed: dict[str, Any] = {}

    def xcom_pull(self, task_ids: str, key: str | None = None) -> Any:
        return self.xcoms.get((task_ids, key))

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


class Hitl:
    """What the HITL parents were asked to do (instead of the Task SDK's calls)."""

    def __init__(self) -> None:
        self.waited: list[dict[str, Any]] = []
        self.completed: list[dict[str, Any]] = []


@pytest.fixture
def hitl(monkeypatch: pytest.MonkeyPatch) -> Hitl:
    calls = Hitl()

    def execute(self: HITLOperator, context: Any) -> str:
        calls.waited.append({"task": self, "defaults": list(self.defaults), "subject": self.subject,
                             "body": self.body})
        for notifier in self.notifiers:  # as HITLOperator.execute does before it waits
            notifier(context)
        return "awaiting input"

    def complete(self: HITLOperator, context: Any, event: dict[str, Any]) -> Any:
        calls.completed.append(event)
        return {"chosen_options": event["chosen_options"], "responded_by_user": event["responded_by_user"]}

    monkeypatch.setattr(HITLOperator, "execute", execute)
    monkeypatch.setattr(HITLBranchOperator, "execute_complete", complete)
    monkeypatch.setattr(ApprovalOperator, "execute_complete", complete)
    return calls


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ledger]:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv(LEDGER_URL_ENV, url)
    ledger = Ledger(url)
    yield ledger
    ledger.dispose()


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch) -> DecisionSlack:
    slack = DecisionSlack()
    services = SimpleNamespace(slack=slack)
    monkeypatch.setattr(incident_flow, "services_for", lambda environment: services)
    return slack


def open_incident(ledger: Ledger, severity: str) -> str:
    incident, _ = ledger.open_or_join(fingerprint=f"production:backend:{severity}", severity=severity,
                                      symptom="ログインできない", title="ログインできない", service="backend",
                                      environment="production", reporter="test",
                                      at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20))
    ledger.update(incident["id"], dt.datetime.now(dt.UTC), slack_channel="#inc", slack_channel_id="C0INC")
    return incident["id"]


def use_runbook(monkeypatch: pytest.MonkeyPatch, change: Callable[[dict[str, Any]], None]) -> Runbook:
    data = runbook_data()
    change(data)
    runbook = parse_runbook(data)
    monkeypatch.setattr(incident_flow, "load", lambda: runbook)
    return runbook


def events(ledger: Ledger, incident_id: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in ledger.events(incident_id) if e["kind"] == kind]


# --- the scenario choice -------------------------------------------------------------------------------


def chooser(incident_id: str) -> ScenarioChoiceOperator:
    return ScenarioChoiceOperator(
        task_id="choose_scenario", subject="復旧シナリオの選択",
        options=[option(name) for name in SCENARIOS] + [MANUAL],
        options_mapping={option(name): f"recover.{name}.start" for name in SCENARIOS} | {MANUAL: "recover.manual"},
        option_for_scenario={name: option(name) for name in SCENARIOS}, manual_option=MANUAL, defaults=[MANUAL],
        incident_id=incident_id, suggestion_task_id="investigate.collect_evidence",
        response_timeout=dt.timedelta(minutes=10))


def evidence_ti(suggested: str | None) -> FakeTI:
    evidence = {"suggested": suggested, "reasons": ["120分以内にデプロイあり", "ログに TypeError"]}
    return FakeTI("recover.choose_scenario", {("investigate.collect_evidence", None): evidence})


def test_a_p1_choice_defaults_to_the_suggestion(ledger: Ledger, slack: DecisionSlack, hitl: Hitl) -> None:
    incident_id = open_incident(ledger, "P1")
    operator = chooser(incident_id)
    assert operator.execute({"ti": evidence_ti("deploy"), "task": operator}) == "awaiting input"
    assert operator.defaults == [option("deploy")] and hitl.waited[0]["defaults"] == [option("deploy")]
    request = operator.decision_request
    assert request["kind"] == "scenario" and request["default"] == option("deploy")
    assert request["subject"] == operator.subject == f"復旧シナリオの選択（{incident_id}）"
    assert request["suggestion"] == "デプロイ後の障害"
    assert request["reasons"] == ["120分以内にデプロイあり", "ログに TypeError"]
    assert request["on_timeout"] == (
        "提案のシナリオ「デプロイ後の障害」を開始します。人の回答なしで本番環境を変更する手順はありません。"
        "「ロールバック」は承認を待ちます。")
    assert [o["value"] for o in request["options"]] == operator.options
    # The buttons say the scenario in people's words; the value keeps the key (the webhook parses it).
    assert [o["label"] for o in request["options"]][:5] == [label(name) for name in RUNBOOK.scenarios][:5]
    assert all(not o["label"].startswith(f"{name}:") for o in request["options"] for name in RUNBOOK.scenarios)
    assert [o["style"] for o in request["options"]] == ["primary", None, None, None, None, None]
    assert request["question"].startswith("どの復旧シナリオで対応しますか。")
    # The Airflow UI's body says the same.
    assert "提案: **デプロイ後の障害**" in operator.body
    assert f"期限までに回答がない場合: {request['on_timeout']}" in operator.body


@pytest.mark.parametrize("severity", ["P3", "P4"])
def test_a_p3_choice_defaults_to_manual(ledger: Ledger, slack: DecisionSlack, hitl: Hitl, severity: str) -> None:
    incident_id = open_incident(ledger, severity)
    operator = chooser(incident_id)
    operator.execute({"ti": evidence_ti("deploy"), "task": operator})
    assert operator.defaults == [MANUAL]
    assert operator.decision_request["default"] == MANUAL
    assert operator.decision_request["suggestion"] == "デプロイ後の障害"  # still suggested, not run unanswered
    assert operator.decision_request["on_timeout"] == (
        "自動復旧は行わず、手動対応になります（人が判断するまで本番環境は変更しません）。")


def test_no_suggestion_defaults_to_manual(ledger: Ledger, slack: DecisionSlack, hitl: Hitl) -> None:
    incident_id = open_incident(ledger, "P1")
    operator = chooser(incident_id)
    operator.execute({"ti": evidence_ti(None), "task": operator})
    assert operator.defaults == [MANUAL] and operator.decision_request["suggestion"] is None
    assert all(o["style"] is None for o in operator.decision_request["options"])


def test_the_notifier_posts_the_choice_to_slack(ledger: Ledger, slack: DecisionSlack, hitl: Hitl,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example")
    incident_id = open_incident(ledger, "P1")
    operator = chooser(incident_id)
    ti = evidence_ti("resource")
    operator.execute({"ti": ti, "task_instance": ti, "task": operator})
    [post] = slack.messages
    assert post["channel"] == "C0INC"
    assert post["key"] == f"{incident_id}:decision:recover.choose_scenario:1"
    lines = post["text"].splitlines()
    assert lines[0] == f"【判断が必要です】復旧シナリオの選択（{incident_id}）"
    assert any(line.startswith("回答期限: ") and line.endswith("（10分以内）") for line in lines)
    assert "人の回答なしで実行するのは、自動実行を許可された手順「スケールアウト」だけです" in post["text"]
    assert lines[-1] == ("<https://airflow.example/dags/incident_response/runs/manual__r1/tasks/"
                         "recover.choose_scenario/required_actions?map_index=-1|Airflow の画面で開く>（Required Actions）")
    buttons = post["blocks"][1]["elements"]
    assert [json.loads(b["value"])["option"] for b in buttons] == operator.options
    assert [b["text"]["text"] for b in buttons][0] == label(next(iter(RUNBOOK.scenarios)))
    assert json.loads(buttons[0]["value"])["task_id"] == "recover.choose_scenario"
    [posted] = events(ledger, incident_id, "decision_posted")
    assert posted["data"]["default"] == option("resource")
    deadline = dt.datetime.fromisoformat(posted["data"]["deadline"])
    assert abs((deadline - dt.datetime.now(dt.UTC)) - dt.timedelta(minutes=10)) < dt.timedelta(seconds=30)


def test_the_notifier_never_raises(ledger: Ledger, slack: DecisionSlack, hitl: Hitl,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(request: dict[str, Any]) -> None:
        raise RuntimeError("ledger down")

    monkeypatch.setattr(decision_flow, "announce", broken)
    incident_id = open_incident(ledger, "P1")
    operator = chooser(incident_id)
    assert operator.execute({"ti": evidence_ti("deploy"), "task": operator}) == "awaiting input"


def test_the_notifier_without_a_request_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decision_flow, "announce", lambda request: pytest.fail("announced"))
    DecisionAnnouncement().notify({"task": SimpleNamespace(decision_request=None), "ti": FakeTI("t")})


def timeout(chosen: str) -> dict[str, Any]:
    return {"chosen_options": [chosen], "params_input": {}, "responded_at": RESPONDED_AT, "responded_by_user": None,
            "timedout": True}


def answered(chosen: str, user: dict[str, str] = TANAKA) -> dict[str, Any]:
    return {"chosen_options": [chosen], "params_input": {}, "responded_at": RESPONDED_AT, "responded_by_user": user}


def test_a_choice_nobody_answered_starts_the_suggestion_unattended(ledger: Ledger, slack: DecisionSlack,
                                                                   hitl: Hitl) -> None:
    incident_id = open_incident(ledger, "P1")
    operator = chooser(incident_id)
    ti = evidence_ti("resource")
    operator.execute({"ti": ti, "task": operator})
    result = operator.execute_complete({"ti": ti, "task": operator}, timeout(option("resource")))
    assert result["chosen_options"] == [option("resource")] and hitl.completed
    assert ti.pushed == {"unattended": True}
    [chosen] = events(ledger, incident_id, "scenario_chosen")
    assert chosen["idempotency_key"] == "scenario_chosen"
    assert chosen["message"] == f"シナリオ「{label('resource')}」を選択（回答なし: 既定値）"
    assert chosen["data"] == {"chosen": option("resource"), "scenario": "resource", "by": None, "timed_out": True,
                              "unattended": True}
    # The message says what was done, and the dev lead is told.
    [update] = slack.updates
    assert f"既定値「{label('resource')}」を適用しました" in update["text"]
    assert "resource:" not in update["text"] and "resource:" not in slack.messages[-1]["text"]
    assert "人の回答なしで実行するのは、自動実行を許可された手順「スケールアウト」だけです" in update["text"]
    notice = slack.messages[-1]
    assert notice["text"].startswith(f"<@U0LEAD001> 【回答期限切れ】復旧シナリオの選択（{incident_id}）")
    assert "提案のシナリオ「リソース枯渇」を開始しました。" in notice["text"]  # after the fact: past tense
    assert "開始します" not in notice["text"]


def test_a_manual_timeout_is_not_unattended(ledger: Ledger, slack: DecisionSlack, hitl: Hitl) -> None:
    incident_id = open_incident(ledger, "P3")
    operator = chooser(incident_id)
    ti = evidence_ti("resource")
    operator.execute({"ti": ti, "task": operator})
    operator.execute_complete({"ti": ti, "task": operator}, timeout(MANUAL))
    assert ti.pushed == {"unattended": False}
    [chosen] = events(ledger, incident_id, "scenario_chosen")
    assert chosen["data"]["timed_out"] is True and chosen["data"]["unattended"] is False
    assert "自動復旧は行わず、手動対応に切り替えました" in slack.messages[-1]["text"]


def test_a_persons_choice(ledger: Ledger, slack: DecisionSlack, hitl: Hitl) -> None:
    incident_id = open_incident(ledger, "P1")
    operator = chooser(incident_id)
    ti = evidence_ti("deploy")
    operator.execute({"ti": ti, "task": operator})
    operator.execute_complete({"ti": ti, "task": operator}, answered(option("database")))
    assert ti.pushed == {"unattended": False}
    [chosen] = events(ledger, incident_id, "scenario_chosen")
    assert chosen["actor"] == "田中 太郎"
    assert chosen["message"] == f"シナリオ「{label('database')}」を選択（田中 太郎）"
    assert chosen["data"] == {"chosen": option("database"), "scenario": "database", "by": "田中 太郎",
                              "timed_out": False, "unattended": False}
    [update] = slack.updates
    assert f"✅ 田中 太郎さんが「{label('database')}」を選択しました" in update["text"]
    assert len(slack.messages) == 1  # the question only: no timeout notice


# --- a step's approval ---------------------------------------------------------------------------------


def approver(incident_id: str, scenario: str, step_id: str, *, consent_only: bool = False,
             check_mode: bool | str = False) -> StepApprovalOperator:
    return StepApprovalOperator(task_id=f"approve_{step_id}", incident_id=incident_id, scenario=scenario,
                                step_id=step_id, consent_only=consent_only, defaults=[StepApprovalOperator.REJECT],
                                check_mode=check_mode, response_timeout=dt.timedelta(minutes=15))


def gate_ti(step_id: str, scenario: str, unattended: bool | None) -> FakeTI:
    return FakeTI(f"recover.{scenario}.approve_{step_id}", {("recover.choose_scenario", "unattended"): unattended})


def test_an_approval_rejects_on_timeout_by_default(ledger: Ledger, slack: DecisionSlack, hitl: Hitl) -> None:
    incident_id = open_incident(ledger, "P1")
    operator = approver(incident_id, "database", "failover")
    operator.execute({"ti": gate_ti("failover", "database", False), "task": operator})
    assert operator.defaults == ["Reject"]
    request = operator.decision_request
    assert request["kind"] == "approval" and request["default"] == "Reject"
    assert request["subject"] == f"承認: データベース問題 / フェイルオーバー（{incident_id}）"
    assert request["question"] == "シナリオ「データベース問題」の手順「フェイルオーバー」を実行してよいですか。"
    assert request["on_timeout"] == "既定値「却下」: 手順「フェイルオーバー」は実行しません（本番環境は変更しません）。"
    assert [(o["value"], o["label"]) for o in request["options"]] == [("Approve", "承認"), ("Reject", "却下")]
    assert len(slack.messages) == 1


@pytest.mark.parametrize(("severity", "default"), [("P1", "Approve"), ("P2", "Reject"), ("P4", "Reject")])
def test_an_approvals_default_follows_on_timeout_per_severity(ledger: Ledger, slack: DecisionSlack, hitl: Hitl,
                                                              monkeypatch: pytest.MonkeyPatch, severity: str,
                                                              default: str) -> None:
    use_runbook(monkeypatch, lambda d: d["scenarios"]["database"]["steps"][0].update(
        auto=True, auto_reason="レプリカへの切り替えだけのため", on_timeout={"P1": "approve", "default": "reject"}))
    incident_id = open_incident(ledger, severity)
    operator = approver(incident_id, "database", "failover")
    operator.execute({"ti": gate_ti("failover", "database", False), "task": operator})
    assert operator.defaults == [default] and hitl.waited[0]["defaults"] == [default]
    assert operator.decision_request["on_timeout"].startswith(
        "既定値「承認」: 手順「フェイルオーバー」を実行します（自動実行を許可された手順: レプリカへの切り替えだけのため）。"
        if default == "Approve" else "既定値「却下」")


def test_an_approval_approved_on_timeout(ledger: Ledger, slack: DecisionSlack, hitl: Hitl,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    use_runbook(monkeypatch, lambda d: d["scenarios"]["database"]["steps"][0].update(
        auto=True, auto_reason="レプリカへの切り替えだけのため", on_timeout="approve"))
    incident_id = open_incident(ledger, "P2")
    operator = approver(incident_id, "database", "failover")
    ti = gate_ti("failover", "database", False)
    operator.execute({"ti": ti, "task": operator})
    result = operator.execute_complete({"ti": ti, "task": operator}, timeout("Approve"))
    assert result["approved_by"] == "timeout-default"
    [approval] = events(ledger, incident_id, "approval")
    assert approval["message"] == "手順「フェイルオーバー」を承認（回答なし: 既定値）"
    assert approval["data"] == {"step": "failover", "scenario": "database", "chosen": "Approve", "by": None,
                                "timed_out": True}
    assert "手順「フェイルオーバー」の実行に進みました" in slack.messages[-1]["text"]


def test_a_rejection_by_timeout_is_recorded_and_reported(ledger: Ledger, slack: DecisionSlack, hitl: Hitl) -> None:
    incident_id = open_incident(ledger, "P1")
    operator = approver(incident_id, "database", "failover")
    ti = gate_ti("failover", "database", False)
    operator.execute({"ti": ti, "task": operator})
    result = operator.execute_complete({"ti": ti, "task": operator}, timeout("Reject"))
    assert "approved_by" not in result
    [approval] = events(ledger, incident_id, "approval")
    assert approval["idempotency_key"] == "approval:failover"
    assert narrative.event_sentence(RUNBOOK, approval) == "手順「フェイルオーバー」を却下（回答なし: 既定値）"
    [update] = slack.updates
    assert "⏱ 回答がないまま期限になり、既定値「却下」を適用しました" in update["text"]
    assert slack.messages[-1]["text"].startswith("<@U0LEAD001> 【回答期限切れ】承認: データベース問題 / フェイルオーバー")


def test_a_persons_approval(ledger: Ledger, slack: DecisionSlack, hitl: Hitl) -> None:
    incident_id = open_incident(ledger, "P1")
    operator = approver(incident_id, "database", "failover")
    ti = gate_ti("failover", "database", False)
    operator.execute({"ti": ti, "task": operator})
    result = operator.execute_complete({"ti": ti, "task": operator}, answered("Approve"))
    assert result["approved_by"] == "田中 太郎"
    [approval] = events(ledger, incident_id, "approval")
    assert (approval["actor"], approval["message"]) == ("田中 太郎", "手順「フェイルオーバー」を承認（田中 太郎）")
    assert "✅ 田中 太郎さんが「承認」を選択しました" in slack.updates[0]["text"]
    assert len(slack.messages) == 1


def choose(ledger: Ledger, incident_id: str, actor: str, *, unattended: bool) -> None:
    ledger.record_event(incident_id, at=dt.datetime.now(dt.UTC), kind="scenario_chosen", actor=actor,
                        message="シナリオ: deploy", idempotency_key="scenario_chosen",
                        data={"chosen": option("deploy"), "by": None if unattended else actor,
                              "timed_out": unattended, "unattended": unattended})


def test_consent_is_given_by_whoever_chose_the_scenario(ledger: Ledger, slack: DecisionSlack, hitl: Hitl) -> None:
    incident_id = open_incident(ledger, "P1")
    choose(ledger, incident_id, "田中 太郎", unattended=False)
    operator = approver(incident_id, "deploy", "rollback", consent_only=True)
    result = operator.execute({"ti": gate_ti("rollback", "deploy", False), "task": operator})
    assert result == {"chosen_options": ["Approve"], "approved_by": "田中 太郎", "consent": True}
    assert hitl.waited == [] and slack.messages == []  # nobody is asked
    [approval] = events(ledger, incident_id, "approval")
    assert approval["idempotency_key"] == "approval:rollback" and approval["actor"] == "田中 太郎"
    assert approval["message"] == "手順「ロールバック」を実行（シナリオを選んだ田中 太郎の判断）"
    assert approval["data"] == {"step": "rollback", "scenario": "deploy", "chosen": "Approve", "by": "田中 太郎",
                                "consent": True}
    assert narrative.event_sentence(RUNBOOK, approval) == "手順「ロールバック」を承認（シナリオを選んだ 田中 太郎 の判断）"


def test_consent_of_a_preset_scenario(ledger: Ledger, slack: DecisionSlack, hitl: Hitl) -> None:
    """The scenario named when the run started (choose_scenario skipped: no XCom)."""
    incident_id = open_incident(ledger, "P1")
    operator = approver(incident_id, "deploy", "rollback", consent_only=True)
    result = operator.execute({"ti": gate_ti("rollback", "deploy", None), "task": operator})
    assert result["consent"] is True and result["approved_by"] == "起動時の指定"
    assert hitl.waited == []


def test_consent_is_asked_when_nobody_chose_the_scenario(ledger: Ledger, slack: DecisionSlack, hitl: Hitl) -> None:
    incident_id = open_incident(ledger, "P1")
    choose(ledger, incident_id, "airflow-ui", unattended=True)
    operator = approver(incident_id, "deploy", "rollback", consent_only=True)
    assert operator.execute({"ti": gate_ti("rollback", "deploy", True), "task": operator}) == "awaiting input"
    assert operator.defaults == ["Reject"] and hitl.waited[0]["defaults"] == ["Reject"]
    request = operator.decision_request
    assert request["kind"] == "consent" and request["default"] == "Reject"
    assert request["question"] == (
        "シナリオ「デプロイ後の障害」の手順「ロールバック」を実行してよいですか。"
        "シナリオは回答のないまま開始されたため、この手順は人の承認なしには実行しません。")
    assert request["on_timeout"] == "既定値「却下」: 手順「ロールバック」は実行しません（本番環境は変更しません）。"
    assert "設定: ワークフロー「rollback.yml」、バージョン「1つ前（latest-1）」、待ち時間の上限「15分」" in request["reasons"]
    assert events(ledger, incident_id, "approval") == []
    [post] = slack.messages
    assert post["text"].startswith(f"【判断が必要です】承認: デプロイ後の障害 / ロールバック（{incident_id}）")


def test_consent_rejects_on_timeout_even_under_a_global_approve(ledger: Ledger, slack: DecisionSlack, hitl: Hitl,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def change(data: dict[str, Any]) -> None:
        for scenario in data["scenarios"].values():
            for entry in scenario["steps"]:
                if entry.get("approval"):
                    entry.update(auto=True, auto_reason="テスト用")
        data["decisions"]["approval"]["on_timeout"] = "approve"

    use_runbook(monkeypatch, change)
    incident_id = open_incident(ledger, "P1")
    operator = approver(incident_id, "deploy", "rollback", consent_only=True)
    operator.execute({"ti": gate_ti("rollback", "deploy", True), "task": operator})
    assert operator.defaults == ["Reject"]


def test_the_reason_of_a_conditional_step_is_shown(ledger: Ledger, slack: DecisionSlack, hitl: Hitl) -> None:
    incident_id = open_incident(ledger, "P1")
    operator = StepApprovalOperator(task_id="approve_restore", incident_id=incident_id, scenario="database",
                                    step_id="restore", reason="recover.database.when_restore",
                                    defaults=["Reject"], response_timeout=dt.timedelta(minutes=15))
    ti = FakeTI("recover.database.approve_restore",
                {("recover.database.when_restore", None): {"reason": "フェイルオーバー後も異常が続いています"}})
    operator.execute({"ti": ti, "task": operator})
    assert operator.decision_request["reasons"] == ["フェイルオーバー後も異常が続いています", "設定: スナップショット「最新」"]
    assert "- フェイルオーバー後も異常が続いています" in operator.body


@pytest.mark.parametrize("flag", [True, "True"])
@pytest.mark.parametrize("consent_only", [False, True])
def test_check_mode_approves_itself(ledger: Ledger, slack: DecisionSlack, hitl: Hitl, flag: bool | str,
                                    consent_only: bool) -> None:
    incident_id = open_incident(ledger, "P1")
    operator = approver(incident_id, "database", "failover", consent_only=consent_only, check_mode=flag)
    result = operator.execute({"ti": gate_ti("failover", "database", True), "task": operator})
    assert result == {"chosen_options": ["Approve"], "approved_by": "check-mode", "check_mode": True}
    assert hitl.waited == [] and slack.messages == []
