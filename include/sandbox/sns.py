"""The sandbox as Amazon SNS: it signs and delivers CloudWatch alarm notifications like SNS does.

A signing key and certificate (RSA, issued by a trustme CA, CN sns.amazonaws.com) live in the state
directory; the certificate is served at `GET /SimpleNotificationService-<32 hex>.pem` (`CERT_PATH`,
SNS's own path shape, the only one the webhook fetches; use the HTTPS port: the webhook fetches it
only over https, from a host it was explicitly told to allow).

POST /_sandbox/sns/publish    {"endpoint": webhook URL, "alarm": {"AlarmName": ..., ...},
                               "topic_arn"?, "subject"?, "count"?: n (a burst), "same_message"?: bool
                               (n redeliveries of ONE MessageId), "concurrency"?: 16,
                               "signature_version"?: "2"|"1", "tamper"?: bool (change the Message
                               after signing: a forged delivery), "cert_url"?: override,
                               "timeout"?: 30 (seconds each delivery waits for its answer)}
      The alarm is completed from the CloudWatch alarm in moto (description, ARN, state reason,
      trigger) and overlaid with what was given (NewStateValue defaults to ALARM); each delivery is the real envelope (Type
      Notification, MessageId, TopicArn, Subject, Message = the alarm JSON as a string, Timestamp,
      SignatureVersion, Signature, SigningCertURL, UnsubscribeURL), POSTed as text/plain with SNS's
      x-amz-sns-* headers. Answers a summary: HTTP statuses, the webhook's statuses, incident ids,
      dag_run ids, the first answer.
POST /_sandbox/sns/subscribe  {"endpoint", "topic_arn"?, "type"?: "SubscriptionConfirmation" |
                               "UnsubscribeConfirmation", "subscribe_url"?: override}
GET  /sns/?Action=ConfirmSubscription&TopicArn=...&Token=...   what the webhook visits (recorded)
GET  /_sandbox/sns/subscriptions   pending tokens and confirmation visits
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import trustme
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

__all__ = ["CERT_PATH", "SnsSandbox", "register", "router"]

# SNS's path shape (/SimpleNotificationService-<32 hex digits>.pem); the digits are the sandbox's own.
CERT_PATH = "/SimpleNotificationService-5a4db0c5a4db0c5a4db0c5a4db0c5a4d.pem"
MAX_BURST = 20000
REGION_NAMES = {
    "ap-northeast-1": "Asia Pacific (Tokyo)",
    "ap-northeast-3": "Asia Pacific (Osaka)",
    "us-east-1": "US East (N. Virginia)",
    "us-west-2": "US West (Oregon)",
    "eu-west-1": "Europe (Ireland)",
}
_SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
router = APIRouter()


def _iso_ms(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _cw_time(moment: dt.datetime) -> str:
    """CloudWatch's format in alarm messages: 2026-11-27T15:29:30.123+0000."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


