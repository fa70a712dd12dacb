"""A failed run of a DAG other than the incident run tells #dev-team (in Japanese), once per run and task.

Used twice in each DAG file: in `default_args` as the tasks' `on_failure_callback` (run by the
worker after the last try, with the exception) and as the DAG's `on_failure_callback` (run by the
DAG processor when the run fails, with the failing task but no exception: it also covers a run that
failed without its task's callback, e.g. a killed worker). Both use the Slack idempotency key
`dag_failed:<dag_id>:<run_id>:<task_id>`, so whichever comes second posts nothing.

The text is `incident_ops.core.safety_nets.failure_notice` (template `dag_failure.txt.j2`): the DAG
in the team's words, the task, what went wrong in Japanese with the exception's message as code (its
class name goes to the log only, `error_text`), the run's logical time in JST, and a link to the run
when `[api] base_url` is configured. Notifying never raises: a broken Slack must not hide the
failure it reports (it is logged instead).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseNotifier

__all__ = ["DagFailureNotifier", "airflow_base_url", "error_text", "failure_facts"]

DEFAULT_ENVIRONMENT = "production"
_MESSAGE_MAX = 150


def airflow_base_url() -> str | None:
    """`[api] base_url` (AIRFLOW__API__BASE_URL), or None when it is not configured."""
    from airflow.sdk.configuration import conf

    return conf.get("api", "base_url", fallback=None) or None


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def failure_facts(context: Any) -> dict[str, Any]:
    """dag_id, run_id, task_id, error, logical time and reason from a task's or a DAG's failure context."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    dag = context.get("dag")
    return {
        "dag_id": _get(ti, "dag_id") or _get(dag, "dag_id") or _get(dag_run, "dag_id") or "unknown",
        "run_id": context.get("run_id") or _get(ti, "run_id") or _get(dag_run, "run_id") or "unknown",
        "task_id": _get(ti, "task_id"),
        "error": context.get("exception"),
        "logical_time": (context.get("logical_date") or _get(dag_run, "logical_date")
                         or _get(dag_run, "run_after") or _get(dag_run, "queued_at")),
        "reason": context.get("reason"),
    }


def error_text(error: Any) -> Any:
    """What people read about the exception: a Japanese sentence, its message's first line as code
    (no class name: that is for the log). Anything but an exception is returned as it is."""
    if not isinstance(error, BaseException):
        return error
    lines = str(error).strip().splitlines()
    message = " ".join(lines[0].split()).replace("`", "'") if lines else ""
    if not message:
        return "処理中にエラーが発生しました（詳細はログを確認してください）"
    if len(message) > _MESSAGE_MAX:
        message = message[: _MESSAGE_MAX - 1] + "…"
    return f"処理中にエラーが発生しました: `{message}`"


class DagFailureNotifier(BaseNotifier):
    """on_failure_callback (task or DAG): the 【DAG実行の失敗】 notice in #dev-team. Never raises."""

    template_fields: Sequence[str] = ()

    def __init__(self, environment: str | None = None) -> None:
        super().__init__()
        self.environment = environment

    def notify(self, context: Any) -> None:
        try:
            self.post(context)
        except Exception as exc:  # noqa: BLE001 - the callback must not mask the failure it reports
            self.log.exception("could not tell #dev-team about a failed run: %s", exc)

    def post(self, context: Any) -> dict[str, Any] | None:
        """Post the notice; returns Slack's answer (`posted: False` when it was already there)."""
        from incident_ops.core import safety_nets
        from incident_ops.flows import incident as incident_flow

        facts = failure_facts(context)
        error = facts["error"]
        if isinstance(error, BaseException):
            self.log.error("%s.%s failed with %s: %s", facts["dag_id"], facts["task_id"], type(error).__name__, error)
        runbook = incident_flow.load()
        text = safety_nets.failure_notice(
            dag_id=facts["dag_id"], run_id=facts["run_id"], task_id=facts["task_id"], error=error_text(error),
            logical_time=facts["logical_time"], reason=facts["reason"], tz=runbook.tz,
            url=safety_nets.run_url(airflow_base_url(), facts["dag_id"], facts["run_id"]),
        )
        environment = self.environment or (
            DEFAULT_ENVIRONMENT if DEFAULT_ENVIRONMENT in runbook.environments else next(iter(runbook.environments)))
        slack = incident_flow.services_for(environment).slack
        if slack is None:
            self.log.error("Slack is not configured: #dev-team was not told that %s failed:\n%s",
                           facts["dag_id"], text)
            return None
        channel = runbook.contacts.channels["dev_team"]
        key = safety_nets.failure_key(facts["dag_id"], facts["run_id"], facts["task_id"])
        return slack.post(channel, text, idempotency_key=key)
