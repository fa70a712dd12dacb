"""The page at once (webhooks/paging.py): a new P1/P2 incident is paged by the webhook intake itself,
off the request path, under the DAG's dedup key; the DAG's page then changes nothing, and still
goes out when the intake's attempt failed. PagerDuty is the sandbox's stand-in (Events API v2 over
HTTPS, faults on demand); the DAG's side is the real `notify_responders`."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sandbox.server import Sandbox

from incident_ops.clients.pagerduty import IncidentPager
from incident_ops.core.ledger import Ledger
from incident_ops.core.runbook import Runbook
from incident_ops.flows import incident as incident_flow
from incident_ops.services import IncidentServices, ServiceSettings
from incident_ops.webhooks.app import create_app
from incident_ops.webhooks.config import WebhookConfig
from incident_ops.webhooks.paging import INTAKE_ACTOR, IntakePager

from .conftest import CertServer
from .helpers import CERT_URL, NOW, TOPIC, CountingTrigger, SigningCert, alarm, notification, signed_alert, sns_headers

P1_ALERT = {"source": "uptime-robot", "title": "Login page failing", "service": "backend", "symptom": "ログインできない"}


class App:
    def __init__(self, client: TestClient, app: Any, ledger: Ledger, trigger: CountingTrigger) -> None:
        self.client, self.app, self.ledger, self.trigger = client, app, ledger, trigger

    @property
    def paging(self) -> IntakePager:
        return self.app.state.services().paging

    def alert(self, alert: dict[str, Any]) -> dict[str, Any]:
        body, headers = signed_alert(alert)
        response = self.client.post("/webhooks/alert", content=body, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    def events(self, incident_id: str, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.ledger.events(incident_id) if e["kind"] == kind]


@pytest.fixture
def make_app(runbook: Runbook, cert: SigningCert, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("INCIDENT_OPS_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    built: list[App] = []

    def make(pager: Any) -> App:
        cfg = WebhookConfig(topics={TOPIC: "production"}, audit_log=tmp_path / "audit.jsonl")
        ledger = Ledger()
        trigger = CountingTrigger()
        app = create_app(config=cfg, trigger=trigger, secret=lambda: "test-webhook-secret",
                         fetch=CertServer({CERT_URL: cert.pem}), clock=lambda: NOW, runbook=runbook, ledger=ledger,
                         pager=lambda environment: pager)
        built.append(App(TestClient(app, raise_server_exceptions=False), app, ledger, trigger))
        return built[-1]

    yield make
    for app in built:
        if app.app.state.services()._paging is not None:
            app.paging.close()


@pytest.fixture
def sandbox_pager(sandbox: Sandbox) -> IncidentPager:
    sandbox.client.reset(aws=False)
    endpoints = sandbox.endpoints
    return IncidentPager("sandbox-routing-key", None, events_url=endpoints["pagerduty"], verify=endpoints["ca_bundle"],
                         retry_attempts=1, backoff=0.0, sleep=lambda _: None)


@pytest.fixture
def dag_services(sandbox: Sandbox, runbook: Runbook, monkeypatch: pytest.MonkeyPatch) -> None:
    """The DAG's tasks reach the same sandbox (Slack, PagerDuty Events + REST)."""
    endpoints = sandbox.endpoints
    env = {"SLACK_TOKEN": "xoxb-sandbox-token", "SLACK_API_URL": endpoints["slack_api"],
           "PAGERDUTY_ROUTING_KEY": "sandbox-routing-key", "PAGERDUTY_API_TOKEN": "sandbox-pagerduty-token",
           "PAGERDUTY_EVENTS_URL": endpoints["pagerduty"], "PAGERDUTY_REST_URL": endpoints["pagerduty"],
           "PAGERDUTY_FROM_EMAIL": "incident-ops@peoplebooster.com", "INCIDENT_OPS_CA_BUNDLE": endpoints["ca_bundle"]}
    monkeypatch.setattr(incident_flow, "services_for",
                        lambda name: IncidentServices(ServiceSettings.from_env(runbook.environment(name), env)))


def dag_notifies(app: App, incident_id: str) -> dict[str, Any]:
    """What the incident's run does first (open_incident with the intake's conf, then notify)."""
    [conf] = [c for c in app.trigger.runs_of("incident_response").values() if c["incident_id"] == incident_id]
    incident = incident_flow.open_incident(conf, run_id=f"incident__{incident_id}", run_after=dt.datetime.now(dt.UTC))
    return incident_flow.notify_responders(incident)


def triggers(sandbox: Sandbox, incident_id: str) -> list[dict[str, Any]]:
    return [e for e in sandbox.client.pagerduty_events()
            if e["event_action"] == "trigger" and e["dedup_key"] == incident_id]


