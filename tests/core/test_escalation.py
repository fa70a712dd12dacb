"""エスカレーションパス: targets, channels, recipients, and P4's next business day."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from incident_ops.core.escalation import Notification, route, unacknowledged_route
from incident_ops.core.runbook import Runbook
from tests.conftest import runbook_data

JST = ZoneInfo("Asia/Tokyo")


def jst(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=JST)


def summary(notifications: list[Notification]) -> list[tuple[str, str]]:
    return [(n.target, n.via) for n in notifications]


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        ("P1", [("oncall", "pagerduty"), ("cto", "phone")]),
        ("P2", [("oncall", "pagerduty"), ("dev_lead", "slack")]),
        ("P3", [("dev_team", "slack")]),
        ("P4", [("dev_team", "slack")]),
    ],
)
def test_the_escalation_table(runbook: Runbook, severity: str, expected: list[tuple[str, str]]) -> None:
    assert summary(route(runbook, severity, jst(2026, 11, 24, 10, 0))) == expected


def test_p1_at_night_pages_the_rotation_engineer_and_calls_the_cto_now(runbook: Runbook) -> None:
    at = jst(2026, 11, 24, 23, 30)
    oncall, cto = route(runbook, "P1", at)
    assert oncall.recipients == [
        {
            "id": "ito",
            "name": "伊藤 健",
            "slack_user_id": "U0ITO0001",
            "pagerduty_user_id": "PITO001",
            "email": "ito@peoplebooster.com",
        }
    ]
    assert oncall.channel is None
    assert cto.recipients[0]["id"] == "cto"
    assert cto.recipients[0]["pagerduty_user_id"] == "PCTO001"
    assert oncall.not_before == at and cto.not_before == at
    assert not oncall.deferred and not cto.deferred


def test_oncall_is_the_engineer_at_that_instant(runbook: Runbook) -> None:
    before = route(runbook, "P2", jst(2026, 11, 23, 9, 59))[0]
    after = route(runbook, "P2", jst(2026, 11, 23, 10, 0))[0]
    assert before.recipients[0]["id"] == "yamada"
    assert after.recipients[0]["id"] == "ito"


def test_p2_dev_lead_in_slack(runbook: Runbook) -> None:
    lead = route(runbook, "P2", jst(2026, 11, 24, 10, 0))[1]
    assert lead.recipients[0]["slack_user_id"] == "U0LEAD001"
    assert lead.channel is None


def test_p3_goes_to_the_team_channel_even_at_night(runbook: Runbook) -> None:
    at = jst(2026, 11, 21, 3, 0)
    team, page = route(runbook, "P3", at)
    assert team.channel == "#dev-team"
    assert team.recipients == []
    assert team.not_before == at
    assert (page.target, page.via, page.urgency) == ("oncall", "pagerduty", "low")


@pytest.mark.parametrize(
    ("at", "not_before"),
    [
        (jst(2026, 11, 24, 10, 0), jst(2026, 11, 24, 10, 0)),  # business hours: now
        (jst(2026, 11, 24, 17, 59, 59), jst(2026, 11, 24, 17, 59, 59)),
        (jst(2026, 11, 24, 18, 0, 0), jst(2026, 11, 25, 9, 0)),
        (jst(2026, 11, 24, 8, 59, 59), jst(2026, 11, 24, 9, 0)),
        (jst(2026, 11, 24, 9, 0, 0), jst(2026, 11, 24, 9, 0)),
        (jst(2026, 11, 13, 20, 0), jst(2026, 11, 16, 9, 0)),  # Friday 20:00 → Monday 9:00
        (jst(2026, 11, 20, 20, 0), jst(2026, 11, 24, 9, 0)),  # Friday before the Monday holiday → Tuesday
        (jst(2026, 11, 22, 12, 0), jst(2026, 11, 24, 9, 0)),  # Sunday before it
        (jst(2026, 11, 3, 10, 0), jst(2026, 11, 4, 9, 0)),  # 文化の日 (Tuesday)
        (jst(2026, 12, 31, 19, 0), jst(2027, 1, 4, 9, 0)),  # year end: 元日 Friday, then a weekend
        (dt.datetime(2026, 11, 13, 11, 0, tzinfo=dt.UTC), jst(2026, 11, 16, 9, 0)),  # UTC in, JST out
    ],
)
def test_p4_waits_for_the_next_business_day(runbook: Runbook, at: dt.datetime, not_before: dt.datetime) -> None:
    (team,) = route(runbook, "P4", at)
    assert team.not_before == not_before
    assert team.not_before.utcoffset() == dt.timedelta(hours=9)
    assert team.deferred is (not_before != at)


def test_notification_as_json(runbook: Runbook) -> None:
    (team,) = route(runbook, "P4", jst(2026, 11, 20, 20, 0))
    assert team.to_dict() == {
        "target": "dev_team",
        "via": "slack",
        "not_before": "2026-11-24T09:00:00+09:00",
        "recipients": [],
        "channel": "#dev-team",
        "deferred": True,
        "urgency": None,
    }


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        ("P1", [("cto", "phone"), ("dev_lead", "slack")]),
        ("P2", [("cto", "phone")]),
        ("P3", [("dev_lead", "slack")]),
        ("P4", [("dev_lead", "slack")]),
    ],
)
def test_unacknowledged_escalation(runbook: Runbook, severity: str, expected: list[tuple[str, str]]) -> None:
    at = jst(2026, 11, 24, 10, 15)
    notifications = unacknowledged_route(runbook, severity, at)
    assert summary(notifications) == expected
    assert all(n.not_before == at for n in notifications)


def test_unknown_severity_is_refused(runbook: Runbook) -> None:
    with pytest.raises(ValueError, match="unknown severity 'P5'"):
        route(runbook, "P5", jst(2026, 11, 24, 10, 0))
    with pytest.raises(ValueError, match="unknown severity"):
        unacknowledged_route(runbook, "critical", jst(2026, 11, 24, 10, 0))


def test_naive_instant_is_refused(runbook: Runbook) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        route(runbook, "P1", dt.datetime(2026, 11, 24, 10, 0))


# --- P3 outside business hours: a low-urgency page for the on-call engineer (our choice) -------------


@pytest.mark.parametrize(
    ("at", "engineer"),
    [
        (jst(2026, 12, 4, 18, 30), "watanabe"),  # Friday evening
        (jst(2026, 12, 6, 23, 0), "watanabe"),  # Sunday night
        (jst(2026, 11, 23, 12, 0), "ito"),  # Monday 勤労感謝の日, at noon (after the 10:00 handoff)
        (jst(2026, 12, 30, 11, 0), "watanabe"),  # Wednesday in 年末年始
        (jst(2027, 5, 4, 14, 0), "yamada"),  # Golden Week (みどりの日)
        (jst(2026, 12, 1, 8, 59), "watanabe"),  # a weekday before 9:00
    ],
)
def test_p3_off_hours_also_pages_the_oncall_at_low_urgency(runbook: Runbook, at: dt.datetime, engineer: str) -> None:
    team, page = route(runbook, "P3", at)
    assert (team.target, team.via, team.urgency) == ("dev_team", "slack", None)
    assert (page.target, page.via, page.urgency) == ("oncall", "pagerduty", "low")
    assert page.recipients[0]["id"] == engineer  # the rotation's engineer at that instant
    assert page.not_before == at and not page.deferred
    assert page.to_dict()["urgency"] == "low"


@pytest.mark.parametrize("at", [jst(2026, 12, 1, 9, 0), jst(2026, 12, 4, 17, 59, 59), jst(2026, 12, 28, 12, 0)])
def test_p3_in_business_hours_pages_nobody(runbook: Runbook, at: dt.datetime) -> None:
    assert summary(route(runbook, "P3", at)) == [("dev_team", "slack")]


def test_the_p3_night_page_follows_the_setting() -> None:
    from incident_ops.core.runbook import parse_runbook

    def variant(setting: dict) -> Runbook:
        data = runbook_data()
        data["escalation"]["p3_off_hours_pagerduty"] = setting
        return parse_runbook(data)

    night = jst(2026, 12, 4, 22, 0)
    assert summary(route(variant({"enabled": False}), "P3", night)) == [("dev_team", "slack")]
    (_, page) = route(variant({"urgency": "high"}), "P3", night)
    assert page.urgency == "high"


@pytest.mark.parametrize("severity", ["P1", "P2", "P4"])
def test_only_p3_gets_the_night_page(runbook: Runbook, severity: str) -> None:
    notices = route(runbook, severity, jst(2026, 12, 4, 22, 0))
    assert all(n.urgency is None for n in notices)
    assert sum(1 for n in notices if n.via == "pagerduty") == (0 if severity == "P4" else 1)


def test_the_unacknowledged_p3_at_night_still_goes_to_the_dev_lead(runbook: Runbook) -> None:
    assert summary(unacknowledged_route(runbook, "P3", jst(2026, 12, 5, 0, 0))) == [("dev_lead", "slack")]
