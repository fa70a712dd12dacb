"""The break-glass command line against the sandbox's moto server and GitHub stand-in, as a separate
process with only the standard environment: check mode, apply, apply again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox.client import sandbox_aws_env
from sandbox.server import Sandbox, start_sandbox

PROJECT_ROOT = Path(__file__).resolve().parents[2]


# The sandbox (moto server, stand-ins) in this process, and the command as a subprocess.
pytestmark = [pytest.mark.server, pytest.mark.process]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with start_sandbox(tmp_path_factory.mktemp("sandbox"), github_delay=0.3, tick_seconds=3600,
                       environments=["production"]) as running:
        yield running


@pytest.fixture
def broken(sandbox: Sandbox):
    def breaker(scenario: str) -> Sandbox:
        sandbox.client.reset()
        sandbox.client.break_scenario(scenario)
        return sandbox

    return breaker


def playbook(sandbox: Sandbox, *args: str) -> tuple[int, dict]:
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "GITHUB_", "AIRFLOW_CONN_"))
    }
    env.update(sandbox_aws_env(sandbox.endpoints))
    env.update(
        PYTHONPATH=str(PROJECT_ROOT / "plugins"),
        GITHUB_TOKEN="sandbox-github-token",
        GITHUB_API_URL=sandbox.endpoints["github_api"],
        EXTERNAL_STATUS_URL=sandbox.endpoints["external_status_url"],
    )
    result = subprocess.run(
        [sys.executable, "-m", "incident_ops", "playbook", *args, "--json"],
        env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )
    return result.returncode, json.loads(result.stdout)


def rollback_runs(sandbox) -> list[dict]:
    """rollback.yml runs (the broken deploy itself is a deploy.yml run in the sandbox)."""
    return [run for run in sandbox.client.github_runs() if run["path"].endswith("/rollback.yml")]


def test_deploy_rollback_check_apply_apply_again(broken) -> None:
    sandbox = broken("deploy")
    before = sandbox.client.state()["aws"]
    assert before["bad_deploy"]

    code, report = playbook(sandbox, "deploy", "--env", "production", "--check", "--incident-id", "INC-20261128-0a0a0a")
    assert code == 0, report
    assert report["check_mode"] is True and report["scenario"] == "deploy"
    # Ansible semantics: check mode reports what WOULD change (changed=True) and changes nothing
    assert report["steps"][0]["action"] == "github_rollback" and report["steps"][0]["changed"] is True
    assert report["steps"][0]["check_mode"] is True
    assert sandbox.client.state()["aws"]["task_definition"] == before["task_definition"]
    assert rollback_runs(sandbox) == []

    code, report = playbook(sandbox, "deploy", "--env", "production", "--incident-id", "INC-20261128-0a0a0a")
    assert code == 0, report
    assert report["steps"][0]["changed"] is True
    after = sandbox.client.state()["aws"]
    assert not after["bad_deploy"] and after["task_definition"] != before["task_definition"]
    assert sandbox.client.health()[0] == 200

    code, report = playbook(sandbox, "deploy", "--env", "production", "--incident-id", "INC-20261128-0a0a0a")
    assert code == 0, report
    assert [step["changed"] for step in report["steps"]] == [False]
    assert len(rollback_runs(sandbox)) == 1  # dispatched once
    assert sandbox.client.state()["aws"]["task_definition"] == after["task_definition"]


def test_destructive_step_needs_confirm(broken) -> None:
    sandbox = broken("database")
    writer = sandbox.client.state()["aws"]["writer"]

    code, report = playbook(sandbox, "database", "--incident-id", "INC-20261128-0b0b0b")
    assert code == 1
    assert report["ok"] is False
    assert "confirm" in report["steps"][0]["message"]
    assert sandbox.client.state()["aws"]["writer"] == writer

    code, report = playbook(sandbox, "database", "--confirm", "--incident-id", "INC-20261128-0b0b0b")
    assert code == 0, report
    assert sandbox.client.state()["aws"]["writer"] != writer
    assert sandbox.client.health()[0] == 200


def test_unknown_scenario_is_a_clear_error(sandbox: Sandbox) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "incident_ops", "playbook", "meteor", "--json"],
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "plugins")}, cwd=PROJECT_ROOT,
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "meteor" in json.loads(result.stdout)["error"]
