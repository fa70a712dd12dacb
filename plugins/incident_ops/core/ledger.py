"""The incident ledger: every incident, its timestamps and its timeline of events.

SQLAlchemy Core on SQLite (the default, a file under `state/`) or PostgreSQL (`postgresql+psycopg://…`).
The database URL comes from the `url` argument, else `INCIDENT_OPS_LEDGER_URL`, else
`sqlite:///<project>/state/ledger.db`.

The schema is migrated with Alembic (`incident_ops.migrations`, version table
`incident_ops_alembic_version`; `incident-ops ledger upgrade` runs the migrations). The first time a
process opens a database (one check per engine, engines are cached per URL) it checks the revision:
an empty database is migrated to head on the spot (a new SQLite file: nothing to lose); a database
at an older revision, at one this release does not know, or with the tables but no revision (made by
`create_all` before migrations) is refused with `LedgerSchemaError`, whose message names
`incident-ops ledger upgrade`: the process stops at its start, not in the middle of an incident.

The database itself keeps the two promises the rest of the project relies on:

- **One open incident per fingerprint**: a partial unique index on `fingerprint` where the status is
  `open` or `mitigated`. `open_or_join` inserts, and when a concurrent caller won the race (the index
  refuses the second row) it joins that incident instead: an alarm storm makes one incident.
- **A replayed webhook delivery opens nothing**: `webhook_deliveries` keeps the key of every accepted
  delivery (an SNS MessageId, a signed alert's digest) with the incident it went to, until its replay
  window ends (`remember_delivery`, `delivery`); expired rows are deleted lazily.
- **A retried write is a no-op**: events carry an optional idempotency key (derived from the incident
  id and the step, never from a clock), unique per incident. Notices not tied to one incident (the
  on-call handoff of a slot) have a unique key of their own in the `notices` table.

Times are stored in UTC and returned as aware UTC datetimes; naive datetimes are refused. Every
method that changes something takes the time (`at`) as an input.

On SQLite every transaction starts with `BEGIN IMMEDIATE` (WAL journal, `busy_timeout`), so
concurrent writers, threads or processes, wait for each other instead of failing with
"database is locked".
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import StaticPool

from incident_ops.core.runbook import SEVERITIES

__all__ = [
    "DEFAULT_LEDGER_URL",
    "DEFAULT_POSTMORTEM_DUE_AFTER",
    "LEDGER_URL_ENV",
    "OPEN_STATUSES",
    "STATUSES",
    "IncidentNotFound",
    "Ledger",
    "LedgerError",
    "LedgerSchemaError",
    "deliveries_table",
    "dispose_engines",
    "events_table",
    "incidents_table",
    "metadata",
    "new_incident_id",
    "notices_table",
    "resolve_url",
]

PROJECT_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_LEDGER_URL = f"sqlite:///{PROJECT_ROOT / 'state' / 'ledger.db'}"
LEDGER_URL_ENV = "INCIDENT_OPS_LEDGER_URL"

STATUSES: tuple[str, ...] = ("open", "mitigated", "recovered", "closed")
OPEN_STATUSES: tuple[str, ...] = ("open", "mitigated")
# The runbook's Phase 5 deadline (復旧後24-48時間以内); callers may pass the runbook's own value.
DEFAULT_POSTMORTEM_DUE_AFTER = dt.timedelta(hours=48)

_JST = ZoneInfo("Asia/Tokyo")
_SQLITE_BUSY_TIMEOUT_SECONDS = 30
_OPEN_ATTEMPTS = 8
# remember_delivery deletes all expired webhook deliveries at most this often (per Ledger object).
_PURGE_EVERY = dt.timedelta(minutes=1)


class LedgerError(RuntimeError):
    """The ledger could not do what was asked (not a missing incident)."""


class LedgerSchemaError(LedgerError):
    """The database's schema is not this release's: run `incident-ops ledger upgrade` (the message says)."""


class IncidentNotFound(LookupError):
    """No incident with that id."""

    def __init__(self, incident_id: str) -> None:
        self.incident_id = incident_id
        super().__init__(f"no incident {incident_id!r} in the ledger")


# --- time -----------------------------------------------------------------------------------------


def _utc(value: Any, what: str) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise TypeError(f"{what}: expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what}: a time zone is required (naive datetime {value.isoformat()})")
    return value.astimezone(dt.UTC)


class UTCDateTime(sa.types.TypeDecorator):
    """Aware datetimes in, aware UTC datetimes out; SQLite (which keeps no offset) stores UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        value = _utc(value, "time")
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


