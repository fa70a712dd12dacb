"""Task bodies of the scheduled DAGs (Airflow adapter): on-call handoff, postmortem reminders and
the weekly response report, plus marking a postmortem done.

The rules are in the pure core (`core.handoff`, `core.reminders`, `core.report`); here they meet the
ledger, Slack and PagerDuty. Every function takes the instant it acts for (the run's logical time)
and, for tests and the command line, the runbook, the ledger and the services (anything with
`.slack` and `.pager`); by default they come from the runbook file, `INCIDENT_OPS_LEDGER_URL` and
the Airflow connections. Nothing here imports Airflow at module level.

Idempotency: a handoff slot posts with the Slack idempotency key = the slot's key and is then
recorded as a ledger notice (a re-run finds the notice and posts nothing; a lost notice still finds
the Slack message by its key). A reminder stage posts with keys derived from the incident id and
the stage, then records the ledger event whose idempotency key is the stage.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from incident_ops.clients.pagerduty import PagerDutyError
from incident_ops.clients.slack import SlackError
from incident_ops.core import handoff as rules
from incident_ops.core import report as reporting
from incident_ops.core.calendar import ensure_aware
from incident_ops.core.ledger import IncidentNotFound, Ledger
from incident_ops.core.messages import render
from incident_ops.core.reminders import (
    DueReminder,
    due_reminders,
    postmortem_required,
    reminder_overview,
    render_reminder,
)
from incident_ops.core.runbook import Runbook

__all__ = [
    "DEFAULT_ENVIRONMENT",
    "incident_response_report",
    "mark_postmortem_done",
    "oncall_handoff",
    "pending_postmortems",
    "plan_handoff",
    "plan_reminders",
    "postmortem_reminders",
    "reminder_targets",
    "report_chart",
]

log = logging.getLogger(__name__)
DEFAULT_ENVIRONMENT = "production"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _runbook(runbook: Runbook | None) -> Runbook:
    if runbook is not None:
        return runbook
    from incident_ops.flows.incident import load

    return load()


def _services(runbook: Runbook, services: Any, environment: str | None) -> Any:
    if services is not None:
        return services
    from incident_ops.flows.incident import services_for

    name = environment or (DEFAULT_ENVIRONMENT if DEFAULT_ENVIRONMENT in runbook.environments else next(iter(runbook.environments)))
    return services_for(name)


def _slack(services: Any) -> Any:
    slack = getattr(services, "slack", None)
    if slack is None:
        raise RuntimeError("Slack is not configured: add the connection slack_api_default")
    return slack


def _aware(value: Any, what: str) -> dt.datetime:
    """An aware standard-library datetime from an ISO string or any datetime (Airflow hands out
    pendulum ones, whose arithmetic does not keep a zoneinfo time zone)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    value = ensure_aware(value, what)
    if type(value) is not dt.datetime:
        value = dt.datetime(value.year, value.month, value.day, value.hour, value.minute, value.second,
                            value.microsecond, tzinfo=dt.timezone(value.utcoffset()))
    return value


def _dev_team(runbook: Runbook) -> str:
    return runbook.contacts.channels["dev_team"]


# --- on-call handoff ----------------------------------------------------------------------------------


def pending_postmortems(runbook: Runbook, ledger: Ledger, at: dt.datetime) -> list[dict[str, Any]]:
    """Recovered incidents (before `at`) whose required postmortem is not done, earliest due first."""
    return [
        incident
        for incident in ledger.recovered_pending_postmortem()
        if postmortem_required(runbook, incident["severity"]) and _aware(incident["recovered_at"], "recovered_at") <= at
    ]


def _ask_pagerduty(pager: Any, call: str, *args: Any) -> tuple[Any, str | None]:
    if pager is None:
        return None, "PagerDuty の接続がありません（pagerduty_default）"
    try:
        return getattr(pager, call)(*args), None
    except PagerDutyError as exc:
        log.warning("PagerDuty %s failed: %s", call, exc)
        return None, str(exc)


def _assignee(runbook: Runbook, at: dt.datetime, pager: Any, use_pagerduty: bool) -> rules.Assignee:
    schedule = runbook.oncall.pagerduty_schedule_id
    if not (use_pagerduty and schedule):
        return rules.resolve_oncall(runbook, at, None)
    users, error = _ask_pagerduty(pager, "oncall_users", schedule, at)
    return rules.resolve_oncall(runbook, at, users, pagerduty_error=error)


