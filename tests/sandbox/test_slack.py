"""The Slack stand-in through slack_sdk's WebClient (the real client), plus its faults and records."""

from __future__ import annotations

import pytest
from sandbox.server import Sandbox
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from .helpers import post


@pytest.fixture
def slack(sb_light: Sandbox) -> WebClient:
    return WebClient(token="xoxb-sandbox-token", base_url=sb_light.endpoints["slack_api"], timeout=10)


def test_auth_and_errors(slack: WebClient, sb_light: Sandbox) -> None:
    assert slack.auth_test()["user_id"]
    with pytest.raises(SlackApiError) as missing:
        WebClient(base_url=sb_light.endpoints["slack_api"]).auth_test()
    assert missing.value.response["error"] == "not_authed"
    with pytest.raises(SlackApiError) as invalid:
        WebClient(token="nope", base_url=sb_light.endpoints["slack_api"]).auth_test()
    assert invalid.value.response["error"] == "invalid_auth"
    unknown = post(sb_light, "/slack/api/chat.fly", headers={"Authorization": "Bearer xoxb-1"})
    assert unknown.status_code == 200 and unknown.json() == {"ok": False, "error": "unknown_method"}


def test_channel_lifecycle(slack: WebClient, runbook) -> None:
    created = slack.conversations_create(name="incident-20260105")
    channel = created["channel"]
    assert channel["name"] == "incident-20260105" and channel["is_member"]
    with pytest.raises(SlackApiError) as taken:
        slack.conversations_create(name="incident-20260105")
    assert taken.value.response["error"] == "name_taken"
    with pytest.raises(SlackApiError) as bad:
        slack.conversations_create(name="Incident 2026")
    assert bad.value.response["error"] == "invalid_name_specials"

    assert slack.conversations_setPurpose(channel=channel["id"], purpose="P1: ログインできない")["purpose"] == "P1: ログインできない"
    slack.conversations_setTopic(channel=channel["id"], topic="対応中")
    info = slack.conversations_info(channel=channel["id"])["channel"]
    assert info["purpose"]["value"] == "P1: ログインできない" and info["topic"]["value"] == "対応中"

    oncall = runbook.oncall.roster[0].slack_user_id
    slack.conversations_invite(channel=channel["id"], users=oncall)
    with pytest.raises(SlackApiError) as already:
        slack.conversations_invite(channel=channel["id"], users=oncall)
    assert already.value.response["error"] == "already_in_channel"
    with pytest.raises(SlackApiError) as ghost:
        slack.conversations_invite(channel=channel["id"], users="U0NOBODY")
    assert ghost.value.response["error"] == "user_not_found"

    # the team channels of the runbook exist from the start; list pages with a cursor
    names, cursor = [], None
    while True:
        page = slack.conversations_list(limit=1, cursor=cursor)
        names += [c["name"] for c in page["channels"]]
        cursor = page["response_metadata"]["next_cursor"]
        if not cursor:
            break
    assert {"infra-support", "dev-team", "incident-20260105"} <= set(names)
    with pytest.raises(SlackApiError) as nowhere:
        slack.conversations_info(channel="C0MISSING")
    assert nowhere.value.response["error"] == "channel_not_found"


def test_messages_threads_metadata(slack: WebClient, sb_light: Sandbox, runbook) -> None:
    channel = slack.conversations_create(name="incident-20260106")["channel"]["id"]
    metadata = {"event_type": "incident_declared", "event_payload": {"incident_id": "INC-1", "severity": "P1"}}
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*P1*"}}]
    root = slack.chat_postMessage(channel=channel, text="<!channel> 【P1インシデント発生】", blocks=blocks, metadata=metadata)
    reply = slack.chat_postMessage(channel=channel, text="調査中", thread_ts=root["ts"])
    # form-encoded (blocks/metadata as JSON strings) works the same way
    form = post(
        sb_light,
        "/slack/api/chat.postMessage",
        data={"channel": "#incident-20260106", "text": "form post", "metadata": '{"event_type": "note", "event_payload": {}}'},
        headers={"Authorization": "Bearer xoxb-1"},
    ).json()
    assert form["ok"] and form["channel"] == channel
    slack.chat_update(channel=channel, ts=root["ts"], text="<!channel> 【P1インシデント発生】(更新)")

    plain = slack.conversations_history(channel=channel)["messages"]
    assert [m["text"] for m in plain] == ["form post", "<!channel> 【P1インシデント発生】(更新)"]  # newest first, no replies
    assert all("metadata" not in m for m in plain)
    full = slack.conversations_history(channel=channel, include_all_metadata=True)["messages"]
    assert full[1]["metadata"] == metadata and full[1]["reply_count"] == 1 and full[1]["blocks"] == blocks
    replies = slack.conversations_replies(channel=channel, ts=root["ts"])["messages"]
    assert [m["ts"] for m in replies] == [root["ts"], reply["ts"]]

    with pytest.raises(SlackApiError) as no_text, pytest.warns(UserWarning):
        slack.chat_postMessage(channel=channel, text="")
    assert no_text.value.response["error"] == "no_text"
    with pytest.raises(SlackApiError) as ephemeral_outsider:
        slack.chat_postEphemeral(channel=channel, user=runbook.oncall.roster[1].slack_user_id, text="承認してください")
    assert ephemeral_outsider.value.response["error"] == "user_not_in_channel"
    slack.conversations_invite(channel=channel, users=runbook.oncall.roster[1].slack_user_id)
    assert slack.chat_postEphemeral(channel=channel, user=runbook.oncall.roster[1].slack_user_id, text="承認してください")["message_ts"]

    view = sb_light.client.slack_messages(channel="incident-20260106")
    assert [m["text"] for m in view] == ["<!channel> 【P1インシデント発生】(更新)", "調査中", "form post", "承認してください"]
    assert view[0]["metadata"] == metadata and view[1]["thread_ts"] == root["ts"] and view[3]["ephemeral"]


