"""Phase time boxes (Phase 1: 0-15分, Phase 2: 15-60分): which phase an incident is in, which notice is
due at an elapsed time, and the notice's Japanese text."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from incident_ops.core import timeboxes as tb
from incident_ops.core.runbook import Runbook, parse_runbook
from tests.conftest import runbook_data

JST = ZoneInfo("Asia/Tokyo")
MIN = dt.timedelta(minutes=1)


def events(*kinds: str) -> list[dict[str, Any]]:
    return [{"kind": kind, "idempotency_key": kind} for kind in kinds]


OPEN = {"status": "open", "scenario": None}


@pytest.mark.parametrize(
    ("record", "kinds", "phase"),
    [
        (OPEN, ("opened", "classified", "notified"), 1),
        (OPEN, ("opened", "confirmed", "acknowledged"), 1),  # acknowledged, but not declared yet
        (OPEN, ("opened", "notified", "declared"), 2),
        (OPEN, ("opened", "channel_opened"), 2),  # P3/P4: the incident channel ends Phase 1
        (OPEN, ("opened", "declared", "evidence"), 2),
        (OPEN, ("opened", "declared", "evidence", "scenario_chosen"), 3),
        (OPEN, ("opened", "declared", "approval"), 3),
        (OPEN, ("opened", "declared", "action"), 3),
        ({"status": "open", "scenario": "deploy"}, ("opened",), 3),
        ({"status": "mitigated", "scenario": None}, ("opened",), 3),
        ({"status": "recovered", "scenario": None}, ("opened", "declared"), 3),
    ],
)
def test_phase_reached_from_the_ledger(record: dict[str, Any], kinds: tuple[str, ...], phase: int) -> None:
    assert tb.phase_reached(record, events(*kinds)) == phase


def test_the_runbooks_time_boxes(runbook: Runbook) -> None:
    assert [(b.phase, b.name, b.starts_after, b.ends_after) for b in tb.time_boxes(runbook)] == [
        (1, "検知と初期対応", dt.timedelta(0), 15 * MIN),
        (2, "調査と診断", 15 * MIN, 60 * MIN),
    ]
    assert tb.time_box(runbook, 2).key == "time_box:phase2"
    with pytest.raises(ValueError, match="phase 3 has no time box"):
        tb.time_box(runbook, 3)


@pytest.mark.parametrize(
    ("reached", "minutes", "due"),
    [
        (1, 14.99, []),
        (1, 15, [1]),  # still in Phase 1 at 15 minutes
        (1, 70, [1]),  # Phase 1 far too long: its own notice (Phase 2's needs Phase 2)
        (2, 15, []),  # Phase 1 done in time
        (2, 59, []),
        (2, 60, [2]),  # still in Phase 2 at 60 minutes
        (3, 60, []),  # the scenario is decided
        (3, 600, []),
    ],
)
def test_due_time_boxes(runbook: Runbook, reached: int, minutes: float, due: list[int]) -> None:
    found = tb.due_time_boxes(runbook, reached=reached, elapsed=dt.timedelta(minutes=minutes))
    assert [box.phase for box in found] == due


def test_each_time_box_is_notified_once(runbook: Runbook) -> None:
    assert tb.due_time_boxes(runbook, reached=1, elapsed=20 * MIN, sent=["classified", "time_box:phase1"]) == []
    assert [b.phase for b in tb.due_time_boxes(runbook, reached=2, elapsed=61 * MIN, sent=["time_box:phase1"])] == [2]


def test_a_closed_or_recovered_incident_owes_nothing(runbook: Runbook) -> None:
    for status in ("mitigated", "recovered", "closed"):
        assert tb.due_time_boxes(runbook, reached=1, elapsed=90 * MIN, status=status) == []


def test_only_the_asked_phase(runbook: Runbook) -> None:
    # The 60-minute alert asks about Phase 2 only: a run stuck in Phase 1 was told at 15 minutes.
    assert tb.due_time_boxes(runbook, reached=1, elapsed=61 * MIN, phases=[2]) == []


def test_time_boxes_come_from_the_runbook() -> None:
    data = runbook_data()
    data["phase_time_boxes"] = {"detect": 10, "investigate": 45}
    runbook = parse_runbook(data)
    assert [b.phase for b in tb.due_time_boxes(runbook, reached=1, elapsed=10 * MIN)] == [1]
    assert [b.phase for b in tb.due_time_boxes(runbook, reached=2, elapsed=45 * MIN)] == [2]


def test_phase_1_notice_text(runbook: Runbook) -> None:
    text = tb.render_time_box_notice(
        runbook, tb.time_box(runbook, 1), incident_id="INC-20261204-a1b2c3", severity="P2",
        symptom="診断機能が動作しない", detected_at=dt.datetime(2026, 12, 4, 13, 0, tzinfo=dt.UTC),
        elapsed=dt.timedelta(minutes=15, seconds=40), to=["@鈴木 開発リード"], channel="#dev-team",
    )
    assert text == "\n".join([
        "@鈴木 開発リード 【時間枠超過】Phase 1: 検知と初期対応（0-15分）",
        "障害レベル: P2 / 症状: 診断機能が動作しない",
        "インシデントID: INC-20261204-a1b2c3",
        "発生時刻: 12/04(金) 22:00（15分経過）",
        "Phase 1（検知と初期対応）の時間枠を過ぎましたが、まだ完了していません。",
        "障害の確認・障害レベルの判定・インシデントの宣言（状況チャンネルの作成）を済ませてください。",
        "状況チャンネル: #dev-team",
    ])


def test_phase_2_notice_text(runbook: Runbook) -> None:
    text = tb.render_time_box_notice(
        runbook, tb.time_box(runbook, 2), incident_id="INC-1", severity="P1", symptom="ログイン  できない",
        detected_at=dt.datetime(2026, 12, 6, 23, 30, tzinfo=JST), elapsed=dt.timedelta(minutes=61),
    )
    assert text.splitlines() == [
        "【時間枠超過】Phase 2: 調査と診断（15-60分）",
        "障害レベル: P1 / 症状: ログイン できない",
        "インシデントID: INC-1",
        "発生時刻: 12/06(日) 23:30（1時間1分経過）",
        "Phase 2（調査と診断）の時間枠を過ぎましたが、まだ完了していません。",
        "調査結果をもとに復旧シナリオを決めてください（Airflow の choose_scenario で選択）。",
    ]
