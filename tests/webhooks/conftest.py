"""Fixtures: signing certificates made here, ledgers (SQLite file per test; a PostgreSQL database of
this session's own, emptied per test), and the webhook app with a counting trigger and a
certificate fetcher that serves the test certificate (and counts its fetches)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sandbox.server import Sandbox, start_sandbox

from incident_ops.core.ledger import Ledger, deliveries_table, events_table, incidents_table
from incident_ops.core.runbook import Runbook
from incident_ops.webhooks.app import create_app
from incident_ops.webhooks.config import WebhookConfig

from .helpers import CERT_URL, NOW, SECRET, TOPIC, CountingTrigger, SigningCert


@pytest.fixture(scope="package")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One in-process sandbox (Slack, PagerDuty over HTTPS, SNS) for this package; no evaluator ticks."""
    with start_sandbox(tmp_path_factory.mktemp("webhooks-sandbox"), tick_seconds=3600, environments=["production"]) as sb:
        yield sb


@pytest.fixture(scope="session")
def cert() -> SigningCert:
    return SigningCert.make()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return request.getfixturevalue("postgres_ledger_url")


@dataclass
class CertServer:
    """Serves PEMs by URL and counts what was asked."""

    pems: dict[str, bytes] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def __call__(self, url: str) -> bytes:
        self.asked.append(url)
        if url not in self.pems:
            from incident_ops.webhooks.sns import SnsError

            raise SnsError(403, "certificate_unavailable", "the SigningCertURL answered HTTP 404")
        return self.pems[url]


@dataclass
class Visits:
    urls: list[str] = field(default_factory=list)
    status: int = 200
    threads: list[str] = field(default_factory=list)  # where each visit ran

    def __call__(self, url: str) -> int:
        self.urls.append(url)
        self.threads.append(threading.current_thread().name)
        return self.status


@dataclass
class Harness:
    client: TestClient
    trigger: CountingTrigger
    ledger: Ledger
    certs: CertServer
    visits: Visits
    config: WebhookConfig
    clock: list[Any]
    app: Any

    def incidents(self) -> list[dict[str, Any]]:
        with self.ledger.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(incidents_table))]

    def event_count(self) -> int:
        with self.ledger.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(events_table)).scalar_one()

    def audit(self) -> list[dict[str, Any]]:
        return self.app.state.services().audit.entries()


@pytest.fixture
def make_harness(runbook: Runbook, cert: SigningCert, tmp_path: Path) -> Callable[..., Harness]:
    def make(ledger_url: str | None = None, *, secret: str | None = SECRET, trigger: Any = None,
             **config: Any) -> Harness:
        settings = {"topics": {TOPIC: "production"}, "audit_log": tmp_path / "audit.jsonl", **config}
        cfg = WebhookConfig(**settings)
        certs = CertServer({CERT_URL: cert.pem})
        visits = Visits()
        clock = [NOW]
        counting = trigger or CountingTrigger()
        ledger = Ledger(ledger_url or f"sqlite:///{tmp_path / 'ledger.db'}")
        with ledger.engine.begin() as conn:  # a PostgreSQL test database is shared by the session
            conn.execute(deliveries_table.delete())
        app = create_app(config=cfg, trigger=counting, secret=lambda: secret, fetch=certs, visit=visits,
                         clock=lambda: clock[0], runbook=runbook, ledger=ledger)
        return Harness(TestClient(app, raise_server_exceptions=False), counting, ledger, certs, visits, cfg, clock, app)

    return make


@pytest.fixture
def harness(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness()
