"""The webhook app the Airflow API server serves under `/incidents` (see `incident_ops_plugin.py`).

    POST /incidents/webhooks/sns     Amazon SNS deliveries (CloudWatch alarms), signature v1/v2
    POST /incidents/webhooks/alert   generic JSON alerts, HMAC-SHA256 over "timestamp.body"

Both answer `{"incident_id", "status": "new"|"joined"|"recorded"|"ignored", "dag_run_id", ...}` with
200, or a 4xx `{"error": <code>, "reason": <text>}` for bad input with nothing triggered or stored
but the audit line: 400 malformed, 401 bad/expired HMAC, 403 forged SNS signature, unknown topic or
a URL on a host SNS does not use, 413 body over the limit, 415 wrong content type, 422 valid JSON
that is not an alarm/alert the runbook and the DAG's Params accept. 503 = Airflow could not create
the run now (the sender retries; the incident is kept and the retry starts its run).

`create_app()` takes its collaborators as arguments (tests inject the trigger, the certificate
fetcher, the clock, the ledger); the FastAPI dependency `get_services` can be overridden too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from incident_ops.core.ledger import Ledger
from incident_ops.core.runbook import Runbook
from incident_ops.webhooks import hmac_auth, sns
from incident_ops.webhooks.audit import AuditLog
from incident_ops.webhooks.config import SECRET_CONN_ID, SECRET_VARIABLE, WebhookConfig
from incident_ops.webhooks.intake import Intake, IntakeError, TriggerError, TriggerFn, parse_alert

__all__ = ["Refused", "WebhookServices", "create_app", "get_services"]

log = logging.getLogger(__name__)
SNS_CONTENT_TYPES = ("text/plain", "application/json")
ALERT_CONTENT_TYPES = ("application/json",)
_CHARSETS = ("utf-8", "utf8", "us-ascii")
_FUTURE_SKEW = dt.timedelta(minutes=5)
_MAX_CONFIRMATIONS = 1024


class Refused(Exception):
    """Bad input found by the app itself (size, content type, headers)."""

    def __init__(self, status: int, code: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = reason


_BAD_INPUT = (Refused, sns.SnsError, hmac_auth.HmacError, IntakeError)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class WebhookServices:
    """Everything the endpoints use; built once per app, the heavy parts on first use."""

    config: WebhookConfig
    trigger: TriggerFn
    secret: Callable[[], str | None]
    fetch: Callable[[str], bytes] | None = None
    visit: Callable[[str], int] | None = None
    clock: Callable[[], dt.datetime] = _now
    runbook: Runbook | None = None
    ledger: Ledger | None = None
    certificates: sns.CertificateCache = field(init=False)
    audit: AuditLog = field(init=False)
    _intake: Intake | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _confirmed: OrderedDict[tuple[str, str], str] = field(default_factory=OrderedDict, init=False)
    _confirm_lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.certificates = sns.CertificateCache(self.config.cert_cache_size)
        self.audit = AuditLog(self.config.audit_log)

    @property
    def intake(self) -> Intake:
        with self._lock:
            if self._intake is None:
                from incident_ops.core.runbook import load_runbook

                runbook = self.runbook or load_runbook()
                self._intake = Intake(runbook, self.ledger or Ledger(), self.trigger,
                                      retrigger_after=self.config.retrigger_after_seconds, clock=self.clock)
            return self._intake

    # --- outbound HTTPS (only to URLs that passed sns.check_sns_url) ------------------------------

    def _verify_for(self, url: str) -> str | bool:
        host = (urlsplit(url).hostname or "").lower()
        if not sns.is_aws_sns_host(host) and self.config.extra_ca_bundle:
            return self.config.extra_ca_bundle
        return True

    def _https_get_certificate(self, url: str) -> bytes:
        import requests

        try:
            with requests.get(url, timeout=self.config.http_timeout_seconds, allow_redirects=False, stream=True,
                              verify=self._verify_for(url)) as response:
                if response.status_code != 200:
                    raise sns.SnsError(403, "certificate_unavailable",
                                       f"the SigningCertURL answered HTTP {response.status_code}")
                data = response.raw.read(64 * 1024 + 1, decode_content=True)
        except requests.RequestException as exc:
            raise sns.SnsError(403, "certificate_unavailable",
                               f"the signing certificate could not be fetched: {type(exc).__name__}") from None
        return data

    def _https_visit(self, url: str) -> int:
        import requests

        with requests.get(url, timeout=self.config.http_timeout_seconds, allow_redirects=False,
                          verify=self._verify_for(url)) as response:
            return response.status_code

    # --- SNS ------------------------------------------------------------------------------------

    def handle_sns(self, body: bytes, headers: dict[str, str], note: dict[str, Any]) -> dict[str, Any]:
        config = self.config
        envelope = sns.parse_envelope(body)
        note.update(type=envelope["Type"], topic_arn=envelope["TopicArn"], message_id=envelope["MessageId"])
        for header, key in (("x-amz-sns-message-type", "Type"), ("x-amz-sns-topic-arn", "TopicArn"),
                            ("x-amz-sns-message-id", "MessageId")):
            if header in headers and headers[header] != envelope[key]:
                raise Refused(400, "malformed", f"the {header} header does not match the body's {key}")
        if envelope["TopicArn"] not in config.topics:
            raise Refused(403, "topic_not_allowed",
                          f"topic {envelope['TopicArn']} is not in the allow-list (INCIDENT_OPS_SNS_TOPICS)")
        now = self.clock()
        if config.verify:
            url = envelope["SigningCertURL"]
            sns.check_sns_url(url, config.extra_cert_hosts, what="SigningCertURL", pem=True)
            key = self.certificates.get(url, self.fetch or self._https_get_certificate, now)
            sns.verify_signature(envelope, key)
        else:
            note["verified"] = False
        sent = sns.parse_timestamp(envelope["Timestamp"])
        if config.sns_max_age_seconds and now - sent > dt.timedelta(seconds=config.sns_max_age_seconds):
            raise Refused(403, "message_expired",
                          f"the message is from {envelope['Timestamp']}, older than {int(config.sns_max_age_seconds)} s")
        if sent - now > _FUTURE_SKEW:
            raise Refused(403, "message_expired", f"the message's Timestamp {envelope['Timestamp']} is in the future")

        if envelope["Type"] == "SubscriptionConfirmation":
            return self._confirm_subscription(envelope, note)
        if envelope["Type"] == "UnsubscribeConfirmation":
            return {"status": "ignored", "incident_id": None, "dag_run_id": None,
                    "reason": "UnsubscribeConfirmation: nothing to do"}
        alarm = sns.alarm_from_message(envelope["Message"])
        note.update(alarm=alarm["AlarmName"], state=alarm["NewStateValue"])
        from incident_ops.webhooks.intake import environment_for_alarm

        intake = self.intake
        environment = environment_for_alarm(intake.runbook, alarm["AlarmName"], config.topics[envelope["TopicArn"]])
        topic_name = envelope["TopicArn"].rsplit(":", 1)[-1]
        result = intake.handle_alarm(alarm, environment=environment, reporter=f"cloudwatch (sns:{topic_name})",
                                     message_id=envelope["MessageId"], received_at=now)
        return result.to_dict()

    def _confirm_subscription(self, envelope: dict[str, str], note: dict[str, Any]) -> dict[str, Any]:
        url = envelope["SubscribeURL"]
        parts = sns.check_sns_url(url, self.config.extra_cert_hosts, what="SubscribeURL")
        key = (envelope["TopicArn"], envelope["Token"])
        with self._confirm_lock:
            if key in self._confirmed:
                return {"status": "ignored", "incident_id": None, "dag_run_id": None,
                        "reason": f"the subscription to {envelope['TopicArn']} was already confirmed"}
            try:
                status = (self.visit or self._https_visit)(url)
            except Exception as exc:  # noqa: BLE001 - reported to the sender as a gateway error
                raise _Gateway(f"visiting the SubscribeURL failed: {type(exc).__name__}") from None
            if not 200 <= status < 300:
                raise _Gateway(f"the SubscribeURL answered HTTP {status}")
            self._confirmed[key] = self.clock().isoformat()
            while len(self._confirmed) > _MAX_CONFIRMATIONS:
                self._confirmed.popitem(last=False)
        note.update(action="subscription_confirmed", subscribe_host=parts.netloc)
        log.info("confirmed the SNS subscription to %s", envelope["TopicArn"])
        return {"status": "recorded", "incident_id": None, "dag_run_id": None, "action": "subscription_confirmed",
                "topic_arn": envelope["TopicArn"]}

    # --- generic alerts -------------------------------------------------------------------------

    def handle_alert(self, body: bytes, headers: dict[str, str], note: dict[str, Any]) -> dict[str, Any]:
        now = self.clock()
        timestamp = headers.get(hmac_auth.TIMESTAMP_HEADER.lower())
        if self.config.verify:
            secret = self.secret()
            if not secret:
                raise _Unconfigured(
                    f"no shared secret: set the Airflow connection {SECRET_CONN_ID!r} (password) "
                    f"or the Variable {SECRET_VARIABLE!r}")
            hmac_auth.verify(secret, timestamp, headers.get(hmac_auth.SIGNATURE_HEADER.lower()), body, now=now,
                             window_seconds=self.config.replay_window_seconds)
        else:
            note["verified"] = False
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise Refused(400, "malformed", "the body is not valid UTF-8 JSON") from None
        alert = parse_alert(data)
        note.update(source=alert.source, service=alert.service)
        digest = hashlib.sha256(f"{timestamp or ''}.".encode() + body).hexdigest()[:32]
        intake = self.intake
        report = intake.alert_report(alert, occurrence_key=f"alert:{digest}", received_at=now)
        return intake.open(report).to_dict()


class _Gateway(Exception):
    status = 502
    code = "subscribe_failed"


class _Unconfigured(Exception):
    status = 503
    code = "not_configured"


def _media_type(request: Request, allowed: tuple[str, ...]) -> None:
    value = request.headers.get("content-type")
    if not value:
        raise Refused(415, "unsupported_media_type", f"Content-Type is required: {' or '.join(allowed)}")
    media, *params = [part.strip().lower() for part in value.split(";")]
    if media not in allowed:
        raise Refused(415, "unsupported_media_type", f"Content-Type {media[:80]!r} is not {' or '.join(allowed)}")
    for param in params:
        name, _, charset = param.partition("=")
        if name.strip() == "charset" and charset.strip().strip('"') not in _CHARSETS:
            raise Refused(415, "unsupported_media_type", "the charset must be UTF-8")


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None:
        if not length.strip().isdigit():
            raise Refused(400, "malformed", "Content-Length is not a number")
        if int(length) > limit:
            raise Refused(413, "too_large", f"the body is {int(length)} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, "too_large", f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def get_services(request: Request) -> WebhookServices:
    """The app's services (a FastAPI dependency: tests may override it)."""
    return request.app.state.services()


