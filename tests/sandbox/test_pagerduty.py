"""The PagerDuty stand-in over HTTPS through the `pagerduty` package's own clients (CA bundle)."""

from __future__ import annotations

import datetime as dt
import ssl

import pagerduty
import pytest
import requests
from sandbox.server import Sandbox

from incident_ops.core.oncall import rotation_engineer

ROUTING_KEY = "R0123456789ABCDEF0123456789ABCDE"


def _ssl(sb: Sandbox) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=sb.endpoints["ca_bundle"])


@pytest.fixture
def events(sb_light: Sandbox) -> pagerduty.EventsApiV2Client:
    client = pagerduty.EventsApiV2Client(ROUTING_KEY, base_url=sb_light.endpoints["pagerduty"], verify=_ssl(sb_light))
    client.sleep_timer_base = 0.01
    return client


@pytest.fixture
def rest(sb_light: Sandbox) -> pagerduty.RestApiV2Client:
    client = pagerduty.RestApiV2Client("sandbox-api-token", default_from="ops@peoplebooster.com", base_url=sb_light.endpoints["pagerduty"], verify=_ssl(sb_light))
    client.sleep_timer_base = 0.01
    return client


def test_https_needs_the_ca_bundle(sb_light: Sandbox) -> None:
    url = f"{sb_light.endpoints['https']}/pb/health"
    assert requests.get(url, verify=sb_light.endpoints["ca_bundle"], timeout=10).status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url, timeout=10)
    assert sb_light.endpoints["https"].startswith("https://127.0.0.1:")


def test_trigger_acknowledge_resolve(events: pagerduty.EventsApiV2Client, rest: pagerduty.RestApiV2Client, sb_light: Sandbox, runbook) -> None:
    key = events.trigger("【P1】ログインできない", "peoplebooster-production", dedup_key="INC-20260105-001", custom_details={"severity": "P1"})
    assert key == "INC-20260105-001"
    assert events.trigger("【P1】ログインできない", "peoplebooster-production", dedup_key=key) == key  # de-duplicated
    incidents = rest.rget("/incidents", params={"incident_key": key})
    assert len(incidents) == 1 and incidents[0]["status"] == "triggered"
    incident = rest.rget(f"/incidents/{incidents[0]['id']}")
    assert incident["urgency"] == "high"
    expected = rotation_engineer(runbook, dt.datetime.now(dt.UTC)).pagerduty_user_id
    assert incident["assignments"][0]["assignee"]["id"] == expected

    acked = sb_light.client.acknowledge(key, user="tanaka")
    assert acked["status"] == "acknowledged" and acked["acknowledgements"][0]["acknowledger"]["id"] == "PTANAKA"
    events.resolve(key)
    assert rest.rget(f"/incidents/{incident['id']}")["status"] == "resolved"
    sent = sb_light.client.pagerduty_events()
    assert [e["event_action"] for e in sent] == ["trigger", "trigger", "resolve"]
    assert sent[0]["payload"]["custom_details"] == {"severity": "P1"} and sent[0]["routing_key"] == ROUTING_KEY


def test_invalid_event(sb_light: Sandbox) -> None:
    response = requests.post(
        f"{sb_light.endpoints['pagerduty']}/v2/enqueue",
        json={"routing_key": ROUTING_KEY, "event_action": "trigger", "payload": {"summary": "x"}},
        verify=sb_light.endpoints["ca_bundle"],
        timeout=10,
    )
    assert response.status_code == 400 and response.json()["status"] == "invalid event"


def test_oncalls_schedule_contacts_responders(events: pagerduty.EventsApiV2Client, rest: pagerduty.RestApiV2Client, runbook) -> None:
    schedule = runbook.oncall.pagerduty_schedule_id
    since = dt.datetime(2026, 1, 5, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))
    oncalls = rest.rget("/oncalls", params={"schedule_ids[]": [schedule], "since": since.isoformat(), "until": since.isoformat()})
    assert [o["user"]["id"] for o in oncalls] == [runbook.oncall.roster[0].pagerduty_user_id]
    expanded = rest.rget("/oncalls", params={"schedule_ids[]": [schedule], "since": since.isoformat(), "include[]": ["users"]})
    assert expanded[0]["user"]["email"] == runbook.oncall.roster[0].email
    fortnight = list(rest.iter_all("oncalls", params={"schedule_ids[]": [schedule], "since": since.isoformat(), "until": (since + dt.timedelta(days=10)).isoformat()}))
    assert [o["user"]["id"] for o in fortnight] == [r.pagerduty_user_id for r in runbook.oncall.roster[:2]]
    assert rest.rget(f"/schedules/{schedule}")["final_schedule"]["rendered_schedule_entries"]

    for entry in runbook.oncall.roster:
        kinds = {m["type"] for m in rest.rget(f"/users/{entry.pagerduty_user_id}/contact_methods")}
        assert ("push_notification_contact_method" in kinds) == (entry is not runbook.oncall.roster[-1])

    key = events.trigger("【P1】障害", "peoplebooster-production", dedup_key="INC-20260105-002")
    incident = rest.rget("/incidents", params={"incident_key": key})[0]
    cto = runbook.contacts.people["cto"].pagerduty_user_id
    request = rest.rpost(
        f"/incidents/{incident['id']}/responder_requests",
        json={
            "requester_id": runbook.oncall.roster[0].pagerduty_user_id,
            "message": "P1: 電話で呼び出します",
            "responder_request_targets": [{"responder_request_target": {"id": cto, "type": "user_reference"}}],
        },
    )
    assert request["responder_request_targets"][0]["responder_request_target"]["id"] == cto
    assert rest.rget(f"/incidents/{incident['id']}")["responder_requests"][0]["message"] == "P1: 電話で呼び出します"


def test_rest_needs_a_token(sb_light: Sandbox) -> None:
    response = requests.get(f"{sb_light.endpoints['pagerduty']}/oncalls", verify=sb_light.endpoints["ca_bundle"], timeout=10)
    assert response.status_code == 401


def test_server_error_fault(events: pagerduty.EventsApiV2Client, sb_light: Sandbox) -> None:
    sb_light.client.set_faults(pagerduty=500, pagerduty_count=1)
    # The client retries a 500 (twice) and gets through on the second attempt.
    assert events.trigger("retry me", "peoplebooster-production", dedup_key="INC-RETRY") == "INC-RETRY"
    records = sb_light.client.records("pagerduty")
    assert [r["status"] for r in records] == [500, 202]
    assert records[0]["body"]["dedup_key"] == "INC-RETRY" and records[0]["scheme"] == "https"

    sb_light.client.set_faults(pagerduty=500)
    with pytest.raises(pagerduty.Error):
        events.trigger("down", "peoplebooster-production", dedup_key="INC-DOWN")
    sb_light.client.set_faults(pagerduty=None)
    assert events.trigger("up", "peoplebooster-production", dedup_key="INC-DOWN") == "INC-DOWN"
