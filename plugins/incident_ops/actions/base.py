"""What every remediation module returns, and the guard-rail error it raises.

A module is `(clients, params, check_mode) -> Result`: it reads the current state, computes the
difference, writes only when needed and never in check mode, and reports before/after.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["ActionError", "GuardRailError", "Result"]


class ActionError(RuntimeError):
    """The action could not do its work (the service refused, timed out, or the state is unexpected)."""


class GuardRailError(ActionError):
    """The request is outside what the runbook allows (environment, cap, confirmation); nothing was done."""


@dataclass(frozen=True)
class Result:
    changed: bool
    before: Any
    after: Any
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    check_mode: bool = False
    ok: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for XCom, the CLI and the ledger)."""
        return asdict(self)