# --- schema ---------------------------------------------------------------------------------------

metadata = sa.MetaData()

_TIME_COLUMNS = (
    "detected_at",
    "declared_at",
    "acknowledged_at",
    "escalated_at",
    "mitigated_at",
    "recovered_at",
    "postmortem_due_at",
    "postmortem_done_at",
)

incidents_table = sa.Table(
    "incidents",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("fingerprint", sa.String(512), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("severity", sa.String(2), nullable=False),
    sa.Column("symptom", sa.Text),
    sa.Column("title", sa.Text),
    sa.Column("scenario", sa.String(64)),
    sa.Column("service", sa.String(128)),
    sa.Column("environment", sa.String(64)),
    sa.Column("reporter", sa.String(256)),
    sa.Column("detected_at", UTCDateTime(), nullable=False),
    sa.Column("declared_at", UTCDateTime()),
    sa.Column("acknowledged_at", UTCDateTime()),
    sa.Column("acknowledged_by", sa.String(256)),
    sa.Column("escalated_at", UTCDateTime()),
    sa.Column("mitigated_at", UTCDateTime()),
    sa.Column("recovered_at", UTCDateTime()),
    sa.Column("postmortem_due_at", UTCDateTime()),
    sa.Column("postmortem_done_at", UTCDateTime()),
    sa.Column("postmortem_path", sa.Text),
    sa.Column("slack_channel", sa.String(128)),
    sa.Column("slack_channel_id", sa.String(64)),
    sa.Column("pagerduty_dedup_key", sa.String(256)),
    sa.Column("dag_run_id", sa.String(256)),
    sa.Column("occurrences", sa.Integer, nullable=False, default=1),
    sa.Column("cause", sa.Text),
    sa.Column("check_mode", sa.Boolean(create_constraint=False), nullable=False, default=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.CheckConstraint(
        "status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")",
        name="ck_incidents_status",
    ),
    sa.CheckConstraint(
        "severity IN (" + ", ".join(f"'{s}'" for s in SEVERITIES) + ")",
        name="ck_incidents_severity",
    ),
)

_open_condition = incidents_table.c.status.in_(OPEN_STATUSES)
# ONE OPEN INCIDENT PER FINGERPRINT, enforced by the database.
sa.Index(
    "uq_incidents_open_fingerprint",
    incidents_table.c.fingerprint,
    unique=True,
    sqlite_where=_open_condition,
    postgresql_where=_open_condition,
)
sa.Index("ix_incidents_status_detected", incidents_table.c.status, incidents_table.c.detected_at)
sa.Index("ix_incidents_detected", incidents_table.c.detected_at)

events_table = sa.Table(
    "incident_events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column(
        "incident_id",
        sa.String(64),
        sa.ForeignKey("incidents.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("actor", sa.String(256)),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("data", sa.JSON(none_as_null=True)),
    sa.Column("idempotency_key", sa.String(256)),
    sa.UniqueConstraint("incident_id", "idempotency_key", name="uq_incident_events_key"),
)
sa.Index("ix_incident_events_incident_at", events_table.c.incident_id, events_table.c.at)

# Posts that belong to a time slot rather than to an incident (e.g. `oncall:handoff:2026-11-02T10:00+09:00`):
# one row per key, so a re-run or a catch-up of the slot finds it and posts nothing.
notices_table = sa.Table(
    "notices",
    metadata,
    sa.Column("key", sa.String(256), primary_key=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("data", sa.JSON(none_as_null=True)),
)
sa.Index("ix_notices_at", notices_table.c.at)

# Webhook deliveries already accepted (`sns:<MessageId>`, `alert:<digest>`), kept until `expires_at`
# (the end of the delivery's replay window): a replay after its incident recovered opens nothing.
deliveries_table = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("key", sa.String(256), primary_key=True),
    sa.Column("seen_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("incident_id", sa.String(64)),
    sa.Column("status", sa.String(16)),
)
sa.Index("ix_webhook_deliveries_expires", deliveries_table.c.expires_at)

_COLUMNS = frozenset(incidents_table.c.keys())
# Set by the ledger itself, never through **fields.
_MANAGED = frozenset({"id", "created_at", "updated_at"})
# Given by name to open_or_join, or managed by it.
_OPEN_ARGS = frozenset(
    {"fingerprint", "status", "severity", "symptom", "title", "service", "environment", "reporter", "occurrences"}
)


# --- engines --------------------------------------------------------------------------------------

_ENGINES: dict[str, Engine] = {}
_SCHEMA_READY: set[str] = set()
_ENGINES_LOCK = threading.Lock()


def resolve_url(url: str | None = None) -> str:
    """The ledger's database URL: `url`, else `$INCIDENT_OPS_LEDGER_URL`, else the SQLite default."""
    return url or os.environ.get(LEDGER_URL_ENV) or DEFAULT_LEDGER_URL


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"event data is not JSON-serialisable: {type(value).__name__}")


def _json_dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=_json_default)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite must not emit its own BEGIN: `_sqlite_on_begin` does, as BEGIN IMMEDIATE.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_on_begin(connection: Connection) -> None:
    # Take the write lock at the start: a deferred transaction that reads and then writes fails at
    # once (SQLITE_BUSY, no waiting) when another writer got in between.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    options: dict[str, Any] = {"json_serializer": _json_dumps}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or parsed.query.get("mode") == "memory":
            options.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
        else:
            Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
            options["connect_args"] = {"timeout": _SQLITE_BUSY_TIMEOUT_SECONDS}
        engine = sa.create_engine(parsed, **options)
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        sa.event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    return sa.create_engine(parsed, pool_pre_ping=True, **options)


def _prepare_schema(engine: Engine, url: str) -> None:
    # Alembic is imported by the first engine of a process, not by `import incident_ops.core.ledger`.
    from incident_ops import migrations

    migrations.prepare(engine, url)


def _engine(url: str) -> Engine:
    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            engine = _ENGINES[url] = _create_engine(url)
        if url not in _SCHEMA_READY:
            # At head, else migrated (an empty database) or refused (LedgerSchemaError); a refused
            # URL is checked again on its next use (after `incident-ops ledger upgrade`).
            _prepare_schema(engine, url)
            _SCHEMA_READY.add(url)
        return engine


def dispose_engines() -> None:
    """Close every cached engine's connections (e.g. at process exit, or before dropping a database)."""
    with _ENGINES_LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
        _SCHEMA_READY.clear()
    for engine in engines:
        engine.dispose()


# --- helpers --------------------------------------------------------------------------------------


def new_incident_id(detected_at: dt.datetime) -> str:
    """`INC-YYYYMMDD-xxxxxx`: the JST date of detection and 6 random hex digits."""
    day = _utc(detected_at, "detected_at").astimezone(_JST)
    return f"INC-{day:%Y%m%d}-{secrets.token_hex(3)}"


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity)


