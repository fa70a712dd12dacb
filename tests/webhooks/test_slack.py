"""POST /webhooks/slack: signatures, decision clicks, 対応開始, the /incident slash command."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import pytest

from incident_ops.core.runbook import Runbook
from incident_ops.webhooks import slack

from .helpers import NOW, CountingTrigger
from .responder_helpers import (
    SLACK_SECRET,
    TASK,
    ResponderHarness,
    interaction,
    limited_runbook,
    make_responders_fixture,  # noqa: F401 - the fixture `make_responders`
    slack_signed,
)

# --- the signature (pure) --------------------------------------------------------------------------


def test_slack_signature_round_trip_and_window() -> None:
    body = b"payload=%7B%7D"
    headers = slack.signature_headers(SLACK_SECRET, int(NOW.timestamp()), body)
    ts, sig = headers[slack.TIMESTAMP_HEADER], headers[slack.SIGNATURE_HEADER]
    assert slack.verify(SLACK_SECRET, ts, sig, body, now=NOW) == int(NOW.timestamp())
    assert slack.verify(SLACK_SECRET, ts, sig, body, now=NOW + dt.timedelta(seconds=300)) == int(NOW.timestamp())
    for now in (NOW + dt.timedelta(seconds=301), NOW - dt.timedelta(seconds=301)):
        with pytest.raises(slack.HmacError) as caught:
            slack.verify(SLACK_SECRET, ts, sig, body, now=now)
        assert caught.value.code == "timestamp_expired"
    for secret, data in (("other", body), (SLACK_SECRET, body + b"x")):
        with pytest.raises(slack.HmacError) as caught:
            slack.verify(secret, ts, sig, data, now=NOW)
        assert caught.value.code == "signature_invalid"
    # A rotation: old and new signing secrets both accepted.
    assert slack.verify(["old-secret", SLACK_SECRET], ts, sig, body, now=NOW)


# --- the endpoint: signatures ------------------------------------------------------------------------


def test_a_signed_decision_click_is_answered_at_once_and_applied_with_the_persons_name(make_responders) -> None:
    h: ResponderHarness = make_responders()
    incident = h.open_incident()
    value = h.post_decision(incident)
    response = h.click(value)
    assert response.status_code == 200 and response.content == b""
    h.idle()
    assert h.hitl.answers == {("incident_response", "incident__x", TASK, -1): ("deploy", "slack:U0TANAKA1", "田中 太郎")}
    [answered] = h.events(incident, "decision_answered")
    assert answered["actor"] == "田中 太郎" and answered["idempotency_key"] == f"decision_answered:{TASK}"
    assert answered["data"]["option"] == "deploy" and answered["data"]["person"] == "tanaka"
    assert answered["data"]["slack_user_id"] == "U0TANAKA1"
    [(channel, ts, text, blocks)] = h.slack.updates
    assert (channel, ts) == ("C0INCIDENT", "1795793400.000100")
    assert not [b for b in blocks if b.get("type") == "actions"]  # the buttons are gone
    line = blocks[-1]["elements"][0]["text"]
    assert "田中 太郎" in line and "「deploy」" in line and "2026-11-28 00:30 JST" in line
    assert h.slack.ephemerals == []
    work = [e for e in h.audit() if e.get("phase") == "work"]
    assert work[-1]["outcome"] == "applied" and work[-1]["person"] == "tanaka"


@pytest.mark.parametrize("how", ["tampered", "wrong_secret", "expired", "future", "missing", "no_secret_configured"])
def test_unauthentic_slack_requests_are_401_and_change_nothing(make_responders, how: str) -> None:
    h: ResponderHarness = make_responders(slack_secret=None if how == "no_secret_configured" else SLACK_SECRET)
    incident = h.open_incident()
    value = h.post_decision(incident)
    body, headers = slack_signed(interaction(value=value), secret="wrong" if how == "wrong_secret" else SLACK_SECRET,
                                 at={"expired": NOW - dt.timedelta(seconds=301),
                                     "future": NOW + dt.timedelta(seconds=301)}.get(how, NOW))
    if how == "tampered":
        body = body.replace(b"deploy", b"manual")
    if how == "missing":
        del headers["X-Slack-Signature"]
    response = h.client.post("/webhooks/slack", content=body, headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["error"] in ("signature_invalid", "timestamp_expired", "signature_missing")
    h.idle()
    assert h.hitl.calls == [] and h.slack.updates == [] and h.events(incident, "decision_answered") == []
    assert h.audit()[-1]["http_status"] == 401
    if how == "no_secret_configured":
        assert h.audit()[-1]["misconfigured"] == "no Slack signing secret"


def test_a_rotation_accepts_both_slack_signing_secrets(make_responders) -> None:
    h: ResponderHarness = make_responders(slack_secret=f"old-signing-secret, {SLACK_SECRET}")
    incident = h.open_incident()
    assert h.click(h.post_decision(incident)).status_code == 200
    assert h.click({"incident_id": incident}, secret="old-signing-secret", block_id="incident_ops.acknowledge",
                   action_id="acknowledge").status_code == 200
    assert h.click({"incident_id": incident}, secret="not-a-secret", block_id="incident_ops.acknowledge",
                   action_id="acknowledge").status_code == 401


def test_a_replayed_click_and_a_slack_retry_act_once(make_responders) -> None:
    h: ResponderHarness = make_responders()
    incident = h.open_incident()
    body, headers = slack_signed(interaction(value=h.post_decision(incident)))
    assert h.client.post("/webhooks/slack", content=body, headers=headers).status_code == 200
    h.idle()
    for extra in ({}, {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}):
        assert h.client.post("/webhooks/slack", content=body, headers={**headers, **extra}).status_code == 200
        h.idle()
    assert len(h.hitl.calls) == 1 and len(h.events(incident, "decision_answered")) == 1
    assert h.slack.ephemerals == []  # a retry is dropped silently, not refused
    assert [e["outcome"] for e in h.audit() if e.get("phase") == "work"] == ["applied", "duplicate", "duplicate"]


# --- who may answer --------------------------------------------------------------------------------


def test_a_user_outside_the_runbook_is_refused(make_responders) -> None:
    h: ResponderHarness = make_responders()
    incident = h.open_incident()
    assert h.click(h.post_decision(incident), user="U0STRANGER").status_code == 200
    h.idle()
    assert h.hitl.calls == [] and h.slack.updates == []
    [text] = h.slack.told("U0STRANGER")
    assert "障害対応の担当者として登録されていない" in text
    refusal = [e for e in h.audit() if e.get("phase") == "work"][-1]
    assert refusal["outcome"] == "refused" and refusal["error"] == "unknown_user"


def test_a_person_the_runbook_does_not_allow_is_refused(make_responders, runbook: Runbook) -> None:
    h: ResponderHarness = make_responders(runbook_=limited_runbook(runbook, ["dev_lead"]))
    incident = h.open_incident()
    value = h.post_decision(incident)
    h.click(value, user="U0TANAKA1")
    h.idle()
    assert h.hitl.calls == []
    assert "田中 太郎さんはこの判断に回答できる担当者に含まれていません" in h.slack.told("U0TANAKA1")[0]
    assert [e for e in h.audit() if e.get("phase") == "work"][-1]["error"] == "not_allowed"
    h.click(value, user="U0LEAD001", action_ts="2")  # the dev lead may
    h.idle()
    assert h.hitl.answers[("incident_response", "incident__x", TASK, -1)][2] == "鈴木 開発リード"


def test_a_double_click_answers_once(make_responders) -> None:
    h: ResponderHarness = make_responders()
    incident = h.open_incident()
    value = h.post_decision(incident)
    first = h.click(value, user="U0TANAKA1", action_ts="1795793400.1")
    second = h.click({**value, "option": "manual"}, user="U0YAMADA1", action_ts="1795793400.2", label="manual")
    assert first.status_code == second.status_code == 200
    h.idle()
    assert len(h.hitl.calls) == 1  # the second never reached Airflow
    assert h.hitl.answers[("incident_response", "incident__x", TASK, -1)] == ("deploy", "slack:U0TANAKA1", "田中 太郎")
    assert len(h.events(incident, "decision_answered")) == 1 and len(h.slack.updates) == 1
    [text] = h.slack.told("U0YAMADA1")
    assert "すでに回答済み" in text and "田中 太郎" in text and "deploy" in text


def test_an_answer_given_in_the_airflow_ui_first_is_already_answered(make_responders) -> None:
    h: ResponderHarness = make_responders()
    incident = h.open_incident()
    h.hitl.answers[("incident_response", "incident__x", TASK, -1)] = ("manual", "admin", "admin")
    h.click(h.post_decision(incident))
    h.idle()
    assert len(h.hitl.calls) == 1 and h.events(incident, "decision_answered") == []
    assert "すでに回答済み" in h.slack.told("U0TANAKA1")[0]


@pytest.mark.parametrize(("error", "fragment"), [("expired", "回答期限を過ぎています"), ("not_waiting", "まだ回答を受け付ける準備ができていません"),
                                                 ("not_found", "見つかりません"), ("forbidden", "割り当てられていない")])
def test_airflow_refusals_are_told_to_the_person(make_responders, error: str, fragment: str) -> None:
    h: ResponderHarness = make_responders()
    incident = h.open_incident()
    h.hitl.error = error
    h.click(h.post_decision(incident))
    h.idle()
    assert fragment in h.slack.told("U0TANAKA1")[0] and h.events(incident, "decision_answered") == []
    assert h.slack.updates == []
    assert [e for e in h.audit() if e.get("phase") == "work"][-1]["error"] == error


def test_a_click_after_the_deadline_is_refused_as_expired(make_responders) -> None:
    h: ResponderHarness = make_responders()
    incident = h.open_incident()
    value = h.post_decision(incident, deadline=NOW - dt.timedelta(seconds=1))
    h.click(value)
    h.idle()
    assert h.hitl.calls == [] and "回答期限を過ぎています" in h.slack.told("U0TANAKA1")[0]


def test_a_button_of_another_run_or_an_unknown_option_is_refused(make_responders) -> None:
    h: ResponderHarness = make_responders()
    incident = h.open_incident()
    value = h.post_decision(incident)
    h.click({**value, "run_id": "incident__other"}, action_ts="1")
    h.click({**value, "option": "drop_database"}, action_ts="2")
    h.click({**value, "incident_id": "INC-20261128-ffffff"}, action_ts="3")
    h.click("not json", action_ts="4")
    h.idle()
    assert h.hitl.calls == []
    assert [e["error"] for e in h.audit() if e.get("phase") == "work"] == [
        "stale", "bad_option", "unknown_incident", "invalid"]


def test_a_name_from_outside_is_escaped_in_the_updated_message(make_responders, runbook: Runbook) -> None:
    data = runbook.model_dump(mode="python")
    assert data  # the runbook's names are the project's; the label comes from Slack's payload
    h: ResponderHarness = make_responders()
    incident = h.open_incident()
    h.click(h.post_decision(incident), label="<!channel> deploy")
    h.idle()
    line = h.slack.updates[0][3][-1]["elements"][0]["text"]
    assert "<!channel>" not in line and "&lt;!channel&gt;" in line


# --- 対応開始 -----------------------------------------------------------------------------------------


def test_the_acknowledge_button_acknowledges_for_the_person_and_tells_the_next_who(make_responders) -> None:
    h: ResponderHarness = make_responders()
    incident = h.open_incident()
    h.click({"incident_id": incident}, block_id="incident_ops.acknowledge", action_id="acknowledge", action_ts="1")
    h.idle()
    assert h.acknowledged == [(incident, "田中 太郎")]
    assert h.ledger.get(incident)["acknowledged_by"] == "田中 太郎"
    assert "対応開始を記録しました" in h.slack.told("U0TANAKA1")[0]
    h.click({"incident_id": incident}, user="U0YAMADA1", block_id="incident_ops.acknowledge", action_id="acknowledge",
            action_ts="2")
    h.idle()
    assert h.acknowledged == [(incident, "田中 太郎")]  # not called again
    [text] = h.slack.told("U0YAMADA1")
    assert "すでに田中 太郎さんが対応を開始しています" in text and "JST" in text


def test_the_acknowledge_button_through_the_flows_function(make_responders, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default collaborator: flows.incident.acknowledge_incident, on the ledger of the environment."""
    from types import SimpleNamespace

    from incident_ops.flows import incident as flows

    h: ResponderHarness = make_responders(acknowledge=lambda i, n: flows.acknowledge_incident(i, n))
    monkeypatch.setenv("INCIDENT_OPS_LEDGER_URL", h.ledger_url)
    monkeypatch.setattr(flows, "services_for", lambda environment: SimpleNamespace(pager=None))
    incident = h.open_incident()
    h.click({"incident_id": incident}, block_id="incident_ops.acknowledge", action_id="acknowledge")
    h.idle()
    assert flows.acknowledgement({"id": incident, "environment": "production"})["by"] == "田中 太郎"
    assert [e["actor"] for e in h.events(incident, "acknowledged")][-1] == "田中 太郎"


