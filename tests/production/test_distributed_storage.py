"""The production shape with more than one Celery worker and no shared disk (issue 15, items 4 and 5).

One `DistributedStack` (CeleryExecutor + PostgreSQL + Redis, as `test_distributed.py`) with TWO Celery
workers (`airflow-worker`, `airflow-worker-2`), one task slot each, each with its own state folder
(`<state>/worker-N`) and task logs, and every artifact in S3: `INCIDENT_OPS_ARTIFACTS_URL=s3://<the
artifacts bucket the sandbox seeds in moto>/incident-ops/<run id>`, opened with `aws_default`.

1. **Two workers, the artifacts in the bucket.** A deploy incident: the run succeeds, its tasks ran on
   both workers (task instances' `hostname`: each worker records its own), the evidence, the chart and
   the postmortem draft are objects in the moto bucket and in neither worker's folder, and the draft
   (read from S3) embeds the chart, copied beside it, whichever worker collected it.
2. **One slot carries two incidents whose remediations wait at the same time.** The second worker is
   stopped: one worker with one slot (`celery inspect stats`: max-concurrency 1) takes every task. Two
   incidents at once (`run_incidents`, two alarms, two incidents): `deploy` (its rollback dispatches
   GitHub's rollback.yml and waits for the run, which the sandbox keeps in progress for GITHUB_DELAY s)
   and `external` (the status page says operational while the provider fails us: 待機, its `wait`
   step waits on the provider and our health). Polling the REST API, both waits are seen `deferred`
   at the same moment; only then does the provider recover. Both runs succeed: the waits held no slot.

About 9 minutes on 2 cores (1.5 to start the stack, then about 2 and 4).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.distributed import DistributedStack
from scripts.incident_runner import DAG_ID, AirflowApi, run_incident, run_incidents
from tests.production.stacks import module_stack, quick_runbook

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(1200)]

ROLLBACK_TASK = "recover.deploy.rollback"
EXTERNAL_WAIT_TASK = "recover.external.wait"
GITHUB_DELAY = 90  # seconds the sandbox keeps the rollback.yml run in progress (test 2)
RUN_TIMEOUT = 600
# Two incidents need two alarms: the intake joins an alarm to the open incident of the same alarm.
# The ALB's 5xx is the deploy scenario's own signal (runbook: scenarios.deploy.signals.alarms).
ALARMS = {"deploy": "peoplebooster-production-alb-5xx"}


def quicker_waits(data: dict[str, Any]) -> None:
    """Verification within 3 min, and the external wait's status checks every 6 s (same rules)."""
    data["verification"] = {"consecutive_healthy": 2, "interval_seconds": 2, "timeout_minutes": 3}
    for scenario in data["scenarios"].values():
        for step in scenario["steps"]:
            if step.get("wait"):
                step["wait"] = {"interval_minutes": 0.1, "max_minutes": 8}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DistributedStack]:
    runbook = quick_runbook(tmp_path_factory.mktemp("runbook"), quicker_waits)
    yield from module_stack(tmp_path_factory.mktemp("storage"), runbook=runbook,
                            workers=2, worker_concurrency=1, artifacts="s3")


def bucket_objects(stack: DistributedStack) -> dict[str, bytes]:
    """{key: body} of every object of the run's prefix in the sandbox's bucket (boto3 against moto)."""
    s3 = stack.s3_client()
    bucket, prefix = stack.artifacts_url.removeprefix("s3://").split("/", 1)
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
            for o in page.get("Contents", [])]
    return {key: s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


def local_artifacts(folder: Path) -> list[str]:
    """Artifact files in a worker's folder (evidence, charts, postmortem drafts), if any."""
    names = re.compile(r"^(evidence\.json|metrics\.png|INC-.*\.md)$")
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and names.match(p.name))


def test_two_workers_without_a_shared_disk_write_every_artifact_to_s3(stack: DistributedStack) -> None:
    api = AirflowApi(stack.base_url)
    try:
        report = run_incident(stack, "deploy", say=lambda _: None, timeout=RUN_TIMEOUT)
        observed = {"report": report, "task_instances": api.task_instances(DAG_ID, report["dag_run_id"]),
                    "objects": bucket_objects(stack)}
        if report["dag_run_state"] != "success":
            observed["logs"] = stack.log_tails()
    except Exception as exc:  # noqa: BLE001 - reported with the components' logs
        pytest.fail(f"{type(exc).__name__}: {exc}\n{stack.log_tails()}")
    report = observed["report"]
    incident_id = report["incident_id"]
    assert report["dag_run_state"] == "success", (report["tasks"], observed.get("logs"))
    assert report["healthy"], report["health"]

    # Two workers, one slot each, each its own host name: the run's tasks ran on both.
    hostnames = stack.worker_hostnames
    assert len(set(hostnames.values())) == 2, hostnames
    for name in hostnames:
        assert stack.celery_inspect("stats", name)["pool"]["max-concurrency"] == 1, name
    executed = [ti for ti in observed["task_instances"] if ti["state"] == "success" and ti["pid"]]
    ran_on = {ti["hostname"] for ti in executed}
    assert ran_on == set(hostnames.values()), {ti["task_id"]: ti["hostname"] for ti in executed}
    assert {ti["queue"] for ti in executed} == {stack.queue}

    # The artifacts are objects in the sandbox's bucket, under the run's prefix.
    base = stack.artifacts_url
    bucket, prefix = base.removeprefix("s3://").split("/", 1)
    assert bucket == stack.endpoints["artifacts_bucket"]
    objects = observed["objects"]
    evidence = f"{prefix}/incidents/{incident_id}/evidence.json"
    chart = f"{prefix}/incidents/{incident_id}/metrics.png"
    draft = f"{prefix}/postmortems/{incident_id}.md"
    beside = f"{prefix}/postmortems/{incident_id}/metrics.png"
    assert {evidence, chart, draft, beside} <= set(objects), sorted(objects)
    assert objects[chart].startswith(b"\x89PNG") and objects[beside] == objects[chart]
    assert report["postmortem"] == f"s3://{bucket}/{draft}"

    # The postmortem draft, read from S3, embeds the chart (linked beside it).
    text = objects[draft].decode("utf-8")
    assert incident_id in text
    assert f"]({incident_id}/metrics.png)" in text, text

    # Nothing of it on a worker's disk: each worker's own folder, and no shared one either.
    for name in hostnames:
        folder = stack.worker_state_dir(name)
        assert folder.is_dir(), folder  # the worker used its own state folder
        assert local_artifacts(folder) == [], (name, local_artifacts(folder))
    assert local_artifacts(stack.state_dir) == []
    # ... and its task logs are its own too.
    for name in hostnames:
        assert list((stack.worker_state_dir(name) / "logs").rglob("*.log")), name


