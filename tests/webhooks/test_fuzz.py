"""Fuzzing both endpoints with hypothesis: whatever arrives, the answer is never a 5xx, and input
that is not authentic and well-formed never triggers a run nor writes to the ledger.
(`FUZZ_EXAMPLES=2000` for a longer run.)"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from incident_ops.webhooks import sns

from .conftest import Harness
from .helpers import CERT_URL, NOW, SECRET, alarm, asgi_request, notification, signed_alert, sns_headers
from .responder_helpers import (
    PD_SECRET,
    ResponderHarness,
    interaction,
    make_responders_fixture,  # noqa: F401 - the fixture `make_responders`
    pd_event,
    pd_signed,
    slack_signed,
)

# The number of examples is the profile's (tests/conftest.py): 150, 25 in `make check`, FUZZ_EXAMPLES if set.
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)
content_types = st.sampled_from(["text/plain", "text/plain; charset=UTF-8", "application/json", "text/html",
                                 "application/json; charset=latin-1", "multipart/form-data", "", "*/*", "text/plain;;;"])
header_names = st.sampled_from(["x-amz-sns-message-type", "x-amz-sns-message-id", "x-amz-sns-topic-arn",
                                "X-Incident-Timestamp", "X-Incident-Signature", "X-Forwarded-For"])
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
bodies = st.one_of(
    st.binary(max_size=600),
    st.text(max_size=600).map(str.encode),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["Type", "MessageId", "TopicArn", "Message", "Timestamp", "SignatureVersion",
                                     "Signature", "SigningCertURL", "Token", "SubscribeURL", "Subject"]),
                    st.one_of(st.text(max_size=60), st.sampled_from(["Notification", "SubscriptionConfirmation", "1",
                                                                      "2", CERT_URL])), max_size=11)
    .map(lambda d: json.dumps(d).encode()),
)


@pytest.fixture
def harness(make_harness) -> Harness:
    """Hundreds of distinct authentic alarms in one (fixed) minute: no cap on new incidents here (the
    cap has its own tests, test_flood.py)."""
    return make_harness(new_incidents_per_source_per_minute=0, new_incidents_per_minute=0)


def assert_nothing_happened(h: Harness) -> None:
    assert h.trigger.calls == []
    assert h.incidents() == [] and h.event_count() == 0


@FUZZ
@given(body=bodies, content_type=content_types, extra=st.dictionaries(header_names, header_values, max_size=4),
       endpoint=st.sampled_from(["/webhooks/sns", "/webhooks/alert"]))
def test_random_requests_never_5xx_never_trigger(harness: Harness, body: bytes, content_type: str,
                                                 extra: dict[str, str], endpoint: str) -> None:
    headers = {**({"Content-Type": content_type} if content_type else {}), **extra}
    headers.pop("Content-Length", None)  # the client computes it
    try:
        response = harness.client.post(endpoint, content=body, headers=headers)
    except Exception:  # noqa: BLE001 - the HTTP client itself refused the headers: nothing was sent
        return
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.json()["error"]
    assert_nothing_happened(harness)


SIGNED_FIELDS = ["Type", "MessageId", "TopicArn", "Message", "Timestamp", "Subject", "SignatureVersion", "Signature",
                 "SigningCertURL"]


@FUZZ
@given(data=st.data(), field=st.sampled_from(SIGNED_FIELDS), drop=st.booleans())
def test_any_change_to_a_signed_notification_is_refused(harness: Harness, cert, data: st.DataObject, field: str,
                                                        drop: bool) -> None:
    envelope: dict[str, Any] = notification(cert, alarm())
    if drop:
        del envelope[field]
    else:
        new = data.draw(st.one_of(st.text(max_size=80), json_values), label="value")
        assume(new != envelope[field])
        envelope[field] = new
    response = harness.client.post("/webhooks/sns", content=json.dumps(envelope), headers={
        "Content-Type": "text/plain; charset=UTF-8"})
    if drop and field == "Subject":  # Subject is optional, but it was signed: the signature breaks
        assert response.status_code == 403
    assert 400 <= response.status_code < 500, (field, response.status_code, response.text)
    assert_nothing_happened(harness)


alert_fields = st.fixed_dictionaries(
    {},
    optional={
        "source": st.text(max_size=120),
        "title": st.one_of(st.none(), st.text(max_size=20)),
        "summary": st.text(max_size=20),
        "service": st.sampled_from(["backend", "frontend", "peoplebooster-backend", "payments", ""]),
        "symptom": st.sampled_from(["ログインできない", "レポート生成が遅い", "random", "", "x" * 600]),
        "severity": st.one_of(st.sampled_from(["P1", "p2", "auto", "P5", ""]), json_values),
        "fingerprint": st.one_of(st.text(max_size=210), json_values),
        "environment": st.sampled_from(["production", "staging", "moon"]),
        "impact": st.text(max_size=20),
    },
)


@FUZZ
@given(alert=st.one_of(alert_fields, json_values))
def test_signed_alerts_of_any_shape_never_5xx(harness: Harness, alert: Any) -> None:
    before = len(harness.trigger.calls)
    body, headers = signed_alert(alert, secret=SECRET)
    response = harness.client.post("/webhooks/alert", content=body, headers=headers)
    assert response.status_code in (200, 422), (alert, response.status_code, response.text)
    if response.status_code != 200:
        assert len(harness.trigger.calls) == before
    else:
        assert response.json()["status"] in ("new", "joined")


@FUZZ
@given(state=st.sampled_from(["ALARM", "OK", "INSUFFICIENT_DATA"]),
       name=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=0x30FF), min_size=1, max_size=255),
       extra=st.dictionaries(st.text(max_size=10), json_values, max_size=3))
def test_authentic_alarms_of_any_name_are_mapped_never_dropped(harness: Harness, cert, state: str, name: str,
                                                              extra: dict[str, Any]) -> None:
    assume(name.strip())
    message = {**{k: v for k, v in extra.items() if k not in ("AlarmName", "NewStateValue", "StateChangeTime")},
               **alarm(name, state)}
    envelope = notification(cert, message)
    response = harness.client.post("/webhooks/sns", content=json.dumps(envelope), headers=sns_headers(envelope))
    if any(isinstance(message.get(k), str) is False and message.get(k) is not None
           for k in ("NewStateReason", "AlarmDescription", "Region", "AlarmArn", "AWSAccountId", "OldStateValue")):
        assert response.status_code == 422
        return
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] in (("new", "joined") if state == "ALARM" else ("recorded", "ignored"))
    if state == "ALARM":
        assert answer["dag_run_id"] == f"incident__{answer['incident_id']}"


# --- headers, odd envelopes, odd times (issue 16): whatever arrives, zero 5xx --------------------

surrogates = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"])
any_text = st.text(alphabet=st.characters() | surrogates, max_size=60)
# Header values as the server passes them on: any byte but CR and LF (Starlette decodes them as latin-1).
header_bytes = st.binary(max_size=120).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
digits_like = st.sampled_from(["²", "١٢", "１２", "1²", "¹²³", "٣", "⁴", "𝟗", "0x10", "1e3", "-1", "+1", " 12", "12 ", "\t7"])
header_values = st.one_of(
    header_bytes,
    digits_like.map(lambda v: v.encode("utf-8")),
    digits_like.map(lambda v: v.encode("latin-1", "ignore")),
    st.integers(min_value=-(10**30), max_value=10**30).map(lambda n: str(n).encode()),
    st.sampled_from([b"9" * 5000, b"1.2.3.4, " * 8000, b" " * 1000, b"\x85" * 300, b"\xe2\x80\xa8" * 100]),
    st.sampled_from([b"application/json", b"text/plain; charset=UTF-8", b"text/plain; charset=\"utf-8\"",
                     b"application/json; charset=ucs-2", b"application/json;;charset", b"application/json; =",
                     b"TEXT/PLAIN", b"text/plain\x00", b"application/json\xff"]),
)
header_keys = st.sampled_from([b"content-length", b"content-type", b"x-incident-timestamp", b"x-incident-signature",
                               b"x-forwarded-for", b"x-amz-sns-message-type", b"x-amz-sns-message-id",
                               b"x-amz-sns-topic-arn", b"transfer-encoding", b"host", b"x-real-ip"])
targets = st.sampled_from([("POST", "/webhooks/sns"), ("POST", "/webhooks/alert"), ("GET", "/webhooks/sns"),
                           ("PUT", "/webhooks/alert"), ("GET", "/webhooks/docs"), ("GET", "/webhooks/openapi.json"),
                           ("GET", "/docs"), ("POST", "/webhooks/sns/"), ("POST", "/webhooks/%00")])


@FUZZ
@given(target=targets, body=bodies, headers=st.lists(st.tuples(header_keys, header_values), max_size=6))
def test_any_headers_on_any_endpoint_never_5xx(harness: Harness, target: tuple[str, str], body: bytes,
                                              headers: list[tuple[bytes, bytes]]) -> None:
    method, path = target
    audit_file = harness.config.audit_log
    before = audit_file.read_bytes().count(b"\n") if audit_file.exists() else 0
    status, answer = asgi_request(harness.app, path, method=method, headers=headers, body=body)
    assert status < 500, (status, answer)
    if method == "POST" and path in ("/webhooks/sns", "/webhooks/alert"):
        assert 400 <= status < 500 and json.loads(answer)["error"]
        written = audit_file.read_bytes()
        assert written.count(b"\n") == before + 1  # exactly one line per request, whatever came in
        last = written.splitlines()[-1]
        assert last.isascii() and len(last) < 16 * 1024
    assert_nothing_happened(harness)


def _odd_time() -> st.SearchStrategy[str]:
    offsets = st.sampled_from(["Z", "+00:00", "+09:00", "-09:00", "+14:00", "-12:00", "+0000", "+23:59", ""])
    dates = st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59))
    return st.one_of(
        st.tuples(dates, offsets).map(lambda p: p[0].isoformat(timespec="milliseconds") + p[1]),
        st.sampled_from(["0001-01-01T00:00:00+09:00", "9999-12-31T23:59:59-09:00", "2026-11-27", "2026-11-27T15:30:00",
                         "2026-13-01T00:00:00Z", "2026-11-27T15:30:00.000Z\x00", "20261127T153000Z", ""]),
        any_text,
    )


sns_odd_fields = st.fixed_dictionaries({}, optional={
    "Timestamp": _odd_time(),
    "Message": st.one_of(any_text, json_values.map(json.dumps)),
    "Subject": st.one_of(any_text, st.none(), json_values),
    "MessageId": st.one_of(any_text, st.sampled_from(["a" * 129, "../x", "m-1"])),
    "SignatureVersion": st.one_of(st.sampled_from(["1", "2", "3", "", " 2", "２"]), json_values),
    "Signature": st.one_of(any_text, st.sampled_from(["", "====", "A" * 10000])),
    "SigningCertURL": st.one_of(any_text, st.sampled_from([
        CERT_URL, CERT_URL.replace("ap-northeast-1", "us-east-1"), CERT_URL + "?x=1", CERT_URL.replace("https", "http"),
        "https://sns.ap-northeast-1.amazonaws.com/SimpleNotificationService-" + "f" * 32 + ".pem",
        "https://sns.ap-northeast-1.amazonaws.com:99999/x.pem", "https://[::1/x.pem", "https://sns.ap-northeast-1.amazonaws.com\ud800/x.pem"])),
    "Type": st.sampled_from(["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation", "Publish"]),
    "Token": any_text,
    "SubscribeURL": st.one_of(any_text, st.sampled_from(["https://sns.ap-northeast-1.amazonaws.com/?Action=ConfirmSubscription",
                                                          "https://169.254.169.254/"])),
    "UnsubscribeURL": any_text,
})


@FUZZ
@given(odd=sns_odd_fields, content_type=st.sampled_from(["text/plain; charset=UTF-8", "application/json"]))
def test_sns_envelopes_with_odd_fields_never_5xx(harness: Harness, cert, odd: dict[str, Any], content_type: str) -> None:
    envelope: dict[str, Any] = {**notification(cert, alarm()), **odd}
    body = json.dumps(envelope).encode()  # ASCII-escaped: a lone surrogate arrives as \ud800, as the internet sends it
    response = harness.client.post("/webhooks/sns", content=body, headers={"Content-Type": content_type})
    assert response.status_code < 500, (odd, response.status_code, response.text)
    if odd and any(envelope.get(k) != v for k, v in notification(cert, alarm()).items() if k in odd):
        assert 400 <= response.status_code < 500 or response.json()["status"] in ("new", "joined", "ignored")


@FUZZ
@given(changed=_odd_time(), state=st.sampled_from(["ALARM", "OK"]))
def test_signed_alarms_with_any_state_change_time_never_5xx_nor_move_deadlines(harness: Harness, cert, changed: str,
                                                                               state: str) -> None:
    assume(not sns.has_lone_surrogate(changed))  # SNS signs UTF-8 text (lone surrogates: see above)
    envelope = notification(cert, alarm(state=state, StateChangeTime=changed))
    response = harness.client.post("/webhooks/sns", content=json.dumps(envelope), headers=sns_headers(envelope))
    assert response.status_code in (200, 422), (changed, response.status_code, response.text)
    for incident in harness.incidents():  # whatever StateChangeTime said, detection stays near the delivery
        assert NOW - dt.timedelta(hours=1) <= incident["detected_at"] <= NOW + dt.timedelta(minutes=5)


@FUZZ
@given(spelling=st.one_of(
    st.tuples(st.sampled_from(["", " ", "  ", "\t", " \t "]), st.sampled_from(["", " ", "\t"]), st.sampled_from(["", "0", "00"]))
    .map(lambda p: f"{p[0]}{p[2]}{{ts}}{p[1]}"),
    digits_like, any_text.filter(lambda t: "\r" not in t and "\n" not in t)),
    resign=st.booleans())
def test_signed_alerts_with_any_timestamp_header_never_5xx(harness: Harness, spelling: str, resign: bool) -> None:
    body, headers = signed_alert({"source": "fuzz", "title": "t", "service": "backend", "symptom": "ログインできない"})
    timestamp = spelling.replace("{ts}", headers["X-Incident-Timestamp"])
    signature = headers["X-Incident-Signature"]
    if resign:  # the sender signs the stripped header as given (a real secret holder, odd formatting)
        signature = "sha256=" + hmac.new(SECRET.encode(), timestamp.strip().encode("utf-8", "surrogatepass") + b"." + body,
                                         hashlib.sha256).hexdigest()
    raw = [(b"content-type", b"application/json"), (b"x-incident-signature", signature.encode()),
           (b"x-incident-timestamp", timestamp.encode("utf-8", "surrogatepass"))]
    status, answer = asgi_request(harness.app, "/webhooks/alert", headers=raw, body=body)
    assert status in (200, 401), (timestamp, status, answer)
    assert len(harness.incidents()) <= 1
    if harness.incidents():
        assert harness.incidents()[0]["occurrences"] == 1  # one signed instant and body: one delivery


# --- Slack and PagerDuty (issue 14): whatever arrives, zero 5xx, nothing acted on unless authentic ----

responder_targets = st.sampled_from([("POST", "/webhooks/slack"), ("POST", "/webhooks/pagerduty"),
                                     ("GET", "/webhooks/slack"), ("PUT", "/webhooks/pagerduty")])
responder_header_keys = st.sampled_from([b"content-length", b"content-type", b"x-slack-request-timestamp",
                                         b"x-slack-signature", b"x-slack-retry-num", b"x-pagerduty-signature",
                                         b"x-forwarded-for", b"x-webhook-id", b"user-agent"])
responder_content_types = st.sampled_from([b"application/x-www-form-urlencoded", b"application/json",
                                           b"application/x-www-form-urlencoded; charset=latin-1", b"text/plain",
                                           b"multipart/form-data; boundary=x", b""])
form_bodies = st.one_of(
    bodies,
    st.dictionaries(st.sampled_from(["payload", "command", "text", "user_id", "channel_id", "token", "x"]),
                    st.one_of(st.text(max_size=80), json_values.map(json.dumps)), max_size=6)
    .map(lambda d: urlencode(d).encode()),
)


@pytest.fixture
def responders_app(make_responders) -> ResponderHarness:
    return make_responders()


def _nothing_acted(h: ResponderHarness) -> None:
    h.idle()
    assert h.hitl.calls == [] and h.slack.ephemerals == [] and h.slack.updates == [] and h.trigger.calls == []
    assert h.event_count() == 0


@FUZZ
@given(target=responder_targets, body=form_bodies,
       headers=st.lists(st.tuples(responder_header_keys, header_values), max_size=6),
       content_type=responder_content_types)
def test_any_request_to_slack_or_pagerduty_never_5xx(responders_app: ResponderHarness, target: tuple[str, str],
                                                    body: bytes, headers: list[tuple[bytes, bytes]],
                                                    content_type: bytes) -> None:
    h = responders_app
    method, path = target
    audit_file = h.config.audit_log
    before = audit_file.read_bytes().count(b"\n") if audit_file.exists() else 0
    raw = [(b"content-type", content_type), *headers] if content_type else headers
    status, answer = asgi_request(h.app, path, method=method, headers=raw, body=body)
    assert status < 500, (status, answer)
    if method == "POST":
        assert 400 <= status < 500 and json.loads(answer)["error"]
        written = audit_file.read_bytes()
        assert written.count(b"\n") == before + 1
        assert written.splitlines()[-1].isascii()
    _nothing_acted(h)


slack_values = st.one_of(json_values, st.fixed_dictionaries({}, optional={
    "incident_id": st.one_of(st.sampled_from(["INC-20261128-abcdef", "INC-x", ""]), json_values),
    "dag_id": st.one_of(st.sampled_from(["incident_response", "../x", ""]), json_values),
    "run_id": st.one_of(st.text(max_size=300), json_values),
    "task_id": st.one_of(st.sampled_from(["recover.choose_scenario", "a" * 300]), json_values),
    "map_index": st.one_of(st.integers(min_value=-(10**20), max_value=10**20), st.booleans(), json_values),
    "option": st.one_of(st.text(max_size=40), json_values),
}))


@FUZZ
@given(value=slack_values, block=st.sampled_from(["incident_ops.decision", "incident_ops.acknowledge", "x"]),
       action=st.sampled_from(["decision:0", "acknowledge", "decision:", ""]),
       user=st.sampled_from(["U0TANAKA1", "U0STRANGER", "u", "U" * 40]), label=any_text)
def test_signed_clicks_of_any_shape_never_5xx(responders_app: ResponderHarness, value: Any, block: str, action: str,
                                             user: str, label: str) -> None:
    h = responders_app
    assume(not sns.has_lone_surrogate(label))
    body, headers = slack_signed(interaction(user=user, value=value if isinstance(value, dict) else json.dumps(value),
                                             block_id=block, action_id=action, label=label))
    response = h.client.post("/webhooks/slack", content=body, headers=headers)
    assert response.status_code in (200, 400), (response.status_code, response.text)
    h.idle()
    assert h.hitl.calls == []  # there is no such incident in the ledger: nothing reaches Airflow
    assert h.event_count() == 0


@FUZZ
@given(payload=json_values, fields=st.dictionaries(st.sampled_from(["user_id", "command", "text", "channel_id"]),
                                                   st.text(max_size=60), max_size=4))
def test_signed_forms_of_any_shape_never_5xx(responders_app: ResponderHarness, payload: Any,
                                             fields: dict[str, str]) -> None:
    h = responders_app
    assume(not any(sns.has_lone_surrogate(v) for v in fields.values()))
    for form in ({"payload": json.dumps(payload)}, {**fields, "command": "/other"}):
        body, headers = slack_signed(urlencode(form).encode())
        response = h.client.post("/webhooks/slack", content=body, headers=headers)
        assert response.status_code in (200, 400), (form, response.status_code, response.text)
    _nothing_acted(h)


pd_fields = st.fixed_dictionaries({}, optional={
    "id": st.one_of(st.text(max_size=140), json_values),
    "event_type": st.one_of(st.sampled_from(["incident.acknowledged", "incident.resolved", "incident.escalated",
                                             "incident.reassigned", "pagey.ping", ""]), json_values),
    "occurred_at": _odd_time(),
    "agent": json_values,
    "data": st.one_of(json_values, st.fixed_dictionaries({}, optional={
        "incident_key": st.one_of(st.text(max_size=140), json_values), "assignees": json_values,
        "number": json_values, "title": json_values})),
})


@FUZZ
@given(fields=pd_fields, wrap=st.booleans())
def test_signed_pagerduty_events_of_any_shape_never_5xx(responders_app: ResponderHarness, fields: dict[str, Any],
                                                       wrap: bool) -> None:
    h = responders_app
    event = {**pd_event("incident.acknowledged", "INC-20261128-abcdef")["event"], **fields}
    body, headers = pd_signed(json.dumps({"event": event} if wrap else event).encode(), PD_SECRET)
    response = h.client.post("/webhooks/pagerduty", content=body, headers=headers)
    assert response.status_code in (200, 400, 403), (fields, response.status_code, response.text)
    if response.status_code == 200:
        assert response.json()["status"] in ("ignored", "replayed")  # no such incident in the ledger
    assert h.event_count() == 0
