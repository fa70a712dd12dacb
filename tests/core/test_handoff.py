"""オンコール体制の交代通知: the slots over a whole month (holidays, weekends, year-end, the 9:00 and
18:00 boundaries), catch-up of missed slots, PagerDuty vs the roster, the alert check, the texts."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from incident_ops.core import handoff as h
from incident_ops.core.oncall import business_hours_team, oncall_at, rotation_engineer
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


def roster_post(runbook: Runbook, slot: h.Slot, posted_at: dt.datetime | None = None, **kwargs: Any) -> h.HandoffPost:
    engineer = h.resolve_oncall(runbook, slot.at, None)
    outgoing = h.resolve_oncall(runbook, slot.at - dt.timedelta(seconds=1), None) if slot.kind == "handoff" else None
    return h.build_post(runbook, slot, posted_at=posted_at or slot.at, engineer=engineer, outgoing=outgoing, **kwargs)


# --- the timetable ----------------------------------------------------------------------------------


def test_timetable_crons_cover_the_handoff_and_both_boundaries(runbook: Runbook) -> None:
    assert h.timetable_crons(runbook) == ["0 10 * * 1", "0 9 * * 1,2,3,4,5", "0 18 * * 1,2,3,4,5"]


def test_timetable_crons_follow_the_runbook() -> None:
    def change(data: dict[str, Any]) -> None:
        data["oncall"]["handoff"] = {"weekday": "fri", "time": "17:30"}
        data["oncall"]["rotation_start"] = "2026-01-09T17:30:00+09:00"
        data["calendar"]["business_hours"] = {"start": "10:00", "end": "19:00"}
        data["calendar"]["business_days"] = ["mon", "tue", "wed", "thu", "fri", "sat"]

    assert h.timetable_crons(runbook_variant(change)) == ["30 17 * * 5", "0 10 * * 1,2,3,4,5,6", "0 19 * * 1,2,3,4,5,6"]


# --- a whole month ----------------------------------------------------------------------------------


def test_november_2026_slot_by_slot(runbook: Runbook) -> None:
    slots = h.slots_between(runbook, jst(2026, 11, 1), jst(2026, 12, 1))
    kinds = Counter(slot.kind for slot in slots)
    # 30 days - 9 weekend days - 文化の日 (11/03) - 勤労感謝の日 (11/23) = 19 business days.
    assert kinds == {"business_hours": 19, "off_hours": 19, "handoff": 5}
    assert [s.at for s in slots if s.kind == "handoff"] == [jst(2026, 11, d, 10) for d in (2, 9, 16, 23, 30)]
    days_with_transitions = {s.at.date() for s in slots if s.kind != "handoff"}
    for day in (dt.date(2026, 11, 3), dt.date(2026, 11, 23), dt.date(2026, 11, 7), dt.date(2026, 11, 8)):
        assert day not in days_with_transitions
    for slot in slots:
        assert slot.at.tzinfo is not None and slot.at.utcoffset() == dt.timedelta(hours=9)
        if slot.kind == "business_hours":
            assert (slot.at.hour, slot.at.minute) == (9, 0) and slot.at.weekday() < 5
        elif slot.kind == "off_hours":
            assert (slot.at.hour, slot.at.minute) == (18, 0) and slot.at.weekday() < 5
        else:
            assert (slot.at.weekday(), slot.at.hour) == (0, 10)
    assert slots == sorted(slots, key=lambda s: s.at)
    assert len({slot.key for slot in slots}) == len(slots)


def test_every_slot_of_the_month_names_who_is_on_call(runbook: Runbook) -> None:
    for slot in h.slots_between(runbook, jst(2026, 11, 1), jst(2026, 12, 1)):
        post = roster_post(runbook, slot)
        ids = [person["id"] for person in post.on_call]
        state = oncall_at(runbook, slot.at)
        assert ids == state.on_call, slot
        assert post.engineer.person["id"] == rotation_engineer(runbook, slot.at).id
        if slot.kind == "business_hours":
            assert ids == TEAM == business_hours_team(runbook)
        elif slot.kind == "off_hours":
            assert ids == [rotation_engineer(runbook, slot.at).id]
        elif slot.at.date() == dt.date(2026, 11, 23):
            # The handoff on a holiday: the incoming engineer answers at once.
            assert ids == ["ito"]
        else:
            # Monday 10:00 is in business hours: the team answers, the incoming engineer from 18:00.
            assert ids == TEAM


def test_the_rotation_changes_at_the_handoff_even_on_a_holiday(runbook: Runbook) -> None:
    slot = h.slots_at(runbook, jst(2026, 11, 23, 10))[0]
    post = roster_post(runbook, slot)
    assert slot.kind == "handoff"
    assert post.outgoing is not None
    assert post.outgoing.person["id"] == rotation_engineer(runbook, jst(2026, 11, 23, 9, 59)).id == "yamada"
    assert post.engineer.person["id"] == "ito"
    assert "<@U0YAMADA1> → <@U0ITO0001>" in post.text


@pytest.mark.parametrize(
    ("instant", "kinds"),
    [
        (jst(2026, 11, 4, 8, 59), []),
        (jst(2026, 11, 4, 9, 0), ["business_hours"]),
        (jst(2026, 11, 4, 9, 0, 59), ["business_hours"]),
        (jst(2026, 11, 4, 9, 1), []),
        (jst(2026, 11, 4, 17, 59, 59), []),
        (jst(2026, 11, 4, 18, 0), ["off_hours"]),
        (jst(2026, 11, 2, 10, 0), ["handoff"]),
        (jst(2026, 11, 2, 9, 0), ["business_hours"]),
        (jst(2026, 11, 3, 9, 0), []),  # 文化の日
        (jst(2026, 11, 3, 18, 0), []),
        (jst(2026, 11, 23, 9, 0), []),  # 勤労感謝の日 (a Monday)
        (jst(2026, 11, 23, 10, 0), ["handoff"]),
        (jst(2026, 11, 7, 9, 0), []),  # Saturday
        (jst(2026, 11, 8, 18, 0), []),  # Sunday
        (dt.datetime(2026, 11, 4, 0, 0, tzinfo=dt.UTC), ["business_hours"]),  # 09:00 JST given in UTC
    ],
)
def test_slots_at_the_boundaries(runbook: Runbook, instant: dt.datetime, kinds: list[str]) -> None:
    assert [slot.kind for slot in h.slots_at(runbook, instant)] == kinds


def test_slots_at_refuses_naive_instants(runbook: Runbook) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        h.slots_at(runbook, dt.datetime(2026, 11, 4, 9))


def test_slot_keys_are_the_local_minute(runbook: Runbook) -> None:
    slot = h.slots_at(runbook, dt.datetime(2026, 11, 2, 1, 0, 30, tzinfo=dt.UTC))[0]
    assert slot.key == "oncall:handoff:2026-11-02T10:00+09:00"


def test_year_end_with_public_holidays_only() -> None:
    runbook = runbook_variant(lambda data: data["calendar"].update(extra_days_off=[]))
    slots = h.slots_between(runbook, jst(2026, 12, 28), jst(2027, 1, 6))
    days = sorted({s.at.date() for s in slots if s.kind != "handoff"})
    # Without a company closure: 元日 (Fri) and the weekend are the only days off.
    assert days == [dt.date(2026, 12, d) for d in (28, 29, 30, 31)] + [dt.date(2027, 1, 4), dt.date(2027, 1, 5)]
    assert [s.at for s in slots if s.kind == "handoff"] == [jst(2026, 12, 28, 10), jst(2027, 1, 4, 10)]
    post = roster_post(runbook, h.slots_at(runbook, jst(2026, 12, 31, 18))[0])
    assert "12/31(木) 18:00 〜 01/04(月) 09:00（休日: 01/01(金・元日)、01/02(土)、01/03(日)）" in post.text


def test_year_end_closure_from_extra_days_off() -> None:
    closure = ["2026-12-29", "2026-12-30", "2026-12-31", "2027-01-02", "2027-01-03"]
    runbook = runbook_variant(lambda data: data["calendar"].update(extra_days_off=closure))
    slots = h.slots_between(runbook, jst(2026, 12, 28), jst(2027, 1, 6))
    assert [(s.at, s.kind) for s in slots] == [
        (jst(2026, 12, 28, 9), "business_hours"),
        (jst(2026, 12, 28, 10), "handoff"),
        (jst(2026, 12, 28, 18), "off_hours"),
        (jst(2027, 1, 4, 9), "business_hours"),
        (jst(2027, 1, 4, 10), "handoff"),
        (jst(2027, 1, 4, 18), "off_hours"),
        (jst(2027, 1, 5, 9), "business_hours"),
        (jst(2027, 1, 5, 18), "off_hours"),
    ]
    post = roster_post(runbook, slots[1])
    assert "12/28(月) 18:00 〜 01/04(月) 09:00" in post.text
    assert "12/29(火・休業日)" in post.text and "01/01(金・元日)" in post.text


# --- what a run posts: current slot, missed slots ---------------------------------------------------


def test_a_first_run_posts_only_its_own_slot(runbook: Runbook) -> None:
    slots = h.slots_to_post(runbook, jst(2026, 11, 9, 10), last_posted=None, is_posted=lambda key: False)
    assert [s.kind for s in slots] == ["handoff"]


def test_missed_slots_since_the_last_posted_one_are_posted(runbook: Runbook) -> None:
    slots = h.slots_to_post(runbook, jst(2026, 11, 9, 10), last_posted=jst(2026, 11, 6, 18), is_posted=lambda key: False)
    assert [(s.at, s.kind) for s in slots] == [(jst(2026, 11, 9, 9), "business_hours"), (jst(2026, 11, 9, 10), "handoff")]


def test_missed_slots_across_a_holiday_monday(runbook: Runbook) -> None:
    slots = h.slots_to_post(runbook, jst(2026, 11, 24, 9), last_posted=jst(2026, 11, 20, 18), is_posted=lambda key: False)
    assert [(s.at, s.kind) for s in slots] == [(jst(2026, 11, 23, 10), "handoff"), (jst(2026, 11, 24, 9), "business_hours")]


def test_posted_slots_are_left_out_and_catch_up_is_bounded(runbook: Runbook) -> None:
    posted = {"oncall:business_hours:2026-11-09T09:00+09:00"}
    slots = h.slots_to_post(runbook, jst(2026, 11, 9, 10), last_posted=jst(2026, 11, 6, 18), is_posted=posted.__contains__)
    assert [s.kind for s in slots] == ["handoff"]
    slots = h.slots_to_post(runbook, jst(2026, 11, 30, 10), last_posted=jst(2026, 10, 1, 9), is_posted=lambda key: False)
    assert min(s.at for s in slots) >= jst(2026, 11, 23, 10)
    slots = h.slots_to_post(
        runbook, jst(2026, 11, 30, 10), last_posted=jst(2026, 10, 1, 9), is_posted=lambda key: False,
        max_catch_up=dt.timedelta(hours=2),
    )
    assert [s.kind for s in slots] == ["business_hours", "handoff"]


def test_a_run_between_slots_posts_only_missed_ones(runbook: Runbook) -> None:
    slots = h.slots_to_post(runbook, jst(2026, 11, 4, 12, 30), last_posted=jst(2026, 11, 2, 18), is_posted=lambda key: False)
    assert [(s.at, s.kind) for s in slots] == [(jst(2026, 11, 4, 9), "business_hours")]


@pytest.mark.parametrize(
    ("posted_at", "note"),
    [
        (jst(2026, 11, 4, 9, 0), None),
        (jst(2026, 11, 4, 9, 15), None),
        (jst(2026, 11, 4, 9, 16), "（遅延配信: 本来 09:00）"),
        (jst(2026, 11, 4, 13, 0), "（遅延配信: 本来 09:00）"),
        (jst(2026, 11, 5, 8, 0), "（遅延配信: 本来 11/04(水) 09:00）"),
    ],
)
def test_late_note(runbook: Runbook, posted_at: dt.datetime, note: str | None) -> None:
    slot = h.slots_at(runbook, jst(2026, 11, 4, 9))[0]
    assert h.late_note(runbook, slot, posted_at) == note
    post = roster_post(runbook, slot, posted_at)
    assert post.late is (note is not None)
    assert post.text.splitlines()[0] == f"【業務時間開始】11/04(水) 09:00{note or ''}"


def test_no_slot_reasons(runbook: Runbook) -> None:
    assert h.no_slot_reason(runbook, jst(2026, 11, 23, 9)) == "11/23(月・勤労感謝の日) は休日のため交代の通知はありません"
    assert h.no_slot_reason(runbook, jst(2026, 11, 7, 18)) == "11/07(土) は休日のため交代の通知はありません"
    assert h.no_slot_reason(runbook, jst(2026, 11, 4, 12)) == "11/04(水) 12:00 は交代の時刻ではありません（次は 11/04(水) 18:00 業務時間終了・オンコール開始）"


# --- PagerDuty vs the roster, the alert check -------------------------------------------------------


def test_pagerduty_agreeing_with_the_roster(runbook: Runbook) -> None:
    assignee = h.resolve_oncall(runbook, jst(2026, 11, 2, 10), [{"id": "PWATANA", "name": "渡辺 舞"}])
    assert (assignee.source, assignee.person["id"], assignee.disagrees, assignee.note) == ("pagerduty", "watanabe", False, None)


def test_pagerduty_disagreeing_is_said_and_wins(runbook: Runbook) -> None:
    assignee = h.resolve_oncall(runbook, jst(2026, 11, 2, 10), [{"id": "PTANAKA", "name": "Tanaka"}])
    assert assignee.source == "pagerduty" and assignee.disagrees
    assert assignee.person["id"] == "tanaka" and assignee.roster["id"] == "watanabe"
    assert "PagerDuty のスケジュール（田中 太郎）と当番表（渡辺 舞）が一致しません" in (assignee.note or "")
    post = h.build_post(runbook, h.Slot(jst(2026, 11, 2, 18), "off_hours"), posted_at=jst(2026, 11, 2, 18), engineer=assignee)
    assert "<@U0TANAKA1>" in post.text and "一致しません" in post.text and "PagerDuty のスケジュール" in post.text


def test_pagerduty_user_found_by_email_or_unknown(runbook: Runbook) -> None:
    by_email = h.resolve_oncall(runbook, jst(2026, 11, 2, 10), [{"id": "PNEW", "name": "x", "email": "Ito@PeopleBooster.com"}])
    assert by_email.person["id"] == "ito"
    stranger = h.resolve_oncall(runbook, jst(2026, 11, 2, 10), [{"id": "PZZZ", "name": "外部 委託"}])
    assert stranger.person == {"id": None, "name": "外部 委託", "slack_user_id": None, "pagerduty_user_id": "PZZZ", "email": None}
    assert stranger.disagrees and h.mention(stranger.person) == "@外部 委託"


def test_pagerduty_empty_or_failing_falls_back_to_the_roster(runbook: Runbook) -> None:
    empty = h.resolve_oncall(runbook, jst(2026, 11, 2, 10), [])
    assert (empty.source, empty.person["id"], empty.disagrees) == ("roster", "watanabe", True)
    assert "担当者がいません" in (empty.note or "")
    failed = h.resolve_oncall(runbook, jst(2026, 11, 2, 10), None, pagerduty_error="HTTP 503")
    assert failed.source == "roster" and "HTTP 503" in (failed.note or "")
    plain = h.resolve_oncall(runbook, jst(2026, 11, 2, 10), None)
    assert plain.note is None and not plain.disagrees


def test_alert_check(runbook: Runbook) -> None:
    person = h.person_dict(runbook.person("ito"))
    assert h.alert_check(person, [{"type": "push_notification_contact_method"}]).status == "ok"
    assert h.alert_check(person, []).status == "no_push" and h.alert_check(person, []).warn
    assert h.alert_check(person, None).status == "unchecked"
    assert h.alert_check(person, None, error="boom").status == "unknown"
    assert h.alert_check({**person, "pagerduty_user_id": None}, []).status == "unknown"


def test_no_push_method_warns_the_engineer_and_the_dev_lead(runbook: Runbook) -> None:
    slot = h.slots_at(runbook, jst(2026, 11, 2, 10))[0]
    engineer = h.resolve_oncall(runbook, slot.at, None)
    post = roster_post(runbook, slot, alert=h.alert_check(engineer.person, []))
    [(people, text)] = post.warnings
    assert [p["id"] for p in people] == ["watanabe", "dev_lead"]
    assert text.startswith("<@U0WATANA1> <@U0LEAD001> 【オンコール: アラート受信の確認】")
    assert "PagerDutyアプリをインストール" in text
    assert ":warning: <@U0WATANA1> PagerDutyアプリをインストールし" in post.text
    ok = roster_post(runbook, slot, alert=h.alert_check(engineer.person, [{"type": "push_notification_contact_method"}]))
    assert ok.warnings == [] and "アラートを受信できます" in ok.text


# --- the texts ---------------------------------------------------------------------------------------


def test_weekly_handoff_text(runbook: Runbook) -> None:
    slot = h.slots_at(runbook, jst(2026, 11, 2, 10))[0]
    incident = {
        "id": "INC-20261101-abc123", "severity": "P1", "title": "ログインできない <@here> & more",
        "detected_at": dt.datetime(2026, 10, 31, 18, 0, tzinfo=dt.UTC), "status": "open",
        "slack_channel": "incident-20261101", "slack_channel_id": "C0INC0001",
    }
    pending = {
        "id": "INC-20261030-def456", "severity": "P2", "title": "診断機能が動作しない",
        "postmortem_due_at": jst(2026, 11, 1, 12), "slack_channel": "incident-20261030",
    }
    post = roster_post(runbook, slot, open_incidents=[incident], pending_postmortems=[pending])
    lines = post.text.splitlines()
    assert lines[:4] == [
        "【オンコール交代】11/02(月) 10:00",
        "<@U0ITO0001> → <@U0WATANA1> にオンコール担当を引き継ぎます。",
        "担当期間: 11/02(月) 10:00 〜 11/09(月) 10:00",
        "担当者の確認元: 当番表（runbook）",
    ]
    assert "対応中のインシデント: 1件" in lines
    assert ("・INC-20261101-abc123 P1 ログインできない &lt;@here&gt; &amp; more（11/01(日) 03:00 発生、対応中）"
            " <#C0INC0001|incident-20261101>") in lines
    assert "未完了のポストモーテム: 1件" in lines
    assert "・INC-20261030-def456 P2 診断機能が動作しない: 期限 11/01(日) 12:00（期限超過） #incident-20261030" in lines
    windows = lines[lines.index("今週の業務時間外（オンコール担当が対応）:") + 1:]
    assert windows == [
        "・11/02(月) 18:00 〜 11/04(水) 09:00（休日: 11/03(火・文化の日)）",
        "・11/04(水) 18:00 〜 11/05(木) 09:00",
        "・11/05(木) 18:00 〜 11/06(金) 09:00",
        "・11/06(金) 18:00 〜 11/09(月) 09:00（休日: 11/07(土)、11/08(日)）",
        "平日 09:00〜18:00 は開発チーム全員で対応します。",
    ]


def test_handoff_week_ending_on_a_holiday_monday(runbook: Runbook) -> None:
    post = roster_post(runbook, h.slots_at(runbook, jst(2026, 11, 16, 10))[0])
    # The window runs into 11/23 (a holiday) and is cut at the next handoff, 10:00.
    assert "・11/20(金) 18:00 〜 11/23(月) 10:00（休日: 11/21(土)、11/22(日)）" in post.text
    assert "対応中のインシデント: 0件\n・なし" in post.text


def test_transition_texts(runbook: Runbook) -> None:
    morning = roster_post(runbook, h.slots_at(runbook, jst(2026, 11, 24, 9))[0])
    assert morning.text.splitlines()[:3] == [
        "【業務時間開始】11/24(火) 09:00",
        "11/24(火) 18:00 まで開発チーム全員で対応します: 田中 太郎、山田 花子、伊藤 健、渡辺 舞、鈴木 開発リード",
        "夜間・休日のオンコール担当: @伊藤 健",
    ]
    evening = roster_post(runbook, h.slots_at(runbook, jst(2026, 11, 20, 18))[0])
    assert evening.text.splitlines()[:4] == [
        "【業務時間終了・オンコール開始】11/20(金) 18:00",
        "ここからはオンコール担当 <@U0YAMADA1> が対応します（PagerDuty で呼び出し）。",
        "業務時間外: 11/20(金) 18:00 〜 11/24(火) 09:00（休日: 11/21(土)、11/22(日)、11/23(月・勤労感謝の日)）",
        "途中、11/23(月) 10:00 に @伊藤 健 へ交代します（週次ローテーション）",
    ]


def test_plain_mentions(runbook: Runbook) -> None:
    post = roster_post(runbook, h.slots_at(runbook, jst(2026, 11, 2, 10))[0], mentions="plain")
    assert "@伊藤 健 → @渡辺 舞 にオンコール担当を引き継ぎます。" in post.text
    assert "<@" not in post.text


def test_post_as_dict_is_json_ready(runbook: Runbook) -> None:
    import json

    post = roster_post(runbook, h.slots_at(runbook, jst(2026, 11, 2, 10))[0])
    data = json.loads(json.dumps(post.to_dict(), ensure_ascii=False))
    assert data["kind"] == "handoff" and data["engineer"]["person"]["id"] == "watanabe"
    assert data["outgoing"]["person"]["id"] == "ito" and data["key"] == "oncall:handoff:2026-11-02T10:00+09:00"


def test_find_person(runbook: Runbook) -> None:
    assert h.find_person(runbook, ref="田中太郎")["id"] == "tanaka"
    assert h.find_person(runbook, ref="U0LEAD001")["id"] == "dev_lead"
    assert h.find_person(runbook, ref="yamada")["id"] == "yamada"
    assert h.find_person(runbook, ref="nobody") is None


# --- 年末年始 from the shipped runbook (calendar.extra_days_off: 12-29..01-03) -------------------------


def test_the_shipped_year_end_closure_has_no_hand_overs(runbook: Runbook) -> None:
    slots = h.slots_between(runbook, jst(2026, 12, 28), jst(2027, 1, 6))
    assert [(s.at, s.kind) for s in slots] == [
        (jst(2026, 12, 28, 9), "business_hours"),
        (jst(2026, 12, 28, 10), "handoff"),
        (jst(2026, 12, 28, 18), "off_hours"),
        (jst(2027, 1, 4, 9), "business_hours"),
        (jst(2027, 1, 4, 10), "handoff"),
        (jst(2027, 1, 4, 18), "off_hours"),
        (jst(2027, 1, 5, 9), "business_hours"),
        (jst(2027, 1, 5, 18), "off_hours"),
    ]
    post = roster_post(runbook, slots[2])
    assert post.text.splitlines()[2] == (
        "業務時間外: 12/28(月) 18:00 〜 01/04(月) 09:00（休日: 12/29(火・年末年始)、12/30(水・年末年始)、"
        "12/31(木・年末年始)、01/01(金・元日)、01/02(土・年末年始)、01/03(日・年末年始)）"
    )
    assert h.no_slot_reason(runbook, jst(2026, 12, 29, 9)) == "12/29(火・年末年始) は休日のため交代の通知はありません"
    assert h.format_day(runbook, dt.date(2027, 12, 30)) == "12/30(木・年末年始)"  # every year
