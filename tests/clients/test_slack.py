"""IncidentSlack against a local fake Slack Web API (assertions on what the fake received and stored)."""

from __future__ import annotations

import json

import pytest

from incident_ops.clients.http import RetryPolicy
from incident_ops.clients.slack import (
    NON_IDEMPOTENT_METHODS,
    IncidentSlack,
    SlackError,
    channel_candidates,
    make_web_client,
    message_key,
    purpose_names_incident,
    retry_handlers,
    upload_client,
)
from tests.clients.conftest import FakeSlack, SleepRecorder

INCIDENT = "INC-20260105-001"


@pytest.fixture
def slack(fake_slack: FakeSlack) -> IncidentSlack:
    client = make_web_client("xoxb-test", base_url=fake_slack.base_url, backoff_factor=0.01)
    return IncidentSlack(client, uploader=upload_client())


# -- pure helpers ---------------------------------------------------------------------------------


def test_channel_candidates_suffix_and_length() -> None:
    assert list(channel_candidates("#Incident-20260105", 3)) == [
        "incident-20260105", "incident-20260105-2", "incident-20260105-3",
    ]
    long = list(channel_candidates("x" * 100, 2))
    assert [len(name) for name in long] == [80, 80]
    assert long[1].endswith("-2")
    with pytest.raises(ValueError, match="empty"):
        next(channel_candidates("#"))


def test_purpose_names_incident_is_a_whole_token() -> None:
    assert purpose_names_incident("インシデント INC-1 の対応チャンネル", "INC-1")
    assert not purpose_names_incident("インシデント INC-12 の対応チャンネル", "INC-1")
    assert not purpose_names_incident(None, "INC-1")


def test_message_key_reads_metadata_and_caption_block() -> None:
    assert message_key({"metadata": {"event_type": "incident_ops", "event_payload": {"key": "k1"}}}) == "k1"
    assert message_key({"metadata": {"event_type": "other", "event_payload": {"key": "k1"}}}) is None
    assert message_key({"blocks": [{"type": "context", "block_id": "incident_ops:k2"}]}) == "k2"
    assert message_key({"text": "plain"}) is None


def test_retry_handlers_leave_the_non_idempotent_methods_to_the_client() -> None:
    from slack_sdk.http_retry.builtin_handlers import (
        ConnectionErrorRetryHandler,
        RateLimitErrorRetryHandler,
        ServerErrorRetryHandler,
    )
    from slack_sdk.http_retry.request import HttpRequest
    from slack_sdk.http_retry.response import HttpResponse
    from slack_sdk.http_retry.state import RetryState

    rate, server, connection = retry_handlers(max_retries=3)
    assert isinstance(rate, RateLimitErrorRetryHandler) and isinstance(server, ServerErrorRetryHandler)
    assert isinstance(connection, ConnectionErrorRetryHandler)

    def request(method: str) -> HttpRequest:
        return HttpRequest(method="POST", url=f"https://slack.com/api/{method}", headers={})

    def answer(status: int) -> HttpResponse:
        return HttpResponse(status_code=status, headers={}, body={})

    assert NON_IDEMPOTENT_METHODS == {"chat.postMessage", "files.completeUploadExternal"}
    for method in ("conversations.history", "chat.update", "conversations.create"):
        assert server.can_retry(state=RetryState(), request=request(method), response=answer(502))
        assert connection.can_retry(state=RetryState(), request=request(method), error=ConnectionResetError())
    for method in NON_IDEMPOTENT_METHODS:
        assert rate.can_retry(state=RetryState(), request=request(method), response=answer(429))  # refused
        assert not server.can_retry(state=RetryState(), request=request(method), response=answer(500))
        assert not connection.can_retry(state=RetryState(), request=request(method), error=ConnectionResetError())


def test_make_web_client_is_the_hook_construction() -> None:
    client = make_web_client("xoxb-test", "http://127.0.0.1:1/api", max_retries=2)
    assert client.base_url == "http://127.0.0.1:1/api/" and client.timeout == 30
    assert [type(h).__name__ for h in client.retry_handlers] == [
        "RateLimitErrorRetryHandler", "_ServerErrorRetryHandler", "_ConnectionErrorRetryHandler"]
    assert all(h.max_retry_count == 2 for h in client.retry_handlers)


