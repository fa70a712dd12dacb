"""The two things the webhooks need from the Airflow API server they run in (imported lazily).

- `airflow_trigger(dag_id, run_id, conf)`: create the DAG run the way `POST /api/v2/dags/{dag_id}/dagRuns`
  does (`trigger_dag`, triggered by REST_API, Params validated by Airflow): True when created, False
  when a run with that id already exists (a concurrent delivery won), `TriggerRejected` when the
  Params refuse the conf, `TriggerUnavailable` when the DAG is not there (yet) or the database fails.
- `airflow_secret()`: the HMAC secret of `/alert`: the connection `incident_webhook` (password), else
  the Variable `incident_ops_webhook_secret`; None when neither exists. Cached for a minute.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from incident_ops.webhooks.config import SECRET_CONN_ID, SECRET_VARIABLE
from incident_ops.webhooks.intake import TriggerRejected, TriggerUnavailable

__all__ = ["SecretProvider", "airflow_secret", "airflow_trigger"]

log = logging.getLogger(__name__)
TRIGGERING_USER = "incident-webhook"


def airflow_trigger(dag_id: str, run_id: str, conf: dict[str, Any]) -> bool:
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.exceptions import DagNotFound, DagRunAlreadyExists
    from airflow.utils.types import DagRunTriggeredByType
    from sqlalchemy.exc import IntegrityError, SQLAlchemyError

    try:
        trigger_dag(
            dag_id,
            triggered_by=DagRunTriggeredByType.REST_API,
            run_id=run_id,
            conf=conf,
            triggering_user_name=TRIGGERING_USER,
        )
    except DagRunAlreadyExists:
        return False
    except IntegrityError:
        # Two deliveries raced past the duplicate check: the unique (dag_id, run_id) kept one run.
        return False
    except DagNotFound as exc:
        raise TriggerUnavailable(f"{dag_id} is not loaded (yet): {exc}") from exc
    except ValueError as exc:  # ParamValidationError, or a DAG that refuses manual runs
        raise TriggerRejected(f"{dag_id} refused the conf: {exc}") from exc
    except SQLAlchemyError as exc:
        log.exception("triggering %s %s failed", dag_id, run_id)
        raise TriggerUnavailable(f"the Airflow database could not create the run: {type(exc).__name__}") from exc
    return True


def _lookup_secret() -> str | None:
    from airflow.sdk import Connection, Variable

    try:
        conn = Connection.get(SECRET_CONN_ID)
    except Exception:  # noqa: BLE001 - absent (AirflowNotFoundException) or unreadable: try the Variable
        conn = None
    if conn is not None and conn.password:
        return str(conn.password)
    try:
        value = Variable.get(SECRET_VARIABLE, default=None)
    except Exception:  # noqa: BLE001 - absent or unreadable
        value = None
    return str(value) if value else None


class SecretProvider:
    """`lookup()` result cached for `ttl` seconds (a burst of alerts reads the secret once)."""

    def __init__(self, lookup: Any = _lookup_secret, ttl: float = 60.0) -> None:
        self._lookup = lookup
        self._ttl = ttl
        self._value: str | None = None
        self._until = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> str | None:
        with self._lock:
            now = time.monotonic()
            if now >= self._until:
                self._value = self._lookup()
                # A missing secret is looked up again soon (someone may be adding it right now).
                self._until = now + (self._ttl if self._value else 5.0)
            return self._value


airflow_secret = SecretProvider()
