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
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "ACTIONS",
    "AWS_ACTIONS",
    "READ_ONLY_ACTIONS",
    "DEFAULT_RUNBOOK_PATH",
    "SEVERITIES",
    "STEP_CONDITIONS",
    "Runbook",
    "RunbookError",
    "load_runbook",
    "parse_runbook",
    "runbook_path",
    "timeout_policy",
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
        "aws_support_case",
    }
)
# Steps whose work is AWS's (a failure of theirs points at AWS: the `aws_failure` condition).
# Steps that change nothing (they read a status page): no consent needed, ever.
READ_ONLY_ACTIONS: frozenset[str] = frozenset({"external_status_check"})
AWS_ACTIONS: frozenset[str] = frozenset(
    {"ecs_scale_out", "ecs_scale_up", "ecs_rollback", "ecs_force_deployment", "rds_failover", "rds_restore_snapshot"}
)
# When a step runs (`when:`), decided between the steps (incident_ops.core.recovery):
# - still_unhealthy: the ladder's next rung — only while the service is still unhealthy after the
#   rungs before it (health checked for `ladder.settle_seconds`);
# - provider_operational: the external status step found the provider operational (待機);
# - provider_down: the status page reports an outage (at the check or during the wait), or the wait
#   ran out with the service still unhealthy;
# - aws_failure: an earlier AWS step of the scenario failed (not a guard-rail refusal).
STEP_CONDITIONS: tuple[str, ...] = ("still_unhealthy", "provider_operational", "provider_down", "aws_failure")
StepCondition = Literal["still_unhealthy", "provider_operational", "provider_down", "aws_failure"]
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


# --- triage.vocabulary: what a report is made of (read by incident_ops.core.triage) -------------

# A vocabulary word may be a pattern "A…B": A, then B later in the same clause (at most
# VOCABULARY_PATTERN_GAP characters between them).
VOCABULARY_PATTERN_MARK = "…"
VOCABULARY_PATTERN_GAP = 15


def _word_key(word: str) -> str:
    """How two vocabulary words are compared for duplicates (the full text normalisation is triage's)."""
    import unicodedata

    return " ".join(unicodedata.normalize("NFKC", word).casefold().split())


def _check_words(words: list[str], where: str) -> None:
    for index, word in enumerate(words):
        if not (word if where == "clause_breaks" else word.strip()):
            raise ValueError(f"at {where}[{index}]: an empty word")
        if VOCABULARY_PATTERN_MARK in word:
            parts = word.split(VOCABULARY_PATTERN_MARK)
            if len(parts) != 2 or not all(part.strip() for part in parts):
                raise ValueError(f"at {where}[{index}]: a pattern is 'A…B' (two non-empty parts), got {word!r}")


class ScopeClass(_Model):
    """A scope word class (全ユーザー, 一部, 時々, ユーザー影響なし …) and how it moves a level."""

    label: str
    words: list[str] = Field(min_length=1)
    at_least: Severity | None = None
    at_most: Severity | None = None
    lower: int = Field(default=0, ge=0, le=3)
    not_below: Severity | None = None
    treat_as: dict[str, str] = {}


class SubjectClass(_Model):
    """What is affected, with its level per manner (`levels`) or one fixed level (`level`)."""

    label: str
    words: list[str] = Field(min_length=1)
    symptom: str | None = None
    gives_way_to: list[str] = []
    aspect: bool = False
    treat_as: dict[str, str] = {}
    level: Severity | None = None
    grave: bool = False
    levels: dict[str, Severity] = {}

    @model_validator(mode="after")
    def _one_way_to_level(self) -> SubjectClass:
        if self.level is None and not self.levels:
            raise ValueError("at levels: give `levels` (with a `default`) or a fixed `level`")
        if self.level is not None and self.levels:
            raise ValueError("at levels: give `levels` or a fixed `level`, not both")
        if self.levels and "default" not in self.levels:
            raise ValueError("at levels: needs `default` (the level when the manner is not said or not listed)")
        return self


