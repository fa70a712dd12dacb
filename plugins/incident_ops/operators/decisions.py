"""People's decisions (human-in-the-loop): the scenario, the approval of risky steps, and the
consent a scenario that started unattended needs before each step that is not `auto`.

Every decision is asked in Slack as well as in the Airflow UI's Required Actions: the operators'
notifier (`DecisionAnnouncement`, the HITL operators' own `notifiers` hook) posts the question with a
button per option when the task starts waiting; a click comes back through
`/incidents/webhooks/slack`, which answers the task exactly as the UI does. When the task resumes the
message is updated in place, and a timeout's default is reported to the dev lead
(`incident_ops.flows.decisions`). What a timeout does is runbook policy (`incident_ops.core.decisions`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLBranchOperator, HITLOperator
from airflow.sdk import BaseNotifier

from incident_ops.params import rendered_flag

__all__ = ["DecisionAnnouncement", "ScenarioChoiceOperator", "StepApprovalOperator"]

UNATTENDED_KEY = "unattended"


def _record(incident_id: str, kind: str, message: str, actor: str | None, data: dict[str, Any], key: str) -> None:
    from incident_ops.core.ledger import Ledger

    Ledger().record_event(incident_id, at=dt.datetime.now(dt.UTC), kind=kind, actor=actor or "airflow-ui",
                          message=message, data=data, idempotency_key=key)


def _responder(event: dict[str, Any]) -> str | None:
    user = event.get("responded_by_user") or {}
    if isinstance(user, dict):
        return user.get("name") or user.get("id")
    return str(user) if user else None


def _incident(incident_id: str) -> dict[str, Any]:
    from incident_ops.core.ledger import Ledger

    return Ledger().get(incident_id)


def _runbook() -> Any:
    from incident_ops.flows.incident import load

    return load()


def _link(context: Any) -> str | None:
    """The task's Required Actions page, when the API server's base URL is configured."""
    try:
        return HITLOperator.generate_link_to_ui_from_context(context=context)
    except (ValueError, KeyError):
        return None


class DecisionAnnouncement(BaseNotifier):
    """The HITL notifier: the waiting decision goes to Slack (question, options as buttons, deadline
    in JST, what a timeout does, the Airflow UI link). Never raises: the UI still asks."""

    template_fields: Sequence[str] = ()

    def notify(self, context: Any) -> None:
        from incident_ops.flows.decisions import announce

        task = context["task"]
        ti = context["ti"]
        request = getattr(task, "decision_request", None)
        if not request:
            return
        deadline = dt.datetime.now(dt.UTC) + (task.response_timeout or dt.timedelta(0))
        request = {**request, "dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id,
                   "map_index": ti.map_index, "try_number": ti.try_number, "deadline": deadline.isoformat(),
                   "minutes": (task.response_timeout or dt.timedelta(0)).total_seconds() / 60,
                   "link": _link(context)}
        try:
            announce(request)
        except Exception:  # noqa: BLE001 - the decision is asked in the UI whatever Slack does
            self.log.exception("announcing decision %s failed", ti.task_id)


class _Announced:
    """What the decision operators share: the request the notifier posts, and the conclusion."""

    incident_id: str
    decision_request: dict[str, Any] | None = None

    def _conclude(self, task_id: str, *, option: str, by: str | None, outcome: str) -> None:
        from incident_ops.flows.decisions import conclude

        try:
            conclude(self.incident_id, task_id, option=option, by=by, outcome=outcome)
        except Exception:  # noqa: BLE001 - the decision is made; Slack's copy of it is best effort
            self.log.exception("concluding decision %s in Slack failed", task_id)  # type: ignore[attr-defined]


class ScenarioChoiceOperator(_Announced, HITLBranchOperator):
    """A person picks or confirms the recovery scenario. On timeout the runbook decides
    (`core.decisions.choice_on_timeout`): `suggested` starts the evidence's suggestion *unattended*
    (only its `auto` steps run without a person; the others ask each), `manual` starts none.

    `options_mapping` maps each option to the task id of the scenario's first task.
    """

    template_fields: Sequence[str] = ("subject", "body", "incident_id")

    def __init__(self, *, incident_id: str, suggestion_task_id: str, option_for_scenario: dict[str, str],
                 manual_option: str, **kwargs: Any) -> None:
        kwargs.setdefault("notifiers", [DecisionAnnouncement()])
        super().__init__(**kwargs)
        self.incident_id = incident_id
        self.suggestion_task_id = suggestion_task_id
        self.option_for_scenario = option_for_scenario
        self.manual_option = manual_option

    def _scenario_of(self, option: str) -> str | None:
        return next((name for name, value in self.option_for_scenario.items() if value == option), None)

    def _label(self, runbook: Any, option: str) -> str:
        """What the button says: a scenario's label and remediation (no runbook key), else the option."""
        from incident_ops.core import decisions

        scenario = self._scenario_of(option)
        return decisions.scenario_option_label(runbook, scenario) if scenario else option

    def execute(self, context: Any) -> Any:
        from incident_ops.core import decisions

        runbook = _runbook()
        incident = _incident(self.incident_id)
        evidence = context["ti"].xcom_pull(task_ids=self.suggestion_task_id) or {}
        suggested = evidence.get("suggested") if evidence.get("suggested") in self.option_for_scenario else None
        policy = decisions.choice_on_timeout(runbook, incident["severity"], suggested)
        self.defaults = [self.option_for_scenario[suggested] if policy == "suggested" else self.manual_option]
        outcome = decisions.outcome_on_timeout(runbook, kind="scenario", severity=incident["severity"],
                                               suggested=suggested)
        # The value stays the DAG's option (the buttons answer with it); the label is people's words.
        options = [{"value": option, "label": self._label(runbook, option),
                    "style": "primary" if suggested and option == self.option_for_scenario[suggested] else None}
                   for option in self.options]
        suggestion = runbook.scenarios[suggested].label if suggested else None
        question = decisions.scenario_question()
        minutes = (self.response_timeout or dt.timedelta(0)).total_seconds() / 60
        deadline = dt.datetime.now(dt.UTC) + (self.response_timeout or dt.timedelta(0))
        self.subject = decisions.scenario_subject(incident["id"])
        self.body = decisions.decision_body(
            runbook, kind="scenario", incident=incident, subject=self.subject, question=question,
            options=[decisions.Option(o["value"], o["label"]) for o in options], deadline=deadline, minutes=minutes,
            on_timeout=outcome, suggestion=suggestion, reasons=evidence.get("reasons") or [])
        self.decision_request = {"incident_id": self.incident_id, "kind": "scenario", "subject": self.subject,
                                 "question": question, "options": options, "on_timeout": outcome,
                                 "suggestion": suggestion, "reasons": evidence.get("reasons") or [],
                                 "default": self.defaults[0]}
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        from incident_ops.core import decisions
        from incident_ops.core.phrases import phrase

        chosen = (event.get("chosen_options") or ["?"])[0]
        who = _responder(event)
        unattended = who is None and chosen != self.manual_option
        runbook = _runbook()
        label = self._label(runbook, chosen)
        scenario = self._scenario_of(chosen)  # None: 手動対応
        _record(self.incident_id, "scenario_chosen", phrase("event.scenario_chosen", plain=True, scenario=label, by=who),
                who, {"chosen": chosen, "scenario": scenario, "by": who, "timed_out": who is None,
                      "unattended": unattended},
                "scenario_chosen")
        # The steps read this: a scenario nobody chose asks before each step that is not `auto`.
        context["ti"].xcom_push(key=UNATTENDED_KEY, value=unattended)
        if who is not None:
            outcome = phrase("decision.chosen_scenario", plain=True, scenario=label)
        else:
            incident = _incident(self.incident_id)
            outcome = decisions.outcome_on_timeout(runbook, kind="scenario", severity=incident["severity"],
                                                   suggested=scenario, done=True)
        self._conclude(context["ti"].task_id, option=chosen, by=who, outcome=outcome)
        return super().execute_complete(context, event)


