"""DAG integrity: every file in dags/ imports cleanly, does no network or database access while
parsing, stays within the parse budget, and follows the house style."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.process  # the DAG files are parsed in a separate interpreter

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAGS = PROJECT_ROOT / "dags"
# Airflow's [core] dagbag_import_timeout (default 30 s): a file whose import takes longer is killed
# by the DAG processor and becomes an import error. How fast the files parse (the 0.3 s target) is a
# figure of `make bench parse`, not a pass/fail bound on a shared machine.
DAGBAG_IMPORT_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = tmp_path_factory.mktemp("airflow_home")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "PYTHONPATH": str(PROJECT_ROOT / "plugins"),
    }
    result = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("parse_dags.py")), str(DAGS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def dag_files() -> list[str]:
    return sorted(path.name for path in DAGS.glob("*.py"))


def test_there_are_dag_files() -> None:
    assert "incident_response.py" in dag_files()


@pytest.mark.parametrize("name", dag_files())
def test_imports_without_errors(parsed: dict, name: str) -> None:
    info = parsed["files"][name]
    assert info["import_errors"] == {}
    assert info["dag_ids"], f"{name} defines no DAG"


def test_no_network_or_database_access_at_parse(parsed: dict) -> None:
    assert parsed["forbidden_attempts"] == []


@pytest.mark.parametrize("name", dag_files())
def test_parse_time_within_budget(parsed: dict, name: str) -> None:
    """Within the time the DAG processor allows an import; the speed itself is in `make bench parse`."""
    assert parsed["files"][name]["seconds"] < DAGBAG_IMPORT_TIMEOUT


@pytest.mark.parametrize("name", dag_files())
def test_house_style(parsed: dict, name: str) -> None:
    info = parsed["files"][name]
    # dag_id = file stem; catchup off; a doc; retries in default_args.
    assert info["dag_ids"] == [Path(name).stem]
    for dag in info["dags"].values():
        assert dag["catchup"] is False
        assert dag["doc_md"]
        assert dag["retries"] and dag["retries"] >= 1


def test_incident_form_fields(parsed: dict) -> None:
    dag = parsed["files"]["incident_response.py"]["dags"]["incident_response"]
    for field in ("symptom", "severity", "scenario", "service", "environment", "reporter", "check_mode", "alarm"):
        assert field in dag["params"]


def test_phase_time_boxes_are_deadline_alerts(parsed: dict) -> None:
    """Phase 1 at 15 min and Phase 2 at 60 min after the run was queued (the runbook's
    phase_time_boxes), each a SyncCallback to an importable function with its phase."""
    from incident_ops.core.runbook import load_runbook
    from incident_ops.notifiers.time_box import phase_time_box_alert

    boxes = load_runbook().phase_time_boxes
    dag = parsed["files"]["incident_response.py"]["dags"]["incident_response"]
    path = f"{phase_time_box_alert.__module__}.{phase_time_box_alert.__name__}"
    # (the run's long-running safety net beside them: tests/dags/test_safety_nets.py)
    assert [alert for alert in dag["deadlines"] if alert["name"] != "long_running"] == [
        {"name": "phase1_time_box", "reference": "DagRunQueuedAtDeadline", "minutes": boxes.detect,
         "callback": "SyncCallback", "path": path, "kwargs": {"phase": 1}},
        {"name": "phase2_time_box", "reference": "DagRunQueuedAtDeadline", "minutes": boxes.investigate,
         "callback": "SyncCallback", "path": path, "kwargs": {"phase": 2}},
    ]


# --- Phase 3: the scenario groups are generated from the runbook's steps ---------------------------


def test_recover_groups_follow_the_runbooks_steps(parsed: dict) -> None:
    """Each main step becomes `[when_<step>] → [approve_<step>] → <step>` in its scenario's group:
    the condition first (a ladder's rung, the fallback, a support case), then the approval (its own,
    or the consent of a step that is neither `auto` nor read-only), then the step (a `wait:` step is
    the deferrable ProviderStatusSensor). Each approval has a `remind_<step>` beside it: same
    upstream, same trigger rule, no downstream."""
    from incident_ops.core.runbook import load_runbook

    runbook = load_runbook()
    tasks = parsed["files"]["incident_response.py"]["dags"]["incident_response"]["structure"]
    for name, scenario in runbook.scenarios.items():
        group = f"recover.{name}"
        for step in scenario.main_steps():
            run = tasks[f"{group}.{step.id}"]
            assert run["operator"] == ("ProviderStatusSensor" if step.wait else "RemediationOperator"), step.id
            gated = step.approval or step.needs_consent
            chain = [f"{group}.when_{step.id}"] * bool(step.when) + [f"{group}.approve_{step.id}"] * gated
            assert (f"{group}.when_{step.id}" in tasks) == bool(step.when)
            assert (f"{group}.approve_{step.id}" in tasks) == gated
            assert (f"{group}.remind_{step.id}" in tasks) == gated
            if gated:
                approve, remind = tasks[f"{group}.approve_{step.id}"], tasks[f"{group}.remind_{step.id}"]
                assert approve["operator"] == "StepApprovalOperator"
                assert remind["operator"] == "DecisionReminderOperator"
                assert (remind["upstream"], remind["trigger_rule"]) == (approve["upstream"], approve["trigger_rule"])
                assert not any(f"{group}.remind_{step.id}" in t["upstream"] for t in tasks.values())
            for upstream, downstream in zip(chain, [*chain[1:], f"{group}.{step.id}"][:len(chain)], strict=True):
                assert tasks[downstream]["upstream"] == [upstream], (downstream, tasks[downstream])
            if step.when:
                gate = tasks[f"{group}.when_{step.id}"]
                assert gate["operator"] == "StepConditionOperator"
                # decided after the step before it, whatever became of it (`after_<previous>`: all done),
                # and only in the scenario that was chosen (`start`: all success)
                assert gate["trigger_rule"] == "all_success"
                joined = [u for u in gate["upstream"] if u != f"{group}.start"]
                assert len(joined) == 1 and tasks[joined[0]]["trigger_rule"] == "all_done", gate
                assert f"{group}.start" in gate["upstream"]
        for fallback in (s for s in scenario.steps if s.only_as_fallback):
            assert f"{group}.{fallback.id}" not in tasks  # runs inside its step's task
        assert (f"{group}.notify_contacts" in tasks) == bool(scenario.notify)


def test_the_database_ladder_and_support_case(parsed: dict) -> None:
    tasks = parsed["files"]["incident_response.py"]["dags"]["incident_response"]["structure"]
    g = "recover.database."
    assert tasks[g + "after_failover"]["upstream"] == [g + "failover"]
    assert tasks[g + "when_restore"]["upstream"] == sorted([g + "after_failover", g + "start"])
    assert tasks[g + "approve_restore"]["upstream"] == [g + "when_restore"]
    assert tasks[g + "when_support_case"]["upstream"] == sorted([g + "after_restore", g + "start"])
    assert tasks[g + "notify_contacts"]["upstream"] == sorted(["detect.open_incident", g + "start"])
    assert g + "notify_contacts" in tasks["recover.done"]["upstream"]  # beside the steps, not before them


def test_the_external_wait_then_fallback(parsed: dict) -> None:
    tasks = parsed["files"]["incident_response.py"]["dags"]["incident_response"]["structure"]
    g = "recover.external."
    assert tasks[g + "check_status"]["upstream"] == [g + "start"]
    assert tasks[g + "when_wait"]["upstream"] == sorted([g + "after_check_status", g + "start"])
    assert tasks[g + "wait"]["operator"] == "ProviderStatusSensor"
    assert tasks[g + "when_fallback"]["upstream"] == sorted([g + "after_wait", g + "start"])
    assert tasks[g + "fallback"]["upstream"] == [g + "when_fallback"]  # no approval, as before
    assert g + "notify_contacts" not in tasks


def test_the_wait_trigger_is_importable_from_plugins() -> None:
    """The triggerer loads a deferred task's trigger by its serialized path."""
    import importlib

    from incident_ops.triggers.provider_status import ProviderStatusTrigger

    path, kwargs = ProviderStatusTrigger("https://status", "https://health", status_interval=120, health_interval=10,
                                         consecutive=3, deadline=1.0).serialize()
    module, _, name = path.rpartition(".")
    assert getattr(importlib.import_module(module), name) is ProviderStatusTrigger
    assert ProviderStatusTrigger(**kwargs).serialize() == (path, kwargs)


