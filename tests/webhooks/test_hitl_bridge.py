"""apply_hitl_answer: waits for the task to wait, then calls Airflow's own HITL route; its HTTP errors
become the refusals the Slack webhook tells people."""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

import pytest

from incident_ops.webhooks import airflow_bridge
from incident_ops.webhooks.airflow_bridge import HitlAnswerError, apply_hitl_answer

ARGS = ("incident_response", "incident__INC-1", "recover.choose_scenario", -1, "deploy", "slack:U0TANAKA1", "田中 太郎")


def _long_ago() -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)


def states(monkeypatch: pytest.MonkeyPatch, sequence: list[tuple[bool, str | None, bool]]) -> list[tuple]:
    seen: list[tuple] = []
    calls: list[tuple] = []

    def state(*args: Any) -> tuple[bool, str | None, bool, dt.datetime]:
        seen.append(args)
        found, value, received = sequence[min(len(seen) - 1, len(sequence) - 1)]
        return found, value, received, _long_ago()

    def route(dag_id, run_id, task_id, map_index, option, user) -> dict[str, Any]:
        calls.append((dag_id, run_id, task_id, map_index, option, user.get_id(), user.get_name()))
        return {"chosen_options": [option]}

    monkeypatch.setattr(airflow_bridge, "_state", state)
    monkeypatch.setattr(airflow_bridge, "_call_route", route)
    return calls


def test_a_waiting_task_is_answered_as_the_person(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = states(monkeypatch, [(True, "awaiting_input", False)])
    assert apply_hitl_answer(*ARGS, sleep=lambda s: None) == {"chosen_options": ["deploy"]}
    assert calls == [("incident_response", "incident__INC-1", "recover.choose_scenario", -1, "deploy",
                      "slack:U0TANAKA1", "田中 太郎")]


def test_a_running_task_is_waited_for_then_given_time_to_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = states(monkeypatch, [(True, "running", False), (True, "running", False), (True, "awaiting_input", False)])
    slept: list[float] = []
    apply_hitl_answer(*ARGS, sleep=slept.append, poll_seconds=0.5)
    assert len(calls) == 1 and slept[:2] == [0.5, 0.5] and slept[-1] >= 1.0  # Airflow fails an answer < ~1 s in


def test_a_task_that_never_waits_is_not_answered(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = states(monkeypatch, [(True, "running", False)])
    with pytest.raises(HitlAnswerError) as caught:
        apply_hitl_answer(*ARGS, sleep=lambda s: None, wait_seconds=0.0)
    assert caught.value.code == "not_waiting" and calls == []


@pytest.mark.parametrize(("state", "code"), [((False, None, False), "not_found"),
                                             ((True, "awaiting_input", True), "already_answered"),
                                             ((True, "success", False), "expired"),
                                             ((True, "failed", False), "expired")])
def test_refusals_before_the_route(monkeypatch: pytest.MonkeyPatch, state, code: str) -> None:
    calls = states(monkeypatch, [state])
    with pytest.raises(HitlAnswerError) as caught:
        apply_hitl_answer(*ARGS, sleep=lambda s: None)
    assert caught.value.code == code and calls == []


@pytest.mark.parametrize(("status", "code"), [(409, "already_answered"), (404, "not_found"), (400, "bad_option"),
                                              (403, "forbidden")])
def test_the_routes_http_errors_are_mapped(monkeypatch: pytest.MonkeyPatch, status: int, code: str) -> None:
    """`_call_route` calls Airflow's own `update_hitl_detail` with a session and the user object."""
    from airflow.api_fastapi.core_api.routes.public import hitl
    from airflow.utils import session as session_module
    from fastapi import HTTPException

    seen: dict[str, Any] = {}

    def route(**kwargs: Any) -> Any:
        seen.update(kwargs)
        raise HTTPException(status_code=status, detail="as Airflow says")

    @contextlib.contextmanager
    def fake_session():
        yield "session"

    monkeypatch.setattr(hitl, "update_hitl_detail", route)
    monkeypatch.setattr(session_module, "create_session", fake_session)
    user = airflow_bridge._Responder("slack:U0TANAKA1", "田中 太郎")
    with pytest.raises(HitlAnswerError) as caught:
        airflow_bridge._call_route("incident_response", "r", "t", -1, "deploy", user)
    assert caught.value.code == code
    assert seen["session"] == "session" and seen["user"].get_name() == "田中 太郎"
    assert seen["update_hitl_detail_payload"].chosen_options == ["deploy"] and seen["map_index"] == -1


def test_rotation_secrets_are_split() -> None:
    assert airflow_bridge.split_secrets(" a, b\nc ,,") == ["a", "b", "c"]
    assert airflow_bridge.split_secrets(None) == []
