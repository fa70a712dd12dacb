"""The escalation notice (エスカレーションパスの通知): what #dev-team, the dev lead and PagerDuty read.

One text per incident and plan: the severity and symptom, when work may start and by when it must
have started (`deadlines.response_window`), and, when the plan pages the on-call engineer at a low
urgency (the P3 night page), that it does. Every time is shown as `12/07(月) 09:00` in the runbook's
zone, so a P4 reported on Friday evening reads

    対応: 12/07(月) 09:00 から対応（翌営業日可）
    対応開始の目標: 12/08(火) 09:00 まで（対応できる時刻から24時間以内）

and the same P4 reported in business hours says work may start now. Nothing here reads the clock.

**Required notices** (`required_notices`): the ones a notify step must have delivered before it
counts as done; while one is missing the step fails and Airflow retries it (only what failed is sent
again). The runbook's escalation path wakes people through PagerDuty: every PagerDuty page and phone
call of a plan is required (P1: the on-call page and the CTO's call; P2: the on-call page; a P3 at
night: the low-urgency page; unacknowledged P1/P2: the CTO's call). A plan with no page and no call
(P3 in business hours, P4, the unacknowledged P3/P4 level) requires its Slack notices, the only way
it reaches anyone. The rest (the dev lead's Slack mention beside a page, e-mail) is optional: a
failure is reported on the timeline and never fails the step.

`page_summary` is the PagerDuty summary of an incident's page, the same for the DAG's page and the
webhook intake's (`incident_ops.webhooks.paging`), so both are one alert under one dedup key.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from incident_ops.core.deadlines import ResponseWindow, response_may_wait, response_window
from incident_ops.core.handoff import format_moment
from incident_ops.core.messages import format_duration_ja, render
from incident_ops.core.runbook import Runbook

__all__ = ["PAGING_CHANNELS", "page_summary", "render_notice", "required_notices", "work_start_text"]

# The channels that wake someone (PagerDuty's page and its phone call through a responder request).
PAGING_CHANNELS = ("pagerduty", "phone")


def _field(notice: Any, key: str) -> Any:
    return notice.get(key) if isinstance(notice, Mapping) else getattr(notice, key, None)


def _low_urgency_page(notices: Sequence[Any]) -> str | None:
    """The on-call engineer's name when the plan pages them at a low urgency (the P3 night page)."""
    for notice in notices:
        if _field(notice, "via") == "pagerduty" and _field(notice, "urgency") == "low":
            recipients = _field(notice, "recipients") or []
            return str(recipients[0].get("name")) if recipients else "オンコール担当"
    return None


def work_start_text(runbook: Runbook, window: ResponseWindow) -> str | None:
    """`12/07(月) 09:00 から対応（翌営業日可）`, or `今から対応可（業務時間内）` for a severity that may
    wait but was reported in business hours; None when the severity never waits (P1–P3)."""
    if window.deferred:
        return f"{format_moment(runbook, window.work_from)} から対応（翌営業日可）"
    if response_may_wait(runbook, window.severity):
        return "今から対応可（業務時間内）"
    return None


def render_notice(
    runbook: Runbook,
    *,
    incident_id: str,
    severity: str,
    symptom: str,
    impact: str,
    detected_at: dt.datetime,
    notices: Sequence[Any] = (),
) -> str:
    """The notice text (`notice.txt.j2`). `notices`: the plan (Notification objects or their dicts),
    read for the low-urgency page line."""
    window = response_window(runbook, severity, detected_at)
    level = runbook.severities[severity]  # type: ignore[index]
    target = format_duration_ja(window.target_minutes)
    return render(
        "notice.txt.j2",
        severity=severity,
        level=level.name,
        symptom=" ".join(str(symptom).split()),
        incident_id=incident_id,
        impact=" ".join(str(impact).split()),
        work=work_start_text(runbook, window),
        deadline=format_moment(runbook, window.deadline),
        target=target,
        from_work_start=window.deferred,
        paged=_low_urgency_page(notices),
    ).rstrip("\n")


def required_notices(notices: Sequence[Any]) -> set[tuple[str, str]]:
    """The (target, via) pairs of the plan `notices` that must be delivered (see the module doc)."""
    pairs = [(str(_field(n, "target")), str(_field(n, "via"))) for n in notices]
    paging = {pair for pair in pairs if pair[1] in PAGING_CHANNELS}
    return paging or {pair for pair in pairs if pair[1] == "slack"}


def page_summary(severity: str, symptom: str, environment: str | None, service: str | None) -> str:
    """`[P1] ログインできない (production/backend)`: the PagerDuty summary of an incident's page."""
    return f"[{severity}] {' '.join(str(symptom).split())} ({environment}/{service})"
