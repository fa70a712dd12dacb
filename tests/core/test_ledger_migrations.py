"""The ledger's migrations (incident_ops.migrations) on SQLite and PostgreSQL: a new database is
migrated on first use, a create_all database is stamped, a database at an older revision is refused
by every process until `incident-ops ledger upgrade` upgrades it in place with its data, and the
models and the migrations agree (Alembic's autogenerate comparison, `alembic check`)."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import make_url

from incident_ops import migrations
from incident_ops.cli.main import main as cli
from incident_ops.core import ledger as ledger_module
from incident_ops.core.ledger import (
    Ledger,
    LedgerSchemaError,
    deliveries_table,
    events_table,
    incidents_table,
    metadata,
    notices_table,
)

T0 = dt.datetime(2026, 11, 20, 1, 0, tzinfo=dt.UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """A factory of empty databases (SQLite files; PostgreSQL scratch databases, dropped afterwards)."""
    created: list[str] = []
    admin_url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None

    def make() -> str:
        if admin_url is None:
            url = f"sqlite:///{tmp_path / f'ledger-{len(created)}.db'}"
        else:
            name = f"incident_ops_migrations_{os.getpid()}_{secrets.token_hex(4)}"
            admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
            try:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            finally:
                admin.dispose()
            url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        created.append(url)
        return url

    yield make
    for url in created:
        Ledger(url).dispose()
    if admin_url is not None:
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                for url in created:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
        finally:
            admin.dispose()


@pytest.fixture
def database(new_database: Callable[[], str]) -> str:
    return new_database()



def engine_for(url: str) -> sa.Engine:
    """A plain engine (not the ledger's: that one checks the revision)."""
    return sa.create_engine(url)


def table_names(url: str) -> set[str]:
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            return set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()


def differences(url: str) -> list[Any]:
    """Alembic's autogenerate comparison of the database at `url` with the models (empty: they agree)."""
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts=migrations.context_options())
            return compare_metadata(context, metadata)
    finally:
        engine.dispose()


def create_all_database(url: str, tables: list[sa.Table] | None = None) -> None:
    """A ledger as the releases before migrations made it (`metadata.create_all`), with one incident,
    its event, a notice and a delivery."""
    engine = engine_for(url)
    try:
        metadata.create_all(engine, tables=tables)
        with engine.begin() as conn:
            conn.execute(sa.insert(incidents_table).values(
                id="INC-20261120-000001", fingerprint="production:backend:login_failure", status="recovered",
                severity="P1", symptom="ログインできない", detected_at=T0, recovered_at=T0 + dt.timedelta(hours=2),
                occurrences=2, check_mode=False, created_at=T0, updated_at=T0))
            conn.execute(sa.insert(events_table).values(
                incident_id="INC-20261120-000001", at=T0, kind="opened", message="ログインできない",
                data={"severity": "P1"}, idempotency_key="opened"))
            if tables is None:
                conn.execute(sa.insert(notices_table).values(key="oncall:handoff:x", at=T0, data={"a": 1}))
                conn.execute(sa.insert(deliveries_table).values(
                    key="sns:m-1", seen_at=T0, expires_at=T0 + dt.timedelta(days=1), incident_id="INC-20261120-000001"))
    finally:
        engine.dispose()


def fill(ledger: Ledger) -> str:
    """Rows in every table, written through the ledger; the incident's id."""
    incident, _ = ledger.open_or_join(fingerprint="production:backend:error_rate_high", severity="P2",
                                      symptom="エラー率が高い", title="5xx", service="backend",
                                      environment="production", reporter="cloudwatch", at=T0)
    ledger.record_event(incident["id"], at=T0 + dt.timedelta(minutes=1), kind="notified", message="paged",
                        data={"pagerduty": "ok"}, idempotency_key="notified")
    ledger.mark_recovered(incident["id"], T0 + dt.timedelta(hours=1), cause="deploy")
    ledger.record_notice("oncall:handoff:2026-11-20T10:00+09:00", T0, {"to": "sato"})
    ledger.remember_delivery("sns:m-2", T0, T0 + dt.timedelta(days=1), incident_id=incident["id"], status="opened")
    return incident["id"]


