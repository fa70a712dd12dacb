"""Roll back through GitHub Actions, as the runbook does by hand:

    gh workflow run rollback.yml -f environment=production -f service=backend -f version=latest-1

The module dispatches the workflow with exactly those inputs, follows the run to completion and
reports ok=False (not an exception) when it fails, is cancelled or times out: the ECS rollback to the
previous task definition is the fallback step. Only HTTP errors that survive the retries raise.

The write and the wait are split: `start_rollback` dispatches (or finds the run already dispatched)
and, when there is a run to follow, says so in `details[WAIT_FOR]`; `finish_rollback` turns the run's
last state into the step's result. `github_rollback` is both with a synchronous wait between them (the
break-glass command line); Airflow follows the run in the triggerer instead
(`incident_ops.triggers.github.GitHubRunTrigger`), so the wait holds no worker slot.
"""

from __future__ import annotations

from typing import Any

from incident_ops.actions import incident_token, require_param, require_remediation
from incident_ops.actions.base import DONE_EARLIER, ActionError, Result
from incident_ops.actions.ecs import describe_service, service_tags, tag_service
from incident_ops.clients.github import GitHubClient
from incident_ops.clients.http import HttpError

__all__ = ["GITHUB_ROLLBACK_TAG", "WAIT_FOR", "finish_rollback", "github_rollback", "start_rollback"]

GITHUB_ROLLBACK_TAG = "incident-ops:github-rollback"
# Result.details key of a started rollback whose run is still to be followed (removed by finish_rollback).
WAIT_FOR = "wait_for"
FALLBACK = "fall back to the ECS rollback (ecs_rollback: the previous task definition)"


def _run_view(run: dict[str, Any] | None) -> dict[str, Any] | None:
    if not run:
        return None
    return {k: run.get(k) for k in ("id", "status", "conclusion", "html_url", "created_at", "display_title")}


def _ecs_record(clients: Any, params: dict[str, Any]) -> tuple[Any, str | None, dict[str, str]]:
    """(ecs client, service ARN, tags) when the caller gave an ECS client and the service; else empties."""
    ecs = getattr(clients, "ecs", None)
    cluster, service = params.get("cluster"), params.get("ecs_service")
    if ecs is None or not cluster or not service:
        return None, None, {}
    svc = describe_service(ecs, str(cluster), str(service))
    return ecs, svc["serviceArn"], service_tags(ecs, svc["serviceArn"])


def _find_existing(gh: GitHubClient, params: dict[str, Any], incident_id: str, tags: dict[str, str],
                   runs: list[dict[str, Any]]) -> tuple[int | None, str | None]:
    if params.get("existing_run_id"):
        return int(params["existing_run_id"]), "existing_run_id"
    record = tags.get(GITHUB_ROLLBACK_TAG, "").split()
    if len(record) == 2 and record[0] == incident_id and record[1].isdigit():
        return int(record[1]), f"ECS service tag {GITHUB_ROLLBACK_TAG}"
    for run in runs:
        title = f"{run.get('display_title') or ''} {run.get('name') or ''}"
        if incident_id in title:
            return int(run["id"]), "a run titled with the incident id"
    return None, None


