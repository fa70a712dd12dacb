"""
### oncall_handoff — オンコール体制の交代通知 (#dev-team)

One timetable (Asia/Tokyo) fires at every hand-over slot of the runbook:

- **weekly rotation handoff** (`oncall.handoff`, Monday 10:00, holidays included): who hands the
  pager over to whom (Slack mentions), the open incidents, the pending postmortems and the week's
  off-hours windows (weekday 18:00–9:00; weekends, Japanese public holidays and the runbook's
  `calendar.extra_days_off` such as 年末年始 12/29–1/3 all day);
- **business hours begin** (9:00) and **end** (18:00) on business days: who is on call now (the
  whole team in business hours, the rotation's engineer otherwise). Days off are skipped.

Who is on call comes from the PagerDuty schedule when `oncall.pagerduty_schedule_id` is set (the
roster otherwise); a disagreement with the roster is said in the message. The incoming engineer
must have the PagerDuty app (a push-notification contact method); if not, they and the dev lead
get a direct message.

Each slot posts once: the Slack idempotency key is the slot, and the slot is recorded as a ledger
notice. A slot missed while Airflow was down (up to a week back) is posted by the next run with a
note 「遅延配信: 本来 09:00」. A manual trigger posts only missed slots, if any.
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import MultipleCronTriggerTimetable, dag, task

from incident_ops.core.handoff import timetable_crons
from incident_ops.core.runbook import load_runbook
from incident_ops.notifiers.dag_failure import DagFailureNotifier
from incident_ops.notifiers.long_running import stuck_run_alert

# Parsing reads only the runbook file: no network or database access.
RUNBOOK = load_runbook()


@dag(
    dag_id="oncall_handoff",
    schedule=MultipleCronTriggerTimetable(*timetable_crons(RUNBOOK), timezone=RUNBOOK.calendar.timezone),
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Tokyo"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["oncall", "peoplebooster"],
    default_args={
        "retries": 2, "retry_delay": dt.timedelta(seconds=30), "retry_exponential_backoff": True,
        "on_failure_callback": DagFailureNotifier(),
    },
    # Nothing fails silently: #dev-team hears of a failed run, and of a run stuck far beyond its
    # expected time (incident_ops.core.safety_nets.SAFETY_NETS).
    on_failure_callback=DagFailureNotifier(),
    deadline=[stuck_run_alert("oncall_handoff")],
)
def oncall_handoff() -> None:
    @task
    def post_handoff(dag_run=None, logical_date=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from incident_ops.flows.scheduled import oncall_handoff as run

        result = run(logical_date or dag_run.run_after)
        if not result["posted"]:
            raise AirflowSkipException(result["reason"] or "nothing to post")
        return result

    post_handoff()


oncall_handoff_dag = oncall_handoff()

if __name__ == "__main__":
    oncall_handoff_dag.test()
