"""The incident ledger on SQLite and on PostgreSQL: open/join, severity, idempotent events, the
one-open-incident-per-fingerprint rule under concurrency, and the lifecycle timestamps."""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from incident_ops.core.ledger import (
    DEFAULT_LEDGER_URL,
    LEDGER_URL_ENV,
    IncidentNotFound,
    Ledger,
    deliveries_table,
    incidents_table,
    metadata,
    new_incident_id,
    resolve_url,
)

UTC = dt.UTC
JST = dt.timezone(dt.timedelta(hours=9))
# 00:30 on 2026-11-28 in Tokyo.
T0 = dt.datetime(2026, 11, 27, 15, 30, tzinfo=UTC)


def minutes(n: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=n)


# --- databases ------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state' / 'ledger.db'}"
    else:
        url = request.getfixturevalue("postgres_ledger_url")
    yield url
    Ledger(url).dispose()


@pytest.fixture
def ledger(ledger_url: str) -> Ledger:
    return Ledger(ledger_url)


def open_incident(ledger: Ledger, fingerprint: str = "production/backend/login_failure", **kwargs):
    values = {
        "fingerprint": fingerprint,
        "severity": "P2",
        "symptom": "login_failure",
        "title": "ログインできない",
        "service": "backend",
        "environment": "production",
        "reporter": "cloudwatch",
        "at": T0,
    } | kwargs
    return ledger.open_or_join(**values)


def kinds(ledger: Ledger, incident_id: str) -> list[str]:
    return [event["kind"] for event in ledger.events(incident_id)]


# --- open, join, severity -------------------------------------------------------------------------


def test_open_creates_an_incident(ledger: Ledger) -> None:
    incident, created = open_incident(ledger, scenario="deploy", dag_run_id="manual__1", check_mode=True)
    assert created is True
    assert re.fullmatch(r"INC-20261128-[0-9a-f]{6}", incident["id"])  # the JST date of detection
    assert incident["status"] == "open"
    assert incident["severity"] == "P2"
    assert incident["occurrences"] == 1
    assert incident["detected_at"] == T0
    assert incident["detected_at"].tzinfo is UTC
    assert incident["created_at"] == incident["updated_at"] == T0
    assert incident["pagerduty_dedup_key"] == incident["id"]
    assert (incident["scenario"], incident["dag_run_id"], incident["check_mode"]) == ("deploy", "manual__1", True)
    assert incident["acknowledged_at"] is None
    assert ledger.get(incident["id"]) == incident
    assert kinds(ledger, incident["id"]) == ["opened"]


def test_a_second_report_joins_the_open_incident(ledger: Ledger) -> None:
    first, _ = open_incident(ledger)
    second, created = open_incident(ledger, at=minutes(3), reporter="user-report", detected_at=minutes(-5))
    assert created is False
    assert second["id"] == first["id"]
    assert second["occurrences"] == 2
    assert second["detected_at"] == T0  # fields apply only when opening
    assert second["updated_at"] == minutes(3)
    events = ledger.events(first["id"])
    assert [e["kind"] for e in events] == ["opened", "occurrence"]
    assert events[1]["actor"] == "user-report"
    assert events[1]["data"]["occurrence"] == 2


def test_severity_is_raised_never_lowered(ledger: Ledger) -> None:
    incident, _ = open_incident(ledger, severity="P3")
    assert open_incident(ledger, severity="P4", at=minutes(1))[0]["severity"] == "P3"
    raised, _ = open_incident(ledger, severity="P1", at=minutes(2))
    assert raised["severity"] == "P1"
    assert open_incident(ledger, severity="P2", at=minutes(3))[0]["severity"] == "P1"
    events = ledger.events(incident["id"])
    assert [e["kind"] for e in events] == [
        "opened",
        "occurrence",
        "occurrence",
        "severity_raised",
        "occurrence",
    ]
    assert events[3]["data"] == {"from": "P3", "to": "P1"}
    assert ledger.get(incident["id"])["occurrences"] == 4


def test_a_redelivered_report_counts_once(ledger: Ledger) -> None:
    incident, _ = open_incident(ledger, occurrence_key="sns-message-1")
    again, created = open_incident(ledger, occurrence_key="sns-message-1", at=minutes(1))
    assert (again["id"], created, again["occurrences"]) == (incident["id"], False, 1)
    other, _ = open_incident(ledger, occurrence_key="sns-message-2", at=minutes(2))
    assert other["occurrences"] == 2
    assert open_incident(ledger, occurrence_key="sns-message-2", at=minutes(3))[0]["occurrences"] == 2


