"""
### incident_acknowledge — 対応開始 (start the response) from the Airflow UI

A person who takes an incident triggers this with the incident id and their name. It records the
acknowledgement in the ledger (the incident run's wait ends, no escalation) and acknowledges the
PagerDuty incident so PagerDuty stops escalating too. Acknowledging in the PagerDuty app works
as well; only the first acknowledgement counts.
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import Param, dag, task

from incident_ops.notifiers.dag_failure import DagFailureNotifier
from incident_ops.notifiers.long_running import stuck_run_alert
from incident_ops.params import INCIDENT_ID_PATTERN


@dag(
    dag_id="incident_acknowledge",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Tokyo"),
    catchup=False,
    doc_md=__doc__,
    tags=["incident", "peoplebooster"],
    default_args={"retries": 2, "retry_delay": dt.timedelta(seconds=5), "on_failure_callback": DagFailureNotifier()},
    # Nothing fails silently: #dev-team hears of a failed run, and of a run stuck far beyond its
    # expected time (incident_ops.core.safety_nets.SAFETY_NETS).
    on_failure_callback=DagFailureNotifier(),
    deadline=[stuck_run_alert("incident_acknowledge")],
    params={
        "incident_id": Param("", type="string", pattern=INCIDENT_ID_PATTERN, title="Incident id",
                             description="e.g. INC-20261128-7f3a2c (in the declaration and the Slack channel)"),
        "responder": Param("", type="string", minLength=1, maxLength=200, title="対応者 / Who starts the response"),
    },
)
def incident_acknowledge() -> None:
    @task
    def acknowledge(params: dict | None = None) -> dict:
        from incident_ops.flows.incident import acknowledge_incident

        return acknowledge_incident(params["incident_id"], params["responder"])

    acknowledge()


incident_acknowledge_dag = incident_acknowledge()

if __name__ == "__main__":
    incident_acknowledge_dag.test()
