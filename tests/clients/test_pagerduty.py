"""IncidentPager against a local HTTPS fake of PagerDuty (Events API v2 and REST)."""

from __future__ import annotations

import datetime as dt

import pytest

from incident_ops.clients.pagerduty import (
    IncidentPager,
    PagerDutyError,
    configure_retries,
    pd_severity,
    prepare_event,
    single_attempt,
)
from tests.clients.conftest import FakePagerDuty, SleepRecorder

INCIDENT = "INC-20260105-001"


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def pager(fake_pd: FakePagerDuty, ca_bundle: str, sleeps: SleepRecorder) -> IncidentPager:
    return IncidentPager(
        "R0UTINGKEY0000000000000000000000", "pd-api-token",
        events_url=fake_pd.url, rest_url=fake_pd.url, verify=ca_bundle,
        backoff=0.01, retry_attempts=3, sleep=sleeps,
    )


# -- pure helpers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("severity", "expected"), [
    ("P1", "critical"), ("P2", "error"), ("P3", "warning"), ("P4", "info"), ("p2", "error"), ("warning", "warning"),
])
def test_pd_severity(severity: str, expected: str) -> None:
    assert pd_severity(severity) == expected


def test_pd_severity_rejects_unknown() -> None:
    with pytest.raises(ValueError, match="unknown severity 'P5'"):
        pd_severity("P5")


def test_prepare_event_trigger() -> None:
    event = prepare_event(
        "trigger", INCIDENT, summary="【P1】全ユーザーがアクセス不可", severity="P1", source="api.peoplebooster.com",
        component="peoplebooster-backend", custom_details={"symptom": "all_users_down"},
        links=[{"href": "https://slack.com/app_redirect?channel=C1", "text": "#incident-20260105"}],
    )
    assert event == {
        "event_action": "trigger",
        "dedup_key": INCIDENT,
        "payload": {
            "summary": "【P1】全ユーザーがアクセス不可",
            "severity": "critical",
            "source": "api.peoplebooster.com",
            "component": "peoplebooster-backend",
            "custom_details": {"symptom": "all_users_down"},
        },
        "links": [{"href": "https://slack.com/app_redirect?channel=C1", "text": "#incident-20260105"}],
    }


def test_prepare_event_resolve_and_validation() -> None:
    assert prepare_event("resolve", INCIDENT) == {"event_action": "resolve", "dedup_key": INCIDENT}
    with pytest.raises(ValueError, match="summary"):
        prepare_event("trigger", INCIDENT, severity="P1", source="x")
    with pytest.raises(ValueError, match="dedup_key"):
        prepare_event("resolve", "")
    with pytest.raises(ValueError, match="event action"):
        prepare_event("snooze", INCIDENT)
    long = prepare_event("trigger", INCIDENT, summary="x" * 2000, severity="P3", source="s")
    assert len(long["payload"]["summary"]) == 1024


def test_only_https_urls_are_accepted() -> None:
    with pytest.raises(ValueError, match="https"):
        IncidentPager("key", events_url="http://127.0.0.1:1")


def test_configure_retries_bounds_the_package() -> None:
    import pagerduty

    client = configure_retries(pagerduty.EventsApiV2Client("k"), attempts=2, backoff=0.5)
    assert client.retry == {429: 2, 500: 2, 502: 2, 503: 2, 504: 2}
    assert client.max_http_attempts == 2 and client.max_network_attempts == 2 and client.sleep_timer == 0.25
    configure_retries(client, attempts=3)
    assert len(client.event_hooks["request"]) == 1 and len(client.event_hooks["response"]) == 1
    with pytest.raises(ValueError):
        configure_retries(pagerduty.EventsApiV2Client("k"), attempts=0)


# -- Events API ---------------------------------------------------------------------------------------


