"""
### incident_response — PeopleBooster 障害対応フロー

Declares and drives one incident through the runbook's phases. Trigger it from the UI form
(symptom, severity, service, scenario, check mode) or through the REST API / alarm webhooks with
the same fields as `conf`; invalid input is refused before anything runs.

This first cut classifies the report (症状 → 障害レベル, a reporter's severity wins) and renders the
declaration in the runbook's template; the later phases are wired in by the incident DAG issue.
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import dag, task

from incident_ops.core.runbook import load_runbook
from incident_ops.params import AUTO, incident_params

# Parsing reads only the runbook file beside the project: no network or database access.
RUNBOOK = load_runbook()


@dag(
    dag_id="incident_response",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Tokyo"),
    catchup=False,
    params=incident_params(RUNBOOK),
    doc_md=__doc__,
    tags=["incident", "peoplebooster"],
    default_args={"retries": 2, "retry_delay": dt.timedelta(seconds=10), "retry_exponential_backoff": True},
    max_active_runs=16,
)
def incident_response() -> None:
    @task
    def classify(params: dict | None = None) -> dict:
        from incident_ops.core.triage import classify as classify_report

        override = None if params["severity"] == AUTO else params["severity"]
        result = classify_report(
            RUNBOOK,
            params["symptom"],
            alarm=params["alarm"] or None,
            environment=params["environment"],
            override=override,
        )
        return result.to_dict()

    @task
    def render_declaration(classification: dict, params: dict | None = None, dag_run=None) -> str | None:
        from incident_ops.core.messages import channel_name, render_declaration
        from incident_ops.core.oncall import rotation_engineer

        if classification["severity"] not in RUNBOOK.declare_severities:
            return None
        detected_at = dag_run.logical_date or dag_run.run_after
        engineer = rotation_engineer(RUNBOOK, detected_at)
        return render_declaration(
            RUNBOOK,
            severity=classification["severity"],
            detected_at=detected_at,
            symptom=params["symptom"],
            impact=params["impact"] or classification["impact"] or params["symptom"],
            responders=[{"name": engineer.name, "slack_user_id": engineer.slack_user_id}],
            channel=channel_name(RUNBOOK, detected_at),
        )

    render_declaration(classify())


incident_response_dag = incident_response()

if __name__ == "__main__":
    incident_response_dag.test()