def test_different_fingerprints_are_different_incidents(ledger: Ledger) -> None:
    a, _ = open_incident(ledger, "production/backend/login_failure")
    b, created = open_incident(ledger, "production/backend/report_slow")
    assert created is True
    assert a["id"] != b["id"]
    assert [i["id"] for i in ledger.open_incidents()] == sorted([a["id"], b["id"]])


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"severity": "P5"}, ValueError),
        ({"fingerprint": ""}, ValueError),
        ({"at": dt.datetime(2026, 11, 28, 0, 30)}, ValueError),
        ({"no_such_field": 1}, ValueError),
        ({"status": "closed"}, ValueError),
        ({"occurrences": 5}, ValueError),
    ],
)
def test_open_refuses_bad_input(ledger: Ledger, change, error) -> None:
    with pytest.raises(error):
        open_incident(ledger, **change)


# --- the database enforces one open incident per fingerprint ---------------------------------------


def _raw_incident(**values):
    row = {
        "fingerprint": "fp",
        "status": "open",
        "severity": "P2",
        "detected_at": T0,
        "occurrences": 1,
        "check_mode": False,
        "created_at": T0,
        "updated_at": T0,
    }
    return row | values


def test_the_database_refuses_a_second_open_incident(ledger: Ledger) -> None:
    with ledger.engine.begin() as conn:
        conn.execute(sa.insert(incidents_table).values(_raw_incident(id="INC-A", status="recovered")))
        conn.execute(sa.insert(incidents_table).values(_raw_incident(id="INC-B", status="closed")))
        conn.execute(sa.insert(incidents_table).values(_raw_incident(id="INC-C", status="open")))
    with pytest.raises(IntegrityError), ledger.engine.begin() as conn:
        conn.execute(sa.insert(incidents_table).values(_raw_incident(id="INC-D", status="mitigated")))


def test_sixteen_concurrent_reports_make_one_incident(ledger_url: str) -> None:
    Ledger(ledger_url).open_incidents()  # the schema exists before the race starts
    barrier = threading.Barrier(16)

    def report(n: int):
        ledger = Ledger(ledger_url)
        barrier.wait()
        return open_incident(ledger, "production/backend/all_users_down", reporter=f"alarm-{n}", at=minutes(n / 60))

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(report, range(16)))

    ids = {incident["id"] for incident, _ in results}
    assert len(ids) == 1
    assert sum(created for _, created in results) == 1
    ledger = Ledger(ledger_url)
    [incident] = ledger.open_incidents()
    assert incident["occurrences"] == 16
    event_kinds = kinds(ledger, incident["id"])
    assert event_kinds.count("occurrence") == 15
    assert event_kinds.count("opened") == 1


# --- events ---------------------------------------------------------------------------------------


def test_an_event_with_a_key_is_recorded_once(ledger: Ledger) -> None:
    incident, _ = open_incident(ledger)
    key = f"{incident['id']}:declared"
    assert ledger.record_event(incident["id"], at=minutes(1), kind="declared", message="宣言", idempotency_key=key)
    assert not ledger.record_event(incident["id"], at=minutes(2), kind="declared", message="宣言", idempotency_key=key)
    assert kinds(ledger, incident["id"]) == ["opened", "declared"]


def test_events_without_a_key_are_all_recorded(ledger: Ledger) -> None:
    incident, _ = open_incident(ledger)
    assert ledger.record_event(incident["id"], at=minutes(1), kind="notified", message="a")
    assert ledger.record_event(incident["id"], at=minutes(1), kind="notified", message="a")
    assert kinds(ledger, incident["id"]) == ["opened", "notified", "notified"]


def test_the_same_key_on_another_incident_is_another_event(ledger: Ledger) -> None:
    a, _ = open_incident(ledger, "fp-a")
    b, _ = open_incident(ledger, "fp-b")
    assert ledger.record_event(a["id"], at=T0, kind="declared", message="m", idempotency_key="declared")
    assert ledger.record_event(b["id"], at=T0, kind="declared", message="m", idempotency_key="declared")


