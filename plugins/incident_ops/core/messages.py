"""Messages people read: the runbook's Slack templates and the postmortem draft.

The texts live in `include/templates/` (Jinja, `StrictUndefined`: a missing value is an error, never
a blank). This module only prepares the values: times in Japan time (Asia/Tokyo, `HH:MM`), the
outage as `X時間Y分`, the incident channel's name, and mentions in one of two forms:

- ``mentions="slack"``: what the Slack API needs to ping (`<!channel>`, `<@U0TANAKA1>`); free text
  is escaped the way Slack requires (`&`, `<`, `>`), so a symptom cannot ping anyone by accident.
- ``mentions="plain"``: the runbook's own text (`@channel`, `@田中 太郎`), line for line.

Slack messages are returned without a trailing newline; the postmortem (a Markdown file) ends with one.
Every time is an input: nothing here reads the clock.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context

from incident_ops.core import narrative
from incident_ops.core.narrative import EVENT_LABELS
from incident_ops.core.runbook import Runbook

__all__ = [
    "BLANK",
    "Trusted",
    "EVENT_LABELS",
    "JST",
    "TEMPLATES_DIR",
    "Mentions",
    "channel_name",
    "format_duration_ja",
    "format_outage",
    "format_time_jst",
    "jinja_environment",
    "render",
    "render_ack_escalation",
    "render_declaration",
    "render_evidence_header",
    "render_failure_notice",
    "render_postmortem",
    "render_recovery",
    "markdown_escape",
    "slack_escape",
    "slack_to_plain",
    "trusted",
]

TEMPLATES_DIR = Path(__file__).resolve().parents[3] / "include" / "templates"
JST = ZoneInfo("Asia/Tokyo")
# What a person has to fill in, in the postmortem draft.
BLANK = "（記入してください）"
# A value the ledger did not record.
_NONE = "—"

Mentions = Literal["slack", "plain"]

# --- the Jinja environment ------------------------------------------------------------------------


class Trusted(str):
    """Markup the project built itself (a mention, a channel link, a line whose outside parts were
    escaped already): rendered as it is. Every other string value is escaped by the template."""


# Markdown's ASCII punctuation that makes links, images, HTML, emphasis, code and table cells.
_MARKDOWN_SPECIAL = frozenset("\\`*_[]<>!|~")


def slack_escape(text: Any) -> str:
    """Text from outside (a symptom, a title, a reporter) made inert for Slack: `<!here>`, `<@U…>`
    and `<https://…|…>` show as typed; Slack decodes these three entities and nothing else."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_SLACK_ANGLE = re.compile(r"<([^<>]*)>")


def _plain_angle(match: re.Match[str], people: Mapping[str, str]) -> str:
    inner = match.group(1)
    target, _, label = inner.partition("|")
    if target.startswith("!"):  # <!channel>, <!here>, <!subteam^S123|@team>
        return label or f"@{target[1:].split('^')[0]}"
    if target.startswith("@"):  # <@U123>: the person's name when known
        name = label or people.get(target[1:])
        return f"@{name}" if name else target
    if target.startswith("#"):  # <#C123|incident-20261201>
        return f"#{label}" if label else target
    return f"{label} ({target})" if label and label != target else target  # <https://…|label>


def slack_to_plain(text: Any, people: Mapping[str, str] | None = None) -> str:
    """Slack message text as plain text (the e-mail fallback): `<…>` links and mentions written out
    (`people`: Slack user id → name, for `<@U…>`), then Slack's three entities decoded — so text from
    outside, escaped for Slack, reads as typed."""
    known = people or {}
    plain = _SLACK_ANGLE.sub(lambda match: _plain_angle(match, known), str(text))
    return plain.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def markdown_escape(text: Any) -> str:
    """Text from outside made inert for Markdown: no link, image, HTML, emphasis, code or new cell."""
    return "".join(f"\\{char}" if char in _MARKDOWN_SPECIAL else char for char in str(text))


def trusted(text: str) -> Trusted:
    return Trusted(text)


