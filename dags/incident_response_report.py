"""
### incident_response_report — 週次の障害対応レポート (Monday 9:00 JST)

For the incidents detected last week (Monday to Sunday, JST), per severity: time to declare, to
start the response (acknowledge) and to recover, against the runbook's targets (response start:
P1 15 min, P2 30 min, P3 2 h, P4 24 h; declaration within Phase 1's 15 min), the breaches, and the
postmortems still outstanding. Written to `<artifacts URL>/reports/` (`state/reports/` on one
machine) as Markdown, CSV (per incident and per severity) and a chart (PNG), and posted to #dev-team
with the chart, once per week.
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import CronTriggerTimetable, dag, task

from incident_ops.notifiers.dag_failure import DagFailureNotifier
from incident_ops.notifiers.long_running import stuck_run_alert


@dag(
    dag_id="incident_response_report",
    schedule=CronTriggerTimetable("0 9 * * 1", timezone="Asia/Tokyo"),
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Tokyo"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["report", "peoplebooster"],
    default_args={
        "retries": 2, "retry_delay": dt.timedelta(minutes=1), "retry_exponential_backoff": True,
        "on_failure_callback": DagFailureNotifier(),
    },
    # Nothing fails silently: #dev-team hears of a failed run, and of a run stuck far beyond its
    # expected time (incident_ops.core.safety_nets.SAFETY_NETS).
    on_failure_callback=DagFailureNotifier(),
    deadline=[stuck_run_alert("incident_response_report")],
)
def incident_response_report() -> None:
    @task
    def weekly_report(dag_run=None, logical_date=None) -> dict:
        from incident_ops.flows.scheduled import incident_response_report as run

        result = run(logical_date or dag_run.run_after)
        return {key: result[key] for key in ("start", "end", "incidents", "files", "posted")} | {
            "breaches": len(result["breaches"]),
            "outstanding_postmortems": len(result["outstanding_postmortems"]),
        }

    weekly_report()


incident_response_report_dag = incident_response_report()

if __name__ == "__main__":
    incident_response_report_dag.test()
