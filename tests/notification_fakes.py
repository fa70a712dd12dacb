"""Fixtures for the notification fan-out against local fakes (Slack Web API, PagerDuty over HTTPS
with a test CA, an SMTP server). Modules that need them import them by name; each module keeps its
own `slack` fixture (its retry budget is part of what it tests)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from pytest_httpserver import HTTPServer

from incident_ops.clients.pagerduty import IncidentPager
from tests.clients.conftest import (
    FakePagerDuty,
    FakeSlack,
    SleepRecorder,
    SmtpSink,
    patch_slack_sleeps,
    running_https_server,
    running_smtp_server,
    write_ca_bundle,
)

__all__ = ["fake_pd", "fake_slack", "pager", "pd_tls", "slack_sleeps", "smtp"]


@pytest.fixture(scope="module")
def pd_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HTTPServer, str]]:
    ca = trustme.CA()
    with running_https_server(ca) as server:
        yield server, write_ca_bundle(ca, Path(tmp_path_factory.mktemp("pagerduty-ca")))


@pytest.fixture
def fake_pd(pd_tls: tuple[HTTPServer, str]) -> Iterator[FakePagerDuty]:
    server, _ = pd_tls
    server.clear()
    yield FakePagerDuty(server)
    server.clear()


@pytest.fixture
def pager(fake_pd: FakePagerDuty, pd_tls: tuple[HTTPServer, str]) -> IncidentPager:
    return IncidentPager("R0UTINGKEY", "pd-api-token", events_url=fake_pd.url, rest_url=fake_pd.url,
                         verify=pd_tls[1], retry_attempts=2, backoff=0.0, sleep=lambda _: None)


@pytest.fixture
def slack_sleeps(monkeypatch: pytest.MonkeyPatch) -> SleepRecorder:
    return patch_slack_sleeps(monkeypatch)


@pytest.fixture
def fake_slack(httpserver: HTTPServer, slack_sleeps: SleepRecorder) -> FakeSlack:
    return FakeSlack(httpserver)


@pytest.fixture
def smtp() -> Iterator[tuple[SmtpSink, int]]:
    with running_smtp_server() as running:
        yield running
