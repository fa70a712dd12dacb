"""POST /webhooks/pagerduty (v3): signatures (with a rotation), replays, the acknowledgement, the timeline."""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace

import pytest

from incident_ops.webhooks import pagerduty

from .helpers import NOW
from .responder_helpers import (
    PD_OLD_SECRET,
    PD_SECRET,
    ResponderHarness,
    make_responders_fixture,  # noqa: F401 - the fixture `make_responders`
    pd_event,
    pd_signed,
)


def test_signature_helpers_accept_any_signature_with_any_secret() -> None:
    body = b'{"event": {}}'
    pagerduty.verify([PD_SECRET], pagerduty.sign(PD_SECRET, body), body)
    both = f"{pagerduty.sign(PD_OLD_SECRET, body)}, {pagerduty.sign(PD_SECRET, body)}"
    pagerduty.verify([PD_SECRET], both, body)
    pagerduty.verify([PD_OLD_SECRET, "x"], both, body)
    for secrets, header in (([PD_SECRET], pagerduty.sign("other", body)), ([], pagerduty.sign(PD_SECRET, body)),
                            ([PD_SECRET], "v1=zz"), ([PD_SECRET], ""), ([PD_SECRET], "v0=" + "0" * 64)):
        with pytest.raises(pagerduty.HmacError):
            pagerduty.verify(secrets, header, body)


