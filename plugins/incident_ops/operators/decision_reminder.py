"""Beside each decision task: halfway to its deadline, if nobody answered, the on-call engineer is
mentioned in the decision's Slack thread (`incident_ops.flows.decisions.remind`)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException

from incident_ops.params import rendered_flag

__all__ = ["DecisionReminderOperator"]


class DecisionReminderOperator(BaseOperator):
    """Starts with its decision task (same upstream, same trigger rule) and defers to
    `DecisionReminderTrigger` until halfway, the answer, or `response_timeout` + a margin; then posts
    the reminder when one is due. Holds no worker slot while waiting; skipped in check mode (the
    decisions approve themselves)."""

    template_fields: Sequence[str] = ("incident_id", "check_mode")

    def __init__(self, *, incident_id: str, decision_task_id: str, response_timeout: dt.timedelta,
                 step_id: str | None = None, check_mode: bool | str = False, **kwargs: Any) -> None:
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)
        self.incident_id = incident_id
        self.decision_task_id = decision_task_id
        self.response_timeout = response_timeout
        self.step_id = step_id
        self.check_mode = check_mode

    def execute(self, context: Any) -> None:
        from incident_ops.triggers.decision_reminder import DecisionReminderTrigger

        if rendered_flag(self.check_mode):
            raise AirflowSkipException("check mode: decisions approve themselves, nothing to remind")
        give_up = time.time() + self.response_timeout.total_seconds() + 60
        self.defer(trigger=DecisionReminderTrigger(self.incident_id, self.decision_task_id, self.step_id,
                                                   give_up=give_up),
                   method_name="execute_complete")

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        from incident_ops.flows.decisions import remind

        if event.get("outcome") != "due":
            return {"reminded": False, "reason": event.get("outcome")}
        return remind(self.incident_id, self.decision_task_id, self.step_id)
