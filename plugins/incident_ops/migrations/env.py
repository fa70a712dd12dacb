"""Alembic's environment for the incident ledger (run by Alembic, not imported).

The connection comes from `config.attributes["connection"]` when `incident_ops.migrations` runs a
command (inside its transaction and lock); otherwise from the `sqlalchemy.url` main option, with the
ledger's own engine settings. The version table is the ledger's own, `incident_ops_alembic_version`.
"""

from __future__ import annotations

from alembic import context

from incident_ops.migrations import context_options

config = context.config


def run_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True, **context_options())
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, **context_options())
        with context.begin_transaction():
            context.run_migrations()
        return
    from incident_ops.core.ledger import _create_engine

    engine = _create_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with engine.begin() as connection:
            context.configure(connection=connection, **context_options())
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
