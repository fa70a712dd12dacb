"""`make demo` / `make demo-once`: the sandbox and Airflow standalone (SQLite), one real incident.

`make demo` injects the P1 "deploy" scenario, sends its alarm the way monitoring would, follows the
run phase by phase, prints where to look, and keeps everything running until Ctrl-C. The people
answer where they are: the on-call engineer acknowledges in PagerDuty (its signed webhook tells
Airflow) and answers the scenario choice and the approvals with the buttons of their Slack messages
(`--answer-via ui`: in the Airflow UI's Required Actions instead, through its REST API).
`make demo-once SCENARIO=... [REPORT=path.json]` does the same unattended and exits 0 only if the
run succeeded and the service is healthy. Everything started here runs in process groups that are
stopped on exit (Ctrl-C, SIGTERM or the end of demo-once), and none may survive.

Airflow and the sandbox listen on 127.0.0.1 only. The login is `admin` with the state folder's own
password, generated once into `<state>/admin-password` and kept when the demo wipes the folder.
Relative `--state` and `--report` paths are taken from the current directory.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.airflow_local import ADMIN_PASSWORD_FILE, PROJECT_ROOT  # noqa: E402
from scripts.incident_runner import ANSWER_VIA, SCENARIO_ALARMS, LocalStack, run_incident  # noqa: E402


class Interrupted(Exception):
    pass


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


def clean_state(state: Path) -> None:
    """Empty `state` (Airflow's database, the ledger, the sandbox), keeping its admin password."""
    if not state.is_dir():
        shutil.rmtree(state, ignore_errors=True)
        return
    for child in state.iterdir():
        if child.name == ADMIN_PASSWORD_FILE:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options, with --state and --report made absolute against the current directory."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="deploy", choices=sorted(SCENARIO_ALARMS))
    parser.add_argument("--once", action="store_true", help="unattended: exit when the incident run ends")
    parser.add_argument("--report", type=Path, default=None, help="write the JSON report here (with --once)")
    parser.add_argument("--check-mode", action="store_true", help="run the remediation in check mode")
    parser.add_argument("--answer-via", default="slack", choices=ANSWER_VIA,
                        help="where the people answer the decisions: Slack buttons (default) or the Airflow UI")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--state", type=Path, default=PROJECT_ROOT / "state" / "demo")
    parser.add_argument("--sandbox-port-base", type=int, default=5055, help="sandbox ports: AWS, HTTP, HTTPS from here")
    parser.add_argument("--no-incident", action="store_true", help="only start the stack (smoke test)")
    args = parser.parse_args(argv)
    args.state = args.state.resolve()
    if args.report is not None:
        args.report = args.report.resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGINT, _raise_interrupted)
    signal.signal(signal.SIGTERM, _raise_interrupted)
    base = args.sandbox_port_base
    # Every demo starts from a clean state (Airflow's database, the ledger, the sandbox); the folder
    # keeps its admin password.
    clean_state(args.state)
    stack = LocalStack(args.state, port=args.port, sandbox_ports={"aws": base, "http": base + 1, "https": base + 2})
    status = 0
    try:
        stack.start()
        sandbox_page = f"{stack.endpoints['control']}/"
        print()
        print(f"  Airflow UI : {stack.base_url}  (listening on 127.0.0.1 only)")
        print(f"  Login      : {stack.username} / {stack.password}  (kept in {args.state / ADMIN_PASSWORD_FILE})")
        print(f"  Sandbox    : {sandbox_page}  (Slack, PagerDuty, GitHub, AWS state as received)")
        print(f"  Logs       : {args.state / 'logs'}")
        print()
        if not args.no_incident:
            report = run_incident(stack, args.scenario, check_mode=args.check_mode, answer_via=args.answer_via)
            ok = report["dag_run_state"] == "success" and (report["healthy"] or args.check_mode)
            status = 0 if ok else 1
            print()
            print(f"  incident   : {report['incident_id']} ({report['severity']}, scenario {args.scenario})")
            print(f"  run        : {report['dag_run_state']} in {report['seconds']} s "
                  f"({stack.base_url}/dags/incident_response/runs/{report['dag_run_id']})")
            print(f"  service    : {'healthy' if report['healthy'] else 'NOT healthy'}")
            print(f"  Slack      : {len(report['slack_messages'])} messages, PagerDuty: {len(report['pagerduty_events'])} events")
            print(f"  acknowledged: {report['acknowledged_via'] or 'no'}"
                  + "".join(f"; webhook {w['event_type']} → {w['status'] or w['error']}" for w in report["pagerduty_webhooks"]
                            if w["event_type"] == "incident.acknowledged"))
            for decision in report["decisions"]:
                fallback = f" (fallback: {decision['fallback']})" if decision.get("fallback") else ""
                print(f"  decision   : {decision['task_id']} = {decision['option']} via {decision['via']} "
                      f"by {decision['by']}{fallback}")
            print(f"  postmortem : {report['postmortem']}")
            if args.report:
                args.report.parent.mkdir(parents=True, exist_ok=True)
                args.report.write_text(json.dumps(report, ensure_ascii=False, indent=2, default=str))
                print(f"  report     : {args.report}")
        if args.once:
            return status
        print("\nEverything keeps running: look around, trigger more incidents from the UI. Ctrl-C stops it all.",
              flush=True)
        while stack.airflow is not None and stack.airflow.running():
            time.sleep(1)
        print("Airflow exited on its own; see the logs")
        return 1
    except Interrupted as exc:
        print(f"\n{exc}: stopping ...", flush=True)
        return status
    except Exception as exc:  # noqa: BLE001 - reported to the person, then everything is stopped
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
        print("Stopped: no process of the demo is left.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
