"""Run Airflow locally the way the demo, the system tests and the benchmarks need it.

Every process is started in its own session (process group) and stopped by group: Airflow
standalone's LocalExecutor children can outlive a SIGTERM to their parent, so a stop sends SIGTERM
to the whole group, waits, then SIGKILLs what is left and checks that nothing survived.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import requests

__all__ = [
    "DEMO_PASSWORD",
    "DEMO_USER",
    "ManagedProcess",
    "airflow_env",
    "api_token",
    "free_port_block",
    "wait_for_http",
]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEMO_USER = "admin"
DEMO_PASSWORD = "incident-demo"


def airflow_env(
    state_dir: Path,
    *,
    port: int = 8080,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment for Airflow standalone on SQLite with this project's dags/ and plugins/."""
    home = state_dir / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    passwords = home / "simple_auth_manager_passwords.json"
    passwords.write_text(json.dumps({DEMO_USER: DEMO_PASSWORD}))
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # LocalExecutor starts `parallelism` workers: keep it small on a 2-core machine.
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{DEMO_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        # Every component loads the plugins at start, so processes that fork task runners (and the
        # Celery worker) have the task modules imported already (incident_ops.preload).
        "AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "False",
        # An idle scheduler looks for new runs every 0.25 s, not every second: an alarm's run starts
        # sooner (bench/: alarm -> page).
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.25",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "INCIDENT_OPS_STATE_DIR": str(state_dir),
        "INCIDENT_OPS_LEDGER_URL": f"sqlite:///{state_dir / 'ledger.db'}",
        "INCIDENT_OPS_POSTMORTEM_STORAGE": f"file://{state_dir / 'postmortems'}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT / "plugins"), os.environ.get("PYTHONPATH")])),
    }
    env.update(extra or {})
    return env


@dataclass
class ManagedProcess:
    """A command running in its own process group, with its output in a log file."""

    name: str
    command: list[str]
    env: Mapping[str, str]
    log_path: Path
    cwd: Path = PROJECT_ROOT
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command,
            env=dict(self.env),
            cwd=self.cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        return self

    @property
    def pgid(self) -> int:
        assert self.process is not None, f"{self.name} was not started"
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def group_alive(self) -> bool:
        """True while any process of the group is left (children included)."""
        if self.process is None:
            return False
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        # A zombie leader still counts for killpg: reap it and look again.
        self.process.poll()
        result = subprocess.run(["pgrep", "-g", str(self.pgid)], capture_output=True, text=True)
        return bool(result.stdout.strip())

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the whole group, wait, SIGKILL what is left; raise if anything survives."""
        if self.process is None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                self.process.poll()
                if not self.group_alive():
                    break
                time.sleep(0.2)
            if not self.group_alive():
                break
        self.process.poll()
        if self._log:
            self._log.close()
        if self.group_alive():
            raise RuntimeError(f"{self.name}: processes of group {self.pgid} survived SIGKILL")


def free_port_block(size: int = 4, low: int = 20000, high: int = 30000) -> int:
    """A base port with `size` consecutive free ports, below the kernel's ephemeral range (where
    outgoing connections of other processes could take a port between our check and our bind)."""
    import random
    import socket

    for _ in range(200):
        base = random.randrange(low, high - size)
        socks = []
        try:
            for offset in range(size):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError(f"no {size} consecutive free ports in {low}-{high}")


def wait_for_http(url: str, timeout: float = 120.0, process: ManagedProcess | None = None) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if process is not None and not process.running():
            raise RuntimeError(f"{process.name} exited early; see {process.log_path}")
        try:
            response = requests.get(url, timeout=2, verify=False)
            if response.status_code < 500:
                return
            last = f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f}s ({last})")


def api_token(base_url: str, username: str = DEMO_USER, password: str = DEMO_PASSWORD) -> str:
    """A JWT for Airflow's REST API from the simple auth manager's token endpoint."""
    response = requests.post(
        f"{base_url}/auth/token", json={"username": username, "password": password}, timeout=10
    )
    response.raise_for_status()
    return response.json()["access_token"]
