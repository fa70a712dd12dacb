"""incident_ops.preload: what a forked task runner inherits. Each case runs in a fresh interpreter,
because what matters is which modules a process has loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.process  # a fresh interpreter per case

PROJECT_ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import json, runpy, sys
from incident_ops.preload import preload
errors = preload(*([tuple(sys.argv[1].split(","))] if len(sys.argv) > 1 else []))
again = preload()
before = set(sys.modules)
runpy.run_path(sys.argv[2] if len(sys.argv) > 2 else "dags/incident_response.py")
from incident_ops.flows import incident as incident_flow
print(json.dumps({
    "errors": errors,
    "same_answer_twice": again is errors,
    "imported_by_dag_parse": sorted({m.split(".")[0] for m in set(sys.modules) - before}),
    "runbooks_cached": incident_flow.load.cache_info().currsize,
    "loaded": sorted(m for m in ("boto3", "slack_sdk", "pagerduty", "incident_ops.flows.incident",
                                 "incident_ops.operators.remediation") if m in sys.modules),
}))
"""


def probe(*args: str, env: dict[str, str] | None = None) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": f"{PROJECT_ROOT / 'plugins'}:{PROJECT_ROOT / 'include'}", **(env or {})},
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_preload_imports_every_task_module_so_parsing_the_dag_imports_no_new_package() -> None:
    seen = probe()
    assert seen["errors"] and all(error is None for error in seen["errors"].values()), seen["errors"]
    assert seen["same_answer_twice"]
    assert seen["loaded"] == ["boto3", "incident_ops.flows.incident", "incident_ops.operators.remediation",
                              "pagerduty", "slack_sdk"]
    # Parsing the incident DAG in the forked task adds no package the parent did not already have
    # (only Airflow's own lazily imported serialization parts, and croniter for the timetable).
    assert set(seen["imported_by_dag_parse"]) <= {"airflow", "croniter"}, seen["imported_by_dag_parse"]
    # The runbook is read by each task, never inherited from the parent (it may have changed since).
    assert seen["runbooks_cached"] == 0


def test_a_module_that_fails_to_import_is_reported_not_raised() -> None:
    seen = probe("incident_ops.no_such_module,json")
    assert seen["errors"]["json"] is None
    assert seen["errors"]["incident_ops.no_such_module"].startswith("ModuleNotFoundError")


def test_preload_can_be_switched_off() -> None:
    seen = probe(env={"INCIDENT_OPS_PRELOAD_DISABLED": "true"})
    assert seen["errors"] == {}
    # Parsing the DAG still works; it just imports what it needs itself.
    assert "incident_ops.operators.remediation" in seen["loaded"]
