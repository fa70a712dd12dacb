"""The escalation notice and the acknowledgement escalation say the same thing about when work may
start and by when it must have started (P4 翌営業日可, the P3 night page), in Japanese, JST."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from incident_ops.core.deadlines import response_window
from incident_ops.core.escalation import route
from incident_ops.core.messages import render_ack_escalation
from incident_ops.core.notices import render_notice, work_start_text
from incident_ops.core.runbook import Runbook

JST = ZoneInfo("Asia/Tokyo")
INCIDENT = "INC-20261204-a1b2c3"


def jst(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=JST)


def notice(runbook: Runbook, severity: str, at: dt.datetime, symptom: str = "UIの表示崩れ") -> str:
    return render_notice(runbook, incident_id=INCIDENT, severity=severity, symptom=symptom, impact="一部の画面表示",
                         detected_at=at, notices=route(runbook, severity, at))


def test_p4_on_friday_evening_names_the_day_work_may_start(runbook: Runbook) -> None:
    assert notice(runbook, "P4", jst(2026, 12, 4, 18, 30)) == "\n".join([
        "【P4 Low】UIの表示崩れ",
        f"インシデント: {INCIDENT} / 影響範囲: 一部の画面表示",
        "対応: 12/07(月) 09:00 から対応（翌営業日可）",
        "対応開始の目標: 12/08(火) 09:00 まで（対応できる時刻から24時間以内）",
    ])


def test_p4_in_business_hours_may_start_now(runbook: Runbook) -> None:
    assert notice(runbook, "P4", jst(2026, 12, 1, 14, 0)).splitlines()[2:] == [
        "対応: 今から対応可（業務時間内）",
        "対応開始の目標: 12/02(水) 14:00 まで（24時間以内）",
    ]


@pytest.mark.parametrize(
    ("at", "work", "deadline"),
    [
        (jst(2026, 11, 29, 23, 0), "11/30(月) 09:00", "12/01(火) 09:00"),  # Sunday night
        (jst(2026, 11, 20, 18, 0), "11/24(火) 09:00", "11/25(水) 09:00"),  # before 勤労感謝の日 (Mon)
        (jst(2026, 12, 28, 18, 30), "01/04(月) 09:00", "01/05(火) 09:00"),  # into 年末年始
        (jst(2027, 5, 2, 10, 0), "05/06(木) 09:00", "05/07(金) 09:00"),  # Golden Week
    ],
)
def test_p4_across_the_calendar(runbook: Runbook, at: dt.datetime, work: str, deadline: str) -> None:
    lines = notice(runbook, "P4", at).splitlines()
    assert lines[2] == f"対応: {work} から対応（翌営業日可）"
    assert lines[3] == f"対応開始の目標: {deadline} まで（対応できる時刻から24時間以内）"


def test_a_notice_never_contradicts_itself(runbook: Runbook) -> None:
    # The old text said 「対応開始の目標: 18:30 まで / 対応は翌営業日 09:00 からで可」; now the target
    # is after the start, whatever the instant.
    for at in (jst(2026, 12, 4, 18, 30), jst(2026, 12, 5, 3, 0), jst(2026, 12, 30, 12, 0), jst(2026, 12, 1, 10, 0)):
        window = response_window(runbook, "P4", at)
        assert window.work_from <= window.deadline
        assert window.deadline - window.work_from == dt.timedelta(hours=24)


def test_p3_at_night_says_the_oncall_is_paged_at_low_urgency(runbook: Runbook) -> None:
    assert notice(runbook, "P3", jst(2026, 12, 4, 23, 0), symptom="レポート生成が遅い") == "\n".join([
        "【P3 Medium】レポート生成が遅い",
        f"インシデント: {INCIDENT} / 影響範囲: 一部の画面表示",
        "対応開始の目標: 12/05(土) 01:00 まで（2時間以内）",
        "業務時間外のため、オンコール担当 渡辺 舞 にも PagerDuty で通知します（低緊急度: 電話なし）",
    ])


def test_p3_in_business_hours_and_p1_at_night_have_no_extra_lines(runbook: Runbook) -> None:
    assert notice(runbook, "P3", jst(2026, 12, 1, 10, 0)).splitlines()[2:] == ["対応開始の目標: 12/01(火) 12:00 まで（2時間以内）"]
    assert notice(runbook, "P1", jst(2026, 12, 4, 23, 50), symptom="ログインできない").splitlines() == [
        "【P1 Critical】ログインできない",
        f"インシデント: {INCIDENT} / 影響範囲: 一部の画面表示",
        "対応開始の目標: 12/05(土) 00:05 まで（15分以内）",
    ]


def test_work_start_text_only_for_a_severity_that_may_wait(runbook: Runbook) -> None:
    assert work_start_text(runbook, response_window(runbook, "P1", jst(2026, 12, 4, 23, 0))) is None
    assert work_start_text(runbook, response_window(runbook, "P4", jst(2026, 12, 5, 3, 0))) == "12/07(月) 09:00 から対応（翌営業日可）"


def test_notice_plans_as_dicts_work_too(runbook: Runbook) -> None:
    at = jst(2026, 12, 4, 23, 0)
    plan = [n.to_dict() for n in route(runbook, "P3", at)]
    text = render_notice(runbook, incident_id=INCIDENT, severity="P3", symptom="s", impact="i", detected_at=at,
                         notices=plan)
    assert "オンコール担当 渡辺 舞 にも PagerDuty で通知します" in text


# --- the acknowledgement escalation (messages.render_ack_escalation) agrees -------------------------


def test_ack_escalation_of_a_p4_names_its_work_start_and_deadline(runbook: Runbook) -> None:
    text = render_ack_escalation(
        runbook, incident_id=INCIDENT, severity="P4", detected_at=jst(2026, 12, 4, 18, 30), symptom="UIの表示崩れ",
        notify=[{"name": "鈴木 開発リード", "slack_user_id": "U0LEAD001"}], channel="incident-20261204", mentions="plain",
    )
    assert text.splitlines()[:3] == [
        "@鈴木 開発リード 【エスカレーション】P4インシデントの対応開始が確認できません",
        "発生時刻: 18:30",
        "対応時間目標: 24時間以内に対応開始（12/07(月) 09:00 から24時間、期限 12/08(火) 09:00）",
    ]


def test_ack_escalation_past_midnight_carries_the_date(runbook: Runbook) -> None:
    text = render_ack_escalation(
        runbook, incident_id=INCIDENT, severity="P1", detected_at=jst(2026, 12, 4, 23, 50), symptom="ログインできない",
        notify=[], channel="incident-20261204", mentions="plain",
    )
    assert "対応時間目標: 15分以内に対応開始（期限 12/05(土) 00:05）" in text.splitlines()
