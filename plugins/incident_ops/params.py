"""The incident trigger form: Airflow Params built from the runbook.

The same JSON schema validates the UI form, `POST /api/v2/dags/incident_response/dagRuns` and the
webhook intake, so invalid input is refused before anything runs.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param

from incident_ops.core.runbook import SCENARIOS, SEVERITIES, Runbook

__all__ = ["AUTO", "incident_params", "rendered_flag"]

# "Decide from the evidence" for the severity and scenario fields.
AUTO = "auto"
INCIDENT_ID_PATTERN = r"^INC-\d{8}-[0-9a-f]{6,}$"


def incident_params(runbook: Runbook) -> dict[str, Param]:
    symptom_labels = [symptom.label for symptom in runbook.triage.symptoms]
    services = sorted({name for env in runbook.environments.values() for name in env.services})
    production = runbook.environments.get("production") or next(iter(runbook.environments.values()))
    severity_display = {AUTO: "自動判定 / from the symptom"} | {
        level: f"{level} {runbook.severities[level].name}: {runbook.severities[level].definition}" for level in SEVERITIES
    }
    scenario_display = {AUTO: "証拠から提案 / suggested from evidence"} | {
        name: f"{name}: {runbook.scenarios[name].label}（{runbook.scenarios[name].remediation}）" for name in SCENARIOS
    }
    params: dict[str, Any] = {
        "symptom": Param(
            symptom_labels[0],
            type="string",
            minLength=1,
            maxLength=500,
            title="症状 / Symptom",
            description="What users see. Pick from the runbook's catalogue or write free text (Japanese or English).",
            examples=symptom_labels,
            section="Incident",
        ),
        "severity": Param(
            AUTO,
            type="string",
            enum=[AUTO, *SEVERITIES],
            values_display=severity_display,
            title="障害レベル / Severity",
            description="Leave on auto to classify from the symptom; a severity set here wins.",
            section="Incident",
        ),
        "service": Param(
            production.default_service,
            type="string",
            enum=services,
            title="影響サービス / Affected service",
            section="Incident",
        ),
        "environment": Param(
            "production" if "production" in runbook.environments else next(iter(runbook.environments)),
            type="string",
            enum=list(runbook.environments),
            title="環境 / Environment",
            section="Incident",
        ),
        "impact": Param(
            "",
            type="string",
            maxLength=500,
            title="影響範囲 / Impact",
            description="Who or what is affected. Empty: taken from the symptom catalogue.",
            section="Incident",
        ),
        "reporter": Param(
            "airflow-ui",
            type="string",
            minLength=1,
            maxLength=200,
            title="報告者 / Reporter",
            description="Who reported it (a person, or the monitoring source).",
            section="Incident",
        ),
        "scenario": Param(
            AUTO,
            type="string",
            enum=[AUTO, *SCENARIOS],
            values_display=scenario_display,
            title="シナリオ / Recovery scenario",
            description="Leave on auto: the evidence suggests one and a person confirms it.",
            section="Response",
        ),
        "check_mode": Param(
            False,
            type="boolean",
            title="Check mode (dry run)",
            description="Go through every step and report what would change, without changing anything.",
            section="Response",
        ),
        "alarm": Param(
            {},
            type="object",
            title="Alarm facts",
            description="Set by the webhook intake: the CloudWatch alarm (AlarmName, NewStateValue, ...).",
            section="Intake",
        ),
        "incident_id": Param(
            None,
            type=["null", "string"],
            pattern=INCIDENT_ID_PATTERN,
            title="Incident id",
            description="Set by the webhook intake when it opened the ledger record; empty for a new incident.",
            section="Intake",
        ),
    }
    return params


def rendered_flag(value: bool | str) -> bool:
    """A boolean Param as an operator's templated field sees it (`True` or the rendered "True")."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)
