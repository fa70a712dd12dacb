"""The webhook app through FastAPI's TestClient: a counting trigger stands in for Airflow (so runs can
be counted without Airflow's database), the ledger is real (SQLite), certificates are made here."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from airflow.sdk import ParamsDict

from incident_ops.params import incident_params
from incident_ops.webhooks.intake import TriggerUnavailable

from .conftest import Harness
from .helpers import (
    CERT_URL,
    NOW,
    OTHER_TOPIC,
    SECRET,
    SigningCert,
    alarm,
    confirmation,
    notification,
    signed_alert,
    sns_headers,
)

ALERT = {"source": "uptime-robot", "title": "Login page failing", "service": "backend", "symptom": "ログインできない"}


def post_sns(h: Harness, envelope: dict[str, Any] | bytes | str, headers: dict[str, str] | None = None):
    body = envelope if isinstance(envelope, bytes | str) else json.dumps(envelope)
    return h.client.post("/webhooks/sns", content=body,
                         headers=headers or (sns_headers(envelope) if isinstance(envelope, dict) else {"Content-Type": "text/plain"}))


def assert_refused(h: Harness, response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == code and response.json()["reason"]
    assert h.trigger.calls == []
    assert h.incidents() == [] and h.event_count() == 0
    last = h.audit()[-1]
    assert last["http_status"] == status and last["outcome"] == "refused" and last["error"] == code


# --- SNS: the happy paths ------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
def test_signed_alarm_opens_an_incident_and_triggers_one_run(harness: Harness, cert: SigningCert, version: str) -> None:
    envelope = notification(cert, alarm(), version=version)
    response = post_sns(harness, envelope)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "new" and answer["severity"] == "P2"
    incident_id = answer["incident_id"]
    assert answer["dag_run_id"] == f"incident__{incident_id}"
    [((dag_id, run_id), conf)] = harness.trigger.runs.items()
    assert (dag_id, run_id) == ("incident_response", answer["dag_run_id"])
    # the conf passes the DAG's own Params and names the ledger record the run must reuse
    params = ParamsDict(incident_params(harness.app.state.services().intake.runbook))
    params.update(conf)
    resolved = params.validate()
    assert resolved["incident_id"] == incident_id
    assert resolved["alarm"]["AlarmName"] == "peoplebooster-production-alb-5xx"
    assert (resolved["symptom"], resolved["service"], resolved["environment"]) == ("エラー率の急増", "backend", "production")
    [incident] = harness.incidents()
    assert incident["fingerprint"] == "production:alarm:peoplebooster-production-alb-5xx"
    assert incident["dag_run_id"] == answer["dag_run_id"]
    assert incident["detected_at"] == dt.datetime(2026, 11, 27, 15, 29, 30, tzinfo=dt.UTC)  # the alarm's StateChangeTime
    assert harness.certs.asked == [CERT_URL]
    assert harness.audit()[-1]["status"] == "new"


def test_sns_accepts_application_json_too(harness: Harness, cert: SigningCert) -> None:
    envelope = notification(cert, alarm())
    response = post_sns(harness, envelope, {**sns_headers(envelope), "Content-Type": "application/json"})
    assert response.status_code == 200 and response.json()["status"] == "new"


def test_redelivery_of_the_same_message_counts_once(harness: Harness, cert: SigningCert) -> None:
    envelope = notification(cert, alarm())
    answers = [post_sns(harness, envelope).json() for _ in range(5)]
    assert [a["status"] for a in answers] == ["new"] + ["joined"] * 4
    assert len({a["incident_id"] for a in answers}) == 1 and len({a["dag_run_id"] for a in answers}) == 1
    assert len(harness.trigger.calls) == 1
    [incident] = harness.incidents()
    assert incident["occurrences"] == 1


def test_a_repeat_while_open_appends_an_occurrence(harness: Harness, cert: SigningCert) -> None:
    answers = [post_sns(harness, notification(cert, alarm())).json() for _ in range(4)]
    assert [a["status"] for a in answers] == ["new", "joined", "joined", "joined"]
    assert len(harness.trigger.calls) == 1
    [incident] = harness.incidents()
    assert incident["occurrences"] == 4
    kinds = [e["kind"] for e in harness.ledger.events(incident["id"])]
    assert kinds.count("occurrence") == 3


def test_certificate_is_fetched_once_for_many_deliveries(harness: Harness, cert: SigningCert) -> None:
    for _ in range(10):
        post_sns(harness, notification(cert, alarm()))
    assert harness.certs.asked == [CERT_URL]


def test_unmapped_alarm_is_declared_with_the_default(harness: Harness, cert: SigningCert) -> None:
    envelope = notification(cert, alarm("some-new-alarm-nobody-mapped"))
    answer = post_sns(harness, envelope).json()
    assert answer["status"] == "new" and answer["severity"] == "P2"
    [incident] = harness.incidents()
    assert incident["symptom"] == "error_rate_high" and incident["service"] == "backend"
    assert incident["fingerprint"] == "production:alarm:some-new-alarm-nobody-mapped"
    assert len(harness.trigger.runs) == 1


def test_mapped_alarms_take_their_symptom_and_service(harness: Harness, cert: SigningCert) -> None:
    answer = post_sns(harness, notification(cert, alarm("peoplebooster-production-frontend-5xx"))).json()
    assert answer["severity"] == "P4"
    [conf] = harness.trigger.runs.values()
    assert (conf["service"], conf["symptom"]) == ("frontend", "UIの表示崩れ")


def test_ok_is_recorded_on_the_open_incident_and_does_not_close_it(harness: Harness, cert: SigningCert) -> None:
    opened = post_sns(harness, notification(cert, alarm())).json()
    ok = post_sns(harness, notification(cert, alarm(state="OK"))).json()
    assert ok["status"] == "recorded" and ok["incident_id"] == opened["incident_id"]
    assert ok["dag_run_id"] == opened["dag_run_id"]
    [incident] = harness.incidents()
    assert incident["status"] == "open"
    events = harness.ledger.events(incident["id"])
    assert [e["kind"] for e in events][-1] == "alarm_ok"
    assert events[-1]["data"]["NewStateValue"] == "OK"
    assert len(harness.trigger.calls) == 1


def test_ok_without_an_open_incident_is_ignored(harness: Harness, cert: SigningCert) -> None:
    answer = post_sns(harness, notification(cert, alarm(state="OK"))).json()
    assert answer == {"status": "ignored", "incident_id": None, "dag_run_id": None,
                      "reason": "OK for peoplebooster-production-alb-5xx: no open incident"}
    assert harness.incidents() == [] and harness.trigger.calls == []


def test_a_new_incident_after_recovery(harness: Harness, cert: SigningCert) -> None:
    first = post_sns(harness, notification(cert, alarm())).json()
    harness.ledger.mark_recovered(first["incident_id"], NOW + dt.timedelta(minutes=30))
    second = post_sns(harness, notification(cert, alarm())).json()
    assert second["status"] == "new" and second["incident_id"] != first["incident_id"]
    assert len(harness.trigger.runs) == 2


# --- SNS: refused --------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["Message", "Subject", "Timestamp", "MessageId"])
def test_tampered_notification_is_403_and_changes_nothing(harness: Harness, cert: SigningCert, field: str) -> None:
    envelope = notification(cert, alarm())
    envelope[field] = {"Message": envelope["Message"].replace("ALARM", "OK"), "Subject": "hello",
                       "Timestamp": "2026-11-27T15:29:59.000Z", "MessageId": "0" * 36}[field]
    assert_refused(harness, post_sns(harness, envelope), 403, "signature_invalid")


def test_forged_with_another_key_is_403(harness: Harness) -> None:
    assert_refused(harness, post_sns(harness, notification(SigningCert.make(), alarm())), 403, "signature_invalid")


@pytest.mark.parametrize(
    "cert_url",
    [
        "https://evil.example/SimpleNotificationService-x.pem",
        "http://sns.ap-northeast-1.amazonaws.com/SimpleNotificationService-x.pem",
        "https://sns.ap-northeast-1.amazonaws.com.evil.example/x.pem",
        "https://127.0.0.1:5057/SimpleNotificationService-5a4db0c5a4db0c5a4db0c5a4db0c5a4d.pem",
        # SNS's own hosts, but a path SNS never serves certificates at, or a region of no allowed topic
        "https://sns.ap-northeast-1.amazonaws.com/SimpleNotificationService-x.pem",
        "https://sns.ap-northeast-1.amazonaws.com/anything/at/all.pem",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123456789abcdef0123456789abcdef.pem",
    ],
)
def test_certificate_url_on_a_wrong_host_is_403_and_never_fetched(harness: Harness, cert: SigningCert, cert_url: str) -> None:
    assert_refused(harness, post_sns(harness, notification(cert, alarm(), cert_url=cert_url)), 403, "url_not_allowed")
    assert harness.certs.asked == []


def test_certificate_not_found_is_403(harness: Harness, cert: SigningCert) -> None:
    url = "https://sns.ap-northeast-1.amazonaws.com/SimpleNotificationService-ffffffffffffffffffffffffffffffff.pem"
    assert_refused(harness, post_sns(harness, notification(cert, alarm(), cert_url=url)), 403, "certificate_unavailable")


def test_unknown_topic_is_403_before_any_fetch(harness: Harness, cert: SigningCert) -> None:
    assert_refused(harness, post_sns(harness, notification(cert, alarm(), topic=OTHER_TOPIC)), 403, "topic_not_allowed")
    assert harness.certs.asked == []


def test_no_topic_configured_refuses_everything(make_harness, cert: SigningCert) -> None:
    h = make_harness(topics={})
    assert_refused(h, post_sns(h, notification(cert, alarm())), 403, "topic_not_allowed")


def test_old_message_is_refused_as_a_replay(harness: Harness, cert: SigningCert) -> None:
    old = notification(cert, alarm(), timestamp=NOW - dt.timedelta(hours=2))
    assert_refused(harness, post_sns(harness, old), 403, "message_expired")
    future = notification(cert, alarm(), timestamp=NOW + dt.timedelta(hours=1))
    assert_refused(harness, post_sns(harness, future), 403, "message_expired")


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        ("{not json", "text/plain; charset=UTF-8", 400, "malformed"),
        ('{"Type": "Notification"}', "text/plain", 400, "malformed"),
        ("[]", "application/json", 400, "malformed"),
        ("{}", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        ("{}", "text/html", 415, "unsupported_media_type"),
        ("{}", "text/plain; charset=latin-1", 415, "unsupported_media_type"),
        ("{}", "", 415, "unsupported_media_type"),
    ],
)
def test_bad_bodies_and_content_types(harness: Harness, body: str, content_type: str, status: int, code: str) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = harness.client.post("/webhooks/sns", content=body.encode(), headers=headers)
    assert_refused(harness, response, status, code)


def test_oversize_body_is_413(harness: Harness, cert: SigningCert) -> None:
    envelope = notification(cert, alarm(padding="x" * (256 * 1024)))
    assert_refused(harness, post_sns(harness, envelope), 413, "too_large")


def test_oversize_body_without_content_length_is_413(harness: Harness) -> None:
    def chunks():
        for _ in range(300):
            yield b"x" * 1024

    response = harness.client.post("/webhooks/sns", content=chunks(), headers={"Content-Type": "text/plain"})
    assert_refused(harness, response, 413, "too_large")


def test_sns_headers_must_match_the_body(harness: Harness, cert: SigningCert) -> None:
    envelope = notification(cert, alarm())
    headers = {**sns_headers(envelope), "x-amz-sns-topic-arn": OTHER_TOPIC}
    assert_refused(harness, post_sns(harness, envelope, headers), 400, "malformed")


def test_signed_message_that_is_not_an_alarm_is_422(harness: Harness, cert: SigningCert) -> None:
    envelope = notification(cert, "Hello from the SNS console", subject="test")
    assert_refused(harness, post_sns(harness, envelope), 422, "not_an_alarm")


def test_alarm_with_malformed_fields_is_422(harness: Harness, cert: SigningCert) -> None:
    envelope = notification(cert, alarm(NewStateReason=["not", "a", "string"]))
    assert_refused(harness, post_sns(harness, envelope), 422, "not_an_alarm")


def test_unknown_environment_for_the_topic_is_422(make_harness, cert: SigningCert) -> None:
    from .helpers import TOPIC

    h = make_harness(topics={TOPIC: "moon"})
    assert_refused(h, post_sns(h, notification(cert, alarm())), 422, "unknown_environment")


# --- verification switch -------------------------------------------------------------------------


def test_verification_is_on_unless_configured_off(make_harness, cert: SigningCert) -> None:
    forged = notification(SigningCert.make(), alarm())
    strict = make_harness()
    assert post_sns(strict, forged).status_code == 403
    relaxed = make_harness(verify=False)
    answer = post_sns(relaxed, forged)
    assert answer.status_code == 200 and answer.json()["status"] == "new"
    assert relaxed.certs.asked == []
    assert relaxed.audit()[-1]["verified"] is False


def test_verification_off_still_checks_topics_and_subscribe_hosts(make_harness, cert: SigningCert) -> None:
    h = make_harness(verify=False)
    assert post_sns(h, notification(cert, alarm(), topic=OTHER_TOPIC)).status_code == 403
    bad = confirmation(cert, subscribe_url="https://evil.example/?Action=ConfirmSubscription")
    assert post_sns(h, bad).status_code == 403 and h.visits.urls == []


# --- subscriptions -------------------------------------------------------------------------------


def test_subscription_confirmation_visits_the_subscribe_url_once(harness: Harness, cert: SigningCert) -> None:
    envelope = confirmation(cert)
    first = post_sns(harness, envelope)
    second = post_sns(harness, envelope)  # SNS may deliver it again
    assert first.status_code == 200 and first.json()["action"] == "subscription_confirmed"
    assert second.status_code == 200 and second.json()["status"] == "ignored"
    assert harness.visits.urls == [envelope["SubscribeURL"]]
    assert harness.incidents() == [] and harness.trigger.calls == []
    assert any(e.get("action") == "subscription_confirmed" for e in harness.audit())


def test_the_subscribe_url_is_visited_on_the_fetchers_pool_not_airflows(harness: Harness, cert: SigningCert) -> None:
    """The visit is an outbound call: a slow SubscribeURL must not hold a thread of the pool the API
    server's own routes share (it runs on the certificate fetchers' small pool)."""
    answer = post_sns(harness, confirmation(cert))
    assert answer.status_code == 200 and answer.json()["action"] == "subscription_confirmed"
    assert harness.visits.threads and all(n.startswith("sns-certificate") for n in harness.visits.threads), \
        harness.visits.threads


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/?Action=ConfirmSubscription&Token=x",
        "http://sns.ap-northeast-1.amazonaws.com/?Action=ConfirmSubscription&Token=x",
        "https://sns.ap-northeast-1.amazonaws.com.evil.example/?Action=ConfirmSubscription",
        "https://169.254.169.254/latest/meta-data/",
    ],
)
def test_subscribe_url_on_a_wrong_host_is_refused_and_not_visited(harness: Harness, cert: SigningCert, url: str) -> None:
    assert_refused(harness, post_sns(harness, confirmation(cert, subscribe_url=url)), 403, "url_not_allowed")
    assert harness.visits.urls == []


def test_forged_subscription_confirmation_is_not_visited(harness: Harness) -> None:
    assert_refused(harness, post_sns(harness, confirmation(SigningCert.make())), 403, "signature_invalid")
    assert harness.visits.urls == []


def test_subscription_for_an_unknown_topic_is_refused(harness: Harness, cert: SigningCert) -> None:
    assert_refused(harness, post_sns(harness, confirmation(cert, topic=OTHER_TOPIC)), 403, "topic_not_allowed")
    assert harness.visits.urls == []


def test_failed_visit_is_a_gateway_error(harness: Harness, cert: SigningCert) -> None:
    harness.visits.status = 404
    response = post_sns(harness, confirmation(cert))
    assert response.status_code == 502 and response.json()["error"] == "subscribe_failed"
    harness.visits.status = 200
    assert post_sns(harness, confirmation(cert)).json()["action"] == "subscription_confirmed"  # a retry works


def test_unsubscribe_confirmation_is_ignored(harness: Harness, cert: SigningCert) -> None:
    response = post_sns(harness, confirmation(cert, kind="UnsubscribeConfirmation"))
    assert response.status_code == 200 and response.json()["status"] == "ignored"
    assert harness.visits.urls == [] and harness.trigger.calls == []


# --- trigger failures ----------------------------------------------------------------------------


class FlakyTrigger:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[tuple[str, str]] = []
        self.runs: dict[tuple[str, str], dict] = {}

    def __call__(self, dag_id: str, run_id: str, conf: dict) -> bool:
        self.calls.append((dag_id, run_id))
        if self.failures:
            self.failures -= 1
            raise TriggerUnavailable("incident_response is not loaded (yet)")
        if (dag_id, run_id) in self.runs:
            return False
        self.runs[(dag_id, run_id)] = conf
        return True


def test_trigger_failure_is_503_and_the_sns_retry_starts_the_run(make_harness, cert: SigningCert) -> None:
    flaky = FlakyTrigger(failures=1)
    h = make_harness(trigger=flaky)
    envelope = notification(cert, alarm())
    failed = post_sns(h, envelope)
    assert failed.status_code == 503 and failed.json()["error"] == "trigger_unavailable"
    [incident] = h.incidents()  # kept: the alarm is real
    assert incident["dag_run_id"] is None
    retried = post_sns(h, envelope).json()  # SNS retries the same message
    assert retried["status"] == "joined" and retried["incident_id"] == incident["id"]
    assert list(flaky.runs) == [("incident_response", f"incident__{incident['id']}")]
    assert h.ledger.get(incident["id"])["dag_run_id"] == f"incident__{incident['id']}"
    assert h.ledger.get(incident["id"])["occurrences"] == 1


def test_an_incident_left_without_a_run_gets_one_later(harness: Harness, cert: SigningCert) -> None:
    incident, _ = harness.ledger.open_or_join(
        fingerprint="production:alarm:peoplebooster-production-alb-5xx", severity="P2", symptom="error_rate_high",
        title="t", service="backend", environment="production", reporter="x", at=NOW - dt.timedelta(minutes=5))
    answer = post_sns(harness, notification(cert, alarm())).json()
    assert answer["status"] == "joined" and answer["dag_run_id"] == f"incident__{incident['id']}"
    assert list(harness.trigger.runs) == [("incident_response", f"incident__{incident['id']}")]


def test_joining_a_run_started_elsewhere_answers_that_run(harness: Harness, cert: SigningCert) -> None:
    incident, _ = harness.ledger.open_or_join(
        fingerprint="production:alarm:peoplebooster-production-alb-5xx", severity="P2", symptom="error_rate_high",
        title="t", service="backend", environment="production", reporter="airflow-ui", at=NOW,
        dag_run_id="manual__2026-11-27T15:29:00+00:00")
    answer = post_sns(harness, notification(cert, alarm())).json()
    assert answer == {"status": "joined", "incident_id": incident["id"],
                      "dag_run_id": "manual__2026-11-27T15:29:00+00:00", "severity": "P2"}
    assert harness.trigger.calls == []


# --- generic alerts ------------------------------------------------------------------------------


def test_signed_alert_opens_an_incident(harness: Harness) -> None:
    body, headers = signed_alert(ALERT)
    response = harness.client.post("/webhooks/alert", content=body, headers=headers)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "new" and answer["severity"] == "P1"
    [conf] = harness.trigger.runs.values()
    assert (conf["reporter"], conf["symptom"], conf["incident_id"]) == ("uptime-robot", "ログインできない", answer["incident_id"])
    [incident] = harness.incidents()
    assert incident["fingerprint"] == "production:backend:login_failure"
    assert incident["title"] == "Login page failing"


def test_alert_severity_and_fingerprint_are_honoured(harness: Harness) -> None:
    alert = {**ALERT, "symptom": "something odd", "severity": "p3", "fingerprint": "synthetic-login-check",
             "summary": "odd", "title": None, "environment": "staging"}
    answer = harness.client.post("/webhooks/alert", content=(s := signed_alert(alert))[0], headers=s[1]).json()
    assert answer["severity"] == "P3"
    [incident] = harness.incidents()
    assert incident["fingerprint"] == "staging:synthetic-login-check" and incident["environment"] == "staging"


def test_alert_can_join_an_alarms_incident(harness: Harness, cert: SigningCert) -> None:
    opened = post_sns(harness, notification(cert, alarm())).json()
    alert = {**ALERT, "symptom": "5xx spike", "fingerprint": "alarm:peoplebooster-production-alb-5xx"}
    joined = harness.client.post("/webhooks/alert", content=(s := signed_alert(alert))[0], headers=s[1]).json()
    assert joined["status"] == "joined" and joined["incident_id"] == opened["incident_id"]
    assert len(harness.trigger.calls) == 1


def test_replayed_alert_counts_once(harness: Harness) -> None:
    body, headers = signed_alert(ALERT)
    answers = [harness.client.post("/webhooks/alert", content=body, headers=headers).json() for _ in range(3)]
    assert [a["status"] for a in answers] == ["new", "joined", "joined"]
    assert harness.incidents()[0]["occurrences"] == 1


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda b, h: (b, {**h, "X-Incident-Signature": "sha256=" + "0" * 64}), "signature_invalid"),
        (lambda b, h: (b + b" ", h), "signature_invalid"),
        (lambda b, h: (b, {k: v for k, v in h.items() if k != "X-Incident-Signature"}), "signature_missing"),
        (lambda b, h: (b, {k: v for k, v in h.items() if k != "X-Incident-Timestamp"}), "signature_missing"),
        (lambda b, h: signed_alert(ALERT, secret="wrong"), "signature_invalid"),
        (lambda b, h: signed_alert(ALERT, at=NOW - dt.timedelta(minutes=6)), "timestamp_expired"),
        (lambda b, h: signed_alert(ALERT, at=NOW + dt.timedelta(minutes=6)), "timestamp_expired"),
    ],
)
def test_bad_or_expired_hmac_is_401(harness: Harness, mutate, code: str) -> None:
    body, headers = mutate(*signed_alert(ALERT))
    assert_refused(harness, harness.client.post("/webhooks/alert", content=body, headers=headers), 401, code)


@pytest.mark.parametrize(
    ("alert", "fragment"),
    [
        ({**ALERT, "service": "payments"}, "service: unknown 'payments'"),
        ({**ALERT, "environment": "moon"}, "environment: unknown 'moon'"),
        ({k: v for k, v in ALERT.items() if k != "title"}, "title or summary is required"),
        ({k: v for k, v in ALERT.items() if k != "symptom"}, "symptom: Field required"),
        ({**ALERT, "severity": "P0"}, "severity"),
        ({**ALERT, "source": ""}, "source"),
        ({**ALERT, "symptom": "x" * 501}, "symptom"),
        ([ALERT], "JSON object"),
    ],
)
def test_invalid_alerts_are_422(harness: Harness, alert: Any, fragment: str) -> None:
    body, headers = signed_alert(alert)
    response = harness.client.post("/webhooks/alert", content=body, headers=headers)
    assert_refused(harness, response, 422, "invalid_alert")
    assert fragment in response.json()["reason"]


def test_alert_needs_json(harness: Harness) -> None:
    body, headers = signed_alert(ALERT)
    response = harness.client.post("/webhooks/alert", content=body, headers={**headers, "Content-Type": "text/plain"})
    assert_refused(harness, response, 415, "unsupported_media_type")
    raw = b"{broken"
    ts = headers["X-Incident-Timestamp"]
    from incident_ops.webhooks.hmac_auth import signature_header

    response = harness.client.post("/webhooks/alert", content=raw,
                                   headers={"Content-Type": "application/json", **signature_header(SECRET, ts, raw)})
    assert_refused(harness, response, 400, "malformed")


def test_alert_without_a_configured_secret_answers_like_a_bad_signature(make_harness, harness: Harness,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """The sender cannot tell a server without a secret from a wrong signature; the log says it loudly."""
    unconfigured = make_harness(secret=None)
    body, headers = signed_alert(ALERT)
    with caplog.at_level("ERROR", logger="incident_ops.webhooks.app"):
        response = unconfigured.client.post("/webhooks/alert", content=body, headers=headers)
    assert_refused(unconfigured, response, 401, "signature_invalid")
    wrong = harness.client.post("/webhooks/alert", content=body,
                                headers={**headers, "X-Incident-Signature": "sha256=" + "0" * 64})
    assert (response.status_code, response.json()) == (wrong.status_code, wrong.json())
    missing = {k: v for k, v in headers.items() if k != "X-Incident-Signature"}
    assert unconfigured.client.post("/webhooks/alert", content=body, headers=missing).json() == \
        harness.client.post("/webhooks/alert", content=body, headers=missing).json()
    assert any("MISCONFIGURED" in r.getMessage() and "incident_webhook" in r.getMessage() for r in caplog.records)
    assert unconfigured.audit()[0]["misconfigured"] == "no HMAC secret"


# --- severity raised -----------------------------------------------------------------------------


def test_a_higher_severity_raises_the_incident_and_escalates_once(harness: Harness) -> None:
    base = {**ALERT, "symptom": "レポート生成が遅い", "fingerprint": "reports"}
    post = harness.client.post
    first = post("/webhooks/alert", content=(s := signed_alert(base))[0], headers=s[1]).json()
    assert first["severity"] == "P3"
    harness.clock[0] = NOW + dt.timedelta(seconds=10)
    raised = post("/webhooks/alert", content=(s := signed_alert({**base, "severity": "P1"}, at=harness.clock[0]))[0],
                  headers=s[1]).json()
    assert raised["status"] == "joined" and raised["severity"] == "P1"
    assert raised["escalation_run_id"] == f"escalate__{first['incident_id']}__P1"
    harness.clock[0] = NOW + dt.timedelta(seconds=20)
    again = post("/webhooks/alert", content=(s := signed_alert({**base, "severity": "P1"}, at=harness.clock[0]))[0],
                 headers=s[1]).json()
    assert "escalation_run_id" not in again
    lower = post("/webhooks/alert", content=(s := signed_alert({**base, "severity": "P4"}, at=harness.clock[0]))[0],
                 headers=s[1]).json()
    assert lower["severity"] == "P1" and "escalation_run_id" not in lower  # never lowered
    escalations = harness.trigger.runs_of("incident_escalate")
    assert escalations == {raised["escalation_run_id"]: {"incident_id": first["incident_id"], "severity": "P1"}}
    assert len(harness.trigger.runs_of("incident_response")) == 1
    kinds = [e["kind"] for e in harness.ledger.events(first["incident_id"])]
    assert kinds.count("severity_raised") == 1 and kinds.count("escalation_requested") == 1


# --- audit ---------------------------------------------------------------------------------------


def test_every_delivery_leaves_one_audit_line_without_the_body(harness: Harness, cert: SigningCert) -> None:
    post_sns(harness, notification(cert, alarm()))
    post_sns(harness, "{broken")
    entries = harness.audit()
    assert [e["http_status"] for e in entries] == [200, 400]
    assert all("sha256" in e and "bytes" in e for e in entries)
    assert not any("Message" in json.dumps(e) for e in entries)
