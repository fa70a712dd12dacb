"""Doubles for the Slack and PagerDuty webhook tests, made here: Slack-signed requests and PagerDuty
v3 deliveries built the way Slack and PagerDuty build them, a stand-in for Airflow's HITL route
that behaves like it (one answer per task: a second is HTTP 409), and a Slack that records replies."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from incident_ops.core.ledger import Ledger, events_table
from incident_ops.core.runbook import Runbook
from incident_ops.webhooks.airflow_bridge import HitlAnswerError
from incident_ops.webhooks.app import create_app
from incident_ops.webhooks.config import WebhookConfig

from .helpers import NOW, CountingTrigger

SLACK_SECRET = "test-slack-signing-secret"
PD_SECRET = "test-pagerduty-secret"
PD_OLD_SECRET = "test-pagerduty-secret-old"
TASK = "recover.choose_scenario"
OPTIONS = ["deploy", "manual"]


def slack_signed(body: bytes | str, *, secret: str = SLACK_SECRET, at: dt.datetime = NOW,
                 content_type: str = "application/x-www-form-urlencoded") -> tuple[bytes, dict[str, str]]:
    raw = body.encode() if isinstance(body, str) else body
    timestamp = str(int(at.timestamp()))
    digest = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + raw, hashlib.sha256).hexdigest()
    return raw, {"Content-Type": content_type, "X-Slack-Request-Timestamp": timestamp,
                 "X-Slack-Signature": f"v0={digest}"}


def interaction(*, user: str = "U0TANAKA1", value: dict[str, Any] | str, block_id: str = "incident_ops.decision",
                action_id: str = "decision:0", label: str = "deploy", action_ts: str | None = None,
                channel: str = "C0INCIDENT", ts: str = "1795793400.000100") -> bytes:
    """A `block_actions` payload as Slack posts it (form field `payload`)."""
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0PB"},
        "team": {"id": "T0PB", "domain": "peoplebooster"},
        "api_app_id": "A0INCIDENT", "token": "legacy", "trigger_id": str(uuid.uuid4()),
        "container": {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": False},
        "channel": {"id": channel, "name": "incident-20261128"},
        "message": {"ts": ts, "text": "シナリオを選んでください", "blocks": [
            {"type": "section", "block_id": "q", "text": {"type": "mrkdwn", "text": "シナリオを選んでください"}},
            {"type": "actions", "block_id": block_id, "elements": [
                {"type": "button", "action_id": "decision:0", "text": {"type": "plain_text", "text": "deploy"},
                 "value": "x"}]}]},
        "response_url": "https://hooks.slack.com/actions/T0PB/1/x",
        "actions": [{"action_id": action_id, "block_id": block_id, "text": {"type": "plain_text", "text": label},
                     "value": value if isinstance(value, str) else json.dumps(value), "type": "button",
                     "action_ts": action_ts or f"{NOW.timestamp():.6f}"}],
    }
    return urlencode({"payload": json.dumps(payload, ensure_ascii=False)}).encode()


def slash(text: str, *, user: str = "U0TANAKA1", command: str = "/incident", trigger: str | None = None) -> bytes:
    return urlencode({"token": "legacy", "team_id": "T0PB", "team_domain": "peoplebooster", "channel_id": "C0DEVTEAM",
                      "channel_name": "dev-team", "user_id": user, "user_name": user.lower(), "command": command,
                      "text": text, "api_app_id": "A0INCIDENT", "response_url": "https://hooks.slack.com/commands/x",
                      "trigger_id": trigger or str(uuid.uuid4())}).encode()


def pd_event(event_type: str, incident_key: str | None, *, event_id: str | None = None, agent: Any = "default",
             at: dt.datetime = NOW, assignees: list[str] | None = None) -> dict[str, Any]:
    if agent == "default":
        agent = {"id": "PTANAKA", "type": "user_reference", "summary": "Taro Tanaka",
                 "self": "https://api.pagerduty.com/users/PTANAKA", "html_url": "https://pb.pagerduty.com/users/PTANAKA"}
    return {"event": {
        "id": event_id or f"01{uuid.uuid4().hex[:24].upper()}", "event_type": event_type, "resource_type": "incident",
        "occurred_at": at.isoformat().replace("+00:00", "Z"), "agent": agent, "client": None,
        "data": {"id": "Q0PDINC", "type": "incident", "self": "https://api.pagerduty.com/incidents/Q0PDINC",
                 "html_url": "https://pb.pagerduty.com/incidents/Q0PDINC", "number": 42, "status": "acknowledged",
                 "incident_key": incident_key, "created_at": at.isoformat().replace("+00:00", "Z"),
                 "title": "ログインできない", "service": {"id": "PSVC", "type": "service_reference"},
                 "assignees": [{"id": "PX", "type": "user_reference", "summary": name}
                               for name in (assignees or ["Taro Tanaka"])],
                 "escalation_policy": {"id": "PEP", "type": "escalation_policy_reference"}, "teams": [],
                 "priority": None, "urgency": "high", "conference_bridge": None, "resolve_reason": None}}}


def pd_signed(event: dict[str, Any] | bytes, *secrets: str) -> tuple[bytes, dict[str, str]]:
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    signatures = ",".join("v1=" + hmac.new(s.encode(), body, hashlib.sha256).hexdigest() for s in (secrets or (PD_SECRET,)))
    return body, {"Content-Type": "application/json", "User-Agent": "PagerDuty-Webhook/V3.0",
                  "X-Webhook-Id": "W0", "X-PagerDuty-Signature": signatures}


@dataclass
class FakeHitl:
    """Airflow's HITL route as the webhook sees it: one answer per task (a second is 409)."""

    answers: dict[tuple[str, str, str, int], tuple[str, str, str]] = field(default_factory=dict)
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    options: list[str] = field(default_factory=lambda: list(OPTIONS))
    error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, dag_id: str, run_id: str, task_id: str, map_index: int, option: str, user_id: str,
                 user_name: str) -> dict[str, Any]:
        with self.lock:
            self.calls.append((dag_id, run_id, task_id, map_index, option, user_id, user_name))
            if self.error:
                raise HitlAnswerError(self.error, "as configured")
            key = (dag_id, run_id, task_id, map_index)
            if key in self.answers:
                raise HitlAnswerError("already_answered", "409")
            if option not in self.options:
                raise HitlAnswerError("bad_option", "400")
            self.answers[key] = (option, user_id, user_name)
            return {"chosen_options": [option], "responded_by": {"id": user_id, "name": user_name}}


