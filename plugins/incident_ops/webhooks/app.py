"""The webhook app the Airflow API server serves under `/incidents` (see `incident_ops_plugin.py`).

    POST /incidents/webhooks/sns        Amazon SNS deliveries (CloudWatch alarms), signature v1/v2
    POST /incidents/webhooks/alert      generic JSON alerts, HMAC-SHA256 over "timestamp.body"
    POST /incidents/webhooks/slack      Slack interactivity (decision and 対応開始 buttons) and `/incident`
    POST /incidents/webhooks/pagerduty  PagerDuty v3 webhooks (acknowledged, resolved, escalated, reassigned)

The first two answer `{"incident_id", "status": "new"|"joined"|"recorded"|"ignored"|"replayed"|"held", "dag_run_id", ...}`
with 200 (`replayed`: an authentic delivery seen before whose incident is no longer open: nothing
opened, joined or paged; `held`: new incidents are capped per source and overall per minute, the
occurrence is recorded on the alarm storm record and nothing is opened or triggered, see intake.py),
or a 4xx `{"error": <code>, "reason": <text>}` for bad input with nothing triggered
or stored but the audit line: 400 malformed, 401 bad/expired HMAC (also when no secret is
configured: the answer does not tell), 403 forged SNS signature, SignatureVersion 1 when only 2 is
allowed, unknown topic or a URL SNS does not use, 413 body over the limit, 415 wrong content type,
422 valid JSON that is not an alarm/alert the runbook and the DAG's Params accept. 503 = Airflow
could not create the run now, or `busy`: too many signing certificates are being fetched (the
sender retries; an incident is kept and the retry starts its run). No input gives a 5xx otherwise.

The signing certificate is fetched outside the shared thread pool that Airflow's own routes use: on
a small dedicated pool (`INCIDENT_OPS_SNS_CERT_FETCHES` threads), awaited by the event loop, one
fetch per URL shared by every delivery waiting for it.

**Slack** (`application/x-www-form-urlencoded`): the `v0` signature of `v0:{timestamp}:{body}` with
the signing secret (connection `incident_slack_webhook`, password), 5-minute window; a bad, expired or
missing signature, or no secret configured, is 401. An interaction is answered 200 with an empty body
at once (Slack wants an answer within 3 s); the work is done after, on the webhooks' own small pool
(`INCIDENT_OPS_WEBHOOK_WORKERS` threads, at most `INCIDENT_OPS_WEBHOOK_MAX_PENDING` jobs, else 503
`busy`). A decision click: the Slack user is mapped to a runbook person (`core/responders.py`); only
the people of `decisions.responders` may answer; the answer is applied with Airflow's own
`update_hitl_detail` (as the UI does, responder `slack:<user id>` named after the person), recorded in
the ledger (`decision_answered`) and the message is updated in place to say who chose what (JST).
Refusals (unknown user, not allowed, already answered, expired, not waiting) get an ephemeral reply
and an audit line. The same click delivered twice (a Slack retry, `X-Slack-Retry-Num`) acts once; a
double click answers once (the second is told it was already answered). 対応開始 acknowledges the
incident for the person (`flows.incident.acknowledge_incident`), or says who already did. `/incident
<症状>` declares through the same intake as `/alert` (Params validation, dedup by fingerprint) and
answers 200 with the Slack reply (incident id, level, channel); when the intake takes longer than
about 2 s the reply is 「受け付けました」 and the result follows as an ephemeral message.

**PagerDuty** (`application/json`): `X-PagerDuty-Signature` (any `v1=` HMAC-SHA256 of the body with any
of the secrets of the connection `incident_pagerduty_webhook`, several during a rotation) else 401;
an `occurred_at` older than `INCIDENT_OPS_PAGERDUTY_MAX_AGE_SECONDS` (or 5 min ahead) is 403
`event_expired`; an event id seen before is 200 `replayed` (nothing done). `incident.acknowledged`
records the acknowledgement at once (who: the runbook person of the agent, else the agent's name,
else "pagerduty"); `resolved`, `escalated` and `reassigned` go on the incident's timeline (idempotent
by event id): 200 `recorded`. Another event type, or an incident_key that is not ours: 200 `ignored`.

**The page at once** (`webhooks/paging.py`): an alarm, alert or `/incident` that opens a NEW P1/P2
incident is handed to a small background sender that sends the PagerDuty trigger the DAG would
(same dedup key), after the answer is decided and without the request waiting for it; the ledger
records `paged` (actor `webhook-intake`) when PagerDuty took it, and the DAG does not send that
trigger again (it still places the phone call, and pages itself when the intake's attempt failed).

`create_app()` takes its collaborators as arguments (tests inject the trigger, the certificate
fetcher, the clock, the ledger); the FastAPI dependency `get_services` can be overridden too. The
app's OpenAPI and docs pages are served only with `INCIDENT_OPS_WEBHOOK_DOCS=on`.
"""

