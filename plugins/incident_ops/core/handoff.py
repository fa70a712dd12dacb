"""On-call hand-over notices (オンコール体制): which slot an instant is, who is on call, the text.

Three kinds of slot, in the calendar's time zone (Asia/Tokyo):

- ``handoff``: the weekly rotation handoff (`oncall.handoff`, Monday 10:00), every week, holidays
  included: who hands the pager to whom, the open incidents, the pending postmortems and the
  week's off-hours windows;
- ``business_hours``: business hours begin (9:00 on a business day): the whole team is on call;
- ``off_hours``: business hours end (18:00 on a business day): the rotation's engineer is on call.

Days off (weekends, Japanese public holidays, `calendar.extra_days_off` such as 年末年始 12/29–1/3)
have no 9:00/18:00 slot.
Each slot has a key (`oncall:<kind>:<local time>`): the Slack idempotency key and the ledger
notice, so a slot is posted once. A slot posted after `LATE_GRACE` says so in its first line.

Who is on call comes from the PagerDuty schedule when the caller asked it (`pagerduty_users`),
otherwise from the runbook's roster; when the two disagree the message says so. Nothing here reads
the clock or the network: every time and every answer from PagerDuty is an input.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import holidays

from incident_ops.core.calendar import (
    ensure_aware,
    extra_day_off_name,
    is_business_hours,
    is_day_off,
    next_business_start,
    off_hours_windows,
    public_holiday_name,
)
from incident_ops.core.messages import Trusted, render, slack_escape
from incident_ops.core.oncall import business_hours_team, next_handoffs, rotation_engineer, rotation_week, transitions
from incident_ops.core.runbook import WEEKDAYS, Runbook

__all__ = [
    "KEY_PREFIX",
    "LATE_GRACE",
    "MAX_CATCH_UP",
    "SLOT_KINDS",
    "AlertCheck",
    "Assignee",
    "HandoffPost",
    "Slot",
    "alert_check",
    "build_post",
    "find_person",
    "format_day",
    "format_moment",
    "holiday_name",
    "incident_line",
    "late_note",
    "mention",
    "no_slot_reason",
    "person_dict",
    "postmortem_line",
    "render_alert_warning",
    "resolve_oncall",
    "slots_at",
    "slots_between",
    "slots_to_post",
    "timetable_crons",
]

SlotKind = Literal["handoff", "business_hours", "off_hours"]
Mentions = Literal["slack", "plain"]
SLOT_KINDS: tuple[str, ...] = ("off_hours", "business_hours", "handoff")
KEY_PREFIX = "oncall:"
# Posted later than this after the slot: the message says it is late (遅延配信).
LATE_GRACE = dt.timedelta(minutes=15)
# How far back a run looks for slots that were never posted (one rotation week).
MAX_CATCH_UP = dt.timedelta(days=7)
_MINUTE = dt.timedelta(minutes=1)
_WEEKDAY_JA = "月火水木金土日"
_CRON_DOW = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}


# --- slots ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """One hand-over instant and its kind."""

    at: dt.datetime
    kind: SlotKind

    @property
    def key(self) -> str:
        """`oncall:<kind>:<local ISO time to the minute>`: the Slack idempotency key and the ledger notice."""
        return f"{KEY_PREFIX}{self.kind}:{self.at.isoformat(timespec='minutes')}"

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "kind": self.kind, "key": self.key}


def _hhmm(value: str) -> tuple[int, int]:
    hours, minutes = value.split(":")
    return int(hours), int(minutes)


def timetable_crons(runbook: Runbook) -> list[str]:
    """Cron expressions (in the calendar's zone) that fire at every slot: the weekly handoff and the
    start/end of business hours on business days (days off among them are skipped by the task)."""
    days = ",".join(str(_CRON_DOW[day]) for day in WEEKDAYS if day in runbook.calendar.business_days)
    hh, mm = _hhmm(runbook.oncall.handoff.time)
    crons = [f"{mm} {hh} * * {_CRON_DOW[runbook.oncall.handoff.weekday]}"]
    for clock in (runbook.calendar.business_hours.start, runbook.calendar.business_hours.end):
        hh, mm = _hhmm(clock)
        crons.append(f"{mm} {hh} * * {days}")
    return list(dict.fromkeys(crons))


def _local(runbook: Runbook, instant: dt.datetime, name: str = "instant") -> dt.datetime:
    instant = ensure_aware(instant, name)
    if type(instant) is not dt.datetime:  # a subclass (pendulum): plain datetime arithmetic from here on
        instant = dt.datetime.fromisoformat(instant.isoformat())
    return instant.astimezone(runbook.tz)


def _minute(runbook: Runbook, instant: dt.datetime) -> dt.datetime:
    return _local(runbook, instant).replace(second=0, microsecond=0)


def slots_between(runbook: Runbook, start: dt.datetime, end: dt.datetime) -> list[Slot]:
    """Every slot in [start, end), in time order (at one instant: off_hours, business_hours, handoff)."""
    start, end = _local(runbook, start, "start"), _local(runbook, end, "end")
    if end <= start:
        return []
    found = [Slot(item.at, item.mode) for item in transitions(runbook, start, end)]
    weeks = (end - start).days // 7 + 2
    for handoff in next_handoffs(runbook, start - dt.timedelta(microseconds=1), weeks):
        if start <= handoff.at < end:
            found.append(Slot(handoff.at, "handoff"))
    return sorted(found, key=lambda slot: (slot.at, SLOT_KINDS.index(slot.kind)))


def slots_at(runbook: Runbook, instant: dt.datetime) -> list[Slot]:
    """The slots of the minute `instant` falls in (usually none or one)."""
    minute = _minute(runbook, instant)
    return slots_between(runbook, minute, minute + _MINUTE)


def slots_to_post(
    runbook: Runbook,
    instant: dt.datetime,
    *,
    last_posted: dt.datetime | None,
    is_posted: Callable[[str], bool],
    max_catch_up: dt.timedelta = MAX_CATCH_UP,
) -> list[Slot]:
    """What a run at `instant` posts: the slots of that minute, and the slots missed since the last
    one posted (`last_posted`, at most `max_catch_up` back), minus those `is_posted` already.

    With nothing posted yet (a first run), only the current minute counts: a new deployment does
    not post a week of old hand-overs.
    """
    minute = _minute(runbook, instant)
    candidates = slots_at(runbook, minute)
    if last_posted is not None:
        lower = max(_local(runbook, last_posted, "last_posted") + _MINUTE, minute - max_catch_up)
        candidates = [*slots_between(runbook, lower, minute), *candidates]
    unique = list(dict.fromkeys(candidates))
    return [slot for slot in unique if not is_posted(slot.key)]


def no_slot_reason(runbook: Runbook, instant: dt.datetime) -> str:
    """Why there is no slot at `instant` (a day off at 9:00/18:00, or simply not a slot time)."""
    local = _minute(runbook, instant)
    clocks = {runbook.calendar.business_hours.start, runbook.calendar.business_hours.end}
    if local.strftime("%H:%M") in clocks and is_day_off(runbook, local):
        return f"{format_day(runbook, local)} は休日のため交代の通知はありません"
    following = slots_between(runbook, local + _MINUTE, local + dt.timedelta(days=15))
    upcoming = f"（次は {format_moment(runbook, following[0].at)} {_KIND_LABELS[following[0].kind]}）" if following else ""
    return f"{format_moment(runbook, local)} は交代の時刻ではありません{upcoming}"


def late_note(runbook: Runbook, slot: Slot, posted_at: dt.datetime, grace: dt.timedelta = LATE_GRACE) -> str | None:
    """`（遅延配信: 本来 09:00）` (with the date when it was another day) when posted after `grace`."""
    posted = _local(runbook, posted_at, "posted_at")
    if posted - slot.at <= grace:
        return None
    when = slot.at.strftime("%H:%M") if posted.date() == slot.at.date() else format_moment(runbook, slot.at)
    return f"（遅延配信: 本来 {when}）"


# --- formatting -------------------------------------------------------------------------------------

_KIND_LABELS: dict[str, str] = {
    "handoff": "オンコール交代",
    "business_hours": "業務時間開始",
    "off_hours": "業務時間終了・オンコール開始",
}


@lru_cache(maxsize=32)
def _holiday_names_ja(country: str, year: int) -> Mapping[dt.date, str]:
    try:
        return dict(holidays.country_holidays(country, years=year, language="ja").items())
    except (NotImplementedError, ValueError):
        return {}


def holiday_name(runbook: Runbook, day: dt.date) -> str | None:
    """The public holiday's name on `day`, in Japanese when the holidays package has it."""
    name = public_holiday_name(runbook, day)
    if name is None:
        return None
    return _holiday_names_ja(runbook.calendar.public_holidays or "", day.year).get(day, name)


def format_day(runbook: Runbook, instant: dt.datetime | dt.date) -> str:
    """`11/03(火・文化の日)`, `12/30(水・年末年始)`, `11/07(土)`: month/day, weekday and the public
    holiday's name, else the company day off's (`休業日` when unnamed)."""
    day = instant.astimezone(runbook.tz).date() if isinstance(instant, dt.datetime) else instant
    holiday = holiday_name(runbook, day) or extra_day_off_name(runbook, day)
    extra = f"・{holiday}" if holiday else ""
    return f"{day.month:02d}/{day.day:02d}({_WEEKDAY_JA[day.weekday()]}{extra})"


def format_moment(runbook: Runbook, instant: dt.datetime) -> str:
    """`11/02(月) 10:00` in the calendar's zone."""
    local = _local(runbook, instant)
    return f"{local.month:02d}/{local.day:02d}({_WEEKDAY_JA[local.weekday()]}) {local:%H:%M}"


def _escape(text: str, mentions: Mentions) -> str:
    text = " ".join(str(text).split())
    return slack_escape(text) if mentions == "slack" else text


def _built(text: str, mentions: Mentions) -> str:
    """A line this module built, its outside parts escaped already: rendered as it is."""
    return Trusted(text) if mentions == "slack" else text


def mention(person: Mapping[str, Any], mentions: Mentions = "slack") -> str:
    """`<@U…>` (Slack) or `@名前` (plain); a person without a Slack id is named, not pinged."""
    if mentions == "slack" and person.get("slack_user_id"):
        return Trusted(f"<@{person['slack_user_id']}>")
    return f"@{person.get('name') or person.get('id')}"


def _window_text(runbook: Runbook, start: dt.datetime, end: dt.datetime) -> str:
    days_off = []
    day = start.date()
    while day <= end.date():
        whole_day = dt.datetime.combine(day, dt.time(), tzinfo=runbook.tz)
        if is_day_off(runbook, day) and start <= whole_day and whole_day + dt.timedelta(days=1) <= end:
            days_off.append(format_day(runbook, day))
        day += dt.timedelta(days=1)
    suffix = f"（休日: {'、'.join(days_off)}）" if days_off else ""
    return f"{format_moment(runbook, start)} 〜 {format_moment(runbook, end)}{suffix}"


# --- people -----------------------------------------------------------------------------------------


def person_dict(person: Any, person_id: str | None = None) -> dict[str, Any]:
    """A runbook person (roster entry or contact) as a plain dict."""
    return {
        "id": getattr(person, "id", None) or person_id,
        "name": person.name,
        "slack_user_id": person.slack_user_id,
        "pagerduty_user_id": person.pagerduty_user_id,
        "email": person.email,
    }


def _people(runbook: Runbook) -> Iterable[dict[str, Any]]:
    for entry in runbook.oncall.roster:
        yield person_dict(entry)
    for key, person in runbook.contacts.people.items():
        yield person_dict(person, key)


def find_person(
    runbook: Runbook, *, ref: str | None = None, pagerduty_user_id: str | None = None, email: str | None = None
) -> dict[str, Any] | None:
    """A roster member or contact by PagerDuty user id, e-mail, or `ref` (id, name, Slack id, e-mail)."""
    for person in _people(runbook):
        if pagerduty_user_id and person["pagerduty_user_id"] == pagerduty_user_id:
            return person
        if email and person["email"] and person["email"].lower() == email.lower():
            return person
        if ref and ref.strip() in {person["id"], person["name"], person["slack_user_id"], person["email"]}:
            return person
    if ref:
        # "田中" or "田中太郎" for "田中 太郎": compare without spaces.
        compact = "".join(ref.split())
        for person in _people(runbook):
            if compact and compact == "".join(person["name"].split()):
                return person
    return None


@dataclass(frozen=True)
class Assignee:
    """Who is on call per the source of truth, and per the roster; `note` says what a person must know."""

    person: dict[str, Any]
    roster: dict[str, Any]
    source: Literal["pagerduty", "roster"]
    disagrees: bool = False
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "person": dict(self.person),
            "roster": dict(self.roster),
            "source": self.source,
            "disagrees": self.disagrees,
            "note": self.note,
        }


