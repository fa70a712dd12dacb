"""The phase time-box deadline callback (notifiers/time_box.py), without Airflow: a ledger on SQLite,
a recording Slack, the context Airflow hands a DeadlineAlert callback."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from incident_ops.core.ledger import Ledger
from incident_ops.core.runbook import Runbook
from incident_ops.flows import incident as incident_flow
from incident_ops.notifiers import time_box
from tests.flows.scheduled.conftest import RecordingSlack

JST = dt.timezone(dt.timedelta(hours=9))
DETECTED = dt.datetime(2026, 12, 4, 22, 0, tzinfo=JST)  # a Friday night
RUN_ID = "manual__2026-12-04T13:00:00+00:00"
LEAD = "U0LEAD001"


class Slack(RecordingSlack):
    """RecordingSlack plus invite (a mention in a channel brings the person in first)."""

    def __init__(self) -> None:
        super().__init__()
        self.invited: list[tuple[str, list[str]]] = []

    def invite(self, channel: str, user_ids: list[str]) -> None:
        self.invited.append((channel, list(user_ids)))


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("INCIDENT_OPS_LEDGER_URL", url)
    return Ledger(url)


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch) -> Slack:
    slack = Slack()
    services = SimpleNamespace(slack=slack, pager=None, settings=SimpleNamespace(smtp=None))
    monkeypatch.setattr(incident_flow, "services_for", lambda environment: services)
    return slack


def open_incident(ledger: Ledger, *, severity: str = "P2", run_id: str = RUN_ID, channel: bool = True,
                  kinds: tuple[str, ...] = ()) -> dict[str, Any]:
    record, _ = ledger.open_or_join(fingerprint=f"fp-{run_id}", severity=severity, symptom="diagnosis_broken",
                                    title="診断機能が動作しない", service="backend", environment="production",
                                    reporter="test", at=DETECTED, occurrence_key="o", detected_at=DETECTED,
                                    dag_run_id=run_id)
    if channel:
        ledger.update(record["id"], DETECTED, slack_channel="incident-20261204", slack_channel_id="C0INC0001")
    for kind in kinds:
        ledger.record_event(record["id"], at=DETECTED, kind=kind, actor="t", message=kind, idempotency_key=kind)
    return ledger.get(record["id"])


def context(run_id: str = RUN_ID, conf: dict[str, Any] | None = None) -> dict[str, Any]:
    """What Airflow passes a deadline callback (Deadline.handle_miss): the run and the deadline."""
    return {"dag_run": {"dag_run_id": run_id, "dag_id": "incident_response", "conf": conf or {}, "state": "running"},
            "deadline": {"id": "d1", "deadline_time": "2026-12-04T13:15:00+00:00"}}


def at(minutes: float) -> dt.datetime:
    return DETECTED + dt.timedelta(minutes=minutes)


def test_still_in_phase_1_at_15_minutes_tells_the_channel_and_the_dev_lead(ledger: Ledger, slack: Slack) -> None:
    record = open_incident(ledger, kinds=("classified", "notified"))
    result = time_box.notify_time_box(1, run_id=RUN_ID, now=at(15.5))
    assert result["sent"] and result["reached"] == 1
    [message] = slack.messages
    assert message["channel"] == "C0INC0001" and message["key"] == f"{record['id']}:time_box:phase1"
    assert message["text"].splitlines()[0] == f"<@{LEAD}> 【時間枠超過】Phase 1: 検知と初期対応（0-15分）"
    assert "発生時刻: 12/04(金) 22:00（15分経過）" in message["text"]
    assert slack.invited == [("C0INC0001", [LEAD])]
    events = [e for e in ledger.events(record["id"]) if e["kind"] == "time_box"]
    assert [e["idempotency_key"] for e in events] == ["time_box:phase1"]


def test_the_callback_is_idempotent_per_incident_and_phase(ledger: Ledger, slack: Slack) -> None:
    open_incident(ledger)
    assert time_box.notify_time_box(1, run_id=RUN_ID, now=at(15))["sent"]
    again = time_box.notify_time_box(1, run_id=RUN_ID, now=at(16))
    assert not again["sent"] and len(slack.messages) == 1


def test_silent_when_phase_1_is_done(ledger: Ledger, slack: Slack) -> None:
    open_incident(ledger, kinds=("declared",))
    result = time_box.notify_time_box(1, run_id=RUN_ID, now=at(15))
    assert not result["sent"] and result["reached"] == 2 and slack.messages == []


def test_still_in_phase_2_at_60_minutes(ledger: Ledger, slack: Slack) -> None:
    open_incident(ledger, kinds=("declared", "evidence"))
    assert time_box.notify_time_box(2, run_id=RUN_ID, now=at(60))["sent"]
    assert slack.messages[0]["text"].splitlines()[0] == f"<@{LEAD}> 【時間枠超過】Phase 2: 調査と診断（15-60分）"


def test_silent_once_the_scenario_is_decided_or_the_incident_recovered(ledger: Ledger, slack: Slack) -> None:
    open_incident(ledger, kinds=("declared", "evidence", "scenario_chosen"))
    assert not time_box.notify_time_box(2, run_id=RUN_ID, now=at(61))["sent"]
    other = open_incident(ledger, run_id="manual__other", kinds=("declared",))
    ledger.mark_recovered(other["id"], at(40))
    assert not time_box.notify_time_box(2, run_id="manual__other", now=at(61))["sent"]
    assert slack.messages == []


def test_without_an_incident_channel_it_goes_to_dev_team(ledger: Ledger, slack: Slack) -> None:
    open_incident(ledger, channel=False)
    time_box.notify_time_box(1, run_id=RUN_ID, now=at(15))
    [message] = slack.messages
    assert message["channel"] == "#dev-team"


def test_a_run_that_drives_no_incident_is_silent(ledger: Ledger, slack: Slack) -> None:
    result = time_box.notify_time_box(1, run_id="manual__joined-another", now=at(15))
    assert not result["sent"] and "no open incident" in result["reason"] and slack.messages == []


def test_the_deadline_callback_with_airflows_context(ledger: Ledger, slack: Slack,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    record = open_incident(ledger)
    # The callback reads the clock (an adapter): make it 16 minutes after detection.
    monkeypatch.setattr(time_box, "_now", lambda: at(16))
    result = time_box.phase_time_box_alert(phase=1, context=context())
    assert result["sent"] and result["incident_id"] == record["id"]
    # A run started for a given incident id (conf) finds it by id.
    result = time_box.phase_time_box_alert(phase=2, context=context("manual__x", {"incident_id": record["id"]}))
    assert not result["sent"] and result["reached"] == 1  # 16 minutes: Phase 2's box has not ended


def test_the_callback_signature_is_what_airflow_calls(runbook: Runbook) -> None:
    from airflow.sdk._shared.module_loading import accepts_context

    assert accepts_context(time_box.phase_time_box_alert)
