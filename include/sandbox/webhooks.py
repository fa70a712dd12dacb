"""What the sandbox sends as Slack and PagerDuty: signed deliveries to the automation's webhooks.

- Slack (`slack_url`, e.g. `<airflow>/incidents/webhooks/slack`): a button click becomes a
  `block_actions` interaction payload and `/incident <text>` a slash command, both form-encoded and
  signed as Slack signs (`X-Slack-Request-Timestamp`, `X-Slack-Signature: v0=<hex HMAC-SHA256 of
  "v0:<timestamp>:<body>">` with the app's signing secret). One attempt with Slack's 3-second
  timeout, no retry (Slack shows the person an error instead), answered synchronously.
- PagerDuty (`pagerduty_url`, e.g. `<airflow>/incidents/webhooks/pagerduty`): a v3 webhook per
  incident transition (`incident.acknowledged`, `incident.resolved`, ...), `X-PagerDuty-Signature:
  v1=<hex HMAC-SHA256 of the raw body>` (one `v1=` per secret during a rotation), sent in order by a
  background thread so the REST answer is not held, retried on a non-2xx answer or no answer.

Every delivery is recorded (`Deliveries`) with what was sent and each attempt's answer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import itertools
import json
import logging
import queue
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field, fields
from typing import Any

import requests

__all__ = [
    "DEFAULT_PAGERDUTY_WEBHOOK_SECRET",
    "DEFAULT_SLACK_SIGNING_SECRET",
    "Deliveries",
    "PagerDutyDispatcher",
    "WebhookConfig",
    "pagerduty_signature",
    "post_slack",
    "slack_signature",
]

# The sandbox's secrets (scripts/incident_runner.py gives Airflow the same values as connections).
DEFAULT_SLACK_SIGNING_SECRET = "sandbox-slack-signing-secret"
DEFAULT_PAGERDUTY_WEBHOOK_SECRET = "sandbox-pagerduty-webhook-secret"
SLACK_TIMEOUT = 3.0  # Slack gives an interactivity / slash command endpoint 3 s
PAGERDUTY_SUBSCRIPTION = "PSUBSBX1"
log = logging.getLogger(__name__)


def webhook_urls(airflow_url: str | None) -> tuple[str | None, str | None]:
    """The Slack and PagerDuty webhook URLs of the incident_ops plugin on an Airflow base URL."""
    if not airflow_url:
        return None, None
    base = airflow_url.rstrip("/")
    return f"{base}/incidents/webhooks/slack", f"{base}/incidents/webhooks/pagerduty"


def _secrets(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else str(value).replace(",", " ").split()
    return [str(s) for s in items if str(s)]


@dataclass
class WebhookConfig:
    """Where the sandbox delivers, and the secrets it signs with (GET/POST /_sandbox/webhooks)."""

    slack_url: str | None = None
    pagerduty_url: str | None = None
    slack_signing_secret: str = DEFAULT_SLACK_SIGNING_SECRET
    # Several during a rotation: the delivery then carries one v1= signature per secret.
    pagerduty_webhook_secrets: list[str] = field(default_factory=lambda: [DEFAULT_PAGERDUTY_WEBHOOK_SECRET])
    # Seconds before each PagerDuty retry (len + 1 attempts in all); and one attempt's timeout.
    pagerduty_retry_delays: list[float] = field(default_factory=lambda: [1.0, 2.0, 4.0])
    pagerduty_timeout: float = 10.0
    slack_timeout: float = SLACK_TIMEOUT

    def update(self, changes: dict[str, Any]) -> None:
        known = {f.name for f in fields(self)} | {"airflow_url", "pagerduty_webhook_secret"}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        changes = dict(changes)
        if "airflow_url" in changes:
            self.slack_url, self.pagerduty_url = webhook_urls(changes.pop("airflow_url"))
        if "pagerduty_webhook_secret" in changes:
            changes["pagerduty_webhook_secrets"] = changes.pop("pagerduty_webhook_secret")
        for key, value in changes.items():
            if key == "pagerduty_webhook_secrets":
                value = _secrets(value)
                if not value:
                    raise ValueError("pagerduty_webhook_secrets needs at least one secret")
            elif key == "pagerduty_retry_delays":
                value = [max(float(v), 0.0) for v in value]
            elif key in ("pagerduty_timeout", "slack_timeout"):
                value = max(float(value), 0.1)
            elif key in ("slack_url", "pagerduty_url"):
                value = str(value) if value else None
            elif key == "slack_signing_secret":
                if not value:
                    raise ValueError("slack_signing_secret must not be empty")
                value = str(value)
            setattr(self, key, value)

    def copy(self) -> WebhookConfig:
        return WebhookConfig(**{**self.to_dict(), "pagerduty_webhook_secrets": list(self.pagerduty_webhook_secrets),
                                "pagerduty_retry_delays": list(self.pagerduty_retry_delays)})

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def slack_signature(secret: str, timestamp: str | int, body: bytes) -> str:
    """`v0=` + hex HMAC-SHA256 of `v0:<timestamp>:<body>` (Slack's request signature)."""
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def pagerduty_signature(secrets: list[str], body: bytes) -> str:
    """`v1=<hex>` per secret, comma-separated (PagerDuty's X-PagerDuty-Signature)."""
    return ",".join("v1=" + hmac.new(s.encode(), body, hashlib.sha256).hexdigest() for s in secrets)


def now_iso(ms: bool = True) -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds" if ms else "seconds").replace("+00:00", "Z")


def _answer(response: requests.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text[:4000]


class Deliveries:
    """Every webhook delivery the sandbox made (bounded), newest last."""

    def __init__(self, limit: int = 2000) -> None:
        self._items: deque[dict[str, Any]] = deque(maxlen=limit)
        self._seq = itertools.count(1)
        self.lock = threading.Lock()

    def add(self, delivery: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            delivery["seq"] = next(self._seq)
            self._items.append(delivery)
            return delivery

    def list(self, kind: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(json.dumps(d)) for d in self._items
                    if (kind is None or d["kind"] == kind or d["kind"].startswith(f"{kind}.")) and d["seq"] > since]

    def clear(self) -> None:
        with self.lock:
            self._items.clear()


def _attempt(session: requests.Session, url: str, body: bytes, headers: dict[str, str], timeout: float) -> dict[str, Any]:
    started = time.monotonic()
    attempt: dict[str, Any] = {"at": now_iso(), "status": None, "answer": None, "error": None}
    try:
        response = session.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
        attempt["status"] = response.status_code
        attempt["answer"] = _answer(response)
    except requests.Timeout:
        attempt["error"] = "operation_timeout"
    except requests.RequestException as exc:
        attempt["error"] = f"{type(exc).__name__}: {exc}"[:500]
    attempt["seconds"] = round(time.monotonic() - started, 3)
    return attempt


def post_slack(deliveries: Deliveries, config: WebhookConfig, kind: str, body: bytes, *, by: str | None,
               summary: dict[str, Any], secret: str | None = None) -> dict[str, Any]:
    """Sign and POST a form body to the Slack URL once (Slack does not retry these); the delivery."""
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": slack_signature(secret or config.slack_signing_secret, timestamp, body),
    }
    delivery: dict[str, Any] = {"kind": kind, "service": "slack", "url": config.slack_url, "by": by, **summary,
                                "headers": headers, "body": body.decode("utf-8"), "attempts": [],
                                "status": None, "answer": None, "error": None, "done": False}
    if not config.slack_url:
        delivery.update(error="no Slack request URL configured (see /_sandbox/webhooks)", done=True)
        return deliveries.add(delivery)
    with requests.Session() as session:
        attempt = _attempt(session, config.slack_url, body, headers, config.slack_timeout)
    delivery["attempts"].append(attempt)
    delivery.update(status=attempt["status"], answer=attempt["answer"], error=attempt["error"], done=True)
    return deliveries.add(delivery)


class PagerDutyDispatcher:
    """Sends PagerDuty v3 webhooks in order from one background thread, retrying failures."""

    def __init__(self, deliveries: Deliveries, config: Any) -> None:
        self.deliveries = deliveries
        self._config = config  # a callable returning the current WebhookConfig
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._generation = 0

    def cancel(self) -> None:
        """Drop the deliveries not made yet (a reset: their receivers belong to the past)."""
        with self._lock:
            self._generation += 1

    def send(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """Queue the webhook of `event` (the v3 `event` object); the delivery record, or None when
        no URL is configured (nothing is subscribed)."""
        config: WebhookConfig = self._config()
        if not config.pagerduty_url:
            return None
        body = json.dumps({"event": event}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "PagerDuty-Webhook/V3.0",
            "X-Webhook-Id": str(uuid.uuid4()),
            "X-Webhook-Subscription": PAGERDUTY_SUBSCRIPTION,
            "X-PagerDuty-Signature": pagerduty_signature(config.pagerduty_webhook_secrets, body),
        }
        agent = event.get("agent") or {}
        delivery = self.deliveries.add({
            "kind": f"pagerduty.{event['event_type']}", "service": "pagerduty", "url": config.pagerduty_url,
            "by": agent.get("summary"), "event_id": event["id"], "event_type": event["event_type"],
            "incident_key": (event.get("data") or {}).get("incident_key"), "headers": headers,
            "body": body.decode("utf-8"), "attempts": [], "status": None, "answer": None, "error": None, "done": False,
        })
        self._queue.put({"generation": self._generation, "delivery": delivery, "body": body, "headers": headers, "url": config.pagerduty_url,
                         "delays": list(config.pagerduty_retry_delays), "timeout": config.pagerduty_timeout})
        self._ensure_thread()
        return delivery

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="sandbox-pagerduty-webhooks", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                job = self._queue.get()
                if job is None:
                    return
                try:
                    self._deliver(session, job)
                except Exception:  # noqa: BLE001 - one bad delivery must not stop the others
                    log.exception("sandbox: PagerDuty webhook delivery failed")

    def _deliver(self, session: requests.Session, job: dict[str, Any]) -> None:
        delivery = job["delivery"]
        delays = [0.0, *job["delays"]]
        for number, delay in enumerate(delays, start=1):
            if (delay and self._stop.wait(delay)) or job["generation"] != self._generation:
                with self.deliveries.lock:
                    delivery["error"] = delivery["error"] or "cancelled"
                break
            attempt = _attempt(session, job["url"], job["body"], job["headers"], job["timeout"])
            with self.deliveries.lock:
                delivery["attempts"].append(attempt)
                delivery.update(status=attempt["status"], answer=attempt["answer"], error=attempt["error"])
            if attempt["status"] is not None and 200 <= attempt["status"] < 300:
                break
            log.info("sandbox: PagerDuty webhook %s attempt %d failed: %s", delivery["event_id"], number,
                     attempt["status"] or attempt["error"])
        with self.deliveries.lock:
            delivery["done"] = True

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=5)