class SnsSandbox:
    """The signing key, the endpoints it builds URLs from, and what subscribers did."""

    def __init__(self, state_dir: Path | None, endpoints: dict[str, Any]) -> None:
        self.endpoints = endpoints
        self.lock = threading.Lock()
        self.pending: dict[str, dict[str, Any]] = {}
        self.confirmations: list[dict[str, Any]] = []
        self.unsubscribes: list[dict[str, Any]] = []
        self._key_pem, self.cert_pem = self._ensure_key(state_dir)
        self._key = serialization.load_pem_private_key(self._key_pem, password=None)

    @staticmethod
    def _ensure_key(state_dir: Path | None) -> tuple[bytes, bytes]:
        key_path = state_dir / "sns-signing-key.pem" if state_dir else None
        cert_path = state_dir / "sns-signing-cert.pem" if state_dir else None
        if key_path and cert_path and key_path.is_file() and cert_path.is_file():
            return key_path.read_bytes(), cert_path.read_bytes()
        ca = trustme.CA(key_type=trustme.KeyType.RSA, organization_name="PeopleBooster sandbox SNS")
        leaf = ca.issue_cert("sns.amazonaws.com", common_name="sns.amazonaws.com", key_type=trustme.KeyType.RSA)
        key_pem, cert_pem = leaf.private_key_pem.bytes(), leaf.cert_chain_pems[0].bytes()
        if key_path and cert_path:
            key_path.parent.mkdir(parents=True, exist_ok=True)
            key_path.write_bytes(key_pem)
            key_path.chmod(0o600)
            cert_path.write_bytes(cert_pem)
        return key_pem, cert_pem

    # --- URLs ----------------------------------------------------------------------------------

    @property
    def https(self) -> str:
        return str(self.endpoints.get("https") or self.endpoints.get("http") or "https://127.0.0.1").rstrip("/")

    @property
    def cert_url(self) -> str:
        return f"{self.https}{CERT_PATH}"

    def default_topic(self, ctx: Any) -> str:
        names = ctx.names
        return f"arn:aws:sns:{names.region}:{names.account_id}:{names.prefix}-alerts"

    # --- signing -------------------------------------------------------------------------------

    def sign(self, envelope: dict[str, str], version: str = "2") -> dict[str, str]:
        if version not in ("1", "2"):
            raise ValueError("signature_version must be '1' or '2'")
        envelope = {**envelope, "SignatureVersion": version}
        text = "".join(f"{k}\n{envelope[k]}\n" for k in _SIGNED[envelope["Type"]] if k in envelope)
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # version 1 is SHA1withRSA
        signature = self._key.sign(text.encode("utf-8"), padding.PKCS1v15(), algorithm)
        envelope["Signature"] = base64.b64encode(signature).decode("ascii")
        return envelope

    def notification(self, topic: str, alarm: dict[str, Any], *, subject: str | None, message_id: str | None = None,
                     version: str = "2", cert_url: str | None = None) -> dict[str, str]:
        envelope = {
            "Type": "Notification",
            "MessageId": message_id or str(uuid.uuid4()),
            "TopicArn": topic,
            "Subject": subject or "",
            "Message": json.dumps(alarm, ensure_ascii=False, separators=(",", ":")),
            "Timestamp": _iso_ms(dt.datetime.now(dt.UTC)),
            "SigningCertURL": cert_url or self.cert_url,
            "UnsubscribeURL": f"{self.https}/sns/?Action=Unsubscribe&SubscriptionArn={topic}:{uuid.uuid4()}",
        }
        if not envelope["Subject"]:
            del envelope["Subject"]
        return self.sign(envelope, version)


def _alarm_from_moto(ctx: Any, name: str) -> dict[str, Any]:
    """What CloudWatch would put in the notification for the alarm as moto has it ({} if unknown)."""
    try:
        found = ctx.aws.cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
    except Exception:  # noqa: BLE001 - an alarm the sandbox does not know is sent as given
        return {}
    if not found:
        return {}
    spec = found[0]
    region = ctx.names.region
    updated = spec.get("AlarmConfigurationUpdatedTimestamp") or dt.datetime.now(dt.UTC)
    changed = spec.get("StateUpdatedTimestamp") or dt.datetime.now(dt.UTC)
    return {
        "AlarmName": name,
        "AlarmDescription": spec.get("AlarmDescription"),
        "AWSAccountId": ctx.names.account_id,
        "AlarmConfigurationUpdatedTimestamp": _cw_time(updated),
        "NewStateValue": spec.get("StateValue", "ALARM"),
        "NewStateReason": spec.get("StateReason", ""),
        "StateChangeTime": _cw_time(changed),
        "Region": REGION_NAMES.get(region, region),
        "AlarmArn": spec.get("AlarmArn") or f"arn:aws:cloudwatch:{region}:{ctx.names.account_id}:alarm:{name}",
        "OldStateValue": "OK" if spec.get("StateValue") == "ALARM" else "ALARM",
        "OKActions": spec.get("OKActions", []),
        "AlarmActions": spec.get("AlarmActions", []),
        "InsufficientDataActions": spec.get("InsufficientDataActions", []),
        "Trigger": {
            "MetricName": spec.get("MetricName"),
            "Namespace": spec.get("Namespace"),
            "StatisticType": "Statistic",
            "Statistic": str(spec.get("Statistic", "")).upper(),
            "Unit": None,
            "Dimensions": [{"value": d["Value"], "name": d["Name"]} for d in spec.get("Dimensions", [])],
            "Period": spec.get("Period"),
            "EvaluationPeriods": spec.get("EvaluationPeriods"),
            "DatapointsToAlarm": spec.get("DatapointsToAlarm"),
            "ComparisonOperator": spec.get("ComparisonOperator"),
            "Threshold": spec.get("Threshold"),
            "TreatMissingData": spec.get("TreatMissingData", "missing"),
            "EvaluateLowSampleCountPercentile": "",
        },
    }


