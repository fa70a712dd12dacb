"""The ledger's schema migrations (Alembic), shipped with the package and configured in code.

- The scripts are here: `env.py`, `script.py.mako` and `versions/` (`0001` is the baseline, the
  schema `metadata.create_all` made before migrations). No alembic.ini: `config(url)` builds the
  configuration, the URL comes from `core.ledger.resolve_url`.
- The version table is the ledger's own, `incident_ops_alembic_version` (never Airflow's
  `alembic_version`, should the ledger share a database).
- `upgrade(url)` is `incident-ops ledger upgrade`: a database created by `create_all` (the ledger's
  tables, no version table) is stamped at the baseline first (one from an older release, which lacks
  some of the baseline's tables, gets them from the baseline instead), then everything is upgraded to
  head, in one transaction (PostgreSQL: under an advisory lock, so two upgrades at once do not collide).
- `prepare(engine, url)` runs when a process first opens the ledger (`core.ledger` calls it once per
  engine): at head it returns; an empty database (none of the ledger's tables, no version) is
  upgraded to head on the spot (nothing to lose: a new SQLite file of a test or of the demo); any
  other state (no version, an older revision, one this release does not know) raises
  `LedgerSchemaError` naming the command to run, before anything reads or writes a table.
- `status(url)` is `incident-ops ledger status`.

A new revision (after a change to `core.ledger.metadata`), from the project root:

    .venv/bin/python -c "from alembic import command; from incident_ops.migrations import config; \\
        command.revision(config('sqlite:///state/ledger.db'), message='add x', autogenerate=True)"

against a ledger at head; check the file it writes (on SQLite use `op.batch_alter_table`), then name
it `000N_what.py` with `revision = "000N"`. tests/core/test_ledger_migrations.py checks that the
models and the migrations agree on SQLite and PostgreSQL.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import Connection, Engine

__all__ = [
    "BASELINE",
    "BASELINE_TABLES",
    "SCRIPT_LOCATION",
    "UPGRADE_COMMAND",
    "VERSION_TABLE",
    "config",
    "context_options",
    "head",
    "prepare",
    "refusal",
    "status",
    "upgrade",
]

SCRIPT_LOCATION = Path(__file__).resolve().parent
VERSION_TABLE = "incident_ops_alembic_version"
BASELINE = "0001"
# The tables of the baseline: a database with all of them and no version table is stamped at it.
BASELINE_TABLES = frozenset({"incidents", "incident_events", "notices", "webhook_deliveries"})
UPGRADE_COMMAND = "incident-ops ledger upgrade"
# pg_advisory_xact_lock key that serialises migrations (and the first-use check) across processes.
_LOCK_KEY = 0x1C1DE7


def context_options() -> dict[str, Any]:
    """`context.configure` options of env.py (and of any comparison against the models)."""
    from incident_ops.core.ledger import metadata

    return {
        "target_metadata": metadata,
        "version_table": VERSION_TABLE,
        "compare_type": True,
        "compare_server_default": True,
        # SQLite cannot ALTER most things: autogenerate writes batch operations (copy and move).
        "render_as_batch": True,
    }


def config(url: str | None = None, *, script_location: str | Path | None = None,
           connection: Connection | None = None) -> Config:
    """Alembic's configuration for the ledger at `url` (see `core.ledger.resolve_url`)."""
    from alembic.config import Config

    from incident_ops.core.ledger import resolve_url

    # Explicit: Config's default `stdout` is whatever sys.stdout was when alembic was first imported.
    cfg = Config(stdout=sys.stdout)
    cfg.set_main_option("script_location", str(script_location or SCRIPT_LOCATION))
    # configparser interpolates '%': a password may hold one.
    cfg.set_main_option("sqlalchemy.url", resolve_url(url).replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def _script(location: str) -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(config("sqlite://", script_location=location))


def _location(script_location: str | Path | None) -> str:
    return str(script_location or SCRIPT_LOCATION)


def head(script_location: str | Path | None = None) -> str:
    """This release's head revision."""
    heads = _script(_location(script_location)).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"the ledger's migrations have {len(heads)} heads ({', '.join(heads)}); merge them")
    return heads[0]


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    # SQLite: the ledger's engine begins every transaction with BEGIN IMMEDIATE (the write lock).


