"""Fixtures for the action tests: moto (in-process) seeded with the production inventory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from incident_ops.actions.registry import Clients
from incident_ops.core.runbook import Runbook

from .inventory import Inventory, seed_environment

REGION = "ap-northeast-1"
INCIDENT = "INC-20260105-001"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",  # faster: the tests need no AMIs
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield


class ReusingSession(boto3.session.Session):
    """A boto3 session that makes each client once (per service, region, endpoint and configuration).

    Making a client costs tens of milliseconds (an EC2 client builds ~700 methods) and each test needs
    a dozen. moto intercepts every client made after it is imported, whichever `mock_aws` is active,
    and the state lives in moto's backends (reset per test), so a client can serve every test. A test
    that registers a handler on a client's events unregisters it (tests/actions/test_rds.py)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._clients: dict[str, Any] = {}

    def client(self, service_name: str, *args: Any, config: Any = None, **kwargs: Any) -> Any:
        options = sorted(config._user_provided_options.items()) if config is not None else None
        key = repr((service_name, args, sorted(kwargs.items()), options))
        if key not in self._clients:
            self._clients[key] = super().client(service_name, *args, config=config, **kwargs)
        return self._clients[key]


@pytest.fixture(scope="session")
def boto_session() -> boto3.session.Session:
    """One session for all tests: botocore then loads each service model once, and makes each client once."""
    return ReusingSession(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)


@pytest.fixture
def inventory(aws: None, runbook: Runbook, boto_session: boto3.session.Session) -> Inventory:
    return seed_environment(runbook, "production", session=boto_session)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def clients(inventory: Inventory, boto_session: boto3.session.Session, sleeps: list[float]) -> Clients:
    made = Clients.from_session(boto_session, region_name=REGION)
    made.sleep = sleeps.append
    return made


@pytest.fixture
def ecs(clients: Clients):
    return clients.ecs


@pytest.fixture
def rds(clients: Clients):
    return clients.rds