def _alert(person: dict[str, Any], pager: Any, use_pagerduty: bool) -> rules.AlertCheck:
    if not use_pagerduty or not person.get("pagerduty_user_id"):
        return rules.alert_check(person, None)
    methods, error = _ask_pagerduty(pager, "push_contact_methods", person["pagerduty_user_id"])
    return rules.alert_check(person, methods, error=error)


def plan_slot(
    runbook: Runbook,
    slot: rules.Slot,
    *,
    posted_at: dt.datetime,
    ledger: Ledger | None,
    pager: Any = None,
    use_pagerduty: bool = True,
    mentions: rules.Mentions = "slack",
) -> rules.HandoffPost:
    """The post of one slot: who (PagerDuty or the roster), the alert check, and for the weekly
    handoff the open incidents and pending postmortems (as of `posted_at`)."""
    engineer = _assignee(runbook, slot.at, pager, use_pagerduty)
    if slot.kind == "business_hours":
        return rules.build_post(runbook, slot, posted_at=posted_at, engineer=engineer, mentions=mentions)
    alert = _alert(engineer.person, pager, use_pagerduty)
    if slot.kind == "off_hours":
        return rules.build_post(runbook, slot, posted_at=posted_at, engineer=engineer, alert=alert, mentions=mentions)
    outgoing = _assignee(runbook, slot.at - dt.timedelta(seconds=1), pager, use_pagerduty)
    incidents: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    if ledger is not None:
        incidents = [i for i in ledger.open_incidents() if _aware(i["detected_at"], "detected_at") <= posted_at]
        pending = pending_postmortems(runbook, ledger, posted_at)
    return rules.build_post(
        runbook,
        slot,
        posted_at=posted_at,
        engineer=engineer,
        outgoing=outgoing,
        alert=alert,
        open_incidents=incidents,
        pending_postmortems=pending,
        mentions=mentions,
    )


def plan_handoff(
    runbook: Runbook,
    at: dt.datetime,
    *,
    ledger: Ledger | None,
    now: dt.datetime | None = None,
    pager: Any = None,
    use_pagerduty: bool = True,
    catch_up: bool = True,
    mentions: rules.Mentions = "slack",
) -> list[rules.HandoffPost]:
    """What a run at `at` posts (posting at `now`, default `at`): the slot(s) of that minute and,
    with `catch_up`, the missed ones since the last posted slot. Already-posted slots are left out."""
    at = _aware(at, "at").astimezone(runbook.tz)
    now = _aware(now or at, "now")
    if ledger is None:
        slots = rules.slots_at(runbook, at)
    else:
        last = ledger.latest_notice(rules.KEY_PREFIX, before=at.replace(second=0, microsecond=0))
        slots = rules.slots_to_post(
            runbook,
            at,
            last_posted=_aware(last["at"], "at") if (last and catch_up) else None,
            is_posted=lambda key: ledger.notice(key) is not None,
        )
    return [
        plan_slot(runbook, slot, posted_at=now, ledger=ledger, pager=pager, use_pagerduty=use_pagerduty, mentions=mentions)
        for slot in slots
    ]


