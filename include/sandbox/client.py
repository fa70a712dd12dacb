"""A thin client of the sandbox's control API, for the demo and the tests.

    client = SandboxClient.from_state_dir("state/sandbox")   # or SandboxClient(sandbox.endpoints)
    client.reset()
    client.break_scenario("deploy")
    client.set_faults(slack=429, slack_count=2)
    client.slack_messages(channel="incident-20260105")
    client.sns_publish("http://127.0.0.1:8080/incidents/webhooks/sns", {"AlarmName": "peoplebooster-production-alb-5xx"})
    client.click_decision("recover.choose_scenario", "デプロイ後の障害（ロールバックを実行）", user_id="U0TANAKA1")   # as Slack
    client.acknowledge("INC-20260105-001", user="PTANAKA")   # in PagerDuty: a signed v3 webhook follows
    client.deliveries("pagerduty")
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import requests

from .aws import AWS_REGION, aws_env

__all__ = ["DECISION_BLOCK_ID", "SandboxClient", "load_endpoints", "sandbox_aws_env"]

# The block of a waiting decision's buttons in the automation's Slack messages (issue 14's contract).
DECISION_BLOCK_ID = "incident_ops.decision"


def load_endpoints(state_dir: str | Path) -> dict[str, Any]:
    """The endpoints.json a running sandbox wrote into its state directory."""
    path = Path(state_dir) / "endpoints.json"
    return json.loads(path.read_text(encoding="utf-8"))


def sandbox_aws_env(endpoints: dict[str, Any], region: str = AWS_REGION) -> dict[str, str]:
    """AWS_ENDPOINT_URL, the test credentials and the region, for processes that use boto3."""
    return aws_env(endpoints["aws"], region)


class SandboxClient:
    def __init__(self, endpoints: dict[str, Any], timeout: float = 30.0) -> None:
        self.endpoints = dict(endpoints)
        self.base = self.endpoints["http"].rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    @classmethod
    def from_state_dir(cls, state_dir: str | Path) -> SandboxClient:
        return cls(load_endpoints(state_dir))

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.session.request(method, f"{self.base}/_sandbox{path}", timeout=self.timeout, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"sandbox {method} {path}: HTTP {response.status_code}: {response.text[:500]}")
        return response.json()

    # --- control -------------------------------------------------------------------------------

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._call("GET", "/faults")
                return
            except (requests.RequestException, RuntimeError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def break_scenario(self, scenario: str) -> dict[str, Any]:
        return self._call("POST", f"/break/{scenario}")

    def clear_scenario(self, scenario: str) -> dict[str, Any]:
        return self._call("POST", f"/clear/{scenario}")

    def reset(self, keep_records: bool = False, aws: bool = True) -> dict[str, Any]:
        return self._call("POST", "/reset", json={"keep_records": keep_records, "aws": aws})

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        return self._call("POST", "/faults", json=faults)

    def faults(self) -> dict[str, Any]:
        return self._call("GET", "/faults")

    def tick(self) -> dict[str, Any]:
        return self._call("POST", "/tick")

    def acknowledge(self, dedup_key: str, user: str | None = None) -> dict[str, Any]:
        """`user` (a PagerDuty, roster, email or Slack id) acknowledges in the PagerDuty app; the
        stand-in then sends the signed incident.acknowledged webhook (in the background)."""
        return self._call("POST", "/pagerduty/acknowledge", json={"dedup_key": dedup_key, "user": user})

    pagerduty_acknowledge = acknowledge

    def pagerduty_resolve(self, dedup_key: str, user: str | None = None) -> dict[str, Any]:
        return self._call("POST", "/pagerduty/resolve", json={"dedup_key": dedup_key, "user": user})

    def pagerduty_reassign(self, dedup_key: str, assignee: str, user: str | None = None) -> dict[str, Any]:
        return self._call("POST", "/pagerduty/reassign", json={"dedup_key": dedup_key, "assignee": assignee, "user": user})

    def pagerduty_webhooks(self) -> list[dict[str, Any]]:
        """Every v3 webhook event the PagerDuty stand-in produced (delivered or not)."""
        return self._call("GET", "/pagerduty/webhooks")

    # --- Slack's and PagerDuty's deliveries to the automation (see sandbox/webhooks.py) ---------

    def webhooks(self) -> dict[str, Any]:
        """Where the sandbox delivers as Slack and PagerDuty, and the secrets it signs with."""
        return self._call("GET", "/webhooks")

    def set_webhooks(self, **settings: Any) -> dict[str, Any]:
        """E.g. airflow_url=..., or slack_url=/pagerduty_url=, slack_signing_secret=,
        pagerduty_webhook_secrets=[...], pagerduty_retry_delays=[...] (a reset restores the start-up ones)."""
        return self._call("POST", "/webhooks", json=settings)

    def deliveries(self, kind: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        """The deliveries made: kind "slack", "pagerduty", "slack.block_actions", "pagerduty.incident.acknowledged" ..."""
        params: dict[str, Any] = {"since": since}
        if kind:
            params["kind"] = kind
        return self._call("GET", "/webhooks/deliveries", params=params)

    def wait_deliveries(self, kind: str | None = None, count: int = 1, *, timeout: float = 30.0,
                        done: bool = True, since: int = 0) -> list[dict[str, Any]]:
        """Until `count` deliveries of `kind` exist (and, with `done`, have made their last attempt)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [d for d in self.deliveries(kind, since) if d["done"] or not done]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(found)} of {count} {kind or ''} deliveries within {timeout:.0f} s")
            time.sleep(0.1)

    def people(self) -> list[dict[str, Any]]:
        """The workspace's people: id, name, slack_user_id, pagerduty_user_id, roster, oncall (now)."""
        return self._call("GET", "/people")

    def oncall_person(self) -> dict[str, Any]:
        """The rotation's engineer now (a roster member, with slack_user_id and pagerduty_user_id)."""
        return next(p for p in self.people() if p["oncall"])

    def slack_click(self, channel: str, ts: str, action_id: str, user_id: str) -> dict[str, Any]:
        """`user_id` clicks button `action_id` of message `ts`: the signed block_actions delivery
        (status, answer, attempts, the form body and headers as sent)."""
        return self._call("POST", "/slack/click", json={"channel": channel, "ts": ts, "action_id": action_id, "user_id": user_id})

    def decision_button(self, task_id: str, option: str | int | None = None, *, run_id: str | None = None,
                        map_index: int = -1) -> dict[str, Any] | None:
        """The newest Slack message announcing the decision `task_id` (its `incident_ops.decision`
        block's button values name the task) and the button of `option` (the exact HITL option, its
        label, or its index; None: the first): {channel_id, ts, action_id, label, value, options}; None
        when no such message (or button) is there."""
        for message in reversed(self.slack_messages()):
            if message.get("ephemeral"):
                continue
            buttons = []
            for block in message.get("blocks") or []:
                if isinstance(block, dict) and block.get("type") == "actions" and block.get("block_id") == DECISION_BLOCK_ID:
                    for element in block.get("elements") or []:
                        try:
                            value = json.loads(element.get("value") or "")
                        except (TypeError, ValueError):
                            continue
                        if not isinstance(value, dict) or value.get("task_id") != task_id:
                            continue
                        if run_id is not None and value.get("run_id") not in (None, run_id):
                            continue
                        if value.get("map_index", -1) != map_index:
                            continue
                        buttons.append({"action_id": element.get("action_id"), "value": value,
                                        "label": (element.get("text") or {}).get("text")})
            if not buttons:
                continue
            options = [b["value"].get("option") for b in buttons]
            if option is None:
                chosen = buttons[0]
            elif isinstance(option, int):
                chosen = buttons[option] if 0 <= option < len(buttons) else None
            else:
                chosen = next((b for b in buttons if option in (b["value"].get("option"), b["label"])), None)
            if chosen is None:
                return None
            return {"channel_id": message["channel_id"], "ts": message["ts"], "action_id": chosen["action_id"],
                    "label": chosen["label"], "value": chosen["value"], "options": options}
        return None

    def click_decision(self, task_id: str, option: str | int | None, user_id: str, *, run_id: str | None = None,
                       map_index: int = -1) -> dict[str, Any]:
        """`user_id` clicks the button of `option` on the decision's Slack message: the delivery."""
        button = self.decision_button(task_id, option, run_id=run_id, map_index=map_index)
        if button is None:
            raise LookupError(f"no Slack message with a button {option!r} for the decision {task_id}")
        return {**self.slack_click(button["channel_id"], button["ts"], button["action_id"], user_id), "button": button}

    def slack_command(self, text: str, user_id: str, channel: str | None = None, command: str = "/incident") -> dict[str, Any]:
        """`user_id` types `<command> <text>` in `channel` (default #infra-support): the signed delivery;
        the app's answer is shown to that user in the channel (an ephemeral message) as Slack does."""
        body: dict[str, Any] = {"text": text, "user_id": user_id, "command": command}
        if channel:
            body["channel"] = channel
        return self._call("POST", "/slack/command", json=body)

    def slack_responses(self) -> list[dict[str, Any]]:
        """What the app POSTed to the response_urls of the payloads (with the effect each had)."""
        return self._call("GET", "/slack/responses")

    # --- Amazon SNS (the sandbox signs and delivers, see sandbox/sns.py) ------------------------

    def sns_publish(self, endpoint: str, alarm: dict[str, Any], *, topic_arn: str | None = None, count: int = 1,
                    same_message: bool = False, concurrency: int = 16, signature_version: str = "2",
                    tamper: bool = False, cert_url: str | None = None, timeout: float | None = None,
                    delivery_timeout: float | None = None) -> dict[str, Any]:
        """Deliver the CloudWatch alarm (completed from moto) to `endpoint` as SNS does, `count` times
        (distinct MessageIds, or one redelivered with `same_message`); a summary of the answers.
        `delivery_timeout`: how long each delivery waits for its answer (the sandbox's default is 30 s;
        SNS gives an HTTP endpoint 15 s); a later answer counts as an error, with no HTTP status."""
        body: dict[str, Any] = {"endpoint": endpoint, "alarm": alarm, "count": count, "same_message": same_message,
                                "concurrency": concurrency, "signature_version": signature_version, "tamper": tamper}
        if topic_arn:
            body["topic_arn"] = topic_arn
        if cert_url:
            body["cert_url"] = cert_url
        if delivery_timeout is not None:
            body["timeout"] = delivery_timeout
        wait = timeout if timeout is not None else max(self.timeout, 60.0 + count / 20)
        response = self.session.post(f"{self.base}/_sandbox/sns/publish", json=body, timeout=wait)
        if response.status_code >= 400:
            raise RuntimeError(f"sandbox sns publish: HTTP {response.status_code}: {response.text[:500]}")
        return response.json()

    def sns_subscribe(self, endpoint: str, *, topic_arn: str | None = None, kind: str = "SubscriptionConfirmation",
                      subscribe_url: str | None = None, count: int = 1) -> dict[str, Any]:
        """Send a SubscriptionConfirmation (or UnsubscribeConfirmation) to `endpoint`, `count` copies."""
        body: dict[str, Any] = {"endpoint": endpoint, "type": kind, "count": count}
        if topic_arn:
            body["topic_arn"] = topic_arn
        if subscribe_url:
            body["subscribe_url"] = subscribe_url
        return self._call("POST", "/sns/subscribe", json=body)

    def sns_subscriptions(self) -> dict[str, Any]:
        return self._call("GET", "/sns/subscriptions")

    # --- views ---------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return self._call("GET", "/state")

    def records(self, service: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"since": since}
        if service:
            params["service"] = service
        return self._call("GET", "/records", params=params)

    def slack_messages(self, channel: str | None = None) -> list[dict[str, Any]]:
        return self._call("GET", "/slack/messages", params={"channel": channel} if channel else None)

    def slack_channels(self) -> list[dict[str, Any]]:
        return self._call("GET", "/slack/channels")

    def pagerduty_events(self) -> list[dict[str, Any]]:
        return self._call("GET", "/pagerduty/events")

    def pagerduty_incidents(self) -> list[dict[str, Any]]:
        return self._call("GET", "/pagerduty/incidents")

    def github_runs(self) -> list[dict[str, Any]]:
        return self._call("GET", "/github/runs")

    def health(self) -> tuple[int, Any]:
        """(HTTP status, JSON body) of the PeopleBooster health endpoint."""
        response = self.session.get(f"{self.base}/pb/health", timeout=self.timeout)
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, response.text

    def aws_env(self) -> dict[str, str]:
        return sandbox_aws_env(self.endpoints, self.endpoints.get("region", AWS_REGION))
