"""Nothing fails silently: what #dev-team is told when a DAG run fails or runs far too long.

Pure rules and texts (no Airflow, no clock): the adapters are `incident_ops.notifiers.dag_failure`
(`on_failure_callback` of the DAGs) and `incident_ops.notifiers.long_running` (the DeadlineAlert
callback). `SAFETY_NETS` is the one place that says, per DAG, what the team calls it and how long a
normal run takes; a run still going after `expected × factor` is "stuck" (長時間実行中).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from incident_ops.core.messages import Trusted, format_duration_ja, render

__all__ = [
    "SAFETY_NETS",
    "SafetyNet",
    "failure_key",
    "failure_notice",
    "long_running_key",
    "long_running_notice",
    "run_url",
    "safety_net",
    "short_error",
]

JST = ZoneInfo("Asia/Tokyo")
_WEEKDAYS = "月火水木金土日"
ERROR_MAX_CHARS = 200


@dataclass(frozen=True)
class SafetyNet:
    """One DAG's safety net. `expected` is a normal run with its retries; `factor` is how generous
    the "stuck" threshold is. `incident_channel`: the long-running notice also goes to the incident
    channel of the incident the run drives."""

    title: str
    expected: dt.timedelta
    factor: int
    incident_channel: bool = False

    @property
    def stuck_after(self) -> dt.timedelta:
        return self.expected * self.factor


# Expected runtimes × a generous factor (the DeadlineAlert interval, counted from the run's queued time).
SAFETY_NETS: dict[str, SafetyNet] = {
    # Five phases with people in them: the acknowledgement wait, a scenario choice (10 min), approvals
    # (15 min each), the GitHub / RDS waits (up to 30 min), the health wait (30 min): about 2 h for a
    # P1/P2. 6 h is "stuck". (A P3/P4 run may still be waiting for 対応開始 by then: the notice says so.)
    "incident_response": SafetyNet("障害対応フロー", dt.timedelta(hours=2), 3, incident_channel=True),
    # Waits up to 30 min for the incident run's first notices, then a few seconds of notices.
    "incident_escalate": SafetyNet("障害レベルの引き上げ", dt.timedelta(minutes=30), 3),
    # One ledger write and one PagerDuty call, with two retries.
    "incident_acknowledge": SafetyNet("対応開始の登録", dt.timedelta(minutes=2), 10),
    "postmortem_done": SafetyNet("ポストモーテム完了の登録", dt.timedelta(minutes=2), 10),
    # Scheduled: hourly at most, one Slack post per slot / reminder. Under an hour so that a stuck
    # run (max_active_runs=1) is reported before it holds back the next one.
    "oncall_handoff": SafetyNet("オンコール交代通知", dt.timedelta(minutes=3), 10),
    "postmortem_reminders": SafetyNet("ポストモーテム期限のリマインド", dt.timedelta(minutes=3), 10),
    # Weekly: a week of incidents, CSV, a chart and one upload.
    "incident_response_report": SafetyNet("週次の障害対応レポート", dt.timedelta(minutes=10), 6),
}


def safety_net(dag_id: str) -> SafetyNet:
    """The DAG's safety net; a DAG missing from the table is a programming error (KeyError)."""
    try:
        return SAFETY_NETS[dag_id]
    except KeyError:
        raise KeyError(f"no safety net for DAG {dag_id!r}: add it to SAFETY_NETS") from None


def _title(dag_id: str) -> str:
    net = SAFETY_NETS.get(dag_id)
    return net.title if net else dag_id


def _aware(value: Any, what: str) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, dt.datetime):
        raise TypeError(f"{what}: expected a datetime, got {type(value).__name__}")
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def format_moment(moment: Any, tz: dt.tzinfo = JST) -> str:
    """`2026-12-07(月) 09:00 JST`."""
    local = _aware(moment, "time").astimezone(tz)
    return f"{local:%Y-%m-%d}({_WEEKDAYS[local.weekday()]}) {local:%H:%M} JST"


def short_error(error: Any, limit: int = ERROR_MAX_CHARS) -> str:
    """`Type: first line of the message`, whitespace collapsed, at most `limit` characters."""
    if error is None or error == "":
        return "不明なエラー"
    if isinstance(error, BaseException):
        message = str(error).strip().splitlines()
        text = f"{type(error).__name__}: {message[0]}" if message else type(error).__name__
    else:
        text = str(error).strip().splitlines()[0] if str(error).strip() else "不明なエラー"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def run_url(base_url: str | None, dag_id: str, run_id: str, task_id: str | None = None) -> str | None:
    """The run (or its task) in the Airflow UI, when `[api] base_url` is configured."""
    if not base_url:
        return None
    url = f"{base_url.rstrip('/')}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"
    return f"{url}/tasks/{quote(task_id, safe='')}" if task_id else url


def _link(url: str | None, label: str) -> Trusted | None:
    # The URL is built from quoted parts (no `|`, `<` or `>`): safe inside Slack's <url|label>.
    return Trusted(f"<{url}|{label}>") if url else None


def failure_key(dag_id: str, run_id: str, task_id: str | None) -> str:
    """Once per run and task (the task's own callback and the run's share it): never from a clock."""
    return f"dag_failed:{dag_id}:{run_id}:{task_id or '-'}"


def long_running_key(dag_id: str, run_id: str) -> str:
    return f"long_running:{dag_id}:{run_id}"


# Why Airflow failed a run without a task's exception (the DAG-level callback's `reason`).
_REASONS = {
    "task_failure": "タスクが失敗しました（詳細はログ）",
    "timed_out": "実行時間の上限（dagrun_timeout）を超えました",
}


def failure_notice(
    *,
    dag_id: str,
    run_id: str,
    task_id: str | None,
    error: Any,
    logical_time: Any,
    url: str | None = None,
    reason: str | None = None,
    tz: dt.tzinfo = JST,
) -> str:
    """【DAG実行の失敗】 for #dev-team: the DAG in the team's words, the task, the error (short), the
    run's logical time in JST and a link to the run."""
    if error in (None, "") and reason:
        error = _REASONS.get(reason, reason)
    return render(
        "dag_failure.txt.j2",
        title=_title(dag_id), dag_id=dag_id, run_id=run_id, task=task_id or "（タスクなし）",
        error=short_error(error), logical_time=format_moment(logical_time, tz) if logical_time else "—",
        link=_link(url, "Airflow で実行を開く"),
    ).rstrip("\n")


def long_running_notice(
    *,
    dag_id: str,
    run_id: str,
    started: Any,
    now: Any,
    limit: dt.timedelta,
    url: str | None = None,
    incident: Mapping[str, Any] | None = None,
    tz: dt.tzinfo = JST,
) -> str:
    """【長時間実行中】 for #dev-team (and the incident channel): the run is still going `limit` after it
    was queued."""
    started_at = _aware(started, "started")
    elapsed = max(_aware(now, "now") - started_at, dt.timedelta(0))
    return render(
        "long_running.txt.j2",
        title=_title(dag_id), dag_id=dag_id, run_id=run_id, started=format_moment(started_at, tz),
        elapsed=format_duration_ja(elapsed // dt.timedelta(minutes=1)),
        limit=format_duration_ja(limit // dt.timedelta(minutes=1)),
        incident_id=(incident or {}).get("id"), severity=(incident or {}).get("severity"),
        acknowledged=bool((incident or {}).get("acknowledged_at")),
        link=_link(url, "Airflow で実行を開く"),
    ).rstrip("\n")
