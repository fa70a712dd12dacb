"""The ledger's notices: idempotent records of posts tied to a time slot, not to one incident."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import sqlalchemy as sa

from incident_ops import migrations
from incident_ops.core.ledger import Ledger, events_table, incidents_table
from tests.flows.scheduled.conftest import jst


def test_record_notice_once(ledger: Ledger) -> None:
    key = "oncall:handoff:2026-11-02T10:00+09:00"
    assert ledger.notice(key) is None
    assert ledger.record_notice(key, jst(2026, 11, 2, 10), {"ts": "1.2", "late": False}) is True
    assert ledger.record_notice(key, jst(2026, 11, 2, 10), {"ts": "9.9"}) is False
    notice = ledger.notice(key)
    assert notice == {"key": key, "at": dt.datetime(2026, 11, 2, 1, 0, tzinfo=dt.UTC), "data": {"ts": "1.2", "late": False}}


def test_latest_notice_by_prefix_and_time(ledger: Ledger) -> None:
    for key, at in [
        ("oncall:business_hours:2026-11-02T09:00+09:00", jst(2026, 11, 2, 9)),
        ("oncall:handoff:2026-11-02T10:00+09:00", jst(2026, 11, 2, 10)),
        ("oncall_other:x", jst(2026, 11, 3, 10)),
        ("report:2026-11-02", jst(2026, 11, 9, 9)),
    ]:
        ledger.record_notice(key, at)
    assert ledger.latest_notice("oncall:")["key"] == "oncall:handoff:2026-11-02T10:00+09:00"
    assert ledger.latest_notice("oncall:", before=jst(2026, 11, 2, 10))["key"].startswith("oncall:business_hours")
    assert ledger.latest_notice("oncall:", before=jst(2026, 11, 2, 9)) is None
    assert ledger.latest_notice("oncall_")["key"] == "oncall_other:x"  # '_' is not a wildcard
    assert ledger.latest_notice("nothing:") is None


def test_a_ledger_from_before_notices_gets_the_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    incidents_table.metadata.create_all(engine, tables=[incidents_table, events_table])
    engine.dispose()
    # `incident-ops ledger upgrade` adds it (the ledger refuses the old schema until then).
    migrations.upgrade(url)
    ledger = Ledger(url)
    try:
        assert ledger.record_notice("oncall:x", jst(2026, 11, 2, 9)) is True
    finally:
        ledger.dispose()