def _check_severity(severity: Any) -> str:
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")
    return str(severity)


def _check_fields(fields: Mapping[str, Any], forbidden: frozenset[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, value in fields.items():
        if name not in _COLUMNS:
            raise ValueError(f"unknown incident field {name!r}")
        if name in forbidden:
            raise ValueError(f"the incident field {name!r} cannot be set here")
        if name in _TIME_COLUMNS and value is not None:
            value = _utc(value, name)
        elif name == "status" and value not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {value!r}")
        elif name == "severity":
            value = _check_severity(value)
        elif name == "check_mode":
            value = bool(value)
        values[name] = value
    return values


def _row(row: Any) -> dict[str, Any]:
    return dict(row._mapping)


_UNSET: Any = object()


# --- the ledger -----------------------------------------------------------------------------------


class Ledger:
    """The incident ledger at `url` (see `resolve_url`). Engines are shared per URL within a
    process and created on first use, when the schema's revision is checked (see the module's
    docstring: `LedgerSchemaError` when it is not this release's); `dispose()` closes the connections."""

    def __init__(
        self, url: str | None = None, *, postmortem_due_after: dt.timedelta = DEFAULT_POSTMORTEM_DUE_AFTER
    ) -> None:
        self.url = resolve_url(url)
        self.postmortem_due_after = postmortem_due_after
        self._purged_at: dt.datetime | None = None

    def __repr__(self) -> str:
        return f"Ledger({make_url(self.url).render_as_string(hide_password=True)!r})"

    @property
    def engine(self) -> Engine:
        return _engine(self.url)

    def dispose(self) -> None:
        """Close this URL's pooled connections and forget the cached engine (a later call reconnects)."""
        with _ENGINES_LOCK:
            engine = _ENGINES.pop(self.url, None)
            _SCHEMA_READY.discard(self.url)
        if engine is not None:
            engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    # reads ---------------------------------------------------------------------------------------

    def _fetch(self, conn: Connection, incident_id: str, *, lock: bool = False) -> dict[str, Any]:
        query = sa.select(incidents_table).where(incidents_table.c.id == incident_id)
        if lock:
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            raise IncidentNotFound(incident_id)
        return _row(row)

    def get(self, incident_id: str) -> dict[str, Any]:
        """The incident as a dict (aware UTC datetimes); `IncidentNotFound` when there is none."""
        with self._tx() as conn:
            return self._fetch(conn, incident_id)

    def find_open(self, fingerprint: str) -> dict[str, Any] | None:
        """The open (or mitigated) incident with this fingerprint, if any."""
        with self._tx() as conn:
            return self._open_by_fingerprint(conn, fingerprint)

    def _open_by_fingerprint(self, conn: Connection, fingerprint: str, *, lock: bool = False) -> dict[str, Any] | None:
        query = sa.select(incidents_table).where(incidents_table.c.fingerprint == fingerprint, _open_condition)
        if lock:
            query = query.with_for_update()
        row = conn.execute(query).first()
        return _row(row) if row is not None else None

    def _list(self, *conditions: Any, order_by: Any = None) -> list[dict[str, Any]]:
        order = order_by if order_by is not None else incidents_table.c.detected_at
        query = sa.select(incidents_table).where(*conditions).order_by(order, incidents_table.c.id)
        with self._tx() as conn:
            return [_row(row) for row in conn.execute(query)]

    def open_incidents(self) -> list[dict[str, Any]]:
        """Incidents still open or mitigated, oldest detection first."""
        return self._list(_open_condition)

    def recovered_pending_postmortem(self) -> list[dict[str, Any]]:
        """Recovered incidents with a postmortem due and not done yet, earliest due first."""
        return self._list(
            incidents_table.c.status == "recovered",
            incidents_table.c.postmortem_due_at.is_not(None),
            incidents_table.c.postmortem_done_at.is_(None),
            order_by=incidents_table.c.postmortem_due_at,
        )

    def incidents_between(self, start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
        """Incidents detected in [start, end), oldest first."""
        start, end = _utc(start, "start"), _utc(end, "end")
        return self._list(incidents_table.c.detected_at >= start, incidents_table.c.detected_at < end)

    def events(self, incident_id: str) -> list[dict[str, Any]]:
        """The incident's timeline, in time order (then in the order recorded)."""
        query = (
            sa.select(events_table)
            .where(events_table.c.incident_id == incident_id)
            .order_by(events_table.c.at, events_table.c.id)
        )
        with self._tx() as conn:
            self._fetch(conn, incident_id)
            return [_row(row) for row in conn.execute(query)]

    # writes --------------------------------------------------------------------------------------

    def _insert_event(
        self,
        conn: Connection,
        incident_id: str,
        *,
        at: dt.datetime,
        kind: str,
        message: str,
        actor: str | None = None,
        data: Any = None,
        idempotency_key: str | None = None,
    ) -> bool:
        values = {
            "incident_id": incident_id,
            "at": _utc(at, "at"),
            "kind": kind,
            "actor": actor,
            "message": message,
            "data": data,
            "idempotency_key": idempotency_key,
        }
        if idempotency_key is None:
            conn.execute(sa.insert(events_table).values(values))
            return True
        dialect = conn.dialect.name
        if dialect in ("postgresql", "sqlite"):
            if dialect == "postgresql":
                from sqlalchemy.dialects.postgresql import insert
            else:
                from sqlalchemy.dialects.sqlite import insert
            statement = (
                insert(events_table)
                .values(values)
                .on_conflict_do_nothing(index_elements=["incident_id", "idempotency_key"])
                .returning(events_table.c.id)
            )
            # rowcount is not reliable here (the driver may answer -1): a returned id means inserted.
            return conn.execute(statement).first() is not None
        try:
            with conn.begin_nested():
                conn.execute(sa.insert(events_table).values(values))
        except IntegrityError:
            return False
        return True

    def record_event(
        self,
        incident_id: str,
        *,
        at: dt.datetime,
        kind: str,
        message: str,
        actor: str | None = None,
        data: Any = None,
        idempotency_key: str | None = None,
    ) -> bool:
        """Append an event to the timeline. With `idempotency_key`, a second call with the same key
        records nothing and returns False."""
        if not kind:
            raise ValueError("kind is required")
        with self._tx() as conn:
            self._fetch(conn, incident_id)
            return self._insert_event(
                conn,
                incident_id,
                at=at,
                kind=kind,
                message=message,
                actor=actor,
                data=data,
                idempotency_key=idempotency_key,
            )

    def open_or_join(
        self,
        *,
        fingerprint: str,
        severity: str,
        symptom: str | None,
        title: str | None,
        service: str | None,
        environment: str | None,
        reporter: str | None,
        at: dt.datetime,
        occurrence_key: str | None = None,
        **fields: Any,
    ) -> tuple[dict[str, Any], bool]:
        """Open an incident for `fingerprint`, or join the open one: `(incident, created)`.

        A join counts an occurrence (`occurrences` + 1 and an `occurrence` event) and raises the
        severity when the new one is higher (P1 highest; a `severity_raised` event), never lowers it;
        `fields` are used only when opening. `occurrence_key` (e.g. the alarm message id) makes a
        redelivered report count once. `detected_at` defaults to `at`; `pagerduty_dedup_key` to the id.
        """
        if not fingerprint:
            raise ValueError("fingerprint is required")
        severity = _check_severity(severity)
        at = _utc(at, "at")
        extra = _check_fields(fields, _MANAGED | _OPEN_ARGS)
        for _ in range(_OPEN_ATTEMPTS):
            try:
                with self._tx() as conn:
                    current = self._open_by_fingerprint(conn, fingerprint, lock=True)
                    if current is not None:
                        return self._join(conn, current, severity, at, symptom, title, reporter, occurrence_key), False
                    values = {
                        "fingerprint": fingerprint,
                        "status": "open",
                        "severity": severity,
                        "symptom": symptom,
                        "title": title,
                        "service": service,
                        "environment": environment,
                        "reporter": reporter,
                        "detected_at": at,
                        "occurrences": 1,
                        "check_mode": False,
                        **extra,
                        "created_at": at,
                        "updated_at": at,
                    }
                    values["id"] = new_incident_id(values["detected_at"])
                    if not values.get("pagerduty_dedup_key"):
                        # Idempotency keys come from the incident id.
                        values["pagerduty_dedup_key"] = values["id"]
                    conn.execute(sa.insert(incidents_table).values(values))
                    self._insert_event(
                        conn,
                        values["id"],
                        at=at,
                        kind="opened",
                        actor=reporter,
                        message=title or symptom or fingerprint,
                        data={"severity": severity, "symptom": symptom, "service": service, "environment": environment},
                        idempotency_key=occurrence_key or "opened",
                    )
                    return self._fetch(conn, values["id"]), True
            except IntegrityError:
                # Another caller opened this fingerprint first (or the random id collided): retry,
                # which joins the incident that won.
                continue
        raise LedgerError(f"could not open or join an incident for {fingerprint!r} after {_OPEN_ATTEMPTS} attempts")

    def _join(
        self,
        conn: Connection,
        current: dict[str, Any],
        severity: str,
        at: dt.datetime,
        symptom: str | None,
        title: str | None,
        reporter: str | None,
        occurrence_key: str | None,
    ) -> dict[str, Any]:
        incident_id = current["id"]
        occurrence = current["occurrences"] + 1
        counted = self._insert_event(
            conn,
            incident_id,
            at=at,
            kind="occurrence",
            actor=reporter,
            message=f"同じ事象を再検知しました（{occurrence}件目）: {title or symptom or current['fingerprint']}",
            data={"severity": severity, "symptom": symptom, "title": title, "occurrence": occurrence},
            idempotency_key=occurrence_key,
        )
        if not counted:
            return current
        values: dict[str, Any] = {"occurrences": incidents_table.c.occurrences + 1, "updated_at": at}
        old = current["severity"]
        if _rank(severity) < _rank(old):
            values["severity"] = severity
            self._insert_event(
                conn,
                incident_id,
                at=at,
                kind="severity_raised",
                actor=reporter,
                message=f"障害レベルを{old}から{severity}に引き上げました",
                data={"from": old, "to": severity},
            )
        conn.execute(sa.update(incidents_table).where(incidents_table.c.id == incident_id).values(values))
        return self._fetch(conn, incident_id)

    def update(self, incident_id: str, at: dt.datetime, **fields: Any) -> dict[str, Any]:
        """Set incident fields (any column but `id`, `created_at`, `updated_at`); returns the incident."""
        at = _utc(at, "at")
        values = _check_fields(fields, _MANAGED)
        with self._tx() as conn:
            result = conn.execute(
                sa.update(incidents_table)
                .where(incidents_table.c.id == incident_id)
                .values({**values, "updated_at": at})
            )
            if result.rowcount == 0:
                raise IncidentNotFound(incident_id)
            return self._fetch(conn, incident_id)

    def _transition(
        self,
        incident_id: str,
        at: dt.datetime,
        condition: Any,
        values: dict[str, Any],
        *,
        kind: str,
        message: str,
        actor: str | None = None,
        data: Any = None,
    ) -> tuple[dict[str, Any], bool]:
        """Apply `values` when `condition` holds and record the event once (key = kind)."""
        at = _utc(at, "at")
        with self._tx() as conn:
            result = conn.execute(
                sa.update(incidents_table)
                .where(incidents_table.c.id == incident_id, condition)
                .values({**values, "updated_at": at})
            )
            if result.rowcount == 0:
                return self._fetch(conn, incident_id), False
            self._insert_event(
                conn, incident_id, at=at, kind=kind, message=message, actor=actor, data=data, idempotency_key=kind
            )
            return self._fetch(conn, incident_id), True

    def acknowledge(self, incident_id: str, at: dt.datetime, by: str) -> bool:
        """Record who started the response; only the first acknowledgement counts (True for it)."""
        if not by:
            raise ValueError("by (who acknowledged) is required")
        _, changed = self._transition(
            incident_id,
            at,
            incidents_table.c.acknowledged_at.is_(None),
            {"acknowledged_at": _utc(at, "at"), "acknowledged_by": by},
            kind="acknowledged",
            actor=by,
            message=f"{by}が対応を開始しました",
        )
        return changed

    def mark_mitigated(self, incident_id: str, at: dt.datetime) -> dict[str, Any]:
        """open → mitigated (still holds its fingerprint)."""
        incident, _ = self._transition(
            incident_id,
            at,
            incidents_table.c.status == "open",
            {"status": "mitigated", "mitigated_at": _utc(at, "at")},
            kind="mitigated",
            message="影響を緩和しました",
        )
        return incident

    def mark_recovered(
        self,
        incident_id: str,
        at: dt.datetime,
        cause: str | None = None,
        postmortem_due_at: dt.datetime | None = _UNSET,
    ) -> dict[str, Any]:
        """open/mitigated → recovered, which frees the fingerprint. The postmortem is due at
        `postmortem_due_at` (default: `at` + `postmortem_due_after`; None: no postmortem).
        A second call changes nothing."""
        at = _utc(at, "at")
        if postmortem_due_at is _UNSET:
            due = at + self.postmortem_due_after
        else:
            due = _utc(postmortem_due_at, "postmortem_due_at") if postmortem_due_at is not None else None
        values: dict[str, Any] = {"status": "recovered", "recovered_at": at, "postmortem_due_at": due}
        if cause:
            values["cause"] = cause
        incident, _ = self._transition(
            incident_id,
            at,
            _open_condition,
            values,
            kind="recovered",
            message=f"復旧しました（原因: {cause}）" if cause else "復旧しました",
            data={"cause": cause, "postmortem_due_at": due},
        )
        return incident

    def mark_postmortem_done(self, incident_id: str, at: dt.datetime, path: str | None = None) -> dict[str, Any]:
        """Record the finished postmortem (first call only) and where it is."""
        values: dict[str, Any] = {"postmortem_done_at": _utc(at, "at")}
        if path:
            values["postmortem_path"] = str(path)
        incident, _ = self._transition(
            incident_id,
            at,
            incidents_table.c.postmortem_done_at.is_(None),
            values,
            kind="postmortem_done",
            message=f"ポストモーテムを作成しました: {path}" if path else "ポストモーテムを作成しました",
            data={"path": str(path) if path else None},
        )
        return incident

    # notices (not tied to one incident) -------------------------------------------------------------

    def record_notice(self, key: str, at: dt.datetime, data: Any = None) -> bool:
        """Record that the notice `key` (e.g. one handoff slot) went out; `at` is the slot's time.
        False, recording nothing, when the key is already there."""
        if not key:
            raise ValueError("key is required")
        values = {"key": key, "at": _utc(at, "at"), "data": data}
        with self._tx() as conn:
            dialect = conn.dialect.name
            if dialect in ("postgresql", "sqlite"):
                if dialect == "postgresql":
                    from sqlalchemy.dialects.postgresql import insert
                else:
                    from sqlalchemy.dialects.sqlite import insert
                statement = (
                    insert(notices_table)
                    .values(values)
                    .on_conflict_do_nothing(index_elements=["key"])
                    .returning(notices_table.c.key)
                )
                return conn.execute(statement).first() is not None
            try:
                with conn.begin_nested():
                    conn.execute(sa.insert(notices_table).values(values))
            except IntegrityError:
                return False
            return True

    def notice(self, key: str) -> dict[str, Any] | None:
        """The recorded notice `key` ({key, at, data}), or None."""
        with self._tx() as conn:
            row = conn.execute(sa.select(notices_table).where(notices_table.c.key == key)).first()
        return _row(row) if row is not None else None

    def latest_notice(self, prefix: str, before: dt.datetime | None = None) -> dict[str, Any] | None:
        """The notice with the latest `at` among keys starting with `prefix` (and `at` < `before`)."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = sa.select(notices_table).where(notices_table.c.key.like(f"{escaped}%", escape="\\"))
        if before is not None:
            query = query.where(notices_table.c.at < _utc(before, "before"))
        query = query.order_by(notices_table.c.at.desc(), notices_table.c.key.desc()).limit(1)
        with self._tx() as conn:
            row = conn.execute(query).first()
        return _row(row) if row is not None else None

    def close(self, incident_id: str, at: dt.datetime) -> dict[str, Any]:
        """Any status → closed (frees the fingerprint; no more postmortem reminders)."""
        incident, _ = self._transition(
            incident_id,
            at,
            incidents_table.c.status != "closed",
            {"status": "closed"},
            kind="closed",
            message="インシデントをクローズしました",
        )
        return incident

    # webhook deliveries (replay protection) ---------------------------------------------------------

    def delivery(self, key: str, at: dt.datetime) -> dict[str, Any] | None:
        """The remembered delivery `key` whose window has not ended at `at`, else None:
        {key, seen_at, expires_at, incident_id, status, incident_status} (`incident_status` is the
        incident's status now, None when there is no incident)."""
        at = _utc(at, "at")
        query = (
            sa.select(deliveries_table, incidents_table.c.status.label("incident_status"))
            .select_from(
                deliveries_table.outerjoin(incidents_table, incidents_table.c.id == deliveries_table.c.incident_id)
            )
            .where(deliveries_table.c.key == key, deliveries_table.c.expires_at > at)
        )
        with self._tx() as conn:
            row = conn.execute(query).first()
        return _row(row) if row is not None else None

    def remember_delivery(
        self,
        key: str,
        at: dt.datetime,
        expires_at: dt.datetime,
        *,
        incident_id: str | None = None,
        status: str | None = None,
    ) -> bool:
        """Remember the delivery `key` (first seen `at`) until `expires_at`, with the incident it went
        to. False, changing nothing, when it is remembered already (the first delivery's row wins).
        Expired rows are deleted here: the key's own every time, all of them at most once a minute."""
        if not key:
            raise ValueError("key is required")
        at = _utc(at, "at")
        values = {"key": key, "seen_at": at, "expires_at": _utc(expires_at, "expires_at"),
                  "incident_id": incident_id, "status": status}
        purge_all = self._purged_at is None or not dt.timedelta(0) <= at - self._purged_at < _PURGE_EVERY
        with self._tx() as conn:
            expired = deliveries_table.c.expires_at <= at
            if purge_all:
                conn.execute(sa.delete(deliveries_table).where(expired))
                self._purged_at = at
            else:
                conn.execute(sa.delete(deliveries_table).where(deliveries_table.c.key == key, expired))
            dialect = conn.dialect.name
            if dialect in ("postgresql", "sqlite"):
                if dialect == "postgresql":
                    from sqlalchemy.dialects.postgresql import insert
                else:
                    from sqlalchemy.dialects.sqlite import insert
                statement = (
                    insert(deliveries_table)
                    .values(values)
                    .on_conflict_do_nothing(index_elements=["key"])
                    .returning(deliveries_table.c.key)
                )
                return conn.execute(statement).first() is not None
            try:
                with conn.begin_nested():
                    conn.execute(sa.insert(deliveries_table).values(values))
            except IntegrityError:
                return False
            return True

    def forget_deliveries(self, before: dt.datetime) -> int:
        """Delete the remembered deliveries whose window ended by `before`; how many."""
        with self._tx() as conn:
            result = conn.execute(sa.delete(deliveries_table).where(deliveries_table.c.expires_at <= _utc(before, "before")))
            self._purged_at = _utc(before, "before")
            return int(result.rowcount or 0)