def _headers(envelope: dict[str, str]) -> dict[str, str]:
    headers = {
        "Content-Type": "text/plain; charset=UTF-8",
        "x-amz-sns-message-type": envelope["Type"],
        "x-amz-sns-message-id": envelope["MessageId"],
        "x-amz-sns-topic-arn": envelope["TopicArn"],
        "User-Agent": "Amazon Simple Notification Service Agent",
    }
    if envelope["Type"] == "Notification":
        headers["x-amz-sns-subscription-arn"] = f"{envelope['TopicArn']}:sandbox-subscription"
    return headers


def _post(session: requests.Session, endpoint: str, envelope: dict[str, str], timeout: float,
          verify: str | bool) -> dict[str, Any]:
    started = time.monotonic()
    try:
        response = session.post(endpoint, data=json.dumps(envelope).encode("utf-8"), headers=_headers(envelope),
                                timeout=timeout, verify=verify)
    except requests.RequestException as exc:
        return {"http_status": None, "error": f"{type(exc).__name__}: {exc}"[:300],
                "ms": round((time.monotonic() - started) * 1000, 1)}
    try:
        answer: Any = response.json()
    except ValueError:
        answer = response.text[:500]
    return {"http_status": response.status_code, "answer": answer, "ms": round((time.monotonic() - started) * 1000, 1)}


def _check_endpoint(endpoint: Any) -> str:
    if not isinstance(endpoint, str) or urlsplit(endpoint).scheme not in ("http", "https"):
        raise ValueError("endpoint must be the webhook's http(s) URL")
    return endpoint


