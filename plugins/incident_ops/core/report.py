"""The weekly incident response report: how fast each severity was declared, answered and recovered.

Figures per severity for the incidents detected in the period (drills in check mode are counted
apart and left out of the figures):

- time to declare (declared_at − detected_at), for the severities the runbook declares (P1/P2),
  against Phase 1's window (検知と初期対応 0-15分: `DECLARE_TARGET`);
- time to acknowledge, i.e. to the start of the response, against the severity's 対応時間目標 (P1
  15 min, P2 30 min, P3 2 h, P4 24 h), counted like every other rule (`deadlines.response_window`)
  from the instant work may start: detection, or for a P4 reported outside business hours the next
  business day's 9:00 (翌営業日可); an acknowledgement before then counts as 0;
- time to recover (recovered_at − detected_at); the runbook sets no target for it.

A breach is a time over its target, or no record at all once the target has passed. Postmortems
outstanding are every recovered incident whose postmortem is required and not done (whenever it
was detected). The report time `at` is an input; nothing here reads the clock.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from incident_ops.core.calendar import ensure_aware
from incident_ops.core.deadlines import response_window
from incident_ops.core.handoff import format_moment
from incident_ops.core.messages import format_duration_ja, render
from incident_ops.core.reminders import postmortem_required, stage_times
from incident_ops.core.runbook import SEVERITIES, Runbook

__all__ = [
    "DECLARE_TARGET",
    "Breach",
    "IncidentFigures",
    "Report",
    "SeverityFigures",
    "build_report",
    "format_span",
    "incident_figures",
    "incidents_csv",
    "render_markdown",
    "render_summary",
    "report_period",
    "summary_csv",
]

# Phase 1 (検知と初期対応) takes 0-15 minutes and ends with the declaration.
DECLARE_TARGET = dt.timedelta(minutes=15)
Mentions = Literal["slack", "plain"]
_WEEKDAY_JA = "月火水木金土日"
_STATUS_LABELS = {"open": "対応中", "mitigated": "緩和済み", "recovered": "復旧済み", "closed": "クローズ"}


def _aware(value: Any, what: str) -> dt.datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return ensure_aware(value, what)


def format_span(value: dt.timedelta | None) -> str:
    """`12分`, `1時間5分`, `26時間0分`, `1分未満`; `—` for no value."""
    if value is None:
        return "—"
    if value < dt.timedelta(minutes=1):
        return "1分未満"
    minutes = int(value.total_seconds()) // 60
    if minutes < 60:
        return f"{minutes}分"
    return f"{minutes // 60}時間{minutes % 60}分"


def _minutes(value: dt.timedelta | None) -> float | None:
    return round(value.total_seconds() / 60, 1) if value is not None else None


def report_period(runbook: Runbook, at: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The last complete week before `at`: Monday 00:00 to the next Monday 00:00 (runbook's zone)."""
    local = ensure_aware(at, "at").astimezone(runbook.tz)
    monday = local.date() - dt.timedelta(days=local.weekday())
    end = dt.datetime.combine(monday, dt.time(), tzinfo=runbook.tz)
    return end - dt.timedelta(days=7), end


@dataclass(frozen=True)
class Breach:
    incident_id: str
    severity: str
    kind: Literal["declare", "acknowledge"]
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"incident_id": self.incident_id, "severity": self.severity, "kind": self.kind, "text": self.text}


@dataclass(frozen=True)
class IncidentFigures:
    id: str
    severity: str
    status: str
    title: str
    detected_at: dt.datetime
    declared_at: dt.datetime | None
    acknowledged_at: dt.datetime | None
    recovered_at: dt.datetime | None
    to_declare: dt.timedelta | None
    to_acknowledge: dt.timedelta | None
    to_recover: dt.timedelta | None
    declare_required: bool
    ack_target: dt.timedelta
    breaches: list[Breach] = field(default_factory=list)

    @property
    def ack_met(self) -> bool | None:
        return None if self.to_acknowledge is None else self.to_acknowledge <= self.ack_target

    @property
    def declare_met(self) -> bool | None:
        if not self.declare_required or self.to_declare is None:
            return None
        return self.to_declare <= DECLARE_TARGET

    def to_dict(self) -> dict[str, Any]:
        def iso(value: dt.datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "id": self.id,
            "severity": self.severity,
            "status": self.status,
            "title": self.title,
            "detected_at": iso(self.detected_at),
            "declared_at": iso(self.declared_at),
            "acknowledged_at": iso(self.acknowledged_at),
            "recovered_at": iso(self.recovered_at),
            "minutes_to_declare": _minutes(self.to_declare),
            "minutes_to_acknowledge": _minutes(self.to_acknowledge),
            "minutes_to_recover": _minutes(self.to_recover),
            "ack_target_minutes": _minutes(self.ack_target),
            "ack_met": self.ack_met,
            "declare_met": self.declare_met,
            "breaches": [breach.to_dict() for breach in self.breaches],
        }


