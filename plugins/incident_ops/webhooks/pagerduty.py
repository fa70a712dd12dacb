"""PagerDuty's side of `POST /incidents/webhooks/pagerduty` (v3 webhooks): the signature, the event,
the Japanese timeline texts. Pure: no Airflow, no network, no clock of its own.

PagerDuty signs the raw body with each of the subscription's secrets:

    X-PagerDuty-Signature: v1=<hex HMAC-SHA256(secret, body)>[,v1=<hex>...]

(several during a secret rotation). A delivery is authentic when any `v1=` signature matches any
configured secret (constant-time comparisons, every pair compared).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

from incident_ops.core.phrases import phrase
from incident_ops.webhooks.hmac_auth import HmacError

__all__ = ["SIGNATURE_HEADER", "TIMELINE_EVENTS", "PagerDutyError", "PagerDutyEvent", "parse_event", "sign",
           "signature_header", "timeline_message", "verify"]

SIGNATURE_HEADER = "X-PagerDuty-Signature"
TIMELINE_EVENTS = ("incident.resolved", "incident.escalated", "incident.reassigned")
_V1 = re.compile(r"^v1=([0-9a-fA-F]{64})$")
_MAX_SIGNATURES = 10
_EVENT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


class PagerDutyError(Exception):
    """A signed body that is not a v3 event (400)."""

    status = 400

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def sign(secret: str | bytes, body: bytes) -> str:
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return "v1=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def signature_header(secrets: list[str], body: bytes) -> dict[str, str]:
    return {SIGNATURE_HEADER: ",".join(sign(secret, body) for secret in secrets)}


def verify(secrets: list[str], header: str | None, body: bytes) -> None:
    """Nothing when a `v1=` signature of `header` matches a secret; HmacError (401) otherwise."""
    if not header or not header.strip():
        raise HmacError("signature_missing", f"the {SIGNATURE_HEADER} header is missing")
    parts = [part.strip() for part in header.split(",")]
    signatures = [m.group(1).lower() for part in parts[:_MAX_SIGNATURES] if (m := _V1.match(part))]
    if not signatures:
        raise HmacError("signature_invalid", f"{SIGNATURE_HEADER} holds no 'v1=<64 hex digits>' signature")
    matched = False
    for secret in secrets:
        expected = sign(secret, body)[3:]
        for signature in signatures:
            matched |= hmac.compare_digest(expected, signature)  # every pair: the time says nothing
    if not matched:
        raise HmacError("signature_invalid", "no signature matches the body")


@dataclass(frozen=True)
class PagerDutyEvent:
    id: str
    event_type: str
    occurred_at: dt.datetime
    agent_id: str | None
    agent_name: str | None
    incident_key: str | None
    incident_number: Any
    title: str | None
    html_url: str | None
    assignees: list[str]

    def to_note(self) -> dict[str, Any]:
        return {"event_id": self.id, "event_type": self.event_type, "incident_key": self.incident_key,
                "agent_id": self.agent_id, "occurred_at": self.occurred_at.isoformat()}


def _str(value: Any, limit: int = 500) -> str | None:
    return value[:limit] if isinstance(value, str) and value.strip() else None


def _time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, OverflowError):
        return None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        return None
    try:
        return parsed.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        return None


def parse_event(body: bytes) -> PagerDutyEvent:
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise PagerDutyError("malformed", "the body is not UTF-8 JSON") from None
    event = data.get("event") if isinstance(data, dict) else None
    if not isinstance(event, dict):
        raise PagerDutyError("malformed", "the body has no 'event' object")
    event_id, event_type = event.get("id"), event.get("event_type")
    if not isinstance(event_id, str) or not _EVENT_ID.match(event_id):
        raise PagerDutyError("malformed", "event.id is missing or not an id")
    if not isinstance(event_type, str) or not 0 < len(event_type) <= 100:
        raise PagerDutyError("malformed", "event.event_type is missing")
    occurred_at = _time(event.get("occurred_at"))
    if occurred_at is None:
        raise PagerDutyError("malformed", "event.occurred_at is not an ISO 8601 time with a zone")
    agent = event.get("agent") if isinstance(event.get("agent"), dict) else {}
    incident = event.get("data") if isinstance(event.get("data"), dict) else {}
    assignees = incident.get("assignees") if isinstance(incident.get("assignees"), list) else []
    return PagerDutyEvent(
        id=event_id,
        event_type=event_type,
        occurred_at=occurred_at,
        agent_id=_str(agent.get("id"), 64),
        agent_name=_str(agent.get("summary"), 200),
        incident_key=_str(incident.get("incident_key"), 128),
        incident_number=incident.get("number") if isinstance(incident.get("number"), int) else None,
        title=_str(incident.get("title")),
        html_url=_str(incident.get("html_url"), 500),
        assignees=[name for a in assignees[:10] if isinstance(a, dict) and (name := _str(a.get("summary"), 200))],
    )


def timeline_message(event: PagerDutyEvent, who: str, assignees: list[str]) -> str:
    """The Japanese line of a timeline event (plain text, from the phrase catalogue; the ledger's
    messages are escaped where shown)."""
    names = "、".join(assignees) or phrase("event.nobody", plain=True)
    if event.event_type == "incident.resolved":
        return phrase("event.pagerduty_resolved", plain=True, who=who)
    if event.event_type == "incident.escalated":
        return phrase("event.pagerduty_escalated", plain=True, names=names)
    return phrase("event.pagerduty_reassigned", plain=True, names=names, who=who)
