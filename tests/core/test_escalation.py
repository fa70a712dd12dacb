"""エスカレーションパス: targets, channels, recipients, and P4's next business day."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from incident_ops.core.escalation import Notification, route, unacknowledged_route
from incident_ops.core.runbook import Runbook

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
    (team,) = route(runbook, "P3", at)
    assert team.channel == "#dev-team"
    assert team.recipients == []
    assert team.not_before == at


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