class OverlapWatcher:
    """Polls the REST API while both runs are followed: records every moment the deploy rollback and
    the external wait are both `deferred`; once they are (or the rollback ended without it), the
    external provider recovers (the sandbox clears the `external` scenario), so both runs can end."""

    def __init__(self, stack: DistributedStack) -> None:
        self.stack = stack
        self.api = AirflowApi(stack.base_url)
        self.runs: dict[str, str] = {}
        self.both_deferred: list[float] = []
        self.states: list[tuple[float, str | None, str | None]] = []
        self.cleared_at: float | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="overlap", daemon=True)

    def start(self, runs: list[dict[str, Any]]) -> None:
        self.runs = {run["scenario"]: run["dag_run_id"] for run in runs}
        self._thread.start()

    def _state(self, scenario: str, task_id: str) -> str | None:
        for ti in self.api.task_instances(DAG_ID, self.runs[scenario]):
            if ti["task_id"] == task_id:
                return ti["state"]
        return None

    def _watch(self) -> None:
        try:
            while not self._stop.is_set():
                rollback = self._state("deploy", ROLLBACK_TASK)
                waiting = self._state("external", EXTERNAL_WAIT_TASK)
                now = time.monotonic()
                self.states.append((now, rollback, waiting))
                if rollback == "deferred" and waiting == "deferred":
                    self.both_deferred.append(now)
                if self.cleared_at is None and (len(self.both_deferred) >= 3 or rollback in ("success", "failed")):
                    self.stack.sandbox_client().clear_scenario("external")  # the provider recovers by itself
                    self.cleared_at = now
                    return
                time.sleep(1)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
            if self.cleared_at is None:
                self.stack.sandbox_client().clear_scenario("external")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)


def test_one_slot_carries_two_incidents_whose_remediations_wait_at_once(stack: DistributedStack) -> None:
    # One worker with one slot: the second worker is stopped for this test, then started again.
    stack.stop_component("airflow-worker-2")
    watcher = OverlapWatcher(stack)
    try:
        stats = stack.celery_inspect("stats", "airflow-worker")
        reports = run_incidents(stack, ["deploy", "external"], alarms=ALARMS, say=lambda _: None,
                                timeout=RUN_TIMEOUT, faults={"github_delay": GITHUB_DELAY, "status_page": "none"},
                                started=watcher.start)
        watcher.stop()
        api = AirflowApi(stack.base_url)
        observed = {"reports": reports,
                    "task_instances": {r["scenario"]: api.task_instances(DAG_ID, r["dag_run_id"]) for r in reports}}
        if any(r["dag_run_state"] != "success" for r in reports):
            observed["logs"] = stack.log_tails()
    except Exception as exc:  # noqa: BLE001 - reported with the components' logs
        watcher.stop()
        pytest.fail(f"{type(exc).__name__}: {exc}\n{stack.log_tails()}")
    finally:
        stack.start_component("airflow-worker-2")
    assert watcher.error is None, watcher.error

    # One worker, one slot.
    assert stats["pool"]["max-concurrency"] == 1, stats.get("pool")

    # Two alarms, two incidents, two runs; both succeeded and the service is healthy again.
    deploy, external = reports
    assert deploy["intake"]["status"] == external["intake"]["status"] == "new"
    assert deploy["incident_id"] != external["incident_id"]
    for report in reports:
        assert report["dag_run_state"] == "success", (report["scenario"], report["tasks"], observed.get("logs"))
    assert external["healthy"], external["health"]
    assert deploy["tasks"][ROLLBACK_TASK] == "success"
    assert external["tasks"][EXTERNAL_WAIT_TASK] == "success"
    assert external["tasks"]["recover.external.fallback"] == "skipped"  # the provider recovered while waiting
    assert external["aws"]["after"]["task_definition"] == external["aws"]["before"]["task_definition"]  # rolled back

    # Every task of both runs went through the one worker (its host name is the only one).
    hostname = stack.worker_hostnames["airflow-worker"]
    for scenario, tis in observed["task_instances"].items():
        executed = {ti["hostname"] for ti in tis if ti["state"] == "success" and ti["pid"]}
        assert executed == {hostname}, (scenario, executed)

    # Both remediation waits were deferred at the same moment, the provider recovered only after
    # that: two waits at once on one slot, so neither held it.
    assert watcher.both_deferred, [(round(t - watcher.states[0][0]), r, w) for t, r, w in watcher.states]
    assert watcher.cleared_at is not None and watcher.cleared_at >= watcher.both_deferred[0]
