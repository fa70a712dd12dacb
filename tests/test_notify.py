"""Fan-out with fallback, against the local fakes: Slack Web API, PagerDuty over HTTPS, an SMTP server."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from incident_ops.clients.email import send_email
from incident_ops.clients.pagerduty import IncidentPager
from incident_ops.clients.slack import IncidentSlack, make_web_client
from incident_ops.notify import DeliveryReport, deliver, notice_key
from tests.clients.conftest import (
    FakePagerDuty,
    FakeSlack,
    SmtpSink,
)

INCIDENT = "INC-20260105-001"
EMERGENCY = "ops@peoplebooster.com"
DECLARATION = "@channel 【P1インシデント発生】\n発生時刻: 22:05\n症状: 全ユーザーがアクセス不可"


@pytest.fixture
def slack(fake_slack: FakeSlack) -> IncidentSlack:
    return IncidentSlack(make_web_client("xoxb-test", base_url=fake_slack.base_url, max_retries=2, backoff_factor=0.0))


@pytest.fixture
def mailer(smtp: tuple[SmtpSink, int]) -> Any:
    return functools.partial(send_email, "127.0.0.1", smtp[1], "incident-bot@peoplebooster.com")


CTO = {"id": "cto", "name": "佐藤 CTO", "slack_user_id": "U0CTO0001", "pagerduty_user_id": "PCTO001",
       "email": "cto@peoplebooster.com"}
LEAD = {"id": "dev_lead", "name": "鈴木 開発リード", "slack_user_id": "U0LEAD001", "pagerduty_user_id": "PLEAD01",
        "email": "dev-lead@peoplebooster.com"}
ONCALL = {"id": "tanaka", "name": "田中", "slack_user_id": "U0ENG0001", "pagerduty_user_id": "PENG001",
          "email": "tanaka@peoplebooster.com"}


def notice(target: str, via: str, recipients: list[dict[str, Any]] | None = None, channel: str | None = None,
           severity: str = "P1") -> dict[str, Any]:
    return {"target": target, "via": via, "recipients": recipients or [], "channel": channel, "text": DECLARATION,
            "dedup_key": INCIDENT, "severity": severity, "summary": f"【{severity}】全ユーザーがアクセス不可"}


def p1_plan(channel: str) -> list[dict[str, Any]]:
    return [
        notice("oncall", "pagerduty", [ONCALL]),
        notice("cto", "phone", [CTO]),
        notice("dev_team", "slack", channel=channel),
    ]


def test_everything_delivered(fake_slack: FakeSlack, slack: IncidentSlack, fake_pd: FakePagerDuty,
                              pager: IncidentPager, smtp: tuple[SmtpSink, int], mailer: Any) -> None:
    channel = fake_slack.add_channel("incident-20260105")

    report = deliver(p1_plan(channel), slack=slack, pager=pager, email_sender=mailer, emergency_email=EMERGENCY,
                     pd_requester_id="PBOT001", sleep=lambda _: None)

    assert isinstance(report, DeliveryReport) and report.ok and not report.email_fallback_used
    assert [(r["target"], r["via"], r["ok"], r["error"]) for r in report.results] == [
        ("oncall", "pagerduty", True, None), ("cto", "phone", True, None), ("dev_team", "slack", True, None),
    ]
    assert [(e["event_action"], e["dedup_key"], e["payload"]["severity"]) for e in fake_pd.events] == [
        ("trigger", INCIDENT, "critical"),
    ]
    assert [(r["incident_id"], r["responder_request_targets"][0]["responder_request_target"]["id"])
            for r in fake_pd.responder_requests] == [(fake_pd.incidents[INCIDENT]["id"], "PCTO001")]
    assert [m["text"] for m in fake_slack.all_messages(channel)] == [DECLARATION]
    assert smtp[0].envelopes == []
    assert report.to_dict()["results"][2]["channel"] == channel


def test_rerun_does_not_post_twice(fake_slack: FakeSlack, slack: IncidentSlack, fake_pd: FakePagerDuty,
                                   pager: IncidentPager) -> None:
    channel = fake_slack.add_channel("incident-20260105")
    plan = [notice("dev_team", "slack", channel=channel), notice("oncall", "pagerduty", [ONCALL])]
    deliver(plan, slack=slack, pager=pager, emergency_email=EMERGENCY)
    deliver(plan, slack=slack, pager=pager, emergency_email=EMERGENCY)

    assert len(fake_slack.all_messages(channel)) == 1
    assert {e["dedup_key"] for e in fake_pd.events} == {INCIDENT}  # PagerDuty dedups on the key
    assert len(fake_pd.incidents) == 1


def test_slack_down_pagerduty_ok_pages_without_fallback(
    fake_slack: FakeSlack, slack: IncidentSlack, fake_pd: FakePagerDuty, pager: IncidentPager,
    smtp: tuple[SmtpSink, int], mailer: Any,
) -> None:
    channel = fake_slack.add_channel("incident-20260105")
    fake_slack.down = True

    report = deliver(p1_plan(channel), slack=slack, pager=pager, email_sender=mailer, emergency_email=EMERGENCY,
                     pd_requester_id="PBOT001", sleep=lambda _: None)

    by_via = {r["via"]: r for r in report.results}
    assert by_via["pagerduty"]["ok"] and by_via["phone"]["ok"]
    assert not by_via["slack"]["ok"] and "HTTP 500" in by_via["slack"]["error"]
    assert not report.email_fallback_used and smtp[0].envelopes == []
    assert [e["event_action"] for e in fake_pd.events] == ["trigger"]
    assert len(fake_pd.responder_requests) == 1
    assert fake_slack.all_messages(channel) == []
    assert len(fake_slack.calls("conversations.history")) >= 1  # Slack was really tried (and retried)


def test_both_down_sends_the_emergency_email(
    fake_slack: FakeSlack, slack: IncidentSlack, fake_pd: FakePagerDuty, pager: IncidentPager,
    smtp: tuple[SmtpSink, int], mailer: Any,
) -> None:
    channel = fake_slack.add_channel("incident-20260105")
    fake_slack.down = True
    fake_pd.down = True

    report = deliver(p1_plan(channel), slack=slack, pager=pager, email_sender=mailer, emergency_email=EMERGENCY,
                     pd_requester_id="PBOT001", sleep=lambda _: None)

    assert [r["ok"] for r in report.results] == [False, False, False]
    assert report.email_fallback_used and report.email_fallback_ok and report.email_fallback_error is None
    sink = smtp[0]
    assert len(sink.envelopes) == 1 and sink.envelopes[0].rcpt_tos == [EMERGENCY]
    message = sink.messages[0]
    assert "【P1】全ユーザーがアクセス不可" in message["Subject"]
    body = message.get_content().replace("\r\n", "\n")
    assert DECLARATION in body
    assert "- オンコール担当（PagerDuty）: " in body and "- 開発チーム（Slack）: " in body
    assert len(fake_pd.calls("/v2/enqueue")) >= 2  # PagerDuty was really tried (and retried)
    assert report.reached_anyone


def test_slack_only_plan_falls_back_when_slack_is_down(
    fake_slack: FakeSlack, slack: IncidentSlack, smtp: tuple[SmtpSink, int], mailer: Any
) -> None:
    channel = fake_slack.add_channel("dev-team")
    fake_slack.down = True

    report = deliver([notice("dev_team", "slack", channel=channel, severity="P3")], slack=slack,
                     email_sender=mailer, emergency_email=EMERGENCY)

    assert report.email_fallback_used and report.email_fallback_ok
    assert smtp[0].envelopes[0].rcpt_tos == [EMERGENCY]


def test_missing_clients_count_as_failures(smtp: tuple[SmtpSink, int], mailer: Any) -> None:
    report = deliver(p1_plan("C00000001"), email_sender=mailer, emergency_email=EMERGENCY)

    assert all("configured" in r["error"] for r in report.results)
    assert report.email_fallback_used and len(smtp[0].envelopes) == 1


def test_fallback_without_email_sender_is_reported() -> None:
    report = deliver([notice("dev_team", "slack", channel="C1")], emergency_email=EMERGENCY)
    assert report.email_fallback_used and report.email_fallback_ok is False
    assert "no e-mail sender" in report.email_fallback_error
    assert not report.reached_anyone


def test_fallback_email_failure_is_reported_not_raised() -> None:
    def broken(to: list[str], subject: str, body: str) -> None:
        raise OSError("SMTP unreachable")

    report = deliver([notice("dev_team", "slack", channel="C1")], email_sender=broken, emergency_email=EMERGENCY)
    assert report.email_fallback_ok is False and "SMTP unreachable" in report.email_fallback_error


def test_slack_to_a_person_invites_and_mentions_in_the_incident_channel(
    fake_slack: FakeSlack, slack: IncidentSlack
) -> None:
    channel = fake_slack.add_channel("incident-20260105")

    report = deliver([notice("dev_lead", "slack", [LEAD], severity="P2")], slack=slack, emergency_email=EMERGENCY,
                     default_channel=channel)

    assert report.ok
    assert [r.params["users"] for r in fake_slack.calls("conversations.invite")] == ["U0LEAD001"]
    assert fake_slack.all_messages(channel)[0]["text"] == f"<@U0LEAD001> {DECLARATION}"


def test_slack_to_a_person_without_channel_is_a_direct_message(fake_slack: FakeSlack, slack: IncidentSlack) -> None:
    report = deliver([notice("dev_lead", "slack", [LEAD], severity="P2")], slack=slack, emergency_email=EMERGENCY)

    assert report.ok and report.results[0]["direct_messages"] == ["D0LEAD001"]
    assert [m["text"] for m in fake_slack.all_messages("D0LEAD001")] == [DECLARATION]


def test_phone_before_any_page_opens_the_incident_first(fake_pd: FakePagerDuty, pager: IncidentPager) -> None:
    report = deliver([notice("cto", "phone", [CTO])], pager=pager, emergency_email=EMERGENCY,
                     pd_requester_id="PBOT001", sleep=lambda _: None)

    assert report.ok
    assert [e["event_action"] for e in fake_pd.events] == ["trigger"]
    assert fake_pd.responder_requests[0]["requester_id"] == "PBOT001"


def test_phone_needs_a_requester(fake_pd: FakePagerDuty, pager: IncidentPager) -> None:
    report = deliver([notice("cto", "phone", [CTO])], pager=pager, emergency_email=EMERGENCY)
    assert not report.results[0]["ok"] and "pd_requester_id" in report.results[0]["error"]
    assert fake_pd.responder_requests == []


def test_email_notice_and_unknown_channel(smtp: tuple[SmtpSink, int], mailer: Any) -> None:
    report = deliver([notice("cto", "fax", [CTO]), notice("cto", "email", [CTO])], email_sender=mailer,
                     emergency_email=EMERGENCY)

    assert [r["ok"] for r in report.results] == [False, True]
    assert "unknown channel 'fax'" in report.results[0]["error"]
    assert smtp[0].envelopes[0].rcpt_tos == ["cto@peoplebooster.com"]
    assert not report.email_fallback_used  # no Slack/PagerDuty notice was planned


def test_notice_key_is_derived_from_the_incident_and_content() -> None:
    first = notice_key(notice("dev_team", "slack", channel="C1"))
    assert first.startswith(f"{INCIDENT}:dev_team:slack:")
    assert first == notice_key(notice("dev_team", "slack", channel="C1"))
    assert first != notice_key({**notice("dev_team", "slack", channel="C1"), "text": "other"})
    assert notice_key({"idempotency_key": "explicit"}) == "explicit"
    with pytest.raises(ValueError, match="dedup_key"):
        notice_key({"target": "x", "text": "t"})


class RecordingPager:
    """IncidentPager's trigger, recorded (no server)."""

    def __init__(self) -> None:
        self.triggers: list[tuple[str, str]] = []

    def trigger(self, dedup_key: str, summary: str, severity: str, source: str, **kwargs: Any) -> str:
        self.triggers.append((dedup_key, severity))
        return dedup_key


