"""The read-only commands start light: no SQLAlchemy, boto3, clients or the ledger in the process.

Run as the installed `incident-ops` command does (`incident_ops.cli:run`), in a fresh interpreter, and
the modules it loaded are listed from inside the process after the command ran.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.process

HEAVY = ("sqlalchemy", "boto3", "botocore", "slack_sdk", "pagerduty", "requests", "airflow",
         "incident_ops.core.ledger", "incident_ops.services", "incident_ops.actions.registry")

PROBE = """
import contextlib, io, json, sys
sys.argv = ["incident-ops", *json.loads(sys.argv[1])]
from incident_ops.cli import run
with contextlib.redirect_stdout(io.StringIO()) as out:
    status = run()
print(json.dumps({"status": status, "out": out.getvalue(), "modules": sorted(sys.modules)}))
"""


def _probe(argv: list[str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv)],
        cwd=PROJECT_ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT_ROOT / "plugins")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize(
    "argv",
    [
        ["severity", "ログインできない", "--json"],
        ["route", "--severity", "P2", "--at", "2026-11-23T10:00:00+09:00", "--json"],
        ["oncall", "--at", "2026-11-28T03:00:00+09:00", "--json"],
        ["validate", "--json"],
    ],
    ids=lambda argv: argv[0],
)
def test_read_only_commands_load_no_database_cloud_or_client_library(argv: list[str]) -> None:
    probe = _probe(argv)
    assert probe["status"] == 0
    assert json.loads(probe["out"])  # the command really ran and printed its JSON
    loaded = [name for name in probe["modules"] if any(name == h or name.startswith(h + ".") for h in HEAVY)]
    assert loaded == [], f"{argv[0]} imported {loaded}"


def test_the_playbook_command_still_loads_what_it_needs() -> None:
    # The lazy imports moved into the commands: the break-glass command must still find them.
    assert "--confirm" in _probe(["playbook", "--help"])["out"]
