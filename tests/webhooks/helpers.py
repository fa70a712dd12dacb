"""Test doubles made here, not taken from the code under test: signing certificates (RSA, made
with cryptography), SNS envelopes signed the way SNS signs them, CloudWatch alarm messages, a
counting trigger, and HMAC-signed alerts."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

TOPIC = "arn:aws:sns:ap-northeast-1:123456789012:peoplebooster-production-alerts"
OTHER_TOPIC = "arn:aws:sns:ap-northeast-1:123456789012:someone-elses-topic"
# SNS's real shape: /SimpleNotificationService-<32 hex digits>.pem
CERT_URL = "https://sns.ap-northeast-1.amazonaws.com/SimpleNotificationService-0123456789abcdef0123456789abcdef.pem"
SECRET = "test-webhook-secret"
# 2026-11-27 15:30 UTC = 00:30 JST on 2026-11-28.
NOW = dt.datetime(2026, 11, 27, 15, 30, tzinfo=dt.UTC)

_SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}


@dataclass
class SigningCert:
    key: Any
    pem: bytes

    @classmethod
    def make(cls, *, not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
             kind: str = "rsa") -> SigningCert:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa" else ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        start = not_before or NOW - dt.timedelta(days=30)
        end = not_after or NOW + dt.timedelta(days=365)
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert.public_bytes(serialization.Encoding.PEM))


def canonical(envelope: dict[str, str]) -> bytes:
    return "".join(f"{k}\n{envelope[k]}\n" for k in _SIGNED[envelope["Type"]] if k in envelope).encode()


def sign_envelope(envelope: dict[str, str], cert: SigningCert, version: str = "2") -> dict[str, str]:
    envelope = {**envelope, "SignatureVersion": version}
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = cert.key.sign(canonical(envelope), padding.PKCS1v15(), algorithm)
    envelope["Signature"] = base64.b64encode(signature).decode()
    return envelope


def alarm(name: str = "peoplebooster-production-alb-5xx", state: str = "ALARM", **extra: Any) -> dict[str, Any]:
    return {
        "AlarmName": name,
        "AlarmDescription": "PeopleBooster production: HTTPCode_Target_5XX_Count (backend)",
        "AWSAccountId": "123456789012",
        "AlarmConfigurationUpdatedTimestamp": "2026-11-01T00:00:00.000+0000",
        "NewStateValue": state,
        "NewStateReason": "Threshold Crossed: 2 out of the last 3 datapoints [420.0, 420.0] were greater than the threshold (50.0)",
        "StateChangeTime": "2026-11-27T15:29:30.000+0000",
        "Region": "Asia Pacific (Tokyo)",
        "AlarmArn": f"arn:aws:cloudwatch:ap-northeast-1:123456789012:alarm:{name}",
        "OldStateValue": "OK" if state == "ALARM" else "ALARM",
        "OKActions": [TOPIC],
        "AlarmActions": [TOPIC],
        "InsufficientDataActions": [],
        "Trigger": {"MetricName": "HTTPCode_Target_5XX_Count", "Namespace": "AWS/ApplicationELB", "StatisticType": "Statistic",
                    "Statistic": "SUM", "Unit": None, "Dimensions": [{"value": "app/peoplebooster-production-alb/50dc6c495c0c9188", "name": "LoadBalancer"}],
                    "Period": 60, "EvaluationPeriods": 3, "DatapointsToAlarm": 2, "ComparisonOperator": "GreaterThanThreshold",
                    "Threshold": 50.0, "TreatMissingData": "notBreaching", "EvaluateLowSampleCountPercentile": ""},
        **extra,
    }


def notification(cert: SigningCert, body: dict[str, Any] | str, *, topic: str = TOPIC, message_id: str | None = None,
                 cert_url: str = CERT_URL, version: str = "2", timestamp: dt.datetime = NOW,
                 subject: str | None = "ALARM: \"peoplebooster-production-alb-5xx\" in Asia Pacific (Tokyo)") -> dict[str, str]:
    envelope = {
        "Type": "Notification",
        "MessageId": message_id or str(uuid.uuid4()),
        "TopicArn": topic,
        "Message": body if isinstance(body, str) else json.dumps(body),
        "Timestamp": timestamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{timestamp.microsecond // 1000:03d}Z",
        "SigningCertURL": cert_url,
        "UnsubscribeURL": "https://sns.ap-northeast-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=" + topic + ":x",
    }
    if subject is not None:
        envelope["Subject"] = subject
    return sign_envelope(envelope, cert, version)


def confirmation(cert: SigningCert, *, kind: str = "SubscriptionConfirmation", topic: str = TOPIC,
                 subscribe_url: str | None = None, token: str = "2336412f37fb687f5d51e6e2425f004aed", cert_url: str = CERT_URL,
                 timestamp: dt.datetime = NOW) -> dict[str, str]:
    url = subscribe_url or f"https://sns.ap-northeast-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={topic}&Token={token}"
    envelope = {
        "Type": kind,
        "MessageId": str(uuid.uuid4()),
        "Token": token,
        "TopicArn": topic,
        "Message": f"You have chosen to subscribe to the topic {topic}.\nTo confirm the subscription, visit the SubscribeURL included in this message.",
        "SubscribeURL": url,
        "Timestamp": timestamp.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "SigningCertURL": cert_url,
    }
    return sign_envelope(envelope, cert, "1")


def sns_headers(envelope: dict[str, str]) -> dict[str, str]:
    return {
        "Content-Type": "text/plain; charset=UTF-8",
        "x-amz-sns-message-type": envelope["Type"],
        "x-amz-sns-message-id": envelope["MessageId"],
        "x-amz-sns-topic-arn": envelope["TopicArn"],
        "User-Agent": "Amazon Simple Notification Service Agent",
    }


def signed_alert(alert: dict[str, Any], *, secret: str = SECRET, at: dt.datetime = NOW) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(alert, ensure_ascii=False).encode()
    timestamp = str(int(at.timestamp()))
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", "X-Incident-Timestamp": timestamp,
                  "X-Incident-Signature": f"sha256={digest}"}


@dataclass
class CountingTrigger:
    """Stands in for Airflow's trigger_dag: keeps the runs by id (a second trigger of an id = exists)."""

    runs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, dag_id: str, run_id: str, conf: dict[str, Any]) -> bool:
        with self.lock:
            self.calls.append((dag_id, run_id))
            if (dag_id, run_id) in self.runs:
                return False
            self.runs[(dag_id, run_id)] = conf
            return True

    def runs_of(self, dag_id: str) -> dict[str, dict[str, Any]]:
        return {run_id: conf for (dag, run_id), conf in self.runs.items() if dag == dag_id}


def asgi_request(app: Any, path: str, *, headers: list[tuple[bytes, bytes]], body: bytes = b"",
                 method: str = "POST") -> tuple[int, bytes]:
    """One request straight through the ASGI interface, with header bytes exactly as given (an
    HTTP client would refuse or re-encode some of them; a server passes any byte but CR/LF on)."""
    import asyncio

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
    messages: list[dict[str, Any]] = []
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")


def serve_app(app: Any, name: str) -> tuple[Any, threading.Thread, int]:
    """`app` served by uvicorn on 127.0.0.1 (a free port) in a thread: (server, thread, port)."""
    import socket
    import time

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, f"the {name} server did not start"
        time.sleep(0.02)
    return server, thread, sock.getsockname()[1]
