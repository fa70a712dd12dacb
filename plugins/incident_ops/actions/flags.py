"""Feature flags in SSM Parameter Store (the external-outage fallback switch)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from incident_ops.actions import require_param, require_remediation
from incident_ops.actions.base import ActionError, Result

__all__ = ["FLAG_VALUES", "set_feature_flag"]

FLAG_VALUES = ("on", "off")


def _read(ssm: Any, name: str) -> dict[str, Any] | None:
    try:
        return ssm.get_parameter(Name=name)["Parameter"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ParameterNotFound":
            return None
        raise


def set_feature_flag(ssm: Any, params: dict[str, Any], check_mode: bool = False) -> Result:
    """Set the flag parameter `name` to "on" or "off" (a String parameter), only when it differs.

    params: name (SSM parameter path), value ("on"/"off"), allow_remediation.
    Idempotent by state: the parameter already holding the value is left alone.
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
    if current is not None and current["Value"] == value:
        return Result(False, before, before, f"{name} is already {value!r}", {}, check_mode)
    if check_mode:
        return Result(True, before, {"name": name, "value": value, "version": None},
                      f"would set {name} from {before['value']!r} to {value!r}", {}, check_mode)
    answer = ssm.put_parameter(Name=name, Value=value, Type="String", Overwrite=True)
    after = {"name": name, "value": value, "version": answer.get("Version")}
    return Result(True, before, after, f"set {name} from {before['value']!r} to {value!r}", {}, check_mode)