def test_events_come_back_in_time_order_with_their_data(ledger: Ledger) -> None:
    incident, _ = open_incident(ledger)
    ledger.record_event(incident["id"], at=minutes(10), kind="action", message="後", actor="bot")
    ledger.record_event(
        incident["id"],
        at=dt.datetime(2026, 11, 28, 0, 35, tzinfo=JST),
        kind="evidence",
        message="前",
        data={"errors": 120, "since": minutes(-30), "names": ["ログ"]},
    )
    events = ledger.events(incident["id"])
    assert [e["message"] for e in events] == ["ログインできない", "前", "後"]
    assert [e["at"] for e in events] == [T0, minutes(5), minutes(10)]
    assert all(e["at"].tzinfo is UTC for e in events)
    assert events[1]["data"] == {"errors": 120, "since": "2026-11-27T15:00:00+00:00", "names": ["ログ"]}
    assert events[2]["actor"] == "bot" and events[2]["data"] is None


def test_events_of_an_unknown_incident(ledger: Ledger) -> None:
    with pytest.raises(IncidentNotFound):
        ledger.record_event("INC-00000000-000000", at=T0, kind="x", message="m")
    with pytest.raises(IncidentNotFound):
        ledger.events("INC-00000000-000000")
    with pytest.raises(IncidentNotFound):
        ledger.get("INC-00000000-000000")


# --- lifecycle ------------------------------------------------------------------------------------


def test_only_the_first_acknowledgement_counts(ledger: Ledger) -> None:
    incident, _ = open_incident(ledger)
    assert ledger.acknowledge(incident["id"], minutes(4), "田中 太郎") is True
    assert ledger.acknowledge(incident["id"], minutes(9), "山田 花子") is False
    current = ledger.get(incident["id"])
    assert (current["acknowledged_at"], current["acknowledged_by"]) == (minutes(4), "田中 太郎")
    assert kinds(ledger, incident["id"]).count("acknowledged") == 1


def test_update_sets_fields(ledger: Ledger) -> None:
    incident, _ = open_incident(ledger)
    updated = ledger.update(
        incident["id"],
        minutes(2),
        slack_channel="incident-20261128",
        slack_channel_id="C0INC0001",
        declared_at=dt.datetime(2026, 11, 28, 0, 31, tzinfo=JST),
        scenario="deploy",
    )
    assert updated["slack_channel"] == "incident-20261128"
    assert updated["declared_at"] == minutes(1)
    assert updated["updated_at"] == minutes(2)
    assert ledger.get(incident["id"]) == updated


@pytest.mark.parametrize(
    "fields",
    [
        {"nope": 1},
        {"id": "INC-X"},
        {"created_at": T0},
        {"status": "gone"},
        {"severity": "P0"},
        {"escalated_at": dt.datetime(2026, 11, 28, 0, 45)},
    ],
)
def test_update_refuses_bad_fields(ledger: Ledger, fields) -> None:
    incident, _ = open_incident(ledger)
    with pytest.raises(ValueError):
        ledger.update(incident["id"], minutes(1), **fields)


def test_update_of_an_unknown_incident(ledger: Ledger) -> None:
    with pytest.raises(IncidentNotFound):
        ledger.update("INC-00000000-000000", T0, cause="x")


def test_mitigated_still_holds_the_fingerprint(ledger: Ledger) -> None:
    incident, _ = open_incident(ledger)
    mitigated = ledger.mark_mitigated(incident["id"], minutes(20))
    assert (mitigated["status"], mitigated["mitigated_at"]) == ("mitigated", minutes(20))
    joined, created = open_incident(ledger, at=minutes(21))
    assert (joined["id"], created) == (incident["id"], False)
    assert [i["id"] for i in ledger.open_incidents()] == [incident["id"]]


def test_recovery_frees_the_fingerprint_and_starts_the_postmortem_clock(ledger: Ledger) -> None:
    incident, _ = open_incident(ledger)
    recovered = ledger.mark_recovered(incident["id"], minutes(42), cause="デプロイ後の不具合")
    assert recovered["status"] == "recovered"
    assert recovered["recovered_at"] == minutes(42)
    assert recovered["cause"] == "デプロイ後の不具合"
    assert recovered["postmortem_due_at"] == minutes(42) + dt.timedelta(hours=48)
    assert ledger.open_incidents() == []

    again = ledger.mark_recovered(incident["id"], minutes(50), cause="別の原因")
    assert again == recovered  # a retried step changes nothing

    new, created = open_incident(ledger, at=minutes(90))
    assert created is True
    assert new["id"] != incident["id"]
    assert [i["id"] for i in ledger.open_incidents()] == [new["id"]]
    assert [i["id"] for i in ledger.recovered_pending_postmortem()] == [incident["id"]]

    done = ledger.mark_postmortem_done(incident["id"], minutes(60 * 30), path="state/postmortems/x.md")
    assert (done["postmortem_done_at"], done["postmortem_path"]) == (minutes(60 * 30), "state/postmortems/x.md")
    assert ledger.recovered_pending_postmortem() == []
    assert kinds(ledger, incident["id"]) == ["opened", "recovered", "postmortem_done"]