def test_the_acknowledge_button_from_a_stranger_is_refused(make_responders) -> None:
    h: ResponderHarness = make_responders()
    incident = h.open_incident()
    h.click({"incident_id": incident}, user="U0STRANGER", block_id="incident_ops.acknowledge", action_id="acknowledge")
    h.idle()
    assert h.acknowledged == [] and h.ledger.get(incident)["acknowledged_at"] is None
    assert "登録されていない" in h.slack.told("U0STRANGER")[0]


def test_other_interactions_are_answered_and_ignored(make_responders) -> None:
    h: ResponderHarness = make_responders()
    incident = h.open_incident()
    response = h.click({"incident_id": incident}, block_id="someone_elses_block", action_id="x")
    assert response.status_code == 200 and response.content == b""
    h.idle()
    assert h.hitl.calls == [] and h.acknowledged == [] and h.slack.ephemerals == []
    assert h.audit()[-1]["status"] == "ignored"


# --- /incident ---------------------------------------------------------------------------------------


def test_the_slash_command_declares_through_the_intake_and_a_second_joins(make_responders) -> None:
    h: ResponderHarness = make_responders()
    first = h.command("ログインできない")
    assert first.status_code == 200, first.text
    answer = first.json()
    assert answer["response_type"] == "in_channel"
    [(run_id, conf)] = h.trigger.runs_of("incident_response").items()
    incident_id = conf["incident_id"]
    assert run_id == f"incident__{incident_id}" and conf["symptom"] == "ログインできない"
    assert conf["reporter"] == "田中 太郎（Slack）"
    record = h.ledger.get(incident_id)
    assert incident_id in answer["text"] and f"（{record['severity']}）" in answer["text"]
    assert "#incident-20261128" in answer["text"]  # the JST date of detection (00:30 JST on the 28th)
    second = h.command("ログインできない", user="U0YAMADA1")
    assert second.status_code == 200 and incident_id in second.json()["text"] and "合流" in second.json()["text"]
    assert len(h.trigger.runs_of("incident_response")) == 1
    assert h.ledger.get(incident_id)["occurrences"] == 2
    assert [e.get("status") for e in h.audit()] == ["new", "joined"]


