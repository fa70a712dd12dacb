"""The runbook schema's calendar and timing settings: company days off (dates, ranges, 年末年始 every
year), the P3 night page, the postmortem due alignment and the phase time boxes — each with its
default and an error that names the key."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from incident_ops.core.runbook import DEFAULT_RUNBOOK_PATH, DayOff, Runbook, RunbookError, parse_runbook
from tests.conftest import runbook_data


def data_with(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    data = runbook_data()
    change(data)
    return data


def variant(change: Callable[[dict[str, Any]], None]) -> Runbook:
    return parse_runbook(data_with(change))


def days_off(*entries: Any) -> Runbook:
    return variant(lambda data: data["calendar"].update(extra_days_off=list(entries)))


def refused(change: Callable[[dict[str, Any]], None]) -> RunbookError:
    with pytest.raises(RunbookError) as raised:
        parse_runbook(data_with(change))
    return raised.value


# --- what the project ships --------------------------------------------------------------------------


def test_the_shipped_runbook_closes_for_the_year_end(runbook: Runbook) -> None:
    assert runbook.calendar.extra_days_off == [DayOff(first=(12, 29), last=(1, 3), name="年末年始")]
    assert runbook.escalation.p3_off_hours_pagerduty.enabled is True
    assert runbook.escalation.p3_off_hours_pagerduty.urgency == "low"
    assert runbook.postmortem.align == "next_business_day_end"
    assert (runbook.phase_time_boxes.detect, runbook.phase_time_boxes.investigate) == (15, 60)


def test_the_yaml_documents_the_p3_night_page_as_our_choice() -> None:
    text = DEFAULT_RUNBOOK_PATH.read_text(encoding="utf-8")
    before = text.split("p3_off_hours_pagerduty:")[0].rsplit("unacknowledged:", 1)[1]
    assert "Our choice" in before and "warning" in before and "no phone call" in before


def test_defaults_when_the_settings_are_left_out() -> None:
    def strip(data: dict[str, Any]) -> None:
        data["escalation"].pop("p3_off_hours_pagerduty")
        data["postmortem"].pop("align")
        data.pop("phase_time_boxes")
        data["calendar"].pop("extra_days_off")

    runbook = variant(strip)
    assert runbook.calendar.extra_days_off == []
    assert runbook.escalation.p3_off_hours_pagerduty.enabled is True  # on by default
    assert runbook.escalation.p3_off_hours_pagerduty.urgency == "low"
    assert runbook.postmortem.align == "next_business_day_end"
    assert (runbook.phase_time_boxes.detect, runbook.phase_time_boxes.investigate) == (15, 60)


# --- calendar.extra_days_off: the accepted forms ------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (dt.date(2026, 5, 7), DayOff(first=dt.date(2026, 5, 7), last=dt.date(2026, 5, 7))),  # YAML date
        ("2026-05-07", DayOff(first=dt.date(2026, 5, 7), last=dt.date(2026, 5, 7))),
        ("2026-12-28..2027-01-04", DayOff(first=dt.date(2026, 12, 28), last=dt.date(2027, 1, 4))),
        ("12-31", DayOff(first=(12, 31), last=(12, 31))),
        ("12-29..01-03", DayOff(first=(12, 29), last=(1, 3))),
        ("08-13 .. 08-15", DayOff(first=(8, 13), last=(8, 15))),
        ({"from": "12-29", "to": "01-03"}, DayOff(first=(12, 29), last=(1, 3))),
        ({"from": "12-29", "to": "01-03", "name": " 年末年始 "}, DayOff(first=(12, 29), last=(1, 3), name="年末年始")),
        ({"from": dt.date(2027, 5, 6), "to": "2027-05-07", "name": "GW"},
         DayOff(first=dt.date(2027, 5, 6), last=dt.date(2027, 5, 7), name="GW")),
        ("02-29", DayOff(first=(2, 29), last=(2, 29))),
    ],
)
def test_day_off_forms(entry: Any, expected: DayOff) -> None:
    assert days_off(entry).calendar.extra_days_off == [expected]


def test_unquoted_yaml_dates_and_month_days_parse() -> None:
    text = DEFAULT_RUNBOOK_PATH.read_text(encoding="utf-8").replace(
        '    - {from: "12-29", to: "01-03", name: 年末年始}', "    - 2026-05-07\n    - 12-29..01-03"
    )
    runbook = parse_runbook(yaml.safe_load(text))
    assert [entry.first for entry in runbook.calendar.extra_days_off] == [dt.date(2026, 5, 7), (12, 29)]


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("12-32..01-03", "no such month-day '12-32'"),
        ("13-01", "no such month-day '13-01'"),
        ("2026-02-30", "no such date '2026-02-30'"),
        ("12-29..2027-01-03", "a range is two dates or two month-days, not one of each"),
        ("2027-01-04..2026-12-28", "the range ends (2026-12-28) before it starts (2027-01-04)"),
        ("year end", "'year end' is neither a date YYYY-MM-DD nor a month-day MM-DD"),
        ({"from": "12-29"}, 'a day-off range needs both "from" and "to"'),
        ({"from": "12-29", "to": "01-03", "until": "01-04"}, "unknown key 'until' in a day-off range"),
        ({"from": "12-29", "to": "01-03", "name": ""}, "name must be a non-empty text"),
        (5, "expected a date (2026-05-07), a month-day every year"),
        (dt.datetime(2026, 5, 7, 9, 0), "expected a date, not a date and time"),
    ],
)
def test_a_bad_day_off_names_the_entry_and_says_why(entry: Any, reason: str) -> None:
    error = refused(lambda data: data["calendar"].update(extra_days_off=["2026-05-07", entry]))
    assert error.path == "calendar.extra_days_off[1]"
    assert reason in error.reason
    assert str(error).startswith("calendar.extra_days_off[1]: ")


def test_days_off_must_be_a_list() -> None:
    error = refused(lambda data: data["calendar"].update(extra_days_off="12-29..01-03"))
    assert error.path == "calendar.extra_days_off"


@pytest.mark.parametrize(
    ("day", "inside"),
    [
        (dt.date(2026, 12, 28), False),
        (dt.date(2026, 12, 29), True),
        (dt.date(2026, 12, 31), True),
        (dt.date(2027, 1, 1), True),
        (dt.date(2027, 1, 3), True),
        (dt.date(2027, 1, 4), False),
        (dt.date(2030, 12, 30), True),  # every year
        (dt.date(2026, 6, 30), False),
    ],
)
def test_a_month_day_range_wraps_the_year_end(day: dt.date, inside: bool) -> None:
    assert DayOff(first=(12, 29), last=(1, 3)).contains(day) is inside


def test_a_date_range_is_that_year_only() -> None:
    closure = DayOff(first=dt.date(2026, 12, 28), last=dt.date(2027, 1, 4))
    assert closure.contains(dt.date(2026, 12, 28)) and closure.contains(dt.date(2027, 1, 4))
    assert not closure.contains(dt.date(2027, 12, 30))
    assert not closure.recurring and DayOff(first=(8, 13), last=(8, 15)).recurring


# --- escalation.p3_off_hours_pagerduty, postmortem.align, phase_time_boxes ----------------------------


def test_the_p3_night_page_can_be_turned_off_or_made_urgent() -> None:
    off = variant(lambda data: data["escalation"].update(p3_off_hours_pagerduty={"enabled": False}))
    assert off.escalation.p3_off_hours_pagerduty.enabled is False
    high = variant(lambda data: data["escalation"].update(p3_off_hours_pagerduty={"urgency": "high"}))
    assert high.escalation.p3_off_hours_pagerduty.urgency == "high"


@pytest.mark.parametrize(
    ("setting", "path", "reason"),
    [
        ({"enabled": True, "urgency": "medium"}, "escalation.p3_off_hours_pagerduty.urgency", "'low' or 'high'"),
        ({"enabled": "sometimes"}, "escalation.p3_off_hours_pagerduty.enabled", "valid boolean"),
        ({"enable": True}, "escalation.p3_off_hours_pagerduty.enable", "unknown key"),
    ],
)
def test_a_bad_p3_night_page_setting_names_the_key(setting: dict[str, Any], path: str, reason: str) -> None:
    error = refused(lambda data: data["escalation"].update(p3_off_hours_pagerduty=setting))
    assert error.path == path and reason in error.reason


def test_a_bad_postmortem_alignment_names_the_key() -> None:
    error = refused(lambda data: data["postmortem"].update(align="business_hours"))
    assert error.path == "postmortem.align"
    assert "'next_business_day_end' or 'wall_clock'" in error.reason


@pytest.mark.parametrize(
    ("boxes", "path", "reason"),
    [
        ({"detect": 60, "investigate": 15}, "phase_time_boxes", "detect (60) must end before investigate (15)"),
        ({"detect": 0, "investigate": 60}, "phase_time_boxes.detect", "greater than 0"),
        ({"detect": 15, "verify": 90}, "phase_time_boxes.verify", "unknown key"),
    ],
)
def test_bad_phase_time_boxes_name_the_key(boxes: dict[str, Any], path: str, reason: str) -> None:
    error = refused(lambda data: data.update(phase_time_boxes=boxes))
    assert error.path == path and reason in error.reason