def test_recovery_due_date_can_be_given_or_waived(ledger: Ledger) -> None:
    a, _ = open_incident(ledger, "fp-a")
    b, _ = open_incident(ledger, "fp-b", severity="P4")
    due = dt.datetime(2026, 11, 29, 12, 0, tzinfo=JST)
    assert ledger.mark_recovered(a["id"], minutes(10), postmortem_due_at=due)["postmortem_due_at"] == due
    assert ledger.mark_recovered(b["id"], minutes(10), postmortem_due_at=None)["postmortem_due_at"] is None
    assert [i["id"] for i in ledger.recovered_pending_postmortem()] == [a["id"]]


def test_postmortem_reminders_earliest_due_first(ledger: Ledger) -> None:
    late, _ = open_incident(ledger, "fp-late")
    early, _ = open_incident(ledger, "fp-early", at=minutes(5))
    ledger.mark_recovered(late["id"], minutes(100))
    ledger.mark_recovered(early["id"], minutes(50))
    assert [i["id"] for i in ledger.recovered_pending_postmortem()] == [early["id"], late["id"]]


def test_close_frees_the_fingerprint_once(ledger: Ledger) -> None:
    incident, _ = open_incident(ledger)
    closed = ledger.close(incident["id"], minutes(5))
    assert closed["status"] == "closed"
    assert ledger.close(incident["id"], minutes(6)) == closed
    assert open_incident(ledger, at=minutes(7))[1] is True
    assert kinds(ledger, incident["id"]).count("closed") == 1


def test_incidents_between(ledger: Ledger) -> None:
    before, _ = open_incident(ledger, "fp-1", at=dt.datetime(2026, 11, 27, 23, 59, tzinfo=JST))
    inside, _ = open_incident(ledger, "fp-2", at=dt.datetime(2026, 11, 28, 0, 0, tzinfo=JST))
    last, _ = open_incident(ledger, "fp-3", at=dt.datetime(2026, 11, 28, 23, 59, 59, tzinfo=JST))
    after, _ = open_incident(ledger, "fp-4", at=dt.datetime(2026, 11, 29, 0, 0, tzinfo=JST))
    day = ledger.incidents_between(dt.datetime(2026, 11, 28, tzinfo=JST), dt.datetime(2026, 11, 29, tzinfo=JST))
    assert [i["id"] for i in day] == [inside["id"], last["id"]]
    assert {before["id"], after["id"]}.isdisjoint(i["id"] for i in day)


def test_times_come_back_as_aware_utc(ledger: Ledger) -> None:
    incident, _ = open_incident(ledger, at=dt.datetime(2026, 11, 28, 0, 30, 15, 123456, tzinfo=JST))
    stored = ledger.get(incident["id"])
    assert stored["detected_at"] == dt.datetime(2026, 11, 27, 15, 30, 15, 123456, tzinfo=UTC)
    assert stored["detected_at"].utcoffset() == dt.timedelta(0)


def test_dispose_then_use_again(ledger: Ledger) -> None:
    incident, _ = open_incident(ledger)
    ledger.dispose()
    assert ledger.get(incident["id"])["id"] == incident["id"]


# --- configuration --------------------------------------------------------------------------------


