"""`python -m incident_ops ledger upgrade|status`: the ledger database's schema (Alembic).

- `ledger upgrade`: migrate the ledger to this release's head revision. A database created before
  migrations (the tables, no version) is stamped at the baseline first; a new one is created. Run by
  `airflow-init` (compose), `make demo` and the distributed stack before Airflow's processes start.
- `ledger status`: the database's revision and this release's head; exit status 1 when they differ.

The ledger is `--url`, else `INCIDENT_OPS_LEDGER_URL`, else the SQLite file under state/. Every
process that opens the ledger refuses a database that is not at head (see incident_ops.migrations).
"""

from __future__ import annotations

import argparse
from typing import Any

from incident_ops.cli.main import EXIT_FAILED, EXIT_OK, CommandFailed, command
from incident_ops.core.runbook import Runbook

__all__ = ["ledger"]

Payload = dict[str, Any]


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("upgrade", "status"),
                        help="upgrade: migrate to this release's revision; status: the revision now and the head")
    parser.add_argument("--url", default=None, metavar="URL",
                        help="the ledger's database URL (default: $INCIDENT_OPS_LEDGER_URL, else state/ledger.db)")


def _revision(revisions: list[str] | None) -> str:
    return ", ".join(revisions) if revisions else "none"


def _upgrade_text(report: Payload) -> str:
    where, head = report["url"], report["head"]
    if report["state"] == "current":
        return f"ledger {where}: already at {head} (head)"
    if report["state"] == "empty":
        return f"ledger {where}: created at {head} (head)"
    if report["stamped"]:
        return f"ledger {where}: stamped at the baseline (created before migrations), upgraded to {head} (head)"
    return f"ledger {where}: upgraded {_revision(report['from'])} → {head} (head)"


def _status_text(report: Payload) -> str:
    from incident_ops.migrations import refusal

    line = f"ledger {report['url']}: revision {_revision(report['current'])}, head {report['head']}"
    if report["up_to_date"]:
        return f"{line}: up to date"
    if report["state"] == "empty":
        return f"{line}: empty (the first process to open it, or `incident-ops ledger upgrade`, creates it)"
    return f"{line}: {report['state']}\n  {refusal(report['url'], report)}"


@command("ledger", "the ledger database's schema: upgrade it to this release's revision, or show its status",
         _configure)
def ledger(args: argparse.Namespace, runbook: Runbook) -> tuple[Payload, str, int]:
    # Imported here: SQLAlchemy and Alembic are for this command, not for the whole command line.
    from sqlalchemy.exc import SQLAlchemyError

    from incident_ops import migrations
    from incident_ops.core.ledger import LedgerSchemaError

    try:
        if args.action == "upgrade":
            report = migrations.upgrade(args.url)
            return report, _upgrade_text(report), EXIT_OK
        report = migrations.status(args.url)
    except LedgerSchemaError as exc:
        raise CommandFailed(str(exc)) from exc
    except SQLAlchemyError as exc:
        # e.g. the database is unreachable: one line that says why, not a traceback.
        raise CommandFailed(f"ledger {args.action}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
    return report, _status_text(report), EXIT_OK if report["up_to_date"] else EXIT_FAILED
