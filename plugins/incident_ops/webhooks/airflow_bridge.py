"""The two things the webhooks need from the Airflow API server they run in (imported lazily).

- `airflow_trigger(dag_id, run_id, conf)`: create the DAG run the way `POST /api/v2/dags/{dag_id}/dagRuns`
  does (`trigger_dag`, triggered by REST_API, Params validated by Airflow): True when created, False
  when a run with that id already exists (a concurrent delivery won), `TriggerRejected` when the
  Params refuse the conf, `TriggerUnavailable` when the DAG is not there (yet) or the database fails.
- `airflow_secret()`: the HMAC secret of `/alert`: the connection `incident_webhook` (password), else
  the Variable `incident_ops_webhook_secret`; None when neither exists. Cached for a minute.
- `slack_signing_secret()`: the Slack app's signing secret, the password of the connection
  `incident_slack_webhook`; `pagerduty_webhook_secrets()`: the PagerDuty v3 webhook secrets, the
  password of `incident_pagerduty_webhook` split at commas/whitespace (several during a rotation).
  Both cached for a minute like `airflow_secret`.
- `apply_hitl_answer(...)`: a human-in-the-loop answer applied exactly as the UI's
  `PATCH .../taskInstances/{task}/{map_index}/hitlDetails` does: Airflow's own route function
  `update_hitl_detail`, called with a metadata-database session and the responder as the user
  (`HITLUser(id=<user_id>, name=<user_name>)` is what the operator's `execute_complete` sees).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from incident_ops.webhooks.config import (
    PAGERDUTY_SECRET_CONN_ID,
    SECRET_CONN_ID,
    SECRET_VARIABLE,
    SLACK_SECRET_CONN_ID,
)
from incident_ops.webhooks.intake import TriggerRejected, TriggerUnavailable

__all__ = [
    "HitlAnswerError",
    "SecretProvider",
    "airflow_secret",
    "airflow_trigger",
    "apply_hitl_answer",
    "pagerduty_webhook_secrets",
    "slack_signing_secret",
]

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


def _connection_password(conn_id: str) -> str | None:
    from airflow.sdk import Connection

    try:
        conn = Connection.get(conn_id)
    except Exception:  # noqa: BLE001 - absent (AirflowNotFoundException) or unreadable
        return None
    return str(conn.password) if conn is not None and conn.password else None


slack_signing_secret = SecretProvider(lambda: _connection_password(SLACK_SECRET_CONN_ID))
_pagerduty_password = SecretProvider(lambda: _connection_password(PAGERDUTY_SECRET_CONN_ID))


def split_secrets(value: str | None) -> list[str]:
    """`a, b c` → ["a", "b", "c"] (the secrets of a rotation)."""
    return [item for item in re.split(r"[\s,]+", value or "") if item]


def pagerduty_webhook_secrets() -> list[str]:
    return split_secrets(_pagerduty_password())


# --- human-in-the-loop answers ---------------------------------------------------------------------


class HitlAnswerError(Exception):
    """The answer was not applied. `code`: already_answered | not_found | bad_option | forbidden |
    expired (the task is not waiting any more) | not_waiting (it did not start waiting in time)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _Responder:
    """The user object Airflow's routes take (`get_id()`, `get_name()`)."""

    def __init__(self, user_id: str, name: str) -> None:
        self._id = user_id
        self._name = name

    def get_id(self) -> str:
        return self._id

    def get_name(self) -> str:
        return self._name


_WAITING = ("awaiting_input", "deferred")
_BEFORE_WAIT = (None, "none", "scheduled", "queued", "running", "restarting", "up_for_retry", "up_for_reschedule")
# Airflow fails a task answered within about a second of its wait starting: answer after this.
_SETTLE_SECONDS = 1.5


def _state(dag_id: str, run_id: str, task_id: str, map_index: int) -> tuple[bool, str | None, bool, Any]:
    """(found with a HITL detail, TI state, response received, TI updated_at)."""
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.execute(
            select(TI.state, TI.updated_at, HITLDetail.responded_at, HITLDetail.chosen_options)
            .outerjoin(HITLDetail, HITLDetail.ti_id == TI.id)
            .where(TI.dag_id == dag_id, TI.run_id == run_id, TI.task_id == task_id, TI.map_index == map_index)
        ).first()
    if row is None:
        return False, None, False, None
    state = None if row.state is None else str(getattr(row.state, "value", row.state))
    received = row.responded_at is not None or bool(row.chosen_options)
    return True, state, received, row.updated_at


def _call_route(dag_id: str, run_id: str, task_id: str, map_index: int, option: str, user: _Responder) -> Any:
    from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
    from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
    from airflow.utils.session import create_session
    from fastapi import HTTPException

    try:
        with create_session() as session:
            answer = update_hitl_detail(
                dag_id=dag_id, dag_run_id=run_id, task_id=task_id,
                update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=[option]),
                user=user, session=session, map_index=map_index,
            )
            return answer.model_dump(mode="json") if hasattr(answer, "model_dump") else answer
    except HTTPException as exc:
        code = {409: "already_answered", 404: "not_found", 400: "bad_option", 403: "forbidden"}.get(
            exc.status_code, "failed")
        raise HitlAnswerError(code, str(exc.detail)) from None


def apply_hitl_answer(dag_id: str, run_id: str, task_id: str, map_index: int, option: str, user_id: str,
                      user_name: str, *, wait_seconds: float = 8.0, poll_seconds: float = 0.5,
                      sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Answer the HITL task with `option` as `HITLUser(id=user_id, name=user_name)`, the way the UI
    does (Airflow's `update_hitl_detail`). A task that is still `running` (its wait has not begun) or
    not yet waiting is looked at again every `poll_seconds` for up to `wait_seconds`; a wait that began
    less than `_SETTLE_SECONDS` ago is given that long. Returns the route's answer (responded_by,
    responded_at, chosen_options); HitlAnswerError otherwise (HTTP 409 → already_answered, 404 →
    not_found, 400 → bad_option, 403 → forbidden; finished → expired; never waited → not_waiting)."""
    deadline = time.monotonic() + wait_seconds
    seen_before_wait = False
    while True:
        found, state, received, updated_at = _state(dag_id, run_id, task_id, map_index)
        if not found:
            raise HitlAnswerError("not_found", f"no task {task_id} (map index {map_index}) in run {run_id} of {dag_id}")
        if received:
            raise HitlAnswerError("already_answered", f"{task_id} has already been answered")
        if state in _WAITING:
            settle = _SETTLE_SECONDS if seen_before_wait else 0.0
            if updated_at is not None:
                age = (dt.datetime.now(dt.UTC) - updated_at).total_seconds()
                settle = max(settle, _SETTLE_SECONDS - age) if age >= 0 else _SETTLE_SECONDS
            if settle > 0:
                sleep(settle)
            return _call_route(dag_id, run_id, task_id, map_index, option, _Responder(user_id, user_name))
        if state not in _BEFORE_WAIT:
            raise HitlAnswerError("expired", f"{task_id} is {state}: it is not waiting for an answer any more")
        seen_before_wait = True
        if time.monotonic() >= deadline:
            raise HitlAnswerError("not_waiting", f"{task_id} is {state}: it did not start waiting within {wait_seconds:g} s")
        sleep(poll_seconds)
