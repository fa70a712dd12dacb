"""From an authenticated alarm or alert to an incident and (once) its `incident_response` run.

What happens to a report (a CloudWatch alarm from SNS, or a generic JSON alert):

1. **Map** it through the runbook: alarm name → service, symptom, severity (`triage.classify`; an
   unmapped alarm gets the environment's `default_alarm`, it is never dropped); an alert's symptom
   text → severity (a valid severity in the alert wins).
2. **Validate** the run's conf against the DAG's own Params (`incident_params(runbook)`) BEFORE
   anything is written: a conf the DAG would refuse is refused here (422), nothing stored.
3. **Open or join** the ledger's incident for the fingerprint (`{env}:alarm:{AlarmName}` for alarms,
   as the DAG computes it; `{env}:{fingerprint}` for an alert that has one, so `alarm:<AlarmName>`
   joins that alarm's incident; else `{env}:{service}:{symptom}`, like a declaration from the UI). The database allows
   one open incident per fingerprint, so concurrent deliveries cannot open two. The occurrence key
   (SNS MessageId, or the signed alert's digest) makes a redelivery count once.
4. **Trigger** only for a new incident, with the deterministic run id `incident__<incident id>` and
   the incident id in the conf (the DAG reuses that record): even two triggers could not make two
   runs (the second is `DagRunAlreadyExists` = joined). A join appends an occurrence and answers the
   run that drives the incident. An incident whose run is missing (the trigger failed, or it is older
   than `retrigger_after` without a run) gets it on the next delivery.
5. **Escalate**: when a join raised the incident's severity (the ledger raises, never lowers), the
   `incident_escalate` DAG is triggered once per (incident, severity): run id
   `escalate__<incident id>__<severity>`.

An `OK` (or `INSUFFICIENT_DATA`) for an alarm with an open incident is recorded on its timeline
(it does not close it: the DAG verifies recovery); without an open incident it is ignored.

**Replays.** The delivery key (`sns:<MessageId>`, `alert:<digest>`) of every accepted delivery is kept
in the ledger (`webhook_deliveries`) until its replay window ends (`remember`). A delivery seen before
(`replayed`) is handled as usual only while the incident it went to is still open (a redelivery:
counted once, as above); when that incident recovered or closed, or it went to none, the answer is
`replayed` and nothing is opened, joined or paged.

**Floods** (`Intake.open`). A delivery whose fingerprint has no open incident would open a NEW one;
that is capped per source (the report's reporter: `cloudwatch (sns:<topic>)`, an alert's `source`,
the Slack person of `/incident`) and overall, in any 60 s (`FloodLimits`, from
`INCIDENT_OPS_WEBHOOK_NEW_INCIDENTS_PER_SOURCE_PER_MINUTE` / `..._PER_MINUTE`). The count is the
ledger's own: the incidents created in the last 60 s (by `reporter`, and all of them), alarm storm
records excepted. Counting and opening happen under one lock that spans processes (PostgreSQL: a
transaction-level advisory lock; a SQLite file: `flock` on `<file>.intake.lock`; and a lock per
process), so two API server workers counting at once cannot both take the last place. Joins of an
open incident are never capped and take no lock. Past the cap the delivery opens nothing and
triggers nothing: it is `held`. Its occurrence is recorded on the environment's **alarm storm
record** of the window (`INCIDENT_OPS_WEBHOOK_STORM_WINDOW_SECONDS`): an incident with the
fingerprint `webhook-storm:<env>:<window start>` (no alert or alarm can name it), opened by the
first held delivery and joined by the others, one `occurrence` each (the occurrence key makes a
redelivery count once) and a `delivery_held` event naming the source, the alarm and the cap. Its
severity is the highest held one (the ledger raises, never lowers); no run drives it. The delivery
that opened the record posts ONE 「アラームストーム」 notice to #dev-team
(`include/templates/alarm_storm.txt.j2`), on a thread of its own after
`INCIDENT_OPS_WEBHOOK_STORM_NOTICE_DELAY_SECONDS`, with the counts held by then. A held delivery
seen again is `held` again (`replayed`), never opened later.

**Detection time.** An alarm's `StateChangeTime` is its detection time unless it is more than
`max_detection_ahead` (5 min) after the delivery or more than `max_detection_age` (the SNS max age,
1 h) before it: then the delivery time is used instead and the incident's timeline says so
(`detection_time_clamped`), so a wrong clock cannot move the deadlines.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from jsonschema import FormatChecker
from jsonschema.exceptions import best_match
from jsonschema.validators import validator_for
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from incident_ops.core.ledger import OPEN_STATUSES, Ledger, events_table, incidents_table
from incident_ops.core.phrases import phrase
from incident_ops.core.runbook import SEVERITIES, Runbook
from incident_ops.core.triage import classify, fingerprint_for
from incident_ops.webhooks.config import FloodLimits

__all__ = [
    "ESCALATE_DAG_ID",
    "INCIDENT_DAG_ID",
    "STORM_PREFIX",
    "Alert",
    "Intake",
    "IntakeError",
    "IntakeResult",
    "TriggerError",
    "TriggerFn",
    "TriggerRejected",
    "TriggerUnavailable",
    "environment_for_alarm",
    "escalation_run_id",
    "incident_run_id",
    "parse_alert",
]

log = logging.getLogger(__name__)

INCIDENT_DAG_ID = "incident_response"
ESCALATE_DAG_ID = "incident_escalate"
# Matches params.INCIDENT_ID_PATTERN: stands in for the id (not known yet) while the conf is validated.
_PLACEHOLDER_ID = "INC-00000000-000000"
AUTO = "auto"

# (dag_id, run_id, conf) -> True when the run was created, False when it already existed.
TriggerFn = Callable[[str, str, dict[str, Any]], bool]
# (environment, text, idempotency key): posts the alarm storm notice to #dev-team.
StormNotifyFn = Callable[[str, str, str], Any]

# The alarm storm records' fingerprints: no alert (`<env>:<fingerprint>`) or alarm can spell one.
STORM_PREFIX = "webhook-storm:"
STORM_ACTOR = "incident_ops.webhooks"
_CAP_WINDOW = dt.timedelta(minutes=1)
# pg_advisory_xact_lock key that serialises "count, then open" across API server workers.
_CAP_LOCK_KEY = 0x1C1DE8
_PROCESS_LOCKS: dict[str, threading.Lock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()
_JST = dt.timezone(dt.timedelta(hours=9), "JST")


class IntakeError(Exception):
    """Bad input: HTTP `status` (4xx), a short `code`, the `reason`. Nothing was stored."""

    def __init__(self, status: int, code: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = reason


class TriggerError(Exception):
    status = 503
    code = "trigger_failed"


class TriggerRejected(TriggerError):
    """Airflow refused the conf (its Params validation)."""

    status = 400
    code = "conf_rejected"


class TriggerUnavailable(TriggerError):
    """Airflow could not create the run now (DAG not loaded yet, database trouble): retry later."""

    status = 503
    code = "trigger_unavailable"


def incident_run_id(incident_id: str) -> str:
    return f"incident__{incident_id}"


def escalation_run_id(incident_id: str, severity: str) -> str:
    return f"escalate__{incident_id}__{severity}"


@dataclass(frozen=True)
class IntakeResult:
    status: str  # new | joined | recorded | ignored | replayed | held
    incident_id: str | None
    dag_run_id: str | None
    severity: str | None = None
    escalation_run_id: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None or key in (
            "incident_id", "dag_run_id")}


@dataclass(frozen=True)
class Report:
    """What to open: the ledger fields and the run's conf (validated)."""

    fingerprint: str
    severity: str
    symptom: str
    title: str
    service: str
    environment: str
    reporter: str
    detected_at: dt.datetime
    occurrence_key: str
    conf: dict[str, Any]
    rule: str
    # Set when the alarm's StateChangeTime was not used as the detection time (see the module doc).
    detection_note: dict[str, Any] | None = None