def _span(start: dt.datetime, end: dt.datetime | None) -> dt.timedelta | None:
    if end is None:
        return None
    return max(end - start, dt.timedelta(0))


def incident_figures(runbook: Runbook, incident: Mapping[str, Any], at: dt.datetime) -> IncidentFigures:
    """One incident's times and breaches, judged at the report time `at`."""
    at = ensure_aware(at, "at")
    severity = str(incident["severity"])
    if severity not in runbook.severities:
        raise ValueError(f"unknown severity {severity!r}")
    detected = _aware(incident["detected_at"], "detected_at")
    assert detected is not None
    declared = _aware(incident.get("declared_at"), "declared_at")
    acknowledged = _aware(incident.get("acknowledged_at"), "acknowledged_at")
    recovered = _aware(incident.get("recovered_at"), "recovered_at")
    window = response_window(runbook, severity, detected)
    target_minutes = window.target_minutes
    target = dt.timedelta(minutes=target_minutes)
    declare_required = severity in runbook.declare_severities
    to_declare, to_ack = _span(detected, declared), _span(window.work_from, acknowledged)
    incident_id = str(incident["id"])
    breaches = []
    if declare_required:
        if to_declare is not None and to_declare > DECLARE_TARGET:
            breaches.append(Breach(incident_id, severity, "declare",
                                   f"宣言まで {format_span(to_declare)}（目標: {format_duration_ja(15)}以内）"))
        elif to_declare is None and detected + DECLARE_TARGET <= at:
            breaches.append(Breach(incident_id, severity, "declare", "宣言の記録がありません"))
    if to_ack is not None and to_ack > target:
        breaches.append(Breach(incident_id, severity, "acknowledge",
                               f"対応開始まで {format_span(to_ack)}（目標: {format_duration_ja(target_minutes)}以内）"))
    elif to_ack is None and window.deadline <= at:
        breaches.append(Breach(incident_id, severity, "acknowledge",
                               f"対応開始の記録がありません（目標: {format_duration_ja(target_minutes)}以内）"))
    return IncidentFigures(
        id=incident_id,
        severity=severity,
        status=str(incident.get("status") or ""),
        title=" ".join(str(incident.get("title") or incident.get("symptom") or incident_id).split()),
        detected_at=detected.astimezone(runbook.tz),
        declared_at=declared.astimezone(runbook.tz) if declared else None,
        acknowledged_at=acknowledged.astimezone(runbook.tz) if acknowledged else None,
        recovered_at=recovered.astimezone(runbook.tz) if recovered else None,
        to_declare=to_declare,
        to_acknowledge=to_ack,
        to_recover=_span(detected, recovered),
        declare_required=declare_required,
        ack_target=target,
        breaches=breaches,
    )


def _median(values: Sequence[dt.timedelta]) -> dt.timedelta | None:
    return dt.timedelta(seconds=statistics.median(v.total_seconds() for v in values)) if values else None


def _max(values: Sequence[dt.timedelta]) -> dt.timedelta | None:
    return max(values) if values else None


@dataclass(frozen=True)
class SeverityFigures:
    severity: str
    name: str
    count: int
    ack_target: dt.timedelta
    declare_required: bool
    declared: int
    acknowledged: int
    recovered: int
    declare_median: dt.timedelta | None
    declare_max: dt.timedelta | None
    ack_median: dt.timedelta | None
    ack_max: dt.timedelta | None
    recover_median: dt.timedelta | None
    recover_max: dt.timedelta | None
    ack_within_target: int
    breaches: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "name": self.name,
            "incidents": self.count,
            "ack_target_minutes": _minutes(self.ack_target),
            "declared": self.declared,
            "acknowledged": self.acknowledged,
            "recovered": self.recovered,
            "median_minutes_to_declare": _minutes(self.declare_median),
            "max_minutes_to_declare": _minutes(self.declare_max),
            "median_minutes_to_acknowledge": _minutes(self.ack_median),
            "max_minutes_to_acknowledge": _minutes(self.ack_max),
            "median_minutes_to_recover": _minutes(self.recover_median),
            "max_minutes_to_recover": _minutes(self.recover_max),
            "ack_within_target": self.ack_within_target,
            "breaches": self.breaches,
        }


