"""What every remediation module returns, and the guard-rail error it raises.

A module is `(clients, params, check_mode) -> Result`: it reads the current state, computes the
difference, writes only when needed and never in check mode, and reports before/after.

`changed` says what THIS call changed. A retry of a step whose earlier attempt made the change and
died before anyone recorded it (a worker killed mid-task) changes nothing, yet the change is the
incident's: a module that finds its own per-incident record of the change (a tag, a workflow run, a
resource named after the incident) says so with `details[DONE_EARLIER] = True`, so that the incident's
record can still say what the step did.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["DESTRUCTIVE_ACTIONS", "DONE_EARLIER", "ActionError", "GuardRailError", "Result"]

# Steps that change data placement or cut traffic: they need `confirm` (a person's approval).
DESTRUCTIVE_ACTIONS = frozenset({"rds_failover", "rds_restore_snapshot", "isolate_service"})

# Result.details key: nothing changed now only because an earlier attempt for the same incident made
# this change (found by the module's per-incident record); the change is in place.
DONE_EARLIER = "done_earlier"


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
