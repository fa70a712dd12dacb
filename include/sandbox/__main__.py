"""Run the sandbox until SIGTERM/SIGINT:

    cd /work/main && PYTHONPATH=plugins:include .venv/bin/python -m sandbox --state-dir state/sandbox

Prints the endpoints (also written to <state-dir>/endpoints.json) and serves until stopped.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from .server import DEFAULT_PORTS, start_sandbox
from .webhooks import DEFAULT_PAGERDUTY_WEBHOOK_SECRET, DEFAULT_SLACK_SIGNING_SECRET


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description="Local stand-ins for PeopleBooster's incident automation.")
    parser.add_argument("--state-dir", default="state/sandbox", type=Path, help="where endpoints.json, the CA and certs go")
    parser.add_argument("--aws-port", type=int, default=DEFAULT_PORTS["aws"], help="moto server (0 = any free port)")
    parser.add_argument("--http-port", type=int, default=DEFAULT_PORTS["http"])
    parser.add_argument("--https-port", type=int, default=DEFAULT_PORTS["https"])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    parser.add_argument("--public-host", default=None,
                        help="the name others reach it by (endpoints.json, HTTPS certificate); default: --host, or 127.0.0.1")
    parser.add_argument("--runbook", type=Path, default=None, help="runbook YAML (default: INCIDENT_OPS_RUNBOOK or the project's)")
    parser.add_argument("--environment", default="production", help="the environment whose health the sandbox serves")
    parser.add_argument("--github-delay", type=float, default=3.0, help="seconds a GitHub Actions run takes")
    parser.add_argument("--tick", type=float, default=5.0, help="seconds between evaluator ticks (alarms, metrics)")
    parser.add_argument("--resource-need", type=int, default=8, help="tasks the backend needs while 'resource' is broken")
    # Slack's and PagerDuty's side: where the sandbox delivers interactions and v3 webhooks, and the
    # secrets it signs them with (each also from an environment variable).
    env = os.environ.get
    parser.add_argument("--airflow-url", default=env("SANDBOX_AIRFLOW_URL"),
                        help="the Airflow API server's base URL: deliver to its /incidents/webhooks/slack and "
                             "/incidents/webhooks/pagerduty (env SANDBOX_AIRFLOW_URL; default: deliver nowhere)")
    parser.add_argument("--slack-request-url", default=env("SANDBOX_SLACK_REQUEST_URL"),
                        help="the Slack app's interactivity and slash command URL (env SANDBOX_SLACK_REQUEST_URL; "
                             "overrides --airflow-url)")
    parser.add_argument("--pagerduty-webhook-url", default=env("SANDBOX_PAGERDUTY_WEBHOOK_URL"),
                        help="the PagerDuty v3 webhook subscription URL (env SANDBOX_PAGERDUTY_WEBHOOK_URL; "
                             "overrides --airflow-url)")
    parser.add_argument("--slack-signing-secret", default=env("SANDBOX_SLACK_SIGNING_SECRET", DEFAULT_SLACK_SIGNING_SECRET),
                        help="the Slack app's signing secret (env SANDBOX_SLACK_SIGNING_SECRET)")
    parser.add_argument("--pagerduty-webhook-secret",
                        default=env("SANDBOX_PAGERDUTY_WEBHOOK_SECRET", DEFAULT_PAGERDUTY_WEBHOOK_SECRET),
                        help="the v3 subscription's secret; several, comma-separated, sign with each (a rotation) "
                             "(env SANDBOX_PAGERDUTY_WEBHOOK_SECRET)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runbook = None
    if args.runbook is not None:
        from incident_ops.core.runbook import load_runbook

        runbook = load_runbook(args.runbook)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    sandbox = start_sandbox(
        args.state_dir,
        {"aws": args.aws_port, "http": args.http_port, "https": args.https_port},
        runbook=runbook,
        environment=args.environment,
        github_delay=args.github_delay,
        tick_seconds=args.tick,
        resource_need=args.resource_need,
        host=args.host,
        public_host=args.public_host,
        airflow_url=args.airflow_url,
        slack_url=args.slack_request_url,
        pagerduty_url=args.pagerduty_webhook_url,
        slack_signing_secret=args.slack_signing_secret,
        pagerduty_webhook_secret=args.pagerduty_webhook_secret,
    )
    print(json.dumps(sandbox.endpoints, indent=2), flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        sandbox.stop()
    print("sandbox stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