def _severity_figures(runbook: Runbook, severity: str, items: Sequence[IncidentFigures]) -> SeverityFigures:
    level = runbook.severities[severity]  # type: ignore[index]
    declares = [i.to_declare for i in items if i.to_declare is not None]
    acks = [i.to_acknowledge for i in items if i.to_acknowledge is not None]
    recovers = [i.to_recover for i in items if i.to_recover is not None]
    return SeverityFigures(
        severity=severity,
        name=level.name,
        count=len(items),
        ack_target=dt.timedelta(minutes=level.response_start_minutes),
        declare_required=severity in runbook.declare_severities,
        declared=len(declares),
        acknowledged=len(acks),
        recovered=len(recovers),
        declare_median=_median(declares),
        declare_max=_max(declares),
        ack_median=_median(acks),
        ack_max=_max(acks),
        recover_median=_median(recovers),
        recover_max=_max(recovers),
        ack_within_target=sum(1 for i in items if i.ack_met),
        breaches=sum(len(i.breaches) for i in items),
    )


@dataclass(frozen=True)
class Report:
    start: dt.datetime
    end: dt.datetime
    at: dt.datetime
    severities: list[SeverityFigures]
    incidents: list[IncidentFigures]
    drills: int
    outstanding: list[dict[str, Any]]

    @property
    def breaches(self) -> list[Breach]:
        return [breach for item in self.incidents for breach in item.breaches]

    @property
    def key(self) -> str:
        """`incident_response_report:2026-11-02`: the week's idempotency key (its first day)."""
        return f"incident_response_report:{self.start.date().isoformat()}"

    @property
    def stem(self) -> str:
        """File name stem of the week's files: `incident-response-2026-11-02`."""
        return f"incident-response-{self.start.date().isoformat()}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "at": self.at.isoformat(),
            "incidents": len(self.incidents),
            "drills": self.drills,
            "severities": [item.to_dict() for item in self.severities],
            "breaches": [breach.to_dict() for breach in self.breaches],
            "outstanding_postmortems": [
                {**row, "due_at": row["due_at"].isoformat(), "recovered_at": row["recovered_at"].isoformat()}
                for row in self.outstanding
            ],
        }


def _outstanding(runbook: Runbook, pending: Iterable[Mapping[str, Any]], at: dt.datetime) -> list[dict[str, Any]]:
    rows = []
    for incident in pending:
        if incident.get("postmortem_done_at") is not None or incident.get("recovered_at") is None:
            continue
        if not postmortem_required(runbook, str(incident["severity"])):
            continue
        due = stage_times(runbook, incident)["overdue"]
        rows.append(
            {
                "id": str(incident["id"]),
                "severity": str(incident["severity"]),
                "title": " ".join(str(incident.get("title") or incident.get("symptom") or incident["id"]).split()),
                "recovered_at": _aware(incident["recovered_at"], "recovered_at").astimezone(runbook.tz),
                "due_at": due,
                "overdue": due <= at,
            }
        )
    return sorted(rows, key=lambda row: (row["due_at"], row["id"]))


def build_report(
    runbook: Runbook,
    incidents: Iterable[Mapping[str, Any]],
    pending_postmortems: Iterable[Mapping[str, Any]],
    *,
    start: dt.datetime,
    end: dt.datetime,
    at: dt.datetime,
) -> Report:
    """The report of the incidents detected in [start, end) (others in `incidents` are ignored)."""
    start, end, at = (ensure_aware(v, n).astimezone(runbook.tz) for v, n in ((start, "start"), (end, "end"), (at, "at")))
    figures: list[IncidentFigures] = []
    drills = 0
    for incident in incidents:
        detected = _aware(incident["detected_at"], "detected_at")
        if detected is None or not start <= detected < end:
            continue
        if incident.get("check_mode"):
            drills += 1
            continue
        figures.append(incident_figures(runbook, incident, at))
    figures.sort(key=lambda item: (item.detected_at, item.id))
    severities = [
        _severity_figures(runbook, severity, [item for item in figures if item.severity == severity])
        for severity in SEVERITIES
    ]
    return Report(start, end, at, severities, figures, drills, _outstanding(runbook, pending_postmortems, at))


# --- output -----------------------------------------------------------------------------------------


def _day(runbook: Runbook, value: dt.datetime) -> str:
    local = value.astimezone(runbook.tz)
    return f"{local:%Y-%m-%d}({_WEEKDAY_JA[local.weekday()]})"


def _cell(value: Any) -> str:
    """One line for a Markdown cell (pipes and other Markdown are escaped by the template)."""
    text = " ".join(str(value).split())
    return text or "—"


