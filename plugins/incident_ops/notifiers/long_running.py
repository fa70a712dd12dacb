"""The safety net of every DAG: a run stuck far beyond its expected time (Airflow `DeadlineAlert`).

Each DAG file declares `deadline=[stuck_run_alert("<dag_id>")]`: reference = the run's queued time,
interval = `SAFETY_NETS[dag_id].stuck_after` (`incident_ops.core.safety_nets`, the one table of
expected runtimes), callback = `SyncCallback` to `long_running_alert`. Airflow prunes the deadline of
a run that succeeded before it; otherwise the scheduler queues the callback at the deadline and the
executor runs it with `context = {"dag_run": {...}, "deadline": {...}}`.

The callback posts 【長時間実行中】 to #dev-team, and for a run that drives an incident also to its
incident channel, once per run (Slack idempotency key `long_running:<dag_id>:<run_id>`). It is
silent when the run has finished meanwhile (a failed run was reported by `DagFailureNotifier`). It
raises only when the notice reached nobody, so the callback shows as failed in Airflow.

Nothing heavy is imported at module level: the DAG files import this module when they are parsed.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from airflow.sdk import DeadlineAlert, DeadlineReference, SyncCallback

__all__ = ["CALLBACK_PATH", "long_running_alert", "notify_long_running", "stuck_run_alert"]

log = logging.getLogger(__name__)
CALLBACK_PATH = "incident_ops.notifiers.long_running.long_running_alert"
DEFAULT_ENVIRONMENT = "production"
_UNFINISHED = {"queued", "running"}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def stuck_run_alert(dag_id: str) -> DeadlineAlert:
    """The DAG's DeadlineAlert: `SAFETY_NETS[dag_id].stuck_after` after the run was queued."""
    from incident_ops.core.safety_nets import safety_net

    limit = safety_net(dag_id).stuck_after
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=limit,
        callback=SyncCallback(CALLBACK_PATH, kwargs={"limit_minutes": limit // dt.timedelta(minutes=1)}),
        name="long_running",
    )


def _incident_of(run: dict[str, Any], ledger: Any) -> dict[str, Any] | None:
    """The incident the run drives: the one given in conf, else the open one filed by this run."""
    incident_id = (run.get("conf") or {}).get("incident_id")
    if incident_id:
        try:
            return ledger.get(incident_id)
        except KeyError:
            return None
    run_id = run.get("dag_run_id") or run.get("run_id")
    return next((item for item in ledger.open_incidents() if item.get("dag_run_id") == run_id), None)


def notify_long_running(
    run: dict[str, Any],
    *,
    limit: dt.timedelta,
    now: dt.datetime,
    runbook: Any = None,
    ledger: Any = None,
    services: Any = None,
    base_url: str | None = None,
) -> dict[str, Any]:
    """Tell #dev-team (and the incident channel) that `run` (Airflow's DAGRunResponse as JSON) is
    still going. `runbook`, `ledger`, `services` default to the project's (tests pass their own)."""
    from incident_ops.core import safety_nets
    from incident_ops.flows import incident as incident_flow

    dag_id = str(run.get("dag_id") or "unknown")
    run_id = str(run.get("dag_run_id") or run.get("run_id") or "unknown")
    state = run.get("state")
    if state is not None and str(state) not in _UNFINISHED:
        return {"dag_id": dag_id, "run_id": run_id, "sent": False, "reason": f"the run is {state} already"}
    runbook = runbook or incident_flow.load()
    net = safety_nets.SAFETY_NETS.get(dag_id)
    incident = None
    if net is not None and net.incident_channel:
        try:
            from incident_ops.core.ledger import Ledger

            incident = _incident_of(run, ledger or Ledger())
        except Exception:  # noqa: BLE001 - #dev-team is told without the incident's details
            log.exception("could not read the incident of run %s", run_id)
    text = safety_nets.long_running_notice(
        dag_id=dag_id, run_id=run_id, now=now, limit=limit, incident=incident, tz=runbook.tz,
        started=run.get("queued_at") or run.get("start_date") or run.get("run_after") or now,
        url=safety_nets.run_url(base_url, dag_id, run_id),
    )
    channels = [runbook.contacts.channels["dev_team"]]
    if incident and incident.get("slack_channel_id"):
        channels.append(incident["slack_channel_id"])
    if services is None:
        environment = (incident or {}).get("environment") or (
            DEFAULT_ENVIRONMENT if DEFAULT_ENVIRONMENT in runbook.environments else next(iter(runbook.environments)))
        services = incident_flow.services_for(environment)
    key = safety_nets.long_running_key(dag_id, run_id)
    results: dict[str, Any] = {}
    for channel in channels:
        try:
            if services.slack is None:
                raise RuntimeError("Slack is not configured")
            answer = services.slack.post(channel, text, idempotency_key=key)
            results[channel] = {"ok": True, "posted": bool(answer.get("posted", True))}
        except Exception as exc:  # noqa: BLE001 - one channel failing must not stop the other
            log.exception("could not post the long-running notice to %s", channel)
            results[channel] = {"ok": False, "error": str(exc)}
    summary = {"dag_id": dag_id, "run_id": run_id, "incident_id": (incident or {}).get("id"), "channels": results}
    if not any(result["ok"] for result in results.values()):
        raise RuntimeError(f"the long-running notice of {dag_id} {run_id} reached nobody: {results}")
    return {**summary, "sent": True}


def long_running_alert(limit_minutes: int, context: dict[str, Any] | None = None) -> dict[str, Any]:
    """DeadlineAlert callback: `limit_minutes` from the alert's kwargs, `context` from Airflow."""
    from incident_ops.notifiers.dag_failure import airflow_base_url

    run = (context or {}).get("dag_run") or {}
    result = notify_long_running(run, limit=dt.timedelta(minutes=int(limit_minutes)), now=_now(),
                                 base_url=airflow_base_url())
    log.info("long-running run: %s", result)
    return result