def test_url_from_argument_environment_or_default(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv(LEDGER_URL_ENV, raising=False)
    assert resolve_url() == DEFAULT_LEDGER_URL
    assert DEFAULT_LEDGER_URL.endswith("/state/ledger.db")
    assert DEFAULT_LEDGER_URL.startswith("sqlite:///")
    monkeypatch.setenv(LEDGER_URL_ENV, f"sqlite:///{tmp_path}/env.db")
    assert Ledger().url == f"sqlite:///{tmp_path}/env.db"
    assert Ledger("sqlite:///elsewhere.db").url == "sqlite:///elsewhere.db"


def test_sqlite_file_and_folder_are_created_with_wal_and_busy_timeout(tmp_path) -> None:
    path = tmp_path / "deep" / "state" / "ledger.db"
    ledger = Ledger(f"sqlite:///{path}")
    try:
        assert ledger.open_incidents() == []
        assert path.is_file()
        with ledger.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        ledger.dispose()


def test_repr_hides_the_password() -> None:
    assert "secret" not in repr(Ledger("postgresql+psycopg://user:secret@db/ledger"))


def test_new_incident_id_uses_the_jst_date() -> None:
    assert new_incident_id(dt.datetime(2026, 11, 27, 14, 59, tzinfo=UTC)).startswith("INC-20261127-")
    assert new_incident_id(dt.datetime(2026, 11, 27, 15, 0, tzinfo=UTC)).startswith("INC-20261128-")
    with pytest.raises(ValueError):
        new_incident_id(dt.datetime(2026, 11, 28))


# --- webhook deliveries (replay protection) -------------------------------------------------------


@pytest.fixture
def deliveries(ledger: Ledger) -> Ledger:
    """The ledger with no remembered delivery (a PostgreSQL test database is shared by the session)."""
    with ledger.engine.begin() as conn:
        conn.execute(deliveries_table.delete())
    return ledger


def count_deliveries(ledger: Ledger) -> int:
    with ledger.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(deliveries_table)).scalar_one()


def test_the_deliveries_table_is_created_with_the_others(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    assert "webhook_deliveries" in metadata.tables  # the schema's definition (and its migrations') source
    with ledger.engine.connect() as conn:
        inspector = sa.inspect(conn)
        assert "webhook_deliveries" in inspector.get_table_names()
        assert {c["name"] for c in inspector.get_columns("webhook_deliveries")} == {
            "key", "seen_at", "expires_at", "incident_id", "status"}


def test_a_delivery_is_remembered_once_until_its_window_ends(deliveries: Ledger) -> None:
    ledger = deliveries
    assert ledger.delivery("sns:m-1", T0) is None
    assert ledger.remember_delivery("sns:m-1", T0, minutes(60), status="ignored") is True
    assert ledger.remember_delivery("sns:m-1", minutes(1), minutes(61), incident_id="INC-x") is False  # first wins
    seen = ledger.delivery("sns:m-1", minutes(59))
    assert seen is not None
    assert (seen["seen_at"], seen["expires_at"], seen["incident_id"], seen["status"], seen["incident_status"]) == (
        T0, minutes(60), None, "ignored", None)
    assert ledger.delivery("sns:m-1", minutes(60)) is None  # the window has ended
    assert ledger.remember_delivery("sns:m-1", minutes(61), minutes(121)) is True  # the expired row is replaced
    assert ledger.delivery("sns:m-1", minutes(62))["seen_at"] == minutes(61)


def test_a_delivery_tells_the_status_of_its_incident_now(deliveries: Ledger) -> None:
    ledger = deliveries
    incident, _ = open_incident(ledger)
    ledger.remember_delivery("alert:abc", T0, minutes(5), incident_id=incident["id"], status="new")
    assert ledger.delivery("alert:abc", minutes(1))["incident_status"] == "open"
    ledger.mark_recovered(incident["id"], minutes(2))
    assert ledger.delivery("alert:abc", minutes(3))["incident_status"] == "recovered"
    ledger.close(incident["id"], minutes(3))
    assert ledger.delivery("alert:abc", minutes(4))["incident_status"] == "closed"


def test_expired_deliveries_are_deleted_lazily(deliveries: Ledger) -> None:
    ledger = deliveries
    for i in range(5):
        ledger.remember_delivery(f"sns:old-{i}", T0, minutes(10))
    ledger.remember_delivery("sns:young", T0, minutes(120))
    assert count_deliveries(ledger) == 6
    # the next remember after a minute deletes every expired row
    ledger.remember_delivery("sns:new", minutes(11), minutes(70))
    assert count_deliveries(ledger) == 2
    assert ledger.forget_deliveries(minutes(70)) == 1
    assert ledger.delivery("sns:young", minutes(71)) is not None


def test_concurrent_remembers_of_one_delivery_let_one_win(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    with ledger.engine.begin() as conn:
        conn.execute(deliveries_table.delete())
    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda i: Ledger(ledger_url).remember_delivery("sns:race", T0, minutes(60), status=str(i)),
                            range(16)))
    assert won.count(True) == 1