def test_upload_client_retries_its_post() -> None:
    assert "POST" in upload_client().policy.methods and "POST" not in RetryPolicy().methods


# -- channel ----------------------------------------------------------------------------------------


def test_ensure_channel_creates_and_sets_purpose(fake_slack: FakeSlack, slack: IncidentSlack) -> None:
    channel = slack.ensure_channel("#incident-20260105", INCIDENT)

    assert channel["created"] is True and channel["name"] == "incident-20260105"
    created = fake_slack.calls("conversations.create")
    assert [(r.method, r.params["name"]) for r in created] == [("POST", "incident-20260105")]
    purpose = fake_slack.calls("conversations.setPurpose")[0].params
    assert purpose["channel"] == channel["id"] and INCIDENT in purpose["purpose"]
    assert INCIDENT in fake_slack.channels[channel["id"]]["purpose"]["value"]


def test_ensure_channel_reuses_its_own_channel_on_retry(fake_slack: FakeSlack, slack: IncidentSlack) -> None:
    for n in range(5):  # other channels, so the look-up pages through conversations.list
        fake_slack.add_channel(f"general-{n}")
    first = slack.ensure_channel("incident-20260105", INCIDENT)
    again = slack.ensure_channel("incident-20260105", INCIDENT)

    assert again == {"id": first["id"], "name": "incident-20260105", "created": False}
    assert len([c for c in fake_slack.channels.values() if c["name"].startswith("incident-")]) == 1
    assert len(fake_slack.calls("conversations.list")) >= 2  # paginated (page size 2)


def test_ensure_channel_name_taken_by_another_incident_gets_a_suffix(
    fake_slack: FakeSlack, slack: IncidentSlack
) -> None:
    fake_slack.add_channel("incident-20260105", purpose="インシデント INC-20260105-000 の対応チャンネル")
    fake_slack.add_channel("incident-20260105-2", purpose="random chatter")

    channel = slack.ensure_channel("incident-20260105", INCIDENT)

    assert channel["name"] == "incident-20260105-3" and channel["created"] is True
    names = [r.params["name"] for r in fake_slack.calls("conversations.create")]
    assert names == ["incident-20260105", "incident-20260105-2", "incident-20260105-3"]
    # and a retry lands on the same suffixed channel
    assert slack.ensure_channel("incident-20260105", INCIDENT)["id"] == channel["id"]


def test_ensure_channel_claims_its_orphan_without_purpose(fake_slack: FakeSlack, slack: IncidentSlack) -> None:
    orphan = fake_slack.add_channel("incident-20260105", creator=fake_slack.bot_user_id)

    channel = slack.ensure_channel("incident-20260105", INCIDENT)

    assert channel == {"id": orphan, "name": "incident-20260105", "created": False}
    assert INCIDENT in fake_slack.channels[orphan]["purpose"]["value"]


def test_ensure_channel_other_errors_raise(fake_slack: FakeSlack, slack: IncidentSlack) -> None:
    fake_slack.fail("conversations.create", 200, {"ok": False, "error": "restricted_action"})
    with pytest.raises(SlackError, match="conversations.create failed.*restricted_action"):
        slack.ensure_channel("incident-20260105", INCIDENT)


# -- messages ---------------------------------------------------------------------------------------


def test_post_sends_metadata_and_is_idempotent(fake_slack: FakeSlack, slack: IncidentSlack) -> None:
    channel = fake_slack.add_channel("incident-20260105")

    first = slack.post(channel, "【P1インシデント発生】", idempotency_key=f"{INCIDENT}:declaration")
    second = slack.post(channel, "【P1インシデント発生】", idempotency_key=f"{INCIDENT}:declaration")

    assert first["posted"] is True and second == {"ts": first["ts"], "channel": channel, "posted": False}
    stored = fake_slack.all_messages(channel)
    assert len(stored) == 1
    assert stored[0]["text"] == "【P1インシデント発生】"
    assert stored[0]["metadata"] == {"event_type": "incident_ops", "event_payload": {"key": f"{INCIDENT}:declaration"}}
    sent = fake_slack.calls("chat.postMessage")
    assert len(sent) == 1 and sent[0].method == "POST"
    assert sent[0].headers["Content-Type"].startswith("application/json")
    history = fake_slack.calls("conversations.history")[-1].params
    assert history["channel"] == channel and history["include_all_metadata"] in ("1", "true", "True", True)