class MannerClass(_Model):
    """How it fails (down, errors, slow, cosmetic …); `level` fixes the level whatever the subject."""

    label: str
    words: list[str] = Field(min_length=1)
    symptom: str | None = None
    level: Severity | None = None
    grave: bool = False
    minor: bool = False


class WorkaroundClass(_Model):
    label: str = "回避策あり"
    words: list[str] = Field(min_length=1)
    undone_by: list[str] = []
    lower: int = Field(default=1, ge=0, le=3)
    not_below: Severity | None = None


class NegationClass(_Model):
    after: list[str] = []
    fine: list[str] = []
    before: list[str] = []


class Vocabulary(_Model):
    variants: dict[str, str] = {}
    ignore: list[str] = []
    clause_breaks: list[str] = []
    scope: dict[str, ScopeClass] = {}
    subjects: dict[str, SubjectClass] = {}
    manners: dict[str, MannerClass] = {}
    no_subject: dict[str, Severity] = {}
    workaround: WorkaroundClass | None = None
    negation: NegationClass = NegationClass()

    @model_validator(mode="after")
    def _consistent(self) -> Vocabulary:
        manners = set(self.manners)
        known = ", ".join(self.manners) or "(none)"
        for key, value in self.variants.items():
            if not key.strip() or not value.strip():
                raise ValueError(f"at variants: an empty spelling ({key!r}: {value!r})")
        for name, scope in self.scope.items():
            for source, target in scope.treat_as.items():
                for manner in (source, target):
                    if manner not in manners:
                        raise ValueError(f"at scope.{name}.treat_as: unknown manner {manner!r}; manners are {known}")
            if scope.not_below is not None and scope.lower == 0:
                raise ValueError(f"at scope.{name}.not_below: only meaningful with `lower`")
        for name, subject in self.subjects.items():
            for other in subject.gives_way_to:
                if other not in self.subjects or other == name:
                    raise ValueError(f"at subjects.{name}.gives_way_to: unknown subject {other!r}")
            for source, target in subject.treat_as.items():
                for manner in (source, target):
                    if manner not in manners:
                        raise ValueError(f"at subjects.{name}.treat_as: unknown manner {manner!r}; manners are {known}")
            for manner in subject.levels:
                if manner != "default" and manner not in manners:
                    raise ValueError(f"at subjects.{name}.levels: unknown manner {manner!r}; manners are {known}")
        for manner in self.no_subject:
            if manner not in manners:
                raise ValueError(f"at no_subject: unknown manner {manner!r}; manners are {known}")
        lists: list[tuple[str, list[str]]] = [
            ("ignore", self.ignore),
            ("clause_breaks", self.clause_breaks),
            *((f"scope.{n}.words", s.words) for n, s in self.scope.items()),
            *((f"subjects.{n}.words", s.words) for n, s in self.subjects.items()),
            *((f"manners.{n}.words", m.words) for n, m in self.manners.items()),
            ("negation.after", self.negation.after),
            ("negation.fine", self.negation.fine),
            ("negation.before", self.negation.before),
        ]
        if self.workaround is not None:
            lists += [("workaround.words", self.workaround.words), ("workaround.undone_by", self.workaround.undone_by)]
        seen: dict[str, str] = {}
        for where, words in lists:
            _check_words(words, where)
            if where == "clause_breaks":
                continue  # breaks are found on their own, beside the words
            for word in words:
                key = _word_key(word)
                if key in seen and seen[key] != where:
                    raise ValueError(f"at {where}: {word!r} is also in {seen[key]} (a word has one meaning)")
                seen[key] = where
        # The comparison that matters is after triage's own normalisation (variants, kana, width).
        from incident_ops.core.triage import vocabulary_problems

        problems = vocabulary_problems(self) if seen else []
        if problems:
            raise ValueError(problems[0])
        return self

    def links(self) -> list[tuple[str, str]]:
        """(key path, symptom id) of every subject and manner that names a catalogue symptom."""
        found = [(f"subjects.{n}.symptom", s.symptom) for n, s in self.subjects.items() if s.symptom]
        found += [(f"manners.{n}.symptom", m.symptom) for n, m in self.manners.items() if m.symptom]
        return found  # type: ignore[return-value]


