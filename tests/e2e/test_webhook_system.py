"""The alarm webhooks through a real Airflow API server and scheduler (the shared local stack).

The sandbox plays Amazon SNS: it signs CloudWatch alarm notifications with its own certificate
(served over its HTTPS port, allowed only by the stack's explicit configuration) and delivers them to
`/incidents/webhooks/sns` on the API server. A storm of deliveries, redeliveries included, makes one
run, which completes; a higher severity arriving through the generic alert webhook runs
`incident_escalate`; forged deliveries and bad conf through the REST API start nothing.
"""

from __future__ import annotations

import json
import time

import pytest
import requests

from incident_ops.core.ledger import Ledger
from incident_ops.core.runbook import load_runbook
from incident_ops.webhooks.hmac_auth import signature_header
from scripts.airflow_local import api_token
from scripts.incident_runner import DAG_ID, SANDBOX_WEBHOOK_SECRET, AirflowApi, LocalStack, follow_run

# Stack start (up to 7 min if first), the storm, a run followed for up to 10 min, the escalation 5 min.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

SCENARIO = "deploy"
# The 5xx alarm maps to エラー率の急増 (P2), so a later P1 report for the same incident is a raise.
ALARM = "peoplebooster-production-alb-5xx"
SNS_DELIVERY_TIMEOUT = 15  # seconds SNS waits for an HTTP endpoint's answer


def run_count(api: AirflowApi, dag_id: str) -> int:
    return api._request("GET", f"/dags/{dag_id}/dagRuns?limit=1")["total_entries"]


