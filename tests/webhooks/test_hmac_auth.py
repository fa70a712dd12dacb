"""HMAC-SHA256 over "timestamp.body": valid, bad signature, expired and future timestamps, bad headers."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import pytest

from incident_ops.webhooks import hmac_auth
from incident_ops.webhooks.hmac_auth import HmacError

from .helpers import NOW, SECRET

BODY = '{"source": "uptime", "title": "login", "service": "backend", "symptom": "ログインできない"}'.encode()
TS = str(int(NOW.timestamp()))


def reference_signature(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def test_matches_an_independent_computation() -> None:
    assert hmac_auth.signature_header(SECRET, TS, BODY) == {
        "X-Incident-Timestamp": TS, "X-Incident-Signature": reference_signature(SECRET, TS, BODY)}


def test_valid_request_passes() -> None:
    assert hmac_auth.verify(SECRET, TS, reference_signature(SECRET, TS, BODY), BODY, now=NOW) == int(TS)
    upper = reference_signature(SECRET, TS, BODY).upper().replace("SHA256=", "sha256=")
    assert hmac_auth.verify(SECRET, TS, upper, BODY, now=NOW) == int(TS)


@pytest.mark.parametrize(
    ("timestamp", "signature", "body", "code"),
    [
        (TS, reference_signature("another secret", TS, BODY), BODY, "signature_invalid"),
        (TS, reference_signature(SECRET, TS, BODY), BODY + b" ", "signature_invalid"),
        (TS, reference_signature(SECRET, str(int(TS) + 1), BODY), BODY, "signature_invalid"),
        (TS, "sha1=" + "0" * 40, BODY, "signature_invalid"),
        (TS, "sha256=zz", BODY, "signature_invalid"),
        (None, reference_signature(SECRET, TS, BODY), BODY, "signature_missing"),
        (TS, None, BODY, "signature_missing"),
        ("-5", reference_signature(SECRET, "-5", BODY), BODY, "timestamp_invalid"),
        ("1e9", reference_signature(SECRET, "1e9", BODY), BODY, "timestamp_invalid"),
    ],
)
def test_bad_requests_are_refused(timestamp: str | None, signature: str | None, body: bytes, code: str) -> None:
    with pytest.raises(HmacError) as caught:
        hmac_auth.verify(SECRET, timestamp, signature, body, now=NOW)
    assert caught.value.code == code and caught.value.status == 401


@pytest.mark.parametrize("offset", [301, 3600, -301, -86400])
def test_outside_the_replay_window_is_expired(offset: int) -> None:
    ts = str(int((NOW - dt.timedelta(seconds=offset)).timestamp()))
    with pytest.raises(HmacError) as caught:
        hmac_auth.verify(SECRET, ts, reference_signature(SECRET, ts, BODY), BODY, now=NOW, window_seconds=300)
    assert caught.value.code == "timestamp_expired"
    assert ("future" in caught.value.reason) == (offset < 0)


@pytest.mark.parametrize("offset", [0, 299, -299])
def test_inside_the_window_passes(offset: int) -> None:
    ts = str(int((NOW - dt.timedelta(seconds=offset)).timestamp()))
    hmac_auth.verify(SECRET, ts, reference_signature(SECRET, ts, BODY), BODY, now=NOW, window_seconds=300)