def publish(sandbox: SnsSandbox, ctx: Any, body: dict[str, Any]) -> dict[str, Any]:
    endpoint = _check_endpoint(body.get("endpoint"))
    given = body.get("alarm")
    if not isinstance(given, dict) or not isinstance(given.get("AlarmName"), str) or not given["AlarmName"]:
        raise ValueError("alarm must be an object with AlarmName")
    count = int(body.get("count", 1))
    if not 1 <= count <= MAX_BURST:
        raise ValueError(f"count must be 1..{MAX_BURST}")
    concurrency = max(1, min(int(body.get("concurrency", 16)), 64))
    version = str(body.get("signature_version", "2"))
    topic = str(body.get("topic_arn") or sandbox.default_topic(ctx))
    alarm = _alarm_from_moto(ctx, given["AlarmName"])
    state = given.get("NewStateValue", "ALARM")
    if alarm.get("NewStateValue") != state:  # moto's alarm is in another state: a transition made up now
        alarm.update(OldStateValue=alarm.get("NewStateValue") or ("OK" if state == "ALARM" else "ALARM"),
                     NewStateReason=f"Sandbox: the alarm went to {state}",
                     StateChangeTime=_cw_time(dt.datetime.now(dt.UTC)))
    alarm = {**alarm, "NewStateValue": state, **given}
    alarm.setdefault("StateChangeTime", _cw_time(dt.datetime.now(dt.UTC)))
    region = topic.split(":")[3] if topic.count(":") >= 5 else ctx.names.region
    subject = body.get("subject") or f'{alarm["NewStateValue"]}: "{alarm["AlarmName"]}" in {REGION_NAMES.get(region, region)}'
    subject = subject[:100]
    shared_id = str(uuid.uuid4()) if body.get("same_message") else None
    envelopes = []
    for _ in range(count):
        envelope = sandbox.notification(topic, alarm, subject=subject, message_id=shared_id, version=version,
                                        cert_url=body.get("cert_url"))
        if body.get("tamper"):
            envelope["Message"] = envelope["Message"].replace('"ALARM"', '"OK"', 1) + " "
        envelopes.append(envelope)
    verify: str | bool = sandbox.endpoints.get("ca_bundle") or True
    timeout = float(body.get("timeout", 30))
    started = time.monotonic()
    local = threading.local()

    def send(envelope: dict[str, str]) -> dict[str, Any]:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return _post(local.session, endpoint, envelope, timeout, verify)

    if count == 1:
        results = [send(envelopes[0])]
    else:
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="sns-publish") as pool:
            results = list(pool.map(send, envelopes))
    answers = [r.get("answer") if isinstance(r.get("answer"), dict) else {} for r in results]
    return {
        "deliveries": count,
        "seconds": round(time.monotonic() - started, 3),
        "topic_arn": topic,
        "alarm": alarm,
        "message_ids": sorted({e["MessageId"] for e in envelopes})[:50],
        "distinct_message_ids": len({e["MessageId"] for e in envelopes}),
        "http_statuses": dict(Counter(str(r.get("http_status")) for r in results)),
        "statuses": dict(Counter(str(a.get("status") or a.get("error")) for a in answers)),
        "incident_ids": sorted({a["incident_id"] for a in answers if a.get("incident_id")}),
        "dag_run_ids": sorted({a["dag_run_id"] for a in answers if a.get("dag_run_id")}),
        "errors": [r["error"] for r in results if r.get("error")][:10],
        "max_ms": max((r.get("ms") or 0) for r in results),
        "answer": results[0].get("answer"),
        "http_status": results[0].get("http_status"),
    }


def subscribe(sandbox: SnsSandbox, ctx: Any, body: dict[str, Any]) -> dict[str, Any]:
    endpoint = _check_endpoint(body.get("endpoint"))
    kind = body.get("type", "SubscriptionConfirmation")
    if kind not in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
        raise ValueError("type must be SubscriptionConfirmation or UnsubscribeConfirmation")
    topic = str(body.get("topic_arn") or sandbox.default_topic(ctx))
    token = secrets.token_hex(64)
    url = body.get("subscribe_url") or f"{sandbox.https}/sns/?Action=ConfirmSubscription&TopicArn={topic}&Token={token}"
    text = (f"You have chosen to subscribe to the topic {topic}.\nTo confirm the subscription, visit the SubscribeURL "
            "included in this message." if kind == "SubscriptionConfirmation"
            else f"You have chosen to deactivate subscription {topic}:sandbox-subscription.\nTo cancel this operation "
                 "and restore the subscription, visit the SubscribeURL included in this message.")
    envelope = sandbox.sign({
        "Type": kind,
        "MessageId": str(uuid.uuid4()),
        "Token": token,
        "TopicArn": topic,
        "Message": text,
        "SubscribeURL": url,
        "Timestamp": _iso_ms(dt.datetime.now(dt.UTC)),
        "SigningCertURL": body.get("cert_url") or sandbox.cert_url,
    }, str(body.get("signature_version", "1")))
    with sandbox.lock:
        sandbox.pending[token] = {"topic_arn": topic, "type": kind, "endpoint": endpoint}
    copies = max(1, min(int(body.get("count", 1)), 10))
    verify: str | bool = sandbox.endpoints.get("ca_bundle") or True
    session = requests.Session()
    results = [_post(session, endpoint, envelope, float(body.get("timeout", 30)), verify) for _ in range(copies)]
    return {"token": token, "subscribe_url": url, "results": results, "http_status": results[0].get("http_status"),
            "answer": results[0].get("answer")}


