"""The sandbox: local stand-ins, with real protocols, for everything the incident automation talks to.

Run it (everything listens on 127.0.0.1 only):

    cd /work/main && PYTHONPATH=plugins:include .venv/bin/python -m sandbox --state-dir state/sandbox

- AWS: moto in server mode on :5055, seeded with the runbook's production (and staging) inventory:
  VPC, subnets, security groups (incl. the quarantine group), the ECS cluster and services (two
  task-definition revisions each), the ALB and target groups, the Aurora cluster (writer + reader,
  snapshots), log groups with recent lines, the CloudWatch alarms and metrics, the SSM flags.
- One FastAPI app on HTTP :5056 and HTTPS :5057 (CA bundle: state/sandbox/ca.pem):
  /pb (PeopleBooster API: /pb/health + the functional endpoints), /slack/api/<method> (Slack Web
  API), /pagerduty (Events API v2 + REST; use the HTTPS port), /github (Actions dispatch and runs),
  /sentry/api/0 (issues), /status/api/v2/status.json (the external provider's status page), and the
  control API /_sandbox (break/clear/reset/faults/records, an HTML view at /_sandbox/).
- Slack's and PagerDuty's side (webhooks.py): a button click on the page (or POST
  /_sandbox/slack/click) and `/incident <text>` become signed Slack interactions, and PagerDuty
  incident transitions signed v3 webhooks, delivered to `--airflow-url`'s /incidents/webhooks/slack
  and /incidents/webhooks/pagerduty (or --slack-request-url / --pagerduty-webhook-url).
- <state-dir>/endpoints.json: {aws, http, https, ca_bundle, pid, region, health_url, slack_api,
  pagerduty, github_api, sentry, external_status_url, control, slack_request_url, pagerduty_webhook_url}.

The PeopleBooster health is derived from moto's state on each request (see health.py), so only a
real remediation heals a broken scenario. In-process (tests): `start_sandbox(tmp_path)` on free ports.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# Lazy: importing the package (e.g. for the client) does not import moto, uvicorn or FastAPI.
_EXPORTS = {
    "DEFAULT_PORTS": "server",
    "Sandbox": "server",
    "start_sandbox": "server",
    "SandboxClient": "client",
    "load_endpoints": "client",
    "sandbox_aws_env": "client",
    "aws_env": "aws",
    "TEST_ACCOUNT_EMAIL": "pb",
    "TEST_ACCOUNT_PASSWORD": "pb",
    "SCENARIOS": "state",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sandbox' has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
