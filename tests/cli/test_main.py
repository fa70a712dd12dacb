"""`python -m incident_ops`: subcommands, JSON output, exit codes, and errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from incident_ops.cli.main import COMMANDS, main
from incident_ops.core.runbook import DEFAULT_RUNBOOK_PATH

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


@pytest.fixture
def broken_runbook(tmp_path: Path) -> Path:
    data = yaml.safe_load(DEFAULT_RUNBOOK_PATH.read_text(encoding="utf-8"))
    data["triage"]["symptoms"][1]["severity"] = "P5"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_the_subcommands_are_registered() -> None:
    assert {"validate", "severity", "route", "oncall"} <= set(COMMANDS)


def test_validate_the_project_runbook(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate"]) == 0
    out = capsys.readouterr().out
    assert "valid" in out
    assert "P1, P2, P3, P4" in out
    assert "production, staging" in out


def test_validate_json_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "validate", str(DEFAULT_RUNBOOK_PATH))
    assert code == 0
    assert data["valid"] is True
    assert data["severities"] == ["P1", "P2", "P3", "P4"]
    assert "login_failure" in data["symptoms"]
    assert data["scenarios"] == ["deploy", "resource", "database", "external", "security"]
    assert data["environments"] == ["production", "staging"]


def test_validate_a_broken_runbook_names_the_key(capsys: pytest.CaptureFixture[str], broken_runbook: Path) -> None:
    assert main(["validate", str(broken_runbook)]) != 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "triage.symptoms[1].severity" in captured.err

    code, data = run_json(capsys, "validate", str(broken_runbook))
    assert code == 2
    assert set(data) == {"error"}
    assert "triage.symptoms[1].severity" in data["error"]


def test_a_broken_runbook_stops_every_command(capsys: pytest.CaptureFixture[str], broken_runbook: Path) -> None:
    code, data = run_json(capsys, "--runbook", str(broken_runbook), "severity", "ログインできない")
    assert code == 2
    assert "triage.symptoms[1].severity" in data["error"]


def test_a_missing_runbook_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, data = run_json(capsys, "validate", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert "cannot read the runbook" in data["error"]


def test_severity_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "severity", "ログインできない")
    assert code == 0
    assert {"severity", "rule", "symptom", "label", "impact"} <= set(data)
    assert data["severity"] == "P1"
    assert data["symptom"] == "login_failure"
    assert data["label"] == "ログインできない"
    assert data["impact"] == "全ユーザー / ログイン"


def test_severity_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["severity", "UIの表示崩れ"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("P4 Low")
    assert "ui_broken" in out


def test_severity_from_an_alarm(capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "severity", "--alarm", "peoplebooster-production-health-check-failed")
    assert code == 0
    assert (data["severity"], data["symptom"]) == ("P1", "all_users_down")
    assert "peoplebooster-production-health-check-failed" in data["rule"]


def test_severity_unmatched_and_override(capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "severity", "something odd")
    assert (code, data["severity"], data["symptom"]) == (0, "P2", None)
    assert data["rule"].startswith("unmatched")
    code, data = run_json(capsys, "severity", "something odd", "--override", "P4")
    assert (code, data["severity"]) == (0, "P4")


def test_severity_errors(capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "severity", "x", "--override", "P7")
    assert code == 2 and "override" in data["error"]
    code, data = run_json(capsys, "severity", "x", "--env", "nowhere")
    assert code == 2
    assert data["error"].startswith("unknown environment 'nowhere'")


def test_route_p4_friday_night_waits_for_monday(capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "route", "--severity", "P4", "--at", "2026-11-13T20:00:00+09:00")
    assert code == 0
    assert data["severity"] == "P4"
    assert data["at"] == "2026-11-13T20:00:00+09:00"
    (notice,) = data["notifications"]
    assert notice["target"] == "dev_team"
    assert notice["via"] == "slack"
    assert notice["not_before"] == "2026-11-16T09:00:00+09:00"
    assert notice["channel"] == "#dev-team"
    assert notice["recipients"] == []


def test_route_on_a_holiday_in_utc(capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "route", "--severity", "P2", "--at", "2026-11-23T01:00:00Z")
    assert code == 0
    assert data["at"] == "2026-11-23T10:00:00+09:00"
    oncall, lead = data["notifications"]
    assert (oncall["target"], oncall["via"], oncall["recipients"][0]["id"]) == ("oncall", "pagerduty", "ito")
    assert (lead["target"], lead["via"], lead["recipients"][0]["id"]) == ("dev_lead", "slack", "dev_lead")
    assert {"id", "name", "slack_user_id", "pagerduty_user_id"} <= set(oncall["recipients"][0])
    assert oncall["not_before"] == "2026-11-23T10:00:00+09:00"


def test_route_unacknowledged(capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "route", "--severity", "P1", "--at", "2026-11-24T10:15:00+09:00", "--unacknowledged")
    assert code == 0
    assert [(n["target"], n["via"]) for n in data["notifications"]] == [("cto", "phone"), ("dev_lead", "slack")]


def test_route_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["route", "--severity", "P4", "--at", "2026-11-20T20:00:00+09:00"]) == 0
    out = capsys.readouterr().out
    assert "#dev-team" in out
    assert "2026-11-24 09:00" in out


def test_route_defaults_to_now(capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "route", "--severity", "P1")
    assert code == 0
    assert data["at"].endswith("+09:00")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["route", "--severity", "P9", "--at", "2026-11-24T10:00:00+09:00"], "unknown severity 'P9'"),
        (["route", "--severity", "P1", "--at", "2026-11-24T10:00:00"], "needs a UTC offset"),
        (["route", "--severity", "P1", "--at", "tomorrow"], "not an ISO-8601"),
        (["oncall", "--at", "2026-11-24 10:00"], "needs a UTC offset"),
    ],
)
def test_bad_values_exit_2_with_one_json_error(
    capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    code, data = run_json(capsys, *argv)
    assert code == 2
    assert set(data) == {"error"}
    assert fragment in data["error"]


def test_errors_without_json_go_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["route", "--severity", "P9", "--at", "2026-11-24T10:00:00+09:00"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "unknown severity 'P9'" in captured.err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "no-such-command")
    assert code == 2
    assert "invalid choice" in data["error"]
    assert main(["route"]) == 2  # --severity is required
    assert "--severity" in capsys.readouterr().err
    assert main([]) == 2


def test_oncall_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "oncall", "--at", "2026-11-20T20:00:00+09:00")
    assert code == 0
    assert set(data) == {"at", "mode", "on_call", "rotation_engineer", "until", "next_handoffs"}
    assert data["mode"] == "off_hours"
    assert data["on_call"] == ["yamada"]
    assert data["rotation_engineer"] == "yamada"
    assert data["until"] == "2026-11-23T10:00:00+09:00"
    assert data["next_handoffs"][0] == {"at": "2026-11-23T10:00:00+09:00", "outgoing": "yamada", "incoming": "ito"}
    assert len(data["next_handoffs"]) == 3


def test_oncall_business_hours_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["oncall", "--at", "2026-11-24T10:00:00+09:00", "--handoffs", "1"]) == 0
    out = capsys.readouterr().out
    assert "business_hours until 2026-11-24 18:00" in out
    assert "鈴木 開発リード" in out


def test_json_flag_before_the_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--json", "severity", "ログインできない"]) == 0
    assert json.loads(capsys.readouterr().out)["severity"] == "P1"


@pytest.mark.process
def test_python_dash_m(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "plugins")}
    ok = subprocess.run(
        [sys.executable, "-m", "incident_ops", "oncall", "--at", "2026-11-24T20:00:00+09:00", "--json"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["on_call"] == ["ito"]

    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nproduct: x\nseverities: {P5: {}}\n", encoding="utf-8")
    bad = subprocess.run(
        [sys.executable, "-m", "incident_ops", "validate", str(broken)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert str(broken) in bad.stderr


@pytest.mark.parametrize("symptom", ["", "   ", "　", "あ" * 501])
def test_a_symptom_the_trigger_form_refuses_is_refused(symptom: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["severity", symptom, "--json"]) == 2
    error = json.loads(capsys.readouterr().out)["error"]
    assert error.startswith("symptom:")


def test_a_symptom_at_the_forms_limit_is_classified(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["severity", "ログインできない" + "。" * 492, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["severity"] in ("P1", "P2", "P3", "P4")


def test_severity_needs_a_symptom_or_an_alarm(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["severity", "--json"]) == 2
    assert "symptom" in json.loads(capsys.readouterr().out)["error"]


def test_playbook_with_aws_unreachable_says_why_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once; one attempt
    # (the collection's botocore config retries 8 times, which only slows the test down).
    from botocore.config import Config

    from incident_ops import services

    monkeypatch.setattr(services, "aws_client_config", lambda **_: Config(retries={"mode": "standard", "max_attempts": 1}))
    for name, value in {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x",
                        "AWS_SECRET_ACCESS_KEY": "y", "AWS_DEFAULT_REGION": "ap-northeast-1",
                        "AWS_MAX_ATTEMPTS": "1", "AWS_RETRY_MODE": "standard"}.items():
        monkeypatch.setenv(name, value)
    assert main(["playbook", "deploy", "--env", "production", "--check", "--json"]) == 1
    out = capsys.readouterr().out
    error = json.loads(out)["error"]
    assert "EndpointConnectionError" in error and "Traceback" not in out


@pytest.mark.parametrize(
    ("severity", "at", "work_from", "deadline"),
    [
        # A P4 on a Friday evening: work may start Monday 9:00, and the 24 h count from then.
        ("P4", "2026-12-04T18:30:00+09:00", "2026-12-07T09:00:00+09:00", "2026-12-08T09:00:00+09:00"),
        # Over the year-end days off (12/29–1/3): the first business day of the year.
        ("P4", "2026-12-28T20:00:00+09:00", "2027-01-04T09:00:00+09:00", "2027-01-05T09:00:00+09:00"),
        # A P1 never waits.
        ("P1", "2026-12-05T03:00:00+09:00", "2026-12-05T03:00:00+09:00", "2026-12-05T03:15:00+09:00"),
    ],
)
def test_route_names_when_work_may_start_and_the_deadline(
    severity: str, at: str, work_from: str, deadline: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["route", "--severity", severity, "--at", at, "--json"]) == 0
    response = json.loads(capsys.readouterr().out)["response"]
    assert (response["work_from"], response["deadline"]) == (work_from, deadline)
    assert response["deferred"] == (work_from != at)
