"""Breaking a scenario, and the evaluator that keeps the evidence moving while the sandbox runs.

A break changes AWS state in moto where AWS can express the fault, and the sandbox's memory where it
cannot (see health.py for the rules), then leaves the evidence a real incident would: the alarm in
ALARM, ERROR lines in both log groups, a metric spike, Sentry issues (sentry.py reads the breaks).

The evaluator ticks every `tick_seconds`: it notes when a broken scenario healed, returns the alarms
a break raised to OK once their scenario is healthy (and raises them again if it breaks again), and
once a minute publishes the current metrics and a few log lines, so the numbers follow the health.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from .evidence import ALARMS, ERROR_LINES, METRICS, alarm_reason
from .health import COMPROMISE_TAG
from .seed import baseline_metrics, log_line, log_stream, metric_data, put_log_lines, put_metrics, register_revision
from .state import SCENARIOS, BreakInfo, iso

if TYPE_CHECKING:
    from .context import SandboxContext

__all__ = ["Evaluator", "ScenarioError", "break_scenario", "clear_scenario", "current_metrics"]

log = logging.getLogger(__name__)


class ScenarioError(ValueError):
    pass


def current_metrics(ctx: SandboxContext, problems: dict[str, str]) -> dict[str, float]:
    values = baseline_metrics(ctx.names)
    for scenario in problems:
        for key, value in METRICS.get(scenario, {}).items():
            values[key] = max(values.get(key, 0.0), value)
    return values


def _alarm_names(ctx: SandboxContext, scenario: str) -> list[str]:
    """The alarms a break raises: the sandbox's choice plus the runbook's `signals.alarms`."""
    existing = {name for name, _ in ctx.names.alarms}
    wanted = [f"{ctx.names.prefix}-{suffix}" for suffix in ALARMS.get(scenario, ())]
    if scenario in ctx.runbook.scenarios:
        wanted += ctx.runbook.scenario(scenario).signals.alarms
    return [name for name in dict.fromkeys(wanted) if name in existing]


def _raise_alarms(ctx: SandboxContext, scenario: str, values: dict[str, float]) -> list[str]:
    raised = []
    for name in _alarm_names(ctx, scenario):
        suffix = name.removeprefix(f"{ctx.names.prefix}-")
        value = {
            "alb-5xx": values["alb_5xx"],
            "backend-cpu-high": values.get(f"ecs_cpu:{ctx.names.default_service}", 0.0),
            "backend-memory-high": values.get(f"ecs_memory:{ctx.names.default_service}", 0.0),
            "rds-connections-high": values["rds_connections"],
            "rds-cpu-high": values["rds_cpu"],
        }.get(suffix, values["unhealthy_hosts"])
        ctx.aws.cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason=alarm_reason(suffix, value))
        ctx.memory.owned_alarms.setdefault(name, set()).add(scenario)
        raised.append(name)
    return raised


def _error_lines(ctx: SandboxContext, scenario: str, now: float, minutes: int, facts: Any) -> None:
    """ERROR lines of the scenario over the last `minutes` in both log groups."""
    names = ctx.names
    svc = names.backend
    templates = ERROR_LINES[scenario]
    app_lines, err_lines = [], []
    steps = max(minutes * 4, 1)
    for i in range(steps):
        ts = now - minutes * 60 + (i + 1) * (minutes * 60 / steps) - 0.5
        level, template = templates[i % len(templates)]
        message = template.format(
            rid=f"req-{int(ts * 1000) % 10**8:08d}",
            image=(facts.image or "").rsplit("/", 1)[-1],
            writer=ctx.memory.failed_writer or names.db_writer,
            task=log_stream(names, svc).rsplit("/", 1)[-1][:12],
        )
        line = log_line(ts, level, svc.ecs_service, message)
        app_lines.append((ts, line))
        if level == "ERROR":
            err_lines.append((ts, line))
    stream = log_stream(names, svc)
    put_log_lines(ctx.aws, names.log_groups["application"], stream, app_lines)
    put_log_lines(ctx.aws, names.log_groups["error"], stream, err_lines)


def break_scenario(ctx: SandboxContext, scenario: str) -> dict[str, Any]:
    """Break `scenario` (AWS state + memory + evidence); returns what was done."""
    if scenario not in SCENARIOS:
        raise ScenarioError(f"unknown scenario {scenario!r}; scenarios are {', '.join(SCENARIOS)}")
    names = ctx.names
    svc = names.backend
    aws = ctx.aws
    with ctx.lock:
        now = time.time()
        detail: dict[str, Any] = {}
        if scenario == "deploy":
            ctx.memory.deploy_counter += 1
            tag = f"broken-{ctx.memory.deploy_counter}"
            arn = register_revision(aws, names, svc, tag, {"SANDBOX_FAULT": "deploy"})
            aws.ecs.update_service(cluster=names.cluster, service=svc.ecs_service, taskDefinition=arn, forceNewDeployment=True)
            # The team deploys through GitHub Actions: the bad build arrived with a deploy.yml run.
            run = ctx.github.record_completed_run(
                ctx.env.github.repository, "deploy.yml",
                {"environment": names.env_name, "service": names.default_service, "version": tag},
                actor="peoplebooster-dev",
            )
            detail = {"task_definition": arn, "image": f"{svc.image_repo}:{tag}", "deploy_run": run["id"]}
        elif scenario == "resource":
            ctx.memory.resource_need = ctx.resource_need
            aws.ecs.update_service(cluster=names.cluster, service=svc.ecs_service, desiredCount=1)
            detail = {"desired_count": 1, "need": ctx.resource_need}
        elif scenario == "database":
            facts = ctx.health().facts
            if facts.writer is None:
                raise ScenarioError(f"no writer found in {names.db_cluster}")
            ctx.memory.failed_writer = facts.writer
            detail = {"failed_writer": facts.writer}
        elif scenario == "external":
            ctx.memory.external_outage = True
            detail = {"status_page": "major"}
        elif scenario == "security":
            service = aws.ecs.describe_services(cluster=names.cluster, services=[svc.ecs_service])["services"][0]
            aws.ecs.tag_resource(resourceArn=service["serviceArn"], tags=[{"key": COMPROMISE_TAG, "value": iso(now)}])
            detail = {"service": service["serviceArn"], "tag": COMPROMISE_TAG}
        ctx.memory.breaks[scenario] = BreakInfo(scenario=scenario, at=now, detail=detail)
        health = ctx.health()
        values = current_metrics(ctx, health.problems)
        detail["alarms"] = _raise_alarms(ctx, scenario, values)
        _error_lines(ctx, scenario, now, 4, health.facts)
        # The spike starts in the current minute (the minutes before keep their calm datapoints).
        put_metrics(aws, metric_data(ctx.seeded, [(now, values)]))
        ctx.published_minutes.add(int(now // 60))
        log.info("sandbox: broke %s: %s", scenario, detail)
        return {"scenario": scenario, "detail": detail, "health": health.body()}


def clear_scenario(ctx: SandboxContext, scenario: str) -> dict[str, Any]:
    """The cause goes away by itself (e.g. the external provider recovers); AWS state is untouched."""
    if scenario not in SCENARIOS:
        raise ScenarioError(f"unknown scenario {scenario!r}; scenarios are {', '.join(SCENARIOS)}")
    with ctx.lock:
        if scenario == "external":
            ctx.memory.external_outage = False
        elif scenario == "database":
            ctx.memory.failed_writer = None
        elif scenario == "resource":
            ctx.memory.resource_need = None
        elif scenario == "security":
            service = ctx.aws.ecs.describe_services(cluster=ctx.names.cluster, services=[ctx.names.backend.ecs_service])["services"][0]
            ctx.aws.ecs.untag_resource(resourceArn=service["serviceArn"], tagKeys=[COMPROMISE_TAG])
        # deploy: the bad task definition stays deployed; only a rollback heals it.
        health = ctx.health()
        return {"scenario": scenario, "health": health.body()}


class Evaluator:
    """The background tick (see the module docstring)."""

    def __init__(self, ctx: SandboxContext) -> None:
        self.ctx = ctx
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> Evaluator:
        self._thread = threading.Thread(target=self._run, name="sandbox-evaluator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.ctx.tick_seconds):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - keep ticking; a reset may race a tick
                log.exception("sandbox evaluator tick failed")

    def tick(self, now: float | None = None) -> None:
        ctx = self.ctx
        with ctx.lock:
            now = time.time() if now is None else now
            health = ctx.health()
            values = current_metrics(ctx, health.problems)
            for scenario, info in ctx.memory.breaks.items():
                if scenario in health.problems:
                    info.healed_at = None
                    for name in _alarm_names(ctx, scenario):
                        if scenario not in ctx.memory.owned_alarms.get(name, set()):
                            _raise_alarms(ctx, scenario, values)
                            break
                elif info.healed_at is None:
                    info.healed_at = now
            for name, owners in list(ctx.memory.owned_alarms.items()):
                if not owners & set(health.problems):
                    ctx.aws.cloudwatch.set_alarm_state(
                        AlarmName=name,
                        StateValue="OK",
                        StateReason="Threshold Crossed: 3 datapoints were not greater than the threshold (recovered).",
                    )
                    del ctx.memory.owned_alarms[name]
            # Once a minute has ended, it gets its datapoint (unless a break already gave it one).
            ended = int(now // 60) - 1
            if ended not in ctx.published_minutes:
                ctx.published_minutes.add(ended)
                ctx.published_minutes.difference_update({m for m in ctx.published_minutes if m < ended - 120})
                put_metrics(ctx.aws, metric_data(ctx.seeded, [(ended * 60, values)]))
                self._minute_logs(now, health)

    def _minute_logs(self, now: float, health: Any) -> None:
        ctx = self.ctx
        broken = [s for s in health.problems if s in ERROR_LINES]
        if broken:
            for scenario in broken:
                _error_lines(ctx, scenario, now, 1, health.facts)
            return
        svc = ctx.names.backend
        lines = [(now - 30, log_line(now - 30, "INFO", svc.ecs_service, "GET /health 200 4ms")),
                 (now - 10, log_line(now - 10, "INFO", svc.ecs_service, "POST /api/v1/auth/login 200 51ms"))]
        put_log_lines(ctx.aws, ctx.names.log_groups["application"], log_stream(ctx.names, svc), lines)