@pass_context
def _finalize(context: Any, value: Any) -> Any:
    """Every `{{ value }}` of every template goes through here: the one place outside text is escaped
    (Slack templates: Slack's escaping; Markdown templates: Markdown's), unless it is `Trusted` or the
    message is rendered plain (the command line, e-mail)."""
    if not isinstance(value, str) or isinstance(value, Trusted):
        return value
    if str(context.name or "").endswith(".md.j2"):
        return markdown_escape(value)
    if context.get("__plain__"):
        return value
    return slack_escape(value)


@lru_cache(maxsize=1)
def jinja_environment() -> Environment:
    """The one environment every template is rendered with: values escaped by `_finalize`."""
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        finalize=_finalize,
    )


def render(template: str, /, *, plain: bool = False, **context: Any) -> str:
    """Render `include/templates/<template>` with `context`; a value the template uses but is missing
    raises `jinja2.UndefinedError`. String values are escaped for the template's kind (Slack text or
    Markdown) unless `Trusted`; `plain=True` (text for the command line or e-mail) escapes nothing."""
    return jinja_environment().get_template(template).render(**context, __plain__=plain)


def _message(template: str, /, *, mentions: str = "slack", **context: Any) -> str:
    return render(template, plain=mentions == "plain", **context).rstrip("\n")


# --- formatting -----------------------------------------------------------------------------------


def _aware(value: dt.datetime | str, what: str) -> dt.datetime:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{what}: not an ISO 8601 time: {value!r}") from None
    if not isinstance(value, dt.datetime):
        raise TypeError(f"{what}: expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what}: a time zone is required (naive datetime {value.isoformat()})")
    return value


def format_time_jst(moment: dt.datetime, tz: dt.tzinfo = JST) -> str:
    """`HH:MM` (24 h, zero-padded) in Japan time."""
    return _aware(moment, "time").astimezone(tz).strftime("%H:%M")


def _time_or_moment(moment: dt.datetime, since: dt.datetime, tz: dt.tzinfo = JST) -> str:
    """`HH:MM` on the day of `since`, else `MM/DD(曜) HH:MM` (Japan time)."""
    local = _aware(moment, "time").astimezone(tz)
    if local.date() == _aware(since, "time").astimezone(tz).date():
        return local.strftime("%H:%M")
    return f"{local:%m/%d}({'月火水木金土日'[local.weekday()]}) {local:%H:%M}"


def _format_datetime(moment: dt.datetime, tz: dt.tzinfo = JST) -> str:
    return _aware(moment, "time").astimezone(tz).strftime("%Y-%m-%d %H:%M")


def format_outage(duration: dt.timedelta) -> str:
    """`X時間Y分`, rounded down to the minute; days fold into hours (`26時間0分`)."""
    if duration < dt.timedelta(0):
        raise ValueError(f"an outage cannot be negative: {duration}")
    minutes = duration // dt.timedelta(minutes=1)
    return f"{minutes // 60}時間{minutes % 60}分"


def format_duration_ja(minutes: int) -> str:
    """A target as the runbook writes it: `15分`, `2時間`, `1時間30分`."""
    hours, rest = divmod(int(minutes), 60)
    if hours and rest:
        return f"{hours}時間{rest}分"
    return f"{hours}時間" if hours else f"{rest}分"


def channel_name(runbook: Runbook, detected_at: dt.datetime, taken: Collection[str] = ()) -> str:
    """The incident channel: `incident-YYYYMMDD` (the JST date of detection), then `-2`, `-3`, …
    while the name is in `taken` (names with or without `#`). Returned without `#`."""
    day = _aware(detected_at, "detected_at").astimezone(runbook.tz)
    base = runbook.slack.channel_prefix + day.strftime(runbook.slack.channel_date_format)
    used = {name.lstrip("#") for name in taken}
    if base not in used:
        return base
    suffix = 2
    while f"{base}-{suffix}" in used:
        suffix += 1
    return f"{base}-{suffix}"


# --- mentions and text ----------------------------------------------------------------------------


