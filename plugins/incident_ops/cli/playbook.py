"""`python -m incident_ops playbook SCENARIO`: break-glass remediation without Airflow.

Credentials come from the standard AWS environment (`AWS_ENDPOINT_URL` honoured, so it works
against a moto server) and the variables in `incident_ops.services.ENV_VARIABLES`.
"""

from __future__ import annotations

import argparse
from typing import Any

from incident_ops.actions.base import DESTRUCTIVE_ACTIONS
from incident_ops.cli.main import EXIT_OK, CommandFailed, command
from incident_ops.core.runbook import SCENARIOS, SEVERITIES, Runbook

EXIT_STEP_FAILED = 1


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--env", dest="environment", default="production", help="runbook environment")
    parser.add_argument("--check", action="store_true", help="check mode: report what would change, change nothing")
    parser.add_argument("--service", default=None, help="service short name (backend) or ECS name")
    parser.add_argument(
        "--incident-id",
        default=None,
        help="idempotency key of the remediation (default: break-glass-ENV-SCENARIO; a re-run with the same id "
        "does not act twice)",
    )
    parser.add_argument("--since", default=None, help="ISO time the incident started (GitHub run lookup)")
    parser.add_argument(
        "--confirm",
        action="store_true",
        help=f"approve destructive steps ({', '.join(sorted(DESTRUCTIVE_ACTIONS))}); refused without it",
    )
    parser.add_argument("--include-optional", action="store_true", help="also run the scenario's optional steps")
    parser.add_argument("--severity", choices=SEVERITIES, default=None,
                        help="the incident's severity (the AWS Support case's severity code comes from it)")


def _text(report: dict[str, Any]) -> str:
    mode = "check mode" if report["check_mode"] else "apply"
    lines = [f"playbook {report['scenario']} on {report['environment']} ({mode}): {'ok' if report['ok'] else 'FAILED'}"]
    for step in report["steps"]:
        state = "skipped" if step["skipped"] else ("changed" if step["changed"] else ("ok" if step["ok"] else "FAILED"))
        lines.append(f"  [{state:>7}] {step['step']} ({step['action']}): {step['message']}")
    return "\n".join(lines)


@command("playbook", "run a scenario's remediation steps without Airflow (break glass)", _configure)
def playbook(args: argparse.Namespace, runbook: Runbook) -> tuple[dict[str, Any], str, int]:
    # Imported here: the read-only commands must not pay for boto3 and the clients.
    from incident_ops.actions.playbook import run_playbook
    from incident_ops.services import IncidentServices, ServiceSettings

    environment = runbook.environment(args.environment)
    services = IncidentServices(ServiceSettings.from_env(environment))
    incident_id = args.incident_id or f"break-glass-{args.environment}-{args.scenario}"
    try:
        report = run_playbook(
            runbook,
            args.scenario,
            args.environment,
            services.clients(),
            check_mode=args.check,
            incident_id=incident_id,
            service=args.service,
            confirm=args.confirm,
            include_optional=args.include_optional,
            since=args.since,
            overrides=services.settings.action_overrides(),
            severity=args.severity,
        )
    except (ValueError, KeyError):
        raise  # bad input: exit 2
    except Exception as exc:  # noqa: BLE001 - the edge: one line that says why, not a traceback
        # e.g. botocore's EndpointConnectionError when AWS is unreachable; the class names the service.
        raise CommandFailed(
            f"playbook {args.scenario} on {args.environment} stopped: {type(exc).__name__}: {exc}"
        ) from exc
    return report, _text(report), EXIT_OK if report["ok"] else EXIT_STEP_FAILED
