"""One local stack (sandbox + Airflow standalone on SQLite) shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from incident_ops.core.runbook import DEFAULT_RUNBOOK_PATH
from scripts.airflow_local import free_port_block
from scripts.incident_runner import LocalStack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The IAM check reads the calls the scenarios made: it runs after them."""
    items.sort(key=lambda item: item.path.name == "test_iam_calls.py")


@pytest.fixture(scope="session")
def fast_runbook(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's runbook with a quicker verification (same rules, shorter waits)."""
    data = yaml.safe_load(DEFAULT_RUNBOOK_PATH.read_text(encoding="utf-8"))
    data["verification"] = {"consecutive_healthy": 2, "interval_seconds": 2, "timeout_minutes": 0.75}
    data["severities"]["P1"]["response_start_minutes"] = 1  # the unacknowledged escalation within a test
    # an unanswered decision times out within a test (the people of the other tests answer in seconds)
    data["decisions"]["scenario_choice"]["timeout_minutes"] = 0.5
    data["decisions"]["approval"]["timeout_minutes"] = 0.5
    # a ladder's next rung and the external wait decided within seconds (same rules)
    data["ladder"] = {"settle_seconds": 20, "consecutive_healthy": 2, "interval_seconds": 2}
    for step in data["scenarios"]["external"]["steps"]:
        if step.get("wait"):
            step["wait"] = {"interval_minutes": 0.1, "max_minutes": 4}
    path = tmp_path_factory.mktemp("runbook") / "peoplebooster.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, fast_runbook: Path) -> Iterator[LocalStack]:
    base = free_port_block(4)
    state = tmp_path_factory.mktemp("stack")
    local = LocalStack(state, port=base + 3, sandbox_ports={"aws": base, "http": base + 1, "https": base + 2},
                       runbook=fast_runbook,
                       # every AWS call of the workers, for the least-privilege check (test_iam_calls.py)
                       extra_env={"INCIDENT_OPS_AWS_CALL_LOG": str(state / "aws-calls.log")})
    try:
        local.start(say=lambda _: None)
        yield local
    finally:
        local.stop()
