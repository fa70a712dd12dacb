"""What the distributed tests share: a quicker copy of the runbook, and a stack that is started for a
module, stopped after it, and then proven gone."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from incident_ops.core.runbook import DEFAULT_RUNBOOK_PATH
from scripts.distributed import DEFAULT_POSTGRES_URL, DEFAULT_REDIS_URL, DistributedStack, processes_with_marker
from tests.conftest import require_service


def quick_runbook(folder: Path, edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """The project's runbook with a quicker verification (same rules, shorter waits), `edit`ed further;
    written to `folder/peoplebooster.yaml`."""
    data = yaml.safe_load(DEFAULT_RUNBOOK_PATH.read_text(encoding="utf-8"))
    data["verification"] = {"consecutive_healthy": 2, "interval_seconds": 2, "timeout_minutes": 0.75}
    if edit is not None:
        edit(data)
    path = folder / "peoplebooster.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def module_stack(state_dir: Path, **options: Any) -> Iterator[DistributedStack]:
    """A module fixture's body: start a `DistributedStack` on the machine's PostgreSQL and Redis (skip
    without them, except in CI), hand it over, stop it; then prove that nothing of the run is left —
    killed, stopped and restarted components included. A stack that does not start fails with the
    components' logs."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    require_service("Redis", "127.0.0.1", 6379)
    distributed = DistributedStack(
        state_dir, postgres_url=os.environ.get("INCIDENT_OPS_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        redis_url=DEFAULT_REDIS_URL, **options,
    )
    failure = None
    try:
        distributed.start(say=lambda _: None)
    except Exception as exc:  # noqa: BLE001 - reported with the components' logs once everything is stopped
        failure = f"the stack did not start: {type(exc).__name__}: {exc}\n{distributed.log_tails()}"
    try:
        if failure is None:
            yield distributed
    finally:
        distributed.stop()
    if failure:
        pytest.fail(f"{failure}\nteardown: {distributed.teardown}")
    teardown = distributed.teardown  # the report of the first stop(), which found whatever was left
    assert teardown is not None and teardown.clean, teardown
    assert not [p.name for p in [*distributed.processes.values(), *distributed.retired] if p.group_alive()]
    assert processes_with_marker(distributed.run_id) == []
