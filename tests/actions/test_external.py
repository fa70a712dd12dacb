"""The external status check against a local HTTP server (pytest-httpserver)."""

from __future__ import annotations

import pytest
from pytest_httpserver import HTTPServer

from incident_ops.actions.external import external_status_check, parse_status
from incident_ops.clients.http import HttpClient, RetryPolicy

PATH = "/api/v2/status.json"


@pytest.fixture
def http() -> HttpClient:
    return HttpClient("", policy=RetryPolicy(attempts=3, backoff=0.0))


def statuspage(indicator: str, description: str) -> dict:
    return {"page": {"id": "x", "name": "Example Payments", "url": "https://status.example-payments.com",
                     "updated_at": "2026-01-05T01:00:00Z"},
            "status": {"indicator": indicator, "description": description}}


@pytest.mark.parametrize("check_mode", [True, False])
def test_operational_provider(httpserver: HTTPServer, http: HttpClient, check_mode: bool) -> None:
    httpserver.expect_request(PATH, method="GET").respond_with_json(statuspage("none", "All Systems Operational"))
    result = external_status_check(http, {"url": httpserver.url_for(PATH)}, check_mode=check_mode)
    assert result.ok and not result.changed and result.check_mode is check_mode
    assert result.details["indicator"] == "none" and result.details["operational"] is True
    assert result.details["page"]["name"] == "Example Payments"
    assert "provider is operational: All Systems Operational" in result.message


def test_provider_down_is_a_finding_not_a_failure(httpserver: HTTPServer, http: HttpClient) -> None:
    httpserver.expect_request(PATH).respond_with_json(statuspage("major", "Partial System Outage"))
    result = external_status_check(http, {"url": httpserver.url_for(PATH)}, check_mode=False)
    assert result.ok and not result.changed
    assert result.details["indicator"] == "major" and result.details["operational"] is False
    assert "NOT operational (major): Partial System Outage" in result.message


def test_status_page_unreachable(httpserver: HTTPServer, http: HttpClient) -> None:
    httpserver.expect_request(PATH).respond_with_data("boom", status=503)
    result = external_status_check(http, {"url": httpserver.url_for(PATH)}, check_mode=False)
    assert result.ok and not result.changed
    assert result.details["indicator"] == "unreachable" and result.details["operational"] is False
    assert len(httpserver.log) == 3  # retried by the HttpClient policy


@pytest.mark.parametrize(
    ("body", "indicator", "operational"),
    [
        ({"status": "ok"}, "none", True),
        ({"status": "healthy", "checks": {}}, "none", True),
        ({"status": "degraded"}, "minor", False),
        ({"status": {"indicator": "critical", "description": "Major outage"}}, "critical", False),
        ({"status": "DOWN"}, "major", False),
        ({"status": "something-new"}, "unknown", False),
        ({"nothing": 1}, "unknown", False),
        ([1, 2], "unknown", False),
    ],
)
def test_parse_status(body, indicator: str, operational: bool) -> None:
    parsed = parse_status(body)
    assert parsed["indicator"] == indicator and parsed["operational"] is operational
