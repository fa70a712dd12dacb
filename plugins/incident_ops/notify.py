"""Send the planned notices through their channels, with the e-mail fallback (pure of Airflow).

A notice is a dict (what `incident_ops.core.escalation.Notification.to_dict()` gives, plus the text):

    {"target": "oncall" | "dev_team" | <person id>, "via": "pagerduty" | "phone" | "slack" | "email",
     "recipients": [{"id", "name", "slack_user_id", "pagerduty_user_id", "email"}, ...] or ids/addresses,
     "channel": "#dev-team" | <channel id> | None, "text": str, "dedup_key": <incident id>,
     "severity": "P1".."P4", "summary": str, "idempotency_key": optional}

- slack: post `text` to `channel` (else `default_channel`, the incident channel; else a direct message
  to each recipient), mentioning the recipients; idempotent by key (see IncidentSlack.post).
- pagerduty: an Events API v2 trigger with dedup_key = the incident id (PagerDuty pages the on-call).
  `payload.severity` follows the incident's severity (P1 critical, P2 error, P3 warning, P4 info);
  a notice with `urgency` ("low": the P3 night page) sends `URGENCY_SEVERITY[urgency]` instead
  (low → warning, high → error): PagerDuty opens warning/info as low-urgency incidents when the
  service uses the alert severity for urgency (no phone call), critical/error as high-urgency.
- phone: a PagerDuty responder request for each recipient on the incident's PagerDuty incident;
  PagerDuty calls with the person's high-urgency rules (runbook: P1 → CTO 電話).
- email: `email_sender(to, subject, body)`.

One channel failing never stops the others. When Slack and PagerDuty both failed (every Slack,
PagerDuty and phone notice that was attempted failed, and at least one was attempted), the message
text goes by e-mail to the emergency contact (緊急連絡先).

**Exactly once per (channel, target).** `delivered` maps the key of each notice that went out on an
earlier attempt (`notice_key`: `<incident>:<stage>:<target>:<via>`) to its result: it is not sent
again, and counts as delivered in the report (`"earlier": True`). `on_delivered(key, result)` is
called right after each notice went out (before the next is tried), so the caller records it
durably and a retry of the whole task sends only what failed. The fallback e-mail has its own key
(`fallback_key`), recorded and skipped the same way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "URGENCY_SEVERITY",
    "DeliveryReport",
    "EmailSender",
    "deliver",
    "notice_key",
]

log = logging.getLogger(__name__)

_SLACK = "slack"
_PAGERDUTY = ("pagerduty", "phone")
# A notice's PagerDuty urgency → the Events API v2 payload.severity that gives it.
URGENCY_SEVERITY = {"low": "warning", "high": "error"}


class EmailSender(Protocol):
    def __call__(self, to: list[str], subject: str, body: str) -> Any: ...


@dataclass(frozen=True)
class DeliveryReport:
    results: list[dict[str, Any]]
    email_fallback_used: bool = False
    email_fallback_ok: bool | None = None
    email_fallback_error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Every notice went out."""
        return all(result["ok"] for result in self.results)

    def missing(self, required: Sequence[tuple[Any, Any]] | set[tuple[Any, Any]]) -> list[dict[str, Any]]:
        """The results of the `required` (target, via) pairs that did not go out."""
        wanted = set(required)
        return [result for result in self.results if (result["target"], result["via"]) in wanted and not result["ok"]]

    @property
    def reached_anyone(self) -> bool:
        """At least one notice, or the fallback e-mail, went out."""
        return any(result["ok"] for result in self.results) or bool(self.email_fallback_ok)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def notice_key(notice: Mapping[str, Any]) -> str:
    """The Slack idempotency key of a notice: the incident id, the target, the channel and the text."""
    if notice.get("idempotency_key"):
        return str(notice["idempotency_key"])
    dedup_key = notice.get("dedup_key")
    if not dedup_key:
        raise ValueError(f"notice for {notice.get('target')!r} has no dedup_key (the incident id)")
    digest = hashlib.sha256(str(notice.get("text", "")).encode("utf-8")).hexdigest()[:10]
    return f"{dedup_key}:{notice.get('target')}:{notice.get('via')}:{digest}"


def _ids(recipients: Sequence[Any] | None, key: str) -> list[str]:
    """Recipient ids of one kind: dicts give `key`, plain strings are taken as they are."""
    found: list[str] = []
    for recipient in recipients or []:
        value = recipient.get(key) if isinstance(recipient, Mapping) else recipient
        if value and value not in found:
            found.append(str(value))
    return found


def _with_mentions(text: str, user_ids: Sequence[str]) -> str:
    mentions = [f"<@{uid}>" for uid in user_ids if f"<@{uid}>" not in text]
    return f"{' '.join(mentions)} {text}" if mentions else text


