"""The postmortem_reminders task body, hour by hour against a ledger: each stage exactly once, to
the incident channel and the owner (and the dev lead when overdue), nothing after the postmortem
is marked done; and the postmortem_done task body."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from pytest_httpserver import HTTPServer

from incident_ops.clients.slack import IncidentSlack, make_web_client, message_key
from incident_ops.core.ledger import Ledger
from incident_ops.core.runbook import Runbook
from incident_ops.flows import scheduled
from tests.clients.conftest import FakeSlack, patch_slack_sleeps
from tests.flows.scheduled.conftest import RecordingSlack, add_incident, jst

RECOVERED = jst(2026, 11, 20, 22, 30)  # a Friday night


@pytest.fixture
def runbook(runbook: Runbook) -> Runbook:
    """These runs count plain hours (postmortem.align: wall_clock), as the ledger rows add_incident
    files do (due = recovery + 48 h); the shipped alignment has its own test below."""
    return runbook.model_copy(update={"postmortem": runbook.postmortem.model_copy(update={"align": "wall_clock"})})


def hourly(start: dt.datetime, hours: int) -> list[dt.datetime]:
    first = start.replace(minute=0, second=0) + dt.timedelta(hours=1)
    return [first + dt.timedelta(hours=n) for n in range(hours)]


def remind(at: dt.datetime, runbook: Runbook, ledger: Ledger, services) -> dict:
    return scheduled.postmortem_reminders(at, now=at, runbook=runbook, ledger=ledger, services=services)


@pytest.fixture
def incidents(ledger: Ledger) -> dict[str, dict]:
    return {
        "p1": add_incident(ledger, severity="P1", detected=RECOVERED - dt.timedelta(hours=2), title="ログインできない",
                           acknowledged=RECOVERED - dt.timedelta(hours=1, minutes=50), by="田中 太郎",
                           recovered=RECOVERED, channel="incident-20261120", channel_id="C0INC1120"),
        "p2": add_incident(ledger, severity="P2", detected=RECOVERED - dt.timedelta(hours=1), title="診断機能が動作しない",
                           recovered=RECOVERED + dt.timedelta(minutes=10)),
        "p3": add_incident(ledger, severity="P3", detected=RECOVERED - dt.timedelta(hours=3), title="レポート生成が遅い",
                           recovered=RECOVERED, channel="incident-20261120-2", channel_id="C0INC1121"),
        "open": add_incident(ledger, severity="P1", detected=RECOVERED, title="まだ対応中"),
    }


def test_four_days_of_hourly_runs(runbook: Runbook, ledger: Ledger, slack: RecordingSlack, services,
                                  incidents: dict[str, dict]) -> None:
    sent = []
    for at in hourly(RECOVERED, 96):
        for item in remind(at, runbook, ledger, services)["sent"]:
            sent.append((item["incident_id"], item["stage"], at, item["targets"]))
    p1, p2 = incidents["p1"]["id"], incidents["p2"]["id"]
    assert sent == [
        (p1, "reminder", jst(2026, 11, 21, 23), ["C0INC1120", "U0TANAKA1"]),
        (p2, "reminder", jst(2026, 11, 21, 23), ["#dev-team", "U0YAMADA1"]),
        (p1, "overdue", jst(2026, 11, 22, 23), ["C0INC1120", "U0TANAKA1", "U0LEAD001"]),
        (p2, "overdue", jst(2026, 11, 22, 23), ["#dev-team", "U0YAMADA1", "U0LEAD001"]),
    ]
    assert len(slack.messages) == 10
    first = slack.to("C0INC1120")[0]["text"]
    assert first.startswith(f"<@U0TANAKA1> 【ポストモーテムのリマインド】P1 {p1}")
    overdue = slack.to("U0LEAD001")[0]["text"]
    assert overdue.startswith(f"<@U0TANAKA1> <@U0LEAD001> 【ポストモーテム期限超過】P1 {p1}")
    # The ledger keeps one event per stage: the record that stops a second send.
    keys = [e["idempotency_key"] for e in ledger.events(p1) if e["kind"].startswith("postmortem_")]
    assert keys == ["postmortem_reminder", "postmortem_overdue"]
    assert not [e for e in ledger.events(incidents["p3"]["id"]) if e["kind"].startswith("postmortem_")]


def test_the_same_hour_twice_sends_once(runbook: Runbook, ledger: Ledger, slack: RecordingSlack, services,
                                        incidents: dict[str, dict]) -> None:
    at = RECOVERED + dt.timedelta(hours=25)
    assert len(remind(at, runbook, ledger, services)["sent"]) == 2
    assert remind(at, runbook, ledger, services)["sent"] == []
    assert remind(at + dt.timedelta(hours=1), runbook, ledger, services)["sent"] == []
    assert len(slack.messages) == 4


def test_marking_done_stops_the_reminders(runbook: Runbook, ledger: Ledger, slack: RecordingSlack, services,
                                          incidents: dict[str, dict]) -> None:
    p1 = incidents["p1"]["id"]
    stages = []
    for at in hourly(RECOVERED, 72):
        if at == RECOVERED.replace(minute=0) + dt.timedelta(hours=30):
            done = scheduled.mark_postmortem_done(p1, at=at, path="s3://pb/postmortems/x.md", by="田中 太郎",
                                                  runbook=runbook, ledger=ledger, services=services)
            assert done["first"] and done["announced"]
        stages += [(item["incident_id"], item["stage"]) for item in remind(at, runbook, ledger, services)["sent"]]
    assert (p1, "reminder") in stages and (p1, "overdue") not in stages
    announcement = [m for m in slack.to("C0INC1120") if m["key"] == f"{p1}:postmortem_done"]
    assert len(announcement) == 1
    assert announcement[0]["text"].splitlines() == [
        f"【ポストモーテム完了】{p1}", "ポストモーテム: s3://pb/postmortems/x.md", "完了登録: 田中 太郎",
        "ポストモーテムのリマインドを終了します。ありがとうございました。",
    ]
    again = scheduled.mark_postmortem_done(p1, at=RECOVERED + dt.timedelta(hours=40), runbook=runbook, ledger=ledger,
                                           services=services)
    assert again["first"] is False and again["announced"] is False
    assert again["postmortem_done_at"] == (RECOVERED + dt.timedelta(hours=30)).replace(minute=0).isoformat()


def test_done_before_the_first_reminder_means_none(runbook: Runbook, ledger: Ledger, slack: RecordingSlack, services,
                                                   incidents: dict[str, dict]) -> None:
    for key in ("p1", "p2"):
        scheduled.mark_postmortem_done(incidents[key]["id"], at=RECOVERED + dt.timedelta(hours=3), runbook=runbook,
                                       ledger=ledger, services=services)
    for at in hourly(RECOVERED, 72):
        assert remind(at, runbook, ledger, services)["sent"] == []
    assert all(m["key"].endswith(":postmortem_done") for m in slack.messages)


def test_marking_an_unknown_incident_fails_clearly(runbook: Runbook, ledger: Ledger, services) -> None:
    with pytest.raises(ValueError, match="no incident 'INC-20261120-ffffff' in the ledger"):
        scheduled.mark_postmortem_done("INC-20261120-ffffff", runbook=runbook, ledger=ledger, services=services)


def test_first_run_after_the_due_time_sends_only_the_overdue(runbook: Runbook, ledger: Ledger, slack: RecordingSlack,
                                                             services, incidents: dict[str, dict]) -> None:
    result = remind(RECOVERED + dt.timedelta(hours=60), runbook, ledger, services)
    assert sorted(item["stage"] for item in result["sent"]) == ["overdue", "overdue"]
    assert "（11時間50分超過）" in slack.to("U0YAMADA1")[0]["text"]


def test_nothing_due_needs_no_slack(runbook: Runbook, ledger: Ledger, incidents: dict[str, dict]) -> None:
    result = remind(RECOVERED + dt.timedelta(hours=5), runbook, ledger, SimpleNamespace(slack=None, pager=None))
    assert result == {"at": (RECOVERED + dt.timedelta(hours=5)).isoformat(), "sent": [], "pending": 2}
    with pytest.raises(RuntimeError, match="slack_api_default"):
        remind(RECOVERED + dt.timedelta(hours=25), runbook, ledger, SimpleNamespace(slack=None, pager=None))


def test_reminders_through_the_slack_api(runbook: Runbook, ledger: Ledger, httpserver: HTTPServer,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    patch_slack_sleeps(monkeypatch)
    fake = FakeSlack(httpserver)
    fake.add_channel("dev-team")
    channel_id = fake.add_channel("incident-20261120")
    incident = add_incident(ledger, severity="P1", detected=RECOVERED - dt.timedelta(hours=1), recovered=RECOVERED,
                            acknowledged=RECOVERED - dt.timedelta(minutes=50), by="山田 花子",
                            channel="incident-20261120", channel_id=channel_id)
    services = SimpleNamespace(slack=IncidentSlack(make_web_client("xoxb-test", base_url=fake.base_url, max_retries=1,
                                                                   backoff_factor=0.0)), pager=None)
    at = RECOVERED + dt.timedelta(hours=24, minutes=30)
    assert len(remind(at, runbook, ledger, services)["sent"]) == 1
    [message] = fake.all_messages(channel_id)
    assert message_key(message) == f"{incident['id']}:postmortem_reminder:{channel_id}"
    assert message["text"].startswith(f"<@U0YAMADA1> 【ポストモーテムのリマインド】P1 {incident['id']}")
    assert remind(at, runbook, ledger, services)["sent"] == []
    assert len(fake.all_messages(channel_id)) == 1


class BrokenChannelSlack(RecordingSlack):
    """Slack where some conversations answer with an error."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__()
        self.errors = errors

    def post(self, channel: str, text: str, **kwargs):
        if channel in self.errors:
            from incident_ops.clients.slack import SlackError

            raise SlackError("chat.postMessage", self.errors[channel])
        return super().post(channel, text, **kwargs)