def test_an_acknowledgement_is_recorded_at_once_and_the_flow_finds_it(make_responders,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from incident_ops.flows import incident as flows

    h: ResponderHarness = make_responders()
    incident = h.open_incident()
    response = h.pagerduty(pd_event("incident.acknowledged", incident, at=NOW - dt.timedelta(seconds=20)))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "recorded" and answer["incident_id"] == incident
    assert answer["acknowledged_by"] == "田中 太郎" and answer["first"] is True  # PTANAKA → the runbook's name
    record = h.ledger.get(incident)
    assert record["acknowledged_by"] == "田中 太郎" and record["acknowledged_at"] == NOW - dt.timedelta(seconds=20)
    # What the acknowledgement sensor asks: flows.incident.acknowledgement() on the same ledger.
    monkeypatch.setenv("INCIDENT_OPS_LEDGER_URL", h.ledger_url)
    monkeypatch.setattr(flows, "services_for", lambda environment: SimpleNamespace(pager=None))
    found = flows.acknowledgement({"id": incident, "environment": "production"})
    assert found is not None and found["by"] == "田中 太郎" and found["source"] == "ledger"
    assert [e["actor"] for e in h.events(incident, "acknowledged")] == ["田中 太郎"]
    assert [e["message"] for e in h.events(incident, "pagerduty_acknowledged")] == ["PagerDuty で田中 太郎さんが対応を開始しました"]


@pytest.mark.parametrize(("agent", "who"), [
    ({"id": "PNOBODY", "type": "user_reference", "summary": "Contractor Jane"}, "Contractor Jane"),
    (None, "pagerduty"),
    ({"id": "PCTO001", "summary": "ignored"}, "佐藤 CTO"),
])
def test_who_acknowledged(make_responders, agent, who: str) -> None:
    h: ResponderHarness = make_responders()
    incident = h.open_incident()
    assert h.pagerduty(pd_event("incident.acknowledged", incident, agent=agent)).json()["acknowledged_by"] == who
    assert h.ledger.get(incident)["acknowledged_by"] == who


def test_the_first_acknowledgement_wins(make_responders) -> None:
    h: ResponderHarness = make_responders()
    incident = h.open_incident()
    h.pagerduty(pd_event("incident.acknowledged", incident))
    second = h.pagerduty(pd_event("incident.acknowledged", incident, agent={"id": "PYAMADA", "summary": "y"})).json()
    assert second["first"] is False and second["acknowledged_by"] == "田中 太郎"
    assert h.ledger.get(incident)["acknowledged_by"] == "田中 太郎"


@pytest.mark.parametrize(("event_type", "kind", "fragment"), [
    ("incident.resolved", "pagerduty_resolved", "解決済み"),
    ("incident.escalated", "pagerduty_escalated", "エスカレーション"),
    ("incident.reassigned", "pagerduty_reassigned", "担当者が変わりました"),
])
def test_timeline_events_are_recorded_once(make_responders, event_type: str, kind: str, fragment: str) -> None:
    h: ResponderHarness = make_responders()
    incident = h.open_incident()
    event = pd_event(event_type, incident, assignees=["Hanako Yamada"])
    first = h.pagerduty(event)
    assert first.status_code == 200 and first.json()["status"] == "recorded"
    [recorded] = h.events(incident, kind)
    assert fragment in recorded["message"] and recorded["idempotency_key"] == f"pagerduty:{event['event']['id']}"
    if event_type != "incident.resolved":
        assert "Hanako Yamada" in recorded["message"]
    assert h.ledger.get(incident)["status"] == "open"  # PagerDuty's resolve does not close ours: the DAG verifies
    again = h.pagerduty(event)
    assert again.status_code == 200 and again.json()["status"] == "replayed"
    assert len(h.events(incident, kind)) == 1


def test_a_replayed_acknowledgement_does_nothing_again(make_responders) -> None:
    h: ResponderHarness = make_responders()
    incident = h.open_incident()
    event = pd_event("incident.acknowledged", incident)
    h.pagerduty(event)
    before = h.event_count()
    replay = h.pagerduty(event)
    assert replay.status_code == 200 and replay.json()["status"] == "replayed"
    assert h.event_count() == before


@pytest.mark.parametrize(("age", "status"), [(dt.timedelta(hours=2), 403), (dt.timedelta(minutes=-10), 403),
                                             (dt.timedelta(minutes=59), 200)])
def test_events_far_in_the_past_or_future_are_refused(make_responders, age: dt.timedelta, status: int) -> None:
    h: ResponderHarness = make_responders()
    incident = h.open_incident()
    response = h.pagerduty(pd_event("incident.acknowledged", incident, at=NOW - age))
    assert response.status_code == status, response.text
    if status == 403:
        assert response.json()["error"] == "event_expired" and h.ledger.get(incident)["acknowledged_at"] is None


@pytest.mark.parametrize("how", ["tampered", "wrong_secret", "missing", "no_secret_configured", "garbage"])
def test_unauthentic_deliveries_are_401_and_change_nothing(make_responders, how: str) -> None:
    h: ResponderHarness = make_responders(pd_secrets=[] if how == "no_secret_configured" else [PD_SECRET])
    incident = h.open_incident()
    before = h.event_count()
    body, headers = pd_signed(pd_event("incident.acknowledged", incident), "wrong" if how == "wrong_secret" else PD_SECRET)
    if how == "tampered":
        body = body.replace(b"PTANAKA", b"PYAMADA")
    if how == "missing":
        del headers["X-PagerDuty-Signature"]
    if how == "garbage":
        headers["X-PagerDuty-Signature"] = "v1=" + "z" * 64 + ",,v2=abc"
    response = h.client.post("/webhooks/pagerduty", content=body, headers=headers)
    assert response.status_code == 401, response.text
    assert h.ledger.get(incident)["acknowledged_at"] is None and h.event_count() == before
    assert h.audit()[-1]["http_status"] == 401


def test_a_rotation_accepts_either_secret(make_responders) -> None:
    h: ResponderHarness = make_responders(pd_secrets=[PD_OLD_SECRET, PD_SECRET])
    incident = h.open_incident()
    # PagerDuty signs with both while rotating; the receiver knows only the old one, or only the new one.
    assert h.pagerduty(pd_event("incident.escalated", incident), PD_OLD_SECRET, PD_SECRET).status_code == 200
    assert h.pagerduty(pd_event("incident.escalated", incident), PD_OLD_SECRET).status_code == 200
    assert h.pagerduty(pd_event("incident.escalated", incident), PD_SECRET).status_code == 200
    assert h.pagerduty(pd_event("incident.escalated", incident), "retired").status_code == 401
    assert len(h.events(incident, "pagerduty_escalated")) == 3


def test_unknown_incidents_and_other_event_types_are_ignored(make_responders) -> None:
    h: ResponderHarness = make_responders()
    incident = h.open_incident()
    before = h.event_count()
    for event in (pd_event("incident.acknowledged", "INC-20200101-abcdef"), pd_event("incident.acknowledged", None),
                  pd_event("incident.priority_updated", incident), pd_event("pagey.ping", None)):
        response = h.pagerduty(event)
        assert response.status_code == 200 and response.json()["status"] == "ignored", response.text
    assert h.event_count() == before and h.ledger.get(incident)["acknowledged_at"] is None


@pytest.mark.parametrize(("body", "content_type", "status"), [
    (b"not json", "application/json", 400),
    (b'{"event": []}', "application/json", 400),
    (json.dumps({"event": {"id": "X", "event_type": "incident.acknowledged", "occurred_at": "yesterday"}}).encode(),
     "application/json", 400),
    (b"\xff\xfe", "application/json", 400),
    (b"{}", "text/plain", 415),
])
def test_malformed_deliveries_are_4xx(make_responders, body: bytes, content_type: str, status: int) -> None:
    h: ResponderHarness = make_responders()
    signed, headers = pd_signed(body)
    response = h.client.post("/webhooks/pagerduty", content=signed, headers={**headers, "Content-Type": content_type})
    assert response.status_code == status, response.text


def test_a_pagerduty_body_over_the_limit_is_413(make_responders) -> None:
    h: ResponderHarness = make_responders(max_body_bytes=512)
    body, headers = pd_signed(pd_event("incident.acknowledged", "INC-20261128-abcdef"))
    assert h.client.post("/webhooks/pagerduty", content=body, headers=headers).status_code == 413
