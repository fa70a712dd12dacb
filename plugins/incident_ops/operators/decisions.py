"""People's decisions in the Airflow UI (human-in-the-loop): the scenario, and approvals of risky steps."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLBranchOperator

from incident_ops.params import rendered_flag

__all__ = ["ScenarioChoiceOperator", "StepApprovalOperator"]


def _record(incident_id: str, kind: str, message: str, actor: str | None, data: dict[str, Any], key: str) -> None:
    from incident_ops.core.ledger import Ledger

    Ledger().record_event(incident_id, at=dt.datetime.now(dt.UTC), kind=kind, actor=actor or "airflow-ui",
                          message=message, data=data, idempotency_key=key)


def _responder(event: dict[str, Any]) -> str | None:
    user = event.get("responded_by_user") or {}
    if isinstance(user, dict):
        return user.get("name") or user.get("id")
    return str(user) if user else None


class ScenarioChoiceOperator(HITLBranchOperator):
    """A person picks or confirms the recovery scenario; the suggestion is the timeout default.

    `options_mapping` maps each option to the task id of the scenario's first task. The default
    (taken when nobody answers within `response_timeout`) is the evidence's suggestion, read from
    XCom at run time; without a suggestion it is the manual option.
    """

    template_fields: Sequence[str] = ("subject", "body", "incident_id")

    def __init__(self, *, incident_id: str, suggestion_task_id: str, option_for_scenario: dict[str, str],
                 manual_option: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.incident_id = incident_id
        self.suggestion_task_id = suggestion_task_id
        self.option_for_scenario = option_for_scenario
        self.manual_option = manual_option

    def execute(self, context: Any) -> Any:
        evidence = context["ti"].xcom_pull(task_ids=self.suggestion_task_id) or {}
        suggested = evidence.get("suggested")
        self.defaults = [self.option_for_scenario.get(suggested, self.manual_option)]
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        chosen = (event.get("chosen_options") or ["?"])[0]
        who = _responder(event)
        _record(self.incident_id, "scenario_chosen",
                f"シナリオ: {chosen}" + (f"（{who}）" if who else "（回答なし: 提案どおり）"),
                who, {"chosen": chosen, "by": who, "timed_out": who is None}, "scenario_chosen")
        return super().execute_complete(context, event)


class StepApprovalOperator(ApprovalOperator):
    """Approval of a risky step (failover, snapshot restore, isolation). In check mode nothing will
    change, so it approves itself; a rejection (or the timeout default) skips the step."""

    template_fields: Sequence[str] = ("subject", "body", "incident_id", "check_mode")

    def __init__(self, *, incident_id: str, step_id: str, check_mode: bool | str = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.incident_id = incident_id
        self.step_id = step_id
        self.check_mode = check_mode

    def execute(self, context: Any) -> Any:
        if rendered_flag(self.check_mode):
            self.log.info("check mode: no approval needed, nothing will change")
            return {"chosen_options": [self.APPROVE], "approved_by": "check-mode", "check_mode": True}
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        chosen = (event.get("chosen_options") or [self.REJECT])[0]
        who = _responder(event)
        word = "承認" if chosen == self.APPROVE else "却下"
        _record(self.incident_id, "approval",
                f"手順 {self.step_id} を{word}" + (f"（{who}）" if who else "（回答なし: 既定値）"),
                who, {"step": self.step_id, "chosen": chosen, "by": who, "timed_out": who is None},
                f"approval:{self.step_id}")
        result = super().execute_complete(context, event)
        return {**dict(result), "approved_by": who or "timeout-default"} if chosen == self.APPROVE else result
