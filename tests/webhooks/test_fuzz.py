"""Fuzzing both endpoints with hypothesis: whatever arrives, the answer is never a 5xx, and input
that is not authentic and well-formed never triggers a run nor writes to the ledger.
(`FUZZ_EXAMPLES=2000` for a longer run.)"""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from .conftest import Harness
from .helpers import CERT_URL, SECRET, alarm, notification, signed_alert, sns_headers

FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

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