from __future__ import annotations

import asyncio
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
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from incident_ops.core import responders
from incident_ops.core.decisions import option_label
from incident_ops.core.ledger import IncidentNotFound, Ledger
from incident_ops.core.messages import Trusted, channel_name
from incident_ops.core.phrases import phrase
from incident_ops.core.runbook import Runbook
from incident_ops.webhooks import hmac_auth, pagerduty, slack, sns
from incident_ops.webhooks.airflow_bridge import HitlAnswerError
from incident_ops.webhooks.audit import AuditLog
from incident_ops.webhooks.config import (
    PAGERDUTY_SECRET_CONN_ID,
    SECRET_CONN_ID,
    SECRET_VARIABLE,
    SLACK_SECRET_CONN_ID,
    ConfigError,
    WebhookConfig,
    docs_enabled,
    verification_enabled,
)
from incident_ops.webhooks.intake import Intake, IntakeError, IntakeResult, TriggerError, TriggerFn, parse_alert
from incident_ops.webhooks.paging import IntakePager, paging_enabled, project_pager
from incident_ops.webhooks.paging import queue_size as paging_queue_size

__all__ = ["Refused", "WebhookServices", "create_app", "get_services"]

log = logging.getLogger(__name__)
SNS_CONTENT_TYPES = ("text/plain", "application/json")
ALERT_CONTENT_TYPES = ("application/json",)
SLACK_CONTENT_TYPES = ("application/x-www-form-urlencoded",)
PAGERDUTY_CONTENT_TYPES = ("application/json",)
# How long a Slack click is remembered (a retry of it acts once).
_CLICK_MEMORY = dt.timedelta(hours=1)
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