def test_the_intake_pages_a_new_p1_and_the_dag_does_not_page_again(
        make_app: Any, sandbox: Sandbox, sandbox_pager: IncidentPager, dag_services: None, cert: SigningCert) -> None:
    app = make_app(sandbox_pager)
    envelope = notification(cert, alarm("peoplebooster-production-health-check-failed"))
    response = app.client.post("/webhooks/sns", content=json.dumps(envelope), headers=sns_headers(envelope))
    answer = response.json()
    assert response.status_code == 200 and answer["status"] == "new" and answer["severity"] == "P1", answer
    assert app.paging.wait_idle(20)
    incident_id = answer["incident_id"]
    [page] = triggers(sandbox, incident_id)
    assert page["payload"]["severity"] == "critical" and page["payload"]["summary"].startswith("[P1] ")
    [paged] = app.events(incident_id, "paged")
    assert paged["actor"] == INTAKE_ACTOR and paged["data"]["dedup_key"] == incident_id
    assert incident_flow.was_paged(app.ledger, incident_id)

    report = dag_notifies(app, incident_id)
    assert len(triggers(sandbox, incident_id)) == 1  # PagerDuty got ONE trigger for the incident
    results = {(r["target"], r["via"]): r for r in report["results"]}
    assert results[("oncall", "pagerduty")]["by"] == INTAKE_ACTOR
    # The CTO's phone call is a responder request: always the DAG's, on the incident the intake opened.
    assert results[("cto", "phone")]["ok"] and "by" not in results[("cto", "phone")]
    [pd_incident] = [i for i in sandbox.client.pagerduty_incidents() if i.get("incident_key") == incident_id]
    assert len(pd_incident["responder_requests"]) == 1
    [notified] = app.events(incident_id, "notified")
    assert notified["data"]["results"][0]["by"] == INTAKE_ACTOR


def test_the_dag_pages_when_the_intakes_attempt_failed(
        make_app: Any, sandbox: Sandbox, sandbox_pager: IncidentPager, dag_services: None) -> None:
    sandbox.client.set_faults(pagerduty=500, pagerduty_count=2)  # the intake's attempt and its one retry
    app = make_app(sandbox_pager)
    answer = app.alert(P1_ALERT)
    assert answer["status"] == "new" and answer["severity"] == "P1"
    assert app.paging.wait_idle(20)
    incident_id = answer["incident_id"]
    assert triggers(sandbox, incident_id) == [] and app.events(incident_id, "paged") == []
    assert app.paging.outcomes[incident_id].startswith("failed:")
    assert not incident_flow.was_paged(app.ledger, incident_id)

    report = dag_notifies(app, incident_id)
    [page] = triggers(sandbox, incident_id)
    assert page["payload"]["severity"] == "critical"
    results = {(r["target"], r["via"]): r for r in report["results"]}
    assert results[("oncall", "pagerduty")]["ok"] and "by" not in results[("oncall", "pagerduty")]
    assert app.events(incident_id, "notified")


class SlowPager:
    """A PagerDuty that holds every trigger until released."""

    events = True

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.sent: list[tuple[str, str, str]] = []

    def trigger(self, dedup_key: str, summary: str, severity: str, source: str, **_: Any) -> str:
        self.entered.set()
        assert self.release.wait(30), "never released"
        self.sent.append((dedup_key, summary, severity))
        return dedup_key


def test_the_answer_does_not_wait_for_pagerduty(make_app: Any) -> None:
    pager = SlowPager()
    app = make_app(pager)
    answer = app.alert(P1_ALERT)  # answered while PagerDuty holds the trigger
    try:
        assert answer["status"] == "new"
        assert pager.entered.wait(10)  # the sender is inside PagerDuty's call now
        assert pager.sent == [] and app.events(answer["incident_id"], "paged") == []
        second = app.alert({**P1_ALERT, "service": "frontend", "title": "Front page failing"})
        assert second["status"] == "new" and pager.sent == []  # the next request is not held either
    finally:
        pager.release.set()
    assert app.paging.wait_idle(20)
    assert [key for key, _, _ in pager.sent] == [answer["incident_id"], second["incident_id"]]
    [paged] = app.events(answer["incident_id"], "paged")
    assert paged["data"]["summary"] == pager.sent[0][1]


def test_only_a_new_p1_or_p2_is_paged_at_once(make_app: Any) -> None:
    pager = SlowPager()
    pager.release.set()
    app = make_app(pager)
    low = app.alert({**P1_ALERT, "symptom": "UIの表示崩れ", "title": "Layout broken"})  # P4
    first = app.alert(P1_ALERT)
    joined = app.alert({**P1_ALERT, "title": "Login page failing again"})  # same fingerprint: joined
    assert (low["severity"], first["status"], joined["status"]) == ("P4", "new", "joined")
    assert app.paging.wait_idle(20)
    assert [key for key, _, _ in pager.sent] == [first["incident_id"]]


def test_a_full_queue_drops_nothing_silently(runbook: Runbook, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pager = SlowPager()
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    paging = IntakePager(runbook, ledger, lambda environment: pager, max_queue=1)
    opened = [ledger.open_or_join(fingerprint=f"production:test:{n}", severity="P1", symptom="login_failure",
                                  title="t", service="backend", environment="production", reporter="t",
                                  at=NOW, occurrence_key=f"o{n}", detected_at=NOW)[0]["id"] for n in range(3)]
    try:
        assert paging.offer(opened[0], "P1")
        assert pager.entered.wait(10)  # the first is being sent, the queue is empty again
        assert paging.offer(opened[1], "P1")  # queued
        with caplog.at_level(logging.WARNING, logger="incident_ops.webhooks.paging"):
            assert not paging.offer(opened[2], "P1")  # full: refused, and said so
        assert f"{opened[2]} will be paged by its DAG run only" in caplog.text
    finally:
        pager.release.set()
    assert paging.wait_idle(20)
    paging.close()
    assert [key for key, _, _ in pager.sent] == opened[:2]
    assert not [e for e in ledger.events(opened[2]) if e["kind"] == "paged"]
