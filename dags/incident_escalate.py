"""
### incident_escalate — 障害レベルの引き上げ (a higher severity for an open incident)

Triggered by the alarm webhooks when a report of a higher severity joins an open incident (the
ledger has already raised it), once per incident and severity (run id
`escalate__<incident id>__<severity>`); a person may trigger it from the UI as well.

1. **wait_for_first_notice** — until the incident's own run has sent its first notices and opened
   its channel (deferred to the triggerer: no worker held; at most 30 min, then the run fails), so
   nothing is told twice and nobody is missed.
2. **raise_severity** — the new level's escalation path, minus what was already delivered (e.g.
   P2 → P1 adds the CTO's phone call through PagerDuty), PagerDuty updated under the same dedup key,
   a note in the incident channel, and the declaration when the incident is now P1/P2 and was not
   declared. Every step is idempotent (keys from the incident id and the severity).
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import Param, dag, task

from incident_ops.core.runbook import SEVERITIES
from incident_ops.notifiers.dag_failure import DagFailureNotifier
from incident_ops.notifiers.long_running import stuck_run_alert
from incident_ops.params import INCIDENT_ID_PATTERN
from incident_ops.sensors.first_notice import FirstNoticeSensor


@dag(
    dag_id="incident_escalate",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Tokyo"),
    catchup=False,
    doc_md=__doc__,
    tags=["incident", "peoplebooster"],
    default_args={
        "retries": 2, "retry_delay": dt.timedelta(seconds=5), "retry_exponential_backoff": True,
        "on_failure_callback": DagFailureNotifier(),
    },
    # Nothing fails silently: #dev-team hears of a failed run, and of a run stuck far beyond its
    # expected time (incident_ops.core.safety_nets.SAFETY_NETS).
    on_failure_callback=DagFailureNotifier(),
    deadline=[stuck_run_alert("incident_escalate")],
    max_active_runs=16,
    params={
        "incident_id": Param("", type="string", pattern=INCIDENT_ID_PATTERN, title="Incident id",
                             description="e.g. INC-20261128-7f3a2c"),
        "severity": Param("P1", type="string", enum=list(SEVERITIES), title="障害レベル / The higher severity"),
    },
)
def incident_escalate() -> None:
    @task
    def raise_severity(params: dict | None = None) -> dict:
        from incident_ops.flows.escalation import raise_severity

        return raise_severity(params["incident_id"], params["severity"])

    wait_for_first_notice = FirstNoticeSensor(task_id="wait_for_first_notice", incident_id="{{ params.incident_id }}",
                                              timeout_seconds=30 * 60)
    wait_for_first_notice >> raise_severity()


incident_escalate_dag = incident_escalate()

if __name__ == "__main__":
    incident_escalate_dag.test()
