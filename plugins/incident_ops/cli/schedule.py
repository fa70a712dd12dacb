"""`python -m incident_ops handoff|reminders|postmortem-done`: the scheduled DAGs' rules by hand.

- `handoff --at INSTANT`: what the on-call handoff posts at that instant (the slot kind or "none",
  who is on call, the text). Read-only: nothing is posted or recorded.
- `reminders --at INSTANT`: which postmortem reminders are due then, and every pending postmortem.
  Read-only.
- `postmortem-done INCIDENT_ID`: mark the postmortem done in the ledger (the reminders stop).

The ledger is `INCIDENT_OPS_LEDGER_URL` (default: the SQLite file under state/). Who is on call
comes from the runbook's roster; `--pagerduty` asks the PagerDuty schedule too (PAGERDUTY_API_TOKEN,
PAGERDUTY_REST_URL, INCIDENT_OPS_CA_BUNDLE, as for the playbook command).
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from incident_ops.cli.main import command, parse_instant
from incident_ops.core.runbook import Runbook

__all__ = ["handoff", "postmortem_done", "reminders"]

Payload = dict[str, Any]


def _open_ledger() -> Any:
    # Imported here: SQLAlchemy is for the commands that read the ledger, not for the whole CLI.
    from incident_ops.core.ledger import Ledger

    return Ledger()


def _pager(runbook: Runbook, environment: str) -> Any:
    from incident_ops.services import IncidentServices, ServiceSettings

    return IncidentServices(ServiceSettings.from_env(runbook.environment(environment))).pager


def _instant_or_now(text: str | None) -> dt.datetime:
    # The command line is the edge of the system: the only place "now" is read.
    return parse_instant(text) if text else dt.datetime.now(dt.UTC)


def _person(person: dict[str, Any] | None) -> dict[str, Any] | None:
    if person is None:
        return None
    return {key: person.get(key) for key in ("id", "name", "slack_user_id", "pagerduty_user_id")}


# --- handoff --------------------------------------------------------------------------------------


def _configure_handoff(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--at", metavar="INSTANT", help="ISO-8601 with an offset (default: now)")
    parser.add_argument("--pagerduty", action="store_true", help="ask the PagerDuty schedule and contact methods too")
    parser.add_argument("--env", dest="environment", default="production", help="environment for --pagerduty")
    parser.add_argument("--plain", action="store_true", help="plain mentions (@名前) instead of Slack's <@U…>")


@command("handoff", "what the on-call handoff posts at an instant (オンコール交代)", _configure_handoff)
def handoff(args: argparse.Namespace, runbook: Runbook) -> tuple[Payload, str]:
    from incident_ops.core import handoff as rules

    at = _instant_or_now(args.at).astimezone(runbook.tz)
    ledger = _open_ledger()
    pager = _pager(runbook, args.environment) if args.pagerduty else None
    from incident_ops.flows.scheduled import plan_slot

    slots = rules.slots_at(runbook, at)
    mentions = "plain" if args.plain else "slack"
    posts = [
        plan_slot(runbook, slot, posted_at=at, ledger=ledger, pager=pager, use_pagerduty=args.pagerduty, mentions=mentions)
        for slot in slots
    ]
    following = rules.slots_between(runbook, at + dt.timedelta(minutes=1), at + dt.timedelta(days=15))
    next_slot = following[0].to_dict() if following else None
    if not posts:
        reason = rules.no_slot_reason(runbook, at)
        payload = {"at": at.isoformat(), "kind": "none", "reason": reason, "on_call": [], "rotation_engineer": None,
                   "outgoing": None, "incoming": None, "source": None, "text": None, "slots": [],
                   "already_posted": False, "next_slot": next_slot}
        return payload, f"{at:%Y-%m-%d %H:%M %Z}: none: {reason}"
    main = next((post for post in posts if post.slot.kind == "handoff"), posts[-1])
    payload = {
        "at": at.isoformat(),
        "kind": "+".join(post.slot.kind for post in posts),
        "reason": None,
        "on_call": [_person(person) for person in main.on_call],
        "rotation_engineer": _person(main.engineer.person),
        "outgoing": _person(main.outgoing.person) if main.outgoing else None,
        "incoming": _person(main.engineer.person) if main.slot.kind == "handoff" else None,
        "source": main.engineer.source,
        "text": "\n\n".join(post.text for post in posts),
        "slots": [post.to_dict() for post in posts],
        "already_posted": all(ledger.notice(post.slot.key) is not None for post in posts),
        "next_slot": next_slot,
    }
    header = f"{at:%Y-%m-%d %H:%M %Z}: {payload['kind']} → {runbook.contacts.channels['dev_team']}"
    lines = [header, "", payload["text"]]
    for post in posts:
        for people, text in post.warnings:
            lines += ["", f"--- direct message to {', '.join(str(p.get('name')) for p in people)} ---", text]
    return payload, "\n".join(lines)


# --- reminders ------------------------------------------------------------------------------------


def _configure_reminders(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--at", metavar="INSTANT", help="ISO-8601 with an offset (default: now)")


@command("reminders", "which postmortem reminders are due at an instant (ポストモーテム期限)", _configure_reminders)
def reminders(args: argparse.Namespace, runbook: Runbook) -> tuple[Payload, str]:
    from incident_ops.core.reminders import render_reminder
    from incident_ops.flows.scheduled import plan_reminders, reminder_targets

    at = _instant_or_now(args.at).astimezone(runbook.tz)
    due, overview = plan_reminders(runbook, _open_ledger(), at)
    payload = {
        "at": at.isoformat(),
        "due": [
            {**item.to_dict(), "targets": reminder_targets(runbook, item), "text": render_reminder(runbook, item, at)}
            for item in due
        ],
        "pending": overview,
    }
    lines = [f"{at:%Y-%m-%d %H:%M %Z}: {len(due)} reminder(s) due, {len(overview)} postmortem(s) pending"]
    for item in payload["due"]:
        lines.append(f"  - {item['incident_id']} {item['severity']} {item['stage']} → {', '.join(item['targets'])}")
    for row in overview:
        sent = ", ".join(row["sent"]) or "nothing"
        lines.append(f"  · {row['incident_id']} {row['severity']} reminder {row['reminder_at']}, due {row['due_at']}; sent: {sent}")
    return payload, "\n".join(lines)


# --- postmortem-done ------------------------------------------------------------------------------


def _configure_done(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("incident_id", metavar="INCIDENT_ID")
    parser.add_argument("--at", metavar="INSTANT", help="when it was done (default: now)")
    parser.add_argument("--path", default=None, help="where the postmortem is (file path or URL)")


@command("postmortem-done", "mark an incident's postmortem done (stops the reminders)", _configure_done)
def postmortem_done(args: argparse.Namespace, runbook: Runbook) -> tuple[Payload, str]:
    from incident_ops.flows.scheduled import mark_postmortem_done

    result = mark_postmortem_done(
        args.incident_id, at=_instant_or_now(args.at), path=args.path, runbook=runbook, ledger=_open_ledger(), notify=False
    )
    state = "marked done" if result["first"] else "was already done"
    return result, f"{args.incident_id}: postmortem {state} at {result['postmortem_done_at']}; reminders stop"
