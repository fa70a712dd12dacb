"""The incident_response_report task body: figures computed from a ledger filled with known
incidents, the Markdown/CSV/PNG files, and the Slack summary and chart posted once per week."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import pytest
from pytest_httpserver import HTTPServer

from incident_ops import artifacts
from incident_ops.clients.http import HttpClient, RetryPolicy
from incident_ops.clients.slack import IncidentSlack, make_web_client
from incident_ops.core.ledger import Ledger
from incident_ops.core.runbook import Runbook
from incident_ops.flows import scheduled
from tests.clients.conftest import FakeSlack, patch_slack_sleeps
from tests.flows.scheduled.conftest import RecordingSlack, add_incident, jst

AT = jst(2026, 11, 30, 9)  # Monday 9:00: the week 11/23 (a holiday) to 11/29
M = dt.timedelta(minutes=1)


@pytest.fixture
def filled(ledger: Ledger) -> dict[str, str]:
    ids = {}
    t = jst(2026, 11, 23, 3, 0)
    ids["a"] = add_incident(ledger, severity="P1", detected=t, declared=t + 4 * M, acknowledged=t + 12 * M,
                            recovered=t + 95 * M, channel="incident-20261123", channel_id="C1")["id"]
    t = jst(2026, 11, 25, 14, 0)
    ids["b"] = add_incident(ledger, severity="P1", detected=t, declared=t + 16 * M, acknowledged=t + 40 * M,
                            recovered=t + 185 * M)["id"]
    t = jst(2026, 11, 26, 20, 0)
    ids["c"] = add_incident(ledger, severity="P2", detected=t, declared=t + 2 * M, acknowledged=t + 20 * M,
                            recovered=t + 50 * M)["id"]
    t = jst(2026, 11, 27, 10, 0)
    ids["d"] = add_incident(ledger, severity="P3", detected=t, acknowledged=t + 90 * M, recovered=t + 240 * M)["id"]
    t = jst(2026, 11, 29, 22, 0)
    ids["e"] = add_incident(ledger, severity="P4", detected=t)["id"]
    t = jst(2026, 11, 24, 11, 0)
    ids["drill"] = add_incident(ledger, severity="P1", detected=t, check_mode=True, recovered=t + 10 * M)["id"]
    t = jst(2026, 11, 20, 23, 0)  # the week before: only its pending postmortem counts
    ids["old"] = add_incident(ledger, severity="P2", detected=t, declared=t + M, acknowledged=t + 5 * M,
                              recovered=t + 30 * M)["id"]
    ledger.mark_postmortem_done(ids["c"], jst(2026, 11, 27, 12))
    return ids


def report(runbook: Runbook, ledger: Ledger, slack, tmp_path: Path) -> dict:
    return scheduled.incident_response_report(AT, runbook=runbook, ledger=ledger, services=SimpleNamespace(slack=slack),
                                              out_dir=tmp_path / "reports")


def test_figures_from_the_ledger(runbook: Runbook, ledger: Ledger, slack: RecordingSlack, tmp_path: Path,
                                 filled: dict[str, str]) -> None:
    result = report(runbook, ledger, slack, tmp_path)
    assert (result["start"], result["end"]) == ("2026-11-23T00:00:00+09:00", "2026-11-30T00:00:00+09:00")
    assert result["incidents"] == 5 and result["drills"] == 1
    p1, p2, p3, p4 = result["severities"]
    assert (p1["incidents"], p1["median_minutes_to_declare"], p1["max_minutes_to_declare"]) == (2, 10.0, 16.0)
    assert (p1["median_minutes_to_acknowledge"], p1["max_minutes_to_acknowledge"], p1["ack_within_target"]) == (26.0, 40.0, 1)
    assert (p1["median_minutes_to_recover"], p1["max_minutes_to_recover"], p1["breaches"]) == (140.0, 185.0, 2)
    assert (p2["incidents"], p2["median_minutes_to_acknowledge"], p2["ack_within_target"], p2["breaches"]) == (1, 20.0, 1, 0)
    assert (p3["incidents"], p3["median_minutes_to_acknowledge"], p3["ack_within_target"], p3["breaches"]) == (1, 90.0, 1, 0)
    # The P4 detected Sunday 22:00 has until Monday 22:00 to be answered: no breach yet at 9:00.
    assert (p4["incidents"], p4["acknowledged"], p4["breaches"]) == (1, 0, 0)
    assert [(b["incident_id"], b["kind"]) for b in result["breaches"]] == [(filled["b"], "declare"), (filled["b"], "acknowledge")]
    # Every postmortem still owed, whenever detected (a dry run's too: the ledger says it is due).
    outstanding = [(row["id"], row["overdue"]) for row in result["outstanding_postmortems"]]
    assert outstanding == [(filled["old"], True), (filled["a"], True), (filled["drill"], True), (filled["b"], True)]


def test_files_and_one_post_per_week(runbook: Runbook, ledger: Ledger, slack: RecordingSlack, tmp_path: Path,
                                     filled: dict[str, str]) -> None:
    result = report(runbook, ledger, slack, tmp_path)
    # URLs of the artifacts store (here file:// under tmp_path), read back through it.
    assert all(url.startswith(f"file://{tmp_path / 'reports'}/") for url in result["files"].values())
    files = {name: Path(url.removeprefix("file://")) for name, url in result["files"].items()}
    assert files["markdown"].name == "incident-response-2026-11-23.md"
    markdown = files["markdown"].read_text(encoding="utf-8")
    assert markdown.startswith("# 障害対応レポート 2026-11-23(月) 〜 2026-11-29(日)\n")
    assert "| P1 Critical | 2 | 10分 / 16分 | 26分 / 40分 | 15分以内 | 1/2 | 2時間20分 / 3時間5分 | 2 |" in markdown
    rows = list(csv.DictReader(files["csv"].open(encoding="utf-8")))
    assert [row["incident_id"] for row in rows] == [filled[k] for k in ("a", "b", "c", "d", "e")]
    assert rows[1]["minutes_to_acknowledge"] == "40.0" and rows[1]["ack_within_target"] == "False"
    summary = list(csv.DictReader(files["summary_csv"].open(encoding="utf-8")))
    assert [row["severity"] for row in summary] == ["P1", "P2", "P3", "P4"]
    assert files["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["posted"] == {"summary": True, "chart": True, "ts": slack.messages[0]["ts"]}
    [message] = slack.messages
    assert message["channel"] == "#dev-team" and message["key"] == "incident_response_report:2026-11-23"
    assert message["text"].startswith("【週次 障害対応レポート】2026-11-23(月) 〜 2026-11-29(日)\nインシデント: 5件")
    assert "未完了のポストモーテム: 4件（うち期限超過 4件）" in message["text"]
    [upload] = slack.uploads
    assert upload["key"] == "incident_response_report:2026-11-23:chart" and upload["bytes"][:4] == b"\x89PNG"
    again = report(runbook, ledger, slack, tmp_path)
    assert again["posted"]["summary"] is False and again["posted"]["chart"] is False
    assert len(slack.messages) == 1 and len(slack.uploads) == 1


def test_a_quiet_week(runbook: Runbook, ledger: Ledger, slack: RecordingSlack, tmp_path: Path) -> None:
    result = report(runbook, ledger, slack, tmp_path)
    assert result["incidents"] == 0 and result["breaches"] == []
    assert "期間内のインシデントはありません。" in artifacts.read_text(result["files"]["markdown"])
    assert "・期間内のインシデントはありません" in slack.messages[0]["text"]


def test_the_files_go_to_the_artifacts_store(runbook: Runbook, ledger: Ledger, slack: RecordingSlack,
                                             monkeypatch: pytest.MonkeyPatch, moto_s3, filled: dict[str, str]) -> None:
    # No out_dir: `<INCIDENT_OPS_ARTIFACTS_URL>/reports`, here s3:// (no worker's disk); XCom gets URLs.
    monkeypatch.setenv(artifacts.ARTIFACTS_URL_ENV, "s3://pb-incidents/incident-ops")
    result = scheduled.incident_response_report(AT, runbook=runbook, ledger=ledger, services=SimpleNamespace(slack=slack))
    base = "s3://pb-incidents/incident-ops/reports/incident-response-2026-11-23"
    assert result["files"] == {"markdown": f"{base}.md", "csv": f"{base}-incidents.csv",
                               "summary_csv": f"{base}-summary.csv", "chart": f"{base}.png"}
    assert "## " in artifacts.read_text(result["files"]["markdown"])
    assert artifacts.read_bytes(result["files"]["chart"]) == slack.uploads[0]["bytes"]
    assert f"{base}.md" in slack.messages[0]["text"]


def test_report_through_the_slack_api(runbook: Runbook, ledger: Ledger, tmp_path: Path, httpserver: HTTPServer,
                                      monkeypatch: pytest.MonkeyPatch, filled: dict[str, str]) -> None:
    patch_slack_sleeps(monkeypatch)
    fake = FakeSlack(httpserver)
    channel = fake.add_channel("dev-team")
    client = IncidentSlack(make_web_client("xoxb-test", base_url=fake.base_url, max_retries=1, backoff_factor=0.0),
                           uploader=HttpClient("", policy=RetryPolicy(backoff=0.0)))
    for _ in range(2):
        report(runbook, ledger, client, tmp_path)
    messages = fake.all_messages(channel)
    assert len(messages) == 2  # the summary and the chart, once each
    assert messages[0]["text"].startswith("【週次 障害対応レポート】")
    assert [f["name"] for f in messages[1]["files"]] == ["incident-response-2026-11-23.png"]