def oncall_handoff(
    at: dt.datetime,
    *,
    now: dt.datetime | None = None,
    runbook: Runbook | None = None,
    ledger: Ledger | None = None,
    services: Any = None,
    environment: str | None = None,
    use_pagerduty: bool = True,
) -> dict[str, Any]:
    """Post the slot(s) due at `at` to #dev-team (and the alert warnings to the people concerned),
    then record each slot in the ledger. Returns {"at", "kind", "reason", "posted": [...]}."""
    runbook = _runbook(runbook)
    at = _aware(at, "at").astimezone(runbook.tz)
    now = _aware(now or _now(), "now")
    ledger = ledger or Ledger()
    current = rules.slots_at(runbook, at)
    kind = "+".join(slot.kind for slot in current) or "none"
    services = _services(runbook, services, environment)
    pager = getattr(services, "pager", None)
    posts = plan_handoff(runbook, at, ledger=ledger, now=now, pager=pager, use_pagerduty=use_pagerduty)
    reason = None
    if not current:
        reason = rules.no_slot_reason(runbook, at)
    elif not posts or all(post.slot not in current for post in posts):
        reason = "この枠は投稿済みです"
    if not posts:
        return {"at": at.isoformat(), "kind": kind, "reason": reason, "posted": []}
    slack = _slack(services)
    channel = _dev_team(runbook)
    results = []
    for post in posts:
        sent = slack.post(channel, post.text, idempotency_key=post.slot.key)
        warned = []
        for people, text in post.warnings:
            for person in people:
                if person.get("slack_user_id"):
                    slack.post(person["slack_user_id"], text, idempotency_key=f"{post.slot.key}:alert:{person['slack_user_id']}")
                    warned.append(person.get("id") or person["slack_user_id"])
        data = {
            "posted_at": now.isoformat(),
            "late": post.late,
            "channel": sent.get("channel"),
            "ts": sent.get("ts"),
            "on_call": [p.get("id") or p.get("name") for p in post.on_call],
            "alert": post.alert.status if post.alert else None,
            "warned": warned,
        }
        recorded = ledger.record_notice(post.slot.key, post.slot.at, data)
        results.append({**post.slot.to_dict(), "late": post.late, "posted": bool(sent.get("posted")),
                        "recorded": recorded, "warned": warned, "on_call": data["on_call"]})
    return {"at": at.isoformat(), "kind": kind, "reason": reason, "posted": results}


# --- postmortem reminders -----------------------------------------------------------------------------


def _sent_keys(ledger: Ledger, incident_ids: Sequence[str]) -> dict[str, set[str]]:
    return {
        incident_id: {event["idempotency_key"] for event in ledger.events(incident_id) if event.get("idempotency_key")}
        for incident_id in incident_ids
    }


def plan_reminders(runbook: Runbook, ledger: Ledger, at: dt.datetime) -> tuple[list[DueReminder], list[dict[str, Any]]]:
    """(the stages due at `at` and not sent yet, an overview of every pending postmortem)."""
    at = _aware(at, "at")
    incidents = [i for i in ledger.recovered_pending_postmortem() if _aware(i["recovered_at"], "recovered_at") <= at]
    sent = _sent_keys(ledger, [i["id"] for i in incidents])
    return due_reminders(runbook, incidents, at, sent), reminder_overview(runbook, incidents, at, sent)


def reminder_targets(runbook: Runbook, reminder: DueReminder) -> list[str]:
    targets = [reminder.channel_id or (f"#{reminder.channel}" if reminder.channel else _dev_team(runbook))]
    if reminder.owner.get("slack_user_id"):
        targets.append(reminder.owner["slack_user_id"])
    lead = runbook.contacts.people.get("dev_lead")
    if reminder.stage == "overdue" and lead is not None:
        targets.append(lead.slack_user_id)
    return list(dict.fromkeys(targets))


# Slack answers for an incident channel that is gone: the reminder goes to #dev-team instead.
_CHANNEL_GONE = ("channel_not_found", "is_archived", "not_in_channel")


def _send_reminder(runbook: Runbook, ledger: Ledger, slack: Any, reminder: DueReminder, at: dt.datetime,
                   now: dt.datetime) -> dict[str, Any]:
    text = render_reminder(runbook, reminder, at)
    targets = reminder_targets(runbook, reminder)
    delivered = []
    for index, target in enumerate(targets):
        try:
            slack.post(target, text, idempotency_key=f"{reminder.incident_id}:{reminder.key}:{target}")
            delivered.append(target)
        except SlackError as exc:
            if index != 0 or exc.error not in _CHANNEL_GONE or target == _dev_team(runbook):
                raise
            log.warning("incident channel %s of %s is gone (%s): reminding in %s", target, reminder.incident_id,
                        exc.error, _dev_team(runbook))
            fallback = _dev_team(runbook)
            slack.post(fallback, text, idempotency_key=f"{reminder.incident_id}:{reminder.key}:{fallback}")
            delivered.append(fallback)
    label = "ポストモーテムのリマインドを送りました" if reminder.stage == "reminder" else "ポストモーテム期限超過を開発リードに連絡しました"
    ledger.record_event(
        reminder.incident_id,
        at=now,
        kind=reminder.key,
        actor="incident_ops",
        message=f"{label}（{', '.join(delivered)}）",
        data={"stage": reminder.stage, "stage_at": reminder.stage_at, "targets": delivered,
              "owner": reminder.owner.get("id") or reminder.owner.get("name")},
        idempotency_key=reminder.key,
    )
    return {**reminder.to_dict(), "targets": delivered}


