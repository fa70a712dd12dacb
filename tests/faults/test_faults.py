"""Fault tolerance: each test states what was injected and asserts what survived.

Uses the local fakes (tests/clients/conftest.py: Slack Web API, PagerDuty over HTTPS, an aiosmtpd
server), moto in-process for AWS, and a subprocess parse of the DAG file for the broken runbook.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.awsrequest import AWSResponse
from moto import mock_aws
from moto.core.botocore_stubber import BotocoreStubber
from pytest_httpserver import HTTPServer

import incident_ops.triggers.health as health_trigger
from incident_ops.actions.registry import Clients, aws_client_config, run_action
from incident_ops.clients.email import send_email
from incident_ops.clients.pagerduty import IncidentPager
from incident_ops.clients.slack import IncidentSlack, make_web_client
from incident_ops.core.runbook import DEFAULT_RUNBOOK_PATH
from incident_ops.notify import deliver
from tests.clients.conftest import (
    FakePagerDuty,
    FakeSlack,
    SleepRecorder,
    SmtpSink,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
INCIDENT = "INC-20260105-001"
EMERGENCY = "ops@peoplebooster.com"
DECLARATION = "@channel 【P1インシデント発生】\n症状: 全ユーザーがアクセス不可"
ONCALL = {"id": "tanaka", "name": "田中", "slack_user_id": "U0ENG0001", "pagerduty_user_id": "PENG001",
          "email": "tanaka@peoplebooster.com"}
REGION = "ap-northeast-1"
FLAG = "/peoplebooster/production/feature-flags/external-fallback"


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def slack(fake_slack: FakeSlack) -> IncidentSlack:
    return IncidentSlack(make_web_client("xoxb-test", base_url=fake_slack.base_url, max_retries=3, backoff_factor=0.0))


def plan(channel: str) -> list[dict[str, Any]]:
    common = {"text": DECLARATION, "dedup_key": INCIDENT, "severity": "P1", "summary": "【P1】全ユーザーがアクセス不可"}
    return [
        {"target": "oncall", "via": "pagerduty", "recipients": [ONCALL], "channel": None, **common},
        {"target": "dev_team", "via": "slack", "recipients": [], "channel": channel, **common},
    ]


# --- (a) Slack rate-limited, then recovering -------------------------------------------------------


def test_slack_rate_limited_then_recovering_pages_and_posts_once(
    fake_slack: FakeSlack, slack: IncidentSlack, slack_sleeps: SleepRecorder, fake_pd: FakePagerDuty,
    pager: IncidentPager, smtp: tuple[SmtpSink, int],
) -> None:
    """Injected: Slack answers chat.postMessage with 429 twice (Retry-After: 7, then 3), then recovers.
    Survived: PagerDuty paged once, the declaration arrives exactly once (after waiting each
    Retry-After, in order), no e-mail fallback."""
    channel = fake_slack.add_channel("incident-20260105")
    retry_afters = [7, 3]
    for seconds in retry_afters:
        fake_slack.fail("chat.postMessage", 429, body={"ok": False, "error": "ratelimited"},
                        headers={"Retry-After": str(seconds)})
    mailer = functools.partial(send_email, "127.0.0.1", smtp[1], "incident-bot@peoplebooster.com")

    report = deliver(plan(channel), slack=slack, pager=pager, email_sender=mailer, emergency_email=EMERGENCY,
                     sleep=lambda _: None)

    assert report.ok, report.results
    assert [(e["event_action"], e["dedup_key"]) for e in fake_pd.events] == [("trigger", INCIDENT)]
    assert [m["text"] for m in fake_slack.all_messages(channel)] == [DECLARATION]
    assert len(fake_slack.calls("chat.postMessage")) == 3  # two refused, one accepted
    assert fake_slack.faults["chat.postMessage"] == []  # both 429s were served
    # One sleep per 429, each its Retry-After (slack_sdk adds a jitter below one second), in order.
    assert len(slack_sleeps.sleeps) == len(retry_afters)
    assert all(after <= slept < after + 1 for slept, after in zip(slack_sleeps.sleeps, retry_afters, strict=True))
    assert not report.email_fallback_used and smtp[0].envelopes == []


def test_slack_500_then_recovering_posts_once_and_rerun_repeats_nothing(
    fake_slack: FakeSlack, slack: IncidentSlack, fake_pd: FakePagerDuty, pager: IncidentPager,
) -> None:
    """Injected: Slack chat.postMessage answers 500 twice, then recovers; the delivery is run again
    (a retried task). Survived: one page, one Slack message (idempotency key), no duplicate."""
    channel = fake_slack.add_channel("incident-20260105")
    fake_slack.fail("chat.postMessage", 500, times=2)

    first = deliver(plan(channel), slack=slack, pager=pager, emergency_email=EMERGENCY, sleep=lambda _: None)
    second = deliver(plan(channel), slack=slack, pager=pager, emergency_email=EMERGENCY, sleep=lambda _: None)

    assert first.ok and second.ok
    assert [m["text"] for m in fake_slack.all_messages(channel)] == [DECLARATION]
    assert len(fake_pd.incidents) == 1


def test_pagerduty_500_once_is_retried_and_pages_once(
    fake_slack: FakeSlack, slack: IncidentSlack, fake_pd: FakePagerDuty, pager: IncidentPager,
) -> None:
    """Injected: the PagerDuty Events API answers the first enqueue with 500. Survived: the pager
    retries, the on-call is paged (one PagerDuty incident for the dedup key), Slack is unaffected."""
    channel = fake_slack.add_channel("incident-20260105")
    fake_pd.fail("/v2/enqueue", 500, times=1)

    report = deliver(plan(channel), slack=slack, pager=pager, emergency_email=EMERGENCY, sleep=lambda _: None)

    assert report.ok, report.results
    assert len(fake_pd.calls("/v2/enqueue")) == 2
    assert list(fake_pd.incidents) == [INCIDENT]
    assert [m["text"] for m in fake_slack.all_messages(channel)] == [DECLARATION]


# --- (b) Slack and PagerDuty both down -------------------------------------------------------------


def test_slack_and_pagerduty_down_email_reaches_the_emergency_contact(
    fake_slack: FakeSlack, slack: IncidentSlack, fake_pd: FakePagerDuty, pager: IncidentPager,
    smtp: tuple[SmtpSink, int],
) -> None:
    """Injected: Slack answers 500 and PagerDuty 502 to everything. Survived: the SMTP fallback
    delivers the declaration to ops@peoplebooster.com; the report says both channels failed."""
    channel = fake_slack.add_channel("incident-20260105")
    fake_slack.down = True
    fake_pd.down = True
    mailer = functools.partial(send_email, "127.0.0.1", smtp[1], "incident-bot@peoplebooster.com")

    report = deliver(plan(channel), slack=slack, pager=pager, email_sender=mailer, emergency_email=EMERGENCY,
                     sleep=lambda _: None)

    assert not any(r["ok"] for r in report.results)
    assert report.email_fallback_used and report.email_fallback_ok and report.reached_anyone
    assert [e.rcpt_tos for e in smtp[0].envelopes] == [[EMERGENCY]]
    body = smtp[0].messages[0].get_body(preferencelist=("plain",)).get_content()
    assert "全ユーザーがアクセス不可" in body
    assert fake_slack.all_messages(channel) == [] and fake_pd.events == []


# --- (c) AWS throttling / 5xx during a remediation -------------------------------------------------


def _error_response(request: Any, status: int, code: str, message: str) -> AWSResponse:
    body = json.dumps({"__type": code, "message": message}).encode()
    raw = io.BytesIO(body)
    raw.stream = lambda **_: iter([body])  # type: ignore[attr-defined]
    return AWSResponse(request.url, status, {"Content-Type": "application/x-amz-json-1.1",
                                             "x-amzn-RequestId": "fault"}, raw)


@pytest.mark.parametrize(("status", "code"), [(400, "ThrottlingException"), (500, "InternalServerError")])
def test_aws_throttling_during_remediation_is_retried_and_acts_once(
    status: int, code: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Injected: the first 3 PutParameter attempts of set_feature_flag (the external scenario's step)
    answer `code` (HTTP `status`) in place of AWS (moto never sees them). Survived: botocore's standard retry mode
    (aws_client_config) retries with backoff, the module succeeds, the parameter is written exactly
    once (version 1, read back), and running the step again changes nothing."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    sleeps: list[float] = []
    import botocore.endpoint

    # botocore.endpoint.time is the time module: only this thread's sleeps are the backoff (background
    # threads of earlier tests in the process sleep too, and must really sleep).
    real_sleep, this_thread = time.sleep, threading.current_thread()

    def backoff(seconds: float) -> None:
        if threading.current_thread() is this_thread:
            sleeps.append(seconds)
        else:
            real_sleep(seconds)

    monkeypatch.setattr(botocore.endpoint.time, "sleep", backoff)  # backoff recorded, not slept
    with mock_aws():
        ssm = boto3.client("ssm", region_name=REGION, config=aws_client_config())
        attempts: list[str] = []
        reached_aws: list[str] = []
        moto_call = BotocoreStubber.__call__

        def inject(stubber: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
            # moto answers in botocore's before-send; the fault answers in its place the first 3 times.
            if request.headers.get("X-Amz-Target", b"") in (b"AmazonSSM.PutParameter", "AmazonSSM.PutParameter"):
                attempts.append("PutParameter")
                if len(attempts) <= 3:
                    return _error_response(request, status, code, "Rate exceeded")
                reached_aws.append("PutParameter")
            return moto_call(stubber, event_name, request, **kwargs)

        monkeypatch.setattr(BotocoreStubber, "__call__", inject)
        params = {"name": FLAG, "value": "on", "allow_remediation": True, "environment": "production",
                  "incident_id": INCIDENT}

        result = run_action("set_feature_flag", Clients(ssm=ssm), params, False)
        again = run_action("set_feature_flag", Clients(ssm=ssm), params, False)

        stored = ssm.get_parameter(Name=FLAG)["Parameter"]
    assert result.changed and result.after["value"] == "on"
    assert len(attempts) == 4 and reached_aws == ["PutParameter"]
    assert len(sleeps) == 3 and all(s >= 0 for s in sleeps)  # backed off before each retry
    assert (stored["Value"], stored["Version"]) == ("on", 1)
    assert not again.changed


# --- (d) the health endpoint hanging or answering garbage -----------------------------------------


@pytest.fixture
def hanging_server() -> Iterator[str]:
    """Accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/pb/health"
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        server.close()


