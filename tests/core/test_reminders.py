"""Postmortem reminders (Phase 5): the 24 h reminder and the 48 h overdue notice, each exactly once,
only for the severities that need a postmortem, and none once the postmortem is done."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from incident_ops.core.reminders import (
    current_stage,
    due_reminders,
    owner_of,
    postmortem_required,
    reminder_overview,
    render_reminder,
    stage_key,
    stage_times,
)
from incident_ops.core.runbook import Runbook, parse_runbook
from tests.conftest import runbook_data

JST = ZoneInfo("Asia/Tokyo")
RECOVERED = dt.datetime(2026, 11, 20, 22, 30, tzinfo=JST)  # a Friday night


def runbook_variant(change: Callable[[dict[str, Any]], None], *, align: str = "wall_clock") -> Runbook:
    data = runbook_data()
    data["postmortem"]["align"] = align
    change(data)
    return parse_runbook(data)


@pytest.fixture
def runbook() -> Runbook:
    """Most tests here count plain hours from a Friday-night recovery (`postmortem.align:
    wall_clock`); the shipped alignment to business days is tested at the end of the file."""
    return runbook_variant(lambda data: None)


@pytest.fixture
def shipped() -> Runbook:
    """The project's runbook as it is (postmortem.align: next_business_day_end)."""
    return parse_runbook(runbook_data())


def incident(**fields: Any) -> dict[str, Any]:
    base = {
        "id": "INC-20261120-a1b2c3",
        "severity": "P1",
        "status": "recovered",
        "title": "ログインできない",
        "detected_at": RECOVERED - dt.timedelta(hours=2),
        "recovered_at": RECOVERED,
        "postmortem_due_at": RECOVERED + dt.timedelta(hours=48),
        "postmortem_done_at": None,
        "acknowledged_by": None,
        "slack_channel": "incident-20261120",
        "slack_channel_id": "C0INC0001",
        "postmortem_path": "/srv/postmortems/INC-20261120-a1b2c3.md",
    }
    return {**base, **fields}


def test_required_severities(runbook: Runbook) -> None:
    assert [s for s in ("P1", "P2", "P3", "P4") if postmortem_required(runbook, s)] == ["P1", "P2"]


def test_stage_times(runbook: Runbook) -> None:
    times = stage_times(runbook, incident())
    assert times == {"reminder": RECOVERED + dt.timedelta(hours=24), "overdue": RECOVERED + dt.timedelta(hours=48)}
    # Without a due time in the ledger, the runbook's due_after_hours.
    assert stage_times(runbook, incident(postmortem_due_at=None))["overdue"] == RECOVERED + dt.timedelta(hours=48)
    # A due time the ledger holds wins (it was set at recovery).
    custom = RECOVERED + dt.timedelta(hours=30)
    assert stage_times(runbook, incident(postmortem_due_at=custom))["overdue"] == custom


@pytest.mark.parametrize(
    ("hours", "stage"),
    [(0, None), (23.99, None), (24, "reminder"), (30, "reminder"), (47.99, "reminder"), (48, "overdue"), (200, "overdue")],
)
def test_current_stage(runbook: Runbook, hours: float, stage: str | None) -> None:
    assert current_stage(runbook, incident(), RECOVERED + dt.timedelta(hours=hours)) == stage


@pytest.mark.parametrize(
    "fields",
    [
        {"severity": "P3"},
        {"severity": "P4"},
        {"postmortem_done_at": RECOVERED + dt.timedelta(hours=5)},
        {"status": "closed"},
        {"status": "open", "recovered_at": None},
    ],
)
def test_nothing_is_owed(runbook: Runbook, fields: dict[str, Any]) -> None:
    assert current_stage(runbook, incident(**fields), RECOVERED + dt.timedelta(hours=60)) is None


def test_required_for_is_configurable() -> None:
    runbook = runbook_variant(lambda data: data["postmortem"].update(required_for=["P1", "P2", "P3"]))
    assert current_stage(runbook, incident(severity="P3"), RECOVERED + dt.timedelta(hours=25)) == "reminder"
    only_p1 = runbook_variant(lambda data: data["postmortem"].update(required_for=["P1"]))
    assert current_stage(only_p1, incident(severity="P2"), RECOVERED + dt.timedelta(hours=25)) is None


