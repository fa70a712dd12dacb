"""Decisions where the responders are (issue 14), through the real DAG, API server and sandbox.

- A person answers the scenario choice and the approval with the buttons of the Slack messages
  (the sandbox signs the clicks as Slack does), and acknowledges in PagerDuty (the sandbox sends the
  signed v3 webhook): the tasks resume with the person's name, the messages are updated in place,
  the acknowledgement wait ends from the webhook.
- Nobody answers: the runbook's timeout policy acts. A P1's choice starts the suggestion unattended:
  only its `auto` step runs (external: the fallback flag), the on-call engineer is reminded halfway,
  the dev lead is told at the deadline; a step that is not `auto` (deploy: the rollback) asks for
  consent, and nobody answering it changes nothing.
- `/incident <症状>` from Slack declares an incident through the intake.

The stack's runbook (tests/e2e/conftest.py) gives the decisions 30 s, so a timeout fits in a test.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from incident_ops.core.ledger import Ledger
from scripts.incident_runner import DAG_ID, LocalStack, api_for, run_incident

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def ledger_for(stack: LocalStack) -> Ledger:
    return Ledger(f"sqlite:///{stack.state_dir / 'ledger.db'}")


def events(stack: LocalStack, incident_id: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in ledger_for(stack).events(incident_id) if e["kind"] == kind]


def decision_messages(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The decision messages of the run by task id (from the button values, or the ledger's record)."""
    found = {}
    for message in report["slack_messages"]:
        for block in message.get("blocks") or []:
            if block.get("block_id") == "incident_ops.decision":
                value = json.loads(block["elements"][0]["value"])
                found[value["task_id"]] = message
    return found


def by_ts(report: dict[str, Any], ts: str) -> dict[str, Any]:
    return next(m for m in report["slack_messages"] if m["ts"] == ts and not m.get("ephemeral"))


def context_line(message: dict[str, Any]) -> str:
    return " ".join(e["text"] for b in message.get("blocks") or [] if b["type"] == "context" for e in b["elements"])


def test_answered_in_slack_and_acknowledged_from_pagerduty(stack: LocalStack) -> None:
    report = run_incident(stack, "database", answer_via="slack", say=lambda _: None)
    incident_id = report["incident_id"]
    assert report["dag_run_state"] == "success" and report["healthy"], report["tasks"]
    oncall = stack.sandbox_client().oncall_person()

    # Every decision went through a Slack button, none fell back to the REST API.
    answered = {d["task_id"]: d for d in report["decisions"]}
    assert {"recover.choose_scenario", "recover.database.approve_failover"} <= set(answered)
    assert all(d["via"] == "slack" and "fallback" not in d for d in report["decisions"]), report["decisions"]

    # The tasks resumed with the person's name: the ledger says who chose and who approved.
    [chosen] = events(stack, incident_id, "scenario_chosen")
    assert chosen["actor"] == oncall["name"] and chosen["data"]["scenario"] == "database"
    approvals = {e["data"]["step"]: e for e in events(stack, incident_id, "approval")}
    assert approvals["failover"]["actor"] == oncall["name"] and approvals["failover"]["data"]["chosen"] == "Approve"
    assert any(e["actor"] == oncall["name"] for e in events(stack, incident_id, "decision_answered"))

    # The messages were updated in place: no buttons left, who chose what instead.
    ledger_posts = {e["data"]["task_id"]: e["data"] for e in events(stack, incident_id, "decision_posted")}
    for task_id in ("recover.choose_scenario", "recover.database.approve_failover"):
        message = by_ts(report, ledger_posts[task_id]["ts"])
        assert not any(b.get("type") == "actions" for b in message.get("blocks") or []), message
        assert f"{oncall['name']}さんが" in context_line(message), message
    assert "「承認」を選択" in context_line(by_ts(report, ledger_posts["recover.database.approve_failover"]["ts"]))

    # The acknowledgement came from PagerDuty's signed webhook, mapped to the runbook's person.
    assert report["acknowledged_via"] == "pagerduty"
    record = ledger_for(stack).get(incident_id)
    assert record["acknowledged_by"] == oncall["name"]
    assert report["tasks"]["detect.wait_for_ack"] == "success"
    hooks = [d for d in stack.sandbox_client().deliveries(kind="pagerduty")
             if incident_id in json.dumps(d, ensure_ascii=False)]
    assert hooks and all(a.get("status") == 200 for d in hooks for a in d.get("attempts", [])[-1:]), hooks