# --- routes --------------------------------------------------------------------------------------


def _state(request: Request) -> tuple[SnsSandbox, Any]:
    return request.app.state.sns, request.app.state.ctx


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    data = json.loads(raw) if raw else {}
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return data


@router.get(CERT_PATH)
def signing_certificate(request: Request) -> Response:
    return Response(request.app.state.sns.cert_pem, media_type="application/x-x509-ca-cert")


@router.get("/sns/")
def sns_action(request: Request, Action: str = "", TopicArn: str = "", Token: str = "",  # noqa: N803 - SNS's names
               SubscriptionArn: str = "") -> Response:
    sandbox: SnsSandbox = request.app.state.sns
    request_id = str(uuid.uuid4())
    if Action == "ConfirmSubscription":
        with sandbox.lock:
            pending = sandbox.pending.get(Token)
            if pending is None or pending["topic_arn"] != TopicArn:
                return Response(f'<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error><Type>Sender</Type>'
                                f"<Code>InvalidParameter</Code><Message>Invalid token</Message></Error>"
                                f"<RequestId>{request_id}</RequestId></ErrorResponse>", status_code=400,
                                media_type="text/xml")
            subscription = f"{TopicArn}:{uuid.uuid5(uuid.NAMESPACE_URL, Token)}"
            sandbox.confirmations.append({"topic_arn": TopicArn, "token": Token, "subscription_arn": subscription,
                                          "at": _iso_ms(dt.datetime.now(dt.UTC))})
        return Response(
            '<ConfirmSubscriptionResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><ConfirmSubscriptionResult>'
            f"<SubscriptionArn>{subscription}</SubscriptionArn></ConfirmSubscriptionResult><ResponseMetadata>"
            f"<RequestId>{request_id}</RequestId></ResponseMetadata></ConfirmSubscriptionResponse>", media_type="text/xml")
    if Action == "Unsubscribe":
        with sandbox.lock:
            sandbox.unsubscribes.append({"subscription_arn": SubscriptionArn, "at": _iso_ms(dt.datetime.now(dt.UTC))})
        return Response('<UnsubscribeResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><ResponseMetadata>'
                        f"<RequestId>{request_id}</RequestId></ResponseMetadata></UnsubscribeResponse>", media_type="text/xml")
    return Response("<ErrorResponse><Error><Code>InvalidAction</Code></Error></ErrorResponse>", status_code=400,
                    media_type="text/xml")


@router.post("/_sandbox/sns/publish")
async def post_publish(request: Request) -> JSONResponse:
    sandbox, ctx = _state(request)
    try:
        body = await _body(request)
        return JSONResponse(await run_in_threadpool(publish, sandbox, ctx, body))
    except (ValueError, TypeError) as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)


@router.post("/_sandbox/sns/subscribe")
async def post_subscribe(request: Request) -> JSONResponse:
    sandbox, ctx = _state(request)
    try:
        body = await _body(request)
        return JSONResponse(await run_in_threadpool(subscribe, sandbox, ctx, body))
    except (ValueError, TypeError) as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)


@router.get("/_sandbox/sns/subscriptions")
def get_subscriptions(request: Request) -> JSONResponse:
    sandbox: SnsSandbox = request.app.state.sns
    with sandbox.lock:
        return JSONResponse({"pending": [{"token": t, **p} for t, p in sandbox.pending.items()],
                             "confirmed": list(sandbox.confirmations), "unsubscribed": list(sandbox.unsubscribes),
                             "signing_cert_url": sandbox.cert_url, "default_topic_arn": sandbox.default_topic(request.app.state.ctx)})


def register(app: FastAPI, endpoints: dict[str, Any]) -> None:
    """Give `app` the SNS routes and the signing key (kept in the state directory, if there is one)."""
    state_dir = Path(endpoints["state_dir"]) if endpoints.get("state_dir") else None
    app.state.sns = SnsSandbox(state_dir, endpoints)
    app.include_router(router)