def _send_slack(slack: Any, notice: Mapping[str, Any], default_channel: str | None) -> dict[str, Any]:
    text = str(notice.get("text") or "")
    user_ids = _ids(notice.get("recipients"), "slack_user_id")
    key = notice_key(notice)
    channel = notice.get("channel") or default_channel
    if channel:
        outcome: dict[str, Any] = {}
        if user_ids:
            # A mention notifies members only: bring the people into the channel first.
            try:
                slack.invite(str(channel), user_ids)
            except Exception as exc:  # noqa: BLE001 - the post below still mentions them
                outcome["invite_error"] = f"{type(exc).__name__}: {exc}"
        posted = slack.post(str(channel), _with_mentions(text, user_ids), idempotency_key=key)
        outcome.update({"channel": posted.get("channel"), "ts": posted.get("ts"), "posted": posted.get("posted")})
        return outcome
    if not user_ids:
        raise ValueError("a Slack notice needs a channel or recipients with a slack_user_id")
    sent = [slack.post(uid, text, idempotency_key=key) for uid in user_ids]
    return {"direct_messages": [item.get("channel") for item in sent]}


def _send_pagerduty(pager: Any, notice: Mapping[str, Any], source: str) -> dict[str, Any]:
    dedup_key = notice.get("dedup_key")
    if not dedup_key:
        raise ValueError("a PagerDuty notice needs a dedup_key (the incident id)")
    summary = str(notice.get("summary") or notice.get("text") or dedup_key)
    details = {"target": notice.get("target"), "text": notice.get("text")}
    severity = str(notice.get("severity") or "P1")
    urgency = notice.get("urgency")
    if urgency:
        if urgency not in URGENCY_SEVERITY:
            raise ValueError(f"unknown urgency {urgency!r}; expected {' or '.join(URGENCY_SEVERITY)}")
        severity = URGENCY_SEVERITY[urgency]
    key = pager.trigger(str(dedup_key), summary, severity, source, custom_details=details)
    result: dict[str, Any] = {"dedup_key": key}
    if urgency:
        result["urgency"] = urgency
    return result


def _send_phone(
    pager: Any,
    notice: Mapping[str, Any],
    source: str,
    requester_id: str | None,
    incident_lookups: int,
    lookup_interval: float,
    sleep: Callable[[float], None],
) -> dict[str, Any]:
    user_ids = _ids(notice.get("recipients"), "pagerduty_user_id")
    if not user_ids:
        raise ValueError("a phone notice needs recipients with a pagerduty_user_id")
    if not requester_id:
        raise ValueError("a phone notice needs pd_requester_id (the PagerDuty user asking for responders)")
    dedup_key = str(notice.get("dedup_key") or "")
    incident = pager.incident_for_dedup_key(dedup_key) if dedup_key else None
    if incident is None:
        # No PagerDuty incident yet: open it (same dedup key, so no duplicate) and wait for it.
        _send_pagerduty(pager, notice, source)
        incident = pager.wait_for_incident(dedup_key, attempts=incident_lookups, interval=lookup_interval, sleep=sleep)
    message = str(notice.get("text") or notice.get("summary") or dedup_key)
    asked: list[str] = []
    failed: list[str] = []
    for user_id in user_ids:
        try:
            pager.add_responder(incident["id"], user_id, message, requester_id)
        except Exception as exc:  # noqa: BLE001 - ask the others, then report
            failed.append(f"{user_id}: {exc}")
        else:
            asked.append(user_id)
    if failed:
        done = f" (asked: {', '.join(asked)})" if asked else ""
        raise RuntimeError(f"responder request failed for {'; '.join(failed)}{done}")
    return {"incident_id": incident["id"], "responders": asked}


