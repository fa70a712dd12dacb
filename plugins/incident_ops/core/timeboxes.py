"""Phase time boxes (障害対応フロー: Phase 1 検知と初期対応 0-15分, Phase 2 調査と診断 15-60分).

A run still in Phase 1 when `phase_time_boxes.detect` minutes (15) have passed since detection, or
still in Phase 2 at `phase_time_boxes.investigate` (60), tells the incident channel and the dev lead
(`time_box.txt.j2`), once per incident and phase (`notice_key`).

Which phase an incident has reached is read from its ledger record and events (`phase_reached`):

- Phase 1 ends with the declaration (P1/P2) or the incident channel (P3/P4): `declared`,
  `channel_opened`; the evidence (`evidence`) also means the run is past it. The wait for someone
  to acknowledge runs beside the investigation and does not hold Phase 1 open.
- Phase 2 ends when the recovery scenario is decided: `scenario_chosen` (a person in the UI, the
  timeout default, or the scenario given in the trigger form), or anything of Phase 3 or later
  (`approval`, `action`, `mitigated`, `recovered`, `closed`, a scenario in the record).

An incident no longer open (mitigated, recovered, closed) owes no time-box notice. Nothing here reads
the clock: the elapsed time is an input.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from incident_ops.core.handoff import format_moment
from incident_ops.core.messages import Trusted, format_duration_ja, render
from incident_ops.core.runbook import Runbook

__all__ = [
    "PHASE_NAMES",
    "TIME_BOX_PHASES",
    "TimeBox",
    "due_time_boxes",
    "notice_key",
    "phase_reached",
    "render_time_box_notice",
    "time_box",
    "time_boxes",
]

PHASE_NAMES: dict[int, str] = {1: "検知と初期対応", 2: "調査と診断", 3: "復旧対応", 4: "復旧確認", 5: "ポストモーテム"}
# The phases that have a time box in the runbook.
TIME_BOX_PHASES: tuple[int, ...] = (1, 2)
_PAST_PHASE_1 = frozenset({"declared", "channel_opened", "evidence"})
_PAST_PHASE_2 = frozenset({"scenario_chosen", "approval", "action", "mitigated", "verified", "functional_checks",
                           "recovered", "closed"})
_NOT_OPEN = frozenset({"mitigated", "recovered", "closed"})
_MINUTE = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class TimeBox:
    """A phase and the time from detection by which it should be over."""

    phase: int
    name: str
    ends_after: dt.timedelta
    # When the phase starts (0 for Phase 1, the previous box's end for Phase 2).
    starts_after: dt.timedelta

    @property
    def key(self) -> str:
        return notice_key(self.phase)

    def to_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "name": self.name,
            "starts_after_minutes": self.starts_after.total_seconds() / 60,
            "ends_after_minutes": self.ends_after.total_seconds() / 60,
            "key": self.key,
        }


def time_boxes(runbook: Runbook) -> list[TimeBox]:
    """Phase 1 (0 – detect minutes) and Phase 2 (detect – investigate minutes)."""
    boxes = runbook.phase_time_boxes
    detect, investigate = dt.timedelta(minutes=boxes.detect), dt.timedelta(minutes=boxes.investigate)
    return [
        TimeBox(1, PHASE_NAMES[1], detect, dt.timedelta(0)),
        TimeBox(2, PHASE_NAMES[2], investigate, detect),
    ]


def time_box(runbook: Runbook, phase: int) -> TimeBox:
    for box in time_boxes(runbook):
        if box.phase == phase:
            return box
    raise ValueError(f"phase {phase!r} has no time box; phases with one: {', '.join(map(str, TIME_BOX_PHASES))}")


def notice_key(phase: int) -> str:
    """The ledger event key (and the suffix of the Slack idempotency key) of a phase's notice."""
    return f"time_box:phase{phase}"


def phase_reached(record: Mapping[str, Any], events: Iterable[Mapping[str, Any]]) -> int:
    """The phase the incident is in (1, 2 or 3 = past the time-boxed phases), from the ledger."""
    kinds = {str(event.get("kind")) for event in events}
    if record.get("scenario") or record.get("status") in _NOT_OPEN or kinds & _PAST_PHASE_2:
        return 3
    if kinds & _PAST_PHASE_1:
        return 2
    return 1


def due_time_boxes(
    runbook: Runbook,
    *,
    reached: int,
    elapsed: dt.timedelta,
    status: str = "open",
    sent: Iterable[str] = (),
    phases: Sequence[int] = TIME_BOX_PHASES,
) -> list[TimeBox]:
    """The time boxes (of `phases`) whose end has passed (`elapsed` since detection) while the
    incident is still in that phase (`reached`), not yet notified (`sent`: ledger event keys)."""
    if status != "open":
        return []
    done = set(sent)
    return [
        box for box in time_boxes(runbook)
        if box.phase in phases and reached == box.phase and elapsed >= box.ends_after and box.key not in done
    ]


def _minutes_text(value: dt.timedelta) -> str:
    return format_duration_ja(value // _MINUTE)


def render_time_box_notice(
    runbook: Runbook,
    box: TimeBox,
    *,
    incident_id: str,
    severity: str,
    symptom: str,
    detected_at: dt.datetime,
    elapsed: dt.timedelta,
    to: Sequence[str] = (),
    channel: str | None = None,
) -> str:
    """The notice (`time_box.txt.j2`). `to`: mentions (the dev lead); `channel`: the incident
    channel's name when the notice goes elsewhere (#dev-team when there is none yet)."""
    return render(
        "time_box.txt.j2",
        to=Trusted(" ".join(to)),  # mentions the caller built (`<@U…>`)
        phase=box.phase,
        phase_name=box.name,
        severity=severity,
        symptom=" ".join(str(symptom).split()),
        incident_id=incident_id,
        detected_time=format_moment(runbook, detected_at),
        window=f"{box.starts_after // _MINUTE}-{box.ends_after // _MINUTE}分",
        elapsed=_minutes_text(elapsed),
        channel=channel,
        next_step=_NEXT_STEPS[box.phase],
    ).rstrip("\n")


_NEXT_STEPS: dict[int, str] = {
    1: "障害の確認・障害レベルの判定・インシデントの宣言（状況チャンネルの作成）を済ませてください。",
    2: "調査結果をもとに復旧シナリオを決めてください（Airflow の choose_scenario で選択）。",
}