class Triage(_Model):
    unmatched_severity: Severity
    symptoms: list[Symptom] = Field(min_length=1)
    # Absent: the catalogue phrases alone (a report that contains none of them is unmatched).
    vocabulary: Vocabulary = Field(default_factory=Vocabulary)

    @model_validator(mode="after")
    def _unique_ids(self) -> Triage:
        seen: set[str] = set()
        for symptom in self.symptoms:
            if symptom.id in seen:
                raise ValueError(f"symptom id {symptom.id!r} appears twice")
            seen.add(symptom.id)
        for where, symptom_id in self.vocabulary.links():
            if symptom_id not in seen:
                raise ValueError(f"at vocabulary.{where}: unknown symptom {symptom_id!r}; symptoms are {', '.join(seen)}")
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


class OffHoursPage(_Model):
    """P3 outside business hours: also a PagerDuty incident for the rotation's engineer.

    `urgency: low` sends the Events API v2 trigger with `payload.severity: warning`, which a PagerDuty
    service set to "use alert severity to determine urgency" (or an event rule) opens as a
    low-urgency incident: the low-urgency notification rules (push, e-mail), no phone call.
    `high` sends `error` (high urgency, like P2)."""

    enabled: bool = True
    urgency: Literal["low", "high"] = "low"


class Escalation(_Model):
    P1: list[Notice] = Field(min_length=1)
    P2: list[Notice] = Field(min_length=1)
    P3: list[Notice] = Field(min_length=1)
    P4: list[Notice] = Field(min_length=1)
    unacknowledged: dict[Severity, list[Notice]] = {}
    p3_off_hours_pagerduty: OffHoursPage = OffHoursPage()

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


_MONTH_DAY = re.compile(r"^(\d{1,2})-(\d{1,2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DAY_OFF_FORMS = (
    'a date (2026-05-07), a month-day every year ("12-31"), a range "12-29..01-03" (every year, may wrap '
    'the year end) or "2026-12-28..2027-01-04", or a mapping {from: "12-29", to: "01-03", name: 年末年始}'
)


def _month_day(text: str) -> tuple[int, int]:
    match = _MONTH_DAY.match(text)
    if not match:
        raise ValueError(f"expected a month-day MM-DD, got {text!r}")
    month, day = int(match.group(1)), int(match.group(2))
    try:
        dt.date(2000, month, day)  # a leap year: 02-29 is a valid month-day
    except ValueError:
        raise ValueError(f"no such month-day {text!r}") from None
    return month, day


def _day(value: Any) -> dt.date | tuple[int, int]:
    """One end of a range: a date (YAML date or "YYYY-MM-DD") or a month-day "MM-DD"."""
    if isinstance(value, dt.datetime):
        raise ValueError(f"expected a date, not a date and time: {value!r}")
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    if _DATE.match(text):
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            raise ValueError(f"no such date {text!r}") from None
    if _MONTH_DAY.match(text):
        return _month_day(text)
    raise ValueError(f"{text!r} is neither a date YYYY-MM-DD nor a month-day MM-DD")


class DayOff(_Model):
    """One entry of `calendar.extra_days_off`: a day or an inclusive range of days.

    `first`/`last` are both dates (that year only) or both month-days (every year; a range whose
    last month-day comes before its first wraps the year end: 12-29..01-03)."""

    first: dt.date | tuple[int, int]
    last: dt.date | tuple[int, int]
    name: str | None = None

    @property
    def recurring(self) -> bool:
        return isinstance(self.first, tuple)

    def contains(self, day: dt.date) -> bool:
        if isinstance(self.first, dt.date) and isinstance(self.last, dt.date):
            return self.first <= day <= self.last
        month_day = (day.month, day.day)
        first, last = self.first, self.last
        if first <= last:  # type: ignore[operator]
            return first <= month_day <= last  # type: ignore[operator]
        return month_day >= first or month_day <= last  # type: ignore[operator]