def test_an_archived_incident_channel_falls_back_to_dev_team(runbook: Runbook, ledger: Ledger,
                                                             incidents: dict[str, dict]) -> None:
    slack = BrokenChannelSlack({"C0INC1120": "is_archived"})
    result = remind(RECOVERED + dt.timedelta(hours=25), runbook, ledger, SimpleNamespace(slack=slack, pager=None))
    p1 = incidents["p1"]["id"]
    [item] = [i for i in result["sent"] if i["incident_id"] == p1]
    assert item["targets"] == ["#dev-team", "U0TANAKA1"]
    assert [m["key"] for m in slack.to("#dev-team") if m["key"].startswith(p1)] == [f"{p1}:postmortem_reminder:#dev-team"]


def test_one_failing_incident_does_not_hold_back_the_others(runbook: Runbook, ledger: Ledger,
                                                            incidents: dict[str, dict]) -> None:
    slack = BrokenChannelSlack({"U0TANAKA1": "user_not_found"})
    at = RECOVERED + dt.timedelta(hours=25)
    with pytest.raises(RuntimeError, match=rf"1 postmortem reminder\(s\) failed .*{incidents['p1']['id']} \(reminder\)"):
        remind(at, runbook, ledger, SimpleNamespace(slack=slack, pager=None))
    p2 = incidents["p2"]["id"]
    assert [e["idempotency_key"] for e in ledger.events(p2) if e["kind"] == "postmortem_reminder"] == ["postmortem_reminder"]
    # The retry, once Slack is fixed, sends only what is left.
    slack.errors.clear()
    retry = remind(at, runbook, ledger, SimpleNamespace(slack=slack, pager=None))
    assert [i["incident_id"] for i in retry["sent"]] == [incidents["p1"]["id"]]
    assert len([m for m in slack.messages if m["key"].startswith(p2)]) == 2