def test_trigger_then_resolve_with_one_dedup_key(fake_pd: FakePagerDuty, pager: IncidentPager) -> None:
    assert pager.trigger(INCIDENT, "【P1】ログインできない", "P1", "peoplebooster", component="backend") == INCIDENT
    assert pager.acknowledge(INCIDENT) == INCIDENT
    assert pager.resolve(INCIDENT) == INCIDENT

    received = fake_pd.calls("/v2/enqueue")
    assert [r.method for r in received] == ["POST"] * 3
    events = [r.params["json"] for r in received]
    assert [e["event_action"] for e in events] == ["trigger", "acknowledge", "resolve"]
    assert {e["dedup_key"] for e in events} == {INCIDENT}
    assert {e["routing_key"] for e in events} == {"R0UTINGKEY0000000000000000000000"}
    assert events[0]["payload"] == {
        "summary": "【P1】ログインできない", "severity": "critical", "source": "peoplebooster", "component": "backend",
    }
    assert fake_pd.incidents[INCIDENT]["status"] == "resolved"


def test_trigger_5xx_then_success(fake_pd: FakePagerDuty, pager: IncidentPager) -> None:
    fake_pd.fail("/v2/enqueue", 502)

    pager.trigger(INCIDENT, "summary", "P2", "peoplebooster")

    assert len(fake_pd.calls("/v2/enqueue")) == 2
    assert len(fake_pd.events) == 1 and fake_pd.events[0]["payload"]["severity"] == "error"


def test_429_retry_after_is_honoured(fake_pd: FakePagerDuty, pager: IncidentPager, sleeps: SleepRecorder) -> None:
    fake_pd.fail("/v2/enqueue", 429, headers={"Retry-After": "5"})

    pager.resolve(INCIDENT)

    assert len(fake_pd.calls("/v2/enqueue")) == 2
    assert sleeps.sleeps and 4 < sleeps.sleeps[0] <= 5


def test_trigger_gives_up_with_a_clear_error(fake_pd: FakePagerDuty, pager: IncidentPager) -> None:
    fake_pd.fail("/v2/enqueue", 503, times=10)
    with pytest.raises(PagerDutyError, match=r"trigger event INC-20260105-001 failed \(HTTP 503\)"):
        pager.trigger(INCIDENT, "summary", "P1", "peoplebooster")
    assert len(fake_pd.calls("/v2/enqueue")) == 4  # first try + 3 retries
    assert fake_pd.events == []


def test_bad_request_is_not_retried(fake_pd: FakePagerDuty, pager: IncidentPager) -> None:
    fake_pd.fail("/v2/enqueue", 400, {"status": "invalid event", "errors": ["'payload.summary' is missing"]})
    with pytest.raises(PagerDutyError, match="HTTP 400"):
        pager.trigger(INCIDENT, "summary", "P1", "peoplebooster")
    assert len(fake_pd.calls("/v2/enqueue")) == 1


def test_untrusted_certificate_is_refused(fake_pd: FakePagerDuty) -> None:
    pager = IncidentPager("key", events_url=fake_pd.url, retry_attempts=1, backoff=0.0)
    with pytest.raises(PagerDutyError, match="CERTIFICATE_VERIFY_FAILED|certificate"):
        pager.resolve(INCIDENT)


# -- REST API ------------------------------------------------------------------------------------------


def test_oncall_users(fake_pd: FakePagerDuty, pager: IncidentPager) -> None:
    fake_pd.oncalls = [
        {"schedule": {"id": "PSCHED1"}, "escalation_level": 2,
         "user": {"id": "PLEAD01", "name": "鈴木 開発リード", "email": "dev-lead@peoplebooster.com"}},
        {"schedule": {"id": "PSCHED1"}, "escalation_level": 1,
         "user": {"id": "PENG001", "name": "田中", "email": "tanaka@peoplebooster.com"}},
        {"schedule": {"id": "POTHER1"}, "escalation_level": 1, "user": {"id": "PX", "name": "x", "email": "x@x"}},
    ]
    at = dt.datetime(2026, 1, 5, 22, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))

    users = pager.oncall_users("PSCHED1", at)

    assert users == [
        {"id": "PENG001", "name": "田中", "email": "tanaka@peoplebooster.com"},
        {"id": "PLEAD01", "name": "鈴木 開発リード", "email": "dev-lead@peoplebooster.com"},
    ]
    request = fake_pd.calls("/oncalls")[0]
    assert request.method == "GET"
    assert request.params["schedule_ids[]"] == ["PSCHED1"]
    assert request.params["since"] == ["2026-01-05T22:00:00+09:00"]
    assert request.params["until"] == ["2026-01-05T22:00:01+09:00"]
    assert request.headers["Authorization"] == "Token token=pd-api-token"


