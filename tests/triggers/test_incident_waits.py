"""The acknowledgement and first-notice waits, polled in the triggerer: `run()` against a real SQLite
ledger (no PagerDuty, or a scripted one); what is recorded mid-wait is written by the test between two
polls (a wrapped read), so no test depends on the clock's speed."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from incident_ops.core.ledger import LEDGER_URL_ENV, Ledger
from incident_ops.flows import escalation as escalation_flow
from incident_ops.flows import incident as incident_flow
from incident_ops.triggers import health, incident_waits
from incident_ops.triggers.incident_waits import AcknowledgementTrigger, FirstNoticeTrigger

POLL = 0.01


@pytest.fixture(autouse=True)
def no_first_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "MIN_FIRST_WAIT", 0.0)


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ledger]:
    monkeypatch.setenv(LEDGER_URL_ENV, f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.setattr(incident_flow, "services_for", lambda environment: SimpleNamespace(pager=None))
    ledger = Ledger()
    yield ledger
    ledger.dispose()


@pytest.fixture
def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def open_incident(ledger: Ledger, now: dt.datetime, severity: str, detected_ago: dt.timedelta) -> str:
    detected = now - detected_ago
    record, _ = ledger.open_or_join(fingerprint=f"fp-{severity}-{detected_ago}", severity=severity, symptom="s",
                                    title="t", service="backend", environment="production", reporter="test",
                                    at=detected, occurrence_key="o", detected_at=detected)
    return record["id"]


def raise_to(ledger: Ledger, incident_id: str, severity: str, now: dt.datetime) -> None:
    """What the webhook intake does when a higher alarm joins the incident."""
    record = ledger.get(incident_id)
    ledger.open_or_join(fingerprint=record["fingerprint"], severity=severity, symptom="s", title="t",
                        service="backend", environment="production", reporter="webhook", at=now,
                        occurrence_key=f"raise-{severity}")
    assert ledger.get(incident_id)["severity"] == severity


def deadline_of(incident_id: str) -> float:
    return incident_flow.current_response_deadline({"id": incident_id}).timestamp()


def ack_trigger(incident_id: str, **kwargs: Any) -> AcknowledgementTrigger:
    kwargs.setdefault("deadline", deadline_of(incident_id))
    return AcknowledgementTrigger(incident_id, "production", **{"poll": POLL, "pagerduty_poll": 0, **kwargs})


def first_event(trigger: Any) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    return asyncio.run(asyncio.wait_for(go(), timeout=30))


def on_call(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, before: Callable[[int], None]) -> list[int]:
    """Wrap `owner.name` so that `before(n)` runs before its n-th call (1-based); returns the calls."""
    real = getattr(owner, name)
    calls: list[int] = []

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(calls) + 1)
        before(len(calls))
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapped)
    return calls


# --- the acknowledgement -------------------------------------------------------------------------


def test_an_acknowledgement_recorded_while_waiting_fires_with_who_and_when(
        ledger: Ledger, now: dt.datetime, monkeypatch: pytest.MonkeyPatch) -> None:
    incident_id = open_incident(ledger, now, "P1", dt.timedelta(minutes=1))
    at = now.replace(microsecond=0)

    def acknowledge_on_the_third_look(n: int) -> None:
        if n == 3:  # what the PagerDuty webhook / incident_acknowledge records
            ledger.acknowledge(incident_id, at, "tanaka")

    looks = on_call(monkeypatch, incident_waits, "ledger_acknowledgement", acknowledge_on_the_third_look)
    event = first_event(ack_trigger(incident_id, pagerduty_poll=3600))
    assert event["acknowledged"]["by"] == "tanaka" and event["acknowledged"]["source"] == "ledger"
    assert dt.datetime.fromisoformat(event["acknowledged"]["at"]).replace(tzinfo=dt.UTC) == at
    assert len(looks) == 3  # kept waiting until it was recorded, ended at the look that saw it
    assert "timeout" not in event


def test_the_deadline_passing_fires_a_timeout(ledger: Ledger, now: dt.datetime) -> None:
    # P1 (15 min) detected just under 15 min ago: the deadline is a moment away, nobody acknowledges.
    incident_id = open_incident(ledger, now, "P1", dt.timedelta(minutes=15) - dt.timedelta(seconds=0.3))
    event = first_event(ack_trigger(incident_id, poll=0.05))
    assert event["timeout"] is True and "acknowledged" not in event
    assert dt.datetime.fromisoformat(event["deadline"]).timestamp() == pytest.approx(deadline_of(incident_id), abs=1e-3)
    assert ledger.get(incident_id)["acknowledged_at"] is None


def test_a_higher_severity_recorded_mid_wait_ends_it_at_the_shorter_deadline(
        ledger: Ledger, now: dt.datetime, monkeypatch: pytest.MonkeyPatch) -> None:
    # P2 (30 min) detected 20 min ago: 10 min left. A P1 alarm joins at the second look: P1's 15 min
    # have passed, so the wait ends now with P1's deadline, not at P2's.
    incident_id = open_incident(ledger, now, "P2", dt.timedelta(minutes=20))
    p2_deadline = deadline_of(incident_id)
    detected = ledger.get(incident_id)["detected_at"]

    def raise_on_the_second_look(n: int) -> None:
        if n == 2:
            raise_to(ledger, incident_id, "P1", now)

    looks = on_call(monkeypatch, incident_waits, "ledger_acknowledgement", raise_on_the_second_look)
    event = first_event(ack_trigger(incident_id, deadline=p2_deadline, pagerduty_poll=3600))
    assert event["timeout"] is True
    ended = dt.datetime.fromisoformat(event["deadline"])
    assert ended < dt.datetime.fromtimestamp(p2_deadline, dt.UTC)
    assert ended == incident_flow._aware(detected) + dt.timedelta(minutes=15)
    assert len(looks) == 2


def test_a_failing_poll_is_logged_and_the_wait_goes_on(
        ledger: Ledger, now: dt.datetime, monkeypatch: pytest.MonkeyPatch) -> None:
    incident_id = open_incident(ledger, now, "P1", dt.timedelta(minutes=1))

    def ledger_down_twice(n: int) -> None:
        if n <= 2:
            raise ConnectionError("ledger unreachable")
        if n == 4:
            ledger.acknowledge(incident_id, now, "suzuki")

    def deadline_down_once(n: int) -> None:
        if n == 1:
            raise ConnectionError("ledger unreachable")

    trigger = ack_trigger(incident_id, pagerduty_poll=3600)
    looks = on_call(monkeypatch, incident_waits, "ledger_acknowledgement", ledger_down_twice)
    deadline_reads = on_call(monkeypatch, incident_flow, "current_response_deadline", deadline_down_once)
    warnings: list[str] = []
    monkeypatch.setattr(AcknowledgementTrigger, "log", SimpleNamespace(
        warning=lambda message, *args: warnings.append(message % args), info=lambda *args: None))
    event = first_event(trigger)
    assert event["acknowledged"]["by"] == "suzuki" and event["acknowledged"]["source"] == "ledger"
    # rounds 1-3 found nothing (two failed looks) and read the deadline (the first read failed)
    assert len(looks) == 4 and len(deadline_reads) == 3
    assert len(warnings) == 3
    assert all(incident_id in message and "ledger unreachable" in message for message in warnings)


class ScriptedPagerDuty:
    """PagerDuty's REST side as `acknowledgement` uses it: acknowledged from the `acknowledged_from`-th
    lookup on (never when None); `down` raises instead; `before_lookup(n)` runs first."""

    rest = True

    def __init__(self, at: dt.datetime, acknowledged_from: int | None = 1, down: bool = False,
                 before_lookup: Callable[[int], None] = lambda n: None) -> None:
        self.at = at
        self.acknowledged_from = acknowledged_from
        self.down = down
        self.before_lookup = before_lookup
        self.lookups: list[str] = []

    def incident_for_dedup_key(self, dedup_key: str) -> dict[str, Any]:
        self.lookups.append(dedup_key)
        self.before_lookup(len(self.lookups))
        if self.down:
            raise ConnectionError("PagerDuty 503")
        if self.acknowledged_from is not None and len(self.lookups) >= self.acknowledged_from:
            return {"acknowledged_at": self.at.isoformat(), "acknowledged_by": "PTANAKA"}
        return {"acknowledged_at": None}


def paged(ledger: Ledger, incident_id: str, now: dt.datetime, monkeypatch: pytest.MonkeyPatch,
          pagerduty: ScriptedPagerDuty) -> None:
    ledger.record_event(incident_id, at=now, kind="notified", actor="incident_ops", message="oncall via pagerduty: ok",
                        data={"results": [{"target": "oncall", "via": "pagerduty", "ok": True}]},
                        idempotency_key="notified")
    monkeypatch.setattr(incident_flow, "services_for", lambda environment: SimpleNamespace(pager=pagerduty))


def test_pagerduty_is_the_fallback_asked_less_often_than_the_ledger(
        ledger: Ledger, now: dt.datetime, monkeypatch: pytest.MonkeyPatch) -> None:
    incident_id = open_incident(ledger, now, "P1", dt.timedelta(minutes=1))
    pagerduty = ScriptedPagerDuty(now, acknowledged_from=None)
    paged(ledger, incident_id, now, monkeypatch, pagerduty)
    # The trigger's own monotonic clock: 10 s more at each reading (asyncio keeps the real one).
    ticks = iter(range(0, 10_000, 10))
    monkeypatch.setattr(incident_waits, "time", SimpleNamespace(time=time.time, monotonic=lambda: next(ticks)))
    trigger = ack_trigger(incident_id, pagerduty_poll=25)  # created at 0 (the task had just asked)
    asked: list[str] = []

    def ledger_look(n: int) -> None:
        if len(asked) == 4:  # the webhook arrives before the fifth round
            ledger.acknowledge(incident_id, now, "tanaka")
        asked.append("ledger")

    on_call(monkeypatch, incident_waits, "ledger_acknowledgement", ledger_look)
    real_acknowledgement = incident_flow.acknowledgement

    def acknowledgement(incident: dict, *, ask_pagerduty: bool = True) -> dict | None:
        if ask_pagerduty:
            asked.append("pagerduty")
        return real_acknowledgement(incident, ask_pagerduty=ask_pagerduty)

    monkeypatch.setattr(incident_flow, "acknowledgement", acknowledgement)
    event = first_event(trigger)
    assert event["acknowledged"]["source"] == "ledger"
    # rounds at 10, 20, 30, 40, 50 s: PagerDuty once 25 s had passed, the ledger alone in the others
    assert asked == ["ledger", "ledger", "pagerduty", "ledger", "ledger"]
    assert pagerduty.lookups == [incident_id]


def test_an_acknowledgement_in_pagerduty_without_its_webhook_ends_the_wait_and_is_recorded(
        ledger: Ledger, now: dt.datetime, monkeypatch: pytest.MonkeyPatch) -> None:
    incident_id = open_incident(ledger, now, "P1", dt.timedelta(minutes=1))
    pagerduty = ScriptedPagerDuty(now.replace(microsecond=0), acknowledged_from=3)
    paged(ledger, incident_id, now, monkeypatch, pagerduty)
    event = first_event(ack_trigger(incident_id, pagerduty_poll=0))
    assert event["acknowledged"]["source"] == "pagerduty" and event["acknowledged"]["by"] == "PTANAKA"
    assert len(pagerduty.lookups) == 3
    assert ledger.get(incident_id)["acknowledged_by"] == "PTANAKA"


def test_pagerduty_down_does_not_end_the_wait_the_ledger_still_does(
        ledger: Ledger, now: dt.datetime, monkeypatch: pytest.MonkeyPatch) -> None:
    incident_id = open_incident(ledger, now, "P1", dt.timedelta(minutes=1))

    def webhook_arrives_at_the_second_lookup(n: int) -> None:
        if n == 2:  # PagerDuty's REST API is down, its webhook still reached the intake
            ledger.acknowledge(incident_id, now, "webhook-user")

    pagerduty = ScriptedPagerDuty(now, down=True, before_lookup=webhook_arrives_at_the_second_lookup)
    paged(ledger, incident_id, now, monkeypatch, pagerduty)
    event = first_event(ack_trigger(incident_id, pagerduty_poll=0))  # PagerDuty asked every round
    assert event["acknowledged"]["by"] == "webhook-user" and event["acknowledged"]["source"] == "ledger"
    # two failed lookups did not end the wait; the round after them found the ledger's record first
    assert pagerduty.lookups == [incident_id, incident_id]


def test_the_acknowledgement_trigger_serializes_to_its_plugin_path_and_back() -> None:
    path, kwargs = AcknowledgementTrigger("INC-20261128-7f3a2c", "production", deadline=1e9, poll=3,
                                          pagerduty_poll=20).serialize()
    assert path == "incident_ops.triggers.incident_waits.AcknowledgementTrigger"
    assert kwargs == {"incident_id": "INC-20261128-7f3a2c", "environment": "production", "deadline": 1e9,
                      "poll": 3.0, "pagerduty_poll": 20.0}
    assert AcknowledgementTrigger(**kwargs).serialize() == (path, kwargs)


# --- the first notice ----------------------------------------------------------------------------


def test_the_first_notices_recorded_while_waiting_end_the_wait(
        ledger: Ledger, now: dt.datetime, monkeypatch: pytest.MonkeyPatch) -> None:
    incident_id = open_incident(ledger, now, "P2", dt.timedelta(minutes=1))

    def the_run_notifies(n: int) -> None:
        if n == 2:
            ledger.record_event(incident_id, at=now, kind="notified", actor="incident_ops", message="m",
                                idempotency_key="notified")
        if n == 4:
            ledger.record_event(incident_id, at=now, kind="channel_opened", actor="incident_ops", message="m",
                                idempotency_key="channel_opened")

    looks = on_call(monkeypatch, escalation_flow, "first_notice_sent", the_run_notifies)
    event = first_event(FirstNoticeTrigger(incident_id, deadline=now.timestamp() + 600, poll=POLL))
    assert event == {"first_notice": True}
    assert len(looks) == 4  # notified alone was not enough; the channel too


def test_the_first_notice_wait_times_out_at_its_deadline(ledger: Ledger, now: dt.datetime) -> None:
    incident_id = open_incident(ledger, now, "P2", dt.timedelta(minutes=1))
    deadline = dt.datetime.now(dt.UTC).timestamp() + 0.2
    event = first_event(FirstNoticeTrigger(incident_id, deadline=deadline, poll=0.05))
    assert event["timeout"] is True and "first_notice" not in event
    assert dt.datetime.fromisoformat(event["deadline"]).timestamp() == pytest.approx(deadline, abs=1e-3)


def test_the_first_notice_wait_survives_a_failing_poll(
        ledger: Ledger, now: dt.datetime, monkeypatch: pytest.MonkeyPatch) -> None:
    incident_id = open_incident(ledger, now, "P2", dt.timedelta(minutes=1))

    def down_then_closed(n: int) -> None:
        if n == 1:
            raise ConnectionError("ledger unreachable")
        if n == 2:
            ledger.close(incident_id, now)  # a closed incident needs no wait

    looks = on_call(monkeypatch, escalation_flow, "first_notice_sent", down_then_closed)
    event = first_event(FirstNoticeTrigger(incident_id, deadline=now.timestamp() + 600, poll=POLL))
    assert event == {"first_notice": True} and len(looks) == 2


def test_the_first_notice_trigger_serializes_to_its_plugin_path_and_back() -> None:
    path, kwargs = FirstNoticeTrigger("INC-20261128-7f3a2c", deadline=1e9, poll=3).serialize()
    assert path == "incident_ops.triggers.incident_waits.FirstNoticeTrigger"
    assert kwargs == {"incident_id": "INC-20261128-7f3a2c", "deadline": 1e9, "poll": 3.0}
    assert FirstNoticeTrigger(**kwargs).serialize() == (path, kwargs)
