"""The long-running safety net (notifiers/long_running.py): the DeadlineAlert callback of every DAG,
with the context Airflow hands it, a recording Slack, and a ledger on SQLite for the incident run."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from incident_ops.core.ledger import Ledger
from incident_ops.flows import incident as incident_flow
from incident_ops.notifiers import long_running
from tests.flows.scheduled.conftest import RecordingSlack

QUEUED = "2026-12-07T00:00:00Z"  # Monday 09:00 JST
NOW = dt.datetime(2026, 12, 7, 0, 35, tzinfo=dt.UTC)
RUN_ID = "scheduled__2026-12-07T00:00:00+00:00"


class FlakySlack(RecordingSlack):
    """Fails for the channels in `down`."""

    def __init__(self, down: set[str]) -> None:
        super().__init__()
        self.down = down

    def post(self, channel: str, text: str, **kwargs: Any) -> dict[str, Any]:
        if channel in self.down:
            self.calls += 1
            raise ConnectionError(f"{channel}: 500")
        return super().post(channel, text, **kwargs)


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("INCIDENT_OPS_LEDGER_URL", url)
    ledger = Ledger(url)
    yield ledger
    ledger.dispose()


def use_slack(monkeypatch: pytest.MonkeyPatch, slack: RecordingSlack) -> RecordingSlack:
    monkeypatch.setattr(incident_flow, "services_for", lambda environment: SimpleNamespace(slack=slack, pager=None))
    monkeypatch.setattr(long_running, "_now", lambda: NOW)
    monkeypatch.delenv("AIRFLOW__API__BASE_URL", raising=False)
    return slack


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch) -> RecordingSlack:
    return use_slack(monkeypatch, RecordingSlack())


def context(dag_id: str = "oncall_handoff", run_id: str = RUN_ID, state: str = "running",
            conf: dict[str, Any] | None = None) -> dict[str, Any]:
    """What Airflow passes a deadline callback (Deadline.handle_miss): DAGRunResponse as JSON, the deadline."""
    return {"dag_run": {"dag_run_id": run_id, "dag_id": dag_id, "state": state, "conf": conf or {},
                        "queued_at": QUEUED, "start_date": QUEUED, "run_after": QUEUED, "logical_date": QUEUED},
            "deadline": {"id": "d1", "deadline_time": "2026-12-07T00:30:00+00:00"}}


def test_a_stuck_run_tells_dev_team_once(slack: RecordingSlack) -> None:
    result = long_running.long_running_alert(limit_minutes=30, context=context())
    assert result["sent"]
    [message] = slack.messages
    assert message["channel"] == "#dev-team" and message["key"] == f"long_running:oncall_handoff:{RUN_ID}"
    assert message["text"].splitlines() == [
        "【長時間実行中】オンコール交代通知（oncall_handoff）",
        "開始: 2026-12-07(月) 09:00 JST（35分経過。想定の上限 30分）",
        f"実行ID: {RUN_ID}",
        "止まっているタスク（応答待ち・承認待ち・待機）がないか Airflow の画面で確認してください。",
    ]
    # the callback run again (an executor retry): nothing more in Slack
    long_running.long_running_alert(limit_minutes=30, context=context())
    assert len(slack.messages) == 1


def test_a_link_to_the_run_when_the_ui_address_is_known(slack: RecordingSlack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://127.0.0.1:8080")
    long_running.long_running_alert(limit_minutes=60, context=context("incident_response_report", "manual__r1"))
    assert ("<http://127.0.0.1:8080/dags/incident_response_report/runs/manual__r1|Airflow で実行を開く>"
            in slack.messages[0]["text"].splitlines())


@pytest.mark.parametrize("state", ["success", "failed"])
def test_silent_when_the_run_has_finished(slack: RecordingSlack, state: str) -> None:
    result = long_running.long_running_alert(limit_minutes=30, context=context(state=state))
    assert not result["sent"] and state in result["reason"] and slack.messages == []


def test_the_incident_run_also_tells_the_incident_channel(ledger: Ledger, slack: RecordingSlack) -> None:
    detected = dt.datetime(2026, 12, 7, 0, 0, tzinfo=dt.UTC)
    record, _ = ledger.open_or_join(fingerprint="fp", severity="P4", symptom="diagnosis_broken", title="診断が遅い",
                                    service="backend", environment="production", reporter="test", at=detected,
                                    occurrence_key="o", detected_at=detected, dag_run_id="manual__inc")
    ledger.update(record["id"], detected, slack_channel="incident-20261207", slack_channel_id="C0INC0001")
    long_running.long_running_alert(limit_minutes=360, context=context("incident_response", "manual__inc"))
    assert [m["channel"] for m in slack.messages] == ["#dev-team", "C0INC0001"]
    assert slack.messages[0]["text"] == slack.messages[1]["text"]
    lines = slack.messages[0]["text"].splitlines()
    assert lines[0] == "【長時間実行中】障害対応フロー（incident_response）"
    assert f"インシデントID: {record['id']} / 障害レベル: P4（対応開始の確認待ち）" in lines
    # an incident run that joined another incident (none of its own): #dev-team only
    slack.messages.clear()
    long_running.long_running_alert(limit_minutes=360, context=context("incident_response", "manual__joined"))
    assert [m["channel"] for m in slack.messages] == ["#dev-team"]


def test_one_channel_down_still_tells_the_other(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    slack = use_slack(monkeypatch, FlakySlack(down={"#dev-team"}))
    detected = dt.datetime(2026, 12, 7, 0, 0, tzinfo=dt.UTC)
    record, _ = ledger.open_or_join(fingerprint="fp", severity="P1", symptom="site_down", title="サイトが落ちた",
                                    service="backend", environment="production", reporter="test", at=detected,
                                    occurrence_key="o", detected_at=detected, dag_run_id="manual__inc")
    ledger.update(record["id"], detected, slack_channel="incident-20261207", slack_channel_id="C0INC0001")
    result = long_running.long_running_alert(limit_minutes=360, context=context("incident_response", "manual__inc"))
    assert result["sent"] and result["channels"]["#dev-team"]["ok"] is False
    assert [m["channel"] for m in slack.messages] == ["C0INC0001"]


def test_a_notice_that_reached_nobody_fails_the_callback(monkeypatch: pytest.MonkeyPatch) -> None:
    use_slack(monkeypatch, FlakySlack(down={"#dev-team"}))
    with pytest.raises(RuntimeError, match="reached nobody"):
        long_running.long_running_alert(limit_minutes=30, context=context())


def test_the_callback_signature_is_what_airflow_calls() -> None:
    from airflow.sdk._shared.module_loading import accepts_context, import_string

    alert = long_running.stuck_run_alert("postmortem_reminders")
    assert import_string(alert.callback.path) is long_running.long_running_alert
    assert accepts_context(long_running.long_running_alert)
    assert alert.interval == dt.timedelta(minutes=30) and alert.callback.kwargs == {"limit_minutes": 30}
    with pytest.raises(KeyError, match="SAFETY_NETS"):
        long_running.stuck_run_alert("not_a_dag")