def test_oncall_users_needs_an_aware_time(pager: IncidentPager) -> None:
    with pytest.raises(ValueError, match="time zone"):
        pager.oncall_users("PSCHED1", dt.datetime(2026, 1, 5, 22, 0))


def test_incident_for_dedup_key_reads_acknowledgements(fake_pd: FakePagerDuty, pager: IncidentPager) -> None:
    assert pager.incident_for_dedup_key(INCIDENT) is None
    pager.trigger(INCIDENT, "summary", "P1", "peoplebooster")
    fake_pd.incidents[INCIDENT].update(status="acknowledged", acknowledgements=[
        {"at": "2026-01-05T13:09:00Z", "acknowledger": {"id": "PENG002", "type": "user_reference", "summary": "佐々木"}},
        {"at": "2026-01-05T13:05:00Z", "acknowledger": {"id": "PENG001", "type": "user_reference", "summary": "田中"}},
    ])

    incident = pager.incident_for_dedup_key(INCIDENT)

    assert incident == {
        "id": fake_pd.incidents[INCIDENT]["id"], "status": "acknowledged",
        "acknowledged_at": "2026-01-05T13:05:00Z", "acknowledged_by": "田中", "acknowledged_by_id": "PENG001",
        "urgency": "high",  # a P1 page (critical)
    }
    assert fake_pd.calls("/incidents")[-1].params["incident_key"] == [INCIDENT]

    # resolved, then triggered again: the open incident wins
    pager.resolve(INCIDENT)
    fake_pd.incidents["old"] = {**fake_pd.incidents.pop(INCIDENT), "created_at": "2026-01-05T13:00:00Z"}
    pager.trigger(INCIDENT, "again", "P1", "peoplebooster")
    fake_pd.incidents[INCIDENT]["created_at"] = "2026-01-05T15:00:00Z"
    assert pager.incident_for_dedup_key(INCIDENT)["id"] == fake_pd.incidents[INCIDENT]["id"]
    assert pager.incident_for_dedup_key(INCIDENT)["status"] == "triggered"


def test_wait_for_incident_polls(fake_pd: FakePagerDuty, pager: IncidentPager) -> None:
    naps: list[float] = []
    with pytest.raises(PagerDutyError, match="no incident after 3 look-ups"):
        pager.wait_for_incident(INCIDENT, attempts=3, interval=0.5, sleep=naps.append)
    assert naps == [0.5, 0.5] and len(fake_pd.calls("/incidents")) == 3


def test_add_responder_posts_a_responder_request(fake_pd: FakePagerDuty, pager: IncidentPager) -> None:
    pager.trigger(INCIDENT, "summary", "P1", "peoplebooster")
    incident_id = fake_pd.incidents[INCIDENT]["id"]

    result = pager.add_responder(incident_id, "PCTO001", "P1: 全ユーザーがアクセス不可", "PREQ001")

    posts = fake_pd.calls(f"/incidents/{incident_id}/responder_requests")
    assert [r.method for r in posts] == ["POST"]
    assert posts[0].params["json"] == {
        "requester_id": "PREQ001",
        "message": "P1: 全ユーザーがアクセス不可",
        "responder_request_targets": [{"responder_request_target": {"id": "PCTO001", "type": "user_reference"}}],
    }
    assert result["incident"]["id"] == incident_id and "adopted" not in result
    # what was there before is read first (the baseline a lost answer is compared with)
    assert [r.method for r in fake_pd.calls(f"/incidents/{incident_id}")] == ["GET"]


def test_responder_request_answered_500_after_pagerduty_recorded_it_is_not_sent_again(
    fake_pd: FakePagerDuty, pager: IncidentPager, sleeps: SleepRecorder,
) -> None:
    """The CTO's phone call: PagerDuty records the request, then the answer is a 500. The package does not
    retry that POST; the pager reads the incident's responder requests, finds it, and does not ask again."""
    pager.trigger(INCIDENT, "summary", "P1", "peoplebooster")
    incident_id = fake_pd.incidents[INCIDENT]["id"]
    fake_pd.fail(f"/incidents/{incident_id}/responder_requests", 500, after_acting=True)

    result = pager.add_responder(incident_id, "PCTO001", "P1: 全ユーザーがアクセス不可", "PREQ001")

    assert len(fake_pd.calls(f"/incidents/{incident_id}/responder_requests", "POST")) == 1
    assert len(fake_pd.responder_requests) == 1
    assert result["adopted"] is True and result["message"] == "P1: 全ユーザーがアクセス不可"
    assert [r.method for r in fake_pd.calls(f"/incidents/{incident_id}")] == ["GET", "GET"]  # before, after