class StepApprovalOperator(_Announced, ApprovalOperator):
    """Approval of a step. `consent_only`: the step needs no approval of its own, only a person's
    consent, which choosing its scenario gave; asked only when the scenario started unattended
    (nobody chose it). In check mode nothing will change, so it approves itself. A rejection (or a
    timeout's `reject`) skips the step; the timeout's default is the runbook's (`on_timeout`)."""

    template_fields: Sequence[str] = ("subject", "body", "incident_id", "check_mode")

    def __init__(self, *, incident_id: str, scenario: str, step_id: str, check_mode: bool | str = False,
                 consent_only: bool = False, choice_task_id: str = "recover.choose_scenario",
                 reason: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("notifiers", [DecisionAnnouncement()])
        kwargs.setdefault("subject", f"承認: {scenario} / {step_id}")
        super().__init__(**kwargs)
        self.incident_id = incident_id
        self.scenario = scenario
        self.step_id = step_id
        self.check_mode = check_mode
        self.consent_only = consent_only
        self.choice_task_id = choice_task_id
        self.reason_task_id = reason

    def _chosen_by(self, context: Any) -> str | None:
        """Who chose the scenario (None: nobody, it started on the choice's timeout)."""
        unattended = context["ti"].xcom_pull(task_ids=self.choice_task_id, key=UNATTENDED_KEY)
        if unattended:
            return None
        from incident_ops.core.ledger import Ledger

        chosen = [e for e in Ledger().events(self.incident_id) if e["kind"] == "scenario_chosen"]
        if not chosen:
            return "起動時の指定"
        data = chosen[-1].get("data") or {}
        if data.get("unattended") or data.get("timed_out"):
            return None  # the XCom was lost: the ledger still says nobody chose
        actor = chosen[-1].get("actor")
        # A scenario named at the start (the form, the REST conf) is recorded by incident_ops.
        return "起動時の指定" if actor in (None, "", "incident_ops") else actor

    def execute(self, context: Any) -> Any:
        from incident_ops.core import decisions
        from incident_ops.core.phrases import phrase, step_name

        if rendered_flag(self.check_mode):
            self.log.info("check mode: no approval needed, nothing will change")
            return {"chosen_options": [self.APPROVE], "approved_by": "check-mode", "check_mode": True}
        runbook = _runbook()
        step = runbook.scenario(self.scenario).step(self.step_id)
        if self.consent_only:
            chosen_by = self._chosen_by(context)
            if chosen_by is not None:
                _record(self.incident_id, "approval",
                        phrase("event.step_consented", plain=True, step=step_name(step), by=chosen_by), chosen_by,
                        {"step": self.step_id, "scenario": self.scenario, "chosen": self.APPROVE, "by": chosen_by,
                         "consent": True},
                        f"approval:{self.step_id}")
                return {"chosen_options": [self.APPROVE], "approved_by": chosen_by, "consent": True}
        incident = _incident(self.incident_id)
        policy = decisions.approval_on_timeout(runbook, self.scenario, self.step_id, incident["severity"])
        self.defaults = [self.APPROVE if policy == "approve" else self.REJECT]
        outcome = decisions.outcome_on_timeout(runbook, kind="approval", severity=incident["severity"],
                                               scenario=self.scenario, step_id=self.step_id)
        question = decisions.approval_question(runbook, scenario=self.scenario, step_id=self.step_id,
                                               consent=self.consent_only)
        found = (context["ti"].xcom_pull(task_ids=self.reason_task_id) or {}) if self.reason_task_id else {}
        reasons = decisions.approval_reasons(runbook, scenario=self.scenario, step_id=self.step_id,
                                             found=found.get("reason"))
        options = [{"value": self.APPROVE, "label": decisions.option_label(self.APPROVE), "style": "primary"},
                   {"value": self.REJECT, "label": decisions.option_label(self.REJECT), "style": "danger"}]
        minutes = (self.response_timeout or dt.timedelta(0)).total_seconds() / 60
        deadline = dt.datetime.now(dt.UTC) + (self.response_timeout or dt.timedelta(0))
        self.subject = decisions.approval_subject(runbook, scenario=self.scenario, step_id=self.step_id,
                                                  incident_id=incident["id"])
        self.body = decisions.decision_body(
            runbook, kind="consent" if self.consent_only else "approval", incident=incident, subject=self.subject,
            question=question, options=[decisions.Option(o["value"], o["label"]) for o in options],
            deadline=deadline, minutes=minutes, on_timeout=outcome, reasons=reasons)
        self.decision_request = {"incident_id": self.incident_id, "kind": "consent" if self.consent_only else "approval",
                                 "subject": self.subject, "question": question, "options": options,
                                 "on_timeout": outcome, "suggestion": None, "reasons": reasons,
                                 "default": self.defaults[0]}
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        from incident_ops.core import decisions
        from incident_ops.core.phrases import phrase, step_name

        chosen = (event.get("chosen_options") or [self.REJECT])[0]
        who = _responder(event)
        runbook = _runbook()
        title = step_name(runbook.scenario(self.scenario).step(self.step_id))
        word = decisions.option_label(self.APPROVE if chosen == self.APPROVE else self.REJECT)
        _record(self.incident_id, "approval", phrase("event.step_answered", plain=True, step=title, word=word, by=who),
                who, {"step": self.step_id, "scenario": self.scenario, "chosen": chosen, "by": who,
                     "timed_out": who is None},
                f"approval:{self.step_id}")
        if who is not None:
            outcome = phrase("decision.step_approved" if chosen == self.APPROVE else "decision.step_rejected",
                             plain=True, step=title)
        else:
            incident = _incident(self.incident_id)
            outcome = decisions.outcome_on_timeout(runbook, kind="approval", severity=incident["severity"],
                                                   scenario=self.scenario, step_id=self.step_id, done=True)
        self._conclude(context["ti"].task_id, option=chosen, by=who, outcome=outcome)
        result = super().execute_complete(context, event)
        return {**dict(result), "approved_by": who or "timeout-default"} if chosen == self.APPROVE else result
