"""Shared fixtures: the project's runbook, and the service-availability rule for PostgreSQL/Redis."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from incident_ops.core.runbook import Runbook, load_runbook

PROJECT_ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def service_reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip with a reason when the service is absent; in CI (CI=true) it must be there, so fail."""
    if service_reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if IN_CI:
        pytest.fail(f"{message}, and CI=true requires it")
    pytest.skip(message)


@pytest.fixture(scope="session")
def runbook() -> Runbook:
    return load_runbook()


@pytest.fixture
def postgres_url() -> str:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    return os.environ.get("INCIDENT_OPS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def _postgres_databases() -> Iterator[dict[str, str]]:
    """Test databases created this session ({url: admin url}); dropped at the end."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from incident_ops.core import ledger as ledger_module

    created: dict[str, str] = {}
    yield created
    ledger_module.dispose_engines()
    for url, admin_url in created.items():
        name = make_url(url).database
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                force = " WITH (FORCE)" if conn.dialect.server_version_info >= (13,) else ""
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"{force}'))
        finally:
            admin.dispose()


@pytest.fixture
def postgres_ledger_url(postgres_url: str, _postgres_databases: dict[str, str]) -> str:
    """A PostgreSQL ledger database of this test session's own (incident_ops_test_<pid>_<hex>),
    created once, emptied for each test, dropped at the end of the session."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from incident_ops.core.ledger import Ledger, events_table, incidents_table

    if not _postgres_databases:
        name = f"incident_ops_test_{os.getpid()}_{secrets.token_hex(4)}"
        admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        finally:
            admin.dispose()
        url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
        _postgres_databases[url] = postgres_url
    url = next(iter(_postgres_databases))
    with Ledger(url).engine.begin() as conn:
        conn.execute(events_table.delete())
        conn.execute(incidents_table.delete())
    return url


# Fixtures of the notification fan-out against local fakes (tests/notification_fakes.py), shared by
# tests/test_notify.py and tests/faults/.
from tests.notification_fakes import fake_pd, fake_slack, pager, pd_tls, slack_sleeps, smtp  # noqa: E402, F401