def _check_mentions(mentions: str) -> None:
    if mentions not in ("slack", "plain"):
        raise ValueError(f"mentions must be 'slack' or 'plain', got {mentions!r}")


def _line(value: Any, what: str, mentions: str) -> str:
    """A required one-line value: whitespace (newlines too) collapsed, escaped for Slack."""
    if value is None:
        raise ValueError(f"{what} is required")
    text = " ".join(str(value).split())
    if not text:
        raise ValueError(f"{what} is required (got an empty value)")
    return text  # escaped by the template (see _finalize)


def _everyone(mentions: str) -> str:
    return Trusted("<!channel>") if mentions == "slack" else "@channel"


def _field(person: Any, key: str) -> Any:
    if isinstance(person, Mapping):
        return person.get(key)
    return getattr(person, key, None)


def _mention(person: Any, mentions: str) -> str:
    if mentions == "slack":
        user_id = _field(person, "slack_user_id")
        if not user_id:
            raise ValueError(f"a Slack user id is needed to mention {_field(person, 'name')!r}")
        return Trusted(f"<@{user_id}>")
    name = _field(person, "name")
    if not name:
        raise ValueError(f"a name is needed to mention {person!r}")
    return f"@{name}"


def _mention_people(people: Iterable[Any], mentions: str) -> str:
    return Trusted(" ".join(_mention(person, mentions) for person in people))


def _channel_ref(channel: str, mentions: str, channel_id: str | None = None) -> str:
    name = channel.strip().lstrip("#")
    if not name:
        raise ValueError("channel is required")
    if mentions == "slack" and channel_id:
        return Trusted(f"<#{channel_id}|{slack_escape(name)}>")
    return f"#{name}"


# --- Slack messages -------------------------------------------------------------------------------


def render_declaration(
    runbook: Runbook,
    *,
    severity: str,
    detected_at: dt.datetime,
    symptom: str,
    impact: str,
    responders: Sequence[Mapping[str, Any]],
    channel: str,
    mentions: Mentions = "slack",
    channel_id: str | None = None,
) -> str:
    """インシデントの宣言 (P1/P2 only, `runbook.declare_severities`), exactly the runbook's template.

    `responders`: people with `name` and `slack_user_id` (dicts or runbook people), space-separated.
    `channel`: the incident channel's name (with or without `#`); with `channel_id` and Slack mentions
    it becomes a channel link.
    """
    _check_mentions(mentions)
    if severity not in runbook.declare_severities:
        raise ValueError(
            f"the runbook declares only {', '.join(runbook.declare_severities)} incidents in Slack, not {severity!r}"
        )
    if not responders:
        raise ValueError("at least one responder is required (対応者)")
    return _message(
        "declaration.txt.j2",
        mentions=mentions,
        everyone=_everyone(mentions),
        severity=severity,
        detected_time=format_time_jst(detected_at, runbook.tz),
        symptom=_line(symptom, "symptom", mentions),
        impact=_line(impact, "impact", mentions),
        responders=_mention_people(responders, mentions),
        channel=_channel_ref(channel, mentions, channel_id),
    )


def render_recovery(
    runbook: Runbook,
    *,
    detected_at: dt.datetime,
    recovered_at: dt.datetime,
    cause: str,
    actions: str,
    postmortem_required: bool = True,
    mentions: Mentions = "slack",
) -> str:
    """復旧宣言, exactly the runbook's template; 障害時間 runs from detection to recovery.

    今後の対応 promises a postmortem only where the runbook requires one (`postmortem.required_for`).
    """
    _check_mentions(mentions)
    detected = _aware(detected_at, "detected_at")
    recovered = _aware(recovered_at, "recovered_at")
    if recovered < detected:
        raise ValueError(f"recovered_at {recovered.isoformat()} is before detected_at {detected.isoformat()}")
    return _message(
        "recovery.txt.j2",
        mentions=mentions,
        everyone=_everyone(mentions),
        recovered_time=format_time_jst(recovered, runbook.tz),
        outage=format_outage(recovered - detected),
        cause=_line(cause, "cause", mentions),
        actions=_line(actions, "actions", mentions),
        next_steps="ポストモーテム実施予定" if postmortem_required else "経過観察（このレベルはポストモーテム不要）",
    )


