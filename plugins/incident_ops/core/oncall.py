"""Who is on call (オンコール体制): the weekly rotation and the business-hours team.

Weekdays 9:00–18:00 the whole development team (開発チーム全員: the roster plus
`oncall.business_hours_team_extra`) is on call; nights and days off, the rotation's engineer.
The rotation changes every 7 days at `oncall.handoff` (Asia/Tokyo): roster[0] takes the week that
starts at `oncall.rotation_start`, then roster[1], and so on cyclically (also backwards in time).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo

from incident_ops.core.calendar import (
    business_hours_end,
    business_hours_start,
    ensure_aware,
    is_business_hours,
    is_day_off,
    next_business_start,
)
from incident_ops.core.runbook import WEEKDAYS, RosterEntry, Runbook

__all__ = [
    "Handoff",
    "Mode",
    "OncallState",
    "Transition",
    "business_hours_team",
    "next_handoffs",
    "oncall_at",
    "rotation_engineer",
    "rotation_week",
    "transitions",
]

Mode = Literal["business_hours", "off_hours"]
_WEEK = dt.timedelta(days=7)


@dataclass(frozen=True)
class OncallState:
    """Who is on call at `at`, and until when that stays so."""

    at: dt.datetime
    mode: Mode
    on_call: list[str]
    rotation_engineer: str
    until: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = self.at.isoformat()
        data["until"] = self.until.isoformat()
        return data


@dataclass(frozen=True)
class Handoff:
    """A weekly rotation handoff: `outgoing` hands the pager to `incoming` at `at` (roster ids)."""

    at: dt.datetime
    outgoing: str
    incoming: str

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "outgoing": self.outgoing, "incoming": self.incoming}


@dataclass(frozen=True)
class Transition:
    """A 9:00 or 18:00 hand-over on a business day: from `at`, `mode` and `on_call` apply."""

    at: dt.datetime
    mode: Mode
    on_call: list[str]
    rotation_engineer: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = self.at.isoformat()
        return data


def _zone(runbook: Runbook) -> ZoneInfo:
    return ZoneInfo(runbook.calendar.timezone)


def _handoff_time(runbook: Runbook) -> dt.time:
    hours, minutes = runbook.oncall.handoff.time.split(":")
    return dt.time(int(hours), int(minutes))


def _anchor_date(runbook: Runbook) -> dt.date:
    """The local date of the first handoff; checked against the handoff weekday and time."""
    zone = _zone(runbook)
    start = runbook.oncall.rotation_start.astimezone(zone)
    handoff = runbook.oncall.handoff
    if WEEKDAYS[start.weekday()] != handoff.weekday or start.time() != _handoff_time(runbook):
        raise ValueError(
            f"oncall.rotation_start {start.isoformat()} is not a handoff "
            f"({handoff.weekday} {handoff.time} {runbook.calendar.timezone})"
        )
    return start.date()


def _handoff_at(runbook: Runbook, week: int) -> dt.datetime:
    """The start of rotation week `week` (0 = the week starting at rotation_start)."""
    day = _anchor_date(runbook) + dt.timedelta(days=7 * week)
    # Built on the local wall clock so the handoff stays at its local time across offset changes.
    return dt.datetime.combine(day, _handoff_time(runbook), tzinfo=_zone(runbook))


def _week_index(runbook: Runbook, instant: dt.datetime) -> int:
    local = ensure_aware(instant).astimezone(_zone(runbook))
    week = (local.date() - _anchor_date(runbook)).days // 7
    if local < _handoff_at(runbook, week):
        week -= 1
    return week


def _engineer(runbook: Runbook, week: int) -> RosterEntry:
    roster = runbook.oncall.roster
    return roster[week % len(roster)]


def rotation_engineer(runbook: Runbook, instant: dt.datetime) -> RosterEntry:
    """The rotation's engineer at `instant` (the one paged at night and on days off)."""
    return _engineer(runbook, _week_index(runbook, instant))


def rotation_week(runbook: Runbook, instant: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The [start, end) of the rotation week containing `instant`."""
    week = _week_index(runbook, instant)
    return _handoff_at(runbook, week), _handoff_at(runbook, week + 1)


def business_hours_team(runbook: Runbook) -> list[str]:
    """開発チーム全員: the roster ids, then `business_hours_team_extra`, without duplicates."""
    ids = [entry.id for entry in runbook.oncall.roster]
    return list(dict.fromkeys([*ids, *runbook.oncall.business_hours_team_extra]))


def oncall_at(runbook: Runbook, instant: dt.datetime) -> OncallState:
    """Who is on call at `instant`, and `until` the next instant at which that changes."""
    local = ensure_aware(instant).astimezone(_zone(runbook))
    week = _week_index(runbook, local)
    engineer = _engineer(runbook, week).id
    if is_business_hours(runbook, local):
        return OncallState(
            local, "business_hours", business_hours_team(runbook), engineer, business_hours_end(runbook, local)
        )
    until = next_business_start(runbook, local)
    # A handoff at night or on a day off changes who is paged, unless the roster has one person.
    handoff = _handoff_at(runbook, week + 1)
    if handoff < until and _engineer(runbook, week + 1).id != engineer:
        until = handoff
    return OncallState(local, "off_hours", [engineer], engineer, until)


def next_handoffs(runbook: Runbook, instant: dt.datetime, count: int) -> list[Handoff]:
    """The next `count` weekly rotation handoffs strictly after `instant`."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    week = _week_index(runbook, instant)
    return [
        Handoff(
            at=_handoff_at(runbook, week + step),
            outgoing=_engineer(runbook, week + step - 1).id,
            incoming=_engineer(runbook, week + step).id,
        )
        for step in range(1, count + 1)
    ]


def transitions(runbook: Runbook, start: dt.datetime, end: dt.datetime) -> list[Transition]:
    """The business-hours start/end hand-overs in [start, end) on business days (days off have none)."""
    zone = _zone(runbook)
    start = ensure_aware(start, "start").astimezone(zone)
    end = ensure_aware(end, "end").astimezone(zone)
    if end < start:
        raise ValueError(f"end {end.isoformat()} is before start {start.isoformat()}")
    team = business_hours_team(runbook)
    found: list[Transition] = []
    day = start.date()
    while day <= end.date():
        if not is_day_off(runbook, day):
            opens = business_hours_start(runbook, day)
            closes = business_hours_end(runbook, opens)
            for at, mode in ((opens, "business_hours"), (closes, "off_hours")):
                if start <= at < end:
                    engineer = rotation_engineer(runbook, at).id
                    on_call = team if mode == "business_hours" else [engineer]
                    found.append(Transition(at, mode, list(on_call), engineer))
        day += dt.timedelta(days=1)
    return found