@dataclass
class FakeSlack:
    ephemerals: list[tuple[str, str, str]] = field(default_factory=list)
    updates: list[tuple[str, str, str, list[dict[str, Any]]]] = field(default_factory=list)

    def ephemeral(self, channel: str, user: str, text: str) -> None:
        self.ephemerals.append((channel, user, text))

    def update(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]]) -> None:
        self.updates.append((channel, ts, text, blocks))

    def told(self, user: str) -> list[str]:
        return [text for _, who, text in self.ephemerals if who == user]


@dataclass
class ResponderHarness:
    client: TestClient
    app: Any
    ledger: Ledger
    ledger_url: str
    hitl: FakeHitl
    slack: FakeSlack
    trigger: CountingTrigger
    clock: list[dt.datetime]
    config: WebhookConfig
    acknowledged: list[tuple[str, str]]

    @property
    def services(self) -> Any:
        return self.app.state.services()

    def idle(self) -> None:
        assert self.services.wait_idle(10)

    def audit(self) -> list[dict[str, Any]]:
        return self.services.audit.entries()

    def events(self, incident_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.ledger.events(incident_id) if kind is None or e["kind"] == kind]

    def event_count(self) -> int:
        with self.ledger.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(events_table)).scalar_one()

    def open_incident(self, *, severity: str = "P2", fingerprint: str = "production:backend:login") -> str:
        incident, _ = self.ledger.open_or_join(
            fingerprint=fingerprint, severity=severity, symptom="login", title="ログインできない", service="backend",
            environment="production", reporter="test", at=NOW - dt.timedelta(minutes=5),
            detected_at=NOW - dt.timedelta(minutes=5), dag_run_id="incident__x")
        return incident["id"]

    def post_decision(self, incident_id: str, *, deadline: dt.datetime | None = None, run_id: str = "incident__x") -> dict[str, Any]:
        """The lead's `decision_posted` event (what the announcement records) and the button value."""
        self.ledger.record_event(
            incident_id, at=NOW, kind="decision_posted", actor="incident_ops", message="判断を依頼しました",
            data={"task_id": TASK, "dag_id": "incident_response", "run_id": run_id, "map_index": -1,
                  "channel": "C0INCIDENT", "ts": "1795793400.000100", "subject": "シナリオ", "options": OPTIONS,
                  "deadline": (deadline or NOW + dt.timedelta(minutes=10)).isoformat(), "kind": "scenario",
                  "on_timeout": "suggested", "try_number": 1},
            idempotency_key=f"decision:{TASK}:1")
        return {"incident_id": incident_id, "dag_id": "incident_response", "run_id": run_id, "task_id": TASK,
                "map_index": -1, "option": "deploy"}

    def click(self, value: dict[str, Any] | str, *, user: str = "U0TANAKA1", secret: str = SLACK_SECRET,
              extra: dict[str, str] | None = None, **kwargs: Any) -> Any:
        body, headers = slack_signed(interaction(user=user, value=value, **kwargs), secret=secret, at=self.clock[0])
        return self.client.post("/webhooks/slack", content=body, headers={**headers, **(extra or {})})

    def command(self, text: str, *, user: str = "U0TANAKA1", **kwargs: Any) -> Any:
        body, headers = slack_signed(slash(text, user=user, **kwargs), at=self.clock[0])
        return self.client.post("/webhooks/slack", content=body, headers=headers)

    def pagerduty(self, event: dict[str, Any], *secrets: str) -> Any:
        body, headers = pd_signed(event, *secrets)
        return self.client.post("/webhooks/pagerduty", content=body, headers=headers)