def render_ack_escalation(
    runbook: Runbook,
    *,
    incident_id: str,
    severity: str,
    detected_at: dt.datetime,
    symptom: str,
    notify: Sequence[Mapping[str, Any]],
    channel: str,
    mentions: Mentions = "slack",
) -> str:
    """Nobody started the response within the severity's target: the escalation notice.

    `notify`: the people escalated to (mentioned on the first line); none → the whole channel.
    The deadline is `deadlines.response_deadline`: the severity's `response_start_minutes` after
    work may start (detection; P4 outside business hours: the next business day's 9:00, named).
    A deadline on another day than detection carries its date (`12/08(火) 09:00`).
    """
    from incident_ops.core.deadlines import response_window

    _check_mentions(mentions)
    detected = _aware(detected_at, "detected_at")
    window = response_window(runbook, severity, detected)
    return _message(
        "ack_escalation.txt.j2",
        mentions=mentions,
        to=_mention_people(notify, mentions) if notify else _everyone(mentions),
        severity=severity,
        detected_time=format_time_jst(detected, runbook.tz),
        target=format_duration_ja(window.target_minutes),
        deadline_time=_time_or_moment(window.deadline, detected, runbook.tz),
        work_from=_time_or_moment(window.work_from, detected, runbook.tz) if window.deferred else None,
        symptom=_line(symptom, "symptom", mentions),
        incident_id=_line(incident_id, "incident_id", mentions),
        channel=_channel_ref(channel, mentions),
    )


def render_evidence_header(
    runbook: Runbook,
    *,
    incident_id: str,
    at: dt.datetime,
    window_start: dt.datetime,
    window_end: dt.datetime,
    environment: str,
    service: str,
    suggested_scenario: str | None = None,
    highlights: Sequence[str] = (),
    mentions: Mentions = "slack",
) -> str:
    """The heading of the Phase 2 evidence summary: window, target, suggested scenario, highlights."""
    _check_mentions(mentions)
    if suggested_scenario:
        scenario = runbook.scenario(suggested_scenario)
        scenario_text = f"{scenario.label}（{scenario.remediation}）"
    else:
        scenario_text = "判定できません（担当者が選択してください）"
    return _message(
        "evidence_header.txt.j2",
        mentions=mentions,
        incident_id=_line(incident_id, "incident_id", mentions),
        checked_time=format_time_jst(at, runbook.tz),
        window_start_time=format_time_jst(window_start, runbook.tz),
        window_end_time=format_time_jst(window_end, runbook.tz),
        target=_line(f"{environment} / {service}", "environment/service", mentions),
        scenario=scenario_text,
        highlights=[_line(item, "highlight", mentions) for item in highlights],
    )


def render_failure_notice(
    runbook: Runbook,
    *,
    incident_id: str,
    step: str,
    error: str,
    at: dt.datetime,
    notify: Sequence[Mapping[str, Any]] = (),
    log_url: str | None = None,
    mentions: Mentions = "slack",
) -> str:
    """An automated step failed: hand over to people (mentioned; none → the whole channel)."""
    _check_mentions(mentions)
    return _message(
        "failure_notice.txt.j2",
        mentions=mentions,
        to=_mention_people(notify, mentions) if notify else _everyone(mentions),
        failed_time=format_time_jst(at, runbook.tz),
        step=_line(step, "step", mentions),
        error=_line(error, "error", mentions),
        incident_id=_line(incident_id, "incident_id", mentions),
        log_url=log_url or None,
    )


# --- postmortem -----------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    """A Markdown table cell: one line, `—` when empty (pipes are escaped by the template)."""
    if value is None:
        return _NONE
    text = " ".join(str(value).split())
    return text or _NONE


