"""Deferrable wait of the GitHub rollback: the `rollback.yml` run, followed in the triggerer (no worker
slot held for the up to 900 s the run may take)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from incident_ops.triggers import health

__all__ = ["GitHubRunTrigger", "github_client"]


def github_client(environment: str) -> Any:
    """The GitHub client of `environment`, from the connections (`github_default`), as the task has it."""
    from incident_ops.flows.incident import services_for

    services = services_for(environment)
    return services.github if services.settings.github_token else None


class GitHubRunTrigger(BaseTrigger):
    """Polls GET .../actions/runs/{run_id} every `poll` seconds (in a thread: the client is
    synchronous, with its retries and rate-limit handling) until the run's status is `completed`, or
    `deadline` (epoch seconds, so a triggerer restart keeps the wait's end) passes. Fires once with
    {"run": the run's last state} (`timed_out: True` when the deadline passed first), or {"error": ...}
    when the API keeps failing; `incident_ops.actions.github.finish_rollback` reads it.
    Importable from plugins/ (the triggerer loads it by its path)."""

    def __init__(self, environment: str, repository: str, run_id: int, *, deadline: float, poll: float) -> None:
        super().__init__()
        self.environment = environment
        self.repository = repository
        self.run_id = int(run_id)
        self.deadline = float(deadline)
        self.poll = float(poll)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "incident_ops.triggers.github.GitHubRunTrigger",
            {"environment": self.environment, "repository": self.repository, "run_id": self.run_id,
             "deadline": self.deadline, "poll": self.poll},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from incident_ops.clients.http import HttpError

        # Let the scheduler see the deferral before an event can resume the task (see HealthTrigger).
        await asyncio.sleep(min(health.MIN_FIRST_WAIT, max(self.deadline - time.time(), 0.0)))
        try:
            client = await asyncio.to_thread(github_client, self.environment)
            if client is None:
                yield TriggerEvent({"error": f"no GitHub token for {self.environment} (connection github_default)"})
                return
            while True:
                run = await asyncio.to_thread(client.get_run, self.repository, self.run_id)
                self.log.info("rollback run %s: %s/%s", self.run_id, run.get("status"), run.get("conclusion"))
                if run.get("status") == "completed":
                    yield TriggerEvent({"run": run, "timed_out": False})
                    return
                left = self.deadline - time.time()
                if left <= 0:
                    yield TriggerEvent({"run": run, "timed_out": True})
                    return
                await asyncio.sleep(min(self.poll, left))
        except HttpError as exc:
            yield TriggerEvent({"error": str(exc)})