def test_hourly_runs_over_four_days_send_each_stage_exactly_once(runbook: Runbook) -> None:
    """Time travel: an hourly run from recovery to 4 days later, keeping what was sent."""
    incidents = [incident(), incident(id="INC-20261121-000002", severity="P2", recovered_at=RECOVERED + dt.timedelta(hours=7, minutes=10),
                                      postmortem_due_at=RECOVERED + dt.timedelta(hours=55, minutes=10))]
    sent: dict[str, set[str]] = {}
    log: list[tuple[str, str, dt.datetime]] = []
    start = RECOVERED.replace(minute=0) + dt.timedelta(hours=1)
    for hour in range(96):
        at = start + dt.timedelta(hours=hour)
        for reminder in due_reminders(runbook, incidents, at, sent):
            log.append((reminder.incident_id, reminder.stage, at))
            sent.setdefault(reminder.incident_id, set()).add(reminder.key)
    assert log == [
        ("INC-20261120-a1b2c3", "reminder", dt.datetime(2026, 11, 21, 23, 0, tzinfo=JST)),
        ("INC-20261121-000002", "reminder", dt.datetime(2026, 11, 22, 6, 0, tzinfo=JST)),
        ("INC-20261120-a1b2c3", "overdue", dt.datetime(2026, 11, 22, 23, 0, tzinfo=JST)),
        ("INC-20261121-000002", "overdue", dt.datetime(2026, 11, 23, 6, 0, tzinfo=JST)),
    ]


def test_done_stops_the_reminders(runbook: Runbook) -> None:
    sent: dict[str, set[str]] = {}
    record = incident()
    stages = []
    for hour in range(1, 80):
        at = RECOVERED + dt.timedelta(hours=hour)
        if hour == 30:
            record = {**record, "postmortem_done_at": at}
        for reminder in due_reminders(runbook, [record], at, sent):
            stages.append(reminder.stage)
            sent.setdefault(reminder.incident_id, set()).add(reminder.key)
    assert stages == ["reminder"]


def test_a_late_first_run_sends_only_the_overdue_notice(runbook: Runbook) -> None:
    due = due_reminders(runbook, [incident()], RECOVERED + dt.timedelta(hours=50), {})
    assert [d.stage for d in due] == ["overdue"]
    sent = {"INC-20261120-a1b2c3": {stage_key("overdue")}}
    assert due_reminders(runbook, [incident()], RECOVERED + dt.timedelta(hours=51), sent) == []


def test_sent_keys_are_the_ledger_idempotency_keys(runbook: Runbook) -> None:
    assert stage_key("reminder") == "postmortem_reminder"
    assert stage_key("overdue") == "postmortem_overdue"
    with pytest.raises(ValueError, match="unknown reminder stage"):
        stage_key("later")
    sent = {"INC-20261120-a1b2c3": {"postmortem_reminder", "declared"}}
    assert due_reminders(runbook, [incident()], RECOVERED + dt.timedelta(hours=25), sent) == []


@pytest.mark.parametrize(
    ("by", "owner", "source"),
    [
        ("田中 太郎", "tanaka", "acknowledged"),
        ("田中太郎", "tanaka", "acknowledged"),
        ("U0YAMADA1", "yamada", "acknowledged"),
        ("鈴木 開発リード", "dev_lead", "acknowledged"),
        ("外部の誰か", "yamada", "rotation"),
        (None, "yamada", "rotation"),
    ],
)
def test_owner(runbook: Runbook, by: str | None, owner: str, source: str) -> None:
    # Detected on Friday 2026-11-20 20:30: yamada's rotation week (11/16 10:00 - 11/23 10:00).
    found = owner_of(runbook, incident(acknowledged_by=by))
    assert (found["id"], found["source"]) == (owner, source)


def test_reminder_text(runbook: Runbook) -> None:
    [reminder] = due_reminders(runbook, [incident(acknowledged_by="田中 太郎")], RECOVERED + dt.timedelta(hours=24), {})
    text = render_reminder(runbook, reminder, RECOVERED + dt.timedelta(hours=24))
    lines = text.splitlines()
    assert lines[0] == "<@U0TANAKA1> 【ポストモーテムのリマインド】P1 INC-20261120-a1b2c3"
    assert "作成期限: 11/22(日) 22:30（復旧から48時間以内）" in lines
    assert "状況チャンネル: <#C0INC0001|incident-20261120>" in lines
    assert "ドラフト: /srv/postmortems/INC-20261120-a1b2c3.md" in lines
    assert "記載する項目: 概要、タイムライン、影響範囲、根本原因、対応内容、改善策、アクションアイテム" in lines


