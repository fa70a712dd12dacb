"""The external wait's trigger against a local status page and health endpoint."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from incident_ops.triggers import provider_status
from incident_ops.triggers.provider_status import ProviderStatusTrigger

HEALTHY = {"status": "healthy", "checks": {n: {"status": "healthy"} for n in ("database", "redis", "externalServices")}}
UNHEALTHY = {"status": "unhealthy", "checks": {**HEALTHY["checks"], "externalServices": {"status": "unhealthy"}}}
OPERATIONAL = {"indicator": "none", "description": "All Systems Operational"}


@pytest.fixture(autouse=True)
def no_first_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(provider_status, "MIN_FIRST_WAIT", 0.0)


def answers(items: list[dict[str, Any]], status_of: Callable[[dict[str, Any]], int] = lambda body: 200):
    feed = iter(items)
    last: dict[str, Any] = {}

    def handler(request: Request) -> Response:
        body = next(feed, None) or last["body"]
        last["body"] = body
        return Response(json.dumps(body), status=status_of(body), content_type="application/json")

    return handler


def serve(httpserver: HTTPServer, health: list[dict[str, Any]], pages: list[dict[str, Any]]) -> None:
    httpserver.expect_request("/health").respond_with_handler(
        answers(health, lambda body: 200 if body["status"] == "healthy" else 503))
    httpserver.expect_request("/status.json").respond_with_handler(
        answers([{"page": {"name": "Example Payments"}, "status": p} for p in pages]))


def first_event(httpserver: HTTPServer, *, last_seen: dict[str, Any] | None = OPERATIONAL, seconds: float = 5.0,
                status_interval: float = 0.05) -> dict[str, Any]:
    trigger = ProviderStatusTrigger(httpserver.url_for("/status.json"), httpserver.url_for("/health"),
                                    status_interval=status_interval, health_interval=0.02, consecutive=2,
                                    deadline=time.time() + seconds, last_seen=last_seen)

    async def run() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    return asyncio.run(run())


def test_recovered_when_the_health_is_back(httpserver: HTTPServer) -> None:
    serve(httpserver, [UNHEALTHY, HEALTHY, HEALTHY], [OPERATIONAL])
    event = first_event(httpserver)
    assert event["outcome"] == "recovered" and event["consecutive"] == 2
    assert event["status"] == OPERATIONAL  # nothing new on the status page: what was seen before


def test_the_status_page_reports_an_outage(httpserver: HTTPServer) -> None:
    serve(httpserver, [UNHEALTHY], [{"indicator": "major", "description": "Major System Outage"}])
    event = first_event(httpserver)
    assert event["outcome"] == "outage"
    assert event["status"]["indicator"] == "major" and event["status"]["page"]["name"] == "Example Payments"


def test_a_change_of_what_the_page_says_is_reported_once(httpserver: HTTPServer) -> None:
    serve(httpserver, [UNHEALTHY], [{"indicator": "none", "description": "Investigating elevated error rates"}])
    event = first_event(httpserver)
    assert event["outcome"] == "changed" and event["status"]["description"] == "Investigating elevated error rates"
    # deferred again with what it says now as last_seen: silence until the wait's end
    again = first_event(httpserver, last_seen=event["status"], seconds=0.4)
    assert again["outcome"] == "timeout"


def test_the_wait_ends_at_its_limit(httpserver: HTTPServer) -> None:
    serve(httpserver, [UNHEALTHY], [OPERATIONAL])
    started = time.monotonic()
    event = first_event(httpserver, seconds=0.3)
    assert event["outcome"] == "timeout" and time.monotonic() - started < 3
    assert event["health"]["healthy"] is False


def test_an_unreachable_status_page_is_a_change_not_an_outage(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/health").respond_with_json(UNHEALTHY, status=503)
    httpserver.expect_request("/status.json").respond_with_data("down", status=404)
    event = first_event(httpserver)
    assert event["outcome"] == "changed" and event["status"]["indicator"] == "unreachable"


def test_serializes_to_its_plugin_import_path() -> None:
    trigger = ProviderStatusTrigger("https://status/x.json", "https://api/health", status_interval=120.0,
                                    health_interval=10.0, consecutive=3, deadline=1767600000.0,
                                    last_seen=OPERATIONAL, verify="/ca.pem")
    path, kwargs = trigger.serialize()
    assert path == "incident_ops.triggers.provider_status.ProviderStatusTrigger"
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert ProviderStatusTrigger(**kwargs).serialize() == (path, kwargs)
