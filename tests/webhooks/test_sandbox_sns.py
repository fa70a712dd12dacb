"""The sandbox as Amazon SNS against the webhook app served over real HTTP (uvicorn): the sandbox signs
and delivers, the webhook fetches the signing certificate from the sandbox over HTTPS (its local CA,
allowed only by explicit configuration) and verifies. A counting trigger stands in for Airflow."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from sandbox.server import Sandbox

from incident_ops.core.ledger import Ledger
from incident_ops.core.runbook import Runbook
from incident_ops.webhooks.app import create_app
from incident_ops.webhooks.config import WebhookConfig

from .helpers import CountingTrigger

ALARM = "peoplebooster-production-alb-5xx"


@dataclass
class Webhook:
    url: str
    trigger: CountingTrigger
    ledger: Ledger
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def sns(self) -> str:
        return f"{self.url}/incidents/webhooks/sns"


def serve(app, name: str) -> tuple[uvicorn.Server, threading.Thread, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the webhook server did not start"
        time.sleep(0.02)
    return server, thread, sock.getsockname()[1]


def start_webhook(sandbox: Sandbox, runbook: Runbook, tmp_path: Path, **overrides) -> Webhook:
    from fastapi import FastAPI

    endpoints = sandbox.endpoints
    topic = f"arn:aws:sns:{endpoints['region']}:123456789012:peoplebooster-production-alerts"
    settings = {
        "topics": {topic: "production"},
        "extra_cert_hosts": frozenset({endpoints["https"].removeprefix("https://")}),
        "extra_ca_bundle": endpoints["ca_bundle"],
        "audit_log": tmp_path / "audit.jsonl",
        **overrides,
    }
    trigger = CountingTrigger()
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    root = FastAPI()  # mounted like the Airflow API server mounts the plugin's app
    root.mount("/incidents", create_app(config=WebhookConfig(**settings), trigger=trigger, secret=lambda: None,
                                        runbook=runbook, ledger=ledger))
    server, thread, port = serve(root, "webhook")
    return Webhook(f"http://127.0.0.1:{port}", trigger, ledger, server, thread)


@pytest.fixture
def webhook(sandbox: Sandbox, runbook: Runbook, tmp_path: Path) -> Iterator[Webhook]:
    sandbox.client.reset(aws=False)
    hook = start_webhook(sandbox, runbook, tmp_path)
    yield hook
    hook.server.should_exit = True
    hook.thread.join(timeout=10)


def test_sandbox_delivery_is_verified_and_opens_an_incident(sandbox: Sandbox, webhook: Webhook) -> None:
    published = sandbox.client.sns_publish(webhook.sns, {"AlarmName": ALARM})
    assert published["http_status"] == 200, published
    answer = published["answer"]
    assert answer["status"] == "new" and answer["dag_run_id"] == f"incident__{answer['incident_id']}"
    [conf] = webhook.trigger.runs_of("incident_response").values()
    # the alarm as CloudWatch describes it (completed from moto by the sandbox)
    assert conf["alarm"]["Trigger"]["MetricName"] == "HTTPCode_Target_5XX_Count"
    assert conf["alarm"]["AlarmArn"].endswith(f":alarm:{ALARM}")
    assert conf["alarm"]["Region"] == "Asia Pacific (Tokyo)"
    fetched = [r for r in sandbox.client.records("sns") if r["path"].endswith(".pem")]
    assert len(fetched) == 1 and fetched[0]["scheme"] == "https"


@pytest.mark.parametrize("version", ["1", "2"])
def test_both_signature_versions(sandbox: Sandbox, webhook: Webhook, version: str) -> None:
    published = sandbox.client.sns_publish(webhook.sns, {"AlarmName": ALARM}, signature_version=version)
    assert published["statuses"] == {"new": 1}


def test_burst_of_duplicates_yields_one_run(sandbox: Sandbox, webhook: Webhook) -> None:
    storm = sandbox.client.sns_publish(webhook.sns, {"AlarmName": ALARM}, count=600, concurrency=24)
    redeliveries = sandbox.client.sns_publish(webhook.sns, {"AlarmName": ALARM}, count=100, same_message=True)
    assert storm["http_statuses"] == {"200": 600} and redeliveries["http_statuses"] == {"200": 100}
    assert storm["statuses"] == {"new": 1, "joined": 599} and redeliveries["statuses"] == {"joined": 100}
    assert storm["incident_ids"] == redeliveries["incident_ids"] and len(storm["incident_ids"]) == 1
    assert len(webhook.trigger.runs) == 1 and len(webhook.trigger.calls) == 1
    [incident] = webhook.ledger.open_incidents()
    assert incident["occurrences"] == 601  # 600 messages + one redelivered message counted once
    # the certificate was fetched once for the whole burst
    assert len([r for r in sandbox.client.records("sns") if r["path"].endswith(".pem")]) == 1


def test_forged_deliveries_are_refused(sandbox: Sandbox, webhook: Webhook) -> None:
    forged = sandbox.client.sns_publish(webhook.sns, {"AlarmName": ALARM}, count=20, tamper=True)
    assert forged["http_statuses"] == {"403": 20} and forged["statuses"] == {"signature_invalid": 20}
    assert webhook.trigger.calls == [] and webhook.ledger.open_incidents() == []


def test_ok_is_recorded(sandbox: Sandbox, webhook: Webhook) -> None:
    opened = sandbox.client.sns_publish(webhook.sns, {"AlarmName": ALARM})["answer"]
    ok = sandbox.client.sns_publish(webhook.sns, {"AlarmName": ALARM, "NewStateValue": "OK",
                                                  "NewStateReason": "Threshold Crossed: back to normal"})["answer"]
    assert ok["status"] == "recorded" and ok["incident_id"] == opened["incident_id"]
    assert webhook.ledger.get(opened["incident_id"])["status"] == "open"


def test_subscription_confirmed_once(sandbox: Sandbox, webhook: Webhook) -> None:
    before = len(sandbox.client.sns_subscriptions()["confirmed"])
    result = sandbox.client.sns_subscribe(webhook.sns, count=2)  # SNS delivering the confirmation twice
    assert [r["http_status"] for r in result["results"]] == [200, 200]
    assert [r["answer"]["status"] for r in result["results"]] == ["recorded", "ignored"]
    confirmed = sandbox.client.sns_subscriptions()["confirmed"]
    assert len(confirmed) == before + 1 and confirmed[-1]["token"] == result["token"]
    visits = [r for r in sandbox.client.records("sns") if r["query"].get("Action") == "ConfirmSubscription"]
    assert len(visits) == 1 and visits[0]["scheme"] == "https"


def test_subscribe_url_on_another_host_is_not_visited(sandbox: Sandbox, webhook: Webhook) -> None:
    result = sandbox.client.sns_subscribe(webhook.sns, subscribe_url="https://evil.example/?Action=ConfirmSubscription")
    assert result["http_status"] == 403 and result["answer"]["error"] == "url_not_allowed"
    assert not [r for r in sandbox.client.records("sns") if r["query"].get("Action") == "ConfirmSubscription"]


def test_unsubscribe_confirmation_is_ignored(sandbox: Sandbox, webhook: Webhook) -> None:
    result = sandbox.client.sns_subscribe(webhook.sns, kind="UnsubscribeConfirmation")
    assert result["http_status"] == 200 and result["answer"]["status"] == "ignored"


def test_without_explicit_configuration_the_sandbox_is_not_trusted(sandbox: Sandbox, runbook: Runbook,
                                                                   tmp_path: Path) -> None:
    strict = start_webhook(sandbox, runbook, tmp_path, extra_cert_hosts=frozenset(), extra_ca_bundle=None)
    try:
        published = sandbox.client.sns_publish(strict.sns, {"AlarmName": ALARM})
        assert published["http_status"] == 403 and published["answer"]["error"] == "url_not_allowed"
        assert strict.trigger.calls == []
    finally:
        strict.server.should_exit = True
        strict.thread.join(timeout=10)


def test_sandbox_ca_is_needed_for_its_https_host(sandbox: Sandbox, runbook: Runbook, tmp_path: Path) -> None:
    no_ca = start_webhook(sandbox, runbook, tmp_path, extra_ca_bundle=None)
    try:
        published = sandbox.client.sns_publish(no_ca.sns, {"AlarmName": ALARM})
        assert published["http_status"] == 403 and published["answer"]["error"] == "certificate_unavailable"
    finally:
        no_ca.server.should_exit = True
        no_ca.thread.join(timeout=10)
