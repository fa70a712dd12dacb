"""The feature-flag module against moto SSM."""

from __future__ import annotations

import pytest

from incident_ops.actions.base import DONE_EARLIER, ActionError, GuardRailError
from incident_ops.actions.flags import set_feature_flag

from .inventory import Inventory

FLAG = "/peoplebooster/production/feature-flags/external-fallback"


def value(ssm, name: str = FLAG) -> str:
    return ssm.get_parameter(Name=name)["Parameter"]["Value"]


def test_set_flag_check_apply_again(clients, inventory: Inventory) -> None:
    ssm = clients.ssm
    params = {"name": FLAG, "value": "on", "allow_remediation": True}
    assert value(ssm) == "off"

    check = set_feature_flag(ssm, params, check_mode=True)
    assert check.changed and check.message == f"would set {FLAG} from 'off' to 'on'"
    assert value(ssm) == "off"
    assert ssm.get_parameter(Name=FLAG)["Parameter"]["Version"] == 1

    applied = set_feature_flag(ssm, params, check_mode=False)
    assert applied.changed and applied.before["value"] == "off" and applied.after["value"] == "on"
    parameter = ssm.get_parameter(Name=FLAG)["Parameter"]
    assert (parameter["Value"], parameter["Type"], parameter["Version"]) == ("on", "String", 2)

    again = set_feature_flag(ssm, params, check_mode=False)
    assert not again.changed and "already 'on'" in again.message
    assert ssm.get_parameter(Name=FLAG)["Parameter"]["Version"] == 2

    back = set_feature_flag(ssm, {**params, "value": "off"}, check_mode=False)
    assert back.changed and value(ssm) == "off"


def test_a_retry_knows_the_flag_was_set_by_this_incident(clients, inventory: Inventory) -> None:
    ssm = clients.ssm
    params = {"name": FLAG, "value": "on", "allow_remediation": True, "incident_id": "INC-20261128-0c0c0c"}
    assert set_feature_flag(ssm, params, check_mode=False).changed
    history = ssm.get_parameter_history(Name=FLAG)["Parameters"]
    assert history[-1]["Description"] == "incident-ops: INC-20261128-0c0c0c"

    # The try was killed before it could report; its retry finds the flag set, and by whom.
    retry = set_feature_flag(ssm, params, check_mode=False)
    assert not retry.changed and retry.details[DONE_EARLIER] is True
    # Another incident finding the flag on did not set it.
    other = set_feature_flag(ssm, {**params, "incident_id": "INC-20261128-0d0d0d"}, check_mode=False)
    assert not other.changed and DONE_EARLIER not in other.details
    # Nor does anyone once a person set it by hand after the incident's change.
    ssm.put_parameter(Name=FLAG, Value="on", Type="String", Overwrite=True, Description="by hand")
    assert DONE_EARLIER not in set_feature_flag(ssm, params, check_mode=False).details


def test_set_flag_creates_a_missing_parameter(clients, inventory: Inventory) -> None:
    name = "/peoplebooster/production/feature-flags/new-flag"
    result = set_feature_flag(clients.ssm, {"name": name, "value": "on", "allow_remediation": True}, check_mode=False)
    assert result.changed and result.before["value"] is None
    assert value(clients.ssm, name) == "on"


def test_set_flag_guard_rails(clients, inventory: Inventory) -> None:
    with pytest.raises(GuardRailError, match="remediation is not allowed in staging"):
        set_feature_flag(clients.ssm, {"name": FLAG, "value": "on", "allow_remediation": False,
                                       "environment": "staging"}, check_mode=False)
    with pytest.raises(ActionError, match="value must be one of on, off"):
        set_feature_flag(clients.ssm, {"name": FLAG, "value": "maybe", "allow_remediation": True}, check_mode=False)
    assert value(clients.ssm) == "off"


def test_set_flag_refuses_a_secure_string(clients, inventory: Inventory) -> None:
    clients.ssm.put_parameter(Name="/secret", Value="off", Type="SecureString")
    with pytest.raises(ActionError, match="SecureString"):
        set_feature_flag(clients.ssm, {"name": "/secret", "value": "on", "allow_remediation": True}, check_mode=False)
