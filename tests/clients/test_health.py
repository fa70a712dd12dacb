"""Health endpoint verdicts and the runbook's functional checks against a local PeopleBooster fake."""

from __future__ import annotations

import json
import re
import socket
import time

import pytest
import requests
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from incident_ops.clients.health import (
    CheckResult,
    check_health,
    evaluate_health,
    run_functional_checks,
)
from incident_ops.clients.http import HttpClient, RetryPolicy
from incident_ops.core.runbook import FunctionalCheck, Runbook

HEALTHY = {
    "status": "healthy",
    "checks": {"database": {"status": "healthy"}, "redis": {"status": "healthy"},
               "externalServices": {"status": "healthy"}},
}


def test_evaluate_health_rules() -> None:
    assert evaluate_health(200, HEALTHY).healthy
    degraded = {**HEALTHY, "status": "degraded", "checks": {**HEALTHY["checks"], "redis": {"status": "unhealthy"}}}
    verdict = evaluate_health(200, degraded)
    assert not verdict.healthy and verdict.checks["redis"] == "unhealthy"
    assert "status is 'degraded'" in verdict.error and "redis='unhealthy'" in verdict.error
    assert not evaluate_health(503, HEALTHY).healthy
    missing = evaluate_health(200, {"status": "healthy", "checks": {"database": {"status": "healthy"}}})
    assert not missing.healthy and "missing checks: redis, externalServices" in missing.error
    assert not evaluate_health(200, {"status": "healthy"}).healthy
    assert not evaluate_health(200, ["healthy"]).healthy


