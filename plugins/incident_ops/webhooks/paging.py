"""The page at once: the webhook intake itself sends the PagerDuty trigger of a new P1/P2 incident.

Through the DAG the page waits for the scheduler, a worker and the task's start (about 3.7 s after
the alarm). For an alarm, alert or `/incident` that opens a NEW incident of P1 or P2, the webhook app
hands the incident id to `IntakePager.offer` right after the intake's answer is known; one background
thread (never a thread of the request path, never Airflow's shared pool) sends the Events API v2
trigger PagerDuty gets from the DAG: the same `dedup_key` (the incident id), summary
(`core.notices.page_summary`), severity and custom details. The request never waits for PagerDuty.

- **Bounded.** The queue holds `max_queue` incident ids (`INCIDENT_OPS_INTAKE_PAGE_QUEUE`, 64); when
  it is full, the offer is refused with a warning in the log. Nothing is lost: the DAG pages anyway.
- **Recorded.** When PagerDuty accepted the trigger, the ledger gets the event `paged` (actor
  `webhook-intake`, idempotency key `paged`). The DAG's `notify_responders` then counts the on-call's
  Events API v2 trigger of that severity as delivered and does not send it again; everything else
  (the CTO's phone call, a responder request on the PagerDuty incident, and Slack) is still the
  DAG's. When the intake's attempt failed (PagerDuty 5xx, a timeout, no connection), nothing is
  recorded and the DAG pages as it always did.
- **Its own client.** Built lazily in the background thread from the Airflow connection
  `pagerduty_default` (through `hooks.services.IncidentServicesHook`, as the DAG's), Events API only,
  with one quick retry and a 5 s timeout (the DAG is the slow, patient path), and cached per environment.

`INCIDENT_OPS_INTAKE_PAGE=off` turns the intake's page off (the DAG alone pages, as before).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

from incident_ops.core.ledger import OPEN_STATUSES, Ledger
from incident_ops.core.runbook import Runbook

__all__ = [
    "ENABLE_ENV",
    "INTAKE_ACTOR",
    "PAGE_SEVERITIES",
    "QUEUE_ENV",
    "IntakePager",
    "page_event",
    "paging_enabled",
    "project_pager",
]

log = logging.getLogger(__name__)

ENABLE_ENV = "INCIDENT_OPS_INTAKE_PAGE"
QUEUE_ENV = "INCIDENT_OPS_INTAKE_PAGE_QUEUE"
PAGE_SEVERITIES = ("P1", "P2")
# The actor of the `paged` event (flows.incident.INTAKE_ACTOR: the DAG reads it).
INTAKE_ACTOR = "webhook-intake"
# The Events API v2 `source` the DAG's notices carry (notify.deliver's default).
SOURCE = "incident_ops"
_STOP = object()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def paging_enabled(env: dict[str, str] | None = None) -> bool:
    """`INCIDENT_OPS_INTAKE_PAGE` (on by default; off/0/false/no turns it off)."""
    value = (os.environ if env is None else env).get(ENABLE_ENV, "on")
    return value.strip().lower() not in ("off", "0", "false", "no")


def queue_size(env: dict[str, str] | None = None) -> int:
    value = (os.environ if env is None else env).get(QUEUE_ENV, "64")
    try:
        return max(1, int(value))
    except ValueError:
        log.error("%s=%r is not a number; using 64", QUEUE_ENV, value)
        return 64


def project_pager(environment: str) -> Any | None:
    """The intake's PagerDuty client for `environment`: Events API only, from the connection
    `pagerduty_default` (None when it has no routing key)."""
    from incident_ops.clients.pagerduty import IncidentPager
    from incident_ops.flows.incident import load
    from incident_ops.hooks.services import IncidentServicesHook

    settings = IncidentServicesHook(load().environment(environment)).settings()
    if not settings.pagerduty_routing_key:
        return None
    return IncidentPager(settings.pagerduty_routing_key, None, events_url=settings.pagerduty_events_url,
                         verify=settings.verify, retry_attempts=1, backoff=0.2, timeout=5.0)


def page_event(runbook: Runbook, record: dict[str, Any], at: dt.datetime) -> dict[str, Any]:
    """The trigger the DAG's on-call notice sends for the ledger's `record` (keyword arguments of
    `IncidentPager.trigger`): dedup key, summary, severity, source and custom details."""
    from incident_ops.core.escalation import route
    from incident_ops.core.notices import page_summary, render_notice

    severity = record["severity"]
    symptom_id = record.get("symptom") or ""
    try:
        symptom = runbook.symptom(symptom_id)
        label, impact = symptom.label, symptom.impact or symptom.label
    except KeyError:
        label = impact = symptom_id or record.get("title") or "-"
    text = render_notice(runbook, incident_id=record["id"], severity=severity, symptom=label, impact=impact,
                         detected_at=record["detected_at"], notices=route(runbook, severity, at))
    return {
        "dedup_key": record["id"],
        "summary": page_summary(severity, label, record.get("environment"), record.get("service")),
        "severity": severity,
        "source": SOURCE,
        "custom_details": {"target": "oncall", "text": text},
    }


class IntakePager:
    """One background sender with a bounded queue (see the module doc).

    `pager_for(environment)` gives the PagerDuty client (an `IncidentPager`, or anything with its
    `trigger`), or None when PagerDuty is not configured; it is called in the sender's thread, once
    per environment (a failure is not cached: the next page tries again).
    """

    def __init__(self, runbook: Runbook, ledger: Ledger, pager_for: Callable[[str], Any], *,
                 clock: Callable[[], dt.datetime] = _now, max_queue: int = 64) -> None:
        self.runbook = runbook
        self.ledger = ledger
        self.pager_for = pager_for
        self.clock = clock
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._pagers: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.outcomes: dict[str, str] = {}  # incident id → paged | skipped: … | failed: … (the last few)

    # --- the request path: cheap, never blocks ------------------------------------------------------

    def offer(self, incident_id: str | None, severity: str | None, status: str = "new") -> bool:
        """Queue the page of a NEW P1/P2 incident; False (nothing queued) otherwise or when the queue
        is full (logged: the DAG pages it)."""
        if status != "new" or not incident_id or severity not in PAGE_SEVERITIES:
            return False
        self._start()
        try:
            self.queue.put_nowait(incident_id)
        except queue.Full:
            log.warning("the intake's page queue is full (%d): %s will be paged by its DAG run only",
                        self.queue.maxsize, incident_id)
            return False
        return True

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="incident-intake-page", daemon=True)
                self._thread.start()

    # --- the sender -----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            try:
                if item is _STOP:
                    return
                self.page(item)
            except Exception:  # noqa: BLE001 - the DAG pages anyway; the sender must live on
                log.exception("the intake's page of %s failed", item)
            finally:
                self.queue.task_done()

    def _pager(self, environment: str) -> Any | None:
        if environment in self._pagers:
            return self._pagers[environment]
        pager = self.pager_for(environment)
        self._pagers[environment] = pager
        return pager

    def _outcome(self, incident_id: str, outcome: str) -> str:
        self.outcomes[incident_id] = outcome
        while len(self.outcomes) > 256:
            self.outcomes.pop(next(iter(self.outcomes)))
        return outcome

    def page(self, incident_id: str) -> str:
        """Send the trigger now (in the calling thread) and record `paged`; returns the outcome."""
        record = self.ledger.get(incident_id)
        if record["status"] not in OPEN_STATUSES:
            return self._outcome(incident_id, f"skipped: the incident is {record['status']}")
        if record["severity"] not in PAGE_SEVERITIES:
            return self._outcome(incident_id, f"skipped: {record['severity']}")
        if self._already_paged(incident_id):
            return self._outcome(incident_id, "skipped: already paged")
        try:
            pager = self._pager(record["environment"])
        except Exception as exc:  # noqa: BLE001 - no client now: the DAG pages
            log.warning("the intake cannot page %s (no PagerDuty client: %s); its DAG run will", incident_id, exc)
            return self._outcome(incident_id, f"failed: {type(exc).__name__}: {exc}")
        if pager is None or getattr(pager, "events", True) is None:
            return self._outcome(incident_id, "skipped: PagerDuty is not configured")
        event = page_event(self.runbook, record, self.clock())
        try:
            answered = pager.trigger(event["dedup_key"], event["summary"], event["severity"], event["source"],
                                     custom_details=event["custom_details"])
        except Exception as exc:  # noqa: BLE001 - PagerDuty down or slow: the DAG pages
            log.warning("the intake's page of %s failed (%s); its DAG run will page", incident_id, exc)
            return self._outcome(incident_id, f"failed: {type(exc).__name__}: {exc}")
        self.ledger.record_event(
            incident_id, at=self.clock(), kind="paged", actor=INTAKE_ACTOR,
            message=f"PagerDuty に呼び出しを送信（アラーム受信時、{event['severity']}）",
            data={"target": "oncall", "via": "pagerduty", "ok": True, "dedup_key": answered or event["dedup_key"],
                  "severity": event["severity"], "summary": event["summary"], "source": event["source"]},
            idempotency_key="paged",
        )
        log.info("paged %s from the webhook intake", incident_id)
        return self._outcome(incident_id, "paged")

    def _already_paged(self, incident_id: str) -> bool:
        """The DAG's page went out first (its notice record), or this one did."""
        if self.ledger.notice(f"{incident_id}:notify:oncall:pagerduty") is not None:
            return True
        return any(event["kind"] == "paged" for event in self.ledger.events(incident_id))

    # --- tests, shutdown ------------------------------------------------------------------------

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every queued page was handled; True when idle."""
        with self.queue.all_tasks_done:
            return self.queue.all_tasks_done.wait_for(lambda: self.queue.unfinished_tasks == 0, timeout)

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            thread = self._thread
        if thread is not None and thread.is_alive():
            try:
                self.queue.put(_STOP, timeout=timeout)
            except queue.Full:
                return
            thread.join(timeout)
