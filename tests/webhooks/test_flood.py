"""Floods from authenticated senders (issue 16, item 6): new incidents are capped per source and
overall in any 60 s, counted in the ledger under a lock that spans threads and processes; past the
cap a delivery is `held`: nothing opened, no run, its occurrence recorded on the window's alarm storm
record, and ONE 「アラームストーム」 notice goes to #dev-team per storm, off the request path."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from incident_ops.core import ledger as ledger_module
from incident_ops.core.ledger import Ledger
from incident_ops.webhooks.config import FloodLimits, WebhookConfig
from incident_ops.webhooks.intake import STORM_PREFIX, Intake

from .conftest import Harness
from .helpers import NOW, TOPIC, CountingTrigger, SigningCert, alarm, notification, signed_alert, sns_headers

SOURCE = "cloudwatch (sns:peoplebooster-production-alerts)"


class Notices:
    """Stands in for the Slack post to #dev-team: keeps (environment, text, key)."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.sent: list[tuple[str, str, str]] = []
        self.gate = gate

    def __call__(self, environment: str, text: str, key: str) -> None:
        if self.gate is not None:
            self.gate.wait(30)
        self.sent.append((environment, text, key))


def flood_harness(make_harness: Any, ledger_url: str | None = None, *, per_source: int, overall: int,
                  notices: Notices | None = None) -> tuple[Harness, Notices]:
    # The notice waits (as in production) until `wait_notices` flushes it: it counts the whole burst.
    h = make_harness(ledger_url, new_incidents_per_source_per_minute=per_source, new_incidents_per_minute=overall,
                     storm_notice_delay_seconds=60)
    notices = notices or Notices()
    h.app.state.services().intake.storm_notify = notices
    return h, notices


def post_sns(h: Harness, envelope: dict[str, str]) -> dict[str, Any]:
    response = h.client.post("/webhooks/sns", content=json.dumps(envelope), headers=sns_headers(envelope))
    assert response.status_code == 200, response.text
    return response.json()


