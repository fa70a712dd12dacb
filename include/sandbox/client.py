"""A thin client of the sandbox's control API, for the demo and the tests.

    client = SandboxClient.from_state_dir("state/sandbox")   # or SandboxClient(sandbox.endpoints)
    client.reset()
    client.break_scenario("deploy")
    client.set_faults(slack=429, slack_count=2)
    client.slack_messages(channel="incident-20260105")
    client.sns_publish("http://127.0.0.1:8080/incidents/webhooks/sns", {"AlarmName": "peoplebooster-production-alb-5xx"})
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import requests

from .aws import AWS_REGION, aws_env

__all__ = ["SandboxClient", "load_endpoints", "sandbox_aws_env"]


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
        return self._call("POST", "/pagerduty/acknowledge", json={"dedup_key": dedup_key, "user": user})

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
