"""The sandbox plays Slack's and PagerDuty's side: signed deliveries to the automation's webhooks.

A small HTTP receiver in the test stands in for the webhooks; every signature is checked here with
an independent verifier (hmac over Slack's "v0:<ts>:<body>", PagerDuty's raw body), not the
sandbox's own code.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, parse_qsl

import pytest
import requests
from sandbox.server import Sandbox
from slack_sdk import WebClient

from .helpers import Receiver, get, post, wait_for

pytestmark = pytest.mark.server

SLACK_SECRET = "test-slack-signing-secret"
PD_SECRET = "test-pagerduty-webhook-secret"
TASK_ID = "recover.choose_scenario"
OPTIONS = ["deploy: 直前のデプロイを戻す", "resource: スケールアウト"]


@pytest.fixture
def receiver(sb_light: Sandbox) -> Iterator[Receiver]:
    with Receiver() as server:
        sb_light.client.set_webhooks(slack_url=f"{server.url}/incidents/webhooks/slack",
                                     pagerduty_url=f"{server.url}/incidents/webhooks/pagerduty",
                                     slack_signing_secret=SLACK_SECRET, pagerduty_webhook_secrets=[PD_SECRET],
                                     pagerduty_retry_delays=[0.2, 0.2, 0.2])
        yield server


@pytest.fixture
def slack(sb_light: Sandbox) -> WebClient:
    return WebClient(token="xoxb-sandbox-token", base_url=sb_light.endpoints["slack_api"], timeout=10)


# --- independent verifiers (what a receiver does, written from Slack's and PagerDuty's docs) ------


def slack_signature_valid(secret: str, headers: dict[str, str], body: bytes, now: float | None = None) -> bool:
    timestamp = headers.get("x-slack-request-timestamp", "")
    if not timestamp.isdigit() or abs((now or time.time()) - int(timestamp)) > 300:
        return False
    expected = "v0=" + hmac.new(secret.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers.get("x-slack-signature", ""))


def pagerduty_signature_valid(secret: str, headers: dict[str, str], body: bytes) -> bool:
    expected = "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, s.strip()) for s in headers.get("x-pagerduty-signature", "").split(","))


def decision_message(slack: WebClient, channel: str, incident_id: str = "INC-20261201-001") -> dict[str, Any]:
    """A waiting decision's message as the automation posts it (the contract's Block Kit)."""
    def value(option: str) -> str:
        return json.dumps({"incident_id": incident_id, "dag_id": "incident_response", "run_id": f"incident__{incident_id}",
                           "task_id": TASK_ID, "map_index": -1, "option": option}, ensure_ascii=False)

    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "*復旧シナリオを選んでください*"}},
        {"type": "actions", "block_id": "incident_ops.decision", "elements": [
            {"type": "button", "action_id": f"decision:{n}", "text": {"type": "plain_text", "text": option},
             "value": value(option), **({"style": "primary"} if n == 0 else {})}
            for n, option in enumerate(OPTIONS)
        ]},
    ]
    return slack.chat_postMessage(channel=channel, text="復旧シナリオを選んでください", blocks=blocks)


# --- Slack -------------------------------------------------------------------------------------


def test_a_click_is_a_signed_block_actions_payload(sb_light: Sandbox, receiver: Receiver, slack: WebClient, runbook) -> None:
    channel = slack.conversations_create(name="incident-20261201")["channel"]
    posted = decision_message(slack, channel["id"])
    # chat.postMessage kept the blocks, so the buttons are there to click
    assert sb_light.client.slack_messages(channel="incident-20261201")[0]["blocks"][1]["elements"][1]["action_id"] == "decision:1"
    oncall = runbook.oncall.roster[1]

    delivery = sb_light.client.click_decision(TASK_ID, OPTIONS[1], user_id=oncall.slack_user_id)
    assert delivery["status"] == 200 and delivery["by"] == oncall.name
    assert len(receiver.requests) == 1
    sent = receiver.requests[0]
    assert sent["path"] == "/incidents/webhooks/slack"
    assert sent["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert slack_signature_valid(SLACK_SECRET, sent["headers"], sent["body"])
    assert not slack_signature_valid("another-secret", sent["headers"], sent["body"])  # a wrong secret fails
    assert not slack_signature_valid(SLACK_SECRET, sent["headers"], sent["body"] + b"x")  # so does a changed body
    assert not slack_signature_valid(SLACK_SECRET, sent["headers"], sent["body"], now=time.time() + 400)  # and a stale one

    form = parse_qs(sent["body"].decode())
    assert list(form) == ["payload"]
    payload = json.loads(form["payload"][0])
    assert payload["type"] == "block_actions"
    assert payload["user"] == {"id": oncall.slack_user_id, "username": oncall.email.split("@")[0],
                               "name": oncall.email.split("@")[0], "team_id": payload["team"]["id"]}
    assert payload["team"]["domain"] and payload["api_app_id"] and payload["token"] and payload["trigger_id"]
    assert payload["container"] == {"type": "message", "message_ts": posted["ts"], "channel_id": channel["id"], "is_ephemeral": False}
    assert payload["channel"] == {"id": channel["id"], "name": "incident-20261201"}
    assert payload["message"]["ts"] == posted["ts"] and payload["message"]["blocks"][1]["block_id"] == "incident_ops.decision"
    (action,) = payload["actions"]
    assert action["action_id"] == "decision:1" and action["block_id"] == "incident_ops.decision" and action["type"] == "button"
    assert action["text"] == {"type": "plain_text", "text": OPTIONS[1]} and float(action["action_ts"]) > 0
    value = json.loads(action["value"])
    assert value["task_id"] == TASK_ID and value["option"] == OPTIONS[1] and value["map_index"] == -1
    assert payload["response_url"].startswith(sb_light.endpoints["http"])

    recorded = sb_light.client.deliveries("slack.block_actions")
    assert [(d["action_id"], d["user_id"], d["status"]) for d in recorded] == [("decision:1", oncall.slack_user_id, 200)]

    # the app answers through the response_url: an ephemeral note to the clicker, then the message replaced
    note = requests.post(payload["response_url"], json={"text": "受け付けました", "response_type": "ephemeral"}, timeout=10)
    assert note.status_code == 200 and note.json() == {"ok": True}
    replaced = requests.post(payload["response_url"], json={"replace_original": True, "text": "選択済み",
                                                            "blocks": [{"type": "context", "elements": []}]}, timeout=10)
    assert replaced.status_code == 200
    messages = sb_light.client.slack_messages(channel="incident-20261201")
    assert messages[0]["text"] == "選択済み" and messages[0]["blocks"] == [{"type": "context", "elements": []}] and messages[0]["edited"]
    assert [(m["text"], m["to_user"]) for m in messages if m["ephemeral"]] == [("受け付けました", oncall.slack_user_id)]
    assert [r["effect"].split()[0] for r in sb_light.client.slack_responses()] == ["ephemeral", "replaced"]
    for _ in range(3):
        requests.post(payload["response_url"], json={"text": "x"}, timeout=10)
    assert requests.post(payload["response_url"], json={"text": "x"}, timeout=10).json() == {"ok": False, "error": "used_url"}


def test_the_signing_secret_is_the_configured_one(sb_light: Sandbox, receiver: Receiver, slack: WebClient, runbook) -> None:
    channel = slack.conversations_create(name="incident-20261202")["channel"]["id"]
    posted = decision_message(slack, channel)
    sb_light.client.set_webhooks(slack_signing_secret="rotated-secret")
    delivery = sb_light.client.slack_click(channel, posted["ts"], "decision:0", runbook.oncall.roster[0].slack_user_id)
    sent = receiver.requests[-1]
    assert delivery["status"] == 200
    assert slack_signature_valid("rotated-secret", sent["headers"], sent["body"])
    assert not slack_signature_valid(SLACK_SECRET, sent["headers"], sent["body"])
    # what the delivery records is exactly what was sent
    assert delivery["body"].encode() == sent["body"] and delivery["headers"]["X-Slack-Signature"] == sent["headers"]["x-slack-signature"]


def test_clicks_that_cannot_be_made(sb_light: Sandbox, receiver: Receiver, slack: WebClient, runbook) -> None:
    channel = slack.conversations_create(name="incident-20261203")["channel"]["id"]
    posted = decision_message(slack, channel)
    user = runbook.oncall.roster[0].slack_user_id
    assert post(sb_light, "/_sandbox/slack/click", json={"channel": channel, "ts": posted["ts"], "action_id": "nope", "user_id": user}).json() == {"error": "action_not_found"}
    assert post(sb_light, "/_sandbox/slack/click", json={"channel": channel, "ts": "1.000001", "action_id": "decision:0", "user_id": user}).status_code == 404
    assert post(sb_light, "/_sandbox/slack/click", json={"channel": channel, "ts": posted["ts"], "action_id": "decision:0", "user_id": "U0NOBODY"}).json() == {"error": "user_not_found"}
    assert receiver.requests == []
    with pytest.raises(LookupError):
        sb_light.client.click_decision("recover.approve_rollback", None, user_id=user)

    receiver.default = (500, {"error": "boom"})
    failed = sb_light.client.slack_click(channel, posted["ts"], "decision:0", user)
    assert failed["status"] == 500 and failed["answer"] == {"error": "boom"} and len(failed["attempts"]) == 1  # Slack does not retry

    sb_light.client.set_webhooks(slack_url=None)
    nowhere = sb_light.client.slack_click(channel, posted["ts"], "decision:0", user)
    assert nowhere["status"] is None and "no Slack request URL" in nowhere["error"]


def test_slash_command_is_signed_and_its_answer_shown(sb_light: Sandbox, receiver: Receiver, runbook) -> None:
    person = runbook.contacts.people["dev_lead"]
    receiver.script = [(200, {"response_type": "ephemeral", "text": "INC-20261201-002 (P2) を起票しました"}), (500, None)]
    delivery = sb_light.client.slack_command("ログインできない", user_id=person.slack_user_id)
    assert delivery["status"] == 200
    sent = receiver.requests[0]
    assert slack_signature_valid(SLACK_SECRET, sent["headers"], sent["body"])
    fields = dict(parse_qsl(sent["body"].decode()))
    assert {"token", "team_id", "team_domain", "channel_id", "channel_name", "user_id", "user_name", "command", "text",
            "api_app_id", "response_url", "trigger_id"} <= set(fields)
    assert fields["command"] == "/incident" and fields["text"] == "ログインできない"
    assert fields["user_id"] == person.slack_user_id and fields["channel_name"] == "infra-support"
    shown = [m for m in sb_light.client.slack_messages(channel="infra-support") if m["ephemeral"]]
    assert [(m["text"], m["to_user"]) for m in shown] == [("INC-20261201-002 (P2) を起票しました", person.slack_user_id)]

    failed = sb_light.client.slack_command("もう一度", user_id=person.slack_user_id, channel="dev-team")
    assert failed["status"] == 500
    shown = [m for m in sb_light.client.slack_messages(channel="dev-team") if m["ephemeral"]]
    assert shown[-1]["text"] == '/incident failed with the error "http_service_error"' and shown[-1]["to_user"] == person.slack_user_id


def test_ephemeral_messages_are_recorded_and_shown_to_their_person(sb_light: Sandbox, slack: WebClient, runbook) -> None:
    channel = slack.conversations_create(name="incident-20261204")["channel"]["id"]
    person = runbook.oncall.roster[2]
    slack.conversations_invite(channel=channel, users=person.slack_user_id)
    slack.chat_postEphemeral(channel=channel, user=person.slack_user_id, text="あなたは回答できません")
    (message,) = sb_light.client.slack_messages(channel="incident-20261204")
    assert message["ephemeral"] and message["to_user"] == person.slack_user_id and message["text"] == "あなたは回答できません"
    page = get(sb_light, "/_sandbox/").text
    assert "あなたは回答できません" in page and f"only visible to {person.name}" in page


def test_the_page_renders_buttons_and_clicks_as_the_chosen_person(sb_light: Sandbox, receiver: Receiver, slack: WebClient, runbook) -> None:
    channel = slack.conversations_create(name="incident-20261205")["channel"]["id"]
    posted = decision_message(slack, channel)
    page = get(sb_light, "/_sandbox/").text
    assert 'action="/_sandbox/slack/click"' in page and f'value="{posted["ts"]}"' in page
    assert all(option in page for option in OPTIONS) and 'name="action_id" value="decision:1"' in page
    oncall_now = sb_light.client.oncall_person()
    assert f'<option value="{oncall_now["slack_user_id"]}" selected>' in page  # the on-call engineer by default
    assert all(f'<option value="{p.slack_user_id}"' in page for p in [*runbook.oncall.roster, *runbook.contacts.people.values()])

    chosen = runbook.contacts.people["cto"].slack_user_id
    # the page's button is a form: it clicks, then returns to the page as the same person
    clicked = post(sb_light, "/_sandbox/slack/click", allow_redirects=False,
                   data={"channel": channel, "ts": posted["ts"], "action_id": "decision:1", "user_id": chosen})
    assert clicked.status_code == 303 and clicked.headers["location"] == f"/_sandbox/?as={chosen}"
    payload = json.loads(parse_qs(receiver.requests[-1]["body"].decode())["payload"][0])
    assert payload["user"]["id"] == chosen and payload["actions"][0]["action_id"] == "decision:1"
    assert "slack.block_actions" in get(sb_light, f"/_sandbox/?as={chosen}").text
    assert 'http-equiv="refresh"' not in get(sb_light, "/_sandbox/?refresh=0").text


# --- PagerDuty ---------------------------------------------------------------------------------


def _trigger(sb: Sandbox, dedup_key: str) -> dict[str, Any]:
    response = requests.post(f"{sb.endpoints['pagerduty']}/v2/enqueue", verify=sb.endpoints["ca_bundle"], timeout=10,
                             json={"routing_key": "R" * 32, "event_action": "trigger", "dedup_key": dedup_key,
                                   "payload": {"summary": "【P1】全ユーザーがアクセス不可", "source": "peoplebooster-production",
                                               "severity": "critical"}})
    assert response.status_code == 202
    return next(i for i in sb.client.pagerduty_incidents() if i["incident_key"] == dedup_key)


def test_acknowledge_sends_a_signed_v3_webhook_retried_after_a_500(sb_light: Sandbox, receiver: Receiver, runbook) -> None:
    incident = _trigger(sb_light, "INC-20261201-001")
    person = runbook.oncall.roster[1]
    receiver.script = [(500, {"error": "try later"})]
    acked = sb_light.client.acknowledge("INC-20261201-001", user=person.slack_user_id)
    assert acked["status"] == "acknowledged"

    (delivery,) = sb_light.client.wait_deliveries("pagerduty", 1, timeout=15)
    assert [a["status"] for a in delivery["attempts"]] == [500, 200] and delivery["status"] == 200
    assert len(receiver.requests) == 2 and receiver.requests[0]["body"] == receiver.requests[1]["body"]
    assert receiver.requests[1]["at"] - receiver.requests[0]["at"] >= 0.15  # retried after a pause
    sent = receiver.requests[1]
    assert sent["path"] == "/incidents/webhooks/pagerduty"
    headers = sent["headers"]
    assert headers["content-type"] == "application/json" and headers["user-agent"] == "PagerDuty-Webhook/V3.0"
    assert headers["x-webhook-id"] and headers["x-webhook-subscription"]
    assert headers["x-pagerduty-signature"].startswith("v1=")
    assert pagerduty_signature_valid(PD_SECRET, headers, sent["body"])
    assert not pagerduty_signature_valid("another-secret", headers, sent["body"])
    assert not pagerduty_signature_valid(PD_SECRET, headers, sent["body"].replace(b"acknowledged", b"resolved"))

    event = json.loads(sent["body"])["event"]
    assert set(event) == {"id", "event_type", "resource_type", "occurred_at", "agent", "client", "data"}
    assert event["event_type"] == "incident.acknowledged" and event["resource_type"] == "incident" and event["client"] is None
    assert event["occurred_at"].endswith("Z") and len(event["id"]) == 26
    assert event["agent"]["id"] == person.pagerduty_user_id and event["agent"]["type"] == "user_reference"
    assert event["agent"]["summary"] == person.name and event["agent"]["self"] and event["agent"]["html_url"]
    data = event["data"]
    assert data["incident_key"] == "INC-20261201-001" and data["id"] == incident["id"] and data["status"] == "acknowledged"
    assert data["type"] == "incident" and data["number"] == incident["incident_number"] and data["title"] == incident["title"]
    assert {"self", "html_url", "created_at", "service", "assignees", "escalation_policy", "teams", "priority", "urgency",
            "conference_bridge", "resolve_reason"} <= set(data)
    assert data["assignees"][0]["type"] == "user_reference" and data["urgency"] == "high"

    # acknowledging again changes nothing, and sends nothing
    sb_light.client.acknowledge("INC-20261201-001", user=person.pagerduty_user_id)
    time.sleep(0.3)
    assert len(sb_light.client.deliveries("pagerduty")) == 1


def test_rest_transitions_send_webhooks_without_holding_the_answer(sb_light: Sandbox, receiver: Receiver, runbook) -> None:
    incident = _trigger(sb_light, "INC-20261201-003")
    receiver.delay = 1.5  # a slow receiver does not slow PagerDuty's REST answer
    person = runbook.oncall.roster[0]
    rest = {"Authorization": "Token token=sandbox", "From": person.email}
    url = f"{sb_light.endpoints['pagerduty']}/incidents/{incident['id']}"
    started = time.monotonic()
    acked = requests.put(url, json={"incident": {"type": "incident_reference", "status": "acknowledged"}}, headers=rest,
                         verify=sb_light.endpoints["ca_bundle"], timeout=10)
    resolved = requests.put(url, json={"incident": {"type": "incident_reference", "status": "resolved"}}, headers=rest,
                            verify=sb_light.endpoints["ca_bundle"], timeout=10)
    assert time.monotonic() - started < 1.2
    assert acked.json()["incident"]["status"] == "acknowledged" and resolved.json()["incident"]["status"] == "resolved"
    deliveries = sb_light.client.wait_deliveries("pagerduty", 2, timeout=15)
    assert [d["event_type"] for d in deliveries] == ["incident.acknowledged", "incident.resolved"]  # in order
    events = [json.loads(r["body"])["event"] for r in receiver.requests]
    assert [e["event_type"] for e in events] == ["incident.acknowledged", "incident.resolved"]
    assert all(e["agent"]["id"] == person.pagerduty_user_id and e["data"]["incident_key"] == "INC-20261201-003" for e in events)
    assert events[1]["data"]["status"] == "resolved"
    assert all(pagerduty_signature_valid(PD_SECRET, r["headers"], r["body"]) for r in receiver.requests)


def test_events_api_and_reassign_and_a_secret_rotation(sb_light: Sandbox, receiver: Receiver, runbook) -> None:
    sb_light.client.set_webhooks(pagerduty_webhook_secrets=["old-secret", "new-secret"])
    _trigger(sb_light, "INC-20261201-004")
    sb_light.client.pagerduty_reassign("INC-20261201-004", assignee="yamada", user="tanaka")
    response = requests.post(f"{sb_light.endpoints['pagerduty']}/v2/enqueue", verify=sb_light.endpoints["ca_bundle"], timeout=10,
                             json={"routing_key": "R" * 32, "event_action": "resolve", "dedup_key": "INC-20261201-004"})
    assert response.status_code == 202
    deliveries = sb_light.client.wait_deliveries("pagerduty", 2, timeout=15)
    assert [d["event_type"] for d in deliveries] == ["incident.reassigned", "incident.resolved"]
    reassigned, resolved = (json.loads(r["body"])["event"] for r in receiver.requests)
    assert reassigned["data"]["assignees"][0]["id"] == runbook.oncall.roster[1].pagerduty_user_id
    assert reassigned["agent"]["id"] == runbook.oncall.roster[0].pagerduty_user_id
    assert resolved["agent"]["type"] == "service_reference"  # resolved through the Events API by the integration
    for sent in receiver.requests:
        signatures = sent["headers"]["x-pagerduty-signature"].split(",")
        assert len(signatures) == 2
        assert pagerduty_signature_valid("old-secret", sent["headers"], sent["body"])
        assert pagerduty_signature_valid("new-secret", sent["headers"], sent["body"])


def test_page_acknowledges_as_the_chosen_person(sb_light: Sandbox, receiver: Receiver, runbook) -> None:
    _trigger(sb_light, "INC-20261201-005")
    person = runbook.oncall.roster[3]
    page = get(sb_light, f"/_sandbox/?as={person.slack_user_id}").text
    assert f"acknowledge as {person.name}" in page
    clicked = post(sb_light, "/_sandbox/pagerduty/acknowledge", allow_redirects=False,
                   data={"dedup_key": "INC-20261201-005", "user": person.slack_user_id, "as": person.slack_user_id})
    assert clicked.status_code == 303
    (delivery,) = sb_light.client.wait_deliveries("pagerduty", 1, timeout=15)
    assert delivery["by"] == person.name and delivery["status"] == 200


def test_a_failing_receiver_is_retried_a_few_times_then_given_up(sb_light: Sandbox, receiver: Receiver) -> None:
    receiver.default = (503, None)
    _trigger(sb_light, "INC-20261201-006")
    sb_light.client.acknowledge("INC-20261201-006")
    (delivery,) = sb_light.client.wait_deliveries("pagerduty", 1, timeout=15)
    assert [a["status"] for a in delivery["attempts"]] == [503] * 4 and delivery["status"] == 503
    assert len(receiver.requests) == 4


def test_no_subscription_no_delivery(sb_light: Sandbox) -> None:
    assert sb_light.client.webhooks()["pagerduty_url"] is None  # the test sandbox starts with none
    _trigger(sb_light, "INC-20261201-007")
    sb_light.client.acknowledge("INC-20261201-007")
    assert [e["event_type"] for e in sb_light.client.pagerduty_webhooks()] == ["incident.acknowledged"]
    assert sb_light.client.deliveries() == []
    assert wait_for(lambda: sb_light.client.pagerduty_incidents()[0]["status"] == "acknowledged")


def test_webhook_settings_are_validated_and_reset(sb_light: Sandbox) -> None:
    assert post(sb_light, "/_sandbox/webhooks", json={"meteor": 1}).status_code == 400
    assert post(sb_light, "/_sandbox/webhooks", json={"pagerduty_webhook_secrets": []}).status_code == 400
    settings = sb_light.client.set_webhooks(airflow_url="http://127.0.0.1:8080/")
    assert settings["slack_url"] == "http://127.0.0.1:8080/incidents/webhooks/slack"
    assert settings["pagerduty_url"] == "http://127.0.0.1:8080/incidents/webhooks/pagerduty"
    sb_light.client.reset(aws=False)
    assert sb_light.client.webhooks()["slack_url"] is None