def postmortem_reminders(
    at: dt.datetime,
    *,
    now: dt.datetime | None = None,
    runbook: Runbook | None = None,
    ledger: Ledger | None = None,
    services: Any = None,
    environment: str | None = None,
) -> dict[str, Any]:
    """Send the reminder stages due at `at`, each once (ledger event key = the stage). One incident's
    failure does not stop the others; the task then fails naming it (the retry sends only what is left)."""
    runbook = _runbook(runbook)
    at = _aware(at, "at").astimezone(runbook.tz)
    now = _aware(now or _now(), "now")
    ledger = ledger or Ledger()
    due, overview = plan_reminders(runbook, ledger, at)
    if not due:
        return {"at": at.isoformat(), "sent": [], "pending": len(overview)}
    slack = _slack(_services(runbook, services, environment))
    sent, failed = [], []
    for reminder in due:
        try:
            sent.append(_send_reminder(runbook, ledger, slack, reminder, at, now))
        except Exception as exc:  # one incident's failure must not hold back the others' reminders
            log.exception("postmortem %s of %s failed", reminder.stage, reminder.incident_id)
            failed.append(f"{reminder.incident_id} ({reminder.stage}): {exc}")
    if failed:
        raise RuntimeError(f"{len(failed)} postmortem reminder(s) failed (the others were sent): " + "; ".join(failed))
    return {"at": at.isoformat(), "sent": sent, "pending": len(overview)}


def mark_postmortem_done(
    incident_id: str,
    *,
    at: dt.datetime | None = None,
    path: str | None = None,
    by: str | None = None,
    runbook: Runbook | None = None,
    ledger: Ledger | None = None,
    services: Any = None,
    notify: bool = True,
) -> dict[str, Any]:
    """Record the finished postmortem (reminders stop) and say so in the incident channel."""
    runbook = _runbook(runbook)
    at = _aware(at or _now(), "at")
    ledger = ledger or Ledger()
    try:
        before = ledger.get(incident_id)
    except IncidentNotFound:
        raise ValueError(f"no incident {incident_id!r} in the ledger ({ledger!r})") from None
    record = ledger.mark_postmortem_done(incident_id, at, path or None)
    first = before.get("postmortem_done_at") is None
    posted = None
    if notify and first and record.get("slack_channel_id"):
        slack = getattr(_services(runbook, services, None), "slack", None)
        if slack is not None:
            text = render(
                "postmortem_done.txt.j2",
                incident_id=incident_id,
                path=record.get("postmortem_path") or "",
                by=" ".join(str(by).split()) if by else "",
            ).rstrip("\n")
            posted = slack.post(record["slack_channel_id"], text, idempotency_key=f"{incident_id}:postmortem_done")
    done_at = _aware(record["postmortem_done_at"], "postmortem_done_at")
    return {
        "incident_id": incident_id,
        "postmortem_done_at": done_at.astimezone(runbook.tz).isoformat(),
        "postmortem_path": record.get("postmortem_path"),
        "first": first,
        "announced": bool(posted and posted.get("posted")),
    }


# --- weekly report --------------------------------------------------------------------------------------


