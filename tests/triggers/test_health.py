"""The deferrable health check's trigger against a local PeopleBooster health endpoint."""

from __future__ import annotations

import asyncio
import json

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from incident_ops.triggers import health
from incident_ops.triggers.health import HealthTrigger


@pytest.fixture(autouse=True)
def no_first_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "MIN_FIRST_WAIT", 0.0)

HEALTHY = {"status": "healthy", "checks": {n: {"status": "healthy"} for n in ("database", "redis", "externalServices")}}
UNHEALTHY = {"status": "unhealthy", "checks": {**HEALTHY["checks"], "database": {"status": "unhealthy"}}}


def first_event(trigger: HealthTrigger) -> dict:
    async def run() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    return asyncio.run(run())


def test_needs_consecutive_healthy_answers(httpserver: HTTPServer) -> None:
    answers = iter([HEALTHY, UNHEALTHY, HEALTHY, HEALTHY, HEALTHY])
    seen = []

    def handler(request: Request) -> Response:
        body = next(answers)
        seen.append(body["status"])
        return Response(json.dumps(body), status=200 if body["status"] == "healthy" else 503,
                        content_type="application/json")

    httpserver.expect_request("/health").respond_with_handler(handler)
    event = first_event(HealthTrigger(httpserver.url_for("/health"), consecutive=3, interval=0.05, timeout=10))
    assert event["healthy"] is True
    # the unhealthy answer reset the streak: it took five answers, the last three healthy
    assert seen == ["healthy", "unhealthy", "healthy", "healthy", "healthy"]


def test_times_out_unhealthy_with_the_reason(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/health").respond_with_data("<html>bad gateway</html>", status=502)
    event = first_event(HealthTrigger(httpserver.url_for("/health"), consecutive=2, interval=0.1, timeout=0.5))
    assert event["healthy"] is False
    assert "within" in event["reason"]
    assert event["answers"] and all(not a["healthy"] for a in event["answers"])


def test_serializes_to_its_plugin_import_path() -> None:
    path, kwargs = HealthTrigger("http://x/health", 3, 10.0, 60.0, verify="/ca.pem").serialize()
    assert path == "incident_ops.triggers.health.HealthTrigger"
    assert HealthTrigger(**kwargs).serialize() == (path, kwargs)