def post_alert(h: Harness, alert: dict[str, Any], at: dt.datetime = NOW) -> dict[str, Any]:
    body, headers = signed_alert(alert, at=at)
    response = h.client.post("/webhooks/alert", content=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def alert(source: str, n: int) -> dict[str, Any]:
    return {"source": source, "title": f"check {n} failing", "service": "backend", "symptom": "ログインできない",
            "fingerprint": f"{source}:check-{n}"}


def storms(h: Harness) -> list[dict[str, Any]]:
    return [i for i in h.incidents() if i["fingerprint"].startswith(STORM_PREFIX)]


def real(h: Harness) -> list[dict[str, Any]]:
    return [i for i in h.incidents() if not i["fingerprint"].startswith(STORM_PREFIX)]


def wait_notices(h: Harness) -> None:
    assert h.app.state.services().intake.wait_storm_notices(10, flush=True)


def held_events(h: Harness, storm_id: str) -> list[dict[str, Any]]:
    return [e for e in h.ledger.events(storm_id) if e["kind"] == "delivery_held"]


def test_300_distinct_alarms_from_one_topic_open_at_most_the_cap(make_harness, cert: SigningCert) -> None:
    h, notices = flood_harness(make_harness, per_source=20, overall=100)
    envelopes = [notification(cert, alarm(f"peoplebooster-production-flood-{i:03d}")) for i in range(300)]
    answers = [post_sns(h, e) for e in envelopes]

    statuses = Counter(a["status"] for a in answers)
    assert statuses == {"new": 20, "held": 280}
    assert len(h.trigger.calls) == 20 and len(real(h)) == 20
    assert all(a["dag_run_id"] is None for a in answers if a["status"] == "held")
    [storm] = storms(h)
    assert {a["incident_id"] for a in answers if a["status"] == "held"} == {storm["id"]}
    assert storm["dag_run_id"] is None and storm["status"] == "open" and storm["occurrences"] == 280
    # Every delivery's occurrence is in the ledger: 20 incidents opened, 280 held on the storm record.
    held = held_events(h, storm["id"])
    assert len(held) == 280
    assert {e["data"]["alarm"] for e in held} == {f"peoplebooster-production-flood-{i:03d}" for i in range(20, 300)}
    assert {e["data"]["source"] for e in held} == {SOURCE}
    assert all(e["data"]["cap"]["scope"] == "source" and e["data"]["cap"]["limit"] == 20 for e in held)
    assert [a["status"] for a in h.audit() if a.get("endpoint") == "sns"].count("held") == 280

    wait_notices(h)
    [(environment, text, key)] = notices.sent  # ONE notice for the storm
    assert environment == "production" and key == f"alarm-storm:{storm['id']}"
    assert text.startswith("【アラームストーム】")
    assert "280件（アラーム280種類）" in text and f"{SOURCE}（280件）" in text
    assert storm["id"] in text and "INCIDENT_OPS_WEBHOOK_NEW_INCIDENTS_PER_SOURCE_PER_MINUTE" in text
    assert "2026-11-28 00:30:00 JST" in text  # since when (NOW in JST)
    kinds = [e["kind"] for e in h.ledger.events(storm["id"])]
    assert kinds.count("alarm_storm_notified") == 1

    # A held delivery seen again stays held (counted once), even when there is room again later.
    h.clock[0] = NOW + dt.timedelta(minutes=5)
    again = post_sns(h, envelopes[-1])
    assert again["status"] == "held" and again["incident_id"] == storm["id"]
    assert h.ledger.get(storm["id"])["occurrences"] == 280 and len(h.trigger.calls) == 20


def test_joins_of_open_incidents_are_never_capped(make_harness, cert: SigningCert) -> None:
    h, _ = flood_harness(make_harness, per_source=2, overall=100)
    first = [post_sns(h, notification(cert, alarm(f"a-{i}"))) for i in range(3)]
    assert [a["status"] for a in first] == ["new", "new", "held"]
    again = [post_sns(h, notification(cert, alarm("a-0"))) for _ in range(5)]
    assert {a["status"] for a in again} == {"joined"} and {a["incident_id"] for a in again} == {first[0]["incident_id"]}
    assert h.ledger.get(first[0]["incident_id"])["occurrences"] == 6


def test_two_sources_each_under_their_own_cap(make_harness) -> None:
    h, notices = flood_harness(make_harness, per_source=3, overall=100)
    answers = {source: [post_alert(h, alert(source, n)) for n in range(5)] for source in ("uptime-robot", "datadog")}
    for source, got in answers.items():
        assert [a["status"] for a in got] == ["new"] * 3 + ["held"] * 2, source
    assert len(h.trigger.calls) == 6
    opened = Counter(i["reporter"] for i in real(h))
    assert opened == {"uptime-robot": 3, "datadog": 3}
    [storm] = storms(h)
    assert Counter(e["data"]["source"] for e in held_events(h, storm["id"])) == {"uptime-robot": 2, "datadog": 2}
    wait_notices(h)
    [(_, text, _)] = notices.sent
    assert "uptime-robot（" in text and "datadog（" in text


def test_the_overall_cap_holds_across_sources(make_harness) -> None:
    h, _ = flood_harness(make_harness, per_source=10, overall=4)
    answers = [post_alert(h, alert(source, n)) for n in range(2) for source in ("a", "b", "c")]
    assert [a["status"] for a in answers] == ["new"] * 4 + ["held"] * 2
    [storm] = storms(h)
    assert {e["data"]["cap"]["scope"] for e in held_events(h, storm["id"])} == {"overall"}
    assert len(real(h)) == 4 and len(h.trigger.calls) == 4


def test_the_window_resets_after_a_minute(make_harness, cert: SigningCert) -> None:
    h, notices = flood_harness(make_harness, per_source=2, overall=100)
    assert [post_sns(h, notification(cert, alarm(f"w-{i}")))["status"] for i in range(3)] == ["new", "new", "held"]
    h.clock[0] = NOW + dt.timedelta(seconds=59)
    assert post_sns(h, notification(cert, alarm("w-3")))["status"] == "held"  # still within 60 s of both opens
    h.clock[0] = NOW + dt.timedelta(seconds=60)
    assert [post_sns(h, notification(cert, alarm(f"w-{i}")))["status"] for i in (4, 5, 6)] == ["new", "new", "held"]
    assert len(real(h)) == 4 and len(h.trigger.calls) == 4
    # One storm window (10 min by default): one storm record, one notice.
    [storm] = storms(h)
    assert storm["occurrences"] == 3
    wait_notices(h)
    assert len(notices.sent) == 1
    # A later window is a new storm, with a notice of its own.
    h.clock[0] = NOW + dt.timedelta(minutes=12)
    assert [post_sns(h, notification(cert, alarm(f"x-{i}")))["status"] for i in range(3)] == ["new", "new", "held"]
    wait_notices(h)
    assert len(storms(h)) == 2 and len(notices.sent) == 2


def test_concurrent_deliveries_never_exceed_the_cap(make_harness, any_ledger_url: str, cert: SigningCert) -> None:
    h, notices = flood_harness(make_harness, any_ledger_url, per_source=5, overall=100)
    envelopes = [notification(cert, alarm(f"c-{i:02d}")) for i in range(40)]
    with h.client, ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda e: post_sns(h, e), envelopes))
    assert Counter(a["status"] for a in answers) == {"new": 5, "held": 35}
    assert len(real(h)) == 5 and len(h.trigger.calls) == 5
    [storm] = storms(h)
    assert storm["occurrences"] == 35 and len(held_events(h, storm["id"])) == 35
    wait_notices(h)
    assert len(notices.sent) == 1