def _required(incident: Mapping[str, Any], key: str) -> Any:
    value = incident.get(key)
    if value is None or value == "":
        raise ValueError(f"the incident has no {key!r}; the postmortem needs it")
    return value


def _or_none(value: Any) -> str:
    return _NONE if value is None or value == "" else " ".join(str(value).split())


def _hours(value: float) -> str:
    return f"{value:g}"


def _catalogue_symptom(runbook: Runbook, symptom: Any) -> Any:
    for entry in runbook.triage.symptoms:
        if symptom in (entry.id, entry.label):
            return entry
    return None


def _impact_of(runbook: Runbook, incident: Mapping[str, Any]) -> str:
    if incident.get("impact"):
        return _or_none(incident["impact"])
    entry = _catalogue_symptom(runbook, incident.get("symptom"))
    return entry.impact if entry is not None else BLANK


def _scenario_text(runbook: Runbook, name: Any) -> str:
    if not name:
        return _NONE
    scenario = runbook.scenarios.get(str(name))
    return f"{scenario.label}（{scenario.remediation}）" if scenario else str(name)


def _acknowledged_text(runbook: Runbook, incident: Mapping[str, Any], detected: dt.datetime, severity: str) -> str:
    at = incident.get("acknowledged_at")
    if not at:
        return "記録なし"
    ack = _aware(at, "acknowledged_at")
    target = runbook.severities[severity].response_start_minutes  # type: ignore[index]
    waited = max(ack - detected, dt.timedelta(0))
    met = "目標内" if waited <= dt.timedelta(minutes=target) else "目標超過"
    who = f"（{incident['acknowledged_by']}）" if incident.get("acknowledged_by") else ""
    return (
        f"{_format_datetime(ack, runbook.tz)}{who}、発生から{format_outage(waited)}"
        f"（目標: {format_duration_ja(target)}以内、{met}）"
    )


