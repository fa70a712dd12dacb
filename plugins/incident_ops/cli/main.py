"""Command line for when Airflow itself is down: the same core rules, one subcommand each.

    .venv/bin/incident-ops [--runbook PATH] COMMAND [--json] ...       (installed by make)
    PYTHONPATH=plugins python -m incident_ops [--runbook PATH] COMMAND ... (the same, from plugins/)

Every subcommand is a function `(args, runbook) -> (payload, text)` registered in `COMMANDS` with
the `command` decorator: `payload` is printed as JSON with `--json`, `text` otherwise. Other modules
add subcommands the same way and are listed in `COMMAND_MODULES` so the parser imports them.
Errors (a bad runbook, a bad value, an unknown key) exit with status 2; with `--json` the error is
one JSON object `{"error": "..."}` on stdout, otherwise plain text on stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from incident_ops.core.runbook import SEVERITIES, Runbook, RunbookError, load_runbook, runbook_path

if TYPE_CHECKING:
    from incident_ops.core.escalation import Notification

# Each command imports the rules it needs when it runs: `severity` pays neither for the calendar's
# holidays nor for SQLAlchemy, boto3 or the clients (tests/cli checks what a read-only command loads).

__all__ = [
    "COMMANDS",
    "COMMAND_MODULES",
    "Command",
    "CommandFailed",
    "build_parser",
    "command",
    "main",
    "parse_instant",
    "symptom_text",
]

Payload = dict[str, Any]
Runner = Callable[[argparse.Namespace, Runbook], tuple[Payload, str]]
Configure = Callable[[argparse.ArgumentParser], None]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_ERROR = 2

# The trigger form's limits for the symptom (incident_ops.params): the command line refuses what the
# form refuses.
SYMPTOM_MAX_LENGTH = 500

# Modules that register more subcommands with @command when imported (e.g. "incident_ops.cli.playbook").
COMMAND_MODULES: tuple[str, ...] = ("incident_ops.cli.playbook", "incident_ops.cli.schedule", "incident_ops.cli.ledger")


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    run: Runner
    configure: Configure | None = None


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, configure: Configure | None = None) -> Callable[[Runner], Runner]:
    """Register the decorated `(args, runbook) -> (payload, text)` function as subcommand `name`."""

    def register(run: Runner) -> Runner:
        if name in COMMANDS:
            raise ValueError(f"CLI subcommand {name!r} is registered twice")
        COMMANDS[name] = Command(name, help, run, configure)
        return run

    return register


class CommandFailed(RuntimeError):
    """The command's work failed for a reason outside the input (a service unreachable): exit 1."""


class _UsageError(ValueError):
    """A command line argparse rejected (raised instead of argparse's print-and-exit)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: {message}")


def parse_instant(text: str, option: str = "--at") -> dt.datetime:
    """An ISO-8601 date-time with a UTC offset or 'Z'; ValueError otherwise."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{option}: not an ISO-8601 date-time: {text!r}") from None
    if value.tzinfo is None:
        raise ValueError(f"{option} needs a UTC offset or 'Z' (e.g. 2026-11-23T10:00:00+09:00), got {text!r}")
    return value


def symptom_text(text: str | None, *, required: bool = True) -> str | None:
    """The symptom as the trigger form accepts it: not blank, at most SYMPTOM_MAX_LENGTH characters."""
    if text is None:
        if required:
            raise ValueError("symptom: required (what is wrong, in Japanese or English)")
        return None
    if not text.strip():
        raise ValueError("symptom: empty; say what is wrong (e.g. 「ログインできない」)")
    if len(text) > SYMPTOM_MAX_LENGTH:
        raise ValueError(f"symptom: {len(text)} characters; at most {SYMPTOM_MAX_LENGTH}, as in the trigger form")
    return text


def _instant_or_now(text: str | None) -> dt.datetime:
    # The command line is the edge of the system: the only place "now" is read.
    return parse_instant(text) if text else dt.datetime.now(dt.UTC)


def _iso(runbook: Runbook, instant: dt.datetime) -> str:
    return instant.astimezone(runbook.tz).isoformat()


def _clock(runbook: Runbook, instant: dt.datetime) -> str:
    return instant.astimezone(runbook.tz).strftime("%Y-%m-%d %H:%M %Z")


