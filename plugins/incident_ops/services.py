"""Where the clients of an incident come from: one settings object, two sources.

`ServiceSettings.from_env()` reads the standard AWS environment and documented variables (the
break-glass command line, when Airflow itself is down); the Airflow adapter
(`incident_ops.hooks.services`) fills the same settings from Airflow connections and hands in the
clients the providers build (boto3 clients from `AwsBaseHook`, the Slack WebClient from `SlackHook`).
`IncidentServices` builds every client lazily, so a task pays only for what it uses.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from incident_ops.actions.registry import AWS_SERVICES, Clients, aws_client_config, aws_client_region
from incident_ops.clients.github import GitHubClient
from incident_ops.clients.http import HttpClient
from incident_ops.clients.pagerduty import IncidentPager
from incident_ops.clients.sentry import SentryClient
from incident_ops.clients.slack import IncidentSlack, make_web_client, upload_client
from incident_ops.core.runbook import Environment

__all__ = [
    "AWS_CALL_LOG_VARIABLE",
    "ENV_VARIABLES",
    "IncidentServices",
    "ServiceSettings",
    "SmtpSettings",
    "record_aws_calls",
]

# The variables `ServiceSettings.from_env` reads (documented in docs/operations.md, "Break glass").
ENV_VARIABLES: dict[str, str] = {
    "AWS_ENDPOINT_URL": "AWS endpoint override (boto3's own variable; e.g. a moto server)",
    "SLACK_TOKEN": "Slack bot token",
    "SLACK_API_URL": "Slack Web API base URL (default https://slack.com/api/)",
    "PAGERDUTY_ROUTING_KEY": "PagerDuty Events API v2 integration (routing) key",
    "PAGERDUTY_API_TOKEN": "PagerDuty REST API token",
    "PAGERDUTY_EVENTS_URL": "PagerDuty Events API base URL (https only)",
    "PAGERDUTY_REST_URL": "PagerDuty REST API base URL (https only)",
    "PAGERDUTY_FROM_EMAIL": "PagerDuty user email for REST writes (From header)",
    "INCIDENT_OPS_CA_BUNDLE": "CA bundle for HTTPS services with a private CA (the sandbox's)",
    "GITHUB_TOKEN": "GitHub token allowed to dispatch workflows",
    "GITHUB_API_URL": "GitHub API base URL (default https://api.github.com)",
    "SENTRY_TOKEN": "Sentry auth token (project:read)",
    "SENTRY_URL": "Sentry base URL (default https://sentry.io)",
    "PEOPLEBOOSTER_API_URL": "PeopleBooster API base URL (default: the runbook's api_base_url)",
    "PEOPLEBOOSTER_HEALTH_URL": "health endpoint (default: the runbook's health_url)",
    "EXTERNAL_STATUS_URL": "external provider's status page (default: the runbook's external_status_url)",
    "PEOPLEBOOSTER_CHECK_PASSWORD": "password of the functional-check test account",
    "SMTP_HOST": "SMTP server for the emergency e-mail fallback",
    "SMTP_PORT": "SMTP port (default 25)",
    "SMTP_USER": "SMTP user",
    "SMTP_PASSWORD": "SMTP password",
    "SMTP_STARTTLS": "1 to use STARTTLS",
    "SMTP_FROM": "sender address of the fallback e-mail",
}


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 25
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    sender: str = "incident-ops@localhost"


@dataclass(frozen=True)
class ServiceSettings:
    region: str
    aws_endpoint_url: str | None = None
    slack_token: str | None = None
    slack_base_url: str = "https://slack.com/api/"
    pagerduty_routing_key: str | None = None
    pagerduty_api_token: str | None = None
    pagerduty_events_url: str = "https://events.pagerduty.com"
    pagerduty_rest_url: str = "https://api.pagerduty.com"
    pagerduty_from_email: str | None = None
    ca_bundle: str | None = None
    github_token: str | None = None
    github_base_url: str = "https://api.github.com"
    sentry_token: str | None = None
    sentry_base_url: str = "https://sentry.io"
    api_base_url: str = ""
    health_url: str = ""
    external_status_url: str | None = None
    secrets: Mapping[str, str] = field(default_factory=dict)
    smtp: SmtpSettings | None = None

    @property
    def verify(self) -> bool | str:
        return self.ca_bundle or True

    @classmethod
    def from_env(cls, environment: Environment, env: Mapping[str, str] | None = None) -> ServiceSettings:
        env = os.environ if env is None else env

        def get(name: str, default: str | None = None) -> str | None:
            value = env.get(name)
            return value if value not in (None, "") else default

        smtp = None
        if get("SMTP_HOST"):
            smtp = SmtpSettings(
                host=get("SMTP_HOST") or "",
                port=int(get("SMTP_PORT", "25") or 25),
                username=get("SMTP_USER"),
                password=get("SMTP_PASSWORD"),
                starttls=get("SMTP_STARTTLS", "0") in ("1", "true", "yes"),
                sender=get("SMTP_FROM", "incident-ops@localhost") or "incident-ops@localhost",
            )
        secrets = {}
        if get("PEOPLEBOOSTER_CHECK_PASSWORD"):
            secrets["functional_check_password"] = get("PEOPLEBOOSTER_CHECK_PASSWORD") or ""
        defaults = cls(region=environment.region)
        return cls(
            region=get("AWS_DEFAULT_REGION", environment.region) or environment.region,
            aws_endpoint_url=get("AWS_ENDPOINT_URL"),
            slack_token=get("SLACK_TOKEN"),
            slack_base_url=get("SLACK_API_URL", defaults.slack_base_url) or defaults.slack_base_url,
            pagerduty_routing_key=get("PAGERDUTY_ROUTING_KEY"),
            pagerduty_api_token=get("PAGERDUTY_API_TOKEN"),
            pagerduty_events_url=get("PAGERDUTY_EVENTS_URL", defaults.pagerduty_events_url) or "",
            pagerduty_rest_url=get("PAGERDUTY_REST_URL", defaults.pagerduty_rest_url) or "",
            pagerduty_from_email=get("PAGERDUTY_FROM_EMAIL"),
            ca_bundle=get("INCIDENT_OPS_CA_BUNDLE"),
            github_token=get("GITHUB_TOKEN"),
            github_base_url=get("GITHUB_API_URL", defaults.github_base_url) or "",
            sentry_token=get("SENTRY_TOKEN"),
            sentry_base_url=get("SENTRY_URL", defaults.sentry_base_url) or "",
            api_base_url=get("PEOPLEBOOSTER_API_URL", environment.api_base_url) or "",
            health_url=get("PEOPLEBOOSTER_HEALTH_URL", environment.health_url) or "",
            external_status_url=get("EXTERNAL_STATUS_URL"),
            secrets=secrets,
            smtp=smtp,
        )

    def with_overrides(self, **changes: Any) -> ServiceSettings:
        return replace(self, **changes)

    def action_overrides(self) -> dict[str, dict[str, Any]]:
        """Per-action params that the connections set instead of the runbook (endpoints of stand-ins)."""
        overrides: dict[str, dict[str, Any]] = {}
        if self.external_status_url:
            overrides["external_status_check"] = {"url": self.external_status_url}
        return overrides


AWS_CALL_LOG_VARIABLE = "INCIDENT_OPS_AWS_CALL_LOG"
# boto3 service name -> IAM action prefix, where they differ.
IAM_PREFIXES = {"elbv2": "elasticloadbalancing"}


def record_aws_calls(client: Any, path: str) -> None:
    """Append every API call the client makes as `iam-prefix:Operation` to `path` (one per line).

    For the least-privilege check: the end-to-end runs record what the collection really calls.
    """
    service = client.meta.service_model.service_name
    prefix = IAM_PREFIXES.get(service, service)

    def log_call(model: Any, **_: Any) -> None:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"{prefix}:{model.name}\n")

    client.meta.events.register("before-call.*.*", log_call)


class IncidentServices:
    """Lazily built clients for one environment. `aws_client` makes a boto3 client by service name;
    `slack_web_client` makes the Slack WebClient (default: `make_web_client` from the settings)."""

    def __init__(
        self,
        settings: ServiceSettings,
        aws_client: Callable[[str], Any] | None = None,
        slack_web_client: Callable[[], Any] | None = None,
    ) -> None:
        self.settings = settings
        self._aws_client = aws_client or self._boto3_client
        self._slack_web_client = slack_web_client

    def _boto3_client(self, name: str) -> Any:
        import boto3

        return boto3.session.Session().client(
            name,
            region_name=aws_client_region(name, self.settings.region),
            endpoint_url=self.settings.aws_endpoint_url,
            config=aws_client_config(),
        )

    def aws(self, name: str) -> Any:
        cache = self.__dict__.setdefault("_aws", {})
        if name not in cache:
            client = self._aws_client(name)
            if os.environ.get(AWS_CALL_LOG_VARIABLE):
                record_aws_calls(client, os.environ[AWS_CALL_LOG_VARIABLE])
            cache[name] = client
        return cache[name]

    def clients(self, *, with_github: bool = True) -> Clients:
        """The bundle the remediation modules take (AWS clients are created on first use)."""
        aws = {name: self.aws(name) for name in AWS_SERVICES}
        return Clients(**aws, github=self.github if with_github and self.settings.github_token else None,
                       http=self.http)

    @cached_property
    def slack(self) -> IncidentSlack | None:
        if not self.settings.slack_token:
            return None
        if self._slack_web_client is not None:
            web = self._slack_web_client()
        else:
            web = make_web_client(self.settings.slack_token, self.settings.slack_base_url)
        return IncidentSlack(web, uploader=upload_client(verify=self.settings.verify))

    @cached_property
    def pager(self) -> IncidentPager | None:
        if not (self.settings.pagerduty_routing_key or self.settings.pagerduty_api_token):
            return None
        return IncidentPager(
            self.settings.pagerduty_routing_key,
            self.settings.pagerduty_api_token,
            events_url=self.settings.pagerduty_events_url,
            rest_url=self.settings.pagerduty_rest_url,
            verify=self.settings.verify,
            from_email=self.settings.pagerduty_from_email,
        )

    @cached_property
    def github(self) -> GitHubClient:
        return GitHubClient(self.settings.github_token, self.settings.github_base_url, verify=self.settings.verify)

    @cached_property
    def sentry(self) -> SentryClient | None:
        if not self.settings.sentry_token:
            return None
        return SentryClient(self.settings.sentry_base_url, self.settings.sentry_token, verify=self.settings.verify)

    @cached_property
    def http(self) -> HttpClient:
        """Plain HTTPS client (external status pages and other absolute URLs)."""
        return HttpClient("", verify=self.settings.verify)

    @cached_property
    def api(self) -> HttpClient:
        """The PeopleBooster API (functional checks)."""
        return HttpClient(self.settings.api_base_url, verify=self.settings.verify)