def test_the_slash_commands_reply_is_the_catalogues_with_the_symptom_escaped(make_responders) -> None:
    h: ResponderHarness = make_responders()
    answer = h.command("<!channel> & <@U123>\nログインできない").json()
    lines = answer["text"].splitlines()
    assert lines[0].startswith("インシデントを宣言しました: *INC-") and len(lines) == 3
    assert lines[1] == "症状: &lt;!channel&gt; &amp; &lt;@U123&gt; ログインできない"
    assert "<!channel>" not in answer["text"] and "<@U123>" not in answer["text"]


def test_the_slash_command_names_the_channel_the_dag_opened(make_responders) -> None:
    h: ResponderHarness = make_responders()
    incident_id = h.command("ログインできない").json()["text"].split("*")[1]
    h.ledger.update(incident_id, NOW, slack_channel="incident-20261128-2", slack_channel_id="C0X")
    assert "#incident-20261128-2" in h.command("ログインできない").json()["text"]


@pytest.mark.parametrize("text", ["", "   ", "x" * 501])
def test_the_slash_command_without_a_symptom_answers_the_usage(make_responders, text: str) -> None:
    h: ResponderHarness = make_responders()
    response = h.command(text)
    assert response.status_code == 200
    assert response.json()["response_type"] == "ephemeral" and "/incident 症状" in response.json()["text"]
    assert h.trigger.calls == []