def report_chart(runbook: Runbook, report: reporting.Report) -> bytes:
    """A bar chart per severity: median minutes to declare / acknowledge / recover (log scale), the
    response-start target as a red mark, the maximum as a dot. Labels in English (no CJK font)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def minutes(value: dt.timedelta | None) -> float:
        return max(value.total_seconds() / 60, 0.5) if value is not None else 0.0

    figure, axis = plt.subplots(figsize=(9, 4.2))
    rows = report.severities
    positions = range(len(rows))
    width = 0.26
    series = (
        ("declare", "time to declare", "#8da0cb", lambda r: (r.declare_median, r.declare_max)),
        ("ack", "time to response start", "#fc8d62", lambda r: (r.ack_median, r.ack_max)),
        ("recover", "time to recover", "#66c2a5", lambda r: (r.recover_median, r.recover_max)),
    )
    for offset, (_, label, color, pick) in zip((-width, 0.0, width), series, strict=True):
        medians = [minutes(pick(row)[0]) for row in rows]
        maxima = [minutes(pick(row)[1]) for row in rows]
        xs = [p + offset for p in positions]
        axis.bar(xs, medians, width, label=f"{label} (median)", color=color)
        axis.scatter([x for x, m in zip(xs, maxima, strict=True) if m], [m for m in maxima if m],
                     marker="o", s=14, color="black", zorder=3)
    for position, row in zip(positions, rows, strict=True):
        target = row.ack_target.total_seconds() / 60
        axis.hlines(target, position - 1.5 * width, position + 1.5 * width, colors="red", linewidth=2, zorder=4)
    axis.plot([], [], color="red", linewidth=2, label="response-start target")
    axis.scatter([], [], marker="o", s=14, color="black", label="maximum")
    axis.set_yscale("log")
    axis.set_ylabel("minutes (log scale)")
    axis.set_xticks(list(positions), [f"{row.severity}\n{row.count} incident(s), {row.breaches} breach(es)" for row in rows],
                    fontsize=8)
    start, end = report.start, report.end - dt.timedelta(days=1)
    axis.set_title(f"Incident response {start:%Y-%m-%d} - {end:%Y-%m-%d} (JST)", fontsize=10)
    if not report.incidents:
        axis.text(0.5, 0.5, "no incidents in this period", ha="center", va="center", transform=axis.transAxes)
    axis.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def _reports_dir(out_dir: Path | str | None) -> Any:
    """`out_dir` (a folder or a URL), else `<artifacts URL>/reports`, as an ObjectStoragePath."""
    from incident_ops import artifacts

    return artifacts.open_url(out_dir) if out_dir is not None else artifacts.artifact("reports")


def incident_response_report(
    at: dt.datetime,
    *,
    runbook: Runbook | None = None,
    ledger: Ledger | None = None,
    services: Any = None,
    environment: str | None = None,
    out_dir: Path | str | None = None,
    post: bool = True,
) -> dict[str, Any]:
    """The report of the week before `at`: Markdown + CSV files and a chart under `out_dir` (a folder
    or URL; default `<artifacts URL>/reports`, i.e. state/reports/ on one machine), their URLs in
    `files`, and the summary with the chart in #dev-team (once per week)."""
    from incident_ops import artifacts

    runbook = _runbook(runbook)
    at = _aware(at, "at").astimezone(runbook.tz)
    ledger = ledger or Ledger()
    start, end = reporting.report_period(runbook, at)
    report = reporting.build_report(
        runbook,
        ledger.incidents_between(start, end),
        ledger.recovered_pending_postmortem(),
        start=start,
        end=end,
        at=at,
    )
    folder = _reports_dir(out_dir)
    chart_png = report_chart(runbook, report)
    files = {
        "markdown": artifacts.write_text(folder / f"{report.stem}.md", reporting.render_markdown(runbook, report)),
        "csv": artifacts.write_text(folder / f"{report.stem}-incidents.csv", reporting.incidents_csv(report)),
        "summary_csv": artifacts.write_text(folder / f"{report.stem}-summary.csv", reporting.summary_csv(report)),
        "chart": artifacts.write_bytes(folder / f"{report.stem}.png", chart_png),
    }
    result: dict[str, Any] = {**report.to_dict(), "files": files, "posted": None}
    if post:
        slack = _slack(_services(runbook, services, environment))
        channel = _dev_team(runbook)
        text = reporting.render_summary(runbook, report, files=[files["markdown"], files["csv"]])
        sent = slack.post(channel, text, idempotency_key=report.key)
        chart = slack.upload_image(
            channel,
            chart_png,
            filename=f"{report.stem}.png",
            title=f"障害対応レポート {report.start:%Y-%m-%d} 週",
            idempotency_key=f"{report.key}:chart",
        )
        result["posted"] = {"summary": bool(sent.get("posted")), "chart": bool(chart.get("posted")), "ts": sent.get("ts")}
    return result