@pytest.fixture(name="make_responders")
def make_responders_fixture(runbook: Runbook, tmp_path: Path) -> Iterator[Callable[..., ResponderHarness]]:
    made: list[ResponderHarness] = []

    def make(*, slack_secret: str | None = SLACK_SECRET, pd_secrets: list[str] | None = None,
             runbook_: Runbook | None = None, trigger: Any = None, acknowledge: Any = None,
             command_wait_seconds: float = 2.0, **config: Any) -> ResponderHarness:
        cfg = WebhookConfig(**{"audit_log": tmp_path / f"audit-{len(made)}.jsonl", **config})
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
        ledger = Ledger(url)
        hitl, fake_slack, counting, clock = FakeHitl(), FakeSlack(), trigger or CountingTrigger(), [NOW]
        acknowledged: list[tuple[str, str]] = []

        def ack(incident_id: str, name: str) -> dict[str, Any]:
            acknowledged.append((incident_id, name))
            first = ledger.acknowledge(incident_id, clock[0], name)
            return {"incident_id": incident_id, "acknowledged_by": ledger.get(incident_id)["acknowledged_by"],
                    "first": first}

        app = create_app(config=cfg, trigger=counting, secret=lambda: "unused", clock=lambda: clock[0],
                         runbook=runbook_ or runbook, ledger=ledger, slack_secret=lambda: slack_secret,
                         pagerduty_secrets=lambda: list(pd_secrets if pd_secrets is not None else [PD_SECRET]),
                         hitl=hitl, slack_api=lambda environment: fake_slack, acknowledge=acknowledge or ack,
                         command_wait_seconds=command_wait_seconds)
        harness = ResponderHarness(TestClient(app, raise_server_exceptions=False), app, ledger, url, hitl, fake_slack,
                                   counting, clock, cfg, acknowledged)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.services.wait_idle(10)


def limited_runbook(runbook: Runbook, responders: list[str]) -> Runbook:
    """The runbook with `decisions.responders` set (the field, or an attribute while the model lacks it)."""
    from incident_ops.core.runbook import parse_runbook

    from ..conftest import runbook_data

    data = runbook_data()
    data["decisions"]["responders"] = responders
    try:
        return parse_runbook(data)
    except Exception:  # noqa: BLE001 - the model has no `responders` field yet

        class Decisions:
            def __init__(self) -> None:
                self.__dict__.update(vars(runbook.decisions))
                self.responders = responders

        return runbook.model_copy(update={"decisions": Decisions()})