def test_the_acknowledgement_and_first_notice_waits_are_deferrable_sensors(parsed: dict) -> None:
    """Both waits defer to the triggerer; a skipped `wait_for_ack` (nobody acknowledged by the deadline)
    still runs the escalation (all done), and the raise waits for the first notices (all success)."""
    import importlib

    from incident_ops.triggers.incident_waits import AcknowledgementTrigger, FirstNoticeTrigger

    detect = parsed["files"]["incident_response.py"]["dags"]["incident_response"]["structure"]
    assert detect["detect.wait_for_ack"]["operator"] == "AcknowledgementSensor"
    escalate = detect["detect.escalate_unacknowledged"]
    assert escalate["trigger_rule"] == "all_done" and "detect.wait_for_ack" in escalate["upstream"]
    raise_dag = parsed["files"]["incident_escalate.py"]["dags"]["incident_escalate"]["structure"]
    assert raise_dag["wait_for_first_notice"]["operator"] == "FirstNoticeSensor"
    assert raise_dag["raise_severity"] == {"operator": "_PythonDecoratedOperator", "trigger_rule": "all_success",
                                           "upstream": ["wait_for_first_notice"]}
    for trigger in (AcknowledgementTrigger("INC-1", "production", deadline=1.0), FirstNoticeTrigger("INC-1", deadline=1.0)):
        path, kwargs = trigger.serialize()
        module, _, name = path.rpartition(".")
        assert getattr(importlib.import_module(module), name) is type(trigger)
