"""The sandbox's own memory: faults, the record of every request, and what each break left behind.

Everything here is guarded by the context's lock (the HTTP and HTTPS servers run in two threads).
AWS state is NOT kept here: it lives in moto and is read back on each request (see health.py).
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["BreakInfo", "Faults", "FaultsError", "Records", "ScenarioMemory", "iso", "SCENARIOS"]

SCENARIOS: tuple[str, ...] = ("deploy", "resource", "database", "external", "security")


def iso(ts: float) -> str:
    """Epoch seconds as ISO 8601 UTC with a Z (the format Slack/GitHub/Sentry/PagerDuty use)."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FaultsError(ValueError):
    pass


@dataclass
class Faults:
    """Failures switched on for tests and drills (POST /_sandbox/faults)."""

    slack: int | None = None
    slack_count: int | None = None
    pagerduty: int | None = None
    pagerduty_count: int | None = None
    health_delay: float = 0.0
    health_garbage: bool = False
    github_conclusion: str = "success"
    github_delay: float = 3.0
    pagerduty_no_push_user: str | None = None
    # What the external provider's status page says, whatever the provider's real state: "none"
    # (operational while the provider fails us: the 待機 path), "minor", "major", "critical"; null:
    # the truth (major during the external outage, none otherwise).
    status_page: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def update(self, changes: dict[str, Any]) -> None:
        with self._lock:
            self._update(dict(changes))

    def _update(self, changes: dict[str, Any]) -> None:
        known = set(self.to_dict())
        unknown = sorted(set(changes) - known)
        if unknown:
            raise FaultsError(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        for key in ("slack", "pagerduty"):
            if key in changes and changes[key] is not None:
                status = int(changes[key])
                if not 400 <= status <= 599:
                    raise FaultsError(f"{key} must be null or an HTTP error status (429, 500, ...), got {status}")
                changes[key] = status
        if changes.get("status_page") not in (None, "none", "minor", "major", "critical"):
            raise FaultsError("status_page must be null or one of none, minor, major, critical")
        if changes.get("github_conclusion", "success") not in ("success", "failure"):
            raise FaultsError("github_conclusion must be 'success' or 'failure'")
        for key in ("slack_count", "pagerduty_count"):
            if changes.get(key) is not None and int(changes[key]) < 1:
                raise FaultsError(f"{key} must be null (until cleared) or >= 1")
        for key, value in changes.items():
            if key in ("health_delay", "github_delay"):
                value = max(float(value or 0.0), 0.0)
            elif key == "health_garbage":
                value = bool(value)
            setattr(self, key, value)

    def take(self, service: str) -> int | None:
        """The status to fail this request of `service` with (counting it down), or None."""
        with self._lock:
            return self._take(service)

    def _take(self, service: str) -> int | None:
        status = getattr(self, service)
        if status is None:
            return None
        count_key = f"{service}_count"
        count = getattr(self, count_key)
        if count is not None:
            count -= 1
            setattr(self, count_key, count if count > 0 else None)
            if count <= 0:
                setattr(self, service, None)
        return status

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}


class Records:
    """Every request a stand-in received, as received (bounded)."""

    def __init__(self, limit: int = 20000) -> None:
        self._items: deque[dict[str, Any]] = deque(maxlen=limit)
        self._seq = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, record: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            record = {"seq": next(self._seq), **record}
            self._items.append(record)
            return record

    def list(self, service: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self._items if (service is None or r["service"] == service) and r["seq"] > since]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


@dataclass
class BreakInfo:
    scenario: str
    at: float
    detail: dict[str, Any] = field(default_factory=dict)
    healed_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "at": iso(self.at),
            "detail": self.detail,
            "healed_at": iso(self.healed_at) if self.healed_at else None,
        }


@dataclass
class ScenarioMemory:
    """What the sandbox remembers about the breaks (the AWS side of a break is in moto)."""

    breaks: dict[str, BreakInfo] = field(default_factory=dict)
    failed_writer: str | None = None
    external_outage: bool = False
    resource_need: int | None = None
    deploy_counter: int = 0
    # alarm name -> scenarios that put it in ALARM (the evaluator returns it to OK once they heal)
    owned_alarms: dict[str, set[str]] = field(default_factory=dict)

    def clear(self) -> None:
        self.breaks.clear()
        self.failed_writer = None
        self.external_outage = False
        self.resource_need = None
        self.owned_alarms.clear()

    def now(self) -> float:
        return time.time()
