"""The sandbox's shared context: runbook, moto clients, memory, and the stand-ins' state.

One `SandboxContext` serves the HTTP and the HTTPS server (two threads, one app). `lock` guards the
memory and serialises everything that reads or changes moto in several steps (health reads, breaks,
the evaluator's tick, GitHub rollbacks, reset), so nobody sees a half-done reset.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import requests

from .aws import AwsClients
from .github import GitHubState
from .health import Health, evaluate, read_facts
from .pagerduty import PagerDutyState
from .seed import Names, SeedResult, names_for, seed
from .slack import SlackWorkspace
from .state import Faults, Records, ScenarioMemory
from .webhooks import Deliveries, PagerDutyDispatcher, WebhookConfig

__all__ = ["SandboxContext"]


class SandboxContext:
    def __init__(
        self,
        runbook: Any,
        aws: AwsClients,
        *,
        env_name: str = "production",
        environments: list[str] | None = None,
        github_delay: float = 3.0,
        tick_seconds: float = 5.0,
        resource_need: int = 8,
        no_push_user: str | None = "",
        webhooks: WebhookConfig | None = None,
    ) -> None:
        self.runbook = runbook
        self.aws = aws
        self.env_name = env_name
        self.env = runbook.environment(env_name)
        self.environments = environments or list(runbook.environments)
        if env_name not in self.environments:
            self.environments.insert(0, env_name)
        self.names: Names = names_for(runbook, env_name, list(runbook.environments).index(env_name))
        self.tick_seconds = tick_seconds
        self.resource_need = resource_need
        self.lock = threading.RLock()
        self.stop_event = threading.Event()
        if no_push_user == "":
            # Default: the last roster member has not installed the PagerDuty app.
            no_push_user = runbook.oncall.roster[-1].pagerduty_user_id
        self._default_faults = {"github_delay": github_delay, "pagerduty_no_push_user": no_push_user}
        self.faults = Faults(**self._default_faults)
        self.records = Records()
        self.memory = ScenarioMemory()
        # Where the Slack and PagerDuty stand-ins deliver (the automation's webhooks) and with which
        # secrets; a reset returns to these start-up settings.
        self._default_webhooks = webhooks or WebhookConfig()
        self.webhooks = self._default_webhooks.copy()
        self.deliveries = Deliveries()
        self.pagerduty_webhooks = PagerDutyDispatcher(self.deliveries, lambda: self.webhooks)
        self.slack = SlackWorkspace(runbook)
        self.pagerduty = PagerDutyState(runbook, notify=self.pagerduty_webhooks.send)
        self.github = GitHubState()
        self.seed_results: dict[str, SeedResult] = {}
        self.generation = 0
        # Minutes (epoch // 60) that already have a metric datapoint (one per minute and series).
        self.published_minutes: set[int] = set()
        self.started_at = time.time()

    # --- AWS -----------------------------------------------------------------------------------

    @property
    def seeded(self) -> SeedResult:
        return self.seed_results[self.env_name]

    def seed(self) -> dict[str, SeedResult]:
        with self.lock:
            self.seed_results = seed(self.aws, self.runbook, self.environments)
            now = int(time.time() // 60)
            self.published_minutes.update(range(now - 60, now))
            return self.seed_results

    def health(self) -> Health:
        with self.lock:
            facts = read_facts(self.aws, self.names)
            return evaluate(facts, self.memory, self.names)

    def reset(self, keep_records: bool = False, aws: bool = True) -> None:
        """Heal everything: wipe moto and seed again, forget breaks and faults (and records).

        `aws=False` leaves moto as it is (a quick reset of the stand-ins for tests that do not
        touch AWS; the breaks are forgotten, so use it only when nothing was broken in AWS).
        """
        with self.lock:
            self.generation += 1
            self.github.cancel_all()
            self.memory.clear()
            if aws:
                self.published_minutes.clear()
            self.faults = Faults(**self._default_faults)
            self.webhooks = self._default_webhooks.copy()
            self.pagerduty_webhooks.cancel()
            if not keep_records:
                self.records.clear()
                self.deliveries.clear()
                self.slack = SlackWorkspace(self.runbook)
                self.pagerduty = PagerDutyState(self.runbook, notify=self.pagerduty_webhooks.send)
                self.github = GitHubState()
            if aws:
                response = requests.post(f"{self.aws.endpoint}/moto-api/reset", timeout=30)
                response.raise_for_status()
                self.seed()

    def state(self) -> dict[str, Any]:
        with self.lock:
            health = self.health()
            facts = health.facts
            return {
                "environment": self.env_name,
                "scenarios": sorted(self.memory.breaks),
                "breaks": {name: info.to_dict() for name, info in self.memory.breaks.items()},
                "healthy": health.healthy,
                "problems": health.problems,
                "health": health.body(),
                "aws": {
                    "cluster": self.names.cluster,
                    "service": self.names.backend.ecs_service,
                    "task_definition": facts.task_definition,
                    "image": facts.image,
                    "bad_deploy": facts.bad_deploy,
                    "desired_count": facts.desired_count,
                    "task_cpu": facts.task_cpu,
                    "capacity": health.capacity,
                    "need": health.need,
                    "writer": facts.writer,
                    "failed_writer": self.memory.failed_writer,
                    "external_fallback_flag": facts.flag,
                    "external_outage": self.memory.external_outage,
                    "security_groups": facts.security_groups,
                    "quarantine_group": facts.quarantine_group,
                    "registered_targets": facts.registered_targets,
                    "compromised": facts.compromised,
                    "errors": facts.errors,
                },
                "faults": self.faults.to_dict(),
                "owned_alarms": {k: sorted(v) for k, v in self.memory.owned_alarms.items()},
            }
