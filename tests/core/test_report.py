"""The weekly response report: the period, per-severity figures against the targets, breaches,
outstanding postmortems, and the Markdown/CSV/Slack renderings, from known incidents."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from incident_ops.core.report import (
    DECLARE_TARGET,
    build_report,
    format_span,
    incident_figures,
    incidents_csv,
    render_markdown,
    render_summary,
    report_period,
    summary_csv,
)
from incident_ops.core.runbook import Runbook

JST = ZoneInfo("Asia/Tokyo")
AT = dt.datetime(2026, 11, 23, 9, 0, tzinfo=JST)  # Monday 9:00 (勤労感謝の日: the report runs anyway)
START, END = dt.datetime(2026, 11, 16, tzinfo=JST), dt.datetime(2026, 11, 23, tzinfo=JST)


def jst(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=JST)


def minutes(n: float) -> dt.timedelta:
    return dt.timedelta(minutes=n)


def make(incident_id: str, severity: str, detected: dt.datetime, *, declare: float | None = None,
         ack: float | None = None, recover: float | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "id": incident_id,
        "severity": severity,
        "status": "recovered" if recover is not None else "open",
        "title": f"{incident_id} の件",
        "detected_at": detected,
        "declared_at": detected + minutes(declare) if declare is not None else None,
        "acknowledged_at": detected + minutes(ack) if ack is not None else None,
        "recovered_at": detected + minutes(recover) if recover is not None else None,
        "check_mode": False,
        **fields,
    }


INCIDENTS = [
    make("A", "P1", jst(2026, 11, 17, 10), declare=5, ack=10, recover=90),
    make("B", "P1", jst(2026, 11, 18, 2), declare=20, ack=25, recover=180),
    make("C", "P2", jst(2026, 11, 19, 14), declare=3, ack=30, recover=45),
    make("D", "P3", jst(2026, 11, 20, 9), ack=121, recover=300),
    make("E", "P4", jst(2026, 11, 22, 12)),
    make("F", "P2", jst(2026, 11, 22, 23)),
    make("G", "P1", jst(2026, 11, 18, 4), declare=1, ack=100, recover=200, check_mode=True),
    make("H", "P1", jst(2026, 11, 15, 23, 59), declare=1, ack=100),
    make("I", "P1", jst(2026, 11, 23, 0, 0), declare=1, ack=100),
]
PENDING = [
    {**make("C", "P2", jst(2026, 11, 19, 14), recover=45), "postmortem_due_at": jst(2026, 11, 21, 14, 45), "postmortem_done_at": None},
    {**make("J", "P1", jst(2026, 11, 22, 19), recover=60), "postmortem_due_at": jst(2026, 11, 24, 20), "postmortem_done_at": None},
    {**make("K", "P3", jst(2026, 11, 10, 9), recover=60), "postmortem_due_at": jst(2026, 11, 12, 10), "postmortem_done_at": None},
]


@pytest.fixture
def report(runbook: Runbook):
    return build_report(runbook, INCIDENTS, PENDING, start=START, end=END, at=AT)


@pytest.mark.parametrize(
    "at",
    [AT, jst(2026, 11, 23, 0, 0), jst(2026, 11, 29, 23, 59), dt.datetime(2026, 11, 23, 0, 0, tzinfo=dt.UTC)],
)
def test_the_period_is_last_monday_to_monday(runbook: Runbook, at: dt.datetime) -> None:
    assert report_period(runbook, at) == (START, END)


def test_format_span() -> None:
    assert [format_span(v) for v in (None, minutes(0.5), minutes(12), minutes(60), minutes(135), minutes(26 * 60))] == [
        "—", "1分未満", "12分", "1時間0分", "2時間15分", "26時間0分",
    ]


def test_incidents_in_the_period_and_drills_apart(report) -> None:
    assert [item.id for item in report.incidents] == ["A", "B", "C", "D", "E", "F"]
    assert report.drills == 1
    assert report.key == "incident_response_report:2026-11-16"
    assert report.stem == "incident-response-2026-11-16"


def test_per_severity_figures(report) -> None:
    p1, p2, p3, p4 = report.severities
    assert (p1.count, p1.declared, p1.acknowledged, p1.recovered) == (2, 2, 2, 2)
    assert (p1.declare_median, p1.declare_max) == (minutes(12.5), minutes(20))
    assert (p1.ack_median, p1.ack_max, p1.ack_target) == (minutes(17.5), minutes(25), minutes(15))
    assert (p1.recover_median, p1.recover_max) == (minutes(135), minutes(180))
    assert (p1.ack_within_target, p1.breaches) == (1, 2)
    assert (p2.count, p2.declared, p2.ack_median, p2.ack_target, p2.ack_within_target, p2.breaches) == (
        2, 1, minutes(30), minutes(30), 1, 2,
    )
    assert (p3.count, p3.ack_median, p3.ack_target, p3.ack_within_target, p3.breaches) == (1, minutes(121), minutes(120), 0, 1)
    assert (p4.count, p4.acknowledged, p4.ack_median, p4.ack_target, p4.breaches) == (1, 0, None, minutes(1440), 0)


def test_breaches(report) -> None:
    assert [(b.incident_id, b.kind, b.text) for b in report.breaches] == [
        ("B", "declare", "宣言まで 20分（目標: 15分以内）"),
        ("B", "acknowledge", "対応開始まで 25分（目標: 15分以内）"),
        ("D", "acknowledge", "対応開始まで 2時間1分（目標: 2時間以内）"),
        ("F", "declare", "宣言の記録がありません"),
        ("F", "acknowledge", "対応開始の記録がありません（目標: 30分以内）"),
    ]


def test_no_breach_before_the_target_has_passed(runbook: Runbook) -> None:
    fresh = make("N", "P2", AT - minutes(10))
    assert incident_figures(runbook, fresh, AT).breaches == []
    assert [b.kind for b in incident_figures(runbook, fresh, AT + minutes(6)).breaches] == ["declare"]
    assert [b.kind for b in incident_figures(runbook, fresh, AT - minutes(10) + DECLARE_TARGET + minutes(15)).breaches] == [
        "declare", "acknowledge",
    ]
    # P3/P4 are not declared in Slack: no declaration breach.
    assert incident_figures(runbook, make("Q", "P3", AT), AT + minutes(60)).breaches == []
    exactly = incident_figures(runbook, make("X", "P2", AT, declare=15, ack=30), AT + minutes(60))
    assert exactly.breaches == [] and exactly.ack_met and exactly.declare_met


def test_outstanding_postmortems(report) -> None:
    assert [(row["id"], row["overdue"], row["due_at"]) for row in report.outstanding] == [
        ("C", True, jst(2026, 11, 21, 14, 45)),
        ("J", False, jst(2026, 11, 24, 20)),
    ]


def test_markdown(runbook: Runbook, report) -> None:
    text = render_markdown(runbook, report)
    assert text.startswith("# 障害対応レポート 2026-11-16(月) 〜 2026-11-22(日)\n")
    assert text.endswith("\n")
    assert "- インシデント: 6件（ほかにチェックモード（dry run）の 1件は集計対象外）" in text
    assert "| P1 Critical | 2 | 12分 / 20分 | 17分 / 25分 | 15分以内 | 1/2 | 2時間15分 / 3時間0分 | 2 |" in text
    assert "| P3 Medium | 1 | 対象外 | 2時間1分 / 2時間1分 | 2時間以内 | 0/1 | 5時間0分 / 5時間0分 | 1 |" in text
    assert "| P4 Low | 1 | 対象外 | — | 24時間以内 | 0/1 | — | 0 |" in text
    assert "| B | P1 | 宣言まで 20分（目標: 15分以内） |" in text
    assert "| F | P2 | F の件 | 11/22(日) 23:00 | — | — | — | 対応中 | あり |" in text
    assert "| C | P2 | C の件 | 11/19(木) 14:45 | 11/21(土) 14:45 | 期限超過 |" in text


def test_markdown_for_a_quiet_week(runbook: Runbook) -> None:
    empty = build_report(runbook, [], [], start=START, end=END, at=AT)
    text = render_markdown(runbook, empty)
    assert "目標超過はありません。" in text and "期間内のインシデントはありません。" in text
    assert "未完了のポストモーテムはありません。" in text
    assert "| P1 Critical | 0 | — | — | 15分以内 | — | — | 0 |" in text


def test_slack_summary(runbook: Runbook, report) -> None:
    text = render_summary(runbook, report, files=["state/reports/x.md"])
    lines = text.splitlines()
    assert lines[0] == "【週次 障害対応レポート】2026-11-16(月) 〜 2026-11-22(日)"
    assert lines[1] == "インシデント: 6件（P1: 2 / P2: 2 / P3: 1 / P4: 1） ※チェックモード（dry run）の 1件は集計対象外"
    assert "・P1: 17分 / 25分（目標 15分以内、1/2）" in lines
    assert "目標超過: 5件" in lines
    assert "未完了のポストモーテム: 2件（うち期限超過 1件）" in lines
    assert "・C P2 C の件: 期限 11/21(土) 14:45（期限超過）" in lines
    assert lines[-1] == "詳細: state/reports/x.md"


def test_slack_summary_escapes_titles(runbook: Runbook) -> None:
    pending = [{**PENDING[1], "title": "<!channel> & co"}]
    text = render_summary(runbook, build_report(runbook, [], pending, start=START, end=END, at=AT))
    assert "&lt;!channel&gt; &amp; co" in text and "<!channel>" not in text


def test_csv_files(report) -> None:
    rows = list(csv.DictReader(io.StringIO(incidents_csv(report))))
    assert [row["incident_id"] for row in rows] == ["A", "B", "C", "D", "E", "F"]
    b = rows[1]
    assert (b["minutes_to_declare"], b["minutes_to_acknowledge"], b["minutes_to_recover"], b["ack_target_minutes"]) == (
        "20.0", "25.0", "180.0", "15.0",
    )
    assert (b["ack_within_target"], b["declare_within_target"]) == ("False", "False")
    assert b["detected_at"] == "2026-11-18T02:00:00+09:00"
    assert rows[4]["minutes_to_acknowledge"] == "" and rows[4]["declare_within_target"] == ""
    summary = {row["severity"]: row for row in csv.DictReader(io.StringIO(summary_csv(report)))}
    assert list(summary) == ["P1", "P2", "P3", "P4"]
    assert (summary["P1"]["incidents"], summary["P1"]["median_minutes_to_acknowledge"], summary["P1"]["breaches"]) == ("2", "17.5", "2")
    assert summary["P4"]["median_minutes_to_acknowledge"] == ""


def test_report_as_dict(report) -> None:
    data = report.to_dict()
    assert data["incidents"] == 6 and data["drills"] == 1 and len(data["breaches"]) == 5
    assert data["outstanding_postmortems"][0]["id"] == "C"
    assert data["severities"][0]["median_minutes_to_recover"] == 135.0


# --- P4 翌営業日可: time to acknowledge counts from the next business day's 9:00 ----------------------


def test_a_p4_reported_on_friday_evening_is_measured_from_monday_9(runbook: Runbook) -> None:
    friday = jst(2026, 12, 4, 18, 30)
    answered = incident_figures(runbook, make("P4a", "P4", friday, ack=63.5 * 60), jst(2026, 12, 14, 9, 0))
    # Acknowledged Monday 10:00: 1 hour after work could start, within the 24 h target.
    assert answered.acknowledged_at == jst(2026, 12, 7, 10, 0)
    assert answered.to_acknowledge == dt.timedelta(hours=1) and answered.ack_met is True
    assert answered.breaches == []
    early = incident_figures(runbook, make("P4b", "P4", friday, ack=60), jst(2026, 12, 14, 9, 0))
    assert early.to_acknowledge == dt.timedelta(0) and early.ack_met is True  # picked up on Friday night


def test_a_p4_without_acknowledgement_breaches_only_after_its_deadline(runbook: Runbook) -> None:
    item = make("P4c", "P4", jst(2026, 12, 4, 18, 30))
    # Saturday 18:30 is 24 h after the report, but work could start only on Monday 9:00.
    assert incident_figures(runbook, item, jst(2026, 12, 6, 12, 0)).breaches == []
    assert incident_figures(runbook, item, jst(2026, 12, 8, 8, 59)).breaches == []
    (breach,) = incident_figures(runbook, item, jst(2026, 12, 8, 9, 0)).breaches
    assert breach.text == "対応開始の記録がありません（目標: 24時間以内）"


def test_a_p4_in_business_hours_counts_from_detection(runbook: Runbook) -> None:
    item = incident_figures(runbook, make("P4d", "P4", jst(2026, 12, 1, 14, 0), ack=25 * 60), jst(2026, 12, 7))
    assert item.to_acknowledge == dt.timedelta(hours=25) and item.ack_met is False
    assert item.breaches[0].text == "対応開始まで 25時間0分（目標: 24時間以内）"
