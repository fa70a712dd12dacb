"""The incident DAG's first notices (flows/incident.py open_incident → notify_responders) for a P4
reported on a Friday evening and a P3 at night, against a recording Slack and PagerDuty (no server):
the response deadline handed to the acknowledgement wait and the notice text agree."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from incident_ops.core.ledger import Ledger
from incident_ops.flows import incident as incident_flow
from tests.flows.scheduled.conftest import RecordingSlack

JST = dt.timezone(dt.timedelta(hours=9))


class Pager:
    events = True

    def __init__(self) -> None:
        self.triggers: list[tuple[str, str]] = []

    def trigger(self, dedup_key: str, summary: str, severity: str, source: str, **kwargs: Any) -> str:
        self.triggers.append((dedup_key, severity))
        return dedup_key

    # The P1 phone call (a responder request on the PagerDuty incident): a required notice.
    def incident_for_dedup_key(self, dedup_key: str) -> dict[str, Any]:
        return {"id": f"PD-{dedup_key}"}

    def add_responder(self, incident_id: str, user_id: str, message: str, requester_id: str) -> dict[str, Any]:
        return {"id": f"RR-{user_id}"}


@pytest.fixture
def services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    monkeypatch.setenv("INCIDENT_OPS_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    slack = RecordingSlack()
    slack.invite = lambda channel, user_ids: None  # type: ignore[attr-defined]
    found = SimpleNamespace(slack=slack, pager=Pager(), settings=SimpleNamespace(smtp=None))
    monkeypatch.setattr(incident_flow, "services_for", lambda environment: found)
    return found


def start(monkeypatch: pytest.MonkeyPatch, symptom: str, at: dt.datetime) -> dict[str, Any]:
    monkeypatch.setattr(incident_flow, "_now", lambda: at)
    params = {"symptom": symptom, "severity": "auto", "service": "backend", "environment": "production",
              "impact": "", "reporter": "test", "scenario": "auto", "check_mode": False, "alarm": {},
              "incident_id": None}
    incident = incident_flow.open_incident(params, run_id=f"manual__{at.isoformat()}", run_after=at)
    incident_flow.notify_responders(incident)
    return incident


def test_a_p4_on_friday_evening(monkeypatch: pytest.MonkeyPatch, services: SimpleNamespace) -> None:
    incident = start(monkeypatch, "UIの表示崩れ", dt.datetime(2026, 12, 4, 18, 30, tzinfo=JST))
    assert incident["severity"] == "P4"
    # The acknowledgement wait's deadline and the escalation's: Tuesday 9:00, 24 h after Monday 9:00.
    assert incident["response_deadline"] == "2026-12-08T09:00:00+09:00"
    assert incident_flow.current_response_deadline(incident) == dt.datetime(2026, 12, 8, 9, 0, tzinfo=JST)
    [post] = services.slack.to("#dev-team")
    assert post["text"].splitlines()[2:] == [
        "対応: 12/07(月) 09:00 から対応（翌営業日可）",
        "対応開始の目標: 12/08(火) 09:00 まで（対応できる時刻から24時間以内）",
    ]
    assert services.pager.triggers == []


def test_a_p3_at_night_pages_the_oncall_at_low_urgency(monkeypatch: pytest.MonkeyPatch,
                                                       services: SimpleNamespace) -> None:
    incident = start(monkeypatch, "レポート生成が遅い", dt.datetime(2026, 12, 6, 23, 0, tzinfo=JST))
    assert incident["severity"] == "P3"
    assert services.pager.triggers == [(incident["id"], "warning")]
    assert incident_flow.was_paged(Ledger(), incident["id"])
    [post] = services.slack.to("#dev-team")
    assert "業務時間外のため、オンコール担当 渡辺 舞 にも PagerDuty で通知します（低緊急度: 電話なし）" in post["text"]


def test_a_p3_in_business_hours_pages_nobody(monkeypatch: pytest.MonkeyPatch, services: SimpleNamespace) -> None:
    incident = start(monkeypatch, "レポート生成が遅い", dt.datetime(2026, 12, 1, 10, 0, tzinfo=JST))
    assert services.pager.triggers == [] and not incident_flow.was_paged(Ledger(), incident["id"])


def test_a_preset_scenario_ends_phase_2_like_a_persons_choice(monkeypatch: pytest.MonkeyPatch,
                                                              services: SimpleNamespace) -> None:
    from incident_ops.core.timeboxes import phase_reached

    incident = start(monkeypatch, "ログインできない", dt.datetime(2026, 12, 1, 10, 0, tzinfo=JST))
    ledger = Ledger()
    incident_flow.record_preset_scenario(incident, "deploy", suggested=False)
    incident_flow.record_preset_scenario(incident, "deploy", suggested=False)  # a retried task
    chosen = [e for e in ledger.events(incident["id"]) if e["kind"] == "scenario_chosen"]
    assert [e["message"] for e in chosen] == ["シナリオ: デプロイ後の障害（起動時の指定）"]
    assert chosen[0]["data"]["chosen"] == "deploy"
    assert phase_reached(ledger.get(incident["id"]), ledger.events(incident["id"])) == 3