def _name(runbook: Runbook, person_id: str) -> str:
    return runbook.person(person_id).name


# --- validate -----------------------------------------------------------------------------------


def _configure_validate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runbook_file", nargs="?", metavar="RUNBOOK", help="the file to check (default: --runbook)")


@command("validate", "check a runbook file against the schema", _configure_validate)
def validate(args: argparse.Namespace, runbook: Runbook) -> tuple[Payload, str]:
    source = str(_runbook_path(args))
    symptoms = [symptom.id for symptom in runbook.triage.symptoms]
    payload = {
        "valid": True,
        "runbook": source,
        "product": runbook.product,
        "severities": list(runbook.severities),
        "symptoms": symptoms,
        "scenarios": list(runbook.scenarios),
        "environments": list(runbook.environments),
    }
    text = "\n".join(
        [
            f"{source}: valid ({runbook.product})",
            f"  severities:   {', '.join(runbook.severities)}",
            f"  symptoms:     {len(symptoms)} ({', '.join(symptoms)})",
            f"  scenarios:    {', '.join(runbook.scenarios)}",
            f"  environments: {', '.join(runbook.environments)}",
        ]
    )
    return payload, text


# --- severity -----------------------------------------------------------------------------------


def _configure_severity(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("symptom", nargs="?", metavar="SYMPTOM", help="what is wrong, in Japanese or English")
    parser.add_argument("--alarm", metavar="NAME", help="a CloudWatch alarm name")
    parser.add_argument("--env", default="production", help="environment of the alarm (default: production)")
    parser.add_argument("--override", metavar="P1-P4", help="a severity given by the reporter (always wins)")


@command("severity", "classify a symptom and/or an alarm (障害レベルの判定)", _configure_severity)
def severity(args: argparse.Namespace, runbook: Runbook) -> tuple[Payload, str]:
    from incident_ops.core.triage import classify

    alarm = {"AlarmName": args.alarm} if args.alarm else None
    symptom = symptom_text(args.symptom, required=alarm is None)
    result = classify(runbook, symptom, alarm=alarm, environment=args.env, override=args.override)
    level = runbook.severities[result.severity]
    lines = [f"{result.severity} {level.name}: {level.definition}", f"  rule:   {result.rule}"]
    if result.symptom_id:
        lines.append(f"  symptom: {result.symptom_id} ({result.symptom_label})")
    if result.impact:
        lines.append(f"  impact: {result.impact}")
    return result.to_dict(), "\n".join(lines)


# --- route --------------------------------------------------------------------------------------


def _configure_route(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--severity", required=True, metavar="|".join(SEVERITIES))
    parser.add_argument("--at", metavar="INSTANT", help="ISO-8601 with an offset (default: now)")
    parser.add_argument(
        "--unacknowledged", action="store_true", help="the escalation when nobody started the response in time"
    )


def _notification_line(runbook: Runbook, notice: Notification) -> str:
    who = notice.channel or ", ".join(str(recipient["name"]) for recipient in notice.recipients)
    when = f" not before {_clock(runbook, notice.not_before)} (next business day)" if notice.deferred else " now"
    return f"  - {notice.target} via {notice.via} → {who}{when}"


@command("route", "who to notify for a severity at an instant (エスカレーションパス)", _configure_route)
def route_command(args: argparse.Namespace, runbook: Runbook) -> tuple[Payload, str]:
    from incident_ops.core.deadlines import response_window
    from incident_ops.core.escalation import route, unacknowledged_route

    at = _instant_or_now(args.at)
    routing = unacknowledged_route if args.unacknowledged else route
    notifications = routing(runbook, args.severity, at)
    window = response_window(runbook, args.severity, at)
    payload = {
        "severity": args.severity,
        "at": _iso(runbook, at),
        "unacknowledged": args.unacknowledged,
        # When work may start (a P4 outside business hours: the next business day's 9:00) and by
        # when the response must have started: the same window the notice and the wait use.
        "response": {"work_from": _iso(runbook, window.work_from), "deadline": _iso(runbook, window.deadline),
                     "deferred": window.deferred, "target_minutes": window.target_minutes},
        "notifications": [
            {**notice.to_dict(), "not_before": _iso(runbook, notice.not_before)} for notice in notifications
        ],
    }
    header = f"{args.severity}{' (unacknowledged)' if args.unacknowledged else ''} at {_clock(runbook, at)}:"
    lines = [header, *(_notification_line(runbook, notice) for notice in notifications),
             f"  response: work from {_clock(runbook, window.work_from)}, started by {_clock(runbook, window.deadline)}"]
    if not notifications:
        lines.append("  (nobody: the runbook lists no notices for this case)")
    return payload, "\n".join(lines)


# --- oncall -------------------------------------------------------------------------------------


def _configure_oncall(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--at", metavar="INSTANT", help="ISO-8601 with an offset (default: now)")
    parser.add_argument("--handoffs", type=int, default=3, metavar="N", help="how many next handoffs (default: 3)")


@command("oncall", "who is on call at an instant (オンコール体制)", _configure_oncall)
def oncall(args: argparse.Namespace, runbook: Runbook) -> tuple[Payload, str]:
    from incident_ops.core.oncall import next_handoffs, oncall_at

    at = _instant_or_now(args.at)
    state = oncall_at(runbook, at)
    handoffs = next_handoffs(runbook, at, args.handoffs)
    payload = {
        "at": _iso(runbook, state.at),
        "mode": state.mode,
        "on_call": list(state.on_call),
        "rotation_engineer": state.rotation_engineer,
        "until": _iso(runbook, state.until),
        "next_handoffs": [
            {"at": _iso(runbook, handoff.at), "outgoing": handoff.outgoing, "incoming": handoff.incoming}
            for handoff in handoffs
        ],
    }
    lines = [
        f"{_clock(runbook, state.at)}: {state.mode} until {_clock(runbook, state.until)}",
        f"  on call: {', '.join(_name(runbook, person) for person in state.on_call)}",
        f"  rotation engineer: {_name(runbook, state.rotation_engineer)}",
        *(
            f"  handoff {_clock(runbook, h.at)}: {_name(runbook, h.outgoing)} → {_name(runbook, h.incoming)}"
            for h in handoffs
        ),
    ]
    return payload, "\n".join(lines)


# --- the parser and the entry point -------------------------------------------------------------


def _load_command_modules() -> None:
    for module in COMMAND_MODULES:
        importlib.import_module(module)


def build_parser() -> argparse.ArgumentParser:
    _load_command_modules()
    parser = _Parser(prog="incident-ops", description="PeopleBooster incident runbook rules.")
    parser.add_argument("--runbook", default=str(runbook_path()), metavar="PATH", help="the runbook YAML")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, spec in COMMANDS.items():
        sub = subparsers.add_parser(name, help=spec.help, description=spec.help)
        # SUPPRESS: given after the subcommand, these override the global ones; absent, they don't.
        sub.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON instead of text")
        sub.add_argument("--runbook", default=argparse.SUPPRESS, metavar="PATH", help="the runbook YAML")
        if spec.configure is not None:
            spec.configure(sub)
    return parser


def _runbook_path(args: argparse.Namespace) -> str:
    return getattr(args, "runbook_file", None) or args.runbook


def _message(exc: BaseException) -> str:
    # KeyError's str() is the repr of its argument; the argument is the readable message.
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc)


def _fail(message: str, as_json: bool, status: int = EXIT_ERROR) -> int:
    if as_json:
        print(json.dumps({"error": message}, ensure_ascii=False))
    else:
        print(f"error: {message}", file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; returns the exit status (0 ok, 1 the work failed, 2 bad input)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(arguments)
    except _UsageError as exc:
        if "--json" not in arguments:
            parser.print_usage(sys.stderr)
        return _fail(str(exc), "--json" in arguments)
    except SystemExit as exc:  # --help: argparse printed it and asks to exit
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    try:
        runbook = load_runbook(_runbook_path(args))
        payload, text, *status = COMMANDS[args.command].run(args, runbook)
    except (RunbookError, ValueError, KeyError) as exc:
        return _fail(_message(exc), args.json)
    except CommandFailed as exc:
        return _fail(str(exc), args.json, EXIT_FAILED)
    print(json.dumps(payload, ensure_ascii=False, indent=2) if args.json else text)
    # A runner may return a third item, its exit status (e.g. a playbook step failed).
    return status[0] if status else EXIT_OK