def _slack_names(notices: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Slack user id → name of the notices' recipients (the mentions of their text, in an e-mail)."""
    return {
        str(person["slack_user_id"]): str(person["name"])
        for notice in notices for person in (notice.get("recipients") or [])
        if isinstance(person, Mapping) and person.get("slack_user_id") and person.get("name")
    }


def _fallback_body(notices: Sequence[Mapping[str, Any]], results: Sequence[Mapping[str, Any]]) -> str:
    from incident_ops.core.messages import slack_to_plain

    people = _slack_names(notices)
    texts: list[str] = []
    for notice in notices:
        text = slack_to_plain(notice.get("text") or notice.get("summary") or "", people)
        if text and text not in texts:
            texts.append(text)
    from incident_ops.core.narrative import channel_label, target_label

    failures = "\n".join(
        f"- {target_label(result['target'])}（{channel_label(result['via'])}）: {result['error']}"
        for result in results if not result["ok"]
    )
    return (
        "Slack と PagerDuty の両方に通知できなかったため、緊急連絡先にメールで送ります。\n\n"
        + "\n\n----\n\n".join(texts)
        + f"\n\n失敗した通知:\n{failures}\n"
    )


def deliver(
    notifications: Sequence[Mapping[str, Any]],
    *,
    slack: Any | None = None,
    pager: Any | None = None,
    email_sender: EmailSender | Callable[[list[str], str, str], Any] | None = None,
    emergency_email: str,
    default_channel: str | None = None,
    pd_requester_id: str | None = None,
    source: str = "incident_ops",
    incident_lookups: int = 10,
    lookup_interval: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    delivered: Mapping[str, Mapping[str, Any]] | None = None,
    on_delivered: Callable[[str, dict[str, Any]], None] | None = None,
    fallback_key: str | None = None,
) -> DeliveryReport:
    """Send each notice; returns the report [{target, via, ok, error, ...}] and the fallback outcome.

    `slack` is an IncidentSlack, `pager` an IncidentPager (anything with the same methods works).
    `delivered`, `on_delivered`, `fallback_key`: see the module doc (exactly once per channel).
    """
    delivered = delivered or {}
    results: list[dict[str, Any]] = []

    def went_out(key: str, result: dict[str, Any]) -> None:
        if on_delivered is None:
            return
        try:
            on_delivered(key, result)
        except Exception as exc:  # noqa: BLE001 - it went out; a retry may repeat it, the others still go
            log.error("notice %s went out but could not be recorded: %s", key, exc, exc_info=True)
            result["record_error"] = f"{type(exc).__name__}: {exc}"

    for notice in notifications:
        via, target = notice.get("via"), notice.get("target")
        key = notice_key(notice) if notice.get("idempotency_key") or notice.get("dedup_key") else None
        if key is not None and key in delivered:
            results.append({**delivered[key], "target": target, "via": via, "ok": True, "error": None, "earlier": True})
            continue
        result: dict[str, Any] = {"target": target, "via": via, "ok": False, "error": None}
        try:
            if via == _SLACK:
                if slack is None:
                    raise RuntimeError("no Slack client configured")
                result.update(_send_slack(slack, notice, default_channel))
            elif via == "pagerduty":
                if pager is None:
                    raise RuntimeError("no PagerDuty client configured")
                result.update(_send_pagerduty(pager, notice, source))
            elif via == "phone":
                if pager is None:
                    raise RuntimeError("no PagerDuty client configured")
                result.update(
                    _send_phone(pager, notice, source, pd_requester_id, incident_lookups, lookup_interval, sleep)
                )
            elif via == "email":
                if email_sender is None:
                    raise RuntimeError("no e-mail sender configured")
                to = _ids(notice.get("recipients"), "email")
                if not to:
                    raise ValueError("an e-mail notice needs recipients with an email address")
                subject = str(notice.get("summary") or f"[{notice.get('severity')}] {notice.get('dedup_key')}")
                from incident_ops.core.messages import slack_to_plain

                email_sender(to, subject, slack_to_plain(notice.get("text") or "", _slack_names([notice])))
                result["to"] = to
            else:
                raise ValueError(f"unknown channel {via!r}; expected slack, pagerduty, phone or email")
        except Exception as exc:  # noqa: BLE001 - one channel's failure must not stop the others
            log.error("notice to %s via %s failed: %s", target, via, exc, exc_info=True)
            result["error"] = f"{type(exc).__name__}: {exc}"
        else:
            result["ok"] = True
            if key is not None:
                went_out(key, result)
        results.append(result)

    realtime = [result for result in results if result["via"] == _SLACK or result["via"] in _PAGERDUTY]
    need_fallback = bool(realtime) and not any(result["ok"] for result in realtime)
    if not need_fallback:
        return DeliveryReport(results)
    if fallback_key is not None and fallback_key in delivered:
        return DeliveryReport(results, True, True, None, {**delivered[fallback_key], "earlier": True})

    first = notifications[0] if notifications else {}
    severity = first.get("severity") or ""
    summary = first.get("summary") or first.get("dedup_key") or "incident"
    subject = f"[{severity}] {summary} (Slack/PagerDuty 通知失敗)".strip()
    body = _fallback_body([n for n in notifications if n.get("via") == _SLACK or n.get("via") in _PAGERDUTY], results)
    if email_sender is None:
        error = "Slack and PagerDuty both failed and no e-mail sender is configured"
        log.error(error)
        return DeliveryReport(results, True, False, error)
    try:
        email_sender([emergency_email], subject, body)
    except Exception as exc:  # noqa: BLE001 - reported, not raised: the caller decides what a total failure means
        log.error("emergency e-mail to %s failed: %s", emergency_email, exc, exc_info=True)
        return DeliveryReport(results, True, False, f"{type(exc).__name__}: {exc}")
    log.warning("Slack and PagerDuty both failed; the notices went by e-mail to %s", emergency_email)
    details = {"email_to": emergency_email, "email_subject": subject}
    if fallback_key is not None:
        went_out(fallback_key, details)
    return DeliveryReport(results, True, True, None, details)
