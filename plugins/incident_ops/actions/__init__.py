"""The remediation collection: Ansible-style modules, one function per operation.

Every module is `(client(s), params, check_mode) -> Result` (see `base`). The uniform entry point,
the name -> function table and the parameter builder live in `registry`. The guard-rail helpers
below are shared by the modules (they raise `GuardRailError` before anything is read or written).

The registry's public names are re-exported lazily (`from incident_ops.actions import run_action`)
so that importing one module does not import every cloud client library.
"""

from __future__ import annotations

import re
from typing import Any

from incident_ops.actions.base import ActionError, GuardRailError, Result

__all__ = [
    "ACTION_FUNCTIONS",
    "ActionError",
    "Clients",
    "GuardRailError",
    "Result",
    "aws_client_config",
    "incident_token",
    "require_confirm",
    "require_param",
    "require_remediation",
    "run_action",
    "step_params",
]

_REGISTRY_NAMES = frozenset({"ACTION_FUNCTIONS", "Clients", "aws_client_config", "run_action", "step_params"})

# Tag values on ECS/RDS/ELB accept letters, digits, spaces and + - = . _ : / @ (AWS tagging rules).
_INCIDENT_ID = re.compile(r"^[A-Za-z0-9+\-=._:/@]{1,64}$")


def require_param(params: dict[str, Any], key: str, action: str) -> Any:
    """The parameter's value, or ActionError naming the action and the missing key."""
    value = params.get(key)
    if value is None or value == "":
        raise ActionError(f"{action}: missing required param {key!r}")
    return value


def require_remediation(params: dict[str, Any], check_mode: bool, action: str) -> None:
    """Refuse a real run where the environment's guard rails do not allow remediation."""
    if check_mode:
        return
    if params.get("allow_remediation") is not True:
        env = params.get("environment") or "this environment"
        raise GuardRailError(
            f"{action}: remediation is not allowed in {env} (guard_rails.allow_remediation is not true); "
            "only check mode may run here. Nothing was changed."
        )


def require_confirm(params: dict[str, Any], check_mode: bool, action: str) -> None:
    """Destructive steps run for real only with an explicit `confirm=True` (a human approved them)."""
    if check_mode:
        return
    if params.get("confirm") is not True:
        raise GuardRailError(
            f"{action} is destructive and needs confirm=True (an approval) to run outside check mode. "
            "Nothing was changed."
        )


def incident_token(params: dict[str, Any], action: str) -> str:
    """The incident id: the idempotency key. It is stored in AWS tags, so it must be tag-safe."""
    incident_id = str(require_param(params, "incident_id", action))
    if not _INCIDENT_ID.match(incident_id):
        raise ActionError(
            f"{action}: incident_id {incident_id!r} must be 1-64 characters of letters, digits and + - = . _ : / @"
        )
    return incident_id


def __getattr__(name: str) -> Any:
    if name in _REGISTRY_NAMES:
        from incident_ops.actions import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