def test_post_by_channel_name_resolves_the_id(fake_slack: FakeSlack, slack: IncidentSlack) -> None:
    channel = fake_slack.add_channel("dev-team")
    result = slack.post("#dev-team", "hello", idempotency_key="k")
    assert result["channel"] == channel
    assert [m["text"] for m in fake_slack.all_messages(channel)] == ["hello"]


def test_post_429_with_retry_after_then_success_stores_one_message(
    fake_slack: FakeSlack, slack: IncidentSlack, slack_sleeps: SleepRecorder
) -> None:
    channel = fake_slack.add_channel("incident-20260105")
    fake_slack.fail("chat.postMessage", 429, {"ok": False, "error": "ratelimited"}, headers={"Retry-After": "7"})

    result = slack.post(channel, "status update", idempotency_key=f"{INCIDENT}:update-1")

    assert result["posted"] is True
    assert len(fake_slack.calls("chat.postMessage")) == 2
    assert [m["text"] for m in fake_slack.all_messages(channel)] == ["status update"]
    assert any(7 <= seconds < 8 for seconds in slack_sleeps.sleeps)  # Retry-After honoured


def test_post_500_then_success(fake_slack: FakeSlack, slack: IncidentSlack) -> None:
    channel = fake_slack.add_channel("incident-20260105")
    fake_slack.fail("chat.postMessage", 500)

    result = slack.post(channel, "after a 500", idempotency_key=f"{INCIDENT}:update-2")

    assert result["posted"] is True
    assert len(fake_slack.calls("chat.postMessage")) == 2
    assert len(fake_slack.all_messages(channel)) == 1
    assert len(fake_slack.calls("conversations.history")) == 2  # before posting, and before posting again


def test_post_answered_500_after_slack_stored_it_is_not_posted_again(fake_slack: FakeSlack,
                                                                    slack: IncidentSlack) -> None:
    channel = fake_slack.add_channel("incident-20260105")
    fake_slack.fail("chat.postMessage", 500, after_acting=True)  # stored, then the answer was lost

    result = slack.post(channel, "declaration", idempotency_key=f"{INCIDENT}:declaration")

    assert result["posted"] is True and result["ts"] == fake_slack.all_messages(channel)[0]["ts"]
    assert len(fake_slack.calls("chat.postMessage")) == 1
    assert [m["text"] for m in fake_slack.all_messages(channel)] == ["declaration"]


def test_post_retried_after_lost_answer_is_not_posted_twice(fake_slack: FakeSlack, slack: IncidentSlack) -> None:
    channel = fake_slack.add_channel("incident-20260105")
    slack.post(channel, "declaration", idempotency_key=f"{INCIDENT}:declaration")
    # a later task retry (new client, nothing cached) with the same key
    fresh = IncidentSlack(make_web_client("xoxb-test", base_url=fake_slack.base_url, backoff_factor=0.01))
    again = fresh.post(channel, "declaration", idempotency_key=f"{INCIDENT}:declaration")

    assert again["posted"] is False
    assert len(fake_slack.all_messages(channel)) == 1
    assert len(fake_slack.calls("chat.postMessage")) == 1


def test_post_finds_the_key_beyond_the_first_history_page(fake_slack: FakeSlack, slack: IncidentSlack) -> None:
    channel = fake_slack.add_channel("incident-20260105")
    slack.post(channel, "first", idempotency_key="k-first")
    for n in range(4):
        slack.post(channel, f"later {n}", idempotency_key=f"k-{n}")
    again = slack.post(channel, "first", idempotency_key="k-first")
    assert again["posted"] is False
    assert len(fake_slack.all_messages(channel)) == 5


def test_post_gives_up_with_a_clear_error(fake_slack: FakeSlack, slack: IncidentSlack) -> None:
    channel = fake_slack.add_channel("incident-20260105")
    fake_slack.fail("chat.postMessage", 500, times=10)
    with pytest.raises(SlackError, match=r"chat.postMessage failed \(HTTP 500\)"):
        slack.post(channel, "x", idempotency_key="k")
    assert len(fake_slack.calls("chat.postMessage")) == 6  # first try + 5 retries
    assert fake_slack.all_messages(channel) == []