class Alert(BaseModel):
    """The generic alert: {source, title or summary, service, symptom, severity?, fingerprint?,
    environment?, impact?}. Unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, frozen=True)

    source: str = Field(min_length=1, max_length=100)
    title: str | None = Field(default=None, min_length=1, max_length=500)
    summary: str | None = Field(default=None, min_length=1, max_length=500)
    service: str = Field(min_length=1, max_length=128)
    symptom: str = Field(min_length=1, max_length=500)
    severity: str | None = Field(default=None, max_length=10)
    fingerprint: str | None = Field(default=None, min_length=1, max_length=200)
    environment: str | None = Field(default=None, min_length=1, max_length=64)
    impact: str | None = Field(default=None, max_length=500)

    @field_validator("severity")
    @classmethod
    def _severity(cls, value: str | None) -> str | None:
        if value is None or not value.strip() or value.strip().lower() == AUTO:
            return None
        value = value.strip().upper()
        if value not in SEVERITIES:
            raise ValueError(f"must be one of {', '.join(SEVERITIES)} or auto")
        return value

    @model_validator(mode="after")
    def _title_or_summary(self) -> Alert:
        if not (self.title or self.summary):
            raise ValueError("title or summary is required")
        return self

    @property
    def headline(self) -> str:
        return self.title or self.summary or self.symptom


def parse_alert(data: Any) -> Alert:
    """The alert from decoded JSON, or IntakeError(422) naming each bad field."""
    if not isinstance(data, dict):
        raise IntakeError(422, "invalid_alert", "the alert must be a JSON object")
    try:
        return Alert.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors()[:10]:
            where = ".".join(str(part) for part in error.get("loc", ())) or "alert"
            problems.append(f"{where}: {error.get('msg')}")
        raise IntakeError(422, "invalid_alert", "; ".join(problems)) from None


def environment_for_alarm(runbook: Runbook, alarm_name: str, topic_environment: str | None) -> str:
    """The topic's configured environment, else the one whose alarm map names the alarm, else the
    default environment of the trigger form (production)."""
    if topic_environment:
        if topic_environment not in runbook.environments:
            raise IntakeError(422, "unknown_environment",
                              f"the topic is configured for environment {topic_environment!r}, which the runbook "
                              f"does not have ({', '.join(runbook.environments)})")
        return topic_environment
    for name, env in runbook.environments.items():
        if any(mapping.name == alarm_name for mapping in env.alarms):
            return name
    return "production" if "production" in runbook.environments else next(iter(runbook.environments))


def _parse_time(value: Any) -> dt.datetime | None:
    """An ISO 8601 time as aware UTC (naive = UTC); None when it is not one UTC can hold."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
        return parsed.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        return None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Intake:
    """Opens/joins incidents in `ledger` and starts runs through `trigger` (see the module doc)."""

    def __init__(
        self,
        runbook: Runbook,
        ledger: Ledger,
        trigger: TriggerFn,
        *,
        retrigger_after: float = 30.0,
        clock: Callable[[], dt.datetime] = _now,
        max_detection_age: float = 3600.0,
        max_detection_ahead: float = 300.0,
        flood: FloodLimits | None = None,
        storm_notify: StormNotifyFn | None = None,
    ) -> None:
        from incident_ops.params import incident_params

        self.runbook = runbook
        self.ledger = ledger
        self.trigger = trigger
        self.retrigger_after = dt.timedelta(seconds=retrigger_after)
        self.clock = clock
        self.max_detection_age = dt.timedelta(seconds=max_detection_age)
        self.max_detection_ahead = dt.timedelta(seconds=max_detection_ahead)
        self.flood = flood if flood is not None else FloodLimits()
        # Posts the alarm storm notice (default: the project's Slack client, #dev-team); tests replace it.
        self.storm_notify: StormNotifyFn = storm_notify or self._post_to_dev_team
        self._notice_pool: ThreadPoolExecutor | None = None
        self._notice_futures: dict[Future[Any], threading.Event] = {}
        self._notice_lock = threading.Lock()
        self._params = incident_params(runbook)
        # What Param.resolve does (jsonschema with format checks), with each validator built once:
        # a storm validates thousands of confs.
        self._validators = {
            key: validator_for(param.schema)(param.schema, format_checker=FormatChecker())
            for key, param in self._params.items()
        }

    # --- conf ------------------------------------------------------------------------------------

    def validate_conf(self, conf: Mapping[str, Any]) -> dict[str, Any]:
        """The conf when the DAG's Params accept it: every param's JSON schema (the same the UI, the
        REST API and `ParamsDict.validate()` use) against the given value or the param's default."""
        try:
            json.dumps(conf)
        except (TypeError, ValueError):
            raise IntakeError(422, "conf_invalid", "the conf is not JSON-serialisable") from None
        for key, param in self._params.items():
            if key not in conf:
                try:
                    copy.copy(param).resolve()  # the default, as Airflow resolves it
                except ValueError as exc:  # ParamValidationError
                    raise IntakeError(422, "conf_invalid",
                                      f"the incident_response params refuse it: {key}: {exc}") from None
                continue
            error = best_match(self._validators[key].iter_errors(conf[key]))
            if error is not None:
                raise IntakeError(422, "conf_invalid",
                                  f"the incident_response params refuse it: invalid input for param {key}: {error.message}")
        return dict(conf)

    # --- replays ---------------------------------------------------------------------------------

    def replayed(self, key: str, now: dt.datetime) -> IntakeResult | None:
        """The `replayed` answer when the delivery `key` was accepted before and its incident is no
        longer open (or it went to none); None when it is new, or a redelivery to the open incident."""
        seen = self.ledger.delivery(key, now)
        if seen is None:
            return None
        if seen["status"] == "held":  # counted once, on the storm record; never opened later
            return IntakeResult("held", seen["incident_id"], None,
                                reason=f"this delivery was held at {seen['seen_at'].isoformat()} (new incidents were "
                                       "capped) and recorded on the alarm storm record: nothing more is done")
        if seen["incident_id"] is not None and seen["incident_status"] in OPEN_STATUSES:
            return None
        if seen["incident_id"] is None:
            why = f"it was {seen['status'] or 'handled'} without an incident"
        else:
            why = f"its incident {seen['incident_id']} is {seen['incident_status'] or 'gone'}"
        log.warning("replayed webhook delivery %s (first seen %s; %s): nothing opened", key, seen["seen_at"], why)
        return IntakeResult("replayed", seen["incident_id"], None,
                            reason=f"this delivery was accepted at {seen['seen_at'].isoformat()} and {why}: "
                                   "nothing was opened, joined or paged")

    def remember(self, key: str, result: IntakeResult, now: dt.datetime, expires_at: dt.datetime) -> None:
        """Keep the accepted delivery `key` (and its incident) until `expires_at`."""
        if result.status == "replayed":
            return
        self.ledger.remember_delivery(key, now, max(expires_at, now + dt.timedelta(seconds=1)),
                                      incident_id=result.incident_id, status=result.status)

    # --- mapping ---------------------------------------------------------------------------------

    def detection_time(self, value: Any, received_at: dt.datetime) -> tuple[dt.datetime, dict[str, Any] | None]:
        """The alarm's StateChangeTime when it is near the delivery time, else the delivery time and
        a note saying why (see the module doc)."""
        if value is None or value == "":
            return received_at, None
        parsed = _parse_time(value)
        if parsed is None:
            why = "it is not a time UTC can hold"
        elif parsed - received_at > self.max_detection_ahead:
            why = f"it is more than {int(self.max_detection_ahead.total_seconds())} s after the delivery"
        elif received_at - parsed > self.max_detection_age:
            why = f"it is more than {int(self.max_detection_age.total_seconds())} s before the delivery"
        else:
            return parsed, None
        return received_at, {"StateChangeTime": str(value)[:64], "received_at": received_at.isoformat(), "reason": why}

    def alarm_report(self, alarm: Mapping[str, Any], *, environment: str, reporter: str, occurrence_key: str,
                     received_at: dt.datetime) -> Report:

        result = classify(self.runbook, None, alarm=alarm, environment=environment)
        env = self.runbook.environment(environment)
        service = env.service_key(result.service or env.default_service)
        label = result.symptom_label or str(result.symptom_id)
        conf = {
            "symptom": label,
            "severity": AUTO,
            "service": service,
            "environment": environment,
            "impact": "",
            "reporter": reporter[:200],
            "scenario": AUTO,
            "check_mode": False,
            "alarm": dict(alarm),
            "incident_id": _PLACEHOLDER_ID,
        }
        self.validate_conf(conf)
        detected_at, note = self.detection_time(alarm.get("StateChangeTime"), received_at)
        return Report(
            fingerprint=fingerprint_for(environment, service, result.symptom_id, label, dict(alarm)),
            severity=result.severity,
            symptom=result.symptom_id or label,
            title=f"{label}（{alarm['AlarmName']}）",
            service=service,
            environment=environment,
            reporter=reporter[:200],
            detected_at=detected_at,
            occurrence_key=occurrence_key,
            conf=conf,
            rule=result.rule,
            detection_note=note,
        )

    def alert_report(self, alert: Alert, *, occurrence_key: str, received_at: dt.datetime) -> Report:

        environment = alert.environment or (
            "production" if "production" in self.runbook.environments else next(iter(self.runbook.environments)))
        if environment not in self.runbook.environments:
            raise IntakeError(422, "invalid_alert",
                              f"environment: unknown {environment!r}; known: {', '.join(self.runbook.environments)}")
        env = self.runbook.environment(environment)
        try:
            service = env.service_key(alert.service)
        except KeyError:
            raise IntakeError(422, "invalid_alert",
                              f"service: unknown {alert.service!r} in {environment}; known: {', '.join(env.services)}") from None
        result = classify(self.runbook, alert.symptom, environment=environment, override=alert.severity)
        conf = {
            "symptom": alert.symptom,
            "severity": alert.severity or AUTO,
            "service": service,
            "environment": environment,
            "impact": alert.impact or "",
            "reporter": alert.source[:200],
            "scenario": AUTO,
            "check_mode": False,
            "alarm": {},
            "incident_id": _PLACEHOLDER_ID,
        }
        self.validate_conf(conf)
        if alert.fingerprint:
            # Namespaced by environment only, so `alarm:<AlarmName>` joins that CloudWatch alarm's incident.
            fingerprint = f"{environment}:{alert.fingerprint}"
        else:
            fingerprint = fingerprint_for(environment, service, result.symptom_id, alert.symptom, None)
        return Report(
            fingerprint=fingerprint,
            severity=result.severity,
            symptom=result.symptom_id or alert.symptom,
            title=alert.headline,
            service=service,
            environment=environment,
            reporter=alert.source[:200],
            detected_at=received_at,
            occurrence_key=occurrence_key,
            conf=conf,
            rule=result.rule,
        )

    # --- open / join -----------------------------------------------------------------------------

    def open(self, report: Report) -> IntakeResult:
        now = self.clock()
        if self.flood.capped and self.ledger.find_open(report.fingerprint) is None:
            # A NEW incident: count and open under one lock (see the module doc); a join takes none.
            over = None
            with self._new_incident_lock():
                if self.ledger.find_open(report.fingerprint) is None:
                    over = self._over_cap(report.reporter, now)
                if over is None:
                    incident, created = self._open_or_join(report, now)
            if over is not None:
                return self._hold(report, now, over)
        else:
            incident, created = self._open_or_join(report, now)
        incident_id = incident["id"]
        run_id = incident_run_id(incident_id)
        if created:
            log.info("incident %s opened for %s (%s)", incident_id, report.fingerprint, report.rule)
            if report.detection_note:
                note = report.detection_note
                self.ledger.record_event(
                    incident_id, at=now, kind="detection_time_clamped", actor="incident_ops.webhooks",
                    message=f"アラームの発生時刻（StateChangeTime: {note['StateChangeTime']}）は受信時刻から離れすぎているため、"
                            f"受信時刻 {note['received_at']} を検知時刻にしました",
                    data=note, idempotency_key="detection_time_clamped",
                )
            self._start_run(incident_id, run_id, report)
            return IntakeResult("new", incident_id, run_id, incident["severity"])
        owner = incident.get("dag_run_id")
        if owner is None and self._run_missing(incident, now):
            self._start_run(incident_id, run_id, report)
            owner = run_id
        escalation = self._escalate_if_raised(incident, report.severity)
        return IntakeResult("joined", incident_id, owner or run_id, incident["severity"], escalation)

    def _open_or_join(self, report: Report, now: dt.datetime) -> tuple[dict[str, Any], bool]:
        return self.ledger.open_or_join(
            fingerprint=report.fingerprint,
            severity=report.severity,
            symptom=report.symptom,
            title=report.title,
            service=report.service,
            environment=report.environment,
            reporter=report.reporter,
            at=now,
            occurrence_key=report.occurrence_key,
            detected_at=report.detected_at,
        )

    # --- floods: the cap on new incidents --------------------------------------------------------

    @contextlib.contextmanager
    def _new_incident_lock(self) -> Iterator[None]:
        """Held while a new incident is counted and opened: one per process (a thread lock per
        ledger URL) and, across processes, PostgreSQL's transaction advisory lock or `flock` on a
        file next to the SQLite database. The thread lock comes first, so a process waits for the
        database lock with at most one pooled connection."""
        with _PROCESS_LOCKS_GUARD:
            lock = _PROCESS_LOCKS.setdefault(self.ledger.url, threading.Lock())
        with lock:
            engine = self.ledger.engine
            if engine.dialect.name == "postgresql":
                with engine.connect() as conn, conn.begin():
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CAP_LOCK_KEY})
                    yield
                return
            database = engine.url.database if engine.dialect.name == "sqlite" else None
            if not database or database == ":memory:" or engine.url.query.get("mode") == "memory":
                yield  # one process only: the thread lock is enough
                return
            import fcntl

            with open(Path(database).expanduser().resolve().with_name(Path(database).name + ".intake.lock"),
                      "a+b") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    def _over_cap(self, source: str, now: dt.datetime) -> dict[str, Any] | None:
        """None while `source` and everyone together may open another incident now; else which cap
        is reached: {scope: source|overall, limit, count, source}. Counted in the ledger: the
        incidents created in the last 60 s, alarm storm records excepted."""
        incidents = incidents_table.c
        from_source = sa.case((incidents.reporter == source, 1), else_=0)
        query = sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(from_source), 0)).where(
            incidents.created_at > now - _CAP_WINDOW, ~incidents.fingerprint.startswith(STORM_PREFIX, autoescape=True))
        with self.ledger.engine.connect() as conn:
            overall, per_source = (int(value) for value in conn.execute(query).one())
        limits = self.flood
        if limits.per_source_per_minute and per_source >= limits.per_source_per_minute:
            return {"scope": "source", "limit": limits.per_source_per_minute, "count": per_source, "source": source}
        if limits.per_minute and overall >= limits.per_minute:
            return {"scope": "overall", "limit": limits.per_minute, "count": overall, "source": source}
        return None

    def storm_window(self, now: dt.datetime) -> dt.datetime:
        """The start of the alarm storm window `now` is in (windows aligned on the Unix epoch)."""
        length = max(int(self.flood.storm_window_seconds), 1)
        start = int(now.timestamp()) // length * length
        return dt.datetime.fromtimestamp(start, dt.UTC)

    def _hold(self, report: Report, now: dt.datetime, over: dict[str, Any]) -> IntakeResult:
        """Past the cap: the occurrence goes on the environment's alarm storm record of the window;
        nothing is opened or triggered. The delivery that opened the record schedules the notice."""
        window = self.storm_window(now)
        local = window.astimezone(_JST)
        storm, created = self.ledger.open_or_join(
            fingerprint=f"{STORM_PREFIX}{report.environment}:{window.isoformat()}",
            severity=report.severity,
            symptom=phrase("event.storm_symptom", plain=True),
            title=phrase("event.storm_title", plain=True, since=f"{local:%Y-%m-%d %H:%M}"),
            service=report.service,
            environment=report.environment,
            reporter=STORM_ACTOR,
            at=now,
            occurrence_key=report.occurrence_key,
            detected_at=now,
        )
        what = phrase("event.limit_per_source" if over["scope"] == "source" else "event.limit_overall", plain=True,
                      limit=over["limit"])
        alarm = (report.conf.get("alarm") or {}).get("AlarmName")
        self.ledger.record_event(
            storm["id"], at=now, kind="delivery_held", actor=report.reporter[:256],
            message=phrase("event.delivery_held", plain=True, limit=what, title=report.title, source=report.reporter),
            data={"source": report.reporter, "fingerprint": report.fingerprint, "alarm": alarm, "title": report.title,
                  "severity": report.severity, "service": report.service, "symptom": report.symptom,
                  "environment": report.environment, "occurrence_key": report.occurrence_key,
                  "detected_at": report.detected_at.isoformat(), "cap": over},
            idempotency_key=f"held:{report.occurrence_key}"[:256],
        )
        log.warning("new incidents capped (%s: %s a minute): %s from %s held on alarm storm record %s",
                    over["scope"], over["limit"], report.fingerprint, report.reporter, storm["id"])
        if created:
            self._schedule_storm_notice(storm["id"], report.environment)
        return IntakeResult(
            "held", storm["id"], None, report.severity,
            reason=f"new incidents are capped ({'per source' if over['scope'] == 'source' else 'overall'}: "
                   f"{over['limit']} a minute): this delivery opened no incident and started no run; it is "
                   f"recorded on the alarm storm record {storm['id']} and announced in #dev-team",
        )

    def _schedule_storm_notice(self, storm_id: str, environment: str) -> None:
        """The notice on a thread of its own (never the request's): the webhook answers at once."""
        early = threading.Event()  # set by `wait_storm_notices(flush=True)`: post now, not after the delay
        with self._notice_lock:
            if self._notice_pool is None:
                self._notice_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="alarm-storm-notice")
            future = self._notice_pool.submit(self._send_storm_notice, storm_id, environment, early)
            self._notice_futures[future] = early
        future.add_done_callback(self._notice_done)

    def _notice_done(self, future: Future[Any]) -> None:
        with self._notice_lock:
            self._notice_futures.pop(future, None)

    def wait_storm_notices(self, timeout: float = 10.0, *, flush: bool = False) -> bool:
        """Wait until no storm notice is pending (tests; a shutdown); `flush`: post the pending ones
        now instead of after their delay. True when none is pending."""
        with self._notice_lock:
            pending = dict(self._notice_futures)
        if flush:
            for early in pending.values():
                early.set()
        _, not_done = wait_futures(list(pending), timeout=timeout)
        return not not_done

    def storm_summary(self, storm_id: str) -> dict[str, Any]:
        """What the storm record holds: held deliveries, distinct alarms, sources, since when."""
        record = self.ledger.get(storm_id)
        held = [event for event in self.ledger.events(storm_id) if event["kind"] == "delivery_held"]
        sources = Counter(str((event.get("data") or {}).get("source") or event.get("actor") or "?") for event in held)
        fingerprints = {str((event.get("data") or {}).get("fingerprint")) for event in held}
        titles: list[str] = []
        for event in held:
            title = str((event.get("data") or {}).get("title") or "")
            if title and title not in titles:
                titles.append(title)
        since = min((event["at"] for event in held), default=record["created_at"])
        return {"incident_id": storm_id, "environment": record.get("environment"), "severity": record["severity"],
                "held": len(held), "alarms": len(fingerprints), "sources": sources.most_common(), "since": since,
                "examples": titles[:5]}

    def storm_notice_text(self, storm_id: str) -> str:
        from incident_ops.core.messages import render

        summary = self.storm_summary(storm_id)
        limits = self.flood
        return render(
            "alarm_storm.txt.j2",
            incident_id=summary["incident_id"],
            environment=summary["environment"] or "",
            held=summary["held"],
            alarms=summary["alarms"],
            sources=[{"name": name, "count": count} for name, count in summary["sources"][:10]],
            more_sources=max(len(summary["sources"]) - 10, 0),
            since=f"{summary['since'].astimezone(_JST):%Y-%m-%d %H:%M:%S}",
            severity=summary["severity"],
            examples=summary["examples"],
            per_source=limits.per_source_per_minute or "上限なし",
            overall=limits.per_minute or "上限なし",
        ).rstrip("\n")

    def _send_storm_notice(self, storm_id: str, environment: str, early: threading.Event) -> None:
        delay = self.flood.storm_notice_delay_seconds
        if delay > 0:
            early.wait(delay)  # the counts of the burst, not of its first delivery
        key = f"alarm-storm:{storm_id}"
        try:
            text = self.storm_notice_text(storm_id)
            self.storm_notify(environment, text, key)
        except Exception as exc:  # noqa: BLE001 - Slack down: the storm record and its timeline stay
            log.exception("the alarm storm notice of %s could not be posted", storm_id)
            with contextlib.suppress(Exception):
                self.ledger.record_event(
                    storm_id, at=self.clock(), kind="alarm_storm_notice_failed", actor=STORM_ACTOR,
                    message=f"#dev-team へのアラームストームの通知に失敗しました: {type(exc).__name__}",
                    data={"error": str(exc)[:500]}, idempotency_key="alarm_storm_notice_failed")
            return
        self.ledger.record_event(
            storm_id, at=self.clock(), kind="alarm_storm_notified", actor=STORM_ACTOR,
            message="#dev-team にアラームストームを通知しました", data={"text": text}, idempotency_key="alarm_storm_notified")

    def _post_to_dev_team(self, environment: str, text: str, key: str) -> None:
        """The default `storm_notify`: the project's Slack client (connection `slack_api_default`)."""
        from incident_ops.flows.incident import services_for

        slack = services_for(environment).slack
        if slack is None:
            raise LookupError(f"no Slack client for {environment}")
        slack.post(self.runbook.contacts.channels["dev_team"], text, idempotency_key=key)

    def _start_run(self, incident_id: str, run_id: str, report: Report) -> None:
        conf = {**report.conf, "incident_id": incident_id}
        try:
            created = self.trigger(INCIDENT_DAG_ID, run_id, conf)
        except TriggerError as exc:
            # The incident stays open; the next delivery (SNS retries a 5xx) starts the run.
            self.ledger.record_event(
                incident_id, at=self.clock(), kind="trigger_failed", actor="incident_ops.webhooks",
                message=f"{INCIDENT_DAG_ID} の起動に失敗しました: {exc}", data={"run_id": run_id, "error": str(exc)},
            )
            raise
        self.ledger.update(incident_id, self.clock(), dag_run_id=run_id)
        if created:
            log.info("triggered %s run %s", INCIDENT_DAG_ID, run_id)

    def _events(self, incident_id: str, kinds: tuple[str, ...]) -> list[dict[str, Any]]:
        query = sa.select(events_table.c.kind, events_table.c.data, events_table.c.idempotency_key).where(
            events_table.c.incident_id == incident_id, events_table.c.kind.in_(kinds))
        with self.ledger.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def _run_missing(self, incident: Mapping[str, Any], now: dt.datetime) -> bool:
        """No run drives this incident and none is being started: the trigger failed, or the
        incident is older than `retrigger_after` (its opener died before triggering)."""
        if now - incident["created_at"] >= self.retrigger_after:
            return True
        return bool(self._events(incident["id"], ("trigger_failed",)))

    def _escalate_if_raised(self, incident: Mapping[str, Any], severity: str) -> str | None:
        if incident["severity"] != severity:
            return None
        events = self._events(incident["id"], ("severity_raised", "escalation_requested"))
        raised = any(e["kind"] == "severity_raised" and (e["data"] or {}).get("to") == severity for e in events)
        requested = any(e["idempotency_key"] == f"escalation:{severity}" for e in events)
        if not raised or requested:
            return None
        run_id = escalation_run_id(incident["id"], severity)
        self.trigger(ESCALATE_DAG_ID, run_id, {"incident_id": incident["id"], "severity": severity})
        self.ledger.record_event(
            incident["id"], at=self.clock(), kind="escalation_requested", actor="incident_ops.webhooks",
            message=f"障害レベル{severity}への引き上げを通知します（{ESCALATE_DAG_ID}）",
            data={"run_id": run_id, "severity": severity}, idempotency_key=f"escalation:{severity}",
        )
        log.info("incident %s raised to %s: triggered %s", incident["id"], severity, run_id)
        return run_id

    # --- alarms ----------------------------------------------------------------------------------

    def handle_alarm(self, alarm: Mapping[str, Any], *, environment: str, reporter: str, message_id: str,
                     received_at: dt.datetime | None = None) -> IntakeResult:
        """ALARM → open or join; OK / INSUFFICIENT_DATA → recorded on the open incident, or ignored."""
        received_at = received_at or self.clock()
        report = self.alarm_report(alarm, environment=environment, reporter=reporter,
                                   occurrence_key=f"sns:{message_id}", received_at=received_at)
        if alarm.get("NewStateValue") == "ALARM":
            return self.open(report)
        return self.record_state(alarm, report)

    def record_state(self, alarm: Mapping[str, Any], report: Report) -> IntakeResult:
        incident = self.ledger.find_open(report.fingerprint)
        state = str(alarm.get("NewStateValue"))
        if incident is None:
            return IntakeResult("ignored", None, None, reason=f"{state} for {alarm['AlarmName']}: no open incident")
        reason = str(alarm.get("NewStateReason") or "")[:500]
        self.ledger.record_event(
            incident["id"], at=self.clock(), kind=f"alarm_{state.lower()}", actor=report.reporter,
            message=f"アラーム {alarm['AlarmName']} が {state} になりました（インシデントは開いたまま、復旧はDAGが確認します）"
                    + (f": {reason}" if reason else ""),
            data={key: alarm.get(key) for key in ("AlarmName", "NewStateValue", "OldStateValue", "NewStateReason",
                                                   "StateChangeTime")},
            idempotency_key=report.occurrence_key,
        )
        return IntakeResult("recorded", incident["id"], incident.get("dag_run_id"), incident["severity"])