def _run_trigger(trigger: health_trigger.HealthTrigger) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return asyncio.run(asyncio.wait_for(collect(), timeout=30))


def test_health_endpoint_hanging_times_out_unhealthy(hanging_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Injected: the health endpoint accepts the connection and never answers. Survived: each
    request gives up after request_timeout, the trigger stops polling at its 2 s budget and fires
    healthy=False, with the timeouts recorded. (A request that never gave up, or polling past the
    budget, would hang until _run_trigger's 30 s guard fails the test.)"""
    monkeypatch.setattr(health_trigger, "MIN_FIRST_WAIT", 0)
    events = _run_trigger(health_trigger.HealthTrigger(hanging_server, consecutive=2, interval=0.2, timeout=2.0,
                                                       request_timeout=0.5))
    assert len(events) == 1 and events[0]["healthy"] is False
    assert "within 2s" in events[0]["reason"]
    answers = events[0]["answers"]
    assert answers and all("timed out" in a["error"] and a["status_code"] is None for a in answers)
    # Each attempt takes at least interval + request_timeout (0.7 s), however loaded the machine: no
    # more than 3 fit in the 2 s budget. More would mean polling past the deadline.
    assert len(answers) <= 3


def test_health_endpoint_garbage_times_out_unhealthy(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Injected: the health endpoint answers 200 with an HTML body (not JSON). Survived: no answer
    counts as healthy; the trigger fires healthy=False at its budget with the reason."""
    monkeypatch.setattr(health_trigger, "MIN_FIRST_WAIT", 0)
    httpserver.expect_request("/pb/health").respond_with_data("<html>502 bad gateway</html>", status=200,
                                                               content_type="text/html")
    events = _run_trigger(health_trigger.HealthTrigger(httpserver.url_for("/pb/health"), consecutive=2,
                                                       interval=0.2, timeout=1.0, request_timeout=0.5))
    assert len(events) == 1 and events[0]["healthy"] is False and events[0]["consecutive"] == 0
    assert all(a["healthy"] is False and "not JSON" in a["error"] for a in events[0]["answers"])


# --- (e) a runbook file with errors ---------------------------------------------------------------


def _parse_with_runbook(runbook: Path, home: Path) -> dict[str, Any]:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "PYTHONPATH": str(PROJECT_ROOT / "plugins"),
        "INCIDENT_OPS_RUNBOOK": str(runbook),
    }
    staged = home / "dags"
    staged.mkdir()
    (staged / "incident_response.py").write_text((PROJECT_ROOT / "dags" / "incident_response.py").read_text("utf-8"),
                                                 encoding="utf-8")
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "tests" / "dags" / "parse_dags.py"), str(staged)],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])["files"]["incident_response.py"]


@pytest.mark.slow
def test_broken_runbook_fails_the_dag_import_naming_the_key(tmp_path: Path) -> None:
    """Injected: a runbook copy whose `verification.interval_seconds` is "often" (not a number).
    Survived: the DAG file does not import (no DAG, so nothing can run), and the import error names
    the offending key."""
    data = yaml.safe_load(DEFAULT_RUNBOOK_PATH.read_text(encoding="utf-8"))
    data["verification"]["interval_seconds"] = "often"
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    home = tmp_path / "home"
    home.mkdir()

    parsed = _parse_with_runbook(broken, home)

    assert parsed["dag_ids"] == []
    errors = "\n".join(parsed["import_errors"].values())
    assert "interval_seconds" in errors, errors
