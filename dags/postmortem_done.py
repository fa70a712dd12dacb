"""
### postmortem_done — ポストモーテム完了の登録

Trigger with the incident id when its postmortem is written: the ledger records it (the
`postmortem_reminders` DAG stops reminding) and the incident channel is told. Marking it again
changes nothing. Without Airflow: `python -m incident_ops postmortem-done INCIDENT_ID`.
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import Param, dag, task

from incident_ops.notifiers.dag_failure import DagFailureNotifier
from incident_ops.notifiers.long_running import stuck_run_alert
from incident_ops.params import INCIDENT_ID_PATTERN


@dag(
    dag_id="postmortem_done",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Tokyo"),
    catchup=False,
    doc_md=__doc__,
    tags=["postmortem", "peoplebooster"],
    default_args={"retries": 2, "retry_delay": dt.timedelta(seconds=5), "on_failure_callback": DagFailureNotifier()},
    # Nothing fails silently: #dev-team hears of a failed run, and of a run stuck far beyond its
    # expected time (incident_ops.core.safety_nets.SAFETY_NETS).
    on_failure_callback=DagFailureNotifier(),
    deadline=[stuck_run_alert("postmortem_done")],
    params={
        "incident_id": Param("", type="string", pattern=INCIDENT_ID_PATTERN, title="Incident id",
                             description="e.g. INC-20261128-7f3a2c"),
        "path": Param("", type="string", maxLength=2000, title="ポストモーテムの場所 / Where it is",
                      description="file path or URL (optional; the draft's path is kept when empty)"),
        "done_by": Param("", type="string", maxLength=200, title="完了登録者 / Who (optional)"),
    },
)
def postmortem_done() -> None:
    @task
    def mark_done(params: dict | None = None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from incident_ops.flows.scheduled import mark_postmortem_done

        try:
            return mark_postmortem_done(params["incident_id"], path=params.get("path") or None,
                                        by=params.get("done_by") or None)
        except ValueError as exc:  # an unknown incident id: retrying will not help
            raise AirflowFailException(str(exc)) from exc

    mark_done()


postmortem_done_dag = postmortem_done()

if __name__ == "__main__":
    postmortem_done_dag.test()