def _day_off(value: Any) -> Any:
    """Parse an `extra_days_off` entry (see _DAY_OFF_FORMS) into a DayOff."""
    if isinstance(value, DayOff):
        return value
    name = None
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"from", "to", "name"})
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r} in a day-off range; use from, to and name")
        if "from" not in value or "to" not in value:
            raise ValueError('a day-off range needs both "from" and "to" (e.g. {from: "12-29", to: "01-03"})')
        start, end, name = value["from"], value["to"], value.get("name")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ValueError("name must be a non-empty text")
    elif isinstance(value, dt.date | str):
        text = value if isinstance(value, str) else None
        if text is not None and ".." in text:
            start, end = (part.strip() for part in text.split("..", 1))
        else:
            start = end = value
    else:
        raise ValueError(f"expected {_DAY_OFF_FORMS}; got {value!r}")
    try:
        first, last = _day(start), _day(end)
    except ValueError as exc:
        raise ValueError(f"{exc}; an entry is {_DAY_OFF_FORMS}") from None
    if isinstance(first, dt.date) != isinstance(last, dt.date):
        raise ValueError(f"a range is two dates or two month-days, not one of each: {start!r}..{end!r}")
    if isinstance(first, dt.date) and first > last:  # type: ignore[operator]
        raise ValueError(f"the range ends ({last}) before it starts ({first})")
    return DayOff(first=first, last=last, name=name.strip() if name else None)


class Calendar(_Model):
    timezone: str
    business_hours: BusinessHours
    business_days: list[Weekday] = Field(min_length=1)
    public_holidays: str | None = "JP"
    extra_days_off: list[Annotated[DayOff, BeforeValidator(_day_off)]] = []

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


class LbOnly5xx(_Model):
    """The load balancer's own 5xx (`lb_metric`) above `above` while the targets' 5xx (`target_metric`)
    stay under `max_target_share` of it: the requests never reached a healthy target (capacity or
    health checks), not an error in the code."""

    above: float = Field(ge=0)
    lb_metric: str = "elb_5xx"
    target_metric: str = "alb_5xx"
    max_target_share: float = Field(default=0.1, ge=0, le=1)


ChoiceTimeout = Literal["manual", "suggested"]
ApprovalTimeout = Literal["reject", "approve"]


def _per_severity(value: Any) -> Any:
    if isinstance(value, dict):
        unknown = [key for key in value if key not in (*SEVERITIES, "default")]
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r}: use severities (P1-P4) and default")
        if "default" not in value and any(s not in value for s in SEVERITIES):
            raise ValueError("name every severity (P1-P4) or give a default")
    return value


# An `on_timeout`: one value for every severity, or {P1: …, P2: …, default: …}.
ChoicePolicy = Annotated[ChoiceTimeout | dict[str, ChoiceTimeout], BeforeValidator(_per_severity)]
ApprovalPolicy = Annotated[ApprovalTimeout | dict[str, ApprovalTimeout], BeforeValidator(_per_severity)]


class ScenarioSignals(_Model):
    recent_deploy_minutes: int | None = None
    log_terms: list[str] = []
    alarms: list[str] = []
    metrics_above: dict[str, float] = {}
    lb_5xx_only: LbOnly5xx | None = None


class StepWait(_Model):
    """A read-only step repeated on a schedule (待機): every `interval_minutes` until the service is
    healthy again, the step's finding turns (the status page reports an outage), or `max_minutes`."""

    interval_minutes: float = Field(gt=0)
    max_minutes: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> StepWait:
        if self.interval_minutes > self.max_minutes:
            raise ValueError("interval_minutes must not exceed max_minutes")
        return self


