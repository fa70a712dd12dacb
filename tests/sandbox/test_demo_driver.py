"""The demo driver (`scripts.incident_runner.follow_run`) answering as people do, against the real
sandbox: with `answer_via="slack"` the on-call engineer clicks the decision's button (the signed
interaction reaches a stand-in of the Slack webhook, which answers the task), the REST answer is the
fallback when no message appears, and the acknowledgement goes through PagerDuty's webhook.

Airflow is played by a fake of the REST API the driver uses (no Airflow starts here)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
from sandbox.server import Sandbox
from slack_sdk import WebClient

from incident_ops.core.decisions import scenario_options
from incident_ops.core.runbook import load_runbook
from scripts import incident_runner
from scripts.incident_runner import SANDBOX_SLACK_SIGNING_SECRET, follow_run

from .helpers import Receiver

pytestmark = [pytest.mark.server, pytest.mark.timeout(120)]

INCIDENT = "INC-20261201-009"
RUN_ID = f"incident__{INCIDENT}"
CHOOSE = "recover.choose_scenario"
APPROVE = "recover.approve_rollback"
# The choice's options as the DAG builds them (the runbook's words).
SCENARIOS = [scenario_options(load_runbook(), "手動対応（自動復旧なし）")[name] for name in ("deploy", "resource")]


class FakeAirflow:
    """The REST API calls follow_run makes, over a run whose two decisions wait for an answer."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.states = {"detect.open_incident": "success", "detect.notify_responders": "success",
                       CHOOSE: "awaiting_input", APPROVE: "none"}
        self.waiting_since: dict[str, float] = {CHOOSE: time.monotonic()}
        self.answers: list[dict[str, Any]] = []
        self.triggered: list[tuple[str, dict[str, Any]]] = []

    def answer(self, task_id: str, option: str, by: str) -> None:
        with self.lock:
            if self.states[task_id] != "awaiting_input":
                raise RuntimeError(f"PATCH {task_id}: HTTP 409: already answered")
            self.answers.append({"task_id": task_id, "option": option, "by": by,
                                 "after": time.monotonic() - self.waiting_since[task_id]})
            self.states[task_id] = "success"
            if task_id == CHOOSE:
                self.states[APPROVE] = "awaiting_input"
                self.waiting_since[APPROVE] = time.monotonic()

    # --- what follow_run calls ---
    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        with self.lock:
            done = all(state == "success" for state in self.states.values())
        return {"dag_run_id": run_id, "state": "success" if done else "running"}

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [{"task_id": t, "state": s, "try_number": 1, "map_index": -1, "start_date": str(n)}
                    for n, (t, s) in enumerate(self.states.items())]

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> Any:
        return {"id": INCIDENT, "severity": "P1"}

    def pending_hitl(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        options = {CHOOSE: SCENARIOS, APPROVE: ["Approve", "Reject"]}
        with self.lock:
            return [{"task_instance": {"task_id": t, "try_number": 1, "map_index": -1}, "options": options[t]}
                    for t, s in self.states.items() if s == "awaiting_input"]

    def answer_hitl(self, dag_id: str, run_id: str, task_id: str, chosen: list[str]) -> Any:
        self.answer(task_id, chosen[0], "admin (REST)")

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> dict[str, Any]:
        self.triggered.append((dag_id, conf))
        return {"dag_run_id": "x"}


class Stack:
    username = "admin"

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    def sandbox_client(self):
        return self._sandbox.client


def post_decision(slack: WebClient, channel: str, task_id: str, options: list[str]) -> None:
    elements = [{"type": "button", "action_id": f"decision:{n}", "text": {"type": "plain_text", "text": option},
                 "value": json.dumps({"incident_id": INCIDENT, "dag_id": "incident_response", "run_id": RUN_ID,
                                      "task_id": task_id, "map_index": -1, "option": option}, ensure_ascii=False)}
                for n, option in enumerate(options)]
    slack.chat_postMessage(channel=channel, text=f"{task_id} を待っています",
                           blocks=[{"type": "actions", "block_id": "incident_ops.decision", "elements": elements}])


@pytest.fixture
def world(sb_light: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeAirflow, Receiver, WebClient]]:
    airflow = FakeAirflow()
    monkeypatch.setattr(incident_runner, "api_for", lambda stack: airflow)
    monkeypatch.setattr(incident_runner, "SLACK_MESSAGE_WAIT", 4.0)
    slack = WebClient(token="xoxb-sandbox-token", base_url=sb_light.endpoints["slack_api"], timeout=10)
    slack.conversations_create(name="incident-20261201")
    people = {p["slack_user_id"]: p["name"] for p in sb_light.client.people()}

    def webhook(request: dict[str, Any]) -> None:  # what the Slack webhook does with a decision click
        if request["path"].endswith("/slack"):
            payload = json.loads(parse_qs(request["body"].decode())["payload"][0])
            value = json.loads(payload["actions"][0]["value"])
            airflow.answer(value["task_id"], value["option"], people[payload["user"]["id"]])

    with Receiver() as receiver:
        receiver.on_request = webhook
        sb_light.client.set_webhooks(airflow_url=receiver.url, slack_signing_secret=SANDBOX_SLACK_SIGNING_SECRET,
                                     pagerduty_retry_delays=[0.2])
        response = requests.post(f"{sb_light.endpoints['pagerduty']}/v2/enqueue", verify=sb_light.endpoints["ca_bundle"],
                                 timeout=10, json={"routing_key": "R" * 32, "event_action": "trigger", "dedup_key": INCIDENT,
                                                   "payload": {"summary": "P1", "source": "x", "severity": "critical"}})
        assert response.status_code == 202
        yield airflow, receiver, slack


