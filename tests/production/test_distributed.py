"""The production shape for real, without Docker: CeleryExecutor + PostgreSQL + Redis, one incident.

`scripts.distributed.DistributedStack` starts what `docker-compose.yaml` runs, as processes:
`airflow db migrate`, then api-server, scheduler, dag-processor, triggerer and a Celery worker, on
this machine's PostgreSQL (a fresh metadata database and a fresh ledger database for this run) and
Redis (a per-run key prefix and queue), plus the sandbox. One incident goes through it the way
monitoring sends it (the sandbox, as Amazon SNS, delivers the signed alarm to the API server's
`/incidents/webhooks/sns`), people's parts are played through the REST API and the PagerDuty
stand-in, and the test checks it ran where it should: every task on the Celery queue of this run,
the run and the ledger in PostgreSQL. Then everything is stopped and the test checks that nothing
is left: no process of the run, no Redis key, no database.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from incident_ops.core.ledger import Ledger
from incident_ops.services import AWS_CALL_LOG_VARIABLE
from scripts.distributed import (
    DEFAULT_POSTGRES_URL,
    DEFAULT_REDIS_URL,
    DistributedStack,
    postgres_parts,
    processes_with_marker,
)
from scripts.incident_runner import DAG_ID, AirflowApi, run_incident
from tests.conftest import require_service
from tests.production.stacks import quick_runbook

# About 3 min: the stack's start (its own waits add up to 15 min) and one incident (up to 10 min).
pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(1200)]

SCENARIO = "deploy"  # the demo's incident: an alarm from the ALB, a person picks the scenario, a rollback
POLICY_PATH = Path(__file__).resolve().parents[2] / "include" / "iam" / "incident-automation-policy.json"


@pytest.fixture
def fast_runbook(tmp_path: Path) -> Path:
    return quick_runbook(tmp_path)


def _metadata_dag_runs(stack: DistributedStack, run_id: str) -> list[tuple[str, str]]:
    import psycopg

    with psycopg.connect(dbname=stack.database, connect_timeout=10, **postgres_parts(stack.postgres_url)) as conn:
        return conn.execute("SELECT dag_id, state FROM dag_run WHERE run_id = %s", (run_id,)).fetchall()


def test_an_incident_runs_on_celery_postgres_and_redis_and_nothing_is_left(tmp_path: Path, fast_runbook: Path) -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    require_service("Redis", "127.0.0.1", 6379)
    postgres_url = os.environ.get("INCIDENT_OPS_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    aws_calls = tmp_path / "aws-calls.log"
    stack = DistributedStack(tmp_path / "distributed", postgres_url=postgres_url, redis_url=DEFAULT_REDIS_URL,
                             runbook=fast_runbook, worker_concurrency=4,
                             extra_env={AWS_CALL_LOG_VARIABLE: str(aws_calls)})
    observed: dict = {}
    failure = None
    try:
        stack.start(say=lambda _: None)
        report = run_incident(stack, SCENARIO, via="sns", say=lambda _: None, timeout=600)
        observed["report"] = report
        observed["task_instances"] = AirflowApi(stack.base_url).task_instances(DAG_ID, report["dag_run_id"])
        observed["metadata_runs"] = _metadata_dag_runs(stack, report["dag_run_id"])
        observed["ledger"] = Ledger(stack.ledger_url).get(report["incident_id"]) if report["incident_id"] else None
        if report["dag_run_state"] != "success":
            observed["logs"] = stack.log_tails()
    except Exception as exc:  # noqa: BLE001 - reported with the components' logs once everything is stopped
        failure = f"{type(exc).__name__}: {exc}\n{stack.log_tails()}"
    finally:
        stack.stop()
    if failure:
        pytest.fail(f"{failure}\nteardown: {stack.teardown}")
    teardown = stack.teardown  # the report of the first stop(), which found whatever was left
    assert teardown is not None
    processes = dict(stack.processes)

    # The incident: the alarm came in through the SNS webhook, the run succeeded, the service is healthy.
    report = observed["report"]
    assert report["via"] == "sns" and report["intake"]["status"] == "new", report["intake"]
    assert report["dag_run_state"] == "success", (report["tasks"], observed.get("logs"))
    assert report["healthy"], report["health"]
    assert report["tasks"]["verify.wait_for_health"] == "success"  # deferred: the triggerer ran it

    # It ran where the production shape says: every task through this run's Celery queue (only its
    # worker consumes it), the run in the PostgreSQL metadata database, the incident in the ledger's.
    ran = [ti for ti in observed["task_instances"] if ti["state"] == "success"]
    assert len(ran) >= 10, observed["task_instances"]
    assert {ti["queue"] for ti in ran} == {stack.queue}, {ti["task_id"]: ti["queue"] for ti in ran}
    executed = [ti for ti in ran if ti["pid"]]  # EmptyOperators are finished by the scheduler itself
    assert len(executed) >= 8 and all(ti["hostname"] for ti in executed), ran
    assert observed["metadata_runs"] == [(DAG_ID, "success")]
    assert observed["ledger"]["status"] == "recovered"

    # The Celery workers' AWS calls are all granted by the least-privilege policy.
    calls = set(aws_calls.read_text(encoding="utf-8").split())
    granted = {a for st in json.loads(POLICY_PATH.read_text(encoding="utf-8"))["Statement"]
               for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])}
    assert {"ecs:DescribeServices", "cloudwatch:GetMetricData"} <= calls and calls <= granted, calls - granted

    # Nothing left behind: every process group stopped, no process of the run anywhere, the Redis keys
    # and both databases gone.
    assert teardown.clean, teardown
    assert sorted(teardown.databases_dropped) == sorted([stack.database, stack.ledger_database])
    assert not teardown.redis_keys_left
    assert set(processes) >= {"sandbox", "airflow-init", "airflow-apiserver", "airflow-scheduler",
                              "airflow-dag-processor", "airflow-triggerer", "airflow-worker"}
    assert not [name for name, process in processes.items() if process.group_alive()]
    assert processes_with_marker(stack.run_id) == []
