"""`make demo`: Airflow standalone (SQLite) with this project's DAGs, until Ctrl-C.

Everything it starts runs in process groups it owns; on Ctrl-C (or SIGTERM) it stops them all and
checks that no process is left behind.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.airflow_local import (  # noqa: E402
    DEMO_PASSWORD,
    DEMO_USER,
    PROJECT_ROOT,
    ManagedProcess,
    airflow_env,
    api_token,
    wait_for_http,
)

DAG_ID = "incident_response"


class Interrupted(Exception):
    pass


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


def wait_for_dag(base_url: str, dag_id: str, timeout: float = 180.0) -> dict:
    token = api_token(base_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = requests.get(
            f"{base_url}/api/v2/dags/{dag_id}", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        if response.status_code == 200:
            return response.json()
        time.sleep(1)
    raise TimeoutError(f"DAG {dag_id} was not listed within {timeout:.0f}s")


def import_errors(base_url: str) -> list[dict]:
    token = api_token(base_url)
    response = requests.get(
        f"{base_url}/api/v2/importErrors", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    response.raise_for_status()
    return response.json().get("import_errors", [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--state", type=Path, default=PROJECT_ROOT / "state" / "demo")
    parser.add_argument("--exit-after-ready", action="store_true", help="stop as soon as the UI is up (smoke test)")
    args = parser.parse_args(argv)

    signal.signal(signal.SIGINT, _raise_interrupted)
    signal.signal(signal.SIGTERM, _raise_interrupted)

    base_url = f"http://127.0.0.1:{args.port}"
    env = airflow_env(args.state, port=args.port)
    airflow = ManagedProcess(
        "airflow standalone",
        [str(Path(sys.executable).parent / "airflow"), "standalone"],
        env,
        args.state / "logs" / "standalone.log",
    )
    status = 0
    try:
        print(f"Starting Airflow standalone (SQLite, AIRFLOW_HOME={env['AIRFLOW_HOME']}) ...", flush=True)
        airflow.start()
        wait_for_http(f"{base_url}/api/v2/monitor/health", timeout=240, process=airflow)
        dag = wait_for_dag(base_url, DAG_ID)
        errors = import_errors(base_url)
        print()
        print(f"  Airflow UI : {base_url}")
        print(f"  Login      : {DEMO_USER} / {DEMO_PASSWORD}")
        print(f"  DAG        : {dag['dag_id']} ({base_url}/dags/{DAG_ID})")
        print(f"  Logs       : {airflow.log_path}")
        if errors:
            print(f"  Import errors: {len(errors)} (see the UI)")
            status = 1
        print()
        if args.exit_after_ready:
            return status
        print("Press Ctrl-C to stop everything.", flush=True)
        while airflow.running():
            time.sleep(1)
        print(f"Airflow exited on its own; see {airflow.log_path}")
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
        airflow.stop()
        print("Stopped: no process of the demo is left.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
