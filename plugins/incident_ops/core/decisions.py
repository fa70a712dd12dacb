"""People's decisions during recovery: what happens when nobody answers, and the words and buttons
that ask them (pure: no Airflow, no Slack client).

Two kinds of decision wait for a person (human-in-the-loop tasks of `incident_response`):

- the **scenario choice**: on timeout, `decisions.scenario_choice.on_timeout` (or the suggested
  scenario's own `on_timeout`), per severity: `manual` (no automatic recovery) or `suggested` (the
  suggestion starts, *unattended*);
- a step's **approval**: on timeout, `decisions.approval.on_timeout` (or the step's own): `reject`
  or `approve` (the runbook allows `approve` only on `auto` steps).

In a scenario that started unattended, only `auto` steps (and read-only ones) run without a person;
every other step asks for its own approval (a *consent* decision), which a person's choice of the
scenario answers in advance.

`decision_message` renders the Slack message (text + Block Kit buttons whose values name the task and
the option, see `button_value`) and `decision_body` the same question for the Airflow UI (Markdown).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from incident_ops.core.messages import Trusted, format_time_jst, render, slack_escape
from incident_ops.core.phrases import params_text, phrase, step_name
from incident_ops.core.runbook import Runbook, Scenario, Step, timeout_policy

__all__ = [
    "ACK_BLOCK_ID",
    "DECISION_BLOCK_ID",
    "MANUAL",
    "Option",
    "acknowledge_blocks",
    "answered_blocks",
    "approval_on_timeout",
    "approval_question",
    "approval_reasons",
    "approval_subject",
    "button_value",
    "choice_on_timeout",
    "decision_body",
    "decision_message",
    "option_label",
    "outcome_on_timeout",
    "reminder_text",
    "scenario_option_label",
    "scenario_options",
    "scenario_question",
    "scenario_subject",
    "timeout_notice_text",
    "unattended_steps",
]

DECISION_BLOCK_ID = "incident_ops.decision"
ACK_BLOCK_ID = "incident_ops.acknowledge"
MANUAL = "manual"
APPROVE = "Approve"
REJECT = "Reject"
_BUTTON_TEXT_MAX = 75
Kind = Literal["scenario", "approval", "consent"]


@dataclass(frozen=True)
class Option:
    """One answer: `value` is the HITL option exactly, `label` what the button says."""

    value: str
    label: str
    style: str | None = None


def choice_on_timeout(runbook: Runbook, severity: str, suggested: str | None) -> str:
    """`manual` or `suggested` for a scenario choice nobody answers. No suggestion: manual."""
    if not suggested or suggested not in runbook.scenarios:
        return MANUAL
    policy = runbook.scenarios[suggested].on_timeout or runbook.decisions.scenario_choice.on_timeout
    return timeout_policy(policy, severity)


def approval_on_timeout(runbook: Runbook, scenario: str, step_id: str, severity: str) -> str:
    """`reject` or `approve` for an approval nobody answers (a consent decision: always reject
    unless the step is `auto`, which needs none)."""
    step = runbook.scenario(scenario).step(step_id)
    if not step.approval:
        return "reject"  # a consent decision: asked only of steps that are not `auto`
    return timeout_policy(step.on_timeout or runbook.decisions.approval.on_timeout, severity)


def unattended_steps(scenario: Scenario) -> tuple[list[Step], list[Step]]:
    """(steps that run with nobody answering, steps that wait for a person) of a scenario that
    starts unattended, in order (fallback-only steps follow their step)."""
    runs = [s for s in scenario.main_steps() if not s.needs_consent and not s.approval]
    asks = [s for s in scenario.main_steps() if s.needs_consent or s.approval]
    return runs, asks


def _step_names(steps: Sequence[Step]) -> str:
    return "、".join(f"「{step_name(s)}」" for s in steps)


def outcome_on_timeout(runbook: Runbook, *, kind: Kind, severity: str, suggested: str | None = None,
                       scenario: str | None = None, step_id: str | None = None, done: bool = False) -> str:
    """What happens at the deadline, in one Japanese paragraph (plain text: the templates escape it).
    `done=False`: what the question says will happen; `done=True`: what was done, once the deadline
    passed (the answered message and the dev lead's notice)."""
    suffix = "_done" if done else ""
    if kind == "scenario":
        if choice_on_timeout(runbook, severity, suggested) == MANUAL:
            return phrase(f"timeout.manual{suffix}", plain=True)
        plan = runbook.scenarios[suggested]  # type: ignore[index]
        runs, asks = unattended_steps(plan)
        auto = [s for s in runs if s.auto]
        text = phrase(f"timeout.suggested{suffix}", plain=True, scenario=plan.label)
        if auto:
            reasons = " ".join(phrase("timeout.auto_reason", plain=True, step=step_name(s), reason=s.auto_reason or "")
                               for s in auto)
            text += phrase("timeout.auto_steps", plain=True, steps=_step_names(auto), reasons=reasons)
        else:
            text += phrase("timeout.no_auto_steps", plain=True)
        if asks:
            text += phrase("timeout.asks", plain=True, steps=_step_names(asks), several=len(asks) > 1)
        return text
    if not scenario or not step_id:
        raise ValueError("an approval's outcome needs its scenario and step")
    step = runbook.scenario(scenario).step(step_id)
    if approval_on_timeout(runbook, scenario, step_id, severity) == "approve":
        return phrase(f"timeout.approve{suffix}", plain=True, step=step_name(step), reason=step.auto_reason or "")
    return phrase(f"timeout.reject{suffix}", plain=True, step=step_name(step))


def scenario_option_label(runbook: Runbook, name: str) -> str:
    """A scenario as a button says it: its label and remediation (no runbook key)."""
    plan = runbook.scenario(name)
    return phrase("decision.scenario_option", plain=True, label=plan.label, remediation=plan.remediation)


def scenario_options(runbook: Runbook, manual: str) -> dict[str, str]:
    """{scenario name: the choice's option} — what the Airflow UI's Required Actions and the Slack
    buttons show, so people words only; `manual` (手動対応) is the last choice. Two scenarios that
    would read the same are refused, naming them (an option must say which scenario it starts)."""
    options = {name: scenario_option_label(runbook, name) for name in runbook.scenarios}
    seen: dict[str, str] = {manual: "the manual choice"}
    for name, option in options.items():
        if option in seen:
            raise ValueError(f"scenarios.{name}: its choice reads like {seen[option]}'s ({option!r}); "
                             "give it another label or remediation")
        seen[option] = f"scenarios.{name}"
    return options


def option_label(option: str, runbook: Runbook | None = None) -> str:
    """What a person reads for a HITL option: 承認/却下 for the approval's fixed English options; a
    scenario option as it is (`scenario_options`), or without its runbook key when it has one (runs
    started before the options were people's words: `deploy: デプロイ後の障害（…）`)."""
    if option in (APPROVE, REJECT):
        return {APPROVE: "承認", REJECT: "却下"}[option]
    if runbook is not None:
        key, sep, _ = option.partition(":")
        if sep and key.strip() in runbook.scenarios:
            return scenario_option_label(runbook, key.strip())
    return option


def scenario_question() -> str:
    """The scenario choice's question."""
    return phrase("decision.scenario_question", plain=True)


def scenario_subject(incident_id: str) -> str:
    return phrase("decision.scenario_subject", plain=True, incident_id=incident_id)


def approval_subject(runbook: Runbook, *, scenario: str, step_id: str, incident_id: str) -> str:
    plan = runbook.scenario(scenario)
    return phrase("decision.approval_subject", plain=True, scenario=plan.label, step=step_name(plan.step(step_id)),
                  incident_id=incident_id)


def approval_question(runbook: Runbook, *, scenario: str, step_id: str, consent: bool = False) -> str:
    """The approval's question: the scenario and the step by their people names (no action id)."""
    plan = runbook.scenario(scenario)
    return phrase("decision.approval_question", plain=True, scenario=plan.label, step=step_name(plan.step(step_id)),
                  consent=consent)


def approval_reasons(runbook: Runbook, *, scenario: str, step_id: str, found: str | None = None) -> list[str]:
    """The lines under the approval's question: why the step is asked (from the run), and its
    settings in people's words (`設定: ワークフロー「rollback.yml」、…`, no YAML keys)."""
    reasons = [str(found)] if found else []
    settings = params_text(runbook.scenario(scenario).step(step_id).params, plain=True)
    if settings:
        reasons.append(settings)
    return reasons


def button_value(*, incident_id: str, dag_id: str, run_id: str, task_id: str, map_index: int,
                 option: str) -> str:
    """The button's value: everything the interactivity endpoint needs to answer that task."""
    return json.dumps({"incident_id": incident_id, "dag_id": dag_id, "run_id": run_id, "task_id": task_id,
                       "map_index": map_index, "option": option}, ensure_ascii=False, separators=(",", ":"))


def _button_text(label: str) -> str:
    return label if len(label) <= _BUTTON_TEXT_MAX else label[: _BUTTON_TEXT_MAX - 1] + "…"


def _context(runbook: Runbook, *, kind: Kind, incident: Mapping[str, Any], subject: str, question: str,
             suggestion: str | None, reasons: Sequence[str], options: Sequence[Option], deadline: dt.datetime,
             minutes: float, on_timeout: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "subject": subject,
        "incident_id": str(incident.get("id", "")),
        "severity": str(incident.get("severity", "")),
        "symptom": " ".join(str(incident.get("symptom", "")).split()),
        "question": question,
        "suggestion": suggestion,
        "reasons": [" ".join(str(r).split()) for r in reasons],
        "options": [o.label for o in options],
        "deadline": format_time_jst(deadline, runbook.tz),
        "deadline_day": deadline.astimezone(runbook.tz).strftime("%m/%d"),
        "minutes": int(minutes) if float(minutes).is_integer() else minutes,
        "on_timeout": on_timeout,
    }


def decision_message(runbook: Runbook, *, kind: Kind, incident: Mapping[str, Any], subject: str, question: str,
                     options: Sequence[Option], values: Sequence[str], deadline: dt.datetime, minutes: float,
                     on_timeout: str, suggestion: str | None = None, reasons: Sequence[str] = (),
                     link: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """The Slack message asking a decision: (text, blocks). `values[i]` is the button value of
    `options[i]` (see `button_value`)."""
    if len(values) != len(options):
        raise ValueError("one button value per option")
    context = _context(runbook, kind=kind, incident=incident, subject=subject, question=question,
                       suggestion=suggestion, reasons=reasons, options=options, deadline=deadline,
                       minutes=minutes, on_timeout=on_timeout)
    text = render("decision.txt.j2", link=Trusted(f"<{link}|Airflow の画面で開く>") if link else None,
                  **context).rstrip("\n")
    buttons = []
    for index, (option, value) in enumerate(zip(options, values, strict=True)):
        button: dict[str, Any] = {"type": "button", "action_id": f"decision:{index}",
                                  "text": {"type": "plain_text", "text": _button_text(option.label)}, "value": value}
        if option.style:
            button["style"] = option.style
        buttons.append(button)
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}},
        {"type": "actions", "block_id": DECISION_BLOCK_ID, "elements": buttons[:25]},
    ]
    return text, blocks


