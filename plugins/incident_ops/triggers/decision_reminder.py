"""The halfway reminder of a waiting decision, timed in the triggerer (no worker slot held).

Watches the ledger (in a thread: the ledger is synchronous) every `poll_seconds` for the decision's
`decision_posted` event and its answer; fires once, with `outcome`:

- `due`: posted, unanswered, and halfway between its posting and its deadline has come;
- `answered`: an answer (a person's, the default's, the consent a scenario's choice gave) is on the
  ledger before that (a consent given in advance needs no message: it ends the wait too);
- `gone`: `give_up` (epoch seconds) passed without either.

Importable from plugins/ (the triggerer loads it by its path)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

__all__ = ["DecisionReminderTrigger", "halfway"]


def halfway(posted_at: dt.datetime, deadline: dt.datetime) -> dt.datetime:
    return posted_at + (deadline - posted_at) / 2


class DecisionReminderTrigger(BaseTrigger):
    def __init__(self, incident_id: str, decision_task_id: str, step_id: str | None, *, give_up: float,
                 poll_seconds: float = 5.0) -> None:
        super().__init__()
        self.incident_id = incident_id
        # Not `task_id`: the triggerer sets that attribute to the deferred task's own id.
        self.decision_task_id = decision_task_id
        self.step_id = step_id
        self.give_up = give_up
        self.poll_seconds = poll_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("incident_ops.triggers.decision_reminder.DecisionReminderTrigger",
                {"incident_id": self.incident_id, "decision_task_id": self.decision_task_id, "step_id": self.step_id,
                 "give_up": self.give_up, "poll_seconds": self.poll_seconds})

    def _look(self) -> tuple[str | None, float | None]:
        """(outcome now or None, epoch of the reminder when posted and unanswered)."""
        from incident_ops.flows.decisions import answer_recorded, posted_decision

        posted = posted_decision(self.incident_id, self.decision_task_id)
        since = None
        if posted is not None:
            since = dt.datetime.fromisoformat(str(posted["at"]).replace("Z", "+00:00"))
            if since.tzinfo is None:
                since = since.replace(tzinfo=dt.UTC)
        if answer_recorded(self.incident_id, self.decision_task_id, self.step_id, since=since):
            return "answered", None
        if posted is None:
            return None, None
        deadline = dt.datetime.fromisoformat(posted["data"]["deadline"])
        return None, halfway(since, deadline).timestamp()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        logged = False
        while True:
            outcome, remind_at = await asyncio.to_thread(self._look)
            if not logged:
                self.log.info("decision %s of %s: remind at %s", self.decision_task_id, self.incident_id,
                              dt.datetime.fromtimestamp(remind_at, dt.UTC).isoformat() if remind_at else "(not posted)")
                logged = remind_at is not None
            now = time.time()
            if outcome is None and remind_at is not None and now >= remind_at:
                outcome = "due"
            if outcome is None and now >= self.give_up:
                outcome = "gone"
            if outcome is not None:
                yield TriggerEvent({"outcome": outcome, "task_id": self.decision_task_id})
                return
            wake = min(self.give_up, remind_at if remind_at is not None else self.give_up)
            await asyncio.sleep(max(0.5, min(self.poll_seconds, wake - now)))
