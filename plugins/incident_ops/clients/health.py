"""The PeopleBooster health endpoint and the runbook's functional checks (Phase 4, 復旧確認).

`check_health` never raises for what the service answers (or fails to answer): a bad status, a
garbage body, a timeout or a refused connection are findings, reported as `healthy=False` with the
reason. Healthy means HTTP 200, `"status": "healthy"` and every check healthy (and the checks the
runbook's expected answer lists are all there):

    {"status": "healthy", "checks": {"database": {"status": "healthy"}, "redis": {...},
     "externalServices": {...}}}

`run_functional_checks` runs the runbook's data-driven checks in order, without retries (a failure is
a finding): `{name}` placeholders in a path come from earlier checks' `capture`, a `password_secret`
key in a body becomes `password` with the named secret's value, and a captured `token` is sent as a
Bearer token on the following requests.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests

from incident_ops.clients.http import HttpClient, HttpError
from incident_ops.core.runbook import FunctionalCheck

__all__ = [
    "EXPECTED_CHECKS",
    "CheckResult",
    "HealthResult",
    "check_health",
    "evaluate_health",
    "run_functional_checks",
]

# The checks in the runbook's expected answer (期待される応答).
EXPECTED_CHECKS: tuple[str, ...] = ("database", "redis", "externalServices")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class HealthResult:
    healthy: bool
    status_code: int | None
    status: str | None
    checks: dict[str, str | None] = field(default_factory=dict)
    latency_ms: float | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class CheckResult:
    id: str
    label: str
    ok: bool
    status: int | None
    elapsed_ms: float | None
    max_ms: int
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_status(value: Any) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("status")
    return value if isinstance(value, str) else None


def evaluate_health(
    status_code: int,
    body: Any,
    latency_ms: float | None = None,
    required_checks: Sequence[str] = EXPECTED_CHECKS,
) -> HealthResult:
    """The verdict on one answer of the health endpoint (pure)."""
    if not isinstance(body, Mapping):
        return HealthResult(False, status_code, None, {}, latency_ms, f"HTTP {status_code}: the body is not a JSON object")
    status = body.get("status") if isinstance(body.get("status"), str) else None
    raw_checks = body.get("checks")
    checks = {str(name): _check_status(value) for name, value in raw_checks.items()} if isinstance(raw_checks, Mapping) else {}
    problems: list[str] = []
    if status_code != 200:
        problems.append(f"HTTP {status_code}")
    if status != "healthy":
        problems.append(f"status is {status!r}")
    if not isinstance(raw_checks, Mapping):
        problems.append("no checks in the body")
    missing = [name for name in required_checks if name not in checks]
    if missing and isinstance(raw_checks, Mapping):
        problems.append(f"missing checks: {', '.join(missing)}")
    bad = [f"{name}={value!r}" for name, value in checks.items() if value != "healthy"]
    if bad:
        problems.append(f"unhealthy checks: {', '.join(bad)}")
    return HealthResult(not problems, status_code, status, checks, latency_ms, "; ".join(problems) or None)


def check_health(
    http_or_session: HttpClient | requests.Session,
    url: str,
    timeout: float = 5.0,
    *,
    required_checks: Sequence[str] = EXPECTED_CHECKS,
) -> HealthResult:
    """GET the health endpoint once (no retries: the caller counts consecutive results)."""
    if isinstance(http_or_session, HttpClient):
        once = http_or_session.once()  # its Session has no retries
        session, verify, full_url, headers = once.session, once.verify, once.url(url), dict(once.headers)
    else:
        session, verify, full_url, headers = http_or_session, True, url, {}
    started = time.perf_counter()
    try:
        response = session.get(full_url, timeout=timeout, verify=verify, headers=headers)
    except requests.Timeout as exc:
        elapsed = (time.perf_counter() - started) * 1000
        return HealthResult(False, None, None, {}, round(elapsed, 1), f"timed out after {timeout}s: {exc}")
    except requests.RequestException as exc:
        elapsed = (time.perf_counter() - started) * 1000
        return HealthResult(False, None, None, {}, round(elapsed, 1), f"{type(exc).__name__}: {exc}")
    latency = round((time.perf_counter() - started) * 1000, 1)
    try:
        body = response.json()
    except ValueError:
        snippet = response.text[:120].replace("\n", " ")
        return HealthResult(
            False, response.status_code, None, {}, latency,
            f"HTTP {response.status_code}: the body is not JSON: {snippet!r}",
        )
    return evaluate_health(response.status_code, body, latency, required_checks)


def _fill_path(path: str, captured: Mapping[str, str]) -> tuple[str, list[str]]:
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in captured:
            missing.append(name)
            return match.group(0)
        return quote(str(captured[name]), safe="")

    return _PLACEHOLDER.sub(replace, path), missing


def _body(json_body: Mapping[str, Any] | None, secrets: Mapping[str, str]) -> dict[str, Any] | None:
    if json_body is None:
        return None
    body = dict(json_body)
    secret_name = body.pop("password_secret", None)
    if secret_name is not None:
        body["password"] = secrets[secret_name]
    return body


def run_functional_checks(
    http: HttpClient,
    checks: Sequence[FunctionalCheck],
    secrets: Mapping[str, str],
) -> list[CheckResult]:
    """Run the checks in order against `http`'s base URL (the environment's api_base_url).

    Raises ValueError before sending anything when a check names a secret that `secrets` lacks (a
    configuration error, not a finding about the service).
    """
    for check in checks:
        name = (check.json_body or {}).get("password_secret")
        if name is not None and name not in secrets:
            raise ValueError(f"functional check {check.id!r} needs the secret {name!r}, which is not configured")
    once = http.once()
    captured: dict[str, str] = {}
    results: list[CheckResult] = []
    for check in checks:
        path, missing = _fill_path(check.path, captured)
        if missing:
            results.append(CheckResult(
                check.id, check.label, False, None, None, check.max_ms,
                f"not run: {', '.join(missing)} was not captured by an earlier check",
            ))
            continue
        headers = {"Authorization": f"Bearer {captured['token']}"} if "token" in captured else {}
        kwargs: dict[str, Any] = {"headers": headers}
        body = _body(check.json_body, secrets)
        if body is not None:
            kwargs["json"] = body
        started = time.perf_counter()
        try:
            response = once.request(check.method, path, expect=(check.expect_status,), **kwargs)
        except HttpError as exc:
            elapsed = round((time.perf_counter() - started) * 1000, 1)
            if exc.status is None:
                reason = f"no answer: {exc.body[:200]}"
            else:
                reason = f"expected HTTP {check.expect_status}, got {exc.status}: {exc.body[:200]}"
            results.append(CheckResult(check.id, check.label, False, exc.status, elapsed, check.max_ms, reason))
            continue
        elapsed = round((time.perf_counter() - started) * 1000, 1)
        reasons: list[str] = []
        if response.status_code != check.expect_status:
            reasons.append(f"expected HTTP {check.expect_status}, got {response.status_code}")
        if elapsed > check.max_ms:
            reasons.append(f"took {elapsed:.0f} ms, limit {check.max_ms} ms")
        if check.capture:
            try:
                data = response.json()
            except ValueError:
                data = None
            for name, key in check.capture.items():
                if isinstance(data, Mapping) and data.get(key) is not None:
                    captured[name] = str(data[key])
                else:
                    reasons.append(f"the answer has no {key!r} to capture as {name}")
        results.append(CheckResult(
            check.id, check.label, not reasons, response.status_code, elapsed, check.max_ms,
            "; ".join(reasons) or None,
        ))
    return results
