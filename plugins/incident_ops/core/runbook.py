"""The runbook file as a validated model.

One YAML file holds the policy (severities, triage, escalation, calendar, rotation, scenarios,
postmortem) and the inventory (environments). `load_runbook` validates it with pydantic and raises
`RunbookError` naming the key path and the reason, so a broken file stops everything before it runs.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "ACTIONS",
    "DEFAULT_RUNBOOK_PATH",
    "SEVERITIES",
    "Runbook",
    "RunbookError",
    "load_runbook",
    "parse_runbook",
    "runbook_path",
]

SEVERITIES: tuple[str, ...] = ("P1", "P2", "P3", "P4")
Severity = Literal["P1", "P2", "P3", "P4"]
Channel = Literal["pagerduty", "phone", "slack", "email"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# The modules of the collection a scenario step may name (incident_ops.actions registers one
# implementation per name; a test keeps the two lists equal).
ACTIONS: frozenset[str] = frozenset(
    {
        "ecs_scale_out",
        "ecs_scale_up",
        "ecs_rollback",
        "ecs_force_deployment",
        "github_rollback",
        "rds_failover",
        "rds_restore_snapshot",
        "set_feature_flag",
        "external_status_check",
        "isolate_service",
        "restore_service",
    }
)
SCENARIOS: tuple[str, ...] = ("deploy", "resource", "database", "external", "security")

DEFAULT_RUNBOOK_PATH = Path(__file__).resolve().parents[3] / "include" / "runbook" / "peoplebooster.yaml"

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class RunbookError(ValueError):
    """The runbook file is missing, not YAML, or breaks the schema. `path` is the key path."""

    def __init__(self, path: str, reason: str, source: str | None = None) -> None:
        self.path = path
        self.reason = reason
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{path or '<root>'}: {reason}")


class _Model(BaseModel):
    # Unknown keys are mistakes (a typo must not silently drop a rule).
    model_config = ConfigDict(extra="forbid", frozen=True)


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc
    return name


def _hhmm(value: str) -> str:
    if not _HHMM.match(value):
        raise ValueError(f"expected a time HH:MM, got {value!r}")
    return value


class SeverityLevel(_Model):
    name: str
    definition: str
    response_start_minutes: int = Field(gt=0)


class Symptom(_Model):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str
    severity: Severity
    impact: str
    aliases: list[str] = []


class Triage(_Model):
    unmatched_severity: Severity
    symptoms: list[Symptom] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> Triage:
        seen: set[str] = set()
        for symptom in self.symptoms:
            if symptom.id in seen:
                raise ValueError(f"symptom id {symptom.id!r} appears twice")
            seen.add(symptom.id)
        return self


class Person(_Model):
    name: str
    slack_user_id: str
    pagerduty_user_id: str | None = None
    email: str | None = None
    phone: str | None = None


class RosterEntry(Person):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")


class Contacts(_Model):
    people: dict[str, Person]
    channels: dict[str, str]
    emergency_email: str
    aws_support: str = "AWS Support Console"

    @field_validator("channels")
    @classmethod
    def _needs_team_channels(cls, value: dict[str, str]) -> dict[str, str]:
        for key in ("infra", "dev_team"):
            if key not in value:
                raise ValueError(f"missing channel {key!r}")
        for key, name in value.items():
            if not name.startswith("#"):
                raise ValueError(f"channel {key!r} must start with '#', got {name!r}")
        return value


class Notice(_Model):
    target: str
    via: Channel
    next_business_day_ok: bool = False


class Escalation(_Model):
    P1: list[Notice] = Field(min_length=1)
    P2: list[Notice] = Field(min_length=1)
    P3: list[Notice] = Field(min_length=1)
    P4: list[Notice] = Field(min_length=1)
    unacknowledged: dict[Severity, list[Notice]] = {}

    def for_severity(self, severity: str) -> list[Notice]:
        return list(getattr(self, severity))


class BusinessHours(_Model):
    start: str
    end: str

    _check_start = field_validator("start", "end")(classmethod(lambda cls, v: _hhmm(v)))

    @model_validator(mode="after")
    def _ordered(self) -> BusinessHours:
        if self.start >= self.end:
            raise ValueError(f"start {self.start} must be before end {self.end}")
        return self


class Calendar(_Model):
    timezone: str
    business_hours: BusinessHours
    business_days: list[Weekday] = Field(min_length=1)
    public_holidays: str | None = "JP"
    extra_days_off: list[dt.date] = []

    _check_zone = field_validator("timezone")(classmethod(lambda cls, v: _zone(v)))


class Handoff(_Model):
    weekday: Weekday
    time: str

    _check_time = field_validator("time")(classmethod(lambda cls, v: _hhmm(v)))


class Oncall(_Model):
    handoff: Handoff
    rotation_start: dt.datetime
    pagerduty_schedule_id: str | None = None
    roster: list[RosterEntry] = Field(min_length=1)
    business_hours_team_extra: list[str] = []

    @field_validator("rotation_start")
    @classmethod
    def _aware(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None:
            raise ValueError("rotation_start needs a UTC offset, e.g. 2026-01-05T10:00:00+09:00")
        return value

    @model_validator(mode="after")
    def _unique_roster(self) -> Oncall:
        ids = [entry.id for entry in self.roster]
        if len(ids) != len(set(ids)):
            raise ValueError("roster ids must be unique")
        return self


class ScenarioSignals(_Model):
    recent_deploy_minutes: int | None = None
    log_terms: list[str] = []
    alarms: list[str] = []
    metrics_above: dict[str, float] = {}


class Step(_Model):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    action: str
    params: dict[str, Any] = {}
    approval: bool = False
    optional: bool = False
    fallback: str | None = None
    only_as_fallback: bool = False

    @field_validator("action")
    @classmethod
    def _known_action(cls, value: str) -> str:
        if value not in ACTIONS:
            raise ValueError(f"unknown action {value!r}; known actions: {', '.join(sorted(ACTIONS))}")
        return value


class Scenario(_Model):
    label: str
    remediation: str
    signals: ScenarioSignals = ScenarioSignals()
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _fallbacks_exist(self) -> Scenario:
        ids = [step.id for step in self.steps]
        if len(ids) != len(set(ids)):
            raise ValueError("step ids must be unique within a scenario")
        for step in self.steps:
            if step.fallback is not None and step.fallback not in ids:
                raise ValueError(f"step {step.id!r} falls back to unknown step {step.fallback!r}")
        return self

    def main_steps(self) -> list[Step]:
        return [step for step in self.steps if not step.only_as_fallback]

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)


class Decision(_Model):
    timeout_minutes: int = Field(gt=0)
    on_timeout: str


class Decisions(_Model):
    scenario_choice: Decision
    approval: Decision

    @field_validator("approval")
    @classmethod
    def _approval_default(cls, value: Decision) -> Decision:
        if value.on_timeout not in ("approve", "reject"):
            raise ValueError(f"on_timeout must be 'approve' or 'reject', got {value.on_timeout!r}")
        return value

    @field_validator("scenario_choice")
    @classmethod
    def _choice_default(cls, value: Decision) -> Decision:
        allowed = ("suggested", *SCENARIOS)
        if value.on_timeout not in allowed:
            raise ValueError(f"on_timeout must be one of {', '.join(allowed)}, got {value.on_timeout!r}")
        return value


class Verification(_Model):
    consecutive_healthy: int = Field(ge=1)
    interval_seconds: float = Field(gt=0)
    timeout_minutes: float = Field(gt=0)


class Postmortem(_Model):
    required_for: list[Severity]
    reminder_after_hours: float = Field(gt=0)
    due_after_hours: float = Field(gt=0)
    sections: list[str] = Field(min_length=1)
    storage: str

    @model_validator(mode="after")
    def _ordered(self) -> Postmortem:
        if self.reminder_after_hours >= self.due_after_hours:
            raise ValueError("reminder_after_hours must come before due_after_hours")
        return self


class SlackSettings(_Model):
    channel_prefix: str = Field(pattern=r"^[a-z0-9_-]+$")
    channel_date_format: str


class ServiceInventory(_Model):
    ecs_service: str
    github_service: str
    target_group: str
    min_desired_count: int = Field(ge=0)
    max_desired_count: int = Field(ge=1)

    @model_validator(mode="after")
    def _bounds(self) -> ServiceInventory:
        if self.min_desired_count > self.max_desired_count:
            raise ValueError("min_desired_count must not exceed max_desired_count")
        return self


class Database(_Model):
    engine: str
    cluster_id: str | None = None
    instance_id: str
    restore_instance_class: str


class GitHub(_Model):
    repository: str = Field(pattern=r"^[\w.-]+/[\w.-]+$")
    ref: str = "main"


class Sentry(_Model):
    organization: str
    project: str


class AlarmMapping(_Model):
    name: str
    service: str
    symptom: str
    severity: Severity | None = None


class DefaultAlarm(_Model):
    service: str
    symptom: str
    severity: Severity | None = None


class MetricSpec(_Model):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str
    namespace: str
    metric: str
    stat: str
    unit: str
    per_service: bool = False


class FunctionalCheck(_Model):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    path: str
    json_body: dict[str, Any] | None = Field(default=None, alias="json")
    expect_status: int = Field(ge=100, le=599)
    max_ms: int = Field(gt=0)
    capture: dict[str, str] = {}


class GuardRails(_Model):
    allow_remediation: bool


class Environment(_Model):
    region: str
    account_id: str = Field(pattern=r"^\d{12}$")
    cluster: str
    services: dict[str, ServiceInventory] = Field(min_length=1)
    default_service: str
    health_url: str = Field(pattern=r"^https?://")
    api_base_url: str = Field(pattern=r"^https?://")
    log_groups: dict[str, str]
    load_balancer: str
    database: Database
    feature_flags: dict[str, str]
    external_status_url: str | None = None
    quarantine_security_group: str
    github: GitHub
    sentry: Sentry
    alarms: list[AlarmMapping] = []
    default_alarm: DefaultAlarm
    metrics: list[MetricSpec] = []
    functional_checks: list[FunctionalCheck] = []
    guard_rails: GuardRails

    @model_validator(mode="after")
    def _references(self) -> Environment:
        if self.default_service not in self.services:
            raise ValueError(f"default_service {self.default_service!r} is not one of services")
        for alarm in [*self.alarms, self.default_alarm]:
            if alarm.service not in self.services:
                raise ValueError(f"alarm {getattr(alarm, 'name', 'default_alarm')!r} names unknown service {alarm.service!r}")
        for key in ("application", "error"):
            if key not in self.log_groups:
                raise ValueError(f"log_groups needs {key!r}")
        return self

    def service(self, name: str | None) -> ServiceInventory:
        """The service by its short name (`backend`) or ECS name (`peoplebooster-backend`)."""
        name = name or self.default_service
        if name in self.services:
            return self.services[name]
        for svc in self.services.values():
            if svc.ecs_service == name:
                return svc
        raise KeyError(f"unknown service {name!r}; known: {', '.join(self.services)}")

    def service_key(self, name: str | None) -> str:
        target = self.service(name)
        return next(key for key, svc in self.services.items() if svc is target)


class Runbook(_Model):
    version: Literal[1]
    product: str
    timezone: str
    severities: dict[Severity, SeverityLevel]
    declare_severities: list[Severity]
    triage: Triage
    contacts: Contacts
    escalation: Escalation
    calendar: Calendar
    oncall: Oncall
    scenarios: dict[str, Scenario]
    decisions: Decisions
    verification: Verification
    postmortem: Postmortem
    slack: SlackSettings
    environments: dict[str, Environment] = Field(min_length=1)

    _check_zone = field_validator("timezone")(classmethod(lambda cls, v: _zone(v)))

    @field_validator("severities")
    @classmethod
    def _all_severities(cls, value: dict[str, SeverityLevel]) -> dict[str, SeverityLevel]:
        missing = [s for s in SEVERITIES if s not in value]
        if missing:
            raise ValueError(f"missing severities {', '.join(missing)}")
        return value

    @field_validator("scenarios")
    @classmethod
    def _scenario_names(cls, value: dict[str, Scenario]) -> dict[str, Scenario]:
        unknown = [name for name in value if name not in SCENARIOS]
        if unknown:
            raise ValueError(f"unknown scenario {unknown[0]!r}; scenarios are {', '.join(SCENARIOS)}")
        missing = [name for name in SCENARIOS if name not in value]
        if missing:
            raise ValueError(f"missing scenarios {', '.join(missing)}")
        return value

    @model_validator(mode="after")
    def _references(self) -> Runbook:
        targets = {"oncall", "dev_team", *self.contacts.people}
        for severity in SEVERITIES:
            for notice in [*self.escalation.for_severity(severity), *self.escalation.unacknowledged.get(severity, [])]:
                if notice.target not in targets:
                    raise ValueError(
                        f"at escalation.{severity}: unknown target {notice.target!r}; known: {', '.join(sorted(targets))}"
                    )
        symptom_ids = {s.id for s in self.triage.symptoms}
        for env_name, env in self.environments.items():
            for alarm in [*env.alarms, env.default_alarm]:
                if alarm.symptom not in symptom_ids:
                    raise ValueError(f"at environments.{env_name}.alarms: alarm names unknown symptom {alarm.symptom!r}")
        for extra in self.oncall.business_hours_team_extra:
            if extra not in self.contacts.people:
                raise ValueError(f"at oncall.business_hours_team_extra: unknown person {extra!r}")
        return self

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def environment(self, name: str) -> Environment:
        try:
            return self.environments[name]
        except KeyError:
            raise KeyError(f"unknown environment {name!r}; known: {', '.join(self.environments)}") from None

    def symptom(self, symptom_id: str) -> Symptom:
        for symptom in self.triage.symptoms:
            if symptom.id == symptom_id:
                return symptom
        raise KeyError(f"unknown symptom {symptom_id!r}")

    def scenario(self, name: str) -> Scenario:
        try:
            return self.scenarios[name]
        except KeyError:
            raise KeyError(f"unknown scenario {name!r}; scenarios are {', '.join(SCENARIOS)}") from None

    def person(self, person_id: str) -> Person:
        if person_id in self.contacts.people:
            return self.contacts.people[person_id]
        for entry in self.oncall.roster:
            if entry.id == person_id:
                return entry
        raise KeyError(f"unknown person {person_id!r}")


def _key_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def _first_error(exc: ValidationError) -> tuple[str, str]:
    error = exc.errors()[0]
    # Drop pydantic's internal discriminator parts (e.g. function-after[...]) from the path.
    loc = tuple(part for part in error["loc"] if not (isinstance(part, str) and "[" in part and "]" in part))
    reason = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        reason = "unknown key (not part of the runbook schema)"
    path = _key_path(loc)
    # Cross-reference checks run on a whole model and name the key they concern as "at KEY: reason".
    if reason.startswith("at ") and ": " in reason:
        sub, reason = reason[3:].split(": ", 1)
        path = f"{path}.{sub}" if path else sub
    return path, reason


def parse_runbook(data: Any, source: str | None = None) -> Runbook:
    if not isinstance(data, dict):
        raise RunbookError("", "the runbook must be a mapping at the top level", source)
    try:
        return Runbook.model_validate(data)
    except ValidationError as exc:
        path, reason = _first_error(exc)
        raise RunbookError(path, reason, source) from None


def runbook_path() -> Path:
    """The runbook in use: `INCIDENT_OPS_RUNBOOK` when set, else the project's file."""
    return Path(os.environ.get("INCIDENT_OPS_RUNBOOK") or DEFAULT_RUNBOOK_PATH)


def load_runbook(path: str | Path | None = None) -> Runbook:
    """Read and validate the runbook file (`runbook_path()` when `path` is None)."""
    file = Path(path) if path is not None else runbook_path()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise RunbookError("", f"cannot read the runbook: {exc.strerror}", str(file)) from None
    try:
        # libyaml when present: every task parses the DAG file, and so the runbook (≈ 10× faster).
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise RunbookError("", f"not valid YAML{where}: {getattr(exc, 'problem', exc)}", str(file)) from None
    return parse_runbook(data, str(file))