_BAD_INPUT = (Refused, sns.SnsError, hmac_auth.HmacError, IntakeError, slack.SlackRequestError,
              pagerduty.PagerDutyError)


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
    # Slack / PagerDuty (defaults in `create_app`: the Airflow connections, Airflow's HITL route,
    # the project's Slack client, flows.incident.acknowledge_incident).
    slack_secret: Callable[[], str | None] = lambda: None
    pagerduty_secrets: Callable[[], list[str]] = list
    hitl: Callable[..., dict[str, Any]] | None = None
    slack_api: Callable[[str], Any] | None = None
    acknowledge: Callable[[str, str], dict[str, Any]] | None = None
    command_wait_seconds: float = 2.0
    # environment → PagerDuty client for the page at once (webhooks/paging.py); None: the DAG alone pages.
    pager: Callable[[str], Any] | None = None
    certificates: sns.CertificateCache = field(init=False)
    audit: AuditLog = field(init=False)
    _intake: Intake | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _confirmed: OrderedDict[tuple[str, str], str] = field(default_factory=OrderedDict, init=False)
    _confirm_lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _fetcher: ThreadPoolExecutor | None = field(default=None, init=False)
    _unconfigured_logged: float = field(default=float("-inf"), init=False)
    _workers: ThreadPoolExecutor | None = field(default=None, init=False)
    _checkers: ThreadPoolExecutor | None = field(default=None, init=False)
    _pending: threading.BoundedSemaphore = field(init=False)
    _futures: set[Future[Any]] = field(default_factory=set, init=False)
    _decision_locks: dict[tuple[str, str, str, int], threading.Lock] = field(default_factory=dict, init=False)
    _slack_clients: dict[str, Any] = field(default_factory=dict, init=False)
    _paging: IntakePager | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        config = self.config
        self.certificates = sns.CertificateCache(config.cert_cache_size, failure_ttl=config.cert_failure_ttl_seconds,
                                                 max_fetches=config.cert_fetch_concurrency)
        self.audit = AuditLog(config.audit_log, max_bytes=config.audit_max_bytes, backups=config.audit_backups)
        self._pending = threading.BoundedSemaphore(config.max_pending)

    @property
    def intake(self) -> Intake:
        with self._lock:
            if self._intake is None:
                from incident_ops.core.runbook import load_runbook

                runbook = self.runbook or load_runbook()
                self._intake = Intake(runbook, self.ledger or Ledger(), self.trigger,
                                      retrigger_after=self.config.retrigger_after_seconds, clock=self.clock,
                                      max_detection_age=self.config.sns_max_age_seconds or 3600.0,
                                      max_detection_ahead=_FUTURE_SKEW.total_seconds(), flood=self.config.flood)
            return self._intake

    @property
    def paging(self) -> IntakePager | None:
        """The page-at-once sender (built on first use; None without a `pager`)."""
        if self.pager is None:
            return None
        intake = self.intake
        with self._lock:
            if self._paging is None:
                self._paging = IntakePager(intake.runbook, intake.ledger, self.pager, clock=self.clock,
                                           max_queue=paging_queue_size())
            return self._paging

    def page_at_once(self, result: IntakeResult) -> IntakeResult:
        """Hand a new P1/P2 incident to the background sender (never waits for PagerDuty)."""
        if self.pager is not None and result.status == "new":
            paging = self.paging
            if paging is not None:
                paging.offer(result.incident_id, result.severity, result.status)
        return result

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
        result = self.page_at_once(intake.handle_alarm(alarm, environment=environment,
                                                       reporter=f"cloudwatch (sns:{topic_name})",
                                                       message_id=envelope["MessageId"], received_at=now))
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
        if envelope.get("Type") == "SubscriptionConfirmation":
            # Visiting the SubscribeURL is an outbound call too: on the fetchers' pool, not Airflow's.
            return await asyncio.wrap_future(self.fetcher.submit(self.sns_accepted, envelope, key, now, sent, note))
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
        result = self.page_at_once(intake.open(report))
        window = dt.timedelta(seconds=self.config.replay_window_seconds + 1)
        expires = dt.datetime.fromtimestamp(sent, dt.UTC) + window if sent is not None else now + window
        intake.remember(delivery, result, now, expires)
        return result.to_dict()

    async def handle_alert_async(self, body: bytes, headers: dict[str, str], note: dict[str, Any]) -> dict[str, Any]:
        return await run_in_threadpool(self.handle_alert, body, headers, note)

    # --- the Slack / PagerDuty webhooks' own pool -----------------------------------------------

    @property
    def workers(self) -> ThreadPoolExecutor:
        """The Slack/PagerDuty work's own small pool (never the one Airflow's routes wait for): the
        work done after answering (a decision may wait seconds for its task to start waiting)."""
        with self._lock:
            if self._workers is None:
                self._workers = ThreadPoolExecutor(max_workers=self.config.workers, thread_name_prefix="incident-webhook")
            return self._workers

    @property
    def checkers(self) -> ThreadPoolExecutor:
        """A second small pool for what the answer waits for (signature, parsing, PagerDuty's short
        ledger writes), so slow work queued on `workers` never delays Slack's 3-second answer."""
        with self._lock:
            if self._checkers is None:
                self._checkers = ThreadPoolExecutor(max_workers=self.config.workers, thread_name_prefix="incident-check")
            return self._checkers

    def submit(self, fn: Callable[..., Any], *args: Any, pool: ThreadPoolExecutor | None = None) -> Future[Any]:
        """`fn(*args)` on `pool` (`workers`); Refused(503 busy) when `max_pending` jobs are queued or running."""
        if not self._pending.acquire(blocking=False):
            raise Refused(503, "busy", "too many webhook jobs are waiting; retry later")
        try:
            future = (pool or self.workers).submit(fn, *args)
        except BaseException:
            self._pending.release()
            raise
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._finished)
        return future

    def _finished(self, future: Future[Any]) -> None:
        self._pending.release()
        with self._lock:
            self._futures.discard(future)
        if not future.cancelled() and (exc := future.exception()) is not None and not isinstance(exc, _BAD_INPUT):
            log.error("webhook job failed", exc_info=exc)

    async def on_workers(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` on the `checkers` pool, awaited by the event loop (which it never blocks)."""
        return await asyncio.wrap_future(self.submit(fn, *args, pool=self.checkers))

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no job is queued or running (tests; a shutdown). True when idle."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                futures = list(self._futures)
            if not futures:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            wait_futures(futures, timeout=left)

    def _work_audit(self, endpoint: str, **fields: Any) -> None:
        """The audit line of work done after the answer (a refusal, an applied decision)."""
        self.audit.write({"at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"), "endpoint": endpoint,
                          "phase": "work", **fields})

    def _slack_for(self, environment: str | None) -> Any:
        """The Slack client (ephemeral replies, message updates) of `environment`, or None."""
        environment = environment or self._default_environment()
        with self._lock:
            if environment in self._slack_clients:
                return self._slack_clients[environment]
        try:
            client = (self.slack_api or _project_slack)(environment)
        except Exception:  # noqa: BLE001 - no Slack connection: the work goes on, nobody is told in Slack
            log.exception("no Slack client for %s", environment)
            client = None
        with self._lock:
            self._slack_clients[environment] = client
        return client

    def _default_environment(self) -> str:
        environments = self.intake.runbook.environments
        return "production" if "production" in environments else next(iter(environments))

    def _tell(self, environment: str | None, channel: str | None, user: str, text: str) -> bool:
        client = self._slack_for(environment)
        if client is None or not channel:
            return False
        try:
            client.ephemeral(channel, user, text)
        except Exception:  # noqa: BLE001 - Slack down: the audit line stays
            log.exception("chat.postEphemeral to %s failed", user)
            return False
        return True

    # --- Slack ----------------------------------------------------------------------------------

    def _slack_secret_or_decoy(self, note: dict[str, Any]) -> list[str]:
        """The signing secret(s) (separated by commas/whitespace during a rotation); without one, a
        random one: the request fails exactly like a bad signature."""
        found = [item for item in re.split(r"[\s,]+", self.slack_secret() or "") if item]
        if found:
            return found
        note["misconfigured"] = "no Slack signing secret"
        self._log_unconfigured("/incidents/webhooks/slack has no signing secret", SLACK_SECRET_CONN_ID)
        return [secrets.token_urlsafe(32)]

    def _log_unconfigured(self, what: str, conn_id: str) -> None:
        now = time.monotonic()
        if now - self._unconfigured_logged >= _UNCONFIGURED_LOG_EVERY:
            self._unconfigured_logged = now
            log.error("MISCONFIGURED: %s, so every request is refused (401): set the Airflow connection %r (password)",
                      what, conn_id)

    def slack_checked(self, body: bytes, headers: dict[str, str],
                      note: dict[str, Any]) -> tuple[slack.Click | slack.SlashCommand | None, str]:
        """The verified request and the digest of what was signed."""
        now = self.clock()
        timestamp = headers.get(slack.TIMESTAMP_HEADER.lower())
        if self.config.verify:
            sent: int | None = slack.verify(self._slack_secret_or_decoy(note), timestamp,
                                            headers.get(slack.SIGNATURE_HEADER.lower()), body, now=now)
        else:
            note["verified"] = False
            stripped = (timestamp or "").strip()
            sent = int(stripped) if _DIGITS.fullmatch(stripped) and len(stripped) <= 12 else None
        retry = headers.get(slack.RETRY_HEADER.lower())
        if retry is not None:
            note["slack_retry"] = retry[:20]
        request = slack.parse_request(body)
        if isinstance(request, slack.Click):
            note.update(kind=f"click:{request.kind}", slack_user=request.user_id, action_id=request.action_id)
        elif isinstance(request, slack.SlashCommand):
            note.update(kind="command", slack_user=request.user_id, command=request.command)
        else:
            note["kind"] = "other"
        digest = hashlib.sha256(f"{'' if sent is None else sent}.".encode() + body).hexdigest()[:32]
        return request, digest

    async def handle_slack_async(self, body: bytes, headers: dict[str, str], note: dict[str, Any]) -> dict[str, Any]:
        request, digest = await self.on_workers(self.slack_checked, body, headers, note)
        if isinstance(request, slack.SlashCommand):
            return await self.slash_async(request, digest, note)
        if request is None or request.kind == "other":
            return {"status": "ignored", "_empty": True}
        self.submit(self.slack_click_work, request)
        return {"status": "accepted", "_empty": True}

    def slack_click_work(self, click: slack.Click) -> None:
        """After the answer: a click acts once (a retry of the same payload is dropped here)."""
        now = self.clock()
        ledger = self.intake.ledger
        if not ledger.remember_delivery(f"slack:click:{click.key}", now, now + _CLICK_MEMORY, status="click"):
            self._work_audit("slack", action=click.kind, slack_user=click.user_id, outcome="duplicate",
                             reason="this click was handled before (a Slack retry)")
            return
        if click.kind == "decision":
            self._decide(click, now)
        else:
            self._acknowledge_click(click, now)

    def _refuse(self, click: slack.Click, environment: str | None, code: str, person: Any = None,
                **values: Any) -> None:
        text = slack.refusal(code, **values)
        told = self._tell(environment, click.channel_id, click.user_id, text)
        self._work_audit("slack", action=click.kind, slack_user=click.user_id, incident_id=click.incident_id,
                         person=getattr(person, "id", None), outcome="refused", error=code, told=told,
                         task_id=click.value.get("task_id"))

    def _event(self, ledger: Ledger, incident_id: str, key: str) -> dict[str, Any] | None:
        for event in ledger.events(incident_id):
            if event.get("idempotency_key") == key:
                return event
        return None

    def _clicked_by(self, click: slack.Click, incident_id: str | None) -> tuple[dict[str, Any], str | None, Any] | None:
        """What every button checks first: the incident exists and the Slack user is a runbook
        person. (record, environment, person), or None when the click was refused (and told)."""
        if incident_id is None:
            self._refuse(click, None, "invalid")
            return None
        try:
            record = self.intake.ledger.get(incident_id)
        except IncidentNotFound:
            self._refuse(click, None, "unknown_incident")
            return None
        environment = record.get("environment")
        person = responders.by_slack_user(self.intake.runbook, click.user_id)
        if person is None:
            self._refuse(click, environment, "unknown_user")
            return None
        return record, environment, person

    def _decide(self, click: slack.Click, now: dt.datetime) -> None:
        intake = self.intake
        ledger = intake.ledger
        decision = slack.decision_of(click)
        checked = self._clicked_by(click, decision.incident_id if decision is not None else None)
        if decision is None or checked is None:
            return None
        _, environment, person = checked
        if not person.allowed:
            return self._refuse(click, environment, "not_allowed", person, name=person.name)
        events = ledger.events(decision.incident_id)
        posted = next((e for e in reversed(events) if e["kind"] == "decision_posted"
                       and (e.get("data") or {}).get("task_id") == decision.task_id), None)
        data = (posted or {}).get("data") or {}
        channel, ts = click.channel_id, click.message_ts
        if posted:
            if data.get("run_id") not in (None, decision.run_id) or data.get("dag_id") not in (None, decision.dag_id):
                return self._refuse(click, environment, "stale", person)
            options = data.get("options")
            if isinstance(options, list) and decision.option not in options:
                return self._refuse(click, environment, "bad_option", person)
            deadline = _parse_deadline(data.get("deadline"))
            if deadline is not None and now > deadline:
                return self._refuse(click, environment, "expired", person)
            channel = data.get("channel") or channel
            ts = data.get("ts") or ts
        try_number = data.get("try_number")
        answered_key = f"decision_answered:{decision.task_id}"
        if isinstance(try_number, int) and try_number > 1:  # a retried task asks again
            answered_key += f":{try_number}"
        with self._decision_lock(decision):
            answered = self._event(ledger, decision.incident_id, answered_key)
            if answered is not None:
                option = (answered.get("data") or {}).get("option") or ""
                return self._refuse(click, environment, "answered_by", person, by=answered.get("actor") or "",
                                    option=option_label(str(option), intake.runbook))
            try:
                (self.hitl or _airflow_hitl)(decision.dag_id, decision.run_id, decision.task_id, decision.map_index,
                                             decision.option, f"slack:{click.user_id}", person.name)
            except HitlAnswerError as exc:
                return self._refuse(click, environment, exc.code, person)
            except Exception:  # noqa: BLE001 - Airflow's database failed: say so, the UI still works
                log.exception("applying %s to %s failed", decision.option, decision.task_id)
                return self._refuse(click, environment, "failed", person)
            at = self.clock()
            # People's words for the option (承認, a scenario's label), else what the button said.
            label = option_label(decision.option, intake.runbook)
            if label == decision.option:
                label = click.label or decision.option
            ledger.record_event(
                decision.incident_id, at=at, kind="decision_answered", actor=person.name,
                message=phrase("event.decision_answered", plain=True, name=person.name, option=label),
                data={"task_id": decision.task_id, "option": decision.option, "slack_user_id": click.user_id,
                      "person": person.id, "dag_id": decision.dag_id, "run_id": decision.run_id,
                      "map_index": decision.map_index, "via": "slack"},
                idempotency_key=answered_key,
            )
        updated = False
        client = self._slack_for(environment)
        if client is not None and channel and ts:
            try:
                blocks = slack.answered_blocks(click.message_blocks, click.message_text, person.name, label, at)
                answered = phrase("decision.answered_short", name=person.name, option=label)
                client.update(channel, ts, f"{click.message_text[:2000]}\n{answered}", blocks)
                updated = True
            except Exception:  # noqa: BLE001 - the answer stands; the message keeps its buttons
                log.exception("chat.update of %s %s failed", channel, ts)
        self._work_audit("slack", action="decision", slack_user=click.user_id, person=person.id,
                         incident_id=decision.incident_id, task_id=decision.task_id, option=decision.option,
                         outcome="applied", message_updated=updated)

    def _decision_lock(self, decision: slack.Decision) -> threading.Lock:
        key = (decision.dag_id, decision.run_id, decision.task_id, decision.map_index)
        with self._lock:
            if len(self._decision_locks) > 1024:
                self._decision_locks = {k: v for k, v in self._decision_locks.items() if v.locked()}
            return self._decision_locks.setdefault(key, threading.Lock())

    def _acknowledge_click(self, click: slack.Click, now: dt.datetime) -> None:
        intake = self.intake
        checked = self._clicked_by(click, click.incident_id)
        if checked is None or click.incident_id is None:
            return None
        record, environment, person = checked
        if record.get("acknowledged_at"):
            return self._refuse(click, environment, "acknowledged_by", person, by=record.get("acknowledged_by") or "",
                                at=slack.jst(record["acknowledged_at"]))
        try:
            result = (self.acknowledge or _acknowledge_incident)(click.incident_id, person.name)
        except Exception:  # noqa: BLE001 - the ledger or PagerDuty failed
            log.exception("acknowledging %s failed", click.incident_id)
            return self._refuse(click, environment, "failed", person)
        if not result.get("first", True):
            record = intake.ledger.get(click.incident_id)
            at = record.get("acknowledged_at")
            return self._refuse(click, environment, "acknowledged_by", person,
                                by=result.get("acknowledged_by") or record.get("acknowledged_by") or "",
                                at=slack.jst(at) if at else "")
        self._tell(environment, click.channel_id, click.user_id,
                   phrase("acknowledge.recorded", name=person.name, at=slack.jst(self.clock())))
        self._work_audit("slack", action="acknowledge", slack_user=click.user_id, person=person.id,
                         incident_id=click.incident_id, outcome="acknowledged")

    async def slash_async(self, command: slack.SlashCommand, digest: str, note: dict[str, Any]) -> dict[str, Any]:
        if command.command != slack.COMMAND:
            return {"response_type": "ephemeral",
                    "text": phrase("command.unsupported", command=command.command, usage=Trusted(slack.usage())),
                    "_audit": {"status": "ignored"}}
        if not command.text or len(command.text) > slack.MAX_SYMPTOM:
            return {"response_type": "ephemeral", "text": slack.usage(), "_audit": {"status": "usage"}}
        job = _SlashJob()
        future = self.submit(self.slash_work, command, digest, job)
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), timeout=self.command_wait_seconds)
        except TimeoutError:
            with job.lock:
                if job.result is not None:
                    return job.result
                job.late = True
            return {"response_type": "ephemeral", "text": phrase("command.accepted"), "_audit": {"status": "accepted"}}

    def slash_work(self, command: slack.SlashCommand, digest: str, job: _SlashJob) -> dict[str, Any]:
        try:
            reply = self._declare(command, digest)
        except IntakeError as exc:
            # The reason is the intake's (English, technical): shown as code, never as a sentence.
            reply = {"response_type": "ephemeral",
                     "text": phrase("command.refused", reason=str(exc.reason).replace("`", "'")[:300]),
                     "_audit": {"status": "refused", "error": exc.code}}
        except TriggerError as exc:
            reply = {"response_type": "ephemeral", "text": phrase("command.trigger_failed"),
                     "_audit": {"status": "trigger_failed", "error": exc.code}}
        except Exception:  # noqa: BLE001 - logged; the person is told to use another way
            log.exception("/incident failed")
            reply = {"response_type": "ephemeral", "text": phrase("command.failed"),
                     "_audit": {"status": "failed", "error": "internal_error"}}
        with job.lock:
            job.result = reply
            late = job.late
        if late:
            told = self._tell(None, command.channel_id, command.user_id, reply["text"])
            self._work_audit("slack", action="command", slack_user=command.user_id, outcome="answered_late", told=told,
                             **(reply.get("_audit") or {}))
        return dict(reply)

    def _declare(self, command: slack.SlashCommand, digest: str) -> dict[str, Any]:
        intake = self.intake
        runbook = intake.runbook
        now = self.clock()
        environment = self._default_environment()
        person = responders.by_slack_user(runbook, command.user_id)
        reporter = f"{person.name}（Slack）" if person else f"slack:{command.user_name}"
        alert = parse_alert({"source": reporter[:100], "title": command.text, "symptom": command.text,
                             "service": runbook.environment(environment).default_service, "environment": environment})
        delivery = f"slack:command:{digest}"
        result = intake.replayed(delivery, now)
        if result is None:
            report = intake.alert_report(alert, occurrence_key=delivery, received_at=now)
            result = self.page_at_once(intake.open(report))
            intake.remember(delivery, result, now, now + dt.timedelta(seconds=slack.WINDOW_SECONDS + 1))
        return self._declared_reply(result, command.text)

    def _declared_reply(self, result: IntakeResult, symptom: str) -> dict[str, Any]:
        audit = {"status": result.status, "incident_id": result.incident_id, "dag_run_id": result.dag_run_id}
        if result.status == "held":  # new incidents capped (intake.py, Floods): on the storm record, no run
            return {"response_type": "ephemeral", "_audit": audit, "text": phrase("command.held")}
        if result.incident_id is None or result.status == "replayed":
            return {"response_type": "ephemeral", "text": phrase("command.replayed"), "_audit": audit}
        record = self.intake.ledger.get(result.incident_id)
        channel = record.get("slack_channel") or channel_name(self.intake.runbook, record["detected_at"])
        text = phrase("command.declared", joined=result.status != "new", incident_id=result.incident_id,
                      severity=record["severity"], symptom=symptom, channel=str(channel).lstrip("#"),
                      pending=not record.get("slack_channel"))
        return {"response_type": "in_channel", "text": text, "_audit": audit}

    # --- PagerDuty ------------------------------------------------------------------------------

    def _pagerduty_secrets_or_decoy(self, note: dict[str, Any]) -> list[str]:
        found = [secret for secret in (self.pagerduty_secrets() or []) if secret]
        if found:
            return found
        note["misconfigured"] = "no PagerDuty webhook secret"
        self._log_unconfigured("/incidents/webhooks/pagerduty has no webhook secret", PAGERDUTY_SECRET_CONN_ID)
        return [secrets.token_urlsafe(32)]

    def handle_pagerduty(self, body: bytes, headers: dict[str, str], note: dict[str, Any]) -> dict[str, Any]:
        now = self.clock()
        if self.config.verify:
            pagerduty.verify(self._pagerduty_secrets_or_decoy(note), headers.get(pagerduty.SIGNATURE_HEADER.lower()), body)
        else:
            note["verified"] = False
        event = pagerduty.parse_event(body)
        note.update(event.to_note())
        max_age = dt.timedelta(seconds=self.config.pagerduty_max_age_seconds)
        if now - event.occurred_at > max_age:
            raise Refused(403, "event_expired", f"the event occurred at {event.occurred_at.isoformat()}, more than "
                                                f"{int(max_age.total_seconds())} s ago")
        if event.occurred_at - now > _FUTURE_SKEW:
            raise Refused(403, "event_expired", f"the event's occurred_at {event.occurred_at.isoformat()} is in the future")
        ledger = self.intake.ledger
        key = f"pagerduty:{event.id}"
        seen = ledger.delivery(key, now)
        if seen is not None:
            return {"status": "replayed", "incident_id": seen["incident_id"], "dag_run_id": None,
                    "reason": f"event {event.id} was handled at {seen['seen_at'].isoformat()}: nothing done again"}
        result = self._pagerduty_event(ledger, event, now)
        ledger.remember_delivery(key, now, event.occurred_at + max_age + dt.timedelta(seconds=1),
                                 incident_id=result.get("incident_id"), status=result["status"])
        return result

    def _pagerduty_event(self, ledger: Ledger, event: pagerduty.PagerDutyEvent, now: dt.datetime) -> dict[str, Any]:
        handled = ("incident.acknowledged", *pagerduty.TIMELINE_EVENTS)
        if event.event_type not in handled:
            return {"status": "ignored", "incident_id": None, "dag_run_id": None,
                    "reason": f"{event.event_type[:100]} is not an event this webhook acts on"}
        record = None
        if event.incident_key:
            try:
                record = ledger.get(event.incident_key)
            except IncidentNotFound:
                record = None
        if record is None:
            return {"status": "ignored", "incident_id": None, "dag_run_id": None,
                    "reason": "the PagerDuty incident's incident_key is not one of our incidents"}
        incident_id = record["id"]
        person = responders.by_pagerduty_user(self.intake.runbook, event.agent_id)
        who = person.name if person else (event.agent_name or "pagerduty")
        at = min(event.occurred_at, now)
        answer: dict[str, Any] = {"status": "recorded", "incident_id": incident_id, "dag_run_id": record.get("dag_run_id"),
                                  "event_type": event.event_type}
        if event.event_type == "incident.acknowledged":
            first = ledger.acknowledge(incident_id, at, who)
            if first:  # (ledger.acknowledge recorded the `acknowledged` event; this says where it came from)
                ledger.record_event(incident_id, at=at, kind="pagerduty_acknowledged", actor=who,
                                    message=phrase("acknowledge.by_pagerduty", plain=True, name=who),
                                    idempotency_key=f"pagerduty:{event.id}",
                                    data={"via": "pagerduty_webhook", "event_id": event.id, "agent_id": event.agent_id})
            record = ledger.get(incident_id)
            answer.update(acknowledged_by=record.get("acknowledged_by"), first=first)
            return answer
        assignees = list(event.assignees)
        ledger.record_event(
            incident_id, at=at, kind=f"pagerduty_{event.event_type.split('.', 1)[1]}", actor=who,
            message=pagerduty.timeline_message(event, who, assignees),
            data={"event_id": event.id, "event_type": event.event_type, "agent_id": event.agent_id,
                  "assignees": assignees, "pagerduty_incident": event.incident_number, "html_url": event.html_url},
            idempotency_key=f"pagerduty:{event.id}",
        )
        return answer

    async def handle_pagerduty_async(self, body: bytes, headers: dict[str, str], note: dict[str, Any]) -> dict[str, Any]:
        return await self.on_workers(self.handle_pagerduty, body, headers, note)


