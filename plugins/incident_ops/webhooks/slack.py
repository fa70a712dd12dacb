"""Slack's side of `POST /incidents/webhooks/slack`: the request signature, the two kinds of request
(a `block_actions` interaction, the `/incident` slash command) and the texts answered to people.

Pure: no Airflow, no network, no clock of its own (the app does the work, see `app.py`).

Slack signs every request (https://api.slack.com/authentication/verifying-requests-from-slack):

    X-Slack-Request-Timestamp: 1795793400
    X-Slack-Signature: v0=<hex HMAC-SHA256(signing secret, "v0:" + timestamp + ":" + raw body)>

accepted only when the signature matches (constant-time) and the timestamp is within 5 minutes of
the receiver's clock, in both directions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from incident_ops.core.messages import JST, slack_escape
from incident_ops.core.phrases import phrase
from incident_ops.webhooks.hmac_auth import HmacError

__all__ = [
    "ACK_BLOCK",
    "DECISION_BLOCK",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Click",
    "SlackRequestError",
    "SlashCommand",
    "answered_blocks",
    "parse_request",
    "refusal",
    "sign",
    "signature_headers",
    "usage",
    "verify",
]

TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"
SIGNATURE_HEADER = "X-Slack-Signature"
RETRY_HEADER = "X-Slack-Retry-Num"
WINDOW_SECONDS = 300.0
DECISION_BLOCK = "incident_ops.decision"
ACK_BLOCK = "incident_ops.acknowledge"
COMMAND = "/incident"
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_SIGNATURE = re.compile(r"^v0=([0-9a-fA-F]{64})$")
_INCIDENT_ID = re.compile(r"^INC-[0-9]{8}-[0-9a-f]{6,32}$")
_SLACK_ID = re.compile(r"^[A-Z0-9]{2,32}$")
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,250}$")
_MAX_FIELDS = 40
MAX_SYMPTOM = 500


class SlackRequestError(Exception):
    """A signed request Slack would not send (400), `code` and `reason` like the app's refusals."""

    status = 400

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# --- signature --------------------------------------------------------------------------------------