def decision_body(runbook: Runbook, *, kind: Kind, incident: Mapping[str, Any], subject: str, question: str,
                  options: Sequence[Option], deadline: dt.datetime, minutes: float, on_timeout: str,
                  suggestion: str | None = None, reasons: Sequence[str] = ()) -> str:
    """The same question for the Airflow UI's Required Actions (Markdown, outside text escaped)."""
    context = _context(runbook, kind=kind, incident=incident, subject=subject, question=question,
                       suggestion=suggestion, reasons=reasons, options=options, deadline=deadline,
                       minutes=minutes, on_timeout=on_timeout)
    return render("decision.md.j2", **context).rstrip("\n")


def answered_blocks(runbook: Runbook, text: str, *, by: str | None, option: str, at: dt.datetime,
                    note: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """The decision message once answered: the question stays, the buttons become who chose what."""
    when = f"{at.astimezone(runbook.tz).strftime('%m/%d')} {format_time_jst(at, runbook.tz)}"
    label = option_label(option, runbook)
    if by:
        line = phrase("decision.answered", by=by, option=label, at=when)
    else:
        line = phrase("decision.defaulted", option=label, at=when)
    if note:
        line += f"\n{slack_escape(' '.join(str(note).split()))}"
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": line}]},
    ]
    return f"{text}\n{line}", blocks


