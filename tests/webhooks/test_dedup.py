"""Dedup and storms: concurrent deliveries of one alarm make one incident and one trigger call, on
SQLite and on PostgreSQL (the ledger's database enforces it), through the app and through the pure
intake function, in threads and in separate processes (like several API server workers)."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from incident_ops.core import ledger as ledger_module
from incident_ops.core.ledger import Ledger
from incident_ops.core.runbook import Runbook
from incident_ops.webhooks.intake import Intake, IntakeError, incident_run_id
from tests.conftest import CHECK_TIER

from .conftest import Harness
from .helpers import NOW, CountingTrigger, SigningCert, alarm, notification, sns_headers

THREADS = 50
# The burst: a thousand deliveries in `make test`; the same mix, smaller, in `make check`.
BURST = 200 if CHECK_TIER else 1000


def post(h: Harness, envelope: dict) -> dict:
    response = h.client.post("/webhooks/sns", content=json.dumps(envelope), headers=sns_headers(envelope))
    assert response.status_code == 200, response.text
    return response.json()


def test_concurrent_redeliveries_make_one_incident_and_one_trigger(make_harness, any_ledger_url: str,
                                                                   cert: SigningCert) -> None:
    h = make_harness(any_ledger_url)
    envelope = notification(cert, alarm())  # ONE message, delivered 50 times at once
    with ThreadPoolExecutor(THREADS) as pool:
        answers = list(pool.map(lambda _: post(h, envelope), range(THREADS)))
    assert sorted(a["status"] for a in answers) == ["joined"] * (THREADS - 1) + ["new"]
    assert len({a["incident_id"] for a in answers}) == 1
    assert len({a["dag_run_id"] for a in answers}) == 1
    assert h.trigger.calls == [("incident_response", answers[0]["dag_run_id"])]
    [incident] = h.incidents()
    assert incident["occurrences"] == 1  # the same MessageId counts once


def test_concurrent_storm_of_distinct_messages_makes_one_run(make_harness, any_ledger_url: str,
                                                             cert: SigningCert) -> None:
    h = make_harness(any_ledger_url)
    envelopes = [notification(cert, alarm()) for _ in range(THREADS)]
    with ThreadPoolExecutor(THREADS) as pool:
        answers = list(pool.map(lambda e: post(h, e), envelopes))
    assert [a["status"] for a in answers].count("new") == 1
    assert len({a["incident_id"] for a in answers}) == 1
    assert len(h.trigger.calls) == 1
    [incident] = h.incidents()
    assert incident["occurrences"] == THREADS
    kinds = [e["kind"] for e in h.ledger.events(incident["id"])]
    assert kinds.count("opened") == 1 and kinds.count("occurrence") == THREADS - 1


def test_burst_of_a_thousand_deliveries_yields_one_run(make_harness, cert: SigningCert) -> None:
    h = make_harness()
    first = notification(cert, alarm())
    redeliveries = BURST // 5  # the same message again and again; the rest are distinct messages
    envelopes = [first] * redeliveries + [notification(cert, alarm()) for _ in range(BURST - redeliveries)]
    with h.client, ThreadPoolExecutor(32) as pool:  # one event loop for the whole burst
        answers = list(pool.map(lambda e: post(h, e), envelopes))
    assert len({a["incident_id"] for a in answers}) == 1
    assert len(h.trigger.runs) == 1 and len(h.trigger.calls) == 1
    assert h.incidents()[0]["occurrences"] == 1 + (BURST - redeliveries)


def _deliver(args: tuple[str, str, int, int]) -> list[dict]:
    """In a child process: its own Ledger/engine and Intake, like one API server worker."""
    url, runbook_path, worker, count = args
    from incident_ops.core.runbook import load_runbook

    trigger = CountingTrigger()
    intake = Intake(load_runbook(runbook_path), Ledger(url), trigger, clock=lambda: NOW)
    results = []
    for i in range(count):
        result = intake.handle_alarm(alarm(), environment="production", reporter="cloudwatch",
                                     message_id=f"w{worker}-m{i}", received_at=NOW)
        results.append({**result.to_dict(), "triggers": list(trigger.calls)})
        trigger.calls.clear()
    return results


@pytest.mark.process  # forked workers (multiprocessing)
def test_separate_processes_race_into_one_incident(any_ledger_url: str) -> None:
    import incident_ops.flows.incident  # noqa: F401 - imported once here, inherited by the forked workers
    import incident_ops.params  # noqa: F401
    from incident_ops.core.runbook import runbook_path

    workers, each = 4, 10
    # fork: the children start with this process's imports; no pooled connection may be inherited.
    ledger_module.dispose_engines()
    context = multiprocessing.get_context("fork")
    with context.Pool(workers) as pool:
        batches = pool.map(_deliver, [(any_ledger_url, str(runbook_path()), w, each) for w in range(workers)])
    results = [r for batch in batches for r in batch]
    assert [r["status"] for r in results].count("new") == 1
    assert len({r["incident_id"] for r in results}) == 1
    assert sum(len(r["triggers"]) for r in results) == 1
    [incident] = Ledger(any_ledger_url).open_incidents()
    assert incident["occurrences"] == workers * each


def test_intake_validates_the_conf_before_writing(runbook: Runbook, tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    intake = Intake(runbook, ledger, CountingTrigger(), clock=lambda: NOW)
    good = {"symptom": "x", "severity": "auto", "service": "backend", "environment": "production", "impact": "",
            "reporter": "r", "scenario": "auto", "check_mode": False, "alarm": {}, "incident_id": "INC-20261128-abcdef"}
    assert intake.validate_conf(good) == good
    for bad in ({**good, "service": "payments"}, {**good, "severity": "P9"}, {**good, "incident_id": "42"},
                {**good, "symptom": ""}, {**good, "check_mode": "yes"}, {**good, "alarm": []}):
        with pytest.raises(IntakeError) as caught:
            intake.validate_conf(bad)
        assert caught.value.status == 422 and "params refuse" in caught.value.reason
    assert ledger.open_incidents() == []


def airflow_accepts(runbook: Runbook, conf: dict) -> bool:
    from airflow.sdk import ParamsDict

    from incident_ops.params import incident_params

    params = ParamsDict(incident_params(runbook))
    try:
        params.update(conf)
        params.validate()
    except ValueError:
        return False
    return True


def test_intake_validation_agrees_with_airflows_paramsdict(runbook: Runbook, tmp_path: Path) -> None:
    intake = Intake(runbook, Ledger(f"sqlite:///{tmp_path / 'l.db'}"), CountingTrigger(), clock=lambda: NOW)
    good = {"symptom": "x", "severity": "auto", "service": "backend", "environment": "production", "impact": "",
            "reporter": "r", "scenario": "auto", "check_mode": False, "alarm": {"AlarmName": "a"},
            "incident_id": "INC-20261128-abcdef"}
    cases = [good, {k: v for k, v in good.items() if k != "incident_id"}, {"symptom": "only this"},
             {**good, "service": "frontend", "environment": "staging"}, {**good, "impact": "x" * 501},
             {**good, "reporter": ""}, {**good, "scenario": "deploy"}, {**good, "scenario": "magic"},
             {**good, "incident_id": None}, {**good, "alarm": None}, {**good, "symptom": 5}, {**good, "extra": 1}]
    for conf in cases:
        try:
            intake.validate_conf(conf)
            ours = True
        except IntakeError:
            ours = False
        assert ours == airflow_accepts(runbook, conf), conf


def test_run_id_is_derived_from_the_incident_id() -> None:
    assert incident_run_id("INC-20261128-abcdef") == "incident__INC-20261128-abcdef"


def test_retrigger_waits_for_the_opener(make_harness, cert: SigningCert) -> None:
    """A join right after the opening does not trigger again; one after the grace period does
    (the opener may have died between the ledger write and the trigger)."""
    h = make_harness(retrigger_after_seconds=30)
    incident, _ = h.ledger.open_or_join(
        fingerprint="production:alarm:peoplebooster-production-alb-5xx", severity="P2", symptom="error_rate_high",
        title="t", service="backend", environment="production", reporter="x", at=NOW)
    post(h, notification(cert, alarm()))
    assert h.trigger.calls == []
    h.clock[0] = NOW + dt.timedelta(seconds=31)
    answer = post(h, notification(cert, alarm(), timestamp=h.clock[0]))
    assert h.trigger.calls == [("incident_response", incident_run_id(incident["id"]))]
    assert answer["dag_run_id"] == incident_run_id(incident["id"])
