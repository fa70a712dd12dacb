"""
### postmortem_reminders — ポストモーテム期限のリマインド (hourly)

For every recovered incident whose postmortem the runbook requires (`postmortem.required_for`,
P1/P2) and that is not done yet:

- **24 h after recovery** (`postmortem.reminder_after_hours`): a reminder in the incident channel
  and a direct message to the owner (who started the response, else the rotation's engineer);
- **at the due time, 48 h** (`postmortem.due_after_hours`): an overdue notice to the owner,
  escalated to the dev lead.

With `postmortem.align: next_business_day_end` (the runbook's default) a due time at night or on a
day off is the next business day's 18:00, and a reminder outside business hours waits for 9:00.

Each stage is sent once (a ledger event keyed by the stage); a run after both times sends only the
overdue notice. Marking the postmortem done (DAG `postmortem_done`, or
`python -m incident_ops postmortem-done INCIDENT_ID`) stops the reminders.
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import CronTriggerTimetable, dag, task

from incident_ops.notifiers.dag_failure import DagFailureNotifier
from incident_ops.notifiers.long_running import stuck_run_alert


@dag(
    dag_id="postmortem_reminders",
    schedule=CronTriggerTimetable("0 * * * *", timezone="Asia/Tokyo"),
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Tokyo"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["postmortem", "peoplebooster"],
    default_args={
        "retries": 2, "retry_delay": dt.timedelta(seconds=30), "retry_exponential_backoff": True,
        "on_failure_callback": DagFailureNotifier(),
    },
    # Nothing fails silently: #dev-team hears of a failed run, and of a run stuck far beyond its
    # expected time (incident_ops.core.safety_nets.SAFETY_NETS).
    on_failure_callback=DagFailureNotifier(),
    deadline=[stuck_run_alert("postmortem_reminders")],
)
def postmortem_reminders() -> None:
    @task
    def send_reminders(dag_run=None, logical_date=None) -> dict:
        from incident_ops.flows.scheduled import postmortem_reminders as run

        return run(logical_date or dag_run.run_after)

    send_reminders()


postmortem_reminders_dag = postmortem_reminders()

if __name__ == "__main__":
    postmortem_reminders_dag.test()