def _parse_deadline(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


class _SlashJob:
    """Between the answer to Slack and the intake's work: who tells the person the result."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.result: dict[str, Any] | None = None
        self.late = False


class _SlackReplies:
    """Ephemeral replies and in-place updates through the project's Slack client (`IncidentSlack`)."""

    def __init__(self, incident_slack: Any) -> None:
        self.slack = incident_slack

    def ephemeral(self, channel: str, user: str, text: str) -> None:
        self.slack._call("chat.postEphemeral", channel=channel, user=user, text=text)

    def update(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]]) -> None:
        self.slack.update(channel, ts, text, blocks=blocks)


def _project_slack(environment: str) -> _SlackReplies | None:
    """The Slack client the DAG uses (connection `slack_api_default`), for `environment`."""
    from incident_ops.flows.incident import services_for

    client = services_for(environment).slack
    return _SlackReplies(client) if client is not None else None


def _airflow_hitl(*args: Any) -> dict[str, Any]:
    from incident_ops.webhooks.airflow_bridge import apply_hitl_answer

    return apply_hitl_answer(*args)


def _acknowledge_incident(incident_id: str, responder: str) -> dict[str, Any]:
    from incident_ops.flows.incident import acknowledge_incident

    return acknowledge_incident(incident_id, responder)


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
    slack_secret: Callable[[], str | None] | None = None,
    pagerduty_secrets: Callable[[], list[str]] | None = None,
    hitl: Callable[..., dict[str, Any]] | None = None,
    slack_api: Callable[[str], Any] | None = None,
    acknowledge: Callable[[str, str], dict[str, Any]] | None = None,
    command_wait_seconds: float = 2.0,
    pager: Callable[[str], Any] | None = None,
) -> FastAPI:
    """The webhook app. Without arguments (the plugin): configuration from the environment, runs
    through Airflow's `trigger_dag`, the HMAC secret from the Airflow connection/Variable, and the
    page at once through the connection `pagerduty_default` (unless `INCIDENT_OPS_INTAKE_PAGE=off`).
    `pager` (environment → PagerDuty client) turns the page at once on with that client; with an
    injected `trigger` and no `pager` (tests, benchmarks), the DAG alone pages."""
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
                if slack_secret is not None and pagerduty_secrets is not None:
                    slack_fn, pagerduty_fn = slack_secret, pagerduty_secrets
                else:
                    from incident_ops.webhooks import airflow_bridge

                    slack_fn = slack_secret or airflow_bridge.slack_signing_secret
                    pagerduty_fn = pagerduty_secrets or airflow_bridge.pagerduty_webhook_secrets
                built.append(WebhookServices(
                    config=config or WebhookConfig.from_env(), trigger=trigger_fn, secret=secret_fn, fetch=fetch,
                    visit=visit, clock=clock or _now, runbook=runbook, ledger=ledger, slack_secret=slack_fn,
                    pagerduty_secrets=pagerduty_fn, hitl=hitl, slack_api=slack_api, acknowledge=acknowledge,
                    command_wait_seconds=command_wait_seconds,
                    pager=pager or (project_pager if trigger is None and paging_enabled() else None),
                ))
            return built[0]

    app.state.services = services

    async def handle(request: Request, endpoint: str, allowed: tuple[str, ...],
                     handler: Callable[[WebhookServices], Callable[..., Awaitable[dict[str, Any]]]],
                     services: WebhookServices) -> Response:
        started = time.monotonic()
        note: dict[str, Any] = {
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "endpoint": endpoint,
            "remote": request.client.host if request.client else None,
            **forwarded_for(request.headers.get("x-forwarded-for")),
        }
        status, payload, empty = 200, {}, False
        try:
            body = await _read_body(request, services.config.max_body_bytes)
            note.update(bytes=len(body), sha256=hashlib.sha256(body).hexdigest())
            _media_type(request, allowed)
            headers = {key.lower(): value for key, value in request.headers.items()}
            payload = dict(await handler(services)(body, headers, note))
            note.update(payload.pop("_audit", None) or {})
            empty = bool(payload.pop("_empty", False))
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
        if empty and status == 200:
            return Response(status_code=200)
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

    slack_body = {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
        "type": "object", "properties": {"payload": {"type": "string", "description": "an interaction (JSON)"},
                                         "command": {"type": "string"}, "text": {"type": "string"}}}}}}
    slack_headers = [{"name": name, "in": "header", "required": True, "schema": {"type": "string"}}
                     for name in (slack.TIMESTAMP_HEADER, slack.SIGNATURE_HEADER)]

    @app.post("/webhooks/slack", summary="Slack interactivity and the /incident slash command",
              openapi_extra={"requestBody": slack_body, "parameters": slack_headers})
    async def slack_webhook(request: Request, services: WebhookServices = Depends(get_services)) -> Response:  # noqa: B008
        return await handle(request, "slack", SLACK_CONTENT_TYPES, lambda s: s.handle_slack_async, services)

    pagerduty_body = {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["event"], "properties": {"event": {"type": "object"}}}}}}

    @app.post("/webhooks/pagerduty", summary="PagerDuty v3 webhooks",
              openapi_extra={"requestBody": pagerduty_body, "parameters": [
                  {"name": pagerduty.SIGNATURE_HEADER, "in": "header", "required": True, "schema": {"type": "string"}}]})
    async def pagerduty_webhook(request: Request, services: WebhookServices = Depends(get_services)) -> Response:  # noqa: B008
        return await handle(request, "pagerduty", PAGERDUTY_CONTENT_TYPES, lambda s: s.handle_pagerduty_async,
                            services)

    return app