class Step(_Model):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    action: str
    # What people call the step (「フェイルオーバー」): used in the reasons a step runs or is skipped.
    label: str | None = None
    params: dict[str, Any] = {}
    approval: bool = False
    optional: bool = False
    fallback: str | None = None
    only_as_fallback: bool = False
    when: StepCondition | None = None
    wait: StepWait | None = None
    # What the approval's timeout does (overrides decisions.approval.on_timeout), per severity or one value.
    on_timeout: ApprovalPolicy | None = None
    # Allowed to change production with nobody answering (in a scenario that started on the
    # choice's timeout); `auto_reason` says why, in one line, to the people reading the decision.
    auto: bool = False
    auto_reason: str | None = None

    @field_validator("action")
    @classmethod
    def _known_action(cls, value: str) -> str:
        if value not in ACTIONS:
            raise ValueError(f"unknown action {value!r}; known actions: {', '.join(sorted(ACTIONS))}")
        return value

    @model_validator(mode="after")
    def _wait_is_a_status_check(self) -> Step:
        if self.wait is not None and self.action != "external_status_check":
            raise ValueError(f"step {self.id!r}: wait repeats a read-only check; only external_status_check can wait")
        if self.wait is not None and (self.approval or self.fallback):
            raise ValueError(f"step {self.id!r}: a waiting step needs no approval and has no fallback")
        if self.auto and not (self.auto_reason or "").strip():
            raise ValueError(f"step {self.id!r}: auto: true needs auto_reason (one line: why it may run unanswered)")
        if self.auto_reason is not None and ("\n" in self.auto_reason.strip() or not self.auto):
            raise ValueError(f"step {self.id!r}: auto_reason is one line, on a step with auto: true")
        if self.on_timeout is not None and not self.approval:
            raise ValueError(f"step {self.id!r}: on_timeout applies to an approval; the step has approval: false")
        if self.only_as_fallback and self.auto:
            raise ValueError(f"step {self.id!r}: a fallback runs under its step's consent; auto goes on that step")
        return self

    @property
    def read_only(self) -> bool:
        """Changes nothing anywhere (a status page read): runs without anyone's consent."""
        return self.action in READ_ONLY_ACTIONS

    @property
    def needs_consent(self) -> bool:
        """A person must have said yes before it runs: by its own approval, or by choosing the
        scenario (a scenario started on the choice's timeout asks for each such step)."""
        return not (self.auto or self.read_only)

    @property
    def title(self) -> str:
        return self.label or self.id


class Scenario(_Model):
    label: str
    remediation: str
    signals: ScenarioSignals = ScenarioSignals()
    # Channels of contacts.channels told when the scenario starts (infra: #infra-support).
    notify: list[str] = []
    # When this is the suggestion and nobody picks a scenario: overrides decisions.scenario_choice.on_timeout.
    on_timeout: ChoicePolicy | None = None
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _fallbacks_exist(self) -> Scenario:
        ids = [step.id for step in self.steps]
        if len(ids) != len(set(ids)):
            raise ValueError("step ids must be unique within a scenario")
        for step in self.steps:
            if step.fallback is not None and step.fallback not in ids:
                raise ValueError(f"step {step.id!r} falls back to unknown step {step.fallback!r}")
        earlier: list[Step] = []
        for step in self.steps:
            if step.only_as_fallback:
                if step.when or step.wait:
                    raise ValueError(f"step {step.id!r}: a fallback-only step takes no when/wait")
                continue
            if step.when == "still_unhealthy" and not earlier:
                raise ValueError(f"step {step.id!r}: still_unhealthy needs an earlier step (the rung before it)")
            if step.when in ("provider_operational", "provider_down") and not any(
                    s.action == "external_status_check" for s in earlier):
                raise ValueError(f"step {step.id!r}: {step.when} needs an earlier external_status_check step")
            if step.when == "aws_failure" and not any(s.action in AWS_ACTIONS for s in earlier):
                raise ValueError(f"step {step.id!r}: aws_failure needs an earlier AWS step "
                                 f"({', '.join(sorted(AWS_ACTIONS))})")
            earlier.append(step)
        return self

    def main_steps(self) -> list[Step]:
        return [step for step in self.steps if not step.only_as_fallback]

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)


class Decision(_Model):
    timeout_minutes: float = Field(gt=0)


