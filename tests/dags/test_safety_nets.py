"""Nothing fails silently: every DAG tells #dev-team when it fails (its tasks' and its own
on_failure_callback) and has a DeadlineAlert for a run stuck far beyond its expected time."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tests.dags.test_dag_integrity import dag_files, parsed  # noqa: F401 - `parsed` is the fixture

pytestmark = pytest.mark.process  # the DAG files are parsed in a separate interpreter

FAILURE_NOTIFIERS = {"DagFailureNotifier", "IncidentFailureNotifier"}


def dag_of(parsed: dict, name: str) -> dict:  # noqa: F811
    return parsed["files"][name]["dags"][Path(name).stem]


@pytest.mark.parametrize("name", dag_files())
def test_every_failing_task_is_reported(parsed: dict, name: str) -> None:  # noqa: F811
    dag = dag_of(parsed, name)
    missing = [task for task, callbacks in dag["task_failure_callbacks"].items()
               if not FAILURE_NOTIFIERS & set(callbacks)]
    assert missing == [], f"tasks of {name} without a failure notifier"


@pytest.mark.parametrize("name", [name for name in dag_files() if name != "incident_response.py"])
def test_a_failed_run_tells_dev_team(parsed: dict, name: str) -> None:  # noqa: F811
    """The run's own callback too (DAG processor): a run that failed without its task's callback."""
    assert dag_of(parsed, name)["on_failure_callback"] == ["DagFailureNotifier"]


@pytest.mark.parametrize("name", dag_files())
def test_every_dag_has_a_long_running_deadline(parsed: dict, name: str) -> None:  # noqa: F811
    from airflow.sdk._shared.module_loading import import_string

    from incident_ops.core.safety_nets import SAFETY_NETS
    from incident_ops.notifiers.long_running import long_running_alert

    net = SAFETY_NETS[Path(name).stem]
    [alert] = [alert for alert in dag_of(parsed, name)["deadlines"] if alert["name"] == "long_running"]
    assert alert["reference"] == "DagRunQueuedAtDeadline" and alert["callback"] == "SyncCallback"
    assert import_string(alert["path"]) is long_running_alert  # importable by the executor
    assert alert["minutes"] == net.stuck_after / dt.timedelta(minutes=1) == alert["kwargs"]["limit_minutes"]
    assert net.stuck_after >= 3 * net.expected


def test_the_table_of_expected_runtimes_covers_exactly_the_dags() -> None:
    from incident_ops.core.safety_nets import SAFETY_NETS

    assert sorted(SAFETY_NETS) == sorted(Path(name).stem for name in dag_files())


def test_the_incident_runs_safety_net_comes_hours_after_its_time_boxes(parsed: dict) -> None:  # noqa: F811
    deadlines = {alert["name"]: alert["minutes"] for alert in dag_of(parsed, "incident_response.py")["deadlines"]}
    assert deadlines["long_running"] >= 4 * 60 > deadlines["phase2_time_box"]


@pytest.mark.parametrize("name", ["oncall_handoff.py", "postmortem_reminders.py"])
def test_hourly_dags_are_reported_before_the_next_run_is_held_back(parsed: dict, name: str) -> None:  # noqa: F811
    [alert] = [a for a in dag_of(parsed, name)["deadlines"] if a["name"] == "long_running"]
    assert alert["minutes"] < 60
