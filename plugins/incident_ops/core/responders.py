"""Who is answering: a Slack or PagerDuty user mapped to a runbook person (pure: no Airflow, no I/O).

A person is an `oncall.roster` entry (id = the entry's id) or a `contacts.people` entry (id = its
key). A Slack user is matched by `slack_user_id`, a PagerDuty user by `pagerduty_user_id`; the roster
is searched first. Whether the person may answer a decision comes from `decisions.responders` (default
`["roster", "dev_lead", "cto"]`): `roster` stands for every roster entry, any other item is a person id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from incident_ops.core.runbook import Person, Runbook

__all__ = ["DEFAULT_RESPONDERS", "Responder", "allowed_ids", "by_pagerduty_user", "by_slack_user", "people"]

DEFAULT_RESPONDERS = ("roster", "dev_lead", "cto")


@dataclass(frozen=True)
class Responder:
    id: str
    name: str
    allowed: bool
    source: str  # roster | contacts
    slack_user_id: str | None = None
    pagerduty_user_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "allowed": self.allowed, "source": self.source}


def responder_setting(runbook: Runbook) -> list[str]:
    decisions = getattr(runbook, "decisions", None)
    value = getattr(decisions, "responders", None)
    return list(DEFAULT_RESPONDERS if value is None else value)


def allowed_ids(runbook: Runbook) -> frozenset[str]:
    """The person ids `decisions.responders` lets answer (`roster` expanded)."""
    ids: set[str] = set()
    for item in responder_setting(runbook):
        if item == "roster":
            ids.update(entry.id for entry in runbook.oncall.roster)
        else:
            ids.add(item)
    return frozenset(ids)


def people(runbook: Runbook) -> list[tuple[str, str, Person]]:
    """Every person as (id, source, person): the roster first, then contacts.people."""
    found: list[tuple[str, str, Person]] = [(entry.id, "roster", entry) for entry in runbook.oncall.roster]
    found += [(person_id, "contacts", person) for person_id, person in runbook.contacts.people.items()]
    return found


def _find(runbook: Runbook, attribute: str, user_id: Any) -> Responder | None:
    if not isinstance(user_id, str) or not user_id.strip():
        return None
    wanted = user_id.strip()
    allowed = allowed_ids(runbook)
    for person_id, source, person in people(runbook):
        if getattr(person, attribute, None) == wanted:
            return Responder(id=person_id, name=person.name, allowed=person_id in allowed, source=source,
                             slack_user_id=person.slack_user_id, pagerduty_user_id=person.pagerduty_user_id)
    return None


def by_slack_user(runbook: Runbook, user_id: Any) -> Responder | None:
    """The runbook person with this Slack user id (`U…`), or None."""
    return _find(runbook, "slack_user_id", user_id)


def by_pagerduty_user(runbook: Runbook, user_id: Any) -> Responder | None:
    """The runbook person with this PagerDuty user id (`P…`), or None."""
    return _find(runbook, "pagerduty_user_id", user_id)