def test_the_shipped_runbook_reminds_and_is_due_on_business_days(runbook: Runbook, ledger: Ledger,
                                                                 slack: RecordingSlack, services) -> None:
    from incident_ops.core.deadlines import postmortem_schedule
    from incident_ops.core.runbook import load_runbook

    shipped = load_runbook()
    # What announce_recovery records: the due time from postmortem_schedule (Monday 11/23 is a holiday).
    due = postmortem_schedule(shipped, "P1", RECOVERED).due_at
    assert due == jst(2026, 11, 24, 18, 0)
    item = add_incident(ledger, severity="P1", detected=RECOVERED - dt.timedelta(hours=2), recovered=RECOVERED,
                        channel="incident-20261120", channel_id="C0INC1120")
    ledger.update(item["id"], RECOVERED, postmortem_due_at=due)
    sent = []
    for at in hourly(RECOVERED, 24 * 5):
        sent += [(i["stage"], at) for i in remind(at, shipped, ledger, services)["sent"]]
    assert sent == [("reminder", jst(2026, 11, 24, 9)), ("overdue", jst(2026, 11, 24, 18))]
    assert "作成期限: 11/24(火) 18:00（復旧から48時間後（11/22(日) 22:30）が業務時間外のため翌営業日の終業時刻）" in (
        slack.to("C0INC1120")[0]["text"].splitlines())