def test_check_health_healthy(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/health", method="GET").respond_with_json(HEALTHY)

    result = check_health(requests.Session(), httpserver.url_for("/health"), timeout=2)

    assert result.healthy and result.status_code == 200 and result.status == "healthy" and result.error is None
    assert result.checks == {"database": "healthy", "redis": "healthy", "externalServices": "healthy"}
    assert result.latency_ms is not None and result.latency_ms >= 0
    assert len(httpserver.log) == 1 and httpserver.log[0][0].method == "GET"
    assert result.to_dict()["checks"]["redis"] == "healthy"


def test_check_health_with_http_client_does_not_retry(httpserver: HTTPServer) -> None:
    unhealthy = {"status": "unhealthy", "checks": {**HEALTHY["checks"], "database": {"status": "unhealthy"}}}
    httpserver.expect_request("/health").respond_with_json(unhealthy, status=503)
    http = HttpClient(httpserver.url_for("/"), policy=RetryPolicy(attempts=5, backoff=0.0))

    result = check_health(http, "/health", timeout=2)

    assert not result.healthy and result.status_code == 503 and result.checks["database"] == "unhealthy"
    assert result.error.startswith("HTTP 503")
    assert len(httpserver.log) == 1


def test_check_health_garbage_body(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/health").respond_with_data("<html>502 Bad Gateway</html>", status=200)
    result = check_health(requests.Session(), httpserver.url_for("/health"))
    assert not result.healthy and result.status_code == 200 and "not JSON" in result.error


def test_check_health_timeout(httpserver: HTTPServer) -> None:
    def slow(request: Request) -> Response:
        time.sleep(0.3)
        return Response(json.dumps(HEALTHY), content_type="application/json")

    httpserver.expect_request("/health").respond_with_handler(slow)
    result = check_health(requests.Session(), httpserver.url_for("/health"), timeout=0.05)
    assert not result.healthy and result.status_code is None and "timed out" in result.error


def test_check_health_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = check_health(requests.Session(), f"http://127.0.0.1:{port}/health", timeout=1)
    assert not result.healthy and result.status_code is None and "ConnectionError" in result.error


# -- functional checks ------------------------------------------------------------------------------


class FakePeopleBooster:
    """The API the functional checks use: login → token, create a diagnosis, save an answer, /users/me."""

    def __init__(self, server: HTTPServer) -> None:
        self.received: list[tuple[str, str, dict | None, str | None]] = []
        self.broken: set[str] = set()
        self.slow: dict[str, float] = {}
        server.expect_request(re.compile(r"^/api/v1/.*")).respond_with_handler(self.handle)

    def handle(self, request: Request) -> Response:
        body = request.get_json(silent=True)
        raw_path = request.environ.get("RAW_URI", request.path).split("?")[0]  # as sent, %2F not decoded
        self.received.append((request.method, raw_path, body, request.headers.get("Authorization")))
        if request.path in self.slow:
            time.sleep(self.slow[request.path])
        if request.path in self.broken:
            return Response(json.dumps({"error": "internal"}), status=500, content_type="application/json")
        authorized = request.headers.get("Authorization") == "Bearer tok-123"
        if request.path == "/api/v1/auth/login" and request.method == "POST":
            if body == {"email": "healthcheck@peoplebooster.com", "password": "s3cret"}:
                return Response(json.dumps({"access_token": "tok-123"}), content_type="application/json")
            return Response(json.dumps({"error": "bad credentials"}), status=401, content_type="application/json")
        if not authorized:
            return Response(json.dumps({"error": "unauthorized"}), status=401, content_type="application/json")
        if request.path == "/api/v1/diagnoses" and request.method == "POST":
            return Response(json.dumps({"id": "d/42"}), status=201, content_type="application/json")
        if raw_path == "/api/v1/diagnoses/d%2F42/answers/1" and request.method == "PUT":
            return Response(json.dumps({"saved": True}), content_type="application/json")
        if request.path == "/api/v1/users/me":
            return Response(json.dumps({"id": "u1"}), content_type="application/json")
        return Response("not found", status=404)


@pytest.fixture
def checks(runbook: Runbook) -> list[FunctionalCheck]:
    return list(runbook.environment("production").functional_checks)


@pytest.fixture
def api(httpserver: HTTPServer) -> FakePeopleBooster:
    return FakePeopleBooster(httpserver)


@pytest.fixture
def http(httpserver: HTTPServer) -> HttpClient:
    return HttpClient(httpserver.url_for("/"), policy=RetryPolicy(attempts=5, backoff=0.0, timeout=5))


SECRETS = {"functional_check_password": "s3cret"}


def test_functional_checks_all_pass(api: FakePeopleBooster, http: HttpClient, checks: list[FunctionalCheck]) -> None:
    results = run_functional_checks(http, checks, SECRETS)

    assert [(r.id, r.ok, r.status) for r in results] == [
        ("login", True, 200), ("diagnosis", True, 201), ("diagnosis_answer", True, 200), ("main_api", True, 200),
    ]
    assert all(isinstance(r, CheckResult) and r.elapsed_ms is not None and r.reason is None for r in results)
    assert [(m, p) for m, p, _, _ in api.received] == [
        ("POST", "/api/v1/auth/login"), ("POST", "/api/v1/diagnoses"),
        ("PUT", "/api/v1/diagnoses/d%2F42/answers/1"), ("GET", "/api/v1/users/me"),
    ]
    login_body, auth_headers = api.received[0][2], [a for _, _, _, a in api.received]
    assert login_body == {"email": "healthcheck@peoplebooster.com", "password": "s3cret"}
    assert auth_headers == [None, "Bearer tok-123", "Bearer tok-123", "Bearer tok-123"]
    assert api.received[2][2] == {"value": 3}
    assert results[0].to_dict()["label"] == "ログイン"
    assert "s3cret" not in repr([r.to_dict() for r in results])


def test_functional_check_failure_is_a_finding_not_retried(
    api: FakePeopleBooster, http: HttpClient, checks: list[FunctionalCheck]
) -> None:
    api.broken.add("/api/v1/diagnoses")

    results = run_functional_checks(http, checks, SECRETS)

    by_id = {r.id: r for r in results}
    assert by_id["login"].ok
    assert not by_id["diagnosis"].ok and by_id["diagnosis"].status == 500
    assert "expected HTTP 201, got 500" in by_id["diagnosis"].reason
    assert not by_id["diagnosis_answer"].ok and by_id["diagnosis_answer"].status is None
    assert "diagnosis_id was not captured" in by_id["diagnosis_answer"].reason
    assert by_id["main_api"].ok
    assert [p for _, p, _, _ in api.received].count("/api/v1/diagnoses") == 1  # no retry


def test_functional_check_bad_login(api: FakePeopleBooster, http: HttpClient, checks: list[FunctionalCheck]) -> None:
    results = run_functional_checks(http, checks, {"functional_check_password": "wrong"})
    assert [r.ok for r in results] == [False, False, False, False]
    assert results[0].status == 401 and "expected HTTP 200, got 401" in results[0].reason


def test_functional_check_too_slow(api: FakePeopleBooster, http: HttpClient, checks: list[FunctionalCheck]) -> None:
    fast_limit = [c.model_copy(update={"max_ms": 50}) if c.id == "main_api" else c for c in checks]
    api.slow["/api/v1/users/me"] = 0.2

    results = run_functional_checks(http, fast_limit, SECRETS)

    main = results[-1]
    assert not main.ok and main.status == 200 and main.max_ms == 50 and "limit 50 ms" in main.reason


def test_functional_checks_missing_secret_is_a_config_error(http: HttpClient, checks: list[FunctionalCheck]) -> None:
    with pytest.raises(ValueError, match="functional_check_password"):
        run_functional_checks(http, checks, {})