def test_slack_answers_the_posted_decision_and_falls_back_to_rest_for_the_other(world, sb_light: Sandbox) -> None:
    airflow, receiver, slack = world
    post_decision(slack, "incident-20261201", CHOOSE, SCENARIOS)  # APPROVE gets no message: the fallback
    oncall = sb_light.client.oncall_person()
    said: list[str] = []
    followed = follow_run(Stack(sb_light), RUN_ID, scenario="resource", timeout=60, say=said.append, answer_via="slack")

    assert followed["run"]["state"] == "success" and followed["incident_id"] == INCIDENT
    assert [(a["task_id"], a["option"], a["by"]) for a in airflow.answers] == [
        (CHOOSE, SCENARIOS[1], oncall["name"]),
        (APPROVE, "Approve", "admin (REST)"),
    ]
    assert all(a["after"] >= 1.5 for a in airflow.answers)  # never answered right after the wait started
    assert airflow.answers[1]["after"] >= 4.0  # the REST answer only after the Slack message's wait
    assert followed["decisions"] == [
        {"task_id": CHOOSE, "option": SCENARIOS[1], "via": "slack", "by": oncall["name"]},
        {"task_id": APPROVE, "option": "Approve", "via": "ui", "by": "admin",
         "fallback": f"no Slack message for {APPROVE} within 4 s"},
    ]
    assert any("answering in the Airflow UI instead" in line for line in said)

    # acknowledged in PagerDuty as the on-call engineer; its signed webhook went to the receiver
    assert followed["acknowledged_via"] == "pagerduty" and airflow.triggered == []
    (delivery,) = sb_light.client.wait_deliveries("pagerduty", 1, timeout=15)
    assert delivery["event_type"] == "incident.acknowledged" and delivery["by"] == oncall["name"] and delivery["status"] == 200
    clicks = sb_light.client.deliveries("slack.block_actions")
    assert [(c["user_id"], c["status"]) for c in clicks] == [(oncall["slack_user_id"], 200)]


def test_ui_answers_through_rest_only(world, sb_light: Sandbox) -> None:
    airflow, receiver, slack = world
    post_decision(slack, "incident-20261201", CHOOSE, SCENARIOS)
    followed = follow_run(Stack(sb_light), RUN_ID, scenario="deploy", timeout=60, say=lambda _: None, answer_via="ui")
    assert [(d["task_id"], d["option"], d["via"]) for d in followed["decisions"]] == [(CHOOSE, SCENARIOS[0], "ui"), (APPROVE, "Approve", "ui")]
    assert sb_light.client.deliveries("slack") == []
    assert followed["acknowledged_via"] == "ui" and [dag for dag, _ in airflow.triggered] == ["incident_acknowledge"]
    with pytest.raises(ValueError):
        follow_run(Stack(sb_light), RUN_ID, scenario="deploy", answer_via="carrier pigeon")
