"""Remediation steps of the runbook's scenarios as Airflow tasks."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from incident_ops.params import rendered_flag

__all__ = ["DEFER_MARGIN_SECONDS", "RemediationOperator"]

# The deferral's own timeout beyond the wait's: the trigger reports the wait's timeout itself first.
DEFER_MARGIN_SECONDS = 300


class RemediationOperator(BaseOperator):
    """Runs one scenario step (and its fallback when it fails) with the collection's modules.

    `check_mode` is templated, so the run's `params.check_mode` sets it. The step reports go to XCom
    and to the ledger; a failed step fails the task (the failure notifier tells people). Retries are
    safe: the modules are idempotent per incident id. A retry that finds the change made by an earlier
    try of the same incident (`details["done_earlier"]`) reports and records it as changed: the earlier
    try may have died before recording it, and the ledger is what the recovery announcement and the
    postmortem read.

    Long waits hold no worker slot: in apply mode, the GitHub rollback (dispatch, then the run) and the
    RDS restore (start, then the new database) make their change here and defer the wait to the
    triggerer (`incident_ops.triggers.github.GitHubRunTrigger`, `incident_ops.triggers.rds.
    RdsRestoreTrigger`); `execute_complete` finishes the step from the trigger's event, runs the
    fallback when it failed, and records the reports as `execute` does. Check mode never defers.
    """

    template_fields: Sequence[str] = ("environment", "service", "incident_id", "check_mode", "approved_by")
    ui_color = "#f4a261"

    def __init__(self, *, scenario: str, step_id: str, environment: str, service: str | None, incident_id: str,
                 check_mode: bool | str = False, approved_by: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.step_id = step_id
        self.environment = environment
        self.service = service
        self.incident_id = incident_id
        self.check_mode = check_mode
        self.approved_by = approved_by

    def _setup(self) -> SimpleNamespace:
        """What running (or continuing) the step needs: the runbook, the ledger, the clients, the kwargs."""
        from incident_ops.actions.playbook import DESTRUCTIVE_ACTIONS
        from incident_ops.core.ledger import Ledger
        from incident_ops.flows.incident import load, services_for
        from incident_ops.flows.recovery import step_context

        runbook = load()
        check_mode = rendered_flag(self.check_mode)
        step = runbook.scenario(self.scenario).step(self.step_id)
        approved_by = self.approved_by if self.approved_by not in (None, "", "None") else None
        confirm = approved_by is not None or step.action not in DESTRUCTIVE_ACTIONS
        ledger = Ledger()
        incident = ledger.get(self.incident_id)
        services = services_for(self.environment)
        # Endpoints from the connections, and what the incident tells a step (a support case's text).
        overrides = services.settings.action_overrides()
        for action, extra in step_context(incident, self.scenario, self.step_id).items():
            overrides[action] = {**overrides.get(action, {}), **extra}
        kwargs = {
            "overrides": overrides, "severity": incident.get("severity"), "check_mode": check_mode,
            "incident_id": self.incident_id, "service": self.service,
            "since": incident["detected_at"].isoformat() if incident.get("detected_at") else None,
            "confirm": confirm,
            # A long wait goes to the triggerer; check mode never waits, so never defers.
            "defer_waits": not check_mode,
        }
        return SimpleNamespace(runbook=runbook, check_mode=check_mode, approved_by=approved_by, ledger=ledger,
                               incident=incident, clients=services.clients(), kwargs=kwargs)

    def execute(self, context: Any) -> list[dict[str, Any]]:
        from incident_ops.actions.playbook import run_step

        setup = self._setup()
        reports = run_step(setup.runbook, self.environment, self.scenario, self.step_id, setup.clients,
                           **setup.kwargs)
        return self._settle(setup, reports)

    def execute_complete(self, context: Any, event: dict[str, Any], reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Resumed by the trigger of the last report's wait: finish that report, run the fallback if it
        failed (which may defer again), then record everything as `execute` does."""
        from incident_ops.actions.playbook import continue_step, finish_step

        setup = self._setup()
        reports = [*reports[:-1], finish_step(setup.runbook, self.scenario, reports[-1], event)]
        self.log.info("%s (%s): the wait ended: %s", reports[-1]["step"], reports[-1]["action"],
                      reports[-1]["message"])
        reports = continue_step(setup.runbook, self.environment, self.scenario, reports, setup.clients,
                                **setup.kwargs)
        return self._settle(setup, reports)

    def _trigger(self, action: str, wait: dict[str, Any]) -> Any:
        deadline = time.time() + float(wait["timeout"])
        if action == "github_rollback":
            from incident_ops.triggers.github import GitHubRunTrigger

            return GitHubRunTrigger(self.environment, wait["repository"], wait["run_id"], deadline=deadline,
                                    poll=float(wait["poll"]))
        if action == "rds_restore_snapshot":
            from incident_ops.triggers.rds import RdsRestoreTrigger

            return RdsRestoreTrigger(self.environment, wait["instance"], cluster=wait.get("cluster"),
                                     deadline=deadline, timeout=float(wait["timeout"]), poll=float(wait["poll"]))
        raise AirflowException(f"no trigger for the wait of {action}")

    def _settle(self, setup: SimpleNamespace, reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Defer when the last report waits; else record the reports in the ledger and return them."""
        from incident_ops.actions.base import DONE_EARLIER
        from incident_ops.actions.playbook import pending_wait
        from incident_ops.core import narrative

        check_mode, approved_by, ledger = setup.check_mode, setup.approved_by, setup.ledger
        wait = None if check_mode else pending_wait(reports[-1])
        if wait is not None:
            self.log.info("%s (%s): %s; deferring the wait to the triggerer", reports[-1]["step"],
                          reports[-1]["action"], reports[-1]["message"])
            self.defer(trigger=self._trigger(reports[-1]["action"], wait), method_name="execute_complete",
                       kwargs={"reports": reports},
                       timeout=dt.timedelta(seconds=float(wait["timeout"]) + DEFER_MARGIN_SECONDS))
        now = dt.datetime.now(dt.UTC)
        for report in reports:
            if not check_mode and report["ok"] and not report["changed"] and report["details"].get(DONE_EARLIER):
                # An earlier try made this change and died before recording it (e.g. its worker was
                # killed): the change is this incident's, so the record says the step changed it.
                report["changed"] = True
            report["approved_by"] = approved_by
            report["at"] = now.isoformat()
            self.log.info("%s (%s%s): %s", report["step"], report["action"], ", check mode" if check_mode else "",
                          report["message"])
            ledger.record_event(
                self.incident_id, at=now, kind="action", actor=approved_by or "incident_ops",
                message=narrative.action_sentence(report),
                data=report, idempotency_key=f"action:{report['step']}:{'check' if check_mode else 'apply'}",
            )
        if not reports[-1]["ok"]:
            raise AirflowException(f"step {self.step_id} failed: {reports[-1]['message']}")
        if not check_mode and any(r["changed"] for r in reports) and setup.incident["status"] == "open":
            ledger.update(self.incident_id, now, scenario=self.scenario)
        return reports