def test_overdue_text_escalates_to_the_dev_lead(runbook: Runbook) -> None:
    at = RECOVERED + dt.timedelta(hours=49, minutes=30)
    [reminder] = due_reminders(runbook, [incident(title="<b>壊れた</b>")], at, {})
    text = render_reminder(runbook, reminder, at)
    lines = text.splitlines()
    assert lines[0] == "<@U0YAMADA1> <@U0LEAD001> 【ポストモーテム期限超過】P1 INC-20261120-a1b2c3"
    assert "（1時間30分超過）" in lines[1]
    assert "件名: &lt;b&gt;壊れた&lt;/b&gt;" in lines
    plain = render_reminder(runbook, reminder, at, mentions="plain")
    assert plain.splitlines()[0] == "@山田 花子 @鈴木 開発リード 【ポストモーテム期限超過】P1 INC-20261120-a1b2c3"
    assert "#incident-20261120" in plain


def test_overview(runbook: Runbook) -> None:
    rows = reminder_overview(
        runbook,
        [incident(), incident(id="INC-X", severity="P3")],
        RECOVERED + dt.timedelta(hours=30),
        {"INC-20261120-a1b2c3": {"postmortem_reminder"}},
    )
    assert len(rows) == 1
    row = rows[0]
    assert (row["sent"], row["stage_now"], row["due_now"], row["owner"]) == (["reminder"], "reminder", None, "yamada")
    assert row["due_at"] == (RECOVERED + dt.timedelta(hours=48)).isoformat()


# --- the shipped runbook: due times and reminders out of nights and days off --------------------------


def test_a_friday_night_recovery_is_due_on_the_next_business_day_end(shipped: Runbook) -> None:
    # Recovered Friday 11/20 22:30; +24 h is Saturday, +48 h Sunday night; Monday 11/23 is 勤労感謝の日.
    record = incident(postmortem_due_at=None)
    assert stage_times(shipped, record) == {
        "reminder": dt.datetime(2026, 11, 24, 9, 0, tzinfo=JST),
        "overdue": dt.datetime(2026, 11, 24, 18, 0, tzinfo=JST),
    }
    sent: dict[str, set[str]] = {}
    log = []
    for hour in range(1, 24 * 5):
        at = RECOVERED.replace(minute=0) + dt.timedelta(hours=hour)
        for reminder in due_reminders(shipped, [record], at, sent):
            log.append((reminder.stage, at))
            sent.setdefault(reminder.incident_id, set()).add(reminder.key)
    assert log == [
        ("reminder", dt.datetime(2026, 11, 24, 9, 0, tzinfo=JST)),
        ("overdue", dt.datetime(2026, 11, 24, 18, 0, tzinfo=JST)),
    ]


def test_the_reminder_says_why_the_due_time_moved(shipped: Runbook) -> None:
    at = dt.datetime(2026, 11, 24, 9, 0, tzinfo=JST)
    [reminder] = due_reminders(shipped, [incident(postmortem_due_at=None)], at, {})
    lines = render_reminder(shipped, reminder, at, mentions="plain").splitlines()
    assert "作成期限: 11/24(火) 18:00（復旧から48時間後（11/22(日) 22:30）が業務時間外のため翌営業日の終業時刻）" in lines
    overdue_at = dt.datetime(2026, 11, 24, 18, 0, tzinfo=JST)
    [overdue] = due_reminders(shipped, [incident(postmortem_due_at=None)], overdue_at, {})
    text = render_reminder(shipped, overdue, overdue_at, mentions="plain")
    assert "作成期限 11/24(火) 18:00（復旧から48時間後（11/22(日) 22:30）が業務時間外のため翌営業日の終業時刻）を過ぎました" in text


def test_year_end_recovery_is_due_after_the_closure(shipped: Runbook) -> None:
    record = incident(recovered_at=dt.datetime(2026, 12, 28, 15, 0, tzinfo=JST), postmortem_due_at=None)
    assert stage_times(shipped, record) == {
        "reminder": dt.datetime(2027, 1, 4, 9, 0, tzinfo=JST),
        "overdue": dt.datetime(2027, 1, 4, 18, 0, tzinfo=JST),
    }


def test_a_due_time_in_business_hours_is_unchanged(shipped: Runbook) -> None:
    record = incident(recovered_at=dt.datetime(2026, 12, 1, 10, 0, tzinfo=JST), postmortem_due_at=None)
    times = stage_times(shipped, record)
    assert times == {"reminder": dt.datetime(2026, 12, 2, 10, 0, tzinfo=JST),
                     "overdue": dt.datetime(2026, 12, 3, 10, 0, tzinfo=JST)}
    [reminder] = due_reminders(shipped, [record], times["reminder"], {})
    assert "作成期限: 12/03(木) 10:00（復旧から48時間以内）" in render_reminder(shipped, reminder, times["reminder"])