def start_rollback(clients: Any, params: dict[str, Any], check_mode: bool = False) -> Result:
    """Dispatch `rollback.yml` (inputs environment/service/version), or find the run already dispatched.

    clients: github (GitHubClient), optionally ecs. params: repository, workflow (rollback.yml),
    ref (main), environment, service (the GitHub service name, e.g. backend), version (latest-1),
    incident_id, since (ISO time of detection), existing_run_id, timeout_seconds (900),
    poll_seconds (15), allow_remediation; cluster and ecs_service for the record.
    Idempotency: before dispatching, a run already dispatched for the incident is looked for —
    `existing_run_id`, the ECS service tag `incident-ops:github-rollback` = "<incident_id> <run id>"
    (written right after the dispatch), or a run since `since` whose title contains the incident id —
    and followed instead of dispatching again (changed=False; `details["done_earlier"]` when the run
    was found by the incident's own record, the tag or the title, and succeeded). A dispatch whose
    answer is lost (timeout, 5xx) is not sent again blind: the run it started is looked for and
    adopted (`details["adopted"]`); see `GitHubClient.dispatch_workflow`.

    Check mode, and a dispatch whose run cannot be found, return the final result. Otherwise the
    result is provisional: `details[WAIT_FOR]` = {repository, run_id, timeout, poll, dispatched,
    found_by} names the run to follow; hand its last state to `finish_rollback`.
    """
    action = "github_rollback"
    gh = getattr(clients, "github", None)
    if gh is None:
        raise ActionError(f"{action} needs the github client")
    repository = str(require_param(params, "repository", action))
    workflow = str(params.get("workflow") or "rollback.yml")
    ref = str(params.get("ref") or "main")
    inputs = {
        "environment": str(require_param(params, "environment", action)),
        "service": str(require_param(params, "service", action)),
        "version": str(params.get("version") or "latest-1"),
    }
    incident_id = incident_token(params, action)
    timeout = float(params.get("timeout_seconds") or 900)
    poll = float(params.get("poll_seconds") or 15)
    since = params.get("since")
    require_remediation(params, check_mode, action)

    try:
        ecs, service_arn, tags = _ecs_record(clients, params)
        runs = gh.list_workflow_runs(repository, workflow, created_since=since) if since else []
        run_id, found_by = _find_existing(gh, params, incident_id, tags, runs)
        details: dict[str, Any] = {"repository": repository, "workflow": workflow, "ref": ref, "inputs": inputs}
        dispatched = False
        if run_id is not None:
            details["found_by"] = found_by
            if check_mode:
                run = gh.get_run(repository, run_id)
                return Result(False, _run_view(run), _run_view(run),
                              f"run {run_id} was already dispatched for incident {incident_id} ({found_by}); "
                              f"it is {run.get('status')}/{run.get('conclusion')}: would follow it, not dispatch",
                              details, check_mode)
        else:
            command = (f"gh workflow run {workflow} --ref {ref} " +
                       " ".join(f"-f {k}={v}" for k, v in inputs.items()))
            details["command"] = command
            if check_mode:
                return Result(True, None, {"dispatch": details}, f"would dispatch {workflow} on {repository}@{ref}: "
                              f"{command}", details, check_mode)
            if not since:
                runs = gh.list_workflow_runs(repository, workflow)
            known = {int(r["id"]) for r in runs}
            # A dispatch whose answer is lost is not sent again blind: the client adopts the run it started.
            answer = gh.dispatch_workflow(repository, workflow, ref, inputs, known_run_ids=known, created_since=since,
                                          adopt_wait=min(timeout, 30.0), adopt_poll=min(poll, 5.0))
            dispatched = True
            if answer and answer.get("workflow_run_id"):
                run_id = int(answer["workflow_run_id"])
                if answer.get("adopted"):
                    details["adopted"] = True
            else:  # 204: GitHub started a run without naming it
                run_id = gh.find_new_run(repository, workflow, known, since, wait=min(timeout, 120.0),
                                         poll=min(poll, 5.0))
            if run_id is None:
                return Result(True, None, None, f"dispatched {workflow} but could not find its run; {FALLBACK}",
                              details, check_mode, ok=False)
            if ecs is not None and service_arn:
                tag_service(ecs, service_arn, {GITHUB_ROLLBACK_TAG: f"{incident_id} {run_id}"})
    except HttpError as exc:
        raise ActionError(f"{action}: GitHub API error: {exc}") from exc
    details["run_id"] = run_id
    details[WAIT_FOR] = {"repository": repository, "run_id": run_id, "timeout": timeout, "poll": poll,
                         "dispatched": dispatched, "found_by": found_by}
    verb = "dispatched" if dispatched else f"found ({found_by})"
    return Result(dispatched, None, None, f"rollback run {run_id} {verb}; waiting for it to complete "
                  f"(up to {int(timeout)}s)", details, check_mode)


def finish_rollback(started: Result, run: dict[str, Any]) -> Result:
    """The step's result from a started rollback (`start_rollback`, with `details[WAIT_FOR]`) and the
    run's last state (completed, or whatever it was when the wait's `timeout` passed)."""
    details = {k: v for k, v in started.details.items() if k != WAIT_FOR}
    wait = started.details[WAIT_FOR]
    run_id, timeout, dispatched, found_by = wait["run_id"], wait["timeout"], wait["dispatched"], wait["found_by"]
    check_mode = started.check_mode
    after = _run_view(run)
    before = None if dispatched else after
    url = run.get("html_url") or ""
    if run.get("status") != "completed":
        return Result(dispatched, before, after,
                      f"rollback run {run_id} did not complete within {int(timeout)}s (still {run.get('status')}); "
                      f"{FALLBACK}", details, check_mode, ok=False)
    if run.get("conclusion") != "success":
        return Result(dispatched, before, after,
                      f"rollback run {run_id} concluded {run.get('conclusion')} {url}; {FALLBACK}",
                      details, check_mode, ok=False)
    if found_by and found_by != "existing_run_id":
        details[DONE_EARLIER] = True  # the run this incident dispatched before (an earlier attempt)
    verb = "dispatched and completed" if dispatched else "already completed"
    return Result(dispatched, before, after, f"rollback run {run_id} {verb} successfully {url}".rstrip(),
                  details, check_mode)


def github_rollback(clients: Any, params: dict[str, Any], check_mode: bool = False) -> Result:
    """Dispatch `rollback.yml` and follow the run to completion here (`start_rollback`, a synchronous
    wait, `finish_rollback`): the break-glass command line's way. See `start_rollback` for the params."""
    started = start_rollback(clients, params, check_mode)
    wait = started.details.get(WAIT_FOR)
    if wait is None:
        return started
    try:
        run = clients.github.wait_for_run(wait["repository"], wait["run_id"], timeout=wait["timeout"],
                                          poll=wait["poll"])
    except HttpError as exc:
        raise ActionError(f"github_rollback: GitHub API error: {exc}") from exc
    return finish_rollback(started, run)