def test_two_apps_on_one_ledger_share_the_cap(make_harness, any_ledger_url: str, cert: SigningCert) -> None:
    """Two API server workers (two apps, two Intakes) counting at once in the same ledger."""
    one, notices_one = flood_harness(make_harness, any_ledger_url, per_source=4, overall=100)
    two, notices_two = flood_harness(make_harness, any_ledger_url, per_source=4, overall=100)
    envelopes = [notification(cert, alarm(f"two-{i:02d}")) for i in range(30)]
    with one.client, two.client, ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda ie: post_sns(one if ie[0] % 2 else two, ie[1]), enumerate(envelopes)))
    assert Counter(a["status"] for a in answers) == {"new": 4, "held": 26}
    assert len(real(one)) == 4 and len(one.trigger.calls) + len(two.trigger.calls) == 4
    [storm] = storms(one)
    assert storm["occurrences"] == 26
    wait_notices(one)
    wait_notices(two)
    assert len(notices_one.sent) + len(notices_two.sent) == 1


def _deliver(args: tuple[str, str, int, int]) -> list[str]:
    """In a child process: its own Ledger/engine and Intake, like one API server worker."""
    url, runbook_path, worker, count = args
    from incident_ops.core.runbook import load_runbook

    intake = Intake(load_runbook(runbook_path), Ledger(url), CountingTrigger(), clock=lambda: NOW,
                    flood=FloodLimits(per_source_per_minute=6, per_minute=100, storm_notice_delay_seconds=0),
                    storm_notify=lambda *_: None)
    statuses = [intake.handle_alarm(alarm(f"p{worker}-{i}"), environment="production", reporter=SOURCE,
                                    message_id=f"w{worker}-m{i}", received_at=NOW).status for i in range(count)]
    intake.wait_storm_notices(10, flush=True)
    return statuses


@pytest.mark.process  # forked workers (multiprocessing)
def test_separate_processes_never_exceed_the_cap(any_ledger_url: str) -> None:
    import incident_ops.flows.incident  # noqa: F401 - imported once here, inherited by the forked workers
    import incident_ops.params  # noqa: F401
    from incident_ops.core.runbook import runbook_path

    Ledger(any_ledger_url).engine  # noqa: B018 - the schema, before the workers race for it
    ledger_module.dispose_engines()
    with multiprocessing.get_context("fork").Pool(4) as pool:
        batches = pool.map(_deliver, [(any_ledger_url, str(runbook_path()), w, 8) for w in range(4)])
    statuses = Counter(s for batch in batches for s in batch)
    assert statuses == {"new": 6, "held": 26}
    incidents = Ledger(any_ledger_url).open_incidents()
    assert len([i for i in incidents if not i["fingerprint"].startswith(STORM_PREFIX)]) == 6
    [storm] = [i for i in incidents if i["fingerprint"].startswith(STORM_PREFIX)]
    assert storm["occurrences"] == 26