def resolve_oncall(
    runbook: Runbook,
    instant: dt.datetime,
    pagerduty_users: Sequence[Mapping[str, Any]] | None,
    *,
    pagerduty_error: str | None = None,
) -> Assignee:
    """The rotation's engineer at `instant`: PagerDuty's first on-call user when `pagerduty_users`
    is given (the source of truth), else the roster's. None means PagerDuty was not asked
    (`pagerduty_error` says why, when it failed)."""
    roster = person_dict(rotation_engineer(runbook, instant))
    if pagerduty_users is None:
        note = None
        if pagerduty_error:
            note = f"PagerDuty のスケジュールを確認できませんでした（{pagerduty_error}）。当番表の担当者を表示しています。"
        return Assignee(person=roster, roster=roster, source="roster", note=note)
    if not pagerduty_users:
        note = "PagerDuty のスケジュールに担当者がいません。当番表の担当者を表示しています。スケジュールを確認してください。"
        return Assignee(person=roster, roster=roster, source="roster", disagrees=True, note=note)
    first = pagerduty_users[0]
    person = find_person(runbook, pagerduty_user_id=first.get("id"), email=first.get("email"))
    if person is None:
        person = {
            "id": None,
            "name": first.get("name") or first.get("id") or "不明",
            "slack_user_id": None,
            "pagerduty_user_id": first.get("id"),
            "email": first.get("email"),
        }
    disagrees = person["id"] != roster["id"]
    note = None
    if disagrees:
        note = (
            f"PagerDuty のスケジュール（{person['name']}）と当番表（{roster['name']}）が一致しません。"
            "PagerDuty を正として扱います。どちらかを直してください。"
        )
    return Assignee(person=person, roster=roster, source="pagerduty", disagrees=disagrees, note=note)