def create_app(
    *,
    config: WebhookConfig | None = None,
    trigger: TriggerFn | None = None,
    secret: Callable[[], str | None] | None = None,
    fetch: Callable[[str], bytes] | None = None,
    visit: Callable[[str], int] | None = None,
    clock: Callable[[], dt.datetime] | None = None,
    runbook: Runbook | None = None,
    ledger: Ledger | None = None,
) -> FastAPI:
    """The webhook app. Without arguments (the plugin): configuration from the environment, runs
    through Airflow's `trigger_dag`, the HMAC secret from the Airflow connection/Variable."""
    app = FastAPI(
        title="PeopleBooster incident webhooks",
        description=__doc__,
        version="1",
        docs_url="/webhooks/docs",
        openapi_url="/webhooks/openapi.json",
        redoc_url=None,
    )
    built: list[WebhookServices] = []
    lock = threading.Lock()

    def services() -> WebhookServices:
        with lock:
            if not built:
                if trigger is not None:
                    trigger_fn = trigger
                else:
                    from incident_ops.webhooks.airflow_bridge import airflow_trigger

                    trigger_fn = airflow_trigger
                if secret is not None:
                    secret_fn = secret
                else:
                    from incident_ops.webhooks.airflow_bridge import airflow_secret

                    secret_fn = airflow_secret
                built.append(WebhookServices(
                    config=config or WebhookConfig.from_env(), trigger=trigger_fn, secret=secret_fn, fetch=fetch,
                    visit=visit, clock=clock or _now, runbook=runbook, ledger=ledger,
                ))
            return built[0]

    app.state.services = services

    async def handle(request: Request, endpoint: str, allowed: tuple[str, ...],
                     handler: Callable[[WebhookServices], Callable[..., dict[str, Any]]],
                     services: WebhookServices) -> JSONResponse:
        started = time.monotonic()
        note: dict[str, Any] = {
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "endpoint": endpoint,
            "remote": request.client.host if request.client else None,
            "forwarded_for": request.headers.get("x-forwarded-for"),
        }
        status, payload = 200, {}
        try:
            body = await _read_body(request, services.config.max_body_bytes)
            note.update(bytes=len(body), sha256=hashlib.sha256(body).hexdigest())
            _media_type(request, allowed)
            headers = {key.lower(): value for key, value in request.headers.items()}
            payload = await run_in_threadpool(handler(services), body, headers, note)
        except _BAD_INPUT as exc:
            status, payload = exc.status, {"error": exc.code, "reason": exc.reason}
        except (TriggerError, _Gateway, _Unconfigured) as exc:
            status, payload = exc.status, {"error": exc.code, "reason": str(exc)}
        except Exception:  # noqa: BLE001 - logged with its traceback; the sender gets a plain 500
            log.exception("webhook %s failed", endpoint)
            status, payload = 500, {"error": "internal_error", "reason": "the webhook failed; see the API server log"}
        note.update(http_status=status, ms=round((time.monotonic() - started) * 1000, 1),
                    outcome="accepted" if status < 400 else "refused")
        for key in ("status", "incident_id", "dag_run_id", "escalation_run_id", "error", "reason"):
            if payload.get(key) is not None:
                note[key] = payload[key]
        services.audit.write(note)
        return JSONResponse(payload, status_code=status)

    sns_body = {
        "required": True,
        "content": {
            "text/plain": {"schema": {"type": "string", "description": "the SNS envelope (JSON)"}},
            "application/json": {"schema": {"type": "object", "required": ["Type", "MessageId", "TopicArn"]}},
        },
    }
    alert_body = {
        "required": True,
        "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["source", "service", "symptom"],
            "properties": {name: {"type": "string"} for name in (
                "source", "title", "summary", "service", "symptom", "severity", "fingerprint", "environment", "impact")},
        }}},
    }

    @app.post("/webhooks/sns", summary="Amazon SNS deliveries (CloudWatch alarms)",
              openapi_extra={"requestBody": sns_body})
    async def sns_webhook(request: Request, services: WebhookServices = Depends(get_services)) -> JSONResponse:  # noqa: B008
        return await handle(request, "sns", SNS_CONTENT_TYPES, lambda s: s.handle_sns, services)

    @app.post("/webhooks/alert", summary="Generic JSON alerts (HMAC-SHA256)",
              openapi_extra={"requestBody": alert_body, "parameters": [
                  {"name": hmac_auth.TIMESTAMP_HEADER, "in": "header", "required": True, "schema": {"type": "string"}},
                  {"name": hmac_auth.SIGNATURE_HEADER, "in": "header", "required": True, "schema": {"type": "string"}},
              ]})
    async def alert_webhook(request: Request, services: WebhookServices = Depends(get_services)) -> JSONResponse:  # noqa: B008
        return await handle(request, "alert", ALERT_CONTENT_TYPES, lambda s: s.handle_alert, services)

    return app