def test_a_slow_intake_answers_accepted_then_tells_the_result(make_responders) -> None:
    release = threading.Event()

    class SlowTrigger(CountingTrigger):
        def __call__(self, dag_id: str, run_id: str, conf: dict[str, Any]) -> bool:
            release.wait(10)
            return super().__call__(dag_id, run_id, conf)

    h: ResponderHarness = make_responders(trigger=SlowTrigger(), command_wait_seconds=0.2)
    started = time.monotonic()
    response = h.command("ログインできない")
    assert time.monotonic() - started < 3
    assert response.status_code == 200 and "受け付けました" in response.json()["text"]
    release.set()
    h.idle()
    [text] = h.slack.told("U0TANAKA1")
    [conf] = h.trigger.runs_of("incident_response").values()
    assert conf["incident_id"] in text and "インシデントを宣言しました" in text


def test_an_unknown_command_or_a_bad_form_is_refused_politely(make_responders) -> None:
    h: ResponderHarness = make_responders()
    assert "対応していません" in h.command("x", command="/other").json()["text"]
    body, headers = slack_signed(b"neither=1")
    assert h.client.post("/webhooks/slack", content=body, headers=headers).status_code == 400
    body, headers = slack_signed(b"payload=%FF%FE")
    assert h.client.post("/webhooks/slack", content=body, headers=headers).status_code == 400
    body, headers = slack_signed(b"payload=1", content_type="application/json")
    assert h.client.post("/webhooks/slack", content=body, headers=headers).status_code == 415
    assert h.trigger.calls == []


def test_a_slack_body_over_the_limit_is_413(make_responders) -> None:
    h: ResponderHarness = make_responders(max_body_bytes=1024)
    body, headers = slack_signed(b"payload=" + b"a" * 2000)
    assert h.client.post("/webhooks/slack", content=body, headers=headers).status_code == 413


def test_slack_is_answered_before_the_work_is_done(make_responders) -> None:
    """Answer first, work after: a slow Airflow does not hold Slack's 3-second answer."""
    h: ResponderHarness = make_responders()
    incident = h.open_incident()
    release = threading.Event()
    applied = h.hitl

    def slow(*args: Any) -> dict[str, Any]:
        release.wait(10)
        return applied(*args)

    h.services.hitl = slow
    started = time.monotonic()
    response = h.click(h.post_decision(incident))
    assert response.status_code == 200 and time.monotonic() - started < 2
    assert applied.calls == [] and h.events(incident, "decision_answered") == []  # not yet
    release.set()
    h.idle()
    assert len(applied.calls) == 1 and len(h.events(incident, "decision_answered")) == 1
