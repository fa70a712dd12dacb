"""The failure notifier of the DAGs (notifiers/dag_failure.py), without Airflow: a recording Slack
and the contexts Airflow hands a task's and a DAG's on_failure_callback."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest

from incident_ops.flows import incident as incident_flow
from incident_ops.notifiers.dag_failure import DagFailureNotifier
from tests.flows.scheduled.conftest import RecordingSlack

RUN_ID = "scheduled__2026-12-07T00:00:00+00:00"  # Monday 09:00 JST
LOGICAL = dt.datetime(2026, 12, 7, 0, 0, tzinfo=dt.UTC)


class BrokenSlack(RecordingSlack):
    def post(self, channel: str, text: str, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        raise ConnectionError("slack.com: 503 Service Unavailable")


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch) -> RecordingSlack:
    slack = RecordingSlack()
    environments: list[str] = []

    def services_for(environment: str) -> SimpleNamespace:
        environments.append(environment)
        return SimpleNamespace(slack=slack, pager=None)

    monkeypatch.setattr(incident_flow, "services_for", services_for)
    monkeypatch.delenv("AIRFLOW__API__BASE_URL", raising=False)
    slack.environments = environments  # type: ignore[attr-defined]
    return slack


def task_context(error: BaseException | None = None, *, dag_id: str = "oncall_handoff", run_id: str = RUN_ID,
                 task_id: str = "post_handoff") -> dict[str, Any]:
    """What a task's on_failure_callback gets (the worker): the task instance, the run, the exception."""
    ti = SimpleNamespace(dag_id=dag_id, run_id=run_id, task_id=task_id, try_number=3, map_index=-1)
    run = SimpleNamespace(dag_id=dag_id, run_id=run_id, logical_date=LOGICAL, run_after=LOGICAL)
    return {"ti": ti, "task_instance": ti, "dag_run": run, "run_id": run_id, "logical_date": LOGICAL,
            "exception": error if error is not None else RuntimeError("Slack is not configured: add the connection")}


def dag_context(*, dag_id: str = "oncall_handoff", run_id: str = RUN_ID, task_id: str | None = "post_handoff",
                reason: str = "task_failure") -> dict[str, Any]:
    """What a DAG's on_failure_callback gets (the DAG processor): the last failed task's context, no exception."""
    from airflow.sdk import DAG

    if task_id is None:
        return {"dag": DAG(dag_id, schedule=None), "run_id": run_id, "reason": reason}
    context = task_context(dag_id=dag_id, run_id=run_id, task_id=task_id)
    del context["exception"]
    return {**context, "dag": DAG(dag_id, schedule=None), "reason": reason}


def test_a_failed_task_tells_dev_team_in_japanese(slack: RecordingSlack) -> None:
    DagFailureNotifier()(task_context(RuntimeError("Slack is not configured: add the connection\nTraceback...")))
    [message] = slack.messages
    assert message["channel"] == "#dev-team"
    assert message["key"] == f"dag_failed:oncall_handoff:{RUN_ID}:post_handoff"
    assert message["text"].splitlines() == [
        "【DAG実行の失敗】オンコール交代通知（oncall_handoff）",
        "失敗したタスク: post_handoff",
        "内容: 処理中にエラーが発生しました: `Slack is not configured: add the connection`",
        "実行日時: 2026-12-07(月) 09:00 JST",
        f"実行ID: {RUN_ID}",
        "Airflow のログを確認し、必要なら再実行してください。",
    ]
    assert slack.environments == ["production"]  # type: ignore[attr-defined]


def test_once_per_run_and_task_whoever_calls(slack: RecordingSlack) -> None:
    notifier = DagFailureNotifier()
    notifier(task_context())
    notifier(task_context())  # the callback run again (e.g. the DAG processor after a killed worker)
    DagFailureNotifier()(dag_context())  # the run's own callback, for the same task
    assert len(slack.messages) == 1
    DagFailureNotifier()(task_context(run_id="scheduled__2026-12-07T09:00:00+00:00"))  # the next run
    DagFailureNotifier()(task_context(task_id="other_task"))  # another task of the run
    assert len(slack.messages) == 3


