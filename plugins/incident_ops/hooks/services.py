"""Airflow connections → the incident's clients (`incident_ops.services.IncidentServices`).

| connection id | type | what it holds |
|---|---|---|
| `aws_default` | aws | credentials; extra `endpoint_url` for a stand-in (the amazon provider's own handling) |
| `slack_api_default` | slack | bot token (password); extra `base_url`, `timeout` (read by the Slack provider's `SlackHook`) |
| `pagerduty_default` | pagerduty/generic | REST API token (password); extra `routing_key`, `events_url`, `rest_url`, `from_email` |
| `github_default` | github/http | token (password); host = API base URL |
| `sentry_default` | http | auth token (password); host = base URL |
| `peoplebooster_api` | http | host = API base URL; password = functional-check test account; extra `health_url`, `external_status_url` |
| `smtp_default` | smtp | host, port, login, password; extra `from_email`, `starttls` |

Any connection may carry extra `ca_bundle` (a private CA, e.g. the sandbox's); the environment
variable `INCIDENT_OPS_CA_BUNDLE` sets it for all. A missing connection leaves that service
unconfigured: its client is None and the task that needs it says which connection to add.
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from incident_ops.core.runbook import Environment
from incident_ops.services import IncidentServices, ServiceSettings, SmtpSettings

__all__ = ["CONNECTION_IDS", "IncidentServicesHook"]

CONNECTION_IDS = {
    "aws": "aws_default",
    "slack": "slack_api_default",
    "pagerduty": "pagerduty_default",
    "github": "github_default",
    "sentry": "sentry_default",
    "peoplebooster": "peoplebooster_api",
    "smtp": "smtp_default",
}


def _base_url(conn: Any, default: str = "") -> str:
    host = conn.host or ""
    if not host:
        return default
    if "://" not in host:
        scheme = conn.schema or "https"
        host = f"{scheme}://{host}"
        if conn.port:
            host = f"{host}:{conn.port}"
    return host.rstrip("/")


class IncidentServicesHook(BaseHook):
    """Builds `IncidentServices` for an environment from the connections above."""

    conn_name_attr = "aws_conn_id"
    hook_name = "PeopleBooster incident services"

    def __init__(self, environment: Environment, connection_ids: dict[str, str] | None = None) -> None:
        super().__init__()
        self.environment = environment
        self.connection_ids = {**CONNECTION_IDS, **(connection_ids or {})}

    def _connection(self, service: str) -> Any | None:
        try:
            return self.get_connection(self.connection_ids[service])
        except AirflowNotFoundException:
            return None

    def settings(self) -> ServiceSettings:
        env = self.environment
        settings = ServiceSettings(region=env.region, api_base_url=env.api_base_url, health_url=env.health_url)
        changes: dict[str, Any] = {"ca_bundle": os.environ.get("INCIDENT_OPS_CA_BUNDLE") or None}
        ca_bundles = []
        if slack := self._connection("slack"):
            extra = slack.extra_dejson
            changes.update(slack_token=slack.password, slack_base_url=extra.get("base_url") or settings.slack_base_url)
            ca_bundles.append(extra.get("ca_bundle"))
        if pager := self._connection("pagerduty"):
            extra = pager.extra_dejson
            changes.update(
                pagerduty_api_token=pager.password or extra.get("api_token"),
                pagerduty_routing_key=extra.get("routing_key"),
                pagerduty_events_url=extra.get("events_url") or settings.pagerduty_events_url,
                pagerduty_rest_url=extra.get("rest_url") or settings.pagerduty_rest_url,
                pagerduty_from_email=extra.get("from_email"),
            )
            ca_bundles.append(extra.get("ca_bundle"))
        if github := self._connection("github"):
            changes.update(github_token=github.password, github_base_url=_base_url(github, settings.github_base_url))
            ca_bundles.append(github.extra_dejson.get("ca_bundle"))
        if sentry := self._connection("sentry"):
            changes.update(sentry_token=sentry.password, sentry_base_url=_base_url(sentry, settings.sentry_base_url))
            ca_bundles.append(sentry.extra_dejson.get("ca_bundle"))
        if api := self._connection("peoplebooster"):
            extra = api.extra_dejson
            changes.update(
                api_base_url=_base_url(api, settings.api_base_url),
                health_url=extra.get("health_url") or settings.health_url,
                external_status_url=extra.get("external_status_url"),
                secrets={"functional_check_password": api.password} if api.password else {},
            )
            ca_bundles.append(extra.get("ca_bundle"))
        if smtp := self._connection("smtp"):
            extra = smtp.extra_dejson
            changes["smtp"] = SmtpSettings(
                host=smtp.host or "localhost",
                port=int(smtp.port or 25),
                username=smtp.login or None,
                password=smtp.password or None,
                starttls=str(extra.get("starttls", "false")).lower() in ("1", "true", "yes"),
                sender=extra.get("from_email") or "incident-ops@localhost",
            )
        if not changes["ca_bundle"]:
            changes["ca_bundle"] = next((bundle for bundle in ca_bundles if bundle), None)
        return settings.with_overrides(**changes)

    @cached_property
    def services(self) -> IncidentServices:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        from incident_ops.actions.registry import aws_client_config, aws_client_region

        def aws_client(name: str) -> Any:
            hook = AwsBaseHook(
                aws_conn_id=self.connection_ids["aws"], client_type=name,
                region_name=aws_client_region(name, self.environment.region),
                config=aws_client_config(),
            )
            return hook.get_conn()

        def slack_web_client() -> Any:
            # The provider's hook builds the WebClient from the connection, with our retry handlers.
            from airflow.providers.slack.hooks.slack import SlackHook

            from incident_ops.clients.slack import web_client_options

            return SlackHook(slack_conn_id=self.connection_ids["slack"], **web_client_options()).client

        return IncidentServices(self.settings(), aws_client=aws_client, slack_web_client=slack_web_client)

    def get_conn(self) -> IncidentServices:
        return self.services