def _timeline_rows(runbook: Runbook, timeline: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """One row per event in time order; a run of repeated detections (an alarm storm) is one row
    that counts them, so a thousand deliveries do not bury the timeline."""
    entries = [(_aware(event["at"], "timeline at"), index, event) for index, event in enumerate(timeline)]
    entries.sort(key=lambda item: (item[0], item[1]))
    rows: list[dict[str, str]] = []
    repeats: list[tuple[dt.datetime, Mapping[str, Any]]] = []

    def flush() -> None:
        if not repeats:
            return
        (first, event), last = repeats[0], repeats[-1][0]
        if len(repeats) == 1:
            message = narrative.event_sentence(runbook, event)
        else:
            span = format_time_jst(first, runbook.tz) + (f"〜{format_time_jst(last, runbook.tz)}" if last != first else "")
            actors = sorted({narrative.actor_label(e.get("actor")) for _, e in repeats})
            message = f"同じ事象を{len(repeats)}回再検知（{span}、{'、'.join(actors)}）"
        rows.append({"time": _format_datetime(first, runbook.tz), "kind": _cell(narrative.event_label("occurrence")),
                     "actor": _cell(narrative.actor_label(event.get("actor")) if len(repeats) == 1 else "監視"),
                     "message": _cell(message)})
        repeats.clear()

    for at, _, event in entries:
        if event.get("kind") == "occurrence":
            repeats.append((at, event))
            continue
        flush()
        rows.append(
            {
                "time": _format_datetime(at, runbook.tz),
                "kind": _cell(narrative.event_label(event.get("kind"))),
                "actor": _cell(narrative.actor_label(event.get("actor"))),
                "message": _cell(narrative.event_sentence(runbook, event)),
            }
        )
    flush()
    return rows


def _action_rows(runbook: Runbook, actions: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    rows = []
    for action in actions:
        if not (action.get("step") or action.get("action")):
            raise ValueError(f"an action needs 'step' or 'action': {dict(action)!r}")
        what, facts, outcome = narrative.action_parts(action)
        if action.get("approved_by"):
            approver = narrative.actor_label(action["approved_by"])
        elif action.get("approval") or action.get("approval_required"):
            approver = "未承認"
        else:
            approver = "不要"
        at = action.get("at")
        rows.append(
            {
                "time": _format_datetime(_aware(at, "action at"), runbook.tz) if at else _NONE,
                "step": _cell(what),
                "outcome": _cell("、".join([outcome, *facts])),
                "approver": _cell(approver),
            }
        )
    return rows


def render_postmortem(
    runbook: Runbook,
    *,
    incident: Mapping[str, Any],
    timeline: Sequence[Mapping[str, Any]],
    evidence: Mapping[str, Any],
    actions: Sequence[Mapping[str, Any]],
    charts: Sequence[str],
) -> str:
    """The postmortem draft (Markdown): a title, a summary block with the due date, then one `##`
    section per `runbook.postmortem.sections`, in order. Blanks for people are `（記入してください）`.

    `incident`: a ledger row (needs `id`, `severity`, `detected_at`, `recovered_at`; uses `title`,
    `symptom`, `scenario`, `service`, `environment`, `cause`, `acknowledged_at/by`, `slack_channel`,
    `occurrences`, `postmortem_due_at` when present — the due date defaults to recovery +
    `postmortem.due_after_hours`). `timeline`: ledger events (`at`, `kind`, `actor`, `message`).
    `evidence`: the Phase 2 findings (any JSON-like mapping). `actions`: the steps taken (`step` or
    `action`, `at`, `ok`, `changed`, `check_mode`, `message`, `approved_by`, `approval`).
    `charts`: image paths or URLs.
    """
    severity = str(_required(incident, "severity"))
    if severity not in runbook.severities:
        raise ValueError(f"unknown severity {severity!r}")
    level = runbook.severities[severity]  # type: ignore[index]
    detected = _aware(_required(incident, "detected_at"), "detected_at")
    recovered = _aware(_required(incident, "recovered_at"), "recovered_at")
    if recovered < detected:
        raise ValueError("recovered_at is before detected_at")
    due_hours = runbook.postmortem.due_after_hours
    due_at = incident.get("postmortem_due_at")
    due = _aware(due_at, "postmortem_due_at") if due_at else recovered + dt.timedelta(hours=due_hours)
    entry = _catalogue_symptom(runbook, incident.get("symptom"))
    symptom = entry.label if entry is not None else _or_none(incident.get("symptom"))
    title = incident.get("title") or (symptom if symptom != _NONE else _required(incident, "id"))
    channel = incident.get("slack_channel")
    return render(
        "postmortem.md.j2",
        blank=BLANK,
        sections=list(runbook.postmortem.sections),
        title=" ".join(str(title).split()),
        incident_id=_required(incident, "id"),
        severity=severity,
        severity_name=level.name,
        severity_definition=level.definition,
        detected=_format_datetime(detected, runbook.tz),
        recovered=_format_datetime(recovered, runbook.tz),
        outage=format_outage(recovered - detected),
        channel=f"#{str(channel).lstrip('#')}" if channel else _NONE,
        due=_format_datetime(due, runbook.tz),
        due_rule=(f"復旧から{_hours(due_hours)}時間以内" if due == recovered + dt.timedelta(hours=due_hours)
                  else f"復旧から{_hours(due_hours)}時間後が業務時間外のため翌営業日の終業時刻"),
        symptom=symptom,
        environment=_or_none(incident.get("environment")),
        service=_or_none(incident.get("service")),
        scenario=_scenario_text(runbook, incident.get("scenario")),
        acknowledged=_acknowledged_text(runbook, incident, detected, severity),
        occurrences=_or_none(incident.get("occurrences", 1)),
        impact=_impact_of(runbook, incident),
        cause=_or_none(incident.get("cause")),
        timeline=_timeline_rows(runbook, timeline),
        evidence=narrative.evidence_sections(runbook, evidence),
        # Our own relative paths (or URLs), percent-encoded for a link destination.
        charts=[Trusted(quote(str(chart), safe="/:._-~")) for chart in charts],
        actions=_action_rows(runbook, actions),
    )