LATER_REVISION = '''\
"""Add incidents.runbook_version (a later release, in a test)."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("incidents", sa.Column("runbook_version", sa.String(32), nullable=True))
    op.create_index("ix_incidents_runbook_version", "incidents", ["runbook_version"])


def downgrade():
    op.drop_index("ix_incidents_runbook_version", table_name="incidents")
    op.drop_column("incidents", "runbook_version")
'''


def later_release(tmp_path: Path) -> Path:
    """This package's migration scripts plus a revision 0002 that adds a column."""
    scripts = tmp_path / "migrations"
    shutil.copytree(migrations.SCRIPT_LOCATION, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "0002_runbook_version.py").write_text(LATER_REVISION)
    return scripts


def reflected_schema(url: str) -> dict[str, Any]:
    """What the database says about the ledger's tables, comparable across two databases."""
    engine = engine_for(url)
    schema: dict[str, Any] = {}
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            for table in sorted(metadata.tables):
                indexes = []
                for index in inspector.get_indexes(table):
                    options = sorted((key, str(value)) for key, value in index.get("dialect_options", {}).items())
                    indexes.append((index["name"], tuple(index["column_names"]), bool(index["unique"]), options))
                schema[table] = {
                    "columns": [(c["name"], str(c["type"]), c["nullable"], c.get("default"), c.get("autoincrement"))
                                for c in inspector.get_columns(table)],
                    "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
                    "foreign_keys": sorted((tuple(fk["constrained_columns"]), fk["referred_table"],
                                            tuple(fk["referred_columns"]), fk.get("options", {}).get("ondelete"))
                                           for fk in inspector.get_foreign_keys(table)),
                    "indexes": sorted(indexes),
                    "unique": sorted((u["name"], tuple(u["column_names"]))
                                     for u in inspector.get_unique_constraints(table)),
                    "checks": sorted((c["name"], " ".join(c["sqltext"].split()))
                                     for c in inspector.get_check_constraints(table)),
                }
            if conn.dialect.name == "sqlite":
                # The partial index's WHERE clause is only in the SQL that SQLite keeps.
                rows = conn.execute(sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"))
                schema["sqlite_index_sql"] = sorted((name, " ".join(sql.split())) for name, sql in rows)
    finally:
        engine.dispose()
    return schema


# --- a new database -------------------------------------------------------------------------------


def test_a_new_database_is_migrated_to_head_on_first_use(database: str) -> None:
    ledger = Ledger(database)
    incident_id = fill(ledger)
    assert ledger.get(incident_id)["status"] == "recovered"
    tables = table_names(database)
    assert migrations.VERSION_TABLE in tables and "alembic_version" not in tables, "its own version table"
    assert set(metadata.tables) <= tables
    report = migrations.status(database)
    assert (report["current"], report["state"], report["up_to_date"]) == ([migrations.head()], "current", True)


def test_models_and_migrations_agree(database: str) -> None:
    migrations.upgrade(database)
    assert differences(database) == []
    # `alembic check` as the command runs it: through env.py, with the configuration's URL.
    command.check(migrations.config(database))


def test_the_baseline_builds_what_create_all_built(new_database: Callable[[], str]) -> None:
    by_create_all, by_migrations = new_database(), new_database()
    create_all_database(by_create_all)
    migrations.upgrade(by_migrations)
    assert reflected_schema(by_migrations) == reflected_schema(by_create_all)


# --- databases from before migrations -----------------------------------------------------------


def test_a_create_all_database_is_refused_then_stamped_and_works(database: str, capsys) -> None:
    create_all_database(database)
    with pytest.raises(LedgerSchemaError, match="incident-ops ledger upgrade") as refused:
        Ledger(database).get("INC-20261120-000001")
    assert "no migration revision" in str(refused.value)
    assert cli(["ledger", "status", "--url", database]) == 1
    assert "unversioned" in capsys.readouterr().out

    assert cli(["ledger", "upgrade", "--url", database]) == 0
    assert "stamped at the baseline" in capsys.readouterr().out
    ledger = Ledger(database)
    incident = ledger.get("INC-20261120-000001")
    assert (incident["status"], incident["occurrences"], incident["recovered_at"]) == (
        "recovered", 2, T0 + dt.timedelta(hours=2))
    assert [event["kind"] for event in ledger.events("INC-20261120-000001")] == ["opened"]
    assert ledger.notice("oncall:handoff:x")["data"] == {"a": 1}
    assert ledger.delivery("sns:m-1", T0)["incident_status"] == "recovered"
    fill(ledger)
    assert migrations.status(database)["up_to_date"]
    assert differences(database) == []


def test_a_ledger_from_an_older_release_gets_the_tables_it_lacks(database: str) -> None:
    # Before `notices` and `webhook_deliveries`: not stamped; the baseline creates what is missing.
    create_all_database(database, tables=[incidents_table, events_table])
    with pytest.raises(LedgerSchemaError, match="incident-ops ledger upgrade"):
        Ledger(database).get("INC-20261120-000001")
    report = migrations.upgrade(database)
    assert (report["state"], report["stamped"], report["to"]) == ("unversioned", False, [migrations.head()])
    assert Ledger(database).get("INC-20261120-000001")["severity"] == "P1"
    assert Ledger(database).record_notice("oncall:x", T0) is True
    assert differences(database) == []


# --- a later release: refused until upgraded, then upgraded in place with the data ----------------


def test_a_database_at_the_baseline_with_data_upgrades_to_head(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    ledger = Ledger(database)
    incident_id = fill(ledger)
    events_before = ledger.events(incident_id)
    ledger.dispose()
    assert migrations.status(database)["current"] == [migrations.BASELINE]

    # The release with revision 0002 starts: every process refuses the database and names the command.
    monkeypatch.setattr(migrations, "SCRIPT_LOCATION", later_release(tmp_path))
    assert migrations.head() == "0002"
    with pytest.raises(LedgerSchemaError) as refused:
        Ledger(database).get(incident_id)
    message = str(refused.value)
    assert "is at revision 0001; this release needs 0002" in message
    assert "`incident-ops ledger upgrade`" in message
    assert cli(["ledger", "status", "--url", database, "--json"]) == 1
    capsys.readouterr()

    assert cli(["ledger", "upgrade", "--url", database]) == 0
    assert "upgraded 0001 → 0002 (head)" in capsys.readouterr().out
    engine = engine_for(database)
    try:
        with engine.connect() as conn:
            columns = {column["name"] for column in sa.inspect(conn).get_columns("incidents")}
            rows = conn.execute(sa.text("SELECT id, runbook_version FROM incidents")).all()
    finally:
        engine.dispose()
    assert "runbook_version" in columns
    assert [tuple(row) for row in rows] == [(incident_id, None)], "the data is kept, the new column is empty"
    ledger = Ledger(database)  # the refused URL is checked again on its next use, and passes now
    assert ledger.get(incident_id)["cause"] == "deploy"
    assert ledger.events(incident_id) == events_before
    assert ledger.delivery("sns:m-2", T0)["status"] == "opened"
    assert migrations.status(database)["current"] == ["0002"]


def test_a_revision_this_release_does_not_know_is_refused(database: str, capsys) -> None:
    migrations.upgrade(database)
    engine = engine_for(database)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE {migrations.VERSION_TABLE} SET version_num = '0099'"))
    finally:
        engine.dispose()
    with pytest.raises(LedgerSchemaError, match="at revision 0099, which this release does not know"):
        Ledger(database).get("INC-x")
    assert cli(["ledger", "upgrade", "--url", database]) == 1
    assert "does not know" in capsys.readouterr().err


def test_the_revision_is_checked_once_per_engine(database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    prepare = migrations.prepare

    def counted(engine: sa.Engine, url: str, **options: Any) -> None:
        calls.append(url)
        prepare(engine, url, **options)

    monkeypatch.setattr(migrations, "prepare", counted)
    for _ in range(3):
        Ledger(database).find_open("production:backend:x")
    assert calls == [database]
    Ledger(database).dispose()
    Ledger(database).find_open("production:backend:x")
    assert calls == [database, database]


def test_the_version_table_is_the_ledgers_own() -> None:
    assert migrations.VERSION_TABLE == "incident_ops_alembic_version"
    assert migrations.context_options()["version_table"] == migrations.VERSION_TABLE
    assert migrations.context_options()["target_metadata"] is ledger_module.metadata
