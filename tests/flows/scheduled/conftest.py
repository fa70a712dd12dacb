"""Fixtures of the scheduled-DAG tests: a ledger in tmp_path, a Slack recorder with IncidentSlack's
idempotency, a PagerDuty stand-in, and a helper that files incidents with known times."""

from __future__ import annotations

import datetime as dt
import itertools
import secrets
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from incident_ops.clients.pagerduty import PagerDutyError
from incident_ops.core.ledger import Ledger
from incident_ops.core.oncall import rotation_engineer
from incident_ops.core.runbook import Runbook

JST = ZoneInfo("Asia/Tokyo")


def jst(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=JST)


class RecordingSlack:
    """IncidentSlack's interface (post / upload_image): posts once per (channel, key), records all."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.uploads: list[dict[str, Any]] = []
        self.calls = 0
        self._ts = itertools.count(1)
        self._seen: dict[tuple[str, str], str] = {}

    def post(self, channel: str, text: str, *, idempotency_key: str, thread_ts: str | None = None,
             blocks: Any = None) -> dict[str, Any]:
        self.calls += 1
        if not idempotency_key:
            raise ValueError("idempotency_key is required")
        existing = self._seen.get((channel, idempotency_key))
        if existing is not None:
            return {"ts": existing, "channel": channel, "posted": False}
        ts = f"1767600000.{next(self._ts):06d}"
        self._seen[(channel, idempotency_key)] = ts
        self.messages.append({"channel": channel, "text": text, "key": idempotency_key, "ts": ts})
        return {"ts": ts, "channel": channel, "posted": True}

    def upload_image(self, channel: str, path_or_bytes: Any, filename: str, title: str, idempotency_key: str,
                     thread_ts: str | None = None) -> dict[str, Any]:
        existing = self._seen.get((channel, idempotency_key))
        if existing is not None:
            return {"file_id": "F1", "ts": existing, "channel": channel, "posted": False}
        data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
        ts = f"1767600000.{next(self._ts):06d}"
        self._seen[(channel, idempotency_key)] = ts
        self.uploads.append({"channel": channel, "filename": filename, "title": title, "key": idempotency_key, "bytes": data})
        return {"file_id": "F1", "ts": ts, "channel": channel, "posted": True}

    def to(self, channel: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["channel"] == channel]


class FakePager:
    """IncidentPager's REST reads: the schedule follows the roster unless `schedule` says otherwise."""

    def __init__(self, runbook: Runbook, *, schedule: Any = None, no_push: set[str] | None = None,
                 fail: bool = False) -> None:
        self.runbook = runbook
        self.schedule = schedule
        self.no_push = no_push or set()
        self.fail = fail
        self.asked: list[tuple[str, Any]] = []

    def oncall_users(self, schedule_id: str, at: dt.datetime) -> list[dict[str, Any]]:
        self.asked.append(("oncalls", at))
        if self.fail:
            raise PagerDutyError(f"GET /oncalls for schedule {schedule_id}", "server error", 503)
        person = self.schedule(at) if self.schedule else rotation_engineer(self.runbook, at)
        return [{"id": person.pagerduty_user_id, "name": person.name, "email": person.email}]

    def push_contact_methods(self, user_id: str) -> list[dict[str, Any]]:
        self.asked.append(("contact_methods", user_id))
        if self.fail:
            raise PagerDutyError(f"GET /users/{user_id}/contact_methods", "server error", 503)
        if user_id in self.no_push:
            return []
        return [{"id": "PN1", "type": "push_notification_contact_method", "label": "iPhone"}]


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield ledger
    ledger.dispose()


@pytest.fixture
def slack() -> RecordingSlack:
    return RecordingSlack()


@pytest.fixture
def pager(runbook: Runbook) -> FakePager:
    return FakePager(runbook)


@pytest.fixture
def services(slack: RecordingSlack, pager: FakePager) -> SimpleNamespace:
    return SimpleNamespace(slack=slack, pager=pager)


def add_incident(
    ledger: Ledger,
    *,
    severity: str,
    detected: dt.datetime,
    title: str = "ログインできない",
    declared: dt.datetime | None = None,
    acknowledged: dt.datetime | None = None,
    by: str = "田中 太郎",
    recovered: dt.datetime | None = None,
    channel: str | None = None,
    channel_id: str | None = None,
    check_mode: bool = False,
    required: tuple[str, ...] = ("P1", "P2"),
) -> dict[str, Any]:
    """An incident with known times, filed the way the incident DAG files it."""
    incident, _ = ledger.open_or_join(
        fingerprint=f"production:backend:test-{secrets.token_hex(4)}", severity=severity, symptom=title, title=title,
        service="backend", environment="production", reporter="test", at=detected, check_mode=check_mode,
    )
    incident_id = incident["id"]
    fields: dict[str, Any] = {}
    if declared:
        fields["declared_at"] = declared
    if channel:
        fields.update(slack_channel=channel, slack_channel_id=channel_id)
    if fields:
        ledger.update(incident_id, detected, **fields)
    if acknowledged:
        ledger.acknowledge(incident_id, acknowledged, by)
    if recovered:
        due = recovered + dt.timedelta(hours=48) if severity in required else None
        ledger.mark_recovered(incident_id, recovered, postmortem_due_at=due)
    return ledger.get(incident_id)
