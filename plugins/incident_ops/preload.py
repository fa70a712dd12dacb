"""Import the task bodies' modules once, in the Airflow processes that fork task runners.

A task runner is forked: from the scheduler's LocalExecutor workers (forked from the scheduler when it
starts) or from Celery's prefork pool (forked from the worker). Whatever the parent imported, the task
inherits. Without this, every task of an incident imports boto3, slack_sdk, pagerduty, SQLAlchemy's
ORM and this package before its first call: ≈ 1 s a task on a 2-core machine, twice on the way from
the alarm to the page. `incident_ops_plugin.py` calls `preload()`; the scheduler loads plugins before
it starts its executor, and `[core] lazy_load_plugins = False` makes every component (the Celery
worker too) load them at start.

Only modules are imported: no client, session, connection or runbook is created here (none of them
may cross a fork, and the runbook file must be read fresh by each task).
"""

from __future__ import annotations

import importlib
import logging
import os
import time

__all__ = ["PRELOAD_DISABLED_VARIABLE", "TASK_MODULES", "preload"]

log = logging.getLogger(__name__)

PRELOAD_DISABLED_VARIABLE = "INCIDENT_OPS_PRELOAD_DISABLED"

# What the DAG files and the task bodies import when a task runs (see each `flow()` and the lazy
# imports inside incident_flow, operators, sensors and triggers).
TASK_MODULES = (
    "boto3",
    "botocore.session",
    "incident_ops.flows.incident",
    "incident_ops.flows.escalation",
    "incident_ops.flows.scheduled",
    "incident_ops.notify",
    "incident_ops.actions.playbook",
    "incident_ops.hooks.services",
    "incident_ops.clients.email",
    "incident_ops.clients.health",
    "incident_ops.observe.aws",
    "incident_ops.operators.remediation",
    "incident_ops.operators.decisions",
    "incident_ops.operators.conditions",
    "incident_ops.flows.recovery",
    "incident_ops.sensors.health",
    "incident_ops.sensors.provider_status",
    "incident_ops.sensors.acknowledgement",
    "incident_ops.sensors.first_notice",
    "incident_ops.notifiers.incident",
    "incident_ops.notifiers.time_box",
    "incident_ops.notifiers.dag_failure",
    "incident_ops.notifiers.long_running",
    "incident_ops.operators.decision_reminder",
    "incident_ops.triggers.decision_reminder",
    "incident_ops.triggers.github",
    "incident_ops.triggers.rds",
    "incident_ops.triggers.incident_waits",
    "incident_ops.flows.decisions",
    "incident_ops.core.decisions",
    "incident_ops.core.safety_nets",
    "incident_ops.artifacts",
    "incident_ops.params",
    "airflow.providers.amazon.aws.hooks.base_aws",
    # what the DAG files' @task, @task.short_circuit, @task.branch and @task_group resolve lazily
    "airflow.sdk.definitions.decorators",
    "airflow.sdk.definitions.decorators.task_group",
    "airflow.providers.standard.decorators.python",
    "airflow.providers.standard.decorators.short_circuit",
    "airflow.providers.standard.decorators.branch_python",
    "airflow.providers.standard.operators.empty",
    "airflow.providers.standard.operators.python",
)

_done: dict[str, str | None] | None = None


def preload(modules: tuple[str, ...] = TASK_MODULES) -> dict[str, str | None]:
    """Import `modules` (once a process); returns each module's error, None when it imported.

    A module that fails to import is logged and skipped, never raised: the component must start
    anyway, and the task that needs the module reports the same error where people look for it.
    """
    global _done
    if _done is not None:
        return _done
    if os.environ.get(PRELOAD_DISABLED_VARIABLE, "").lower() in ("1", "true", "yes"):
        _done = {}
        return _done
    started = time.perf_counter()
    outcome: dict[str, str | None] = {}
    for name in modules:
        try:
            importlib.import_module(name)
            outcome[name] = None
        except Exception as exc:  # noqa: BLE001 - reported; the task importing it will raise it
            outcome[name] = f"{type(exc).__name__}: {exc}"
            log.warning("incident_ops preload: %s did not import (%s); tasks that need it will fail", name, exc)
    log.debug("incident_ops preload: %d modules in %.2f s", len(modules), time.perf_counter() - started)
    _done = outcome
    return outcome