def sign(secret: str | bytes, timestamp: str | int, body: bytes) -> str:
    """`v0=<hex>` for `body` sent at `timestamp` (what Slack puts in X-Slack-Signature)."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    digest = hmac.new(key, b"v0:" + str(timestamp).encode("ascii") + b":" + body, hashlib.sha256).hexdigest()
    return f"v0={digest}"


def signature_headers(secret: str | bytes, timestamp: str | int, body: bytes) -> dict[str, str]:
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}


def verify(secret: str | bytes | list[str], timestamp: str | None, signature: str | None, body: bytes, *,
           now: dt.datetime, window_seconds: float = WINDOW_SECONDS) -> int:
    """The request's timestamp when authentic and within the window; HmacError (401) otherwise.
    `secret` may be several (a rotation: the old and the new signing secret both accepted)."""
    if not timestamp or not signature:
        raise HmacError("signature_missing", f"the {TIMESTAMP_HEADER} and {SIGNATURE_HEADER} headers are required")
    timestamp = timestamp.strip()
    if not _TIMESTAMP.match(timestamp):
        raise HmacError("timestamp_invalid", f"{TIMESTAMP_HEADER} must be Unix seconds")
    match = _SIGNATURE.match(signature.strip())
    if not match:
        raise HmacError("signature_invalid", f"{SIGNATURE_HEADER} must be 'v0=<64 hex digits>'")
    candidates = secret if isinstance(secret, list) else [secret]
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(sign(candidate, timestamp, body)[3:], match.group(1).lower())
    if not matched:
        raise HmacError("signature_invalid", "the signature does not match the body and timestamp")
    sent = int(timestamp)
    skew = now.timestamp() - sent
    if abs(skew) > window_seconds:
        where = "old" if skew > 0 else "in the future"
        raise HmacError("timestamp_expired", f"the timestamp is {int(abs(skew))} s {where} (window {int(window_seconds)} s)")
    return sent


# --- requests -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Click:
    """One button of ours pressed (`kind`: decision | acknowledge | other)."""

    kind: str
    user_id: str
    user_name: str
    team_id: str | None
    channel_id: str | None
    message_ts: str | None
    message_text: str
    message_blocks: list[dict[str, Any]]
    action_id: str
    action_ts: str | None
    label: str | None
    value: dict[str, Any]
    key: str  # what identifies this click (a retry of the same payload has the same key)

    @property
    def incident_id(self) -> str | None:
        value = self.value.get("incident_id")
        return value if isinstance(value, str) and _INCIDENT_ID.match(value) else None


@dataclass(frozen=True)
class SlashCommand:
    user_id: str
    user_name: str
    channel_id: str | None
    command: str
    text: str
    team_id: str | None
    trigger_id: str | None


def _form(body: bytes) -> dict[str, str]:
    try:
        text = body.decode("ascii")  # form-encoding is ASCII; everything else is percent-encoded
        fields = parse_qs(text, keep_blank_values=True, strict_parsing=False, encoding="utf-8", errors="strict",
                          max_num_fields=_MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise SlackRequestError("malformed", "the body is not a UTF-8 application/x-www-form-urlencoded form") from None
    if any("\ud800" <= ch <= "\udfff" for values in fields.values() for value in values for ch in value):
        raise SlackRequestError("malformed", "the form holds a lone surrogate")
    return {key: values[0] for key, values in fields.items() if values}


def _text(value: Any, limit: int = 1000) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _parse_value(value: Any) -> dict[str, Any]:
    if not isinstance(value, str) or len(value) > 2000:
        return {}
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _click(payload: dict[str, Any], digest: str) -> Click | None:
    """Our button in a `block_actions` payload, or None (another interaction: nothing to do)."""
    if payload.get("type") != "block_actions":
        return None
    user = _dict(payload.get("user"))
    user_id = user.get("id")
    if not isinstance(user_id, str) or not _SLACK_ID.match(user_id):
        raise SlackRequestError("malformed", "the interaction has no user id")
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        raise SlackRequestError("malformed", "the interaction has no action")
    action = actions[0]
    block_id = action.get("block_id")
    action_id = _text(action.get("action_id"), 255) or ""
    if block_id == DECISION_BLOCK and action_id.startswith("decision:"):
        kind = "decision"
    elif block_id == ACK_BLOCK and action_id == "acknowledge":
        kind = "acknowledge"
    else:
        kind = "other"
    container = _dict(payload.get("container"))
    message = _dict(payload.get("message"))
    channel_id = _text(container.get("channel_id"), 64) or _text(_dict(payload.get("channel")).get("id"), 64)
    blocks = message.get("blocks")
    label = _text(_dict(action.get("text")).get("text"), 200)
    return Click(
        kind=kind,
        user_id=user_id,
        user_name=_text(user.get("username"), 100) or _text(user.get("name"), 100) or user_id,
        team_id=_text(user.get("team_id"), 64) or _text(_dict(payload.get("team")).get("id"), 64),
        channel_id=channel_id if channel_id and _SLACK_ID.match(channel_id) else None,
        message_ts=_text(container.get("message_ts"), 64) or _text(message.get("ts"), 64),
        message_text=_text(message.get("text"), 3000) or "",
        message_blocks=[b for b in blocks if isinstance(b, dict)][:50] if isinstance(blocks, list) else [],
        action_id=action_id,
        action_ts=_text(action.get("action_ts"), 64),
        label=label,
        value=_parse_value(action.get("value")),
        key=digest,
    )


def parse_request(body: bytes) -> Click | SlashCommand | None:
    """What a signed request asks: a click on one of our buttons, the slash command, or None (an
    interaction we do not handle). SlackRequestError when it is not a form Slack sends."""
    form = _form(body)
    if "payload" in form:
        try:
            payload = json.loads(form["payload"])
        except (ValueError, RecursionError):
            raise SlackRequestError("malformed", "payload is not JSON") from None
        if not isinstance(payload, dict):
            raise SlackRequestError("malformed", "payload is not a JSON object")
        user = _dict(payload.get("user")).get("id")
        actions = payload.get("actions") if isinstance(payload.get("actions"), list) else []
        first = actions[0] if actions and isinstance(actions[0], dict) else {}
        # A retry of this interaction carries the same user, action time, action and message.
        digest = hashlib.sha256(json.dumps(
            [user, first.get("action_ts"), first.get("action_id"), first.get("value"),
             _dict(payload.get("container")).get("message_ts")], default=str).encode()).hexdigest()[:32]
        return _click(payload, digest)
    if "command" in form:
        user_id = form.get("user_id", "")
        if not _SLACK_ID.match(user_id):
            raise SlackRequestError("malformed", "the command has no user_id")
        channel_id = form.get("channel_id") or None
        return SlashCommand(
            user_id=user_id,
            user_name=(form.get("user_name") or user_id)[:100],
            channel_id=channel_id if channel_id and _SLACK_ID.match(channel_id) else None,
            command=form["command"][:100],
            text=form.get("text", "").strip(),
            team_id=(form.get("team_id") or None),
            trigger_id=(form.get("trigger_id") or None),
        )
    raise SlackRequestError("malformed", "neither an interaction (payload) nor a slash command (command)")


@dataclass(frozen=True)
class Decision:
    """A decision button's value, checked."""

    incident_id: str
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    option: str