def test_file_upload_v2(slack: WebClient, sb_light: Sandbox) -> None:
    channel = slack.conversations_create(name="incident-20260107")["channel"]["id"]
    content = "# ポストモーテム\n\n概要: ...\n"
    result = slack.files_upload_v2(channel=channel, filename="postmortem.md", content=content, title="Postmortem", initial_comment="下書きです")
    assert result["file"]["name"] == "postmortem.md"
    messages = sb_light.client.slack_messages(channel="incident-20260107")
    assert messages[-1]["text"] == "下書きです" and messages[-1]["files"] == ["postmortem.md"]
    uploads = [r for r in sb_light.client.records("slack") if r["path"].startswith("/slack/upload/")]
    assert uploads and uploads[0]["body"]["bytes"] == len(content.encode()) and "ポストモーテム" in uploads[0]["body"]["text"]


def test_users_lookup_by_email(slack: WebClient, runbook) -> None:
    person = runbook.oncall.roster[2]
    assert slack.users_lookupByEmail(email=person.email)["user"]["id"] == person.slack_user_id
    with pytest.raises(SlackApiError) as missing:
        slack.users_lookupByEmail(email="nobody@example.com")
    assert missing.value.response["error"] == "users_not_found"


def test_rate_limit_fault_then_recovery(slack: WebClient, sb_light: Sandbox) -> None:
    sb_light.client.set_faults(slack=429, slack_count=2)
    for _ in range(2):
        with pytest.raises(SlackApiError) as limited:
            slack.chat_postMessage(channel="#dev-team", text="hello")
        assert limited.value.response.status_code == 429
        assert limited.value.response.headers["Retry-After"] == "1"
        assert limited.value.response["error"] == "ratelimited"
    assert slack.chat_postMessage(channel="#dev-team", text="hello")["ok"]
    assert sb_light.client.faults()["slack"] is None
    records = sb_light.client.records("slack")
    assert [r["status"] for r in records] == [429, 429, 200]
    assert [r["fault"] for r in records] == [429, 429, None]
    assert all(r["body"] == {"channel": "#dev-team", "text": "hello"} for r in records)  # bodies even of refused calls
    assert records[0]["headers"]["authorization"].startswith("Bearer xoxb-")


def test_server_error_fault_until_cleared(slack: WebClient, sb_light: Sandbox) -> None:
    sb_light.client.set_faults(slack=500)
    for _ in range(3):
        with pytest.raises(SlackApiError) as failed:
            slack.auth_test()
        assert failed.value.response.status_code == 500
    sb_light.client.set_faults(slack=None)
    assert slack.auth_test()["ok"]


def test_direct_messages(slack: WebClient, sb_light: Sandbox, runbook) -> None:
    lead = runbook.contacts.people["dev_lead"].slack_user_id
    posted = slack.chat_postMessage(channel=lead, text="P2: 対応をお願いします")
    opened = slack.conversations_open(users=lead)["channel"]["id"]
    assert posted["channel"] == opened and opened.startswith("D")
    assert [m["text"] for m in slack.conversations_history(channel=opened)["messages"]] == ["P2: 対応をお願いします"]
    assert "D" not in {c["id"][0] for c in slack.conversations_list()["channels"]}
    assert opened in {c["id"] for c in slack.conversations_list(types="im")["channels"]}