def _pair(median: dt.timedelta | None, largest: dt.timedelta | None) -> str:
    return "—" if median is None else f"{format_span(median)} / {format_span(largest)}"


def _context(runbook: Runbook, report: Report, text: Callable[[Any], str] = _cell) -> dict[str, Any]:
    """The templates' values; `text` formats free text (titles) for Markdown cells or for Slack."""
    last_day = report.end - dt.timedelta(days=1)
    return {
        "period": f"{_day(runbook, report.start)} 〜 {_day(runbook, last_day)}",
        "start": format_moment(runbook, report.start),
        "end": format_moment(runbook, report.end),
        "generated": format_moment(runbook, report.at),
        "total": len(report.incidents),
        "drills": report.drills,
        "declare_target": format_span(DECLARE_TARGET),
        "severities": [
            {
                "severity": item.severity,
                "name": item.name,
                "count": item.count,
                "declare": _pair(item.declare_median, item.declare_max) if item.declare_required else "対象外",
                "ack": _pair(item.ack_median, item.ack_max),
                "target": f"{format_duration_ja(int(item.ack_target.total_seconds() // 60))}以内",
                "within": f"{item.ack_within_target}/{item.count}" if item.count else "—",
                "recover": _pair(item.recover_median, item.recover_max),
                "breaches": item.breaches,
            }
            for item in report.severities
        ],
        "breaches": [
            {"id": b.incident_id, "severity": b.severity, "text": text(b.text)} for b in report.breaches
        ],
        "incidents": [
            {
                "id": item.id,
                "severity": item.severity,
                "title": text(item.title),
                "detected": format_moment(runbook, item.detected_at),
                "declare": format_span(item.to_declare) if item.declare_required else "対象外",
                "ack": format_span(item.to_acknowledge),
                "recover": format_span(item.to_recover),
                "status": _STATUS_LABELS.get(item.status, item.status),
                "breach": "あり" if item.breaches else "",
            }
            for item in report.incidents
        ],
        "outstanding": [
            {
                "id": row["id"],
                "severity": row["severity"],
                "title": text(row["title"]),
                "recovered": format_moment(runbook, row["recovered_at"]),
                "due": format_moment(runbook, row["due_at"]),
                "overdue": row["overdue"],
            }
            for row in report.outstanding
        ],
        "overdue_count": sum(1 for row in report.outstanding if row["overdue"]),
    }


def render_markdown(runbook: Runbook, report: Report) -> str:
    """The report as a Markdown file (`report.md.j2`), ending with a newline."""
    text = render("report.md.j2", **_context(runbook, report))
    return text if text.endswith("\n") else text + "\n"


def render_summary(runbook: Runbook, report: Report, *, files: Sequence[str] = (), mentions: Mentions = "slack") -> str:
    """The Slack summary (`report.txt.j2`); `files`: where the Markdown/CSV were written."""
    # Free text is escaped by the template (Slack's escaping; none when plain).
    context = _context(runbook, report, lambda value: " ".join(str(value).split()))
    return render("report.txt.j2", plain=mentions == "plain", **context, files=list(files)).rstrip("\n")


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if value is None else value for value in row])
    return buffer.getvalue()


def incidents_csv(report: Report) -> str:
    """One row per incident: times (ISO, the runbook's zone), minutes, targets and breaches."""
    header = [
        "incident_id", "severity", "status", "title", "detected_at", "declared_at", "acknowledged_at", "recovered_at",
        "minutes_to_declare", "minutes_to_acknowledge", "minutes_to_recover", "ack_target_minutes",
        "ack_within_target", "declare_within_target", "breaches",
    ]
    rows = []
    for item in report.incidents:
        data = item.to_dict()
        rows.append([
            item.id, item.severity, item.status, item.title, data["detected_at"], data["declared_at"],
            data["acknowledged_at"], data["recovered_at"], data["minutes_to_declare"], data["minutes_to_acknowledge"],
            data["minutes_to_recover"], data["ack_target_minutes"], item.ack_met, item.declare_met,
            "; ".join(b.text for b in item.breaches),
        ])
    return _csv(header, rows)


def summary_csv(report: Report) -> str:
    """One row per severity (P1..P4), the figures of `SeverityFigures.to_dict`."""
    header = [
        "severity", "name", "incidents", "ack_target_minutes", "declared", "acknowledged", "recovered",
        "median_minutes_to_declare", "max_minutes_to_declare", "median_minutes_to_acknowledge",
        "max_minutes_to_acknowledge", "median_minutes_to_recover", "max_minutes_to_recover",
        "ack_within_target", "breaches",
    ]
    return _csv(header, ([item.to_dict()[column] for column in header] for item in report.severities))
