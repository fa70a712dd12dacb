"""オンコール体制: the weekly rotation, business hours vs off-hours, and when that changes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from incident_ops.core.oncall import (
    Handoff,
    business_hours_team,
    next_handoffs,
    oncall_at,
    rotation_engineer,
    rotation_week,
    transitions,
)
from incident_ops.core.runbook import Runbook, parse_runbook
from tests.conftest import runbook_data

JST = ZoneInfo("Asia/Tokyo")
TEAM = ["tanaka", "yamada", "ito", "watanabe", "dev_lead"]


def jst(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=JST)


def runbook_variant(change: Callable[[dict[str, Any]], None]) -> Runbook:
    data = runbook_data()
    change(data)
    return parse_runbook(data)


@pytest.mark.parametrize(
    ("instant", "engineer"),
    [
        (jst(2026, 1, 5, 10, 0), "tanaka"),  # rotation_start: roster[0]
        (jst(2026, 1, 12, 9, 59, 59), "tanaka"),
        (jst(2026, 1, 12, 10, 0), "yamada"),
        (jst(2026, 1, 19, 10, 0), "ito"),
        (jst(2026, 1, 26, 10, 0), "watanabe"),
        (jst(2026, 2, 2, 10, 0), "tanaka"),  # cyclic
        (jst(2026, 1, 5, 9, 59, 59), "watanabe"),  # before the start, the cycle runs backwards
        (jst(2026, 11, 23, 9, 59, 59), "yamada"),
        (jst(2026, 11, 23, 10, 0), "ito"),  # the handoff happens on a holiday too
        (dt.datetime(2026, 11, 23, 1, 0, tzinfo=dt.UTC), "ito"),  # 10:00 JST
        (dt.datetime(2026, 11, 23, 0, 59, tzinfo=dt.UTC), "yamada"),
    ],
)
def test_rotation_changes_weekly_at_the_handoff(runbook: Runbook, instant: dt.datetime, engineer: str) -> None:
    assert rotation_engineer(runbook, instant).id == engineer


def test_rotation_week_bounds(runbook: Runbook) -> None:
    assert rotation_week(runbook, jst(2026, 11, 25, 3, 0)) == (jst(2026, 11, 23, 10, 0), jst(2026, 11, 30, 10, 0))


def test_business_hours_team_is_the_roster_plus_the_dev_lead(runbook: Runbook) -> None:
    assert business_hours_team(runbook) == TEAM


def test_weekday_daytime_is_the_whole_team_until_18(runbook: Runbook) -> None:
    state = oncall_at(runbook, jst(2026, 11, 24, 10, 0))
    assert state.mode == "business_hours"
    assert state.on_call == TEAM
    assert state.rotation_engineer == "ito"
    assert state.until == jst(2026, 11, 24, 18, 0)


def test_weekday_night_is_the_rotation_engineer_until_9(runbook: Runbook) -> None:
    state = oncall_at(runbook, jst(2026, 11, 24, 20, 0))
    assert state.mode == "off_hours"
    assert state.on_call == ["ito"]
    assert state.until == jst(2026, 11, 25, 9, 0)


@pytest.mark.parametrize(
    ("instant", "mode"),
    [
        (jst(2026, 11, 24, 17, 59, 59), "business_hours"),
        (jst(2026, 11, 24, 18, 0, 0), "off_hours"),
        (jst(2026, 11, 24, 8, 59, 59), "off_hours"),
        (jst(2026, 11, 24, 9, 0, 0), "business_hours"),
        (jst(2026, 11, 3, 12, 0), "off_hours"),  # 文化の日
        (jst(2026, 11, 21, 12, 0), "off_hours"),  # Saturday
    ],
)
def test_mode_at_the_boundaries(runbook: Runbook, instant: dt.datetime, mode: str) -> None:
    assert oncall_at(runbook, instant).mode == mode


def test_weekend_runs_to_monday_9_when_the_handoff_is_in_business_hours(runbook: Runbook) -> None:
    state = oncall_at(runbook, jst(2026, 11, 13, 20, 0))
    assert state.on_call == ["tanaka"]
    assert state.until == jst(2026, 11, 16, 9, 0)


def test_a_handoff_on_a_holiday_ends_the_state(runbook: Runbook) -> None:
    # Monday 2026-11-23 is a holiday: the 10:00 handoff changes who is paged, off-hours.
    friday_night = oncall_at(runbook, jst(2026, 11, 20, 20, 0))
    assert friday_night.on_call == ["yamada"]
    assert friday_night.until == jst(2026, 11, 23, 10, 0)
    after = oncall_at(runbook, friday_night.until)
    assert after.mode == "off_hours"
    assert after.on_call == ["ito"]
    assert after.until == jst(2026, 11, 24, 9, 0)


def test_a_single_person_roster_never_hands_off_to_itself() -> None:
    solo = runbook_variant(lambda data: data["oncall"].update(roster=data["oncall"]["roster"][:1]))
    state = oncall_at(solo, jst(2026, 11, 20, 20, 0))
    assert state.on_call == ["tanaka"]
    assert state.until == jst(2026, 11, 24, 9, 0)


def test_state_is_reported_in_tokyo_time(runbook: Runbook) -> None:
    state = oncall_at(runbook, dt.datetime(2026, 11, 24, 1, 0, tzinfo=dt.UTC))
    assert state.at.utcoffset() == dt.timedelta(hours=9)
    assert state.to_dict()["until"] == "2026-11-24T18:00:00+09:00"


def test_next_handoffs(runbook: Runbook) -> None:
    assert next_handoffs(runbook, jst(2026, 11, 20, 20, 0), 3) == [
        Handoff(jst(2026, 11, 23, 10, 0), "yamada", "ito"),
        Handoff(jst(2026, 11, 30, 10, 0), "ito", "watanabe"),
        Handoff(jst(2026, 12, 7, 10, 0), "watanabe", "tanaka"),
    ]


def test_next_handoffs_are_strictly_after_the_instant(runbook: Runbook) -> None:
    assert next_handoffs(runbook, jst(2026, 11, 23, 10, 0), 1) == [Handoff(jst(2026, 11, 30, 10, 0), "ito", "watanabe")]
    assert next_handoffs(runbook, jst(2026, 11, 23, 10, 0), 0) == []
    with pytest.raises(ValueError, match="count"):
        next_handoffs(runbook, jst(2026, 11, 23, 10, 0), -1)


def test_transitions_skip_weekends_and_holidays(runbook: Runbook) -> None:
    found = transitions(runbook, jst(2026, 11, 20, 0, 0), jst(2026, 11, 25, 0, 0))
    assert [(t.at, t.mode) for t in found] == [
        (jst(2026, 11, 20, 9, 0), "business_hours"),
        (jst(2026, 11, 20, 18, 0), "off_hours"),
        (jst(2026, 11, 24, 9, 0), "business_hours"),
        (jst(2026, 11, 24, 18, 0), "off_hours"),
    ]
    assert found[0].on_call == TEAM
    assert found[1].on_call == ["yamada"]
    assert found[3].on_call == ["ito"]


def test_transitions_range_is_start_inclusive_end_exclusive(runbook: Runbook) -> None:
    found = transitions(runbook, jst(2026, 11, 24, 9, 0), jst(2026, 11, 24, 18, 0))
    assert [t.at for t in found] == [jst(2026, 11, 24, 9, 0)]
    with pytest.raises(ValueError, match="before start"):
        transitions(runbook, jst(2026, 11, 25), jst(2026, 11, 24))


def test_a_rotation_start_off_the_handoff_is_a_clear_error() -> None:
    broken = runbook_variant(lambda data: data["oncall"].update(rotation_start="2026-01-06T10:00:00+09:00"))
    with pytest.raises(ValueError, match="rotation_start"):
        rotation_engineer(broken, jst(2026, 11, 24, 10, 0))


def test_naive_instants_are_refused(runbook: Runbook) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        oncall_at(runbook, dt.datetime(2026, 11, 24, 10, 0))


def test_the_year_end_closure_is_the_rotation_engineers(runbook: Runbook) -> None:
    # 年末年始 (calendar.extra_days_off 12-29..01-03): from Monday 12/28 18:00 to Monday 1/4 9:00.
    for instant in (jst(2026, 12, 28, 18, 0), jst(2026, 12, 30, 10, 0), jst(2027, 1, 3, 23, 0)):
        state = oncall_at(runbook, instant)
        assert (state.mode, state.on_call, state.until) == ("off_hours", ["watanabe"], jst(2027, 1, 4, 9, 0))
    assert [t.at for t in transitions(runbook, jst(2026, 12, 28, 12), jst(2027, 1, 4, 12))] == [
        jst(2026, 12, 28, 18), jst(2027, 1, 4, 9),
    ]
