"""Phase 1's and the escalation's waits on the incident, polled in the triggerer (no worker slot held):

- `AcknowledgementTrigger`: someone started the response. The ledger is read every `poll` seconds
  (PagerDuty's v3 webhook and the `incident_acknowledge` DAG record the acknowledgement there, so the
  wait ends within seconds); PagerDuty's incident is asked every `pagerduty_poll` seconds (counted from
  the trigger's creation: the task asked just before deferring), the fallback when its webhook did not
  arrive (`incident_ops.flows.incident.acknowledgement`). The deadline is the
  response-start target of the severity the incident has now, read again each round: a later, higher
  alarm joining the incident shortens it.
- `FirstNoticeTrigger`: the incident's own run sent its first notices and opened its channel
  (`incident_ops.flows.escalation.first_notice_sent`), until a fixed deadline.

A fixed set of waits, each its own class: the serialized kwargs name an incident and times, never
something to import or call. Every read is synchronous (SQLAlchemy, the PagerDuty client) and runs in
a thread. A read that fails (the ledger or PagerDuty down) is logged and tried again at the next poll;
the deadline still ends the wait. Deadlines are epoch seconds, so a triggerer restart keeps them.
Importable from plugins/ (the triggerer loads them by their path); this module imports nothing heavy.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from incident_ops.triggers import health

__all__ = ["AcknowledgementTrigger", "FirstNoticeTrigger", "ledger_acknowledgement"]


def ledger_acknowledgement(incident_id: str) -> dict[str, Any] | None:
    """The acknowledgement the ledger holds (the webhook's, the UI's, a PagerDuty lookup's), or None: the
    cheap read, no PagerDuty call."""
    from incident_ops.flows.incident import acknowledgement

    return acknowledgement({"id": incident_id}, ask_pagerduty=False)


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()


class _IncidentWait(BaseTrigger):
    """The poll loop both waits share: `_look()` (in a thread) every `poll` seconds until it returns an
    event's payload, or `_deadline()` passes."""

    deadline: float
    poll: float
    incident_id: str

    def _look(self) -> dict[str, Any] | None:
        raise NotImplementedError

    def _deadline(self) -> float:
        """The wait's end now (epoch seconds)."""
        return self.deadline

    def _timeout(self, deadline: float) -> dict[str, Any]:
        return {"timeout": True, "deadline": _iso(deadline)}

    async def _read(self, what: str, read: Callable[[], Any]) -> tuple[bool, Any]:
        try:
            return True, await asyncio.to_thread(read)
        except Exception as exc:  # noqa: BLE001 - one poll's failure: logged, tried again at the next
            self.log.warning("%s of %s failed (tried again in %.0f s): %s: %s", what, self.incident_id,
                             self.poll, type(exc).__name__, exc)
            return False, None

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # The task looked once before deferring. Let the scheduler see the deferral before an event can
        # resume the task (see HealthTrigger): firing within a scheduler loop of the defer races it.
        await asyncio.sleep(health.MIN_FIRST_WAIT)
        deadline = self.deadline
        while True:
            ok, found = await self._read("the look", self._look)
            if ok and found is not None:
                yield TriggerEvent(found)
                return
            ok, now_deadline = await self._read("the deadline", self._deadline)
            if ok and now_deadline is not None:
                deadline = float(now_deadline)
            left = deadline - time.time()
            if left <= 0:
                self.log.info("wait of %s: deadline %s passed", self.incident_id, _iso(deadline))
                yield TriggerEvent(self._timeout(deadline))
                return
            await asyncio.sleep(min(self.poll, left))


class AcknowledgementTrigger(_IncidentWait):
    """Fires {"acknowledged": {"by", "at", "source"}} once someone started the response, or
    {"timeout": True, "deadline": ISO time} when the severity's response-start target passes first.
    `deadline` (epoch seconds) is the target when the task deferred; the current one is read each round."""

    def __init__(self, incident_id: str, environment: str, *, deadline: float, poll: float = 3.0,
                 pagerduty_poll: float = 20.0) -> None:
        super().__init__()
        self.incident_id = incident_id
        self.environment = environment
        self.deadline = float(deadline)
        self.poll = float(poll)
        self.pagerduty_poll = float(pagerduty_poll)
        # The task asked PagerDuty just before it deferred: the first ask here is `pagerduty_poll` later.
        self._pagerduty_asked = time.monotonic()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "incident_ops.triggers.incident_waits.AcknowledgementTrigger",
            {"incident_id": self.incident_id, "environment": self.environment, "deadline": self.deadline,
             "poll": self.poll, "pagerduty_poll": self.pagerduty_poll},
        )

    def _look(self) -> dict[str, Any] | None:
        from incident_ops.flows.incident import acknowledgement

        now = time.monotonic()
        if now - self._pagerduty_asked >= self.pagerduty_poll:
            self._pagerduty_asked = now  # before the call: a PagerDuty that keeps failing is not asked more often
            found = acknowledgement({"id": self.incident_id, "environment": self.environment})
        else:
            found = ledger_acknowledgement(self.incident_id)
        if found is None:
            return None
        self.log.info("%s acknowledged by %s (%s)", self.incident_id, found.get("by"), found.get("source"))
        return {"acknowledged": found}

    def _deadline(self) -> float:
        from incident_ops.flows.incident import current_response_deadline

        return current_response_deadline({"id": self.incident_id}).timestamp()


class FirstNoticeTrigger(_IncidentWait):
    """Fires {"first_notice": True} once the incident's run has sent its first notices and opened its
    channel (or the incident is closed), or {"timeout": True, "deadline": ISO time} at `deadline`."""

    def __init__(self, incident_id: str, *, deadline: float, poll: float = 3.0) -> None:
        super().__init__()
        self.incident_id = incident_id
        self.deadline = float(deadline)
        self.poll = float(poll)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "incident_ops.triggers.incident_waits.FirstNoticeTrigger",
            {"incident_id": self.incident_id, "deadline": self.deadline, "poll": self.poll},
        )

    def _look(self) -> dict[str, Any] | None:
        from incident_ops.flows.escalation import first_notice_sent

        return {"first_notice": True} if first_notice_sent(self.incident_id) else None
