"""AWS Support: open a case for the incident (runbook 連絡先: AWS サポート).

The AWS Support API is served from us-east-1 only (`SUPPORT_REGION`); it has no resource-level
permissions, so the IAM policy grants `support:CreateCase` and `support:DescribeCases` on `*`.
"""

from __future__ import annotations

from typing import Any

from incident_ops.actions import incident_token, require_remediation
from incident_ops.actions.base import DONE_EARLIER, ActionError, GuardRailError, Result

__all__ = ["DEFAULT_SEVERITY_CODES", "SEVERITY_CODES", "SUPPORT_REGION", "aws_support_case", "find_case"]

SUPPORT_REGION = "us-east-1"
# AWS Support's severity codes, lowest first (critical needs an Enterprise support plan).
SEVERITY_CODES = ("low", "normal", "high", "urgent", "critical")
DEFAULT_SEVERITY_CODES = {"P1": "urgent", "P2": "high", "P3": "normal", "P4": "low"}
ISSUE_TYPES = ("technical", "customer-service")
LANGUAGES = ("en", "ja", "zh", "ko")


def _prefix(incident_id: str) -> str:
    return f"[{incident_id}]"


def find_case(support: Any, incident_id: str, after: str | None = None) -> dict[str, Any] | None:
    """The case whose subject starts with `[<incident_id>]` (resolved ones included), or None."""
    kwargs: dict[str, Any] = {"includeResolvedCases": True, "includeCommunications": False}
    if after:
        kwargs["afterTime"] = after
    seen: set[str] = set()
    token = None
    while True:
        page = support.describe_cases(**kwargs, **({"nextToken": token} if token else {}))
        for case in page.get("cases", []):
            if str(case.get("subject") or "").startswith(_prefix(incident_id)):
                return case
        token = page.get("nextToken")
        if not token or token in seen:
            return None
        seen.add(token)


def aws_support_case(support: Any, params: dict[str, Any], check_mode: bool = False) -> Result:
    """Open an AWS Support case for the incident, once.

    params: incident_id, severity (P1-P4: the severity code comes from `severity_codes`, default
    P1 urgent, P2 high, P3 normal, P4 low), environment, allowed_environments (default
    [production]), allow_remediation, subject, body, language (default ja), issue_type (default
    technical), service_code, category_code (optional: `aws support describe-services`), since
    (ISO time: look for the incident's case only after it).

    Idempotent per incident: the subject starts with `[<incident id>]` and an existing case with
    that subject (resolved or not) is reported, not opened again. Guard rails: only in the allowed
    environments (refused even in check mode, so a drill shows it) and where remediation is allowed.
    """
    action = "aws_support_case"
    incident_id = incident_token(params, action)
    environment = str(params.get("environment") or "")
    allowed = list(params.get("allowed_environments") or ["production"])
    if environment not in allowed:
        raise GuardRailError(f"{action}: cases are opened only for {', '.join(allowed)}, not {environment or '?'}. "
                             "Nothing was done.")
    severity = str(params.get("severity") or "")
    codes = {**DEFAULT_SEVERITY_CODES, **(params.get("severity_codes") or {})}
    if severity not in codes:
        raise ActionError(f"{action}: missing or unknown incident severity {severity!r}; known: {', '.join(codes)}")
    severity_code = str(codes[severity])
    if severity_code not in SEVERITY_CODES:
        raise ActionError(f"{action}: severity code {severity_code!r} for {severity} is not one of "
                          f"{', '.join(SEVERITY_CODES)}")
    language = str(params.get("language") or "ja")
    issue_type = str(params.get("issue_type") or "technical")
    if language not in LANGUAGES or issue_type not in ISSUE_TYPES:
        raise ActionError(f"{action}: language must be one of {', '.join(LANGUAGES)} and issue_type one of "
                          f"{', '.join(ISSUE_TYPES)}")
    require_remediation(params, check_mode, action)

    subject = " ".join(str(params.get("subject") or f"PeopleBooster {environment} の障害について").split())
    if not subject.startswith(_prefix(incident_id)):
        subject = f"{_prefix(incident_id)} {subject}"
    body = str(params.get("body") or f"インシデント {incident_id}（{severity}）について調査をお願いします。")

    existing = find_case(support, incident_id, params.get("since"))
    if existing is not None:
        state = {"case_id": existing.get("caseId"), "display_id": existing.get("displayId"),
                 "subject": existing.get("subject"), "status": existing.get("status")}
        return Result(False, state, state, f"case {state['case_id']} for {incident_id} is already open "
                      f"({state['status']})", {DONE_EARLIER: True, "case_id": state["case_id"]}, check_mode)
    after = {"case_id": None, "subject": subject, "severity_code": severity_code, "language": language}
    if check_mode:
        return Result(True, None, after, f"would open an AWS Support case ({severity_code}): {subject}",
                      {"severity_code": severity_code}, check_mode)
    request: dict[str, Any] = {"subject": subject[:255], "communicationBody": body[:8000], "severityCode": severity_code,
                               "issueType": issue_type, "language": language}
    for key, name in (("service_code", "serviceCode"), ("category_code", "categoryCode")):
        if params.get(key):
            request[name] = str(params[key])
    answer = support.create_case(**request)
    after["case_id"] = answer.get("caseId")
    return Result(True, None, after, f"opened AWS Support case {after['case_id']} ({severity_code}): {subject}",
                  {"case_id": after["case_id"], "severity_code": severity_code}, check_mode)
