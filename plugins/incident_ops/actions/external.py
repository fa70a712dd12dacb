"""Is the external provider down? A read-only check of its public status endpoint."""

from __future__ import annotations

from typing import Any

from incident_ops.actions import require_param
from incident_ops.actions.base import Result
from incident_ops.clients.http import HttpClient, HttpError

__all__ = ["external_status_check", "parse_status"]

# Statuspage indicators, and the words other status endpoints use, mapped onto them.
_INDICATORS = ("none", "minor", "major", "critical")
_WORDS = {
    "none": "none", "ok": "none", "up": "none", "healthy": "none", "operational": "none", "green": "none",
    "pass": "none", "all systems operational": "none",
    "minor": "minor", "degraded": "minor", "degraded_performance": "minor", "warn": "minor", "warning": "minor",
    "maintenance": "minor", "under_maintenance": "minor", "yellow": "minor",
    "major": "major", "partial_outage": "major", "unhealthy": "major", "fail": "major", "error": "major",
    "down": "major", "outage": "major", "red": "major",
    "critical": "critical", "major_outage": "critical",
}


def parse_status(body: Any) -> dict[str, Any]:
    """{"indicator", "description", "operational"} from a Statuspage answer or any JSON with a status."""
    indicator, description = "unknown", None
    status = body.get("status") if isinstance(body, dict) else None
    if isinstance(status, dict):
        raw = str(status.get("indicator") or status.get("status") or "").lower()
        description = status.get("description")
    elif status is not None:
        raw = str(status).lower()
    else:
        raw = ""
    if raw in _INDICATORS:
        indicator = raw
    elif raw in _WORDS:
        indicator = _WORDS[raw]
    description = description or (str(status) if status is not None and not isinstance(status, dict) else None)
    return {"indicator": indicator, "description": description, "operational": indicator == "none"}


def external_status_check(http: HttpClient | None, params: dict[str, Any], check_mode: bool = False) -> Result:
    """GET the provider's status endpoint and report whether it is operational.

    params: url. Always changed=False and ok=True — the provider being down (or its status page
    unreachable) is the finding, not a failure of the step. Read-only, so it runs in check mode too.
    """
    url = str(require_param(params, "url", "external_status_check"))
    client = http or HttpClient("")
    try:
        body = client.get_json(url)
    except (HttpError, ValueError) as exc:
        details = {"indicator": "unreachable", "description": str(exc)[:300], "operational": False, "url": url}
        return Result(False, None, details, f"status endpoint {url} did not answer usefully: {exc}", details,
                      check_mode)
    details = {**parse_status(body), "url": url}
    page = body.get("page") if isinstance(body, dict) else None
    if isinstance(page, dict):
        details["page"] = {k: page.get(k) for k in ("name", "url", "updated_at") if k in page}
    state = "operational" if details["operational"] else f"NOT operational ({details['indicator']})"
    message = f"{url}: provider is {state}" + (f": {details['description']}" if details["description"] else "")
    return Result(False, details, details, message, details, check_mode)
