"""The webhook app the Airflow API server serves under `/incidents` (see `incident_ops_plugin.py`).

    POST /incidents/webhooks/sns     Amazon SNS deliveries (CloudWatch alarms), signature v1/v2
    POST /incidents/webhooks/alert   generic JSON alerts, HMAC-SHA256 over "timestamp.body"

Both answer `{"incident_id", "status": "new"|"joined"|"recorded"|"ignored"|"replayed", "dag_run_id", ...}`
with 200 (`replayed`: an authentic delivery seen before whose incident is no longer open: nothing
opened, joined or paged), or a 4xx `{"error": <code>, "reason": <text>}` for bad input with nothing
triggered or stored but the audit line: 400 malformed, 401 bad/expired HMAC (also when no secret is
configured: the answer does not tell), 403 forged SNS signature, SignatureVersion 1 when only 2 is
allowed, unknown topic or a URL SNS does not use, 413 body over the limit, 415 wrong content type,
422 valid JSON that is not an alarm/alert the runbook and the DAG's Params accept. 503 = Airflow
could not create the run now, or `busy`: too many signing certificates are being fetched (the
sender retries; an incident is kept and the retry starts its run). No input gives a 5xx otherwise.

The signing certificate is fetched outside the shared thread pool that Airflow's own routes use: on
a small dedicated pool (`INCIDENT_OPS_SNS_CERT_FETCHES` threads), awaited by the event loop, one
fetch per URL shared by every delivery waiting for it.

`create_app()` takes its collaborators as arguments (tests inject the trigger, the certificate
fetcher, the clock, the ledger); the FastAPI dependency `get_services` can be overridden too. The
app's OpenAPI and docs pages are served only with `INCIDENT_OPS_WEBHOOK_DOCS=on`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
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
from incident_ops.webhooks.config import (
    SECRET_CONN_ID,
    SECRET_VARIABLE,
    ConfigError,
    WebhookConfig,
    docs_enabled,
    verification_enabled,
)
from incident_ops.webhooks.intake import Intake, IntakeError, TriggerError, TriggerFn, parse_alert

__all__ = ["Refused", "WebhookServices", "create_app", "get_services"]

log = logging.getLogger(__name__)
SNS_CONTENT_TYPES = ("text/plain", "application/json")
ALERT_CONTENT_TYPES = ("application/json",)
_CHARSETS = ("utf-8", "utf8", "us-ascii")
_FUTURE_SKEW = dt.timedelta(minutes=5)
_MAX_CONFIRMATIONS = 1024
# With INCIDENT_OPS_SNS_MAX_AGE_SECONDS=0 (no age limit) a MessageId is remembered this long.
_UNLIMITED_AGE_MEMORY = dt.timedelta(days=7)
_MAX_FORWARDED = 10
_MAX_ADDRESS = 64
_DIGITS = re.compile(r"[0-9]+")
_UNCONFIGURED_LOG_EVERY = 60.0
_VERIFY_OFF_WARNING = (
    "INCIDENT_OPS_WEBHOOK_VERIFY=off: the incident webhooks accept UNSIGNED SNS messages and alerts. "
    "Anyone who can reach /incidents/webhooks/* can open incidents and page people. Sandbox only."
)


class Refused(Exception):
    """Bad input found by the app itself (size, content type, headers)."""

    def __init__(self, status: int, code: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = reason


_BAD_INPUT = (Refused, sns.SnsError, hmac_auth.HmacError, IntakeError)


def forwarded_for(value: str | None) -> dict[str, Any]:
    """X-Forwarded-For as audit fields: the last `_MAX_FORWARDED` addresses (the hops nearest to
    us), each cut to `_MAX_ADDRESS` characters, and how many there were."""
    if value is None:
        return {}
    parts = value.rsplit(",", _MAX_FORWARDED)
    if len(parts) > _MAX_FORWARDED:
        parts = parts[1:]
    addresses = [part.strip()[:_MAX_ADDRESS] for part in parts]
    return {"forwarded_for": addresses, "forwarded_for_count": value.count(",") + 1}


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
    _fetcher: ThreadPoolExecutor | None = field(default=None, init=False)
    _unconfigured_logged: float = field(default=float("-inf"), init=False)

    def __post_init__(self) -> None:
        config = self.config
        self.certificates = sns.CertificateCache(config.cert_cache_size, failure_ttl=config.cert_failure_ttl_seconds,
                                                 max_fetches=config.cert_fetch_concurrency)
        self.audit = AuditLog(config.audit_log, max_bytes=config.audit_max_bytes, backups=config.audit_backups)

    @property
    def intake(self) -> Intake:
        with self._lock:
            if self._intake is None:
                from incident_ops.core.runbook import load_runbook

                runbook = self.runbook or load_runbook()
                self._intake = Intake(runbook, self.ledger or Ledger(), self.trigger,
                                      retrigger_after=self.config.retrigger_after_seconds, clock=self.clock,
                                      max_detection_age=self.config.sns_max_age_seconds or 3600.0,
                                      max_detection_ahead=_FUTURE_SKEW.total_seconds())
            return self._intake

    @property
    def fetcher(self) -> ThreadPoolExecutor:
        """The certificate fetches' own small pool (never the one Airflow's routes wait for)."""
        with self._lock:
            if self._fetcher is None:
                self._fetcher = ThreadPoolExecutor(max_workers=self.config.cert_fetch_concurrency,
                                                   thread_name_prefix="sns-certificate")
            return self._fetcher

    @property
    def certificate_wait_seconds(self) -> float:
        """How long a delivery waits for a certificate fetch (connect + read timeouts, and a second)."""
        return 2 * self.config.http_timeout_seconds + 1

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
        except sns.SnsError:
            raise
        except Exception as exc:  # noqa: BLE001 - requests', urllib3's (ProtocolError, DecodeError, ...) and socket errors
            raise sns.SnsError(403, "certificate_unavailable",
                               f"the signing certificate could not be fetched: {type(exc).__name__}") from None
        return bytes(data or b"")

    def _https_visit(self, url: str) -> int:
        import requests

        with requests.get(url, timeout=self.config.http_timeout_seconds, allow_redirects=False,
                          verify=self._verify_for(url)) as response:
            return response.status_code

    # --- SNS ------------------------------------------------------------------------------------

    def sns_checked(self, body: bytes, headers: dict[str, str],
                    note: dict[str, Any]) -> tuple[dict[str, str], dt.datetime, dt.datetime]:
        """Everything that needs no network, before a certificate is fetched: the envelope, its
        headers, the topic, the signature version, the age, the certificate URL. (envelope, now, sent)"""
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
        if config.require_signature_v2 and envelope["SignatureVersion"] != "2":
            raise Refused(403, "signature_version_refused",
                          "only SignatureVersion 2 (SHA256withRSA) is accepted (INCIDENT_OPS_SNS_REQUIRE_SIGNATURE_V2)")
        now = self.clock()
        sent = sns.parse_timestamp(envelope["Timestamp"])
        if config.sns_max_age_seconds and now - sent > dt.timedelta(seconds=config.sns_max_age_seconds):
            raise Refused(403, "message_expired",
                          f"the message is from {envelope['Timestamp']}, older than {int(config.sns_max_age_seconds)} s")
        if sent - now > _FUTURE_SKEW:
            raise Refused(403, "message_expired", f"the message's Timestamp {envelope['Timestamp']} is in the future")
        if config.verify:
            sns.check_sns_url(envelope["SigningCertURL"], config.extra_cert_hosts, what="SigningCertURL", pem=True,
                              regions=config.sns_regions)
        else:
            note["verified"] = False
        return envelope, now, sent

    def sns_accepted(self, envelope: dict[str, str], key: Any, now: dt.datetime, sent: dt.datetime,
                     note: dict[str, Any]) -> dict[str, Any]:
        """The rest, once the certificate's `key` is there (None: verification is off)."""
        if key is not None:
            sns.verify_signature(envelope, key)
        if envelope["Type"] == "SubscriptionConfirmation":
            return self._confirm_subscription(envelope, note)
        if envelope["Type"] == "UnsubscribeConfirmation":
            return {"status": "ignored", "incident_id": None, "dag_run_id": None,
                    "reason": "UnsubscribeConfirmation: nothing to do"}
        alarm = sns.alarm_from_message(envelope["Message"])
        note.update(alarm=alarm["AlarmName"], state=alarm["NewStateValue"])
        from incident_ops.webhooks.intake import environment_for_alarm

        intake = self.intake
        delivery = f"sns:{envelope['MessageId']}"
        replayed = intake.replayed(delivery, now)
        if replayed is not None:
            return replayed.to_dict()
        environment = environment_for_alarm(intake.runbook, alarm["AlarmName"], self.config.topics[envelope["TopicArn"]])
        topic_name = envelope["TopicArn"].rsplit(":", 1)[-1]
        result = intake.handle_alarm(alarm, environment=environment, reporter=f"cloudwatch (sns:{topic_name})",
                                     message_id=envelope["MessageId"], received_at=now)
        intake.remember(delivery, result, now, self._sns_expiry(sent, now))
        return result.to_dict()

    def _sns_expiry(self, sent: dt.datetime, now: dt.datetime) -> dt.datetime:
        """When a replay of the message would be refused as too old anyway (its Timestamp + max age)."""
        if not self.config.sns_max_age_seconds:
            return now + _UNLIMITED_AGE_MEMORY
        return sent + dt.timedelta(seconds=self.config.sns_max_age_seconds + 1)

    def handle_sns(self, body: bytes, headers: dict[str, str], note: dict[str, Any]) -> dict[str, Any]:
        """The whole SNS path in the calling thread (the app uses `handle_sns_async`)."""
        envelope, now, sent = self.sns_checked(body, headers, note)
        key = None
        if self.config.verify:
            key = self.certificates.get(envelope["SigningCertURL"], self.fetch or self._https_get_certificate, now,
                                        timeout=self.certificate_wait_seconds)
        return self.sns_accepted(envelope, key, now, sent, note)

    async def handle_sns_async(self, body: bytes, headers: dict[str, str], note: dict[str, Any]) -> dict[str, Any]:
        envelope, now, sent = await run_in_threadpool(self.sns_checked, body, headers, note)
        key = None
        if self.config.verify:
            # Awaited here: a slow certificate URL holds no thread of the shared pool.
            key = await self.certificates.aget(envelope["SigningCertURL"], self.fetch or self._https_get_certificate,
                                               now, self.fetcher, timeout=self.certificate_wait_seconds)
        return await run_in_threadpool(self.sns_accepted, envelope, key, now, sent, note)

    def _confirm_subscription(self, envelope: dict[str, str], note: dict[str, Any]) -> dict[str, Any]:
        url = envelope["SubscribeURL"]
        parts = sns.check_sns_url(url, self.config.extra_cert_hosts, what="SubscribeURL", regions=self.config.sns_regions)
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

    def _secret_or_decoy(self, note: dict[str, Any]) -> str:
        """The HMAC secret; without one, a random one (the request fails exactly like a bad
        signature: the sender learns nothing) and a loud log line (at most once a minute)."""
        secret = self.secret()
        if secret:
            return secret
        note["misconfigured"] = "no HMAC secret"
        now = time.monotonic()
        if now - self._unconfigured_logged >= _UNCONFIGURED_LOG_EVERY:
            self._unconfigured_logged = now
            log.error("MISCONFIGURED: /incidents/webhooks/alert has no shared secret, so every alert is refused "
                      "(401): set the Airflow connection %r (password) or the Variable %r",
                      SECRET_CONN_ID, SECRET_VARIABLE)
        return secrets.token_urlsafe(32)

    def handle_alert(self, body: bytes, headers: dict[str, str], note: dict[str, Any]) -> dict[str, Any]:
        now = self.clock()
        timestamp = headers.get(hmac_auth.TIMESTAMP_HEADER.lower())
        if self.config.verify:
            sent: int | None = hmac_auth.verify(
                self._secret_or_decoy(note), timestamp, headers.get(hmac_auth.SIGNATURE_HEADER.lower()), body,
                now=now, window_seconds=self.config.replay_window_seconds)
        else:
            note["verified"] = False
            stripped = (timestamp or "").strip()
            sent = int(stripped) if _DIGITS.fullmatch(stripped) and len(stripped) <= 12 else None
        try:
            data = sns.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise Refused(400, "malformed", "the body is not valid UTF-8 JSON") from None
        if sns.has_lone_surrogate(json.dumps(data, ensure_ascii=False)):
            raise Refused(400, "malformed", "the body holds a lone surrogate (not UTF-8 text)")
        alert = parse_alert(data)
        note.update(source=alert.source, service=alert.service)
        # The digest of what was signed, with the verified instant (not the header's spelling of it).
        digest = hashlib.sha256(f"{'' if sent is None else sent}.".encode() + body).hexdigest()[:32]
        delivery = f"alert:{digest}"
        intake = self.intake
        replayed = intake.replayed(delivery, now)
        if replayed is not None:
            return replayed.to_dict()
        report = intake.alert_report(alert, occurrence_key=delivery, received_at=now)
        result = intake.open(report)
        window = dt.timedelta(seconds=self.config.replay_window_seconds + 1)
        expires = dt.datetime.fromtimestamp(sent, dt.UTC) + window if sent is not None else now + window
        intake.remember(delivery, result, now, expires)
        return result.to_dict()

    async def handle_alert_async(self, body: bytes, headers: dict[str, str], note: dict[str, Any]) -> dict[str, Any]:
        return await run_in_threadpool(self.handle_alert, body, headers, note)


