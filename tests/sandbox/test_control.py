"""The control API: faults on the health endpoint, records, Sentry, state and the HTML page."""

from __future__ import annotations

import time
from typing import Any

from sandbox.server import Sandbox

from .helpers import get, post


def test_health_delay_and_garbage(sb_light: Sandbox) -> None:
    sb_light.client.set_faults(health_delay=0.6)
    started = time.monotonic()
    assert get(sb_light, "/pb/health").status_code == 200
    assert time.monotonic() - started >= 0.6
    sb_light.client.set_faults(health_delay=0, health_garbage=True)
    response = get(sb_light, "/pb/health")
    assert response.status_code == 200
    try:
        response.json()
    except ValueError:
        pass
    else:
        raise AssertionError("health_garbage must not answer valid JSON")
    sb_light.client.set_faults(health_garbage=False)
    assert get(sb_light, "/pb/health").json()["status"] == "healthy"


def test_faults_are_validated(sb_light: Sandbox) -> None:
    assert post(sb_light, "/_sandbox/faults", json={"slack": 200}).status_code == 400
    assert post(sb_light, "/_sandbox/faults", json={"meteor": True}).status_code == 400
    assert post(sb_light, "/_sandbox/faults", json={"github_conclusion": "maybe"}).status_code == 400
    assert sb_light.client.faults()["slack"] is None


def test_records_keep_requests_as_received(sb_light: Sandbox) -> None:
    get(sb_light, "/pb/health", params={"verbose": "1"}, headers={"User-Agent": "incident-ops/1.0"})
    post(sb_light, "/pb/api/v1/auth/login", json={"email": "healthcheck@peoplebooster.com", "password": "sandbox-password"})
    post(sb_light, "/_sandbox/tick")  # control calls are not recorded
    records = sb_light.client.records()
    assert [(r["service"], r["method"], r["path"]) for r in records] == [
        ("pb", "GET", "/pb/health"),
        ("pb", "POST", "/pb/api/v1/auth/login"),
    ]
    first, second = records
    assert first["query"] == {"verbose": "1"} and first["headers"]["user-agent"] == "incident-ops/1.0" and first["status"] == 200
    assert second["body"] == {"email": "healthcheck@peoplebooster.com", "password": "sandbox-password"}
    assert sb_light.client.records("pb", since=first["seq"]) == [second]
    assert sb_light.client.records("slack") == []


def test_sentry_issues_follow_the_breaks(sb: Sandbox, runbook: Any) -> None:
    sentry = runbook.environment("production").sentry
    path = f"/sentry/api/0/projects/{sentry.organization}/{sentry.project}/issues/"
    assert get(sb, path).status_code == 401
    assert get(sb, "/sentry/api/0/projects/other/other/issues/", headers={"Authorization": "Bearer s"}).status_code == 404
    calm = get(sb, path, headers={"Authorization": "Bearer s"}).json()
    assert len(calm) == 1 and calm[0]["substatus"] == "ongoing"
    sb.client.break_scenario("database")
    issues = get(sb, path, headers={"Authorization": "Bearer s"}, params={"statsPeriod": "24h", "query": "is:unresolved", "sort": "new"}).json()
    newest = issues[0]
    assert "could not connect to server" in newest["title"]
    assert set(newest) >= {"id", "title", "culprit", "firstSeen", "lastSeen", "count", "userCount", "permalink", "stats"}
    assert len(newest["stats"]["24h"]) == 24 and int(newest["count"]) > 0


def test_state_and_page(sb: Sandbox) -> None:
    sb.client.break_scenario("resource")
    state = sb.client.state()
    assert state["scenarios"] == ["resource"] and not state["healthy"]
    assert state["aws"]["desired_count"] == 1 and state["aws"]["need"] == 8
    assert state["owned_alarms"]
    page = get(sb, "/_sandbox/")
    assert page.status_code == 200 and "unhealthy" in page.text and "resource" in page.text
    assert 'http-equiv="refresh"' in page.text
    assert get(sb, "/_sandbox/endpoints").json()["aws"] == sb.endpoints["aws"]


def test_evaluator_raises_the_alarm_again_when_it_breaks_again(sb: Sandbox) -> None:
    cloudwatch = sb.boto3_client("cloudwatch")
    ecs = sb.boto3_client("ecs")
    alarm = "peoplebooster-production-backend-cpu-high"
    sb.client.break_scenario("resource")
    ecs.update_service(cluster="peoplebooster-production", service="peoplebooster-backend", desiredCount=10)
    sb.client.tick()
    assert cloudwatch.describe_alarms(AlarmNames=[alarm])["MetricAlarms"][0]["StateValue"] == "OK"
    ecs.update_service(cluster="peoplebooster-production", service="peoplebooster-backend", desiredCount=2)
    sb.client.tick()
    assert cloudwatch.describe_alarms(AlarmNames=[alarm])["MetricAlarms"][0]["StateValue"] == "ALARM"