def test_responder_request_refused_with_503_is_sent_again_after_the_lookup(
    fake_pd: FakePagerDuty, pager: IncidentPager, sleeps: SleepRecorder,
) -> None:
    """A 503 before PagerDuty did anything: the lookup finds no new request, so it is asked again, once."""
    pager.trigger(INCIDENT, "summary", "P1", "peoplebooster")
    incident_id = fake_pd.incidents[INCIDENT]["id"]
    pager.add_responder(incident_id, "PCTO001", "an earlier call (the declaration)", "PREQ001")
    fake_pd.fail(f"/incidents/{incident_id}/responder_requests", 503)

    result = pager.add_responder(incident_id, "PCTO001", "escalation: not acknowledged", "PREQ001")

    assert len(fake_pd.calls(f"/incidents/{incident_id}/responder_requests", "POST")) == 3  # 1 + refused + again
    assert [r["message"] for r in fake_pd.responder_requests] == [
        "an earlier call (the declaration)", "escalation: not acknowledged"]
    assert "adopted" not in result


def test_responder_request_gives_up_after_the_attempts(fake_pd: FakePagerDuty, pager: IncidentPager) -> None:
    pager.trigger(INCIDENT, "summary", "P1", "peoplebooster")
    incident_id = fake_pd.incidents[INCIDENT]["id"]
    fake_pd.fail(f"/incidents/{incident_id}/responder_requests", 502, times=10)

    with pytest.raises(PagerDutyError, match=r"responder request for PCTO001 .* failed \(HTTP 502\)"):
        pager.add_responder(incident_id, "PCTO001", "m", "PREQ001")
    assert len(fake_pd.calls(f"/incidents/{incident_id}/responder_requests", "POST")) == 4  # 1 + retry_attempts
    assert fake_pd.responder_requests == []


def test_responder_request_of_an_unknown_incident_is_one_clear_error(fake_pd: FakePagerDuty, pager: IncidentPager) -> None:
    with pytest.raises(PagerDutyError, match=r"GET /incidents/QNOPE failed \(HTTP 404\)"):
        pager.add_responder("QNOPE", "PCTO001", "m", "PREQ001")
    assert fake_pd.calls("/incidents/QNOPE/responder_requests") == []


def test_single_attempt_keeps_only_the_429_retry() -> None:
    import pagerduty

    rest = configure_retries(pagerduty.RestApiV2Client("tok"), attempts=3)
    once = single_attempt(rest, 3)
    assert once.retry == {429: 3} and once.max_network_attempts == 0
    assert rest.retry[500] == 3 and rest.max_network_attempts == 3  # the reads keep theirs
    assert once.headers is rest.headers and once.event_hooks == rest.event_hooks


def test_push_contact_methods(fake_pd: FakePagerDuty, pager: IncidentPager) -> None:
    fake_pd.contact_methods["PENG001"] = [
        {"id": "PC1", "type": "email_contact_method", "address": "tanaka@peoplebooster.com"},
        {"id": "PC2", "type": "push_notification_contact_method", "address": "iPhone", "device_type": "ios"},
    ]
    assert [m["id"] for m in pager.push_contact_methods("PENG001")] == ["PC2"]
    assert pager.push_contact_methods("PNOBODY") == []
    assert fake_pd.calls("/users/PENG001/contact_methods")[0].method == "GET"


def test_rest_5xx_then_success(fake_pd: FakePagerDuty, pager: IncidentPager) -> None:
    fake_pd.fail("/users/PENG001/contact_methods", 500)
    assert pager.push_contact_methods("PENG001") == []
    assert len(fake_pd.calls("/users/PENG001/contact_methods")) == 2


def test_rest_needs_a_token(fake_pd: FakePagerDuty, ca_bundle: str) -> None:
    pager = IncidentPager("key", events_url=fake_pd.url, verify=ca_bundle)
    with pytest.raises(PagerDutyError, match="no API token"):
        pager.incident_for_dedup_key(INCIDENT)