def wait_for_run(api: AirflowApi, dag_id: str, run_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api.run(dag_id, run_id)
        if run.get("state") in ("success", "failed"):
            return run
        time.sleep(2)
    raise TimeoutError(f"{dag_id} {run_id} did not finish in {timeout:.0f}s")


def post_alert(stack: LocalStack, alert: dict, secret: str = SANDBOX_WEBHOOK_SECRET) -> requests.Response:
    body = json.dumps(alert, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json", **signature_header(secret, int(time.time()), body)}
    return requests.post(f"{stack.base_url}/incidents/webhooks/alert", data=body, headers=headers, timeout=30)


def test_sns_storm_makes_one_run_that_completes_and_a_raise_escalates(stack: LocalStack) -> None:
    api = AirflowApi(stack.base_url)
    sandbox = stack.sandbox_client()
    sandbox.reset()
    sandbox.break_scenario(SCENARIO)
    runs_before = run_count(api, DAG_ID)

    first = sandbox.sns_publish(stack.sns_webhook_url, {"AlarmName": ALARM})
    assert first["http_status"] == 200, first
    answer = first["answer"]
    assert answer["status"] == "new", answer
    incident_id, run_id = answer["incident_id"], answer["dag_run_id"]
    assert run_id == f"incident__{incident_id}"

    # Each delivery waits at most SNS's 15 s for its answer: a later one would be an error, not a 200.
    storm = sandbox.sns_publish(stack.sns_webhook_url, {"AlarmName": ALARM}, count=1000, concurrency=24,
                                delivery_timeout=SNS_DELIVERY_TIMEOUT)
    redelivered = sandbox.sns_publish(stack.sns_webhook_url, {"AlarmName": ALARM}, count=200, same_message=True,
                                      delivery_timeout=SNS_DELIVERY_TIMEOUT)
    assert storm["http_statuses"] == {"200": 1000}, storm["errors"]
    assert redelivered["http_statuses"] == {"200": 200}, redelivered["errors"]
    assert storm["statuses"] == {"joined": 1000} and redelivered["statuses"] == {"joined": 200}
    assert storm["incident_ids"] == redelivered["incident_ids"] == [incident_id]
    assert storm["dag_run_ids"] == [run_id]
    print(f"storm: 1000 deliveries in {storm['seconds']} s (slowest answer {storm['max_ms']} ms); "
          f"200 redeliveries in {redelivered['seconds']} s")

    forged = sandbox.sns_publish(stack.sns_webhook_url, {"AlarmName": ALARM}, count=5, tamper=True)
    assert forged["http_statuses"] == {"403": 5}
    wrong_topic = sandbox.sns_publish(stack.sns_webhook_url, {"AlarmName": ALARM},
                                      topic_arn="arn:aws:sns:ap-northeast-1:999999999999:someone-else")
    assert wrong_topic["http_status"] == 403 and wrong_topic["answer"]["error"] == "topic_not_allowed"

    # a synthetic check reports the same outage as a full outage (P1) for the alarm's incident
    raised = post_alert(stack, {"source": "synthetic-monitor", "title": "Top page down", "service": "backend",
                                "symptom": "全ユーザーがアクセス不可", "fingerprint": f"alarm:{ALARM}"})
    assert raised.status_code == 200, raised.text
    raised_answer = raised.json()
    assert raised_answer["status"] == "joined" and raised_answer["incident_id"] == incident_id
    assert raised_answer["severity"] == "P1"
    escalation_run = raised_answer["escalation_run_id"]
    assert escalation_run == f"escalate__{incident_id}__P1"
    bad_hmac = post_alert(stack, {"source": "x", "title": "x", "service": "backend", "symptom": "x"}, secret="wrong")
    assert bad_hmac.status_code == 401

    assert run_count(api, DAG_ID) == runs_before + 1  # exactly one run for the whole storm

    followed = follow_run(stack, run_id, scenario=SCENARIO, say=lambda _: None, timeout=600)
    assert followed["run"]["state"] == "success", followed["tasks"]
    assert followed["incident_id"] == incident_id
    escalated = wait_for_run(api, "incident_escalate", escalation_run)
    assert escalated["state"] == "success"

    ledger = Ledger(f"sqlite:///{stack.state_dir / 'ledger.db'}")
    record = ledger.get(incident_id)
    assert record["status"] == "recovered" and record["severity"] == "P1"
    assert record["occurrences"] == 1 + 1000 + 1 + 1  # first, the storm, one redelivered message, the alert
    kinds = [e["kind"] for e in ledger.events(incident_id)]
    for kind in ("opened", "occurrence", "severity_raised", "escalation_requested", "escalated", "notified", "recovered"):
        assert kind in kinds, kind
    # P2 → P1: the CTO was phoned (a PagerDuty responder request) on the incident's PagerDuty incident
    [pd_incident] = [i for i in sandbox.pagerduty_incidents() if i.get("incident_key") == incident_id]
    cto = load_runbook().contacts.people["cto"].pagerduty_user_id
    asked = [t["responder_request_target"]["id"] for r in pd_incident["responder_requests"]
             for t in r["responder_request_targets"]]
    assert asked == [cto], pd_incident["responder_requests"]
    raise_notes = [m for m in sandbox.slack_messages() if "【障害レベル引き上げ】P2 → P1" in m["text"]]
    assert len(raise_notes) == 1


def test_ok_after_recovery_is_ignored_and_starts_nothing(stack: LocalStack) -> None:
    api = AirflowApi(stack.base_url)
    before = run_count(api, DAG_ID)
    answer = stack.sandbox_client().sns_publish(stack.sns_webhook_url, {"AlarmName": ALARM, "NewStateValue": "OK"})
    assert answer["http_status"] == 200 and answer["answer"]["status"] == "ignored"
    assert run_count(api, DAG_ID) == before


def test_subscription_confirmation_through_the_api_server(stack: LocalStack) -> None:
    sandbox = stack.sandbox_client()
    before = len(sandbox.sns_subscriptions()["confirmed"])
    result = sandbox.sns_subscribe(stack.sns_webhook_url, count=2)
    assert [r["answer"]["status"] for r in result["results"]] == ["recorded", "ignored"]
    assert len(sandbox.sns_subscriptions()["confirmed"]) == before + 1


def test_rest_api_refuses_a_bad_conf_and_starts_nothing(stack: LocalStack) -> None:
    api = AirflowApi(stack.base_url)
    before = run_count(api, DAG_ID)
    token = api_token(stack.base_url)
    response = requests.post(
        f"{stack.base_url}/api/v2/dags/{DAG_ID}/dagRuns",
        headers={"Authorization": f"Bearer {token}"},
        json={"logical_date": None, "conf": {"symptom": "ログインできない", "severity": "P9", "service": "backend"}},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    detail = str(response.json().get("detail"))
    assert "severity" in detail and "P9" in detail
    assert run_count(api, DAG_ID) == before
    unauthenticated = requests.post(f"{stack.base_url}/api/v2/dags/{DAG_ID}/dagRuns",
                                    json={"logical_date": None, "conf": {}}, timeout=30)
    assert unauthenticated.status_code in (401, 403)
