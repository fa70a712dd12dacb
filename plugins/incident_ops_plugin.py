"""Airflow plugin: the incident webhooks, served by the Airflow API server under /incidents.

    POST /incidents/webhooks/sns     Amazon SNS (CloudWatch alarm) deliveries
    POST /incidents/webhooks/alert   generic JSON alerts signed with HMAC-SHA256

Airflow's plugin loader imports every .py under plugins/ by its file stem; `.airflowignore` keeps it
out of the `incident_ops` package, so this top-level file is the only entry point. The app builds
its services (configuration, runbook, ledger) on the first request, so importing this file is cheap
in every Airflow process that loads plugins.

It also preloads the task bodies' modules (`incident_ops.preload`): the scheduler loads plugins
before it forks its LocalExecutor workers, so task runners start with them imported. Like any
plugin code, a change under plugins/ takes effect when the components restart.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from incident_ops.preload import preload
from incident_ops.webhooks.app import create_app

preload()

__all__ = ["IncidentOpsPlugin"]


class IncidentOpsPlugin(AirflowPlugin):
    name = "incident_ops"
    fastapi_apps = [
        {"app": create_app(), "url_prefix": "/incidents", "name": "Incident webhooks (SNS, generic alerts)"},
    ]
