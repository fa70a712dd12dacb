"""The Slack side of a waiting decision (flows/decisions.py) against a temporary ledger and a recording
Slack (no server): the question posted once per try and recorded, the halfway reminder to the on-call
engineer in its thread, the message updated in place when answered, the dev lead told of a timeout."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from incident_ops.core.ledger import LEDGER_URL_ENV, Ledger
from incident_ops.core.oncall import rotation_engineer
from incident_ops.core.runbook import Runbook
from incident_ops.flows import decisions as flow
from incident_ops.flows import incident as incident_flow
from tests.flows.scheduled.conftest import RecordingSlack

JST = dt.timezone(dt.timedelta(hours=9))
NOW = dt.datetime(2026, 12, 1, 10, 0, tzinfo=JST)  # a Tuesday: 渡辺 舞's rotation week
TASK = "recover.database.approve_failover"


class DecisionSlack(RecordingSlack):
    """RecordingSlack that also records blocks, thread replies and updates."""

    def __init__(self) -> None:
        super().__init__()
        self.replies: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []
        self.fail: set[str] = set()

    def post(self, channel: str, text: str, *, idempotency_key: str, thread_ts: str | None = None,
             blocks: Any = None) -> dict[str, Any]:
        if "post" in self.fail:
            raise RuntimeError("slack is down")
        before = len(self.messages)
        posted = super().post(channel, text, idempotency_key=idempotency_key, thread_ts=thread_ts, blocks=blocks)
        if len(self.messages) > before:
            self.messages[-1].update(blocks=blocks, thread_ts=thread_ts)
        return posted

    def reply(self, channel: str, thread_ts: str, text: str, idempotency_key: str) -> dict[str, Any]:
        if "reply" in self.fail:
            raise RuntimeError("slack is down")
        if any(r["key"] == idempotency_key for r in self.replies):
            return {"ts": "dup", "channel": channel, "posted": False}
        self.replies.append({"channel": channel, "thread_ts": thread_ts, "text": text, "key": idempotency_key})
        return {"ts": f"{thread_ts}.r", "channel": channel, "posted": True}

    def update(self, channel: str, ts: str, text: str, *, blocks: Any = None) -> dict[str, Any]:
        if "update" in self.fail:
            raise RuntimeError("slack is down")
        self.updates.append({"channel": channel, "ts": ts, "text": text, "blocks": blocks})
        return {"ts": ts, "channel": channel}


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv(LEDGER_URL_ENV, url)
    monkeypatch.setattr(flow, "_now", lambda: NOW)
    ledger = Ledger(url)
    yield ledger
    ledger.dispose()


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch) -> DecisionSlack:
    slack = DecisionSlack()
    services = SimpleNamespace(slack=slack)
    monkeypatch.setattr(incident_flow, "services_for", lambda environment: services)
    return slack


def open_incident(ledger: Ledger, *, channel_id: str | None = "C0INCIDENT", severity: str = "P1") -> str:
    incident, _ = ledger.open_or_join(fingerprint="production:backend:db", severity=severity, symptom="DB <!here>",
                                      title="DB", service="backend", environment="production", reporter="test",
                                      at=NOW - dt.timedelta(minutes=20))
    if channel_id:
        ledger.update(incident["id"], NOW, slack_channel="#inc-db", slack_channel_id=channel_id)
    return incident["id"]


def request(incident_id: str, *, task_id: str = TASK, try_number: int = 1) -> dict[str, Any]:
    return {"incident_id": incident_id, "kind": "approval", "subject": "承認: データベース問題 / フェイルオーバー",
            "question": "手順「フェイルオーバー」（rds_failover）を実行してよいですか。",
            "options": [{"value": "Approve", "label": "承認", "style": "primary"},
                        {"value": "Reject", "label": "却下", "style": "danger"}],
            "on_timeout": "既定値「却下」: 手順「フェイルオーバー」は実行しません（本番環境は変更しません）。",
            "suggestion": None, "reasons": ["パラメータ: なし"], "default": "Reject",
            "dag_id": "incident_response", "run_id": "manual__r1", "task_id": task_id, "map_index": -1,
            "try_number": try_number, "deadline": (NOW + dt.timedelta(minutes=15)).isoformat(), "minutes": 15,
            "link": "https://airflow.example/dags/incident_response/runs/manual__r1/tasks/x/required_actions"}


def events(ledger: Ledger, incident_id: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in ledger.events(incident_id) if e["kind"] == kind]


# --- announce ----------------------------------------------------------------------------------------


def test_announce_posts_the_question_with_buttons_and_records_it(ledger: Ledger, slack: DecisionSlack) -> None:
    incident_id = open_incident(ledger)
    data = flow.announce(request(incident_id))
    [post] = slack.messages
    assert post["channel"] == "C0INCIDENT"
    assert post["key"] == f"{incident_id}:decision:{TASK}:1"
    lines = post["text"].splitlines()
    assert lines[0] == "【判断が必要です】承認: データベース問題 / フェイルオーバー"
    assert lines[1] == f"インシデントID: {incident_id}（P1 / DB &lt;!here&gt;）"
    assert lines[2:4] == ["手順「フェイルオーバー」（rds_failover）を実行してよいですか。", "・パラメータ: なし"]
    assert "回答期限: 12/01 10:15 JST（15分以内）" in lines
    assert "期限までに回答がない場合: 既定値「却下」: 手順「フェイルオーバー」は実行しません（本番環境は変更しません）。" in lines
    assert lines[-1] == ("<https://airflow.example/dags/incident_response/runs/manual__r1/tasks/x/required_actions"
                         "|Airflow の画面で開く>（Required Actions）")
    section, actions = post["blocks"]
    assert section["text"]["text"] == post["text"]
    assert [json.loads(b["value"]) for b in actions["elements"]] == [
        {"incident_id": incident_id, "dag_id": "incident_response", "run_id": "manual__r1", "task_id": TASK,
         "map_index": -1, "option": option} for option in ("Approve", "Reject")]

    [recorded] = events(ledger, incident_id, "decision_posted")
    assert recorded["idempotency_key"] == f"decision:{TASK}:1"
    assert recorded["message"] == "判断を依頼: 承認: データベース問題 / フェイルオーバー"
    assert recorded["data"] == data
    assert (data["channel"], data["ts"], data["deadline"]) == (
        "C0INCIDENT", post["ts"], (NOW + dt.timedelta(minutes=15)).isoformat())
    assert (data["task_id"], data["options"], data["default"], data["kind"], data["text"]) == (
        TASK, ["Approve", "Reject"], "Reject", "approval", post["text"])
    assert flow.posted_decision(incident_id, TASK) == recorded


def test_announce_twice_posts_and_records_once(ledger: Ledger, slack: DecisionSlack) -> None:
    incident_id = open_incident(ledger)
    first = flow.announce(request(incident_id))
    second = flow.announce(request(incident_id))
    assert len(slack.messages) == 1 and first["ts"] == second["ts"]
    assert len(events(ledger, incident_id, "decision_posted")) == 1


def test_a_retry_asks_again_and_the_latest_message_counts(ledger: Ledger, slack: DecisionSlack) -> None:
    incident_id = open_incident(ledger)
    flow.announce(request(incident_id, try_number=1))
    flow.announce(request(incident_id, try_number=2))
    assert [m["key"] for m in slack.messages] == [f"{incident_id}:decision:{TASK}:1", f"{incident_id}:decision:{TASK}:2"]
    assert flow.posted_decision(incident_id, TASK)["data"]["ts"] == slack.messages[1]["ts"]


def test_without_an_incident_channel_the_question_goes_to_dev_team(ledger: Ledger, slack: DecisionSlack) -> None:
    incident_id = open_incident(ledger, channel_id=None)
    data = flow.announce(request(incident_id))
    assert [m["channel"] for m in slack.messages] == ["#dev-team"] and data["channel"] == "#dev-team"


def test_a_slack_error_is_logged_not_raised(ledger: Ledger, slack: DecisionSlack,
                                            caplog: pytest.LogCaptureFixture) -> None:
    incident_id = open_incident(ledger)
    slack.fail.add("post")
    assert flow.announce(request(incident_id)) is None
    assert events(ledger, incident_id, "decision_posted") == []
    assert "it is asked in the Airflow UI" in caplog.text


def test_no_slack_configured(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    incident_id = open_incident(ledger)
    monkeypatch.setattr(incident_flow, "services_for", lambda environment: SimpleNamespace(slack=None))
    assert flow.announce(request(incident_id)) is None
    assert flow.remind(incident_id, TASK, "failover") == {"reminded": False, "reason": "no decision message was posted"}
    assert flow.conclude(incident_id, TASK, option="Reject", by=None, outcome="x") == {"updated": False,
                                                                                       "told_lead": False}


def test_services_failing_is_logged_not_raised(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    incident_id = open_incident(ledger)

    def broken(environment: str) -> Any:
        raise RuntimeError("no connection configured")

    monkeypatch.setattr(incident_flow, "services_for", broken)
    assert flow.announce(request(incident_id)) is None
    assert flow.conclude(incident_id, TASK, option="Reject", by=None, outcome="x") == {"updated": False,
                                                                                       "told_lead": False}


# --- answer_recorded -----------------------------------------------------------------------------------


def test_answers_on_the_ledger(ledger: Ledger) -> None:
    incident_id = open_incident(ledger)
    assert not flow.answer_recorded(incident_id, TASK, "failover")
    ledger.record_event(incident_id, at=NOW, kind="approval", message="m", idempotency_key="approval:restore")
    assert not flow.answer_recorded(incident_id, TASK, "failover")  # another step's
    ledger.record_event(incident_id, at=NOW, kind="approval", message="m", idempotency_key="approval:failover")
    assert flow.answer_recorded(incident_id, TASK, "failover")
    assert not flow.answer_recorded(incident_id, TASK, "failover", since=NOW + dt.timedelta(minutes=1))
    assert not flow.answer_recorded(incident_id, "recover.choose_scenario", None)
    ledger.record_event(incident_id, at=NOW, kind="decision_answered", message="m",
                        idempotency_key="decision_answered:recover.choose_scenario")
    assert flow.answer_recorded(incident_id, "recover.choose_scenario", None)


def test_the_scenario_choice_is_answered_by_scenario_chosen(ledger: Ledger) -> None:
    incident_id = open_incident(ledger)
    ledger.record_event(incident_id, at=NOW, kind="scenario_chosen", message="m", idempotency_key="scenario_chosen")
    assert flow.answer_recorded(incident_id, "recover.choose_scenario", None)


# --- remind ------------------------------------------------------------------------------------------


def test_remind_mentions_the_oncall_engineer_in_the_thread_once(ledger: Ledger, slack: DecisionSlack,
                                                                runbook: Runbook) -> None:
    incident_id = open_incident(ledger)
    data = flow.announce(request(incident_id))
    engineer = rotation_engineer(runbook, NOW)
    assert (engineer.id, engineer.slack_user_id) == ("watanabe", "U0WATANA1")
    assert flow.remind(incident_id, TASK, "failover") == {"reminded": True, "to": "watanabe"}
    [reply] = slack.replies
    assert (reply["channel"], reply["thread_ts"]) == ("C0INCIDENT", data["ts"])
    assert reply["text"].splitlines() == [
        "<@U0WATANA1> 【リマインド】まだ回答がありません: 承認: データベース問題 / フェイルオーバー",
        "回答期限: 12/01 10:15 JST",
        "期限までに回答がない場合: 既定値「却下」: 手順「フェイルオーバー」は実行しません（本番環境は変更しません）。",
    ]
    [reminded] = events(ledger, incident_id, "decision_reminded")
    assert reminded["message"] == "回答のリマインド（渡辺 舞）: 承認: データベース問題 / フェイルオーバー"
    assert reminded["data"] == {"task_id": TASK, "to": "watanabe"}

    flow.remind(incident_id, TASK, "failover")  # a retried reminder task
    assert len(slack.replies) == 1 and len(events(ledger, incident_id, "decision_reminded")) == 1


def test_remind_follows_the_rotation(ledger: Ledger, slack: DecisionSlack, monkeypatch: pytest.MonkeyPatch) -> None:
    incident_id = open_incident(ledger)
    flow.announce(request(incident_id))
    monkeypatch.setattr(flow, "_now", lambda: NOW + dt.timedelta(days=6))  # the next week: 田中 太郎
    assert flow.remind(incident_id, TASK, "failover") == {"reminded": True, "to": "tanaka"}
    assert slack.replies[0]["text"].startswith("<@U0TANAKA1> 【リマインド】")


def test_no_reminder_once_answered(ledger: Ledger, slack: DecisionSlack) -> None:
    incident_id = open_incident(ledger)
    flow.announce(request(incident_id))
    ledger.record_event(incident_id, at=NOW, kind="approval", message="承認", idempotency_key="approval:failover")
    assert flow.remind(incident_id, TASK, "failover") == {"reminded": False, "reason": "answered"}
    assert slack.replies == [] and events(ledger, incident_id, "decision_reminded") == []


def test_no_reminder_without_a_message(ledger: Ledger, slack: DecisionSlack) -> None:
    incident_id = open_incident(ledger)
    assert flow.remind(incident_id, TASK, "failover") == {"reminded": False,
                                                           "reason": "no decision message was posted"}
    assert slack.replies == []


def test_a_reminder_lost_to_slack_is_not_recorded(ledger: Ledger, slack: DecisionSlack) -> None:
    incident_id = open_incident(ledger)
    flow.announce(request(incident_id))
    slack.fail.add("reply")
    assert flow.remind(incident_id, TASK, "failover") == {"reminded": False, "reason": "Slack failed"}
    assert events(ledger, incident_id, "decision_reminded") == []


# --- conclude ----------------------------------------------------------------------------------------


def test_a_persons_answer_updates_the_message_in_place(ledger: Ledger, slack: DecisionSlack) -> None:
    incident_id = open_incident(ledger)
    data = flow.announce(request(incident_id))
    result = flow.conclude(incident_id, TASK, option="Approve", by="田中 太郎", outcome="手順「フェイルオーバー」を実行します。")
    assert result == {"updated": True, "told_lead": False}
    [update] = slack.updates
    assert (update["channel"], update["ts"]) == ("C0INCIDENT", data["ts"])
    line = "✅ 田中 太郎さんが「承認」を選択しました（12/01 10:00 JST）"
    assert update["text"] == f"{data['text']}\n{line}"
    assert [b["type"] for b in update["blocks"]] == ["section", "context"]  # no buttons left
    assert update["blocks"][1]["elements"][0]["text"] == line
    assert len(slack.messages) == 1  # nobody else is told


def test_a_timeout_updates_the_message_and_tells_the_dev_lead(ledger: Ledger, slack: DecisionSlack) -> None:
    incident_id = open_incident(ledger)
    flow.announce(request(incident_id))
    outcome = "既定値「却下」: 手順「フェイルオーバー」は実行しません（本番環境は変更しません）。"
    assert flow.conclude(incident_id, TASK, option="Reject", by=None, outcome=outcome) == {"updated": True,
                                                                                         "told_lead": True}
    [update] = slack.updates
    assert update["text"].endswith(
        f"⏱ 回答がないまま期限になり、既定値「却下」を適用しました（12/01 10:00 JST）\n{outcome}")
    notice = slack.messages[-1]
    assert notice["channel"] == "C0INCIDENT" and notice["key"] == f"{incident_id}:decision_timeout:{TASK}"
    assert notice["text"].splitlines() == [
        "<@U0LEAD001> 【回答期限切れ】承認: データベース問題 / フェイルオーバー",
        f"インシデントID: {incident_id}",
        "回答がないため既定値「却下」を適用しました。",
        outcome,
    ]
    flow.conclude(incident_id, TASK, option="Reject", by=None, outcome=outcome)  # a retry tells nobody twice
    assert len(slack.messages) == 2


def test_a_timeout_without_a_message_still_tells_the_dev_lead(ledger: Ledger, slack: DecisionSlack) -> None:
    incident_id = open_incident(ledger, channel_id=None)
    assert flow.conclude(incident_id, TASK, option="Reject", by=None, outcome="o") == {"updated": False,
                                                                                     "told_lead": True}
    [notice] = slack.messages
    assert notice["channel"] == "#dev-team"
    assert notice["text"].splitlines()[0] == f"<@U0LEAD001> 【回答期限切れ】{TASK}"


def test_an_update_lost_to_slack_still_tells_the_lead(ledger: Ledger, slack: DecisionSlack) -> None:
    incident_id = open_incident(ledger)
    flow.announce(request(incident_id))
    slack.fail.add("update")
    assert flow.conclude(incident_id, TASK, option="Reject", by=None, outcome="o") == {"updated": False,
                                                                                     "told_lead": True}
