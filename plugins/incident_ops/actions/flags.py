"""Feature flags in SSM Parameter Store (the external-outage fallback switch)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from incident_ops.actions import require_param, require_remediation
from incident_ops.actions.base import DONE_EARLIER, ActionError, Result

__all__ = ["FLAG_VALUES", "set_feature_flag"]

FLAG_VALUES = ("on", "off")


def _read(ssm: Any, name: str) -> dict[str, Any] | None:
    try:
        return ssm.get_parameter(Name=name)["Parameter"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ParameterNotFound":
            return None
        raise


def _last_description(ssm: Any, name: str, current: dict[str, Any]) -> str | None:
    """The description of the parameter's current version (from its history)."""
    history: list[dict[str, Any]] = []
    for page in ssm.get_paginator("get_parameter_history").paginate(Name=name):
        history.extend(page.get("Parameters", []))
    version = current.get("Version")
    mine = [entry for entry in history if entry.get("Version") == version] or history[-1:]
    return mine[-1].get("Description") if mine else None


def set_feature_flag(ssm: Any, params: dict[str, Any], check_mode: bool = False) -> Result:
    """Set the flag parameter `name` to "on" or "off" (a String parameter), only when it differs.

    params: name (SSM parameter path), value ("on"/"off"), allow_remediation, incident_id (optional).
    Idempotent by state: the parameter already holding the value is left alone. With an incident_id
    the new version's description names the incident, so a retry after a killed try can tell from
    the parameter's history that the change was this incident's.
    """
    action = "set_feature_flag"
    name = str(require_param(params, "name", action))
    value = str(require_param(params, "value", action)).lower()
    if value not in FLAG_VALUES:
        raise ActionError(f"{action}: value must be one of {', '.join(FLAG_VALUES)}, got {params.get('value')!r}")
    require_remediation(params, check_mode, action)

    current = _read(ssm, name)
    before = {"name": name, "value": current["Value"] if current else None,
              "version": current.get("Version") if current else None}
    if current is not None and current.get("Type") != "String":
        raise ActionError(f"{action}: {name} is a {current.get('Type')} parameter; a flag must be a String")
    incident_id = params.get("incident_id")
    record = f"incident-ops: {incident_id}" if incident_id else None
    if current is not None and current["Value"] == value:
        details = {DONE_EARLIER: True} if record and _last_description(ssm, name, current) == record else {}
        return Result(False, before, before, f"{name} is already {value!r}", details, check_mode)
    if check_mode:
        return Result(True, before, {"name": name, "value": value, "version": None},
                      f"would set {name} from {before['value']!r} to {value!r}", {}, check_mode)
    extra = {"Description": record} if record else {}
    answer = ssm.put_parameter(Name=name, Value=value, Type="String", Overwrite=True, **extra)
    after = {"name": name, "value": value, "version": answer.get("Version")}
    return Result(True, before, after, f"set {name} from {before['value']!r} to {value!r}", {}, check_mode)