class ScenarioChoice(Decision):
    # manual: nobody answered → no automatic recovery; suggested: the suggested scenario starts, and
    # of its steps only those marked `auto` change anything unless a person approves them.
    on_timeout: ChoicePolicy


class Approval(Decision):
    on_timeout: ApprovalPolicy


class Decisions(_Model):
    scenario_choice: ScenarioChoice
    approval: Approval
    # Who may answer a decision or start the response from Slack: `roster` (the on-call rotation)
    # and person ids of contacts.people.
    responders: list[str] = ["roster", "dev_lead", "cto"]


def timeout_policy(value: str | dict[str, str], severity: str) -> str:
    """The `on_timeout` that applies to `severity`: one value, or a map of severities and `default`."""
    if isinstance(value, str):
        return value
    return value[severity] if severity in value else value["default"]


class Verification(_Model):
    consecutive_healthy: int = Field(ge=1)
    interval_seconds: float = Field(gt=0)
    timeout_minutes: float = Field(gt=0)


class Postmortem(_Model):
    required_for: list[Severity]
    reminder_after_hours: float = Field(gt=0)
    due_after_hours: float = Field(gt=0)
    # next_business_day_end: a due time at night or on a day off moves to the end of the next
    # business hours (18:00), and a reminder then to the next 9:00; wall_clock: recovery + hours as is.
    align: Literal["next_business_day_end", "wall_clock"] = "next_business_day_end"
    sections: list[str] = Field(min_length=1)
    storage: str

    @model_validator(mode="after")
    def _ordered(self) -> Postmortem:
        if self.reminder_after_hours >= self.due_after_hours:
            raise ValueError("reminder_after_hours must come before due_after_hours")
        return self


class Ladder(_Model):
    """Between a remediation and the next rung of its ladder (`when: still_unhealthy`): the service
    has `settle_seconds` to answer healthy `consecutive_healthy` times in a row, polled every
    `interval_seconds`. A `wait` step polls the health with the same streak and interval."""

    settle_seconds: float = Field(default=180, gt=0)
    consecutive_healthy: int = Field(default=3, ge=1)
    interval_seconds: float = Field(default=10, gt=0)

    @model_validator(mode="after")
    def _fits(self) -> Ladder:
        if self.consecutive_healthy * self.interval_seconds > self.settle_seconds:
            raise ValueError("consecutive_healthy x interval_seconds must fit in settle_seconds")
        return self


class PhaseTimeBoxes(_Model):
    """Minutes from detection by which a phase should be over (Phase 1: 0-15分, Phase 2: 15-60分)."""

    detect: int = Field(default=15, gt=0)
    investigate: int = Field(default=60, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> PhaseTimeBoxes:
        if self.detect >= self.investigate:
            raise ValueError(f"detect ({self.detect}) must end before investigate ({self.investigate})")
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
    # The name in Japanese messages (the evidence's highlights); the chart keeps `label`.
    label_ja: str | None = None
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
    phase_time_boxes: PhaseTimeBoxes = PhaseTimeBoxes()
    ladder: Ladder = Ladder()
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
        for name, scenario in self.scenarios.items():
            for channel in scenario.notify:
                if channel not in self.contacts.channels:
                    raise ValueError(f"at scenarios.{name}.notify: unknown channel {channel!r}; "
                                     f"known: {', '.join(self.contacts.channels)}")
        for responder in self.decisions.responders:
            if responder != "roster" and responder not in self.contacts.people:
                raise ValueError(f"at decisions.responders: unknown person {responder!r}; "
                                 f"use roster or ids of contacts.people ({', '.join(self.contacts.people)})")
        for name, scenario in self.scenarios.items():
            for step in scenario.steps:
                on_timeout = step.on_timeout or self.decisions.approval.on_timeout
                approves = on_timeout == "approve" or (isinstance(on_timeout, dict) and "approve" in on_timeout.values())
                if step.approval and approves and not step.auto:
                    raise ValueError(
                        f"at scenarios.{name}.steps: step {step.id!r} would run with nobody answering "
                        "(its approval's on_timeout is approve); mark it auto: true with an auto_reason, or reject")
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
