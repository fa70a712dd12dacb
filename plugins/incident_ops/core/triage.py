"""障害レベルの判定: from a reported symptom and/or a CloudWatch alarm to a severity.

Rules, in order:
1. A valid severity given by the reporter (`override`) always wins.
2. The symptom text is matched against the catalogue (id, label, aliases; Japanese and English)
   after Unicode NFKC, casefold and whitespace collapsing. A symptom matches when the text equals or
   contains one of its terms, or (for texts of 3+ characters) is contained in one. Several matches:
   the higher severity (when unsure, the higher one).
3. An alarm is looked up by name in the environment's alarm map; an unmapped alarm uses the
   documented `default_alarm` (never dropped). A mapping's own severity wins over its symptom's.
4. Text and alarm both given: the higher severity wins (the text on a tie). Text that matches
   nothing adds no evidence next to an alarm, so it does not raise the alarm's severity.
5. Nothing matched: `triage.unmatched_severity` (when unsure, the higher one).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from incident_ops.core.runbook import SEVERITIES, Runbook

__all__ = [
    "fingerprint_for",
    "Classification",
    "classify",
    "higher_severity",
    "normalize_text",
    "severity_rank",
    "symptom_choices",
]

Source = Literal["override", "symptom", "alarm", "unmatched"]

# Quality of a text match, best first in the tie-break after severity.
_EXACT, _TEXT_CONTAINS_TERM, _TERM_CONTAINS_TEXT = 3, 2, 1
_MIN_PARTIAL_TEXT = 3
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})


@dataclass(frozen=True)
class Classification:
    """The severity and why: `rule` is a short human-readable reason, `candidates` what was considered."""

    severity: str
    rule: str
    symptom_id: str | None
    symptom_label: str | None
    impact: str | None
    candidates: list[tuple[str, str]] = field(default_factory=list)
    source: Source = "symptom"
    # The service an alarm points at (alarm map), None for reports without an alarm.
    service: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "rule": self.rule,
            "symptom": self.symptom_id,
            "label": self.symptom_label,
            "impact": self.impact,
            "source": self.source,
            "service": self.service,
            "candidates": [{"symptom": symptom_id, "severity": severity} for symptom_id, severity in self.candidates],
        }


def severity_rank(severity: str) -> int:
    """0 for P1 (the highest) to 3 for P4; ValueError for anything else."""
    try:
        return SEVERITIES.index(severity)
    except ValueError:
        raise ValueError(f"unknown severity {severity!r}; severities are {', '.join(SEVERITIES)}") from None


def higher_severity(first: str, second: str) -> str:
    """The more severe of two severities (P1 is higher than P2)."""
    return first if severity_rank(first) <= severity_rank(second) else second


def normalize_text(text: str) -> str:
    """NFKC (full-width to half-width), casefold, straight quotes, single spaces."""
    folded = unicodedata.normalize("NFKC", text).translate(_QUOTES).casefold()
    return " ".join(folded.split())


def symptom_choices(runbook: Runbook) -> list[tuple[str, str]]:
    """(id, label) of every catalogued symptom, in runbook order, for UI forms."""
    return [(symptom.id, symptom.label) for symptom in runbook.triage.symptoms]


def _match_quality(text: str, term: str) -> int | None:
    if not term:
        return None
    if text == term:
        return _EXACT
    if term in text:
        return _TEXT_CONTAINS_TERM
    if len(text) >= _MIN_PARTIAL_TEXT and text in term:
        return _TERM_CONTAINS_TEXT
    return None


def _terms(symptom_id: str, label: str, aliases: list[str]) -> list[str]:
    raw = [symptom_id, symptom_id.replace("_", " "), label, *aliases]
    return list(dict.fromkeys(normalize_text(term) for term in raw))


def _classify_text(runbook: Runbook, text: str) -> Classification:
    normalized = normalize_text(text)
    scored = []
    for position, symptom in enumerate(runbook.triage.symptoms):
        best: tuple[int, int] | None = None
        for term in _terms(symptom.id, symptom.label, symptom.aliases):
            quality = _match_quality(normalized, term)
            if quality is not None and (best is None or (quality, len(term)) > best):
                best = (quality, len(term))
        if best is not None:
            scored.append(((severity_rank(symptom.severity), -best[0], -best[1], position), symptom))
    if not scored:
        severity = runbook.triage.unmatched_severity
        return Classification(
            severity=severity,
            rule=f"unmatched → {severity} (when unsure, the higher one)",
            symptom_id=None,
            symptom_label=text.strip() or None,
            impact=None,
            source="unmatched",
        )
    scored.sort(key=lambda item: item[0])
    chosen = scored[0][1]
    rule = f"symptom {chosen.id} ({chosen.label}) → {chosen.severity}"
    if len(scored) > 1:
        rule += f" (the highest of {len(scored)} matches)"
    return Classification(
        severity=chosen.severity,
        rule=rule,
        symptom_id=chosen.id,
        symptom_label=chosen.label,
        impact=chosen.impact,
        candidates=[(symptom.id, symptom.severity) for _, symptom in scored],
        source="symptom",
    )


def _classify_alarm(runbook: Runbook, environment: str, alarm: Mapping[str, Any]) -> Classification:
    name = alarm.get("AlarmName")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("alarm needs a non-empty 'AlarmName'")
    env = runbook.environment(environment)
    mapping = next((entry for entry in env.alarms if entry.name == name), None)
    if mapping is not None:
        symptom_id, service, own_severity, where = mapping.symptom, mapping.service, mapping.severity, ""
    else:
        default = env.default_alarm
        symptom_id, service, own_severity = default.symptom, default.service, default.severity
        where = " (unmapped: default_alarm)"
    symptom = runbook.symptom(symptom_id)
    severity = own_severity or symptom.severity
    rule = f"alarm {name}{where} → {symptom.id} → {severity}"
    if own_severity is not None and own_severity != symptom.severity:
        rule += " (the alarm's own severity)"
    return Classification(
        severity=severity,
        rule=rule,
        symptom_id=symptom.id,
        symptom_label=symptom.label,
        impact=symptom.impact,
        candidates=[(symptom.id, severity)],
        source="alarm",
        service=service,
    )


def _parse_override(override: str | None) -> str | None:
    if override is None or not override.strip():
        return None
    severity = override.strip().upper()
    if severity not in SEVERITIES:
        raise ValueError(f"override must be one of {', '.join(SEVERITIES)}, got {override!r}")
    return severity


def classify(
    runbook: Runbook,
    symptom: str | None = None,
    *,
    alarm: Mapping[str, Any] | None = None,
    environment: str = "production",
    override: str | None = None,
) -> Classification:
    """The severity of a report (`symptom` text) and/or a CloudWatch alarm; see the module rules."""
    forced = _parse_override(override)
    runbook.environment(environment)  # an unknown environment is a mistake even without an alarm
    from_text = _classify_text(runbook, symptom) if symptom is not None and symptom.strip() else None
    from_alarm = _classify_alarm(runbook, environment, alarm) if alarm is not None else None

    if from_alarm is None:
        result = from_text or _classify_text(runbook, "")
    elif from_text is None or from_text.source == "unmatched":
        result = from_alarm
    else:
        winner, other = (
            (from_text, from_alarm)
            if higher_severity(from_text.severity, from_alarm.severity) == from_text.severity
            else (from_alarm, from_text)
        )
        candidates = list(dict.fromkeys([*winner.candidates, *other.candidates]))
        result = replace(winner, candidates=candidates, service=from_alarm.service)

    if forced is None:
        return result
    return replace(
        result,
        severity=forced,
        rule=f"override by reporter → {forced} (the rules gave {result.severity}: {result.rule})",
        source="override",
    )


def fingerprint_for(environment: str, service: str, symptom_id: str | None, symptom_text: str,
                    alarm: dict[str, Any] | None) -> str:
    """One open incident per fingerprint: the alarm when there is one, else service + symptom."""
    if alarm and alarm.get("AlarmName"):
        return f"{environment}:alarm:{alarm['AlarmName']}"
    return f"{environment}:{service}:{symptom_id or normalize_text(symptom_text)[:80]}"
