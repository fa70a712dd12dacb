"""Fault tolerance of the production shape (issue 8): processes die in the middle of an incident.

One `DistributedStack` (CeleryExecutor + PostgreSQL + Redis, as `test_distributed.py`) serves every
test; each drives a real incident through it (`run_incident`: the sandbox delivers the alarm as SNS,
people's parts are played through the REST API and the PagerDuty stand-in) while the test injects a
process fault, then checks what survived:

1. **The Celery worker is SIGKILLed in the middle of a remediation.** The deploy scenario's
   `recover.deploy.rollback` dispatches GitHub's rollback.yml and follows the run, which the sandbox
   keeps in progress for `GITHUB_DELAY` seconds. Once the task runs, the dispatch is recorded and the
   task is following the run, the worker and everything it started (its task runner too) are
   SIGKILLed and a new worker is started with the same command. Airflow notices the lost task by its
   missing heartbeat (the heartbeat timeout is shortened to `HEARTBEAT_TIMEOUT` seconds for the test)
   and retries it. Survives: the run succeeds, the step ran again (try 2) but rollback.yml was
   dispatched once, the service runs the previous task definition, the ledger holds one record of
   the step and says what it did (the retry found the change of the killed try: `done_earlier`).
2. **The scheduler is restarted in the middle of a run.** Another deploy incident (a new incident:
   the first one is recovered, the sandbox is reset); while its rollback is running on the worker,
   the scheduler's process group is stopped (SIGTERM, SIGKILL if it does not stop within 30 s) and a
   new scheduler is started. Survives: the run succeeds, the running step finished as its first try
   (not reset and run again), the page was sent once, the declaration posted once per channel, the
   rollback dispatched once, the ledger recovered with one `notified` and one `declared` event.
3. **Slack is down on the first tries.** Another deploy incident with the sandbox's Slack answering
   HTTP 500 to the first requests. Survives: the run succeeds, every declaration and notice is posted
   exactly once per channel, the page is sent once, the ledger has one `notified` event.

About 6 minutes on 2 cores (1.5 to start the stack, then about 1.5, 1 and 1.5 per test).
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from incident_ops.core.ledger import Ledger
from scripts.distributed import DistributedStack
from scripts.incident_runner import DAG_ID, AirflowApi, run_incident
from tests.production.stacks import module_stack, quick_runbook

# About 6 min for the three; per test the stack's start (first) and an incident of up to RUN_TIMEOUT + 60 s.
pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(900)]

SCENARIO = "deploy"
ROLLBACK_TASK = "recover.deploy.rollback"
HEARTBEAT_TIMEOUT = 30  # seconds without a task heartbeat before the scheduler fails the try (default 300;
# a live task heartbeats every 5 s, so a loaded 2-core machine keeps a wide margin)
GITHUB_DELAY = 25  # seconds the sandbox keeps a rollback.yml run in progress (default 3)
RUN_TIMEOUT = 360
SLACK_FAILURES = 2  # Slack requests answered HTTP 500 before Slack is back (test 3)
DISPATCH_PATH = re.compile(r"/actions/workflows/rollback\.yml/dispatches$")
RUN_PATH = re.compile(r"/actions/runs/\d+$")


# --- the stack ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DistributedStack]:
    yield from module_stack(
        tmp_path_factory.mktemp("faults"), runbook=quick_runbook(tmp_path_factory.mktemp("runbook")),
        worker_concurrency=4,
        extra_env={
            # A task whose worker died is noticed after this long without a heartbeat, not 5 minutes.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        },
    )


# --- helpers -----------------------------------------------------------------------------------------


class IncidentInBackground:
    """`run_incident` in a thread (it follows the run to its end), so the test can break things meanwhile."""

    def __init__(self, stack: DistributedStack, scenario: str, faults: dict[str, Any]) -> None:
        self.api = AirflowApi(stack.base_url)
        self.known_runs = {run["dag_run_id"] for run in self._runs()}
        self.report: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.log: list[str] = []
        self._thread = threading.Thread(target=self._run, args=(stack, scenario, faults), daemon=True,
                                        name=f"incident-{scenario}")

    def _runs(self) -> list[dict[str, Any]]:
        return self.api._request("GET", f"/dags/{DAG_ID}/dagRuns?limit=100")["dag_runs"]

    def _run(self, stack: DistributedStack, scenario: str, faults: dict[str, Any]) -> None:
        try:
            self.report = run_incident(stack, scenario, faults=faults, say=self.log.append, timeout=RUN_TIMEOUT)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread by finish()
            self.error = exc

    def start(self) -> IncidentInBackground:
        self._thread.start()
        return self

    def running(self) -> bool:
        return self._thread.is_alive()

    def dag_run_id(self) -> str | None:
        new = [run["dag_run_id"] for run in self._runs() if run["dag_run_id"] not in self.known_runs]
        return new[0] if new else None

    def finish(self, timeout: float = RUN_TIMEOUT + 60) -> dict[str, Any]:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the incident did not finish within {timeout:.0f}s: {self.log[-10:]}")
        if self.error is not None:
            raise RuntimeError(f"run_incident failed: {self.error!r}; {self.log[-10:]}") from self.error
        assert self.report is not None
        return self.report


def wait_until(what: str, check: Callable[[], Any], timeout: float, incident: IncidentInBackground) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if not incident.running():
            raise RuntimeError(f"the incident ended before {what}: {incident.error!r}; {incident.log[-10:]}")
        time.sleep(0.5)
    raise TimeoutError(f"not within {timeout:.0f}s: {what}; {incident.log[-10:]}")


def task_instance(api: AirflowApi, run_id: str, task_id: str) -> dict[str, Any] | None:
    return next((ti for ti in api.task_instances(DAG_ID, run_id) if ti["task_id"] == task_id), None)


def rollback_in_progress(stack: DistributedStack, api: AirflowApi, incident: IncidentInBackground) -> dict[str, Any]:
    """Wait until the rollback step runs on the worker, rollback.yml was dispatched, and the step is
    following the run (its first GET of the run came after the dispatch and the ECS tag that records it)."""
    run_id = wait_until("the incident's DAG run exists", incident.dag_run_id, 60, incident)

    def following() -> dict[str, Any] | None:
        ti = task_instance(api, run_id, ROLLBACK_TASK)
        if not ti or ti["state"] != "running":
            return None
        github = stack.sandbox_client().records(service="github")
        dispatches = [r for r in github if r["method"] == "POST" and DISPATCH_PATH.search(r["path"])]
        polls = [r for r in github if r["method"] == "GET" and RUN_PATH.search(r["path"])]
        if dispatches and polls and polls[-1]["seq"] > dispatches[0]["seq"]:
            return {"run_id": run_id, "ti": ti, "dispatches": dispatches}
        return None

    return wait_until(f"{ROLLBACK_TASK} is running and following its rollback.yml run", following, 240, incident)


def tries(api: AirflowApi, run_id: str, task_id: str) -> list[dict[str, Any]]:
    answer = api._request("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/tries")
    return sorted(answer["task_instances"], key=lambda t: t["try_number"])


def ledger_view(stack: DistributedStack, incident_id: str) -> dict[str, Any]:
    ledger = Ledger(stack.ledger_url)
    return {"incident": ledger.get(incident_id), "events": ledger.events(incident_id)}


def common_observations(stack: DistributedStack, api: AirflowApi, report: dict[str, Any]) -> dict[str, Any]:
    sandbox = stack.sandbox_client()
    github = sandbox.records(service="github")
    return {
        "report": report,
        "rollback_tries": tries(api, report["dag_run_id"], ROLLBACK_TASK),
        "dispatches": [r for r in github if r["method"] == "POST" and DISPATCH_PATH.search(r["path"])],
        "rollback_runs": [r for r in sandbox.github_runs() if r["path"].endswith("/rollback.yml")],
        "slack": sandbox.slack_messages(),
        "pagerduty": sandbox.pagerduty_events(),
        "ledger": ledger_view(stack, report["incident_id"]) if report["incident_id"] else None,
    }


def check_nothing_done_twice(observed: dict[str, Any]) -> None:
    """What both faults must leave: one dispatch, one page, one post per key, one ledger record per key."""
    report = observed["report"]
    incident_id = report["incident_id"]
    assert report["dag_run_state"] == "success", (report["tasks"], observed.get("logs"))
    assert report["healthy"], report["health"]

    # The rollback: dispatched once, its one run succeeded, the service runs the task definition it
    # ran before the bad deploy.
    assert len(observed["dispatches"]) == 1, observed["dispatches"]
    assert [(r["status"], r["conclusion"]) for r in observed["rollback_runs"]] == [("completed", "success")]
    aws = report["aws"]
    assert aws["broken"]["task_definition"] != aws["before"]["task_definition"]
    assert aws["after"]["task_definition"] == aws["before"]["task_definition"], aws

    # The page: one trigger for the incident (and one resolve at recovery).
    actions = Counter(e["event_action"] for e in observed["pagerduty"] if e["dedup_key"] == incident_id)
    assert actions["trigger"] == 1, observed["pagerduty"]
    assert actions["resolve"] == 1, observed["pagerduty"]

    # Slack: every idempotency key posted once; the declaration once in #dev-team and once in the channel.
    keys = Counter((m.get("metadata") or {}).get("event_payload", {}).get("key") for m in observed["slack"])
    keys.pop(None, None)
    assert all(n == 1 for n in keys.values()), {k: n for k, n in keys.items() if n > 1}
    declarations = [m for m in observed["slack"]
                    if ((m.get("metadata") or {}).get("event_payload") or {}).get("key", "").startswith(
                        f"{incident_id}:declaration:")]
    assert len(declarations) == 2 and len({m["channel_id"] for m in declarations}) == 2, declarations

    # The ledger: recovered; one event per idempotency key; one page, one declaration, one record of
    # the rollback step, which says what the incident did.
    ledger = observed["ledger"]
    assert ledger["incident"]["status"] == "recovered", ledger["incident"]
    events = ledger["events"]
    kinds = Counter(e["kind"] for e in events)
    assert kinds["notified"] == 1 and kinds["declared"] == 1 and kinds["recovered"] == 1, kinds
    event_keys = Counter(e["idempotency_key"] for e in events if e["idempotency_key"])
    assert all(n == 1 for n in event_keys.values()), event_keys
    steps = [e for e in events if e["kind"] == "action"]
    assert [(e["data"]["step"], e["data"]["ok"]) for e in steps] == [("rollback", True)], steps
    assert steps[0]["data"]["changed"], steps[0]["data"]  # the rollback is what this incident changed
    assert ledger["incident"]["scenario"] == SCENARIO, ledger["incident"]
    recovery = [m for m in observed["slack"]
                if ((m.get("metadata") or {}).get("event_payload") or {}).get("key", "").startswith(
                    f"{incident_id}:recovery:")]
    assert recovery and all("rollback" in m["text"] for m in recovery), [m["text"] for m in recovery]


# --- the faults --------------------------------------------------------------------------------------


def fault_during_rollback(stack: DistributedStack, inject: Callable[[AirflowApi, dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """A deploy incident in the background; `inject` (given the rollback's progress) runs while the
    rollback follows its GitHub run; then what both tests observe. Any error fails the test with the
    components' logs."""
    api = AirflowApi(stack.base_url)
    incident = IncidentInBackground(stack, SCENARIO, {"github_delay": GITHUB_DELAY}).start()
    try:
        observed = inject(api, rollback_in_progress(stack, api, incident))
        observed.update(common_observations(stack, api, incident.finish()))
        if observed["report"]["dag_run_state"] != "success":
            observed["logs"] = stack.log_tails()
        return observed
    except Exception as exc:  # noqa: BLE001 - reported with the components' logs
        failure = f"{type(exc).__name__}: {exc}\n{stack.log_tails()}"
    pytest.fail(failure)


def test_a_worker_killed_mid_remediation_is_retried_and_nothing_is_done_twice(stack: DistributedStack) -> None:
    """Injected: SIGKILL to the Celery worker and every process it started (its task runner too) while
    recover.deploy.rollback follows its rollback.yml run; then a new worker with the same command."""
    killed_at = 0.0

    def kill_the_worker(api: AirflowApi, progress: dict[str, Any]) -> dict[str, Any]:
        nonlocal killed_at
        worker_group = stack.processes["airflow-worker"].pgid
        killed_at = time.monotonic()
        killed = stack.kill("airflow-worker")
        worker_down = {"ti": task_instance(api, progress["run_id"], ROLLBACK_TASK)}
        stack.start_component("airflow-worker")
        return {"killed": killed, "worker_down": worker_down, "worker_group": worker_group,
                "worker_back_after": round(time.monotonic() - killed_at, 1)}

    observed = fault_during_rollback(stack, kill_the_worker)
    observed["recovered_after_kill"] = round(time.monotonic() - killed_at, 1)
    print(f"worker kill: {len(observed['killed'])} processes killed, worker back after {observed['worker_back_after']} s, "
          f"run finished {observed['recovered_after_kill']} s after the kill; rollback tries "
          f"{[(t['try_number'], t['state']) for t in observed['rollback_tries']]}")

    # The kill reached the task itself: the worker's group and the task runner's own group.
    killed = observed["killed"]
    assert {p["pgid"] for p in killed} - {observed["worker_group"]}, killed
    # Airflow noticed the lost try (no heartbeat) and ran the step again on the new worker.
    rollback_tries = observed["rollback_tries"]
    assert len(rollback_tries) >= 2 and rollback_tries[-1]["state"] == "success", rollback_tries
    assert rollback_tries[0]["state"] in ("failed", "up_for_retry"), rollback_tries
    assert observed["report"]["tasks"][ROLLBACK_TASK] == "success"
    # ... and the retry followed the run the killed try had dispatched, instead of dispatching again.
    step = next(e for e in observed["ledger"]["events"] if e["kind"] == "action")
    assert step["data"]["details"].get("found_by"), step["data"]
    check_nothing_done_twice(observed)


def test_a_scheduler_restarted_mid_run_loses_nothing_and_repeats_nothing(stack: DistributedStack) -> None:
    """Injected: the scheduler's process group stopped (SIGTERM; SIGKILL after 30 s) while
    recover.deploy.rollback runs on the worker; then a new scheduler with the same command."""
    def restart_the_scheduler(api: AirflowApi, progress: dict[str, Any]) -> dict[str, Any]:
        old_scheduler = stack.processes["airflow-scheduler"]
        restart = stack.restart("airflow-scheduler")
        return {"restart": restart, "old_scheduler_gone": not old_scheduler.group_alive(), "at_restart": progress["ti"]}

    observed = fault_during_rollback(stack, restart_the_scheduler)
    print(f"scheduler restart: {observed['restart']}; rollback tries "
          f"{[(t['try_number'], t['state']) for t in observed['rollback_tries']]}")

    assert observed["old_scheduler_gone"], observed["restart"]
    assert observed["at_restart"]["state"] == "running" and observed["at_restart"]["try_number"] == 1
    # The running try survived the restart: it finished as try 1 (not reset by the new scheduler and run again).
    assert [t["try_number"] for t in observed["rollback_tries"]] == [1], observed["rollback_tries"]
    assert observed["rollback_tries"][0]["state"] == "success"
    step = next(e for e in observed["ledger"]["events"] if e["kind"] == "action")
    assert "found_by" not in step["data"]["details"], step["data"]  # the one try dispatched it itself
    check_nothing_done_twice(observed)


def test_slack_down_on_the_first_tries_posts_once_and_pages_once(stack: DistributedStack) -> None:
    """Injected: the sandbox's Slack answers HTTP 500 to the first SLACK_FAILURES requests of the
    incident (channel creation, declarations, notices: whichever come first, from whichever task);
    the Celery tasks retry. Survives: the run succeeds, every Slack post (idempotency key) exists once,
    the declaration once in #dev-team and once in the incident channel, one page, one `notified`."""
    api = AirflowApi(stack.base_url)
    try:
        report = run_incident(stack, SCENARIO, faults={"slack": 500, "slack_count": SLACK_FAILURES},
                              say=lambda _: None, timeout=RUN_TIMEOUT)
        sandbox = stack.sandbox_client()
        observed = {
            "report": report,
            "slack": sandbox.slack_messages(),
            "slack_records": sandbox.records(service="slack"),
            "pagerduty": sandbox.pagerduty_events(),
            "ledger": ledger_view(stack, report["incident_id"]) if report["incident_id"] else None,
            "task_instances": api.task_instances(DAG_ID, report["dag_run_id"]),
        }
        if report["dag_run_state"] != "success":
            observed["logs"] = stack.log_tails()
    except Exception as exc:  # noqa: BLE001 - reported with the components' logs
        pytest.fail(f"{type(exc).__name__}: {exc}\n{stack.log_tails()}")
    report = observed["report"]
    incident_id = report["incident_id"]
    assert report["dag_run_state"] == "success", (report["tasks"], observed.get("logs"))
    assert report["healthy"], report["health"]

    # Slack really was down at first: the first requests were answered 500, later ones 200.
    served = [r["status"] for r in observed["slack_records"]]
    assert [r["fault"] for r in observed["slack_records"]].count(500) == SLACK_FAILURES, served
    assert served[:SLACK_FAILURES] == [500] * SLACK_FAILURES and 200 in served, served

    # Every post once per idempotency key; the declaration once per channel (#dev-team, the incident's).
    keys = Counter((m.get("metadata") or {}).get("event_payload", {}).get("key") for m in observed["slack"])
    keys.pop(None, None)
    assert keys and all(n == 1 for n in keys.values()), {k: n for k, n in keys.items() if n > 1}
    declarations = [m for m in observed["slack"]
                    if ((m.get("metadata") or {}).get("event_payload") or {}).get("key", "").startswith(
                        f"{incident_id}:declaration:")]
    assert len(declarations) == 2 and len({m["channel_id"] for m in declarations}) == 2, declarations

    # One page (and its resolve), one `notified` in the ledger, the incident recovered.
    actions = Counter(e["event_action"] for e in observed["pagerduty"] if e["dedup_key"] == incident_id)
    assert actions["trigger"] == 1 and actions["resolve"] == 1, observed["pagerduty"]
    kinds = Counter(e["kind"] for e in observed["ledger"]["events"])
    assert kinds["notified"] == 1 and kinds["declared"] == 1, kinds
    assert observed["ledger"]["incident"]["status"] == "recovered", observed["ledger"]["incident"]