def test_a_run_failure_without_a_task_says_why(slack: RecordingSlack) -> None:
    DagFailureNotifier()(dag_context(dag_id="incident_response_report", task_id=None, reason="timed_out"))
    [message] = slack.messages
    lines = message["text"].splitlines()
    assert lines[:3] == ["【DAG実行の失敗】週次の障害対応レポート（incident_response_report）", "失敗したタスク: （タスクなし）",
                         "内容: 実行時間の上限（dagrun_timeout）を超えました"]
    assert message["key"] == f"dag_failed:incident_response_report:{RUN_ID}:-"


def test_a_link_to_the_run_when_the_ui_address_is_known(slack: RecordingSlack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example/")
    DagFailureNotifier()(task_context(dag_id="postmortem_reminders", task_id="send_reminders"))
    [message] = slack.messages
    assert ("<https://airflow.example/dags/postmortem_reminders/runs/scheduled__2026-12-07T00%3A00%3A00%2B00%3A00"
            "|Airflow で実行を開く>") in message["text"].splitlines()
    assert message["text"].splitlines()[0] == "【DAG実行の失敗】ポストモーテム期限のリマインド（postmortem_reminders）"


def test_the_error_is_short_and_cannot_ping_anyone(slack: RecordingSlack) -> None:
    DagFailureNotifier()(task_context(ValueError("<!channel> " + "x" * 1000)))
    [line] = [line for line in slack.messages[0]["text"].splitlines() if line.startswith("内容: ")]
    assert line.startswith("内容: 処理中にエラーが発生しました: `&lt;!channel&gt; xxx") and line.endswith("…`")
    assert line.count("x") < 200  # short: at most 200 characters of the error (before escaping)
    assert "<!channel>" not in slack.messages[0]["text"]


def test_the_class_name_is_logged_not_shown(slack: RecordingSlack, capsys: pytest.CaptureFixture[str]) -> None:
    DagFailureNotifier()(task_context(LookupError("`weekly` & <@U123>\nsecond line")))
    text = slack.messages[0]["text"]
    assert "LookupError" not in text and "Error" not in text
    assert "内容: 処理中にエラーが発生しました: `'weekly' &amp; &lt;@U123&gt;`" in text.splitlines()
    assert "second line" not in text and "<@U123>" not in text
    assert "LookupError" in logged(capsys)


def test_an_exception_without_a_message_is_a_sentence(slack: RecordingSlack) -> None:
    DagFailureNotifier()(task_context(TimeoutError()))
    assert "内容: 処理中にエラーが発生しました（詳細はログを確認してください）" in slack.messages[0]["text"].splitlines()


def logged(capsys: pytest.CaptureFixture[str]) -> str:
    """What the notifier logged (Airflow's structlog writes to the console, not to caplog)."""
    captured = capsys.readouterr()
    return captured.out + captured.err


def test_a_broken_slack_never_hides_the_failure(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    broken = BrokenSlack()
    monkeypatch.setattr(incident_flow, "services_for", lambda environment: SimpleNamespace(slack=broken))
    DagFailureNotifier()(task_context())  # does not raise
    assert broken.calls == 1 and broken.messages == []
    text = logged(capsys)
    assert "could not tell #dev-team" in text and "503 Service Unavailable" in text


def test_no_slack_connection_or_no_services_is_logged_not_raised(monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(incident_flow, "services_for", lambda environment: SimpleNamespace(slack=None))
    DagFailureNotifier()(task_context())
    text = logged(capsys)
    assert "Slack is not configured" in text and "【DAG実行の失敗】オンコール交代通知" in text

    def unreachable(environment: str) -> Any:
        raise KeyError("slack_api_default")

    monkeypatch.setattr(incident_flow, "services_for", unreachable)
    DagFailureNotifier()({"run_id": RUN_ID})  # a context with almost nothing in it: still no exception
    assert "slack_api_default" in logged(capsys)
