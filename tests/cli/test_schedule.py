"""`python -m incident_ops handoff|reminders|postmortem-done`: what the scheduled DAGs would do at an
instant, read from the ledger (INCIDENT_OPS_LEDGER_URL) and the roster; JSON and text output."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from incident_ops.cli.main import COMMANDS, build_parser, main
from incident_ops.core.ledger import LEDGER_URL_ENV, Ledger
from tests.flows.scheduled.conftest import add_incident, jst

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv(LEDGER_URL_ENV, url)
    ledger = Ledger(url)
    yield ledger
    ledger.dispose()


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_the_subcommands_are_registered() -> None:
    build_parser()  # imports COMMAND_MODULES
    assert {"handoff", "reminders", "postmortem-done"} <= set(COMMANDS)


def test_weekly_handoff(capsys: pytest.CaptureFixture[str], ledger: Ledger) -> None:
    add_incident(ledger, severity="P1", detected=jst(2026, 11, 8, 23), title="ログインできない")
    code, data = run_json(capsys, "handoff", "--at", "2026-11-02T10:00:00+09:00")
    assert code == 0
    assert data["kind"] == "handoff" and data["reason"] is None and data["source"] == "roster"
    assert (data["outgoing"]["id"], data["incoming"]["id"]) == ("ito", "watanabe")
    assert [p["id"] for p in data["on_call"]] == ["tanaka", "yamada", "ito", "watanabe", "dev_lead"]
    assert data["text"].splitlines()[:2] == ["【オンコール交代】11/02(月) 10:00", "<@U0ITO0001> → <@U0WATANA1> にオンコール担当を引き継ぎます。"]
    # As of 11/02 the incident of 11/08 did not exist yet.
    assert "対応中のインシデント: 0件" in data["text"]
    assert data["already_posted"] is False
    assert data["next_slot"] == {"at": "2026-11-02T18:00:00+09:00", "kind": "off_hours", "key": "oncall:off_hours:2026-11-02T18:00+09:00"}
    code, later = run_json(capsys, "handoff", "--at", "2026-11-09T10:00:00+09:00")
    assert "対応中のインシデント: 1件" in later["text"] and "ログインできない" in later["text"]


@pytest.mark.parametrize(
    ("instant", "kind", "on_call"),
    [
        ("2026-11-04T09:00:00+09:00", "business_hours", ["tanaka", "yamada", "ito", "watanabe", "dev_lead"]),
        ("2026-11-04T18:00:00+09:00", "off_hours", ["watanabe"]),
        ("2026-11-04T09:00:00Z", "off_hours", ["watanabe"]),  # 18:00 JST
        ("2026-11-23T10:00:00+09:00", "handoff", ["ito"]),
        ("2026-11-24T09:00:00+09:00", "business_hours", ["tanaka", "yamada", "ito", "watanabe", "dev_lead"]),
        ("2026-12-28T18:00:00+09:00", "off_hours", ["watanabe"]),  # the last one before 年末年始
        ("2027-01-04T10:00:00+09:00", "handoff", ["tanaka", "yamada", "ito", "watanabe", "dev_lead"]),
    ],
)
def test_slots(capsys: pytest.CaptureFixture[str], ledger: Ledger, instant: str, kind: str, on_call: list[str]) -> None:
    code, data = run_json(capsys, "handoff", "--at", instant)
    assert code == 0 and data["kind"] == kind
    assert [p["id"] for p in data["on_call"]] == on_call


@pytest.mark.parametrize(
    ("instant", "reason"),
    [
        ("2026-11-03T09:00:00+09:00", "11/03(火・文化の日) は休日のため交代の通知はありません"),
        ("2026-11-23T18:00:00+09:00", "11/23(月・勤労感謝の日) は休日のため交代の通知はありません"),
        ("2027-01-01T09:00:00+09:00", "01/01(金・元日) は休日のため交代の通知はありません"),
        ("2026-12-30T18:00:00+09:00", "12/30(水・年末年始) は休日のため交代の通知はありません"),
        ("2026-11-04T08:59:00+09:00", "11/04(水) 08:59 は交代の時刻ではありません（次は 11/04(水) 09:00 業務時間開始）"),
    ],
)
def test_no_slot(capsys: pytest.CaptureFixture[str], ledger: Ledger, instant: str, reason: str) -> None:
    code, data = run_json(capsys, "handoff", "--at", instant)
    assert code == 0
    assert (data["kind"], data["reason"], data["text"], data["on_call"]) == ("none", reason, None, [])


def test_handoff_text_output(capsys: pytest.CaptureFixture[str], ledger: Ledger) -> None:
    assert main(["handoff", "--at", "2026-11-20T18:00:00+09:00", "--plain"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2026-11-20 18:00 JST: off_hours → #dev-team\n\n【業務時間終了・オンコール開始】11/20(金) 18:00\n")
    assert "ここからはオンコール担当 @山田 花子 が対応します" in out


def test_handoff_reports_a_posted_slot(capsys: pytest.CaptureFixture[str], ledger: Ledger) -> None:
    ledger.record_notice("oncall:handoff:2026-11-02T10:00+09:00", jst(2026, 11, 2, 10), {"ts": "1.1"})
    _, data = run_json(capsys, "handoff", "--at", "2026-11-02T10:00:00+09:00")
    assert data["already_posted"] is True


def test_handoff_needs_an_offset(capsys: pytest.CaptureFixture[str], ledger: Ledger) -> None:
    code, data = run_json(capsys, "handoff", "--at", "2026-11-02T10:00:00")
    assert code == 2 and "UTC offset" in data["error"]


def test_reminders_and_done(capsys: pytest.CaptureFixture[str], ledger: Ledger) -> None:
    # Tuesday 10:00: +24 h and +48 h are in business hours (postmortem.align moves nothing).
    recovered = jst(2026, 11, 24, 10, 0)
    p1 = add_incident(ledger, severity="P1", detected=recovered - dt.timedelta(hours=2), recovered=recovered,
                      acknowledged=recovered - dt.timedelta(hours=1), by="田中 太郎",
                      channel="incident-20261120", channel_id="C0INC1120")["id"]
    add_incident(ledger, severity="P3", detected=recovered, recovered=recovered + dt.timedelta(hours=1))
    code, early = run_json(capsys, "reminders", "--at", "2026-11-25T09:30:00+09:00")
    assert code == 0 and early["due"] == []
    assert [(row["incident_id"], row["stage_now"], row["sent"]) for row in early["pending"]] == [(p1, None, [])]
    _, day = run_json(capsys, "reminders", "--at", "2026-11-25T10:00:00+09:00")
    [due] = day["due"]
    assert (due["incident_id"], due["stage"], due["targets"]) == (p1, "reminder", ["C0INC1120", "U0TANAKA1"])
    assert due["text"].startswith(f"<@U0TANAKA1> 【ポストモーテムのリマインド】P1 {p1}")
    _, late = run_json(capsys, "reminders", "--at", "2026-11-26T10:30:00+09:00")
    assert [(d["stage"], d["targets"]) for d in late["due"]] == [("overdue", ["C0INC1120", "U0TANAKA1", "U0LEAD001"])]
    # The CLI only reads: nothing was recorded, so the stage is still due.
    assert not [e for e in ledger.events(p1) if e["kind"].startswith("postmortem_")]

    code, done = run_json(capsys, "postmortem-done", p1, "--at", "2026-11-26T10:00:00+09:00", "--path", "docs/pm.md")
    assert code == 0 and done["first"] is True and done["postmortem_path"] == "docs/pm.md"
    assert done["postmortem_done_at"] == "2026-11-26T10:00:00+09:00"
    _, after = run_json(capsys, "reminders", "--at", "2026-11-26T10:30:00+09:00")
    assert after["due"] == [] and after["pending"] == []
    _, again = run_json(capsys, "postmortem-done", p1)
    assert again["first"] is False and again["postmortem_done_at"] == "2026-11-26T10:00:00+09:00"


def test_done_for_an_unknown_incident(capsys: pytest.CaptureFixture[str], ledger: Ledger) -> None:
    code, data = run_json(capsys, "postmortem-done", "INC-20261120-ffffff")
    assert code == 2 and "no incident 'INC-20261120-ffffff'" in data["error"]


@pytest.mark.process
def test_as_a_module(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "plugins"), LEDGER_URL_ENV: f"sqlite:///{tmp_path / 'l.db'}"}
    result = subprocess.run(
        [sys.executable, "-m", "incident_ops", "handoff", "--at", "2026-11-16T10:00:00+09:00", "--json"],
        env=env, capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["kind"], data["outgoing"]["id"], data["incoming"]["id"]) == ("handoff", "tanaka", "yamada")
