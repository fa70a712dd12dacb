"""A scenario's remediation steps, run with the collection's modules (no Airflow).

The incident DAG runs one step per task through `run_step`; the break-glass command line runs a
whole scenario through `run_playbook`. Both go through the same step parameters (inventory + the
step's params + guard rails, `incident_ops.actions.registry.step_params`) and the same fallback
rule: a step that fails and names a `fallback` runs that step next. A step with `when:` runs only
when `incident_ops.core.recovery.decide_step` says so (the DAG decides in a task of its own).

Long waits: the GitHub rollback run (up to 900 s) and the RDS restore (up to 1800 s). Here they are
synchronous (the command line has no triggerer). With `defer_waits=True` (the DAG's apply mode) the
step stops after the module's write: its report carries `details["wait_for"]` (`pending_wait`), the
operator hands the wait to a trigger, and `finish_step` + `continue_step` finish the step (and run its
fallback) from the trigger's event.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from incident_ops.actions import github, rds
from incident_ops.actions.base import DESTRUCTIVE_ACTIONS, ActionError, GuardRailError, Result
from incident_ops.actions.registry import Clients, run_action, step_params
from incident_ops.core.recovery import decide_step, needs_health
from incident_ops.core.runbook import Runbook, Step

__all__ = [
    "DEFERRABLE_ACTIONS",
    "DESTRUCTIVE_ACTIONS",
    "WAIT_FOR",
    "continue_step",
    "finish_step",
    "pending_wait",
    "run_playbook",
    "run_step",
    "step_report",
]

# details key of a report whose module made its change and left the wait to the caller (both modules').
WAIT_FOR = github.WAIT_FOR


def _start_github_rollback(clients: Clients, params: dict[str, Any], check_mode: bool) -> Result:
    return github.start_rollback(clients, params, check_mode)


def _start_rds_restore(clients: Clients, params: dict[str, Any], check_mode: bool) -> Result:
    return rds.start_restore(clients.need("rds", "rds_restore_snapshot"), params, check_mode)


def _finish_github_rollback(started: Result, event: Mapping[str, Any]) -> Result:
    if event.get("error"):
        raise ActionError(f"github_rollback: GitHub API error: {event['error']}")
    return github.finish_rollback(started, dict(event["run"]))


def _finish_rds_restore(started: Result, event: Mapping[str, Any]) -> Result:
    return rds.finish_restore(started, dict(event))


# action -> (start: the write, returns a report with details[WAIT_FOR]; finish: (started, event) -> Result).
DEFERRABLE_ACTIONS: dict[str, tuple[Callable[[Clients, dict[str, Any], bool], Result],
                                    Callable[[Result, Mapping[str, Any]], Result]]] = {
    "github_rollback": (_start_github_rollback, _finish_github_rollback),
    "rds_restore_snapshot": (_start_rds_restore, _finish_rds_restore),
}


def step_report(step: Step, result: Result | None, *, error: str | None = None, skipped: str | None = None,
                refused: bool = False) -> dict[str, Any]:
    """One step's outcome in the shape the CLI, XCom and the postmortem use. `refused`: a guard rail
    refused it (the runbook's limit, not a failure of the service)."""
    if result is None:
        return {
            "step": step.id,
            "action": step.action,
            "ok": skipped is not None,
            "changed": False,
            "skipped": skipped is not None,
            "before": None,
            "after": None,
            "message": skipped or error or "",
            "details": {},
            "check_mode": None,
            **({"refused": True} if refused else {}),
        }
    return {
        "step": step.id,
        "action": step.action,
        "ok": result.ok,
        "changed": result.changed,
        "skipped": False,
        "before": result.before,
        "after": result.after,
        "message": result.message,
        "details": result.details,
        "check_mode": result.check_mode,
    }


def _attempt(
    runbook: Runbook,
    environment: str,
    step: Step,
    clients: Clients,
    *,
    check_mode: bool,
    incident_id: str,
    service: str | None = None,
    since: str | None = None,
    confirm: bool = False,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    severity: str | None = None,
    defer_waits: bool = False,
) -> dict[str, Any]:
    params = step_params(runbook, environment, step, service=service, incident_id=incident_id, since=since,
                         confirm=confirm, severity=severity)
    # Endpoint overrides from the connections (e.g. the external status page of a stand-in).
    params.update((overrides or {}).get(step.action, {}))
    try:
        if defer_waits and not check_mode and step.action in DEFERRABLE_ACTIONS:
            result = DEFERRABLE_ACTIONS[step.action][0](clients, dict(params), check_mode)
        else:
            result = run_action(step.action, clients, params, check_mode)
    except GuardRailError as exc:
        return step_report(step, None, error=f"refused by guard rail: {exc}", refused=True)
    except ActionError as exc:
        return step_report(step, None, error=f"failed: {exc}")
    return step_report(step, result)


def pending_wait(report: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a report's module left to wait for (`defer_waits`), or None when the report is final."""
    wait = (report.get("details") or {}).get(WAIT_FOR)
    return dict(wait) if wait else None


def finish_step(runbook: Runbook, scenario: str, report: Mapping[str, Any], event: Mapping[str, Any]) -> dict[str, Any]:
    """The final report of a step whose report was pending (`pending_wait`), from the wait's event
    (`incident_ops.triggers`): what the synchronous module would have reported."""
    step = runbook.scenario(scenario).step(report["step"])
    started = Result(report["changed"], report["before"], report["after"], report["message"],
                     dict(report["details"]), bool(report["check_mode"]), report["ok"])
    try:
        result = DEFERRABLE_ACTIONS[step.action][1](started, event)
    except ActionError as exc:
        return step_report(step, None, error=f"failed: {exc}")
    return step_report(step, dataclasses.replace(result, check_mode=started.check_mode))


def continue_step(
    runbook: Runbook,
    environment: str,
    scenario: str,
    reports: list[dict[str, Any]],
    clients: Clients,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """After the (final) reports of a step so far, run the fallback of the last one if it failed, and
    so on; stops at a pending report (`defer_waits`). Takes `run_step`'s keyword arguments."""
    plan = runbook.scenario(scenario)
    reports = list(reports)
    seen = {r["step"] for r in reports}
    step = plan.step(reports[-1]["step"])
    while (not reports[-1]["ok"] and pending_wait(reports[-1]) is None and step.fallback
           and step.fallback not in seen):
        step = plan.step(step.fallback)
        seen.add(step.id)
        reports.append(_attempt(runbook, environment, step, clients, **kwargs))
    return reports


def run_step(
    runbook: Runbook,
    environment: str,
    scenario: str,
    step_id: str,
    clients: Clients,
    *,
    check_mode: bool,
    incident_id: str,
    service: str | None = None,
    since: str | None = None,
    confirm: bool = False,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    severity: str | None = None,
    defer_waits: bool = False,
) -> list[dict[str, Any]]:
    """Run one step and, if it failed and names a fallback, the fallback; the reports in order.

    `defer_waits` (never in check mode): a module with a long wait (`DEFERRABLE_ACTIONS`) only starts
    its change; the reports then end with a pending one (`pending_wait`) and the caller waits.
    """
    step = runbook.scenario(scenario).step(step_id)
    kwargs = {"check_mode": check_mode, "service": service, "incident_id": incident_id, "since": since,
              "confirm": confirm, "overrides": overrides, "severity": severity, "defer_waits": defer_waits}
    return continue_step(runbook, environment, scenario, [_attempt(runbook, environment, step, clients, **kwargs)],
                         clients, **kwargs)


def run_playbook(
    runbook: Runbook,
    scenario: str,
    environment: str,
    clients: Clients,
    *,
    check_mode: bool,
    incident_id: str,
    service: str | None = None,
    confirm: bool = False,
    include_optional: bool = False,
    since: str | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    severity: str | None = None,
    health: Callable[[], Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Every main step of `scenario` in order; optional steps only with `include_optional`.

    `ok` is False when a step's last attempt (after its fallback) failed; the steps after it still
    run only in check mode (a dry run reports everything it would do), except those whose `when:`
    is about a failure (a ladder's next rung, a support case). A step with `when:` runs when
    `decide_step` says so; `health()` answers {"healthy": bool} after the rung before a
    `still_unhealthy` step (without it such a step is offered: nothing says the service healed).
    A `wait` step checks once here: waiting is the DAG's (or the person's) part.
    """
    runbook.environment(environment)
    plan = runbook.scenario(scenario)
    steps: list[dict[str, Any]] = []
    ok = True
    for step in plan.main_steps():
        if step.optional and not include_optional:
            steps.append(step_report(step, None, skipped="optional step: not requested (--include-optional)"))
            continue
        if step.when is not None:
            observed = (health() if health is not None else {"healthy": False}) if needs_health(step) and not check_mode else None
            decision = decide_step(runbook, scenario, step.id, steps, health=observed, check_mode=check_mode)
            if not decision.run:
                steps.append(step_report(step, None, skipped=decision.reason))
                continue
        elif not ok and not check_mode:
            steps.append(step_report(step, None, error="not run: an earlier step failed"))
            continue
        reports = run_step(runbook, environment, scenario, step.id, clients, check_mode=check_mode,
                           incident_id=incident_id, service=service, since=since, confirm=confirm,
                           overrides=overrides, severity=severity)
        steps.extend(reports)
        ok = ok and reports[-1]["ok"]
    return {
        "scenario": scenario,
        "environment": environment,
        "check_mode": check_mode,
        "incident_id": incident_id,
        "ok": ok,
        "steps": steps,
    }