class _Gateway(Exception):
    status = 502
    code = "subscribe_failed"


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
        digits = length.strip()
        if not _DIGITS.fullmatch(digits):  # ASCII digits only: "²".isdigit() is True, int("²") is not
            raise Refused(400, "malformed", "Content-Length is not a number")
        if len(digits) > 18 or int(digits) > limit:
            raise Refused(413, "too_large", f"the body is {digits[:20]} bytes; the limit is {limit}")
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
    try:
        docs = config.docs if config is not None else docs_enabled()
        verify = config.verify if config is not None else verification_enabled()
    except ConfigError as exc:  # reported again, as an error, when the first request builds the configuration
        log.error("incident webhooks: %s", exc)
        docs, verify = False, True
    if not verify:
        log.warning("!" * 100)
        log.warning(_VERIFY_OFF_WARNING)
        log.warning("!" * 100)
    app = FastAPI(
        title="PeopleBooster incident webhooks",
        description=__doc__,
        version="1",
        docs_url="/webhooks/docs" if docs else None,
        openapi_url="/webhooks/openapi.json" if docs else None,
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
                     handler: Callable[[WebhookServices], Callable[..., Awaitable[dict[str, Any]]]],
                     services: WebhookServices) -> JSONResponse:
        started = time.monotonic()
        note: dict[str, Any] = {
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "endpoint": endpoint,
            "remote": request.client.host if request.client else None,
            **forwarded_for(request.headers.get("x-forwarded-for")),
        }
        status, payload = 200, {}
        try:
            body = await _read_body(request, services.config.max_body_bytes)
            note.update(bytes=len(body), sha256=hashlib.sha256(body).hexdigest())
            _media_type(request, allowed)
            headers = {key.lower(): value for key, value in request.headers.items()}
            payload = await handler(services)(body, headers, note)
        except _BAD_INPUT as exc:
            status, payload = exc.status, {"error": exc.code, "reason": exc.reason}
        except (TriggerError, _Gateway) as exc:
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
        return await handle(request, "sns", SNS_CONTENT_TYPES, lambda s: s.handle_sns_async, services)

    @app.post("/webhooks/alert", summary="Generic JSON alerts (HMAC-SHA256)",
              openapi_extra={"requestBody": alert_body, "parameters": [
                  {"name": hmac_auth.TIMESTAMP_HEADER, "in": "header", "required": True, "schema": {"type": "string"}},
                  {"name": hmac_auth.SIGNATURE_HEADER, "in": "header", "required": True, "schema": {"type": "string"}},
              ]})
    async def alert_webhook(request: Request, services: WebhookServices = Depends(get_services)) -> JSONResponse:  # noqa: B008
        return await handle(request, "alert", ALERT_CONTENT_TYPES, lambda s: s.handle_alert_async, services)

    return app
