"""The demo's paths, addresses and login, checked without starting anything: a relative --state or
--report is taken from the current directory (Airflow refuses a relative SQLite URL), everything the
local stack starts listens on 127.0.0.1 only, and the admin password belongs to the state folder
(generated once, kept across the demo's wipe, never a constant)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from scripts import demo
from scripts.airflow_local import ADMIN_PASSWORD_FILE, DEMO_USER, admin_password, api_token, login_for
from scripts.incident_runner import AirflowApi, LocalStack


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_a_relative_state_gives_airflow_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    stack = LocalStack(Path("state/demo-once"), port=18080, runbook=Path("runbook.yaml"))
    state = tmp_path / "state" / "demo-once"
    assert stack.state_dir == state and stack.runbook == tmp_path / "runbook.yaml"

    env = stack.airflow_environment({"EXTRA": "1"})
    database = make_url(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert database.get_backend_name() == "sqlite"
    assert database.database == str(state / "airflow" / "airflow.db")  # sqlite:////abs/... (four slashes)
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith(f"sqlite:///{tmp_path}/")
    assert env["AIRFLOW_HOME"] == str(state / "airflow")
    assert env["INCIDENT_OPS_STATE_DIR"] == str(state)
    assert make_url(env["INCIDENT_OPS_LEDGER_URL"]).database == str(state / "ledger.db")
    assert env["INCIDENT_OPS_POSTMORTEM_STORAGE"] == f"file://{state / 'postmortems'}"
    assert Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).is_absolute()
    assert env["EXTRA"] == "1"
    assert _option(stack.sandbox_command(), "--state-dir") == str(state / "sandbox")


def test_demo_takes_relative_state_and_report_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = demo.parse_args(["--once", "--state", "state/demo-once", "--report", "out/r.json"])
    assert args.state == tmp_path / "state" / "demo-once"
    assert args.report == tmp_path / "out" / "r.json"
    assert demo.parse_args([]).state.is_absolute() and demo.parse_args([]).report is None


def test_airflow_and_the_sandbox_listen_on_127_0_0_1_only(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path, port=18081)
    env = stack.airflow_environment()
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["AIRFLOW__API__BASE_URL"] == stack.base_url == "http://127.0.0.1:18081"
    command = stack.airflow_command()
    assert "standalone" not in command  # standalone's log servers bind every interface
    script = command[command.index("-c") + 1]
    args = command[command.index("-c") + 2:]  # $0 $1 $2 of the script
    assert args[1:] == ["127.0.0.1", "18081"]
    assert '"$0" api-server --host "$1" --port "$2"' in script
    assert '"$0" scheduler --skip-serve-logs' in script and '"$0" triggerer --skip-serve-logs' in script
    assert '"$0" dag-processor' in script and '"$0" db migrate' in script
    assert _option(stack.sandbox_command(), "--host") == "127.0.0.1"


def test_the_admin_password_belongs_to_the_state_folder(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    password = admin_password(first)
    assert len(password) >= 20 and password != "incident-demo"
    assert admin_password(first) == password, "the same folder keeps its password"
    assert admin_password(second) != password, "a new folder gets a new one"
    path = first / ADMIN_PASSWORD_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileNotFoundError):
        admin_password(tmp_path / "three", create=False)

    # the demo's wipe keeps it, and the stack uses it
    (first / "airflow").mkdir()
    (first / "airflow" / "airflow.db").write_text("x")
    (first / "ledger.db").write_text("x")
    demo.clean_state(first)
    assert [p.name for p in first.iterdir()] == [ADMIN_PASSWORD_FILE]
    stack = LocalStack(first, port=18082)
    assert stack.password == password and stack.username == DEMO_USER
    env = stack.airflow_environment()
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == f"{DEMO_USER}:admin"
    passwords = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    assert json.loads(passwords.read_text()) == {DEMO_USER: password}
    assert stat.S_IMODE(passwords.stat().st_mode) == 0o600
    # what logs in (api_token, AirflowApi without a password) gets it from the stack this process built
    assert login_for(stack.base_url) == (DEMO_USER, password)
    demo.clean_state(tmp_path / "missing")  # nothing to wipe: no error


def test_logging_in_to_an_unknown_stack_needs_its_password() -> None:
    with pytest.raises(LookupError, match="admin-password"):
        api_token("http://127.0.0.1:9")
    with pytest.raises(LookupError):
        AirflowApi("http://127.0.0.1:9")