def decision_of(click: Click) -> Decision | None:
    value = click.value
    fields = {key: value.get(key) for key in ("dag_id", "run_id", "task_id", "option")}
    if click.incident_id is None or not all(isinstance(v, str) and 0 < len(v) <= 250 for v in fields.values()):
        return None
    if not all(_NAME.match(fields[key]) for key in ("dag_id", "task_id")) or not _NAME.match(fields["run_id"]):
        return None
    map_index = value.get("map_index", -1)
    if isinstance(map_index, bool) or not isinstance(map_index, int) or not -1 <= map_index < 100000:
        return None
    return Decision(click.incident_id, fields["dag_id"], fields["run_id"], fields["task_id"], map_index,
                    fields["option"])


# --- texts ----------------------------------------------------------------------------------------


def jst(moment: dt.datetime) -> str:
    return moment.astimezone(JST).strftime("%Y-%m-%d %H:%M")


def answered_line(name: str, label: str, at: dt.datetime) -> str:
    """mrkdwn: who chose what, when (JST). Outside text escaped (the phrase catalogue)."""
    return phrase("decision.answered_in_slack", name=name, option=label, at=jst(at))


def answered_blocks(blocks: list[dict[str, Any]], text: str, name: str, label: str,
                    at: dt.datetime) -> list[dict[str, Any]]:
    """The message's blocks with the decision buttons replaced by who chose what."""
    line = {"type": "context", "elements": [{"type": "mrkdwn", "text": answered_line(name, label, at)}]}
    kept = [block for block in blocks if not (block.get("type") == "actions" and block.get("block_id") == DECISION_BLOCK)]
    if not kept:
        kept = [{"type": "section", "text": {"type": "mrkdwn",
                                             "text": slack_escape(text[:2900]) or phrase("decision.placeholder")}}]
    return [*kept, line]


# The refusals people are told (ephemeral), by code: the texts are `refusal.<code>` in the phrase catalogue.
REFUSALS = ("unknown_user", "not_allowed", "already_answered", "answered_by", "expired", "not_waiting", "not_found",
            "bad_option", "forbidden", "unknown_incident", "stale", "invalid", "failed", "acknowledged_by")


def refusal(code: str, **values: Any) -> str:
    """The ephemeral text of a refusal (an unknown code: `failed`); values are escaped for Slack."""
    return phrase(f"refusal.{code if code in REFUSALS else 'failed'}", **values)


def usage() -> str:
    """How to use `/incident` (the reply to an empty or too long symptom)."""
    return phrase("command.usage")
