"""The alarm intake against what the internet sends (issue 16): replays after recovery, certificate
fetches on demand, 5xx from odd input, the audit line, the options that close what is not needed."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from incident_ops.core.ledger import Ledger, deliveries_table
from incident_ops.core.runbook import Runbook
from incident_ops.webhooks import sns
from incident_ops.webhooks.app import WebhookServices, create_app
from incident_ops.webhooks.audit import AuditLog
from incident_ops.webhooks.config import WebhookConfig
from incident_ops.webhooks.hmac_auth import signature_header

from .conftest import Harness
from .helpers import (
    NOW,
    SECRET,
    TOPIC,
    CountingTrigger,
    SigningCert,
    alarm,
    asgi_request,
    notification,
    serve_app,
    signed_alert,
    sns_headers,
)

ALERT = {"source": "uptime-robot", "title": "Login page failing", "service": "backend", "symptom": "ログインできない"}


def post_sns(h: Harness, envelope: dict[str, Any]):
    return h.client.post("/webhooks/sns", content=json.dumps(envelope), headers=sns_headers(envelope))


def post_alert(h: Harness, body: bytes, headers: dict[str, str]):
    return h.client.post("/webhooks/alert", content=body, headers=headers)


def at(minutes: float) -> dt.datetime:
    return NOW + dt.timedelta(minutes=minutes)


# --- replays after recovery ----------------------------------------------------------------------


def test_an_sns_message_replayed_after_recovery_or_close_opens_nothing(make_harness, any_ledger_url: str,
                                                                      cert: SigningCert) -> None:
    h = make_harness(any_ledger_url)
    envelope = notification(cert, alarm())
    first = post_sns(h, envelope).json()
    assert first["status"] == "new"
    h.ledger.mark_recovered(first["incident_id"], at(10))
    h.clock[0] = at(20)  # the same MessageId 20 minutes after recovery (its Timestamp is still fresh)
    replay = post_sns(h, envelope)
    assert replay.status_code == 200, replay.text
    assert replay.json()["status"] == "replayed" and replay.json()["incident_id"] == first["incident_id"]
    h.ledger.close(first["incident_id"], at(25))
    h.clock[0] = at(30)
    assert post_sns(h, envelope).json()["status"] == "replayed"
    assert len(h.incidents()) == 1 and h.trigger.calls == [("incident_response", first["dag_run_id"])]
    assert [e["status"] for e in h.audit()] == ["new", "replayed", "replayed"]
    # a new message of the same alarm is a new incident, as before
    assert post_sns(h, notification(cert, alarm(), timestamp=at(30))).json()["status"] == "new"


def test_a_redelivery_while_the_incident_is_open_still_joins_and_counts_once(harness: Harness,
                                                                            cert: SigningCert) -> None:
    envelope = notification(cert, alarm())
    first = post_sns(harness, envelope).json()
    harness.clock[0] = at(5)
    again = post_sns(harness, envelope).json()
    assert again["status"] == "joined" and again["incident_id"] == first["incident_id"]
    assert again["dag_run_id"] == first["dag_run_id"]
    assert harness.incidents()[0]["occurrences"] == 1


def test_a_replayed_ok_records_nothing_on_a_later_incident(harness: Harness, cert: SigningCert) -> None:
    opened = post_sns(harness, notification(cert, alarm())).json()
    ok = notification(cert, alarm(state="OK"), timestamp=at(1))
    harness.clock[0] = at(1)
    assert post_sns(harness, ok).json()["status"] == "recorded"
    harness.ledger.mark_recovered(opened["incident_id"], at(2))
    harness.clock[0] = at(3)
    later = post_sns(harness, notification(cert, alarm(), timestamp=at(3))).json()
    assert later["status"] == "new"
    assert post_sns(harness, ok).json()["status"] == "replayed"
    assert "alarm_ok" not in [e["kind"] for e in harness.ledger.events(later["incident_id"])]


def test_an_ignored_message_replayed_later_is_not_recorded(harness: Harness, cert: SigningCert) -> None:
    ok = notification(cert, alarm(state="OK"))
    assert post_sns(harness, ok).json()["status"] == "ignored"  # no open incident
    opened = post_sns(harness, notification(cert, alarm())).json()
    assert post_sns(harness, ok).json()["status"] == "replayed"
    assert "alarm_ok" not in [e["kind"] for e in harness.ledger.events(opened["incident_id"])]


def test_an_alert_replayed_after_recovery_opens_nothing(make_harness, any_ledger_url: str) -> None:
    h = make_harness(any_ledger_url)
    body, headers = signed_alert(ALERT)
    first = post_alert(h, body, headers).json()
    assert first["status"] == "new"
    h.ledger.mark_recovered(first["incident_id"], at(1))
    h.clock[0] = at(2)  # inside the 5-minute HMAC window
    replay = post_alert(h, body, headers).json()
    assert replay["status"] == "replayed" and replay["incident_id"] == first["incident_id"]
    assert len(h.incidents()) == 1 and len(h.trigger.calls) == 1


@pytest.mark.parametrize("spelling", [" {ts}", "{ts} ", "\t{ts}", "  {ts}  ", "0{ts}"])
def test_the_same_instant_spelled_differently_is_the_same_delivery(harness: Harness, spelling: str) -> None:
    body, headers = signed_alert(ALERT)
    assert post_alert(harness, body, headers).json()["status"] == "new"
    timestamp = spelling.format(ts=headers["X-Incident-Timestamp"])
    # padding is stripped before the HMAC, so the original signature still verifies; a leading zero
    # needs a new signature (only the secret's holder can make one), and is the same instant too
    odd = {**headers, **signature_header(SECRET, timestamp.strip(), body), "X-Incident-Timestamp": timestamp}
    answer = post_alert(harness, body, odd)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "joined"
    [incident] = harness.incidents()
    assert incident["occurrences"] == 1


def test_remembered_deliveries_end_with_their_window(harness: Harness, cert: SigningCert) -> None:
    envelope = notification(cert, alarm())
    post_sns(harness, envelope)
    body, headers = signed_alert({**ALERT, "fingerprint": "synthetic"})
    post_alert(harness, body, headers)
    with harness.ledger.engine.connect() as conn:
        rows = {r.key: r.expires_at for r in conn.execute(sa.select(deliveries_table))}
    assert rows[f"sns:{envelope['MessageId']}"] == NOW + dt.timedelta(seconds=3601)  # Timestamp + max age
    [alert_key] = [k for k in rows if k.startswith("alert:")]
    assert rows[alert_key] == NOW + dt.timedelta(seconds=301)  # X-Incident-Timestamp + window
    # after both windows, the next delivery's bookkeeping deletes them
    harness.clock[0] = at(61)
    post_sns(harness, notification(cert, alarm(), timestamp=at(61)))
    with harness.ledger.engine.connect() as conn:
        keys = [r.key for r in conn.execute(sa.select(deliveries_table))]
    assert len(keys) == 1 and keys[0] not in rows
    harness.clock[0] = at(62)
    assert post_sns(harness, envelope).json()["error"] == "message_expired"  # and the replay is too old anyway


# --- certificate fetches -------------------------------------------------------------------------


def test_a_failed_certificate_url_is_not_fetched_again_for_a_while(harness: Harness, cert: SigningCert) -> None:
    url = "https://sns.ap-northeast-1.amazonaws.com/SimpleNotificationService-ffffffffffffffffffffffffffffffff.pem"
    answers = [post_sns(harness, notification(cert, alarm(), cert_url=url)) for _ in range(5)]
    assert {(a.status_code, a.json()["error"]) for a in answers} == {(403, "certificate_unavailable")}
    assert harness.certs.asked == [url]


def test_a_certificate_from_a_region_of_no_allowed_topic_is_not_fetched(make_harness, cert: SigningCert) -> None:
    url = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123456789abcdef0123456789abcdef.pem"
    h = make_harness()
    answer = post_sns(h, notification(cert, alarm(), cert_url=url))
    assert answer.status_code == 403 and answer.json()["error"] == "url_not_allowed" and h.certs.asked == []
    configured = make_harness(cert_regions=frozenset({"ap-northeast-1", "us-east-1"}))
    configured.certs.pems[url] = cert.pem
    assert post_sns(configured, notification(cert, alarm(), cert_url=url)).json()["status"] == "new"


class _BrokenRaw:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def read(self, *args: Any, **kwargs: Any) -> bytes:
        raise self.error


class _Response:
    status_code = 200

    def __init__(self, error: Exception) -> None:
        self.raw = _BrokenRaw(error)

    def __enter__(self) -> _Response:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


def _urllib3_errors() -> list[Exception]:
    from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError

    return [ProtocolError("Connection broken: IncompleteRead"), ReadTimeoutError(None, "/x.pem", "read timed out"),
            DecodeError("bad gzip"), ConnectionResetError(104, "reset"), ssl.SSLError("bad record mac")]


@pytest.mark.parametrize("error", _urllib3_errors(), ids=lambda e: type(e).__name__)
def test_certificate_read_errors_are_403_not_500(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    monkeypatch.setattr(requests, "get", lambda *args, **kwargs: _Response(error))
    services = WebhookServices(config=WebhookConfig(audit_log=None), trigger=CountingTrigger(), secret=lambda: None)
    with pytest.raises(sns.SnsError) as caught:
        services._https_get_certificate("https://sns.ap-northeast-1.amazonaws.com/SimpleNotificationService-"
                                        "0123456789abcdef0123456789abcdef.pem")
    assert (caught.value.status, caught.value.code) == (403, "certificate_unavailable")


def test_a_fetch_that_raises_anything_is_certificate_unavailable(make_harness, cert: SigningCert) -> None:
    h = make_harness()

    def broken(url: str) -> bytes:
        raise RuntimeError("something a library raised")

    h.app.state.services().fetch = broken
    answer = post_sns(h, notification(cert, alarm()))
    assert answer.status_code == 403 and answer.json()["error"] == "certificate_unavailable"


@dataclass
class SlowCertServer:
    """An HTTPS server (local CA) that answers every request after `delay` seconds, with 404 or the
    PEM it was given, and counts the requests it saw and how many were open at once."""

    delay: float
    pem: bytes | None = None
    requests: int = 0
    open_now: int = 0
    most_open: int = 0
    answered: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def slow_cert_server(tmp_path: Path) -> Iterator[tuple[SlowCertServer, str, str]]:
    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    state = SlowCertServer(delay=3.0)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            with state.lock:
                state.requests += 1
                state.open_now += 1
                state.most_open = max(state.most_open, state.open_now)
            try:
                time.sleep(state.delay)
                body = state.pem or b"not found"
                self.send_response(200 if state.pem else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            finally:
                with state.lock:
                    state.open_now -= 1
                    state.answered += 1

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    leaf.configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, name="slow-cert-server", daemon=True)
    thread.start()
    try:
        yield state, f"127.0.0.1:{server.server_address[1]}", str(ca_path)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.server
@pytest.mark.parametrize("distinct", [True, False], ids=["100-urls", "one-url"])
def test_an_unrelated_route_answers_while_100_slow_certificate_fetches_are_pending(
        slow_cert_server: tuple[SlowCertServer, str, str], runbook: Runbook, cert: SigningCert, tmp_path: Path,
        distinct: bool) -> None:
    from fastapi import FastAPI

    state, host, ca_path = slow_cert_server
    config = WebhookConfig(topics={TOPIC: "production"}, extra_cert_hosts=frozenset({host}), extra_ca_bundle=ca_path,
                           audit_log=None)
    root = FastAPI()  # like the Airflow API server: its own sync routes share the thread pool with the plugin

    @root.get("/api/v2/monitor/health")
    def health() -> dict[str, str]:
        return {"status": "healthy"}

    root.mount("/incidents", create_app(config=config, trigger=CountingTrigger(), secret=lambda: None,
                                        runbook=runbook, ledger=Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")))
    server, thread, port = serve_app(root, "webhook")
    base = f"http://127.0.0.1:{port}"
    now = dt.datetime.now(dt.UTC)
    envelopes = [notification(cert, alarm(), timestamp=now,
                              cert_url=f"https://{host}/SimpleNotificationService-{(i if distinct else 7):032x}.pem")
                 for i in range(100)]

    def deliver(envelope: dict[str, str]) -> int:
        return requests.post(f"{base}/incidents/webhooks/sns", data=json.dumps(envelope), headers=sns_headers(envelope),
                             timeout=30).status_code

    try:
        with ThreadPoolExecutor(100) as pool:
            pending = [pool.submit(deliver, e) for e in envelopes]
            deadline = time.monotonic() + 20
            while state.open_now == 0 and time.monotonic() < deadline:  # until the slow fetches are in flight
                time.sleep(0.01)
            assert state.open_now > 0, "no certificate fetch reached the slow server"
            answer = requests.get(f"{base}/api/v2/monitor/health", timeout=10)
            # Answered before the slow server finished even one fetch: the route did not queue behind
            # them (on a shared thread pool it would wait for a fetch's thread to come free).
            answered_fetches = state.answered
            statuses = [f.result() for f in pending]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert answer.status_code == 200 and answered_fetches == 0
    assert 500 not in statuses and set(statuses) <= {403, 503}, statuses
    assert state.most_open <= config.cert_fetch_concurrency
    if distinct:  # a few fetches at once; the others are told to come back (SNS retries a 503)
        assert statuses.count(503) >= 100 - config.cert_fetch_concurrency
        assert state.requests <= config.cert_fetch_concurrency
    else:  # one fetch, shared by all 100 deliveries, its failure included
        assert statuses == [403] * 100 and state.requests == 1


# --- no 5xx from input ---------------------------------------------------------------------------


@pytest.mark.parametrize("timestamp", ["0001-01-01T00:00:00+09:00", "9999-12-31T23:59:59-09:00",
                                       "0001-01-01T00:00:00.000+14:00"])
def test_an_sns_timestamp_utc_cannot_hold_is_400(harness: Harness, cert: SigningCert, timestamp: str) -> None:
    envelope = {**notification(cert, alarm()), "Timestamp": timestamp}
    answer = post_sns(harness, envelope)
    assert answer.status_code == 400 and answer.json()["error"] == "malformed"
    assert harness.certs.asked == []


@pytest.mark.parametrize("field", ["Message", "Subject", "MessageId", "Signature"])
def test_a_lone_surrogate_is_400_before_any_certificate_or_signature(harness: Harness, cert: SigningCert,
                                                                     field: str) -> None:
    envelope = {**notification(cert, alarm()), field: "SURROGATE"}
    text = json.dumps(envelope).replace('"SURROGATE"', '"ALARM \\ud800 text"')  # JSON's escape of a lone surrogate
    answer = harness.client.post("/webhooks/sns", content=text, headers={"Content-Type": "text/plain"})
    assert answer.status_code == 400 and answer.json()["error"] == "malformed", answer.text
    assert harness.certs.asked == []


def test_a_lone_surrogate_inside_the_signed_alarm_is_422(harness: Harness, cert: SigningCert) -> None:
    message = json.dumps(alarm()).replace("Threshold Crossed", "Threshold \\udc00Crossed")
    answer = post_sns(harness, notification(cert, message))
    assert answer.status_code == 422 and answer.json()["error"] == "not_an_alarm"


def test_a_lone_surrogate_in_a_signed_alert_is_400(harness: Harness) -> None:
    body = json.dumps(ALERT).replace("Login", "Log\\ud800in").encode()
    ts = str(int(NOW.timestamp()))
    answer = post_alert(harness, body, {"Content-Type": "application/json", **signature_header(SECRET, ts, body)})
    assert answer.status_code == 400 and answer.json()["error"] == "malformed"


@pytest.mark.parametrize("value", [b"\xb2", b"\xb9\xb2", b"1\xb3", b"\xbd", b"-1", b"+5", b"0x10", b"1e3", b"12 34"])
def test_a_content_length_that_is_not_ascii_digits_is_400(harness: Harness, value: bytes) -> None:
    for path in ("/webhooks/sns", "/webhooks/alert"):
        status, body = asgi_request(harness.app, path, headers=[(b"content-type", b"application/json"),
                                                                (b"content-length", value)], body=b"{}")
        assert (status, json.loads(body)["error"]) == (400, "malformed"), (path, value, body)


def test_a_huge_content_length_is_413(harness: Harness) -> None:
    status, body = asgi_request(harness.app, "/webhooks/sns", headers=[(b"content-type", b"text/plain"),
                                                                       (b"content-length", b"9" * 5000)], body=b"{}")
    assert status == 413 and json.loads(body)["error"] == "too_large"


@pytest.mark.parametrize(
    "changed",
    [
        "9999-12-31T23:59:59.999+0000",  # a 500 before
        "0001-01-01T00:00:00.000+0000",
        "2099-01-01T00:00:00.000+0000",  # was taken as the detection time, moving every deadline
        "2026-11-27T13:00:00.000+0000",  # 2.5 h before the delivery: older than the SNS max age
        "2026-11-27T15:40:00.000+0000",  # 10 min after the delivery
    ],
)
def test_a_state_change_time_far_from_the_delivery_is_clamped_and_noted(harness: Harness, cert: SigningCert,
                                                                        changed: str) -> None:
    answer = post_sns(harness, notification(cert, alarm(StateChangeTime=changed)))
    assert answer.status_code == 200, answer.text
    [incident] = harness.incidents()
    assert incident["detected_at"] == NOW
    [note] = [e for e in harness.ledger.events(incident["id"]) if e["kind"] == "detection_time_clamped"]
    assert note["data"]["StateChangeTime"] == changed and changed in note["message"]


def test_a_state_change_time_near_the_delivery_is_the_detection_time(harness: Harness, cert: SigningCert) -> None:
    post_sns(harness, notification(cert, alarm(StateChangeTime="2026-11-27T14:45:00.000+0000")))
    [incident] = harness.incidents()
    assert incident["detected_at"] == dt.datetime(2026, 11, 27, 14, 45, tzinfo=dt.UTC)
    assert "detection_time_clamped" not in [e["kind"] for e in harness.ledger.events(incident["id"])]


def test_a_state_change_time_utc_cannot_hold_is_422(harness: Harness, cert: SigningCert) -> None:
    answer = post_sns(harness, notification(cert, alarm(StateChangeTime="0001-01-01T00:00:00+09:00")))
    assert answer.status_code == 422 and answer.json()["error"] == "not_an_alarm"


# --- the audit log -------------------------------------------------------------------------------


def audit_bytes(h: Harness) -> bytes:
    path = h.config.audit_log
    return path.read_bytes() if path and path.exists() else b""


def test_an_8_mb_forwarded_for_header_leaves_one_short_line(harness: Harness) -> None:
    addresses = [f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}" for i in range(650_000)]
    huge = ", ".join(addresses).encode()
    assert len(huge) > 8_000_000
    status, _ = asgi_request(harness.app, "/webhooks/sns", headers=[(b"content-type", b"text/plain"),
                                                                    (b"x-forwarded-for", huge)], body=b"{}")
    assert status == 400
    written = audit_bytes(harness)
    assert written.count(b"\n") == 1 and len(written) < 4096
    [entry] = harness.audit()
    assert entry["forwarded_for_count"] == 650_000 and entry["forwarded_for"] == addresses[-10:]  # the nearest hops


def test_no_input_byte_can_split_or_lengthen_a_line(harness: Harness, cert: SigningCert) -> None:
    nasty = b"1.2.3.4\x85, \xe2\x80\xa8\x0b\x0c\x1c\x1d\x1e, " + b"\xff" * 5000
    status, _ = asgi_request(harness.app, "/webhooks/alert", headers=[(b"content-type", b"application/json"),
                                                                      (b"x-forwarded-for", nasty)], body=b"{}")
    assert status == 401
    post_sns(harness, notification(cert, alarm("line\u2028separator\u0085name\x1e" + "長" * 200)))
    written = audit_bytes(harness)
    assert written.isascii() and written.count(b"\n") == 2
    assert len(written.decode().splitlines()) == 2  # str.splitlines splits on U+2028, U+0085, \x1c-\x1e too
    entries = harness.audit()
    assert entries[1]["alarm"].startswith("line\u2028separator\u0085name\x1e長") and len(entries[1]["alarm"]) < 600


def test_every_field_is_capped(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    log.write({"reason": "x" * 1_000_000, "list": list(range(100_000)), "nested": {"a": [[["deep"] * 50] * 50] * 50},
               "number": 10 ** 5000, "nan": float("nan"), "obj": object(), "http_status": 400, **{
                   f"k{i}": "v" for i in range(200)}})
    line = (tmp_path / "audit.jsonl").read_bytes()
    assert line.count(b"\n") == 1 and len(line) < 16 * 1024
    [entry] = log.entries()
    assert entry["reason"].startswith("x" * 512) and len(entry["reason"]) < 600
    assert len(entry["list"]) == 11 and entry["number"].startswith("<an integer")


def test_the_audit_file_is_rotated_by_size(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, max_bytes=2000, backups=2)
    for i in range(100):
        log.write({"n": i, "reason": "r" * 100})
    assert [p.name for p in log.files()] == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    assert not (tmp_path / "audit.jsonl.3").exists()
    for file in log.files():
        assert 0 < file.stat().st_size <= 2000
        assert all(json.loads(line)["reason"] == "r" * 100 for line in file.read_text().splitlines())
    assert log.entries()[-1]["n"] == 99


# --- options and disclosure ----------------------------------------------------------------------


def test_signature_version_1_can_be_refused(make_harness, cert: SigningCert) -> None:
    h = make_harness(require_signature_v2=True)
    answer = post_sns(h, notification(cert, alarm(), version="1"))
    assert answer.status_code == 403 and answer.json()["error"] == "signature_version_refused"
    assert h.certs.asked == [] and h.incidents() == []
    assert post_sns(h, notification(cert, alarm(), version="2")).json()["status"] == "new"


def test_docs_and_openapi_are_closed_unless_enabled(make_harness, harness: Harness) -> None:
    for path in ("/webhooks/openapi.json", "/webhooks/docs", "/openapi.json", "/docs", "/redoc"):
        assert harness.client.get(path).status_code == 404, path
    opened = make_harness(docs=True)
    assert opened.client.get("/webhooks/openapi.json").json()["paths"].keys() == {
        "/webhooks/sns", "/webhooks/alert", "/webhooks/slack", "/webhooks/pagerduty"}
    assert opened.client.get("/webhooks/docs").status_code == 200


def test_docs_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    monkeypatch.setenv("INCIDENT_OPS_WEBHOOK_DOCS", "on")
    assert TestClient(create_app()).get("/webhooks/openapi.json").status_code == 200
    monkeypatch.delenv("INCIDENT_OPS_WEBHOOK_DOCS")
    assert TestClient(create_app()).get("/webhooks/openapi.json").status_code == 404


def test_a_loud_warning_when_signature_checks_are_off(monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="incident_ops.webhooks.app"):
        create_app(config=WebhookConfig(verify=False, audit_log=None))
    assert any("INCIDENT_OPS_WEBHOOK_VERIFY=off" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    caplog.clear()
    monkeypatch.setenv("INCIDENT_OPS_WEBHOOK_VERIFY", "off")
    with caplog.at_level("WARNING", logger="incident_ops.webhooks.app"):
        create_app()  # the plugin's way: the configuration comes from the environment
    assert any("UNSIGNED" in r.getMessage() for r in caplog.records)
    caplog.clear()
    monkeypatch.delenv("INCIDENT_OPS_WEBHOOK_VERIFY")
    with caplog.at_level("WARNING", logger="incident_ops.webhooks.app"):
        create_app()
    assert not any("UNSIGNED" in r.getMessage() for r in caplog.records)