@dataclass(frozen=True)
class AlertCheck:
    """Can the engineer receive alerts (a push-notification contact method: the PagerDuty app)?"""

    status: Literal["ok", "no_push", "unknown", "unchecked"]
    text: str

    @property
    def warn(self) -> bool:
        return self.status == "no_push"

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "text": self.text}


def alert_check(
    person: Mapping[str, Any], push_methods: Sequence[Mapping[str, Any]] | None, *, error: str | None = None
) -> AlertCheck:
    """`push_methods`: the user's push-notification contact methods from PagerDuty (None: not asked)."""
    if not person.get("pagerduty_user_id"):
        return AlertCheck("unknown", "PagerDuty のユーザーが登録されていないため確認できません")
    if error:
        return AlertCheck("unknown", f"PagerDuty に問い合わせできず確認できませんでした（{error}）")
    if push_methods is None:
        return AlertCheck("unchecked", "未確認（PagerDuty を参照していません）")
    if not push_methods:
        return AlertCheck("no_push", "PagerDuty アプリ（プッシュ通知）が登録されていません。アラートを受信できない状態です")
    return AlertCheck("ok", "PagerDuty アプリ登録済み（アラートを受信できます）")


# --- the posts --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HandoffPost:
    """What a slot posts to #dev-team (`text`), and the direct warnings (`warnings`: (people, text)).

    `engineer`: the rotation's engineer from the slot on (for a handoff, the incoming one);
    `outgoing`: for a handoff, the one handing over; `on_call`: who answers from the slot on."""

    slot: Slot
    text: str
    on_call: list[dict[str, Any]]
    late: bool
    engineer: Assignee
    outgoing: Assignee | None = None
    alert: AlertCheck | None = None
    warnings: list[tuple[list[dict[str, Any]], str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.slot.to_dict(),
            "late": self.late,
            "on_call": [dict(person) for person in self.on_call],
            "engineer": self.engineer.to_dict(),
            "outgoing": self.outgoing.to_dict() if self.outgoing else None,
            "alert": self.alert.to_dict() if self.alert else None,
            "text": self.text,
            "warnings": [
                {"to": [p.get("id") or p.get("name") for p in people], "text": text} for people, text in self.warnings
            ],
        }


def _aware(value: Any, what: str) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return ensure_aware(value, what)


def _channel_ref(incident: Mapping[str, Any], mentions: Mentions) -> str:
    name = (incident.get("slack_channel") or "").lstrip("#")
    if not name:
        return ""
    if mentions == "slack" and incident.get("slack_channel_id"):
        return f" <#{incident['slack_channel_id']}|{slack_escape(name)}>"
    return f" #{name}"


_STATUS_LABELS = {"open": "対応中", "mitigated": "緩和済み", "recovered": "復旧済み", "closed": "クローズ"}


def incident_line(runbook: Runbook, incident: Mapping[str, Any], mentions: Mentions = "slack") -> str:
    """`INC-… P1 ログインできない（11/01(日) 03:00 発生、対応中） #incident-20261101`."""
    title = _escape(incident.get("title") or incident.get("symptom") or incident.get("fingerprint") or "—", mentions)
    detected = format_moment(runbook, _aware(incident["detected_at"], "detected_at"))
    status = _STATUS_LABELS.get(str(incident.get("status")), str(incident.get("status")))
    return _built(f"{incident['id']} {incident['severity']} {title}（{detected} 発生、{status}）"
                  f"{_channel_ref(incident, mentions)}", mentions)


def postmortem_line(runbook: Runbook, incident: Mapping[str, Any], at: dt.datetime, mentions: Mentions = "slack") -> str:
    """`INC-… P2 診断機能が動作しない: 期限 11/04(水) 12:00（期限超過）`."""
    title = _escape(incident.get("title") or incident.get("symptom") or "—", mentions)
    due_at = incident.get("postmortem_due_at")
    if due_at:
        due = _aware(due_at, "postmortem_due_at")
        late = "（期限超過）" if due <= at else ""
        when = f"期限 {format_moment(runbook, due)}{late}"
    else:
        when = "期限未設定"
    return _built(f"{incident['id']} {incident['severity']} {title}: {when}{_channel_ref(incident, mentions)}", mentions)


def _header(runbook: Runbook, slot: Slot, posted_at: dt.datetime) -> tuple[str, bool]:
    note = late_note(runbook, slot, posted_at)
    return f"【{_KIND_LABELS[slot.kind]}】{format_moment(runbook, slot.at)}{note or ''}", note is not None


def _notes(*items: Assignee | None) -> list[str]:
    return [item.note for item in items if item is not None and item.note]


def build_post(
    runbook: Runbook,
    slot: Slot,
    *,
    posted_at: dt.datetime,
    engineer: Assignee,
    outgoing: Assignee | None = None,
    alert: AlertCheck | None = None,
    open_incidents: Sequence[Mapping[str, Any]] = (),
    pending_postmortems: Sequence[Mapping[str, Any]] = (),
    mentions: Mentions = "slack",
) -> HandoffPost:
    """The post of `slot`. `engineer`: the rotation's engineer from the slot on (for a handoff, the
    incoming one; `outgoing` the one handing over). `alert`: the engineer's alert check."""
    posted_at = _local(runbook, posted_at, "posted_at")
    header, late = _header(runbook, slot, posted_at)
    lead = runbook.contacts.people.get("dev_lead")
    person = engineer.person
    warnings: list[tuple[list[dict[str, Any]], str]] = []
    if alert is not None and alert.warn:
        to = [person, *([person_dict(lead, "dev_lead")] if lead else [])]
        warnings.append((to, render_alert_warning(runbook, slot, person, to, mentions=mentions)))
    if slot.kind == "handoff":
        if outgoing is None:
            raise ValueError("a handoff post needs the outgoing engineer")
        start, end = rotation_week(runbook, slot.at)
        windows = off_hours_windows(runbook, start, end)
        text = render(
            "handoff.txt.j2",
            plain=mentions == "plain",
            header=header,
            outgoing=mention(outgoing.person, mentions),
            incoming=mention(person, mentions),
            period=f"{format_moment(runbook, start)} 〜 {format_moment(runbook, end)}",
            source=_source_text(engineer),
            notes=_notes(outgoing, engineer),
            alert=alert.text if alert else "未確認",
            alert_warning=alert is not None and alert.warn,
            lead=mention(person_dict(lead, "dev_lead"), mentions) if lead else "",
            open_incidents=[incident_line(runbook, item, mentions) for item in open_incidents],
            pending_postmortems=[postmortem_line(runbook, item, posted_at, mentions) for item in pending_postmortems],
            windows=[_window_text(runbook, a, b) for a, b in windows],
            business_hours=f"{runbook.calendar.business_hours.start}〜{runbook.calendar.business_hours.end}",
        ).rstrip("\n")
        # Who answers right now: at a handoff in business hours still the whole team.
        on_call = _team(runbook) if is_business_hours(runbook, slot.at) else [person]
        return HandoffPost(slot, text, on_call, late, engineer, outgoing, alert, warnings)
    if slot.kind == "business_hours":
        team = _team(runbook)
        ends = dt.datetime.combine(slot.at.date(), dt.time(*_hhmm(runbook.calendar.business_hours.end)), tzinfo=runbook.tz)
        text = render(
            "transition.txt.j2",
            plain=mentions == "plain",
            header=header,
            mode="business_hours",
            team="、".join(member["name"] for member in team),
            until=format_moment(runbook, ends),
            engineer=mention(person, "plain"),
            source=_source_text(engineer),
            notes=_notes(engineer),
            alert=alert.text if alert else "",
            alert_warning=False,
            lead="",
            window="",
            handoff="",
        ).rstrip("\n")
        return HandoffPost(slot, text, team, late, engineer, None, alert, warnings)
    until = next_business_start(runbook, slot.at)
    handoff = ""
    following = next_handoffs(runbook, slot.at, 1)[0]
    if following.at < until:
        incoming = person_dict(runbook.person(following.incoming))
        handoff = f"{format_moment(runbook, following.at)} に {mention(incoming, 'plain')} へ交代します（週次ローテーション）"
    text = render(
        "transition.txt.j2",
        plain=mentions == "plain",
        header=header,
        mode="off_hours",
        team="",
        until=format_moment(runbook, until),
        engineer=mention(person, mentions),
        source=_source_text(engineer),
        notes=_notes(engineer),
        alert=alert.text if alert else "未確認",
        alert_warning=alert is not None and alert.warn,
        lead=mention(person_dict(lead, "dev_lead"), mentions) if lead else "",
        window=_window_text(runbook, slot.at, until),
        handoff=handoff,
    ).rstrip("\n")
    return HandoffPost(slot, text, [person], late, engineer, None, alert, warnings)


def _team(runbook: Runbook) -> list[dict[str, Any]]:
    return [person_dict(runbook.person(member), member) for member in business_hours_team(runbook)]


def _source_text(assignee: Assignee) -> str:
    return "PagerDuty のスケジュール" if assignee.source == "pagerduty" else "当番表（runbook）"


def render_alert_warning(
    runbook: Runbook,
    slot: Slot,
    person: Mapping[str, Any],
    to: Sequence[Mapping[str, Any]],
    *,
    mentions: Mentions = "slack",
) -> str:
    """The direct message to the engineer and the dev lead: the engineer cannot receive alerts."""
    return render(
        "alert_warning.txt.j2",
        plain=mentions == "plain",
        to=_built(" ".join(mention(p, mentions) for p in to), mentions),
        engineer=mention(person, mentions),
        since=format_moment(runbook, slot.at),
    ).rstrip("\n")