def test_the_notice_never_blocks_the_answer_and_escapes_outside_text(make_harness) -> None:
    gate = threading.Event()
    h, notices = flood_harness(make_harness, per_source=1, overall=100, notices=Notices(gate))
    source = "<!channel> <@U0TANAKA1>"
    started = time.monotonic()
    answers = [post_alert(h, alert(source, n)) for n in range(3)]
    assert time.monotonic() - started < 5  # the notice is waiting on its own thread, not the answers
    assert [a["status"] for a in answers] == ["new", "held", "held"]
    assert notices.sent == []
    intake = h.app.state.services().intake
    assert not intake.wait_storm_notices(0.5, flush=True)  # rendered, now waiting on Slack (the gate)
    gate.set()
    wait_notices(h)
    [(_, text, _)] = notices.sent
    assert "<!channel>" not in text and "&lt;!channel&gt; &lt;@U0TANAKA1&gt;（2件）" in text
    assert "（アラーム2種類）" in text


def test_a_failed_notice_is_on_the_storm_timeline(make_harness) -> None:
    h, _ = flood_harness(make_harness, per_source=1, overall=100)

    def down(*_: Any) -> None:
        raise ConnectionError("slack is down")

    h.app.state.services().intake.storm_notify = down
    assert [post_alert(h, alert("s", n))["status"] for n in range(2)] == ["new", "held"]
    wait_notices(h)
    [storm] = storms(h)
    assert "alarm_storm_notice_failed" in [e["kind"] for e in h.ledger.events(storm["id"])]


def test_a_slash_command_past_the_cap_is_told_it_was_held(make_harness) -> None:
    """`/incident` declares through the same intake (reporter = the person): held, not joined."""
    h, _ = flood_harness(make_harness, per_source=100, overall=1)
    assert post_alert(h, alert("uptime-robot", 0))["status"] == "new"
    services = h.app.state.services()
    from incident_ops.webhooks.intake import IntakeResult

    reply = services._declared_reply(IntakeResult("held", "INC-20261128-abcdef", None, "P2"), "ログインできない")
    assert reply["_audit"]["status"] == "held" and "保留" in reply["text"]


def test_the_settings_and_their_defaults() -> None:
    defaults = WebhookConfig.from_env({})
    assert defaults.flood == FloodLimits(30, 60, 600.0, 10.0)
    config = WebhookConfig.from_env({
        "INCIDENT_OPS_WEBHOOK_NEW_INCIDENTS_PER_SOURCE_PER_MINUTE": "5",
        "INCIDENT_OPS_WEBHOOK_NEW_INCIDENTS_PER_MINUTE": "0",
        "INCIDENT_OPS_WEBHOOK_STORM_WINDOW_SECONDS": "300",
        "INCIDENT_OPS_WEBHOOK_STORM_NOTICE_DELAY_SECONDS": "2",
    })
    assert config.flood == FloodLimits(5, 0, 300.0, 2.0) and config.flood.capped
    assert not WebhookConfig(new_incidents_per_source_per_minute=0, new_incidents_per_minute=0).flood.capped


def test_no_cap_when_both_are_zero(make_harness, cert: SigningCert) -> None:
    h, _ = flood_harness(make_harness, per_source=0, overall=0)
    assert {post_sns(h, notification(cert, alarm(f"n-{i}")))["status"] for i in range(40)} == {"new"}
    assert storms(h) == [] and len(h.trigger.calls) == 40


def test_the_default_caps_leave_a_storm_of_one_topic_alone(make_harness, cert: SigningCert) -> None:
    """The defaults (30 per source, 60 overall) hold bench's storm (20 alarms and a warm-up) as before."""
    h = make_harness()
    assert {post_sns(h, notification(cert, alarm(f"b-{i}")))["status"] for i in range(21)} == {"new"}
    assert TOPIC in h.config.topics and storms(h) == []