def _state(conn: Connection, script_location: str | Path | None) -> dict[str, Any]:
    """{current: [revisions] | None, head, state} where state is one of `current`, `empty`,
    `unversioned` (the ledger's tables without a version: created by create_all), `behind`, `unknown`."""
    from alembic.runtime.migration import MigrationContext
    from alembic.util import CommandError

    from incident_ops.core.ledger import metadata

    target = head(script_location)
    tables = set(sa.inspect(conn).get_table_names())
    if VERSION_TABLE not in tables:
        state = "unversioned" if tables & set(metadata.tables) else "empty"
        return {"current": None, "head": target, "state": state}
    current = list(MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_heads())
    if current == [target]:
        state = "current"
    elif not current:
        state = "unversioned" if tables & set(metadata.tables) else "empty"
    else:
        script = _script(_location(script_location))
        try:
            for revision in current:
                script.get_revision(revision)
            state = "behind"
        except CommandError:
            state = "unknown"
    return {"current": current or None, "head": target, "state": state}


def _display(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def refusal(url: str, found: dict[str, Any]) -> str:
    """Why a process does not use the ledger in the state `found` (see `_state`), and what to run."""
    where, target = _display(url), found["head"]
    current = ", ".join(found["current"] or ())
    run = f"run `{UPGRADE_COMMAND}` (`python -m incident_ops ledger upgrade` where the command is not installed)"
    if found["state"] == "unversioned":
        return (f"the incident ledger at {where} has tables but no migration revision (created before "
                f"migrations); this release needs revision {target}: {run}, which stamps it at the "
                f"baseline {BASELINE} and upgrades it")
    if found["state"] == "behind":
        return (f"the incident ledger at {where} is at revision {current}; this release needs {target}: "
                f"{run} before starting Airflow's processes")
    return (f"the incident ledger at {where} is at revision {current}, which this release does not know "
            f"(migrated by a newer release?); this release needs {target}: deploy the release that "
            f"matches the database (`incident-ops ledger status` shows its revision)")


def prepare(engine: Engine, url: str, *, script_location: str | Path | None = None) -> None:
    """Make sure the ledger at `engine` is at head before first use: an empty database is upgraded
    here; a database at another revision, or with the ledger's tables and no revision, is refused
    (`LedgerSchemaError`, naming `incident-ops ledger upgrade`)."""
    from incident_ops.core.ledger import LedgerSchemaError

    with engine.begin() as conn:
        _lock(conn)
        found = _state(conn, script_location)
        if found["state"] == "current":
            return
        if found["state"] != "empty":
            raise LedgerSchemaError(refusal(url, found))
        _run(conn, url, script_location, "upgrade", "head")


def _run(conn: Connection, url: str, script_location: str | Path | None, name: str, revision: str) -> None:
    from alembic import command

    cfg = config(url, script_location=script_location, connection=conn)
    getattr(command, name)(cfg, revision)


def upgrade(url: str | None = None, *, script_location: str | Path | None = None,
            revision: str = "head") -> dict[str, Any]:
    """`incident-ops ledger upgrade`: stamp a create_all database at the baseline, then upgrade to
    `revision` (head). {url, from, to, stamped, state}; `from` is None for a database without one."""
    from incident_ops.core.ledger import _create_engine, resolve_url

    url = resolve_url(url)
    engine = _create_engine(url)
    try:
        with engine.begin() as conn:
            _lock(conn)
            found = _state(conn, script_location)
            if found["state"] == "unknown":
                from incident_ops.core.ledger import LedgerSchemaError

                raise LedgerSchemaError(refusal(url, found))
            tables = set(sa.inspect(conn).get_table_names())
            stamped = found["state"] == "unversioned" and BASELINE_TABLES <= tables
            if stamped:
                _run(conn, url, script_location, "stamp", BASELINE)
            _run(conn, url, script_location, "upgrade", revision)
            after = _state(conn, script_location)
    finally:
        engine.dispose()
    return {"url": _display(url), "from": found["current"], "to": after["current"], "head": after["head"],
            "stamped": stamped, "state": found["state"]}


def status(url: str | None = None, *, script_location: str | Path | None = None) -> dict[str, Any]:
    """`incident-ops ledger status`: {url, current, head, state, up_to_date}; changes nothing."""
    from incident_ops.core.ledger import _create_engine, resolve_url

    url = resolve_url(url)
    parsed = make_url(url)
    database = parsed.database or ""
    if (parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:")
            and not Path(database).expanduser().exists()):
        # Not created by asking.
        return {"url": _display(url), "current": None, "head": head(script_location), "state": "empty",
                "up_to_date": False}
    engine = _create_engine(url)
    try:
        with engine.connect() as conn:
            found = _state(conn, script_location)
    finally:
        engine.dispose()
    return {"url": _display(url), **found, "up_to_date": found["state"] == "current"}
