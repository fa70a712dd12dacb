"""Fixtures: one in-process sandbox for this package (free ports), reset before each test.

The sandbox package lives in include/ (on pytest's pythonpath); this folder is `tests.sandbox`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sandbox.client import SandboxClient
from sandbox.server import Sandbox, start_sandbox

from .helpers import Aws

GITHUB_DELAY = 0.3


@pytest.fixture(scope="package")
def sandbox_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    # The evaluator does not tick by itself here (1 h); tests tick it through the control API.
    # Only production is seeded (faster resets); test_seed seeds staging itself.
    with start_sandbox(
        tmp_path_factory.mktemp("sandbox"), github_delay=GITHUB_DELAY, tick_seconds=3600, environments=["production"]
    ) as sandbox:
        yield sandbox


@pytest.fixture
def sb(sandbox_server: Sandbox) -> Sandbox:
    """The sandbox, healed and reseeded (moto wiped), with no records, faults or Slack state."""
    sandbox_server.client.reset()
    return sandbox_server


@pytest.fixture
def sb_light(sandbox_server: Sandbox) -> Sandbox:
    """The sandbox with the stand-ins reset (records, faults, Slack, PagerDuty, GitHub); moto kept."""
    sandbox_server.client.reset(aws=False)
    return sandbox_server


@pytest.fixture
def client(sandbox_server: Sandbox) -> SandboxClient:
    return sandbox_server.client


@pytest.fixture
def aws(sb: Sandbox) -> Aws:
    return Aws(sb)
