"""Airflow connections → the incident's client settings (what a task really gets)."""

from __future__ import annotations

import json

import pytest

from incident_ops.hooks.services import IncidentServicesHook


def conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


@pytest.fixture
def environment(runbook):
    return runbook.environment("production")


def test_no_connections_leave_services_unconfigured(monkeypatch, environment) -> None:
    for name in ("SLACK_API_DEFAULT", "PAGERDUTY_DEFAULT", "GITHUB_DEFAULT", "SENTRY_DEFAULT", "PEOPLEBOOSTER_API",
                 "SMTP_DEFAULT"):
        monkeypatch.delenv(f"AIRFLOW_CONN_{name}", raising=False)
    monkeypatch.delenv("INCIDENT_OPS_CA_BUNDLE", raising=False)
    hook = IncidentServicesHook(environment)
    settings = hook.settings()
    assert settings.slack_token is None and settings.pagerduty_routing_key is None
    assert settings.health_url == environment.health_url  # the runbook's inventory
    assert hook.services.slack is None and hook.services.pager is None and hook.services.sentry is None


def test_connections_fill_every_service(monkeypatch, environment, tmp_path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("dummy")
    conn(monkeypatch, "slack_api_default", conn_type="slack", password="xoxb-1", extra={"base_url": "http://127.0.0.1:1/slack/api/"})
    conn(monkeypatch, "pagerduty_default", conn_type="generic", password="pd-token",
         extra={"routing_key": "rk", "events_url": "https://127.0.0.1:2/pagerduty", "rest_url": "https://127.0.0.1:2/pagerduty",
                "ca_bundle": str(ca)})
    conn(monkeypatch, "github_default", conn_type="http", host="http://127.0.0.1:3/github", password="gh")
    conn(monkeypatch, "sentry_default", conn_type="http", host="127.0.0.1", port=4, schema="http", password="st")
    conn(monkeypatch, "peoplebooster_api", conn_type="http", host="http://127.0.0.1:5/pb", password="pw",
         extra={"health_url": "http://127.0.0.1:5/pb/health", "external_status_url": "http://127.0.0.1:5/status"})
    conn(monkeypatch, "smtp_default", conn_type="smtp", host="127.0.0.1", port=2525, extra={"from_email": "ops@x"})
    monkeypatch.delenv("INCIDENT_OPS_CA_BUNDLE", raising=False)

    settings = IncidentServicesHook(environment).settings()
    assert settings.slack_token == "xoxb-1" and settings.slack_base_url == "http://127.0.0.1:1/slack/api/"
    assert settings.pagerduty_api_token == "pd-token" and settings.pagerduty_routing_key == "rk"
    assert settings.pagerduty_events_url == "https://127.0.0.1:2/pagerduty"
    assert settings.github_base_url == "http://127.0.0.1:3/github" and settings.github_token == "gh"
    assert settings.sentry_base_url == "http://127.0.0.1:4"
    assert settings.api_base_url == "http://127.0.0.1:5/pb"
    assert settings.health_url == "http://127.0.0.1:5/pb/health"
    assert settings.secrets == {"functional_check_password": "pw"}
    assert settings.action_overrides() == {"external_status_check": {"url": "http://127.0.0.1:5/status"}}
    assert settings.smtp is not None and settings.smtp.port == 2525 and settings.smtp.sender == "ops@x"
    assert settings.verify == str(ca)  # the private CA of a connection applies to the HTTPS clients


def test_slack_web_client_comes_from_the_slack_provider_hook(monkeypatch, environment) -> None:
    conn(monkeypatch, "slack_api_default", conn_type="slack", password="xoxb-1",
         extra={"base_url": "http://127.0.0.1:1/slack/api/", "timeout": 12})
    monkeypatch.delenv("INCIDENT_OPS_CA_BUNDLE", raising=False)
    from airflow.providers.slack.hooks.slack import SlackHook

    built: list[SlackHook] = []
    original = SlackHook.__init__

    def record(self, *args, **kwargs) -> None:
        original(self, *args, **kwargs)
        built.append(self)

    monkeypatch.setattr(SlackHook, "__init__", record)

    client = IncidentServicesHook(environment).services.slack.client

    assert [hook.slack_conn_id for hook in built] == ["slack_api_default"]
    assert client.token == "xoxb-1" and client.base_url == "http://127.0.0.1:1/slack/api/" and client.timeout == 12
    # the same handlers as the command line's make_web_client
    assert [type(h).__name__ for h in client.retry_handlers] == [
        "RateLimitErrorRetryHandler", "_ServerErrorRetryHandler", "_ConnectionErrorRetryHandler"]