def test_reply_is_idempotent_within_the_thread(fake_slack: FakeSlack, slack: IncidentSlack) -> None:
    channel = fake_slack.add_channel("incident-20260105")
    parent = slack.post(channel, "evidence", idempotency_key="parent")
    first = slack.reply(channel, parent["ts"], "logs: 12 ERROR events", f"{INCIDENT}:logs")
    again = slack.reply(channel, parent["ts"], "logs: 12 ERROR events", f"{INCIDENT}:logs")

    assert first["posted"] and not again["posted"]
    replies = [m for m in fake_slack.all_messages(channel) if m.get("thread_ts") == parent["ts"]]
    assert len(replies) == 1
    assert fake_slack.calls("conversations.replies")[-1].params["ts"] == parent["ts"]


def test_update_changes_the_text(fake_slack: FakeSlack, slack: IncidentSlack) -> None:
    channel = fake_slack.add_channel("incident-20260105")
    posted = slack.post(channel, "対応中", idempotency_key="status")
    slack.update(channel, posted["ts"], "復旧")
    assert fake_slack.all_messages(channel)[0]["text"] == "復旧"
    assert fake_slack.calls("chat.update")[0].params == {"channel": channel, "ts": posted["ts"], "text": "復旧"}


# -- files ------------------------------------------------------------------------------------------


def test_upload_image_uses_the_external_upload_flow(fake_slack: FakeSlack, slack: IncidentSlack, tmp_path) -> None:
    channel = fake_slack.add_channel("incident-20260105")
    parent = slack.post(channel, "evidence", idempotency_key="parent")
    png = tmp_path / "cpu.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nfake-chart")

    result = slack.upload_image(channel, png, "cpu.png", "ECS CPU", f"{INCIDENT}:chart:cpu", thread_ts=parent["ts"])
    again = slack.upload_image(channel, png, "cpu.png", "ECS CPU", f"{INCIDENT}:chart:cpu", thread_ts=parent["ts"])

    assert result["posted"] is True and again["posted"] is False and again["file_id"] == result["file_id"]
    ticket = fake_slack.calls("files.getUploadURLExternal")
    assert len(ticket) == 1
    assert ticket[0].params["filename"] == "cpu.png" and ticket[0].params["length"] == str(len(png.read_bytes()))
    upload = [r for r in fake_slack.requests if r.path.startswith("/upload/")]
    assert len(upload) == 1 and upload[0].method == "POST" and upload[0].body == png.read_bytes()
    done = fake_slack.calls("files.completeUploadExternal")[0].params
    assert done["channel_id"] == channel and done["thread_ts"] == parent["ts"]
    assert json.loads(done["files"]) == [{"id": result["file_id"], "title": "ECS CPU"}]
    assert not fake_slack.calls("files.upload")
    shared = [m for m in fake_slack.all_messages(channel) if m.get("files")]
    assert len(shared) == 1 and shared[0]["files"][0]["title"] == "ECS CPU"


def test_upload_retries_a_5xx_from_the_upload_url(fake_slack: FakeSlack, slack: IncidentSlack) -> None:
    channel = fake_slack.add_channel("incident-20260105")
    fake_slack.fail("upload", 503)

    result = slack.upload_image(channel, b"bytes", "a.png", "A", "chart-a")

    assert result["posted"] is True
    assert len([r for r in fake_slack.requests if r.path.startswith("/upload/")]) == 2
    assert fake_slack.uploads[result["file_id"]] == b"bytes"


# -- people -----------------------------------------------------------------------------------------


def test_invite_ignores_already_in_channel(fake_slack: FakeSlack, slack: IncidentSlack) -> None:
    channel = fake_slack.add_channel("incident-20260105")
    fake_slack.channels[channel]["members"].append("U0LEAD001")

    invited = slack.invite(channel, ["U0LEAD001", "U0CTO0001", "U0CTO0001"])

    assert invited == ["U0CTO0001"]
    assert [r.params["users"] for r in fake_slack.calls("conversations.invite")] == ["U0LEAD001", "U0CTO0001"]
    assert "U0CTO0001" in fake_slack.channels[channel]["members"]


def test_invite_other_errors_raise(fake_slack: FakeSlack, slack: IncidentSlack) -> None:
    channel = fake_slack.add_channel("incident-20260105")
    fake_slack.fail("conversations.invite", 200, {"ok": False, "error": "user_not_found"})
    with pytest.raises(SlackError, match="user_not_found"):
        slack.invite(channel, ["UNOBODY01"])