def acknowledge_blocks(text: str, incident_id: str) -> list[dict[str, Any]]:
    """The declaration's blocks: its text, and the 「対応開始」 button (acknowledges for who presses it)."""
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}},
        {"type": "actions", "block_id": ACK_BLOCK_ID, "elements": [
            {"type": "button", "action_id": "acknowledge", "style": "primary",
             "text": {"type": "plain_text", "text": "対応開始"},
             "value": json.dumps({"incident_id": incident_id}, separators=(",", ":"))},
        ]},
    ]


def reminder_text(runbook: Runbook, *, mention: str | None, subject: str, deadline: dt.datetime,
                  on_timeout: str) -> str:
    """Halfway to the deadline, nobody answered: the on-call engineer is mentioned."""
    day = deadline.astimezone(runbook.tz).strftime("%m/%d")
    return render("decision_reminder.txt.j2", to=Trusted(mention) if mention else None, subject=subject,
                  deadline=f"{day} {format_time_jst(deadline, runbook.tz)}", on_timeout=on_timeout).rstrip("\n")


def timeout_notice_text(runbook: Runbook, *, mention: str | None, subject: str, incident_id: str,
                        option: str, outcome: str) -> str:
    """At the deadline, nobody answered: the dev lead is told what was done."""
    return render("decision_timeout.txt.j2", to=Trusted(mention) if mention else None, subject=subject,
                  incident_id=incident_id, option=option_label(option, runbook), outcome=outcome).rstrip("\n")