def test_nobody_answers_a_p1_the_suggestion_runs_only_its_auto_step(stack: LocalStack) -> None:
    report = run_incident(stack, "external", answer_via="slack", unanswered=("choose_scenario",),
                          say=lambda _: None)
    incident_id = report["incident_id"]
    assert report["severity"] == "P1"
    assert report["dag_run_state"] == "success" and report["healthy"], report["tasks"]
    [chosen] = events(stack, incident_id, "scenario_chosen")
    assert chosen["data"]["timed_out"] and chosen["data"]["unattended"]
    assert chosen["data"]["scenario"] == "external"
    # the auto step changed production; nothing asked a person for it
    actions = {e["data"].get("step"): e for e in events(stack, incident_id, "action")}
    assert "fallback" in actions and actions["fallback"]["data"].get("changed")
    lead, dev_team = "<@U0LEAD001>", report["slack_messages"]
    post = {e["data"]["task_id"]: e["data"] for e in events(stack, incident_id, "decision_posted")}
    choice = post["recover.choose_scenario"]
    # asked with the policy spelled out, reminded halfway in the thread, concluded at the deadline
    assert "フォールバック有効化" in choice["text"] and "自動実行を許可された手順" in choice["text"]
    reminders = [m for m in dev_team if m.get("thread_ts") == choice["ts"] and "【リマインド】" in m["text"]]
    oncall = stack.sandbox_client().oncall_person()
    assert len(reminders) == 1 and f"<@{oncall['slack_user_id']}>" in reminders[0]["text"]
    [timeout_notice] = [m for m in dev_team if "【回答期限切れ】" in m["text"]]
    assert timeout_notice["text"].startswith(lead) and "フォールバック有効化" in timeout_notice["text"]
    assert "回答がないまま期限" in context_line(by_ts(report, choice["ts"]))


@pytest.fixture
def closes(stack: LocalStack) -> Iterator[list[str]]:
    """Incidents a test leaves open (nobody recovered them): closed afterwards, so the next alarm of
    the same kind opens a new incident instead of joining this one."""
    opened: list[str] = []
    yield opened
    for incident_id in opened:
        ledger_for(stack).close(incident_id, dt.datetime.now(dt.UTC))
    stack.sandbox_client().reset()


def test_nobody_answers_a_step_that_is_not_auto_nothing_changes(stack: LocalStack, closes: list[str]) -> None:
    report = run_incident(stack, "deploy", answer_via="slack",
                          unanswered=("choose_scenario", "approve_rollback"), say=lambda _: None)
    incident_id = report["incident_id"]
    closes.append(incident_id)
    assert report["severity"] == "P1"
    # the suggestion started unattended, its rollback asked for consent, nobody gave it
    [chosen] = events(stack, incident_id, "scenario_chosen")
    assert chosen["data"]["unattended"] and chosen["data"]["scenario"] == "deploy"
    [consent] = [e for e in events(stack, incident_id, "approval") if e["data"]["step"] == "rollback"]
    assert consent["data"]["timed_out"] and consent["data"]["chosen"] == "Reject"
    assert report["tasks"]["recover.deploy.rollback"] == "skipped"
    # nothing was dispatched or rolled back: the bad deploy is still there
    assert report["aws"]["after"]["bad_deploy"], report["aws"]["after"]
    assert not any(e["data"].get("step") == "rollback" for e in events(stack, incident_id, "action"))
    assert not report["healthy"]


def test_the_incident_slash_command_declares_through_the_intake(stack: LocalStack, closes: list[str]) -> None:
    sandbox = stack.sandbox_client()
    sandbox.reset()
    oncall = sandbox.oncall_person()
    answer = sandbox.slack_command("全ユーザーがログインできない", oncall["slack_user_id"])
    text = json.dumps(answer, ensure_ascii=False)
    assert "INC-" in text and "P1" in text, answer
    incident_id = "INC-" + text.split("INC-", 1)[1][:15]
    closes.append(incident_id)
    record = ledger_for(stack).get(incident_id)
    assert record["severity"] == "P1" and record["reporter"]
    # the same command again joins the incident instead of opening a second one
    again = json.dumps(sandbox.slack_command("全ユーザーがログインできない", oncall["slack_user_id"]),
                       ensure_ascii=False)
    assert incident_id in again
    # its run exists; stop it so it does not play on while other tests use the sandbox
    api = api_for(stack)
    run_id = record.get("dag_run_id") or f"incident__{incident_id}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            run = api.run(DAG_ID, run_id)
            break
        except RuntimeError:
            time.sleep(1)
    else:
        raise AssertionError(f"no run {run_id}")
    assert run["conf"]["incident_id"] == incident_id
    api._request("PATCH", f"/dags/{DAG_ID}/dagRuns/{run_id}", json={"state": "failed"})