@pytest.mark.parametrize(("urgency", "sent"), [(None, "P3"), ("low", "warning"), ("high", "error")])
def test_a_notice_urgency_picks_the_pagerduty_severity(urgency: str | None, sent: str) -> None:
    # The P3 night page asks for a low urgency: Events API v2 payload.severity "warning", which
    # PagerDuty opens as a low-urgency incident (no phone call) when urgency follows the severity.
    pager = RecordingPager()
    page = {**notice("oncall", "pagerduty", [ONCALL], severity="P3"), "urgency": urgency}
    report = deliver([page], pager=pager, emergency_email=EMERGENCY)
    assert report.ok and pager.triggers == [(INCIDENT, sent)]
    assert report.results[0].get("urgency") == urgency


def test_an_unknown_urgency_is_a_failed_notice() -> None:
    page = {**notice("oncall", "pagerduty", [ONCALL], severity="P3"), "urgency": "medium"}
    report = deliver([page], pager=RecordingPager(), emergency_email=EMERGENCY)
    assert not report.ok and "unknown urgency 'medium'" in report.results[0]["error"]


def test_the_emergency_email_reads_as_typed_not_as_slack_markup(
    fake_slack: FakeSlack, slack: IncidentSlack, smtp: tuple[SmtpSink, int], mailer: Any
) -> None:
    # The notices' text is Slack mrkdwn: a reporter's `<b> & c` escaped, mentions as ids, links in <…|…>.
    slack_text = ("<!channel> <@U0ENG0001> 【P1インシデント発生】\n症状: a &lt;b&gt; &amp; c\n"
                  "ログ: <https://logs.example.com/x?a=1&amp;b=2|エラーログ>")
    fake_slack.down = True
    plan = [{**notice("oncall", "slack", [ONCALL], channel="C1"), "text": slack_text}]

    report = deliver(plan, slack=slack, email_sender=mailer, emergency_email=EMERGENCY)

    assert report.email_fallback_used and report.email_fallback_ok
    body = smtp[0].messages[0].get_content().replace("\r\n", "\n")
    assert "@channel @田中 【P1インシデント発生】\n症状: a <b> & c\n" in body
    assert "ログ: エラーログ (https://logs.example.com/x?a=1&b=2)" in body
    assert "&lt;" not in body and "&amp;" not in body and "<@" not in body and "<!" not in body
