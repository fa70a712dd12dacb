"""Baseline: the ledger's schema as `metadata.create_all` made it before migrations.

Databases created that way (tables present, no version table) are stamped at this revision by
`incident-ops ledger upgrade`, then upgraded. A database from an older release, which lacks some of
these tables (`notices`, `webhook_deliveries` came later), is upgraded through this revision instead:
it creates only the tables that are missing, each with its indexes, as `create_all` did. The values are written out, not imported: a revision is
frozen once released (the statuses and severities of today's `core.ledger` and `core.runbook`).

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN = "status IN ('open', 'mitigated')"


def _time() -> sa.DateTime:
    # core.ledger.UTCDateTime's column type (the TypeDecorator only converts values).
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "incidents" not in existing:
        _incidents()
    if "incident_events" not in existing:
        _incident_events()
    if "notices" not in existing:
        _notices()
    if "webhook_deliveries" not in existing:
        _webhook_deliveries()


def _incidents() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("fingerprint", sa.String(512), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(2), nullable=False),
        sa.Column("symptom", sa.Text()),
        sa.Column("title", sa.Text()),
        sa.Column("scenario", sa.String(64)),
        sa.Column("service", sa.String(128)),
        sa.Column("environment", sa.String(64)),
        sa.Column("reporter", sa.String(256)),
        sa.Column("detected_at", _time(), nullable=False),
        sa.Column("declared_at", _time()),
        sa.Column("acknowledged_at", _time()),
        sa.Column("acknowledged_by", sa.String(256)),
        sa.Column("escalated_at", _time()),
        sa.Column("mitigated_at", _time()),
        sa.Column("recovered_at", _time()),
        sa.Column("postmortem_due_at", _time()),
        sa.Column("postmortem_done_at", _time()),
        sa.Column("postmortem_path", sa.Text()),
        sa.Column("slack_channel", sa.String(128)),
        sa.Column("slack_channel_id", sa.String(64)),
        sa.Column("pagerduty_dedup_key", sa.String(256)),
        sa.Column("dag_run_id", sa.String(256)),
        sa.Column("occurrences", sa.Integer(), nullable=False),
        sa.Column("cause", sa.Text()),
        sa.Column("check_mode", sa.Boolean(create_constraint=False), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.CheckConstraint("status IN ('open', 'mitigated', 'recovered', 'closed')", name="ck_incidents_status"),
        sa.CheckConstraint("severity IN ('P1', 'P2', 'P3', 'P4')", name="ck_incidents_severity"),
    )
    # One open incident per fingerprint, enforced by the database (a partial unique index).
    op.create_index(
        "uq_incidents_open_fingerprint",
        "incidents",
        ["fingerprint"],
        unique=True,
        sqlite_where=sa.text(_OPEN),
        postgresql_where=sa.text(_OPEN),
    )
    op.create_index("ix_incidents_status_detected", "incidents", ["status", "detected_at"])
    op.create_index("ix_incidents_detected", "incidents", ["detected_at"])


def _incident_events() -> None:
    op.create_table(
        "incident_events",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("incident_id", sa.String(64), sa.ForeignKey("incidents.id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", _time(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(256)),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(none_as_null=True)),
        sa.Column("idempotency_key", sa.String(256)),
        sa.UniqueConstraint("incident_id", "idempotency_key", name="uq_incident_events_key"),
    )
    op.create_index("ix_incident_events_incident_at", "incident_events", ["incident_id", "at"])


def _notices() -> None:
    op.create_table(
        "notices",
        sa.Column("key", sa.String(256), primary_key=True),
        sa.Column("at", _time(), nullable=False),
        sa.Column("data", sa.JSON(none_as_null=True)),
    )
    op.create_index("ix_notices_at", "notices", ["at"])


def _webhook_deliveries() -> None:
    op.create_table(
        "webhook_deliveries",
        sa.Column("key", sa.String(256), primary_key=True),
        sa.Column("seen_at", _time(), nullable=False),
        sa.Column("expires_at", _time(), nullable=False),
        sa.Column("incident_id", sa.String(64)),
        sa.Column("status", sa.String(16)),
    )
    op.create_index("ix_webhook_deliveries_expires", "webhook_deliveries", ["expires_at"])


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("notices")
    op.drop_table("incident_events")
    op.drop_table("incidents")
