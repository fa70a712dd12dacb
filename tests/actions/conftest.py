"""Fixtures for the action tests: moto (in-process) seeded with the production inventory."""

from __future__ import annotations

from collections.abc import Iterator

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


@pytest.fixture(scope="session")
def boto_session() -> boto3.session.Session:
    """One session for all tests: botocore then loads each service model once."""
    return boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)


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

