"""Parse every DAG file the way Airflow's DAG processor does, with network and database access
forbidden, and print one JSON object: import errors, DAG ids, parse seconds per file.

Run as a separate process (tests/dags/test_dag_integrity.py) so that the guards and the temporary
AIRFLOW_HOME do not leak into other tests.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

ATTEMPTS: list[str] = []


def _forbid(what: str):
    def guard(*args, **kwargs):
        ATTEMPTS.append(what)
        raise RuntimeError(f"{what} at parse time is forbidden")

    return guard


def _callbacks(callbacks: object) -> list[str]:
    """The class names of a DAG's or a task's callbacks (one, a list, or none)."""
    if not callbacks:
        return []
    return [type(callback).__name__ for callback in (callbacks if isinstance(callbacks, list) else [callbacks])]


def main(dags_folder: str) -> None:
    from airflow.dag_processing.dagbag import DagBag  # Airflow itself may set up before the guards

    socket.socket.connect = _forbid("network access")  # type: ignore[method-assign]
    socket.create_connection = _forbid("network access")  # type: ignore[assignment]
    import sqlalchemy.engine

    sqlalchemy.engine.Engine.connect = _forbid("database access")  # type: ignore[method-assign]

    files: dict[str, dict] = {}
    for path in sorted(Path(dags_folder).glob("*.py")):
        started = time.perf_counter()
        bag = DagBag(dag_folder=str(path), safe_mode=False)
        files[path.name] = {
            "seconds": time.perf_counter() - started,
            "dag_ids": sorted(bag.dag_ids),
            "import_errors": {Path(k).name: v for k, v in bag.import_errors.items()},
            "dags": {
                dag_id: {
                    "tasks": sorted(dag.task_ids),
                    "params": sorted(dag.params.keys()),
                    "catchup": dag.catchup,
                    "doc_md": bool(dag.doc_md),
                    "retries": dag.default_args.get("retries"),
                    "deadlines": [
                        {
                            "name": alert.name,
                            "reference": type(alert.reference).__name__,
                            "minutes": alert.interval.total_seconds() / 60,
                            "callback": type(alert.callback).__name__,
                            "path": alert.callback.path,
                            "kwargs": alert.callback.kwargs,
                        }
                        for alert in dag.deadline or []
                    ],
                    "on_failure_callback": _callbacks(dag.on_failure_callback),
                    "task_failure_callbacks": {
                        task.task_id: _callbacks(task.on_failure_callback) for task in dag.tasks
                    },
                    "structure": {
                        task.task_id: {
                            "operator": type(task).__name__,
                            "trigger_rule": str(getattr(task.trigger_rule, "value", task.trigger_rule)),
                            "upstream": sorted(task.upstream_task_ids),
                        }
                        for task in dag.tasks
                    },
                }
                for dag_id, dag in bag.dags.items()
            },
        }
    print(json.dumps({"files": files, "forbidden_attempts": ATTEMPTS}))


if __name__ == "__main__":
    main(sys.argv[1])
