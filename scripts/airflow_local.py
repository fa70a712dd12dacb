"""Run Airflow locally the way the demo, the system tests and the benchmarks need it.

Every process is started in its own session (process group) and stopped by group: Airflow
standalone's LocalExecutor children can outlive a SIGTERM to their parent, so a stop sends SIGTERM
to the whole group, waits, then SIGKILLs what is left and checks that nothing survived.
"""

from __future__ import annotations

import json
import os
import secrets
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
    "ADMIN_PASSWORD_FILE",
    "DEMO_USER",
    "HOSTNAME_VARIABLE",
    "LISTEN_HOST",
    "ManagedProcess",
    "admin_password",
    "airflow_env",
    "api_token",
    "free_port_block",
    "hostname_from_environment",
    "local_airflow_command",
    "login_for",
    "wait_for_http",
]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEMO_USER = "admin"
# The admin's password of a state folder: generated once (secrets.token_urlsafe) into this file of the
# folder, kept when the demo wipes the folder, so a state folder always has the same login.
ADMIN_PASSWORD_FILE = "admin-password"
# Everything the local stack starts listens on this address only.
LISTEN_HOST = "127.0.0.1"
# A process's host name as Airflow records it (task instances' `hostname`), when set: see
# hostname_from_environment.
HOSTNAME_VARIABLE = "INCIDENT_OPS_HOSTNAME"
# base URL -> (user, password) of the stacks whose environment this process built (see api_token).
_LOGINS: dict[str, tuple[str, str]] = {}


def admin_password(state_dir: Path, *, create: bool = True) -> str:
    """The admin password of `state_dir` (`<state_dir>/admin-password`), generated on first use."""
    path = Path(state_dir).resolve() / ADMIN_PASSWORD_FILE
    if path.exists():
        password = path.read_text(encoding="utf-8").strip()
        if password:
            return password
    if not create:
        raise FileNotFoundError(f"no admin password in {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(password + "\n")
    return password


def hostname_from_environment() -> str:
    """Airflow's `[core] hostname_callable` for several workers on one machine: the host name in
    INCIDENT_OPS_HOSTNAME (each worker's own, as each container of a compose deployment has one),
    else the machine's (Airflow's default, `airflow.utils.net.getfqdn`)."""
    name = os.environ.get(HOSTNAME_VARIABLE, "").strip()
    if name:
        return name
    from airflow.utils.net import getfqdn

    return getfqdn()


def login_for(base_url: str) -> tuple[str, str]:
    """(user, password) of a stack whose environment this process built with `airflow_env`."""
    try:
        return _LOGINS[base_url.rstrip("/")]
    except KeyError:
        raise LookupError(f"no login known for {base_url}: pass username/password (the state folder's "
                          f"{ADMIN_PASSWORD_FILE} file)") from None


def local_airflow_command(port: int) -> list[str]:
    """What `airflow standalone` runs (database migration, scheduler, dag-processor, triggerer,
    api-server), but listening on 127.0.0.1 only: the api-server binds LISTEN_HOST, and the scheduler's
    and triggerer's log servers, which always bind every interface, are not started (every component
    writes its logs under the same AIRFLOW_HOME, where the api-server reads them). One shell, one
    process group: it ends when any component ends, and `ManagedProcess.stop` stops the whole group."""
    airflow = str(Path(sys.executable).parent / "airflow")
    script = (
        '"$0" db migrate || exit 1\n'
        '"$0" scheduler --skip-serve-logs &\n'
        '"$0" dag-processor &\n'
        '"$0" triggerer --skip-serve-logs &\n'
        '"$0" api-server --host "$1" --port "$2" &\n'
        "wait -n\n"
    )
    return ["bash", "-c", script, airflow, LISTEN_HOST, str(port)]


def airflow_env(
    state_dir: Path,
    *,
    port: int = 8080,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment for local Airflow on SQLite with this project's dags/ and plugins/.

    Paths are made absolute here (Airflow refuses a relative SQLite URL). The simple auth manager's
    one user is DEMO_USER with the state folder's admin password (`admin_password`), which this
    process remembers for `api_token` on the stack's base URL."""
    state_dir = Path(state_dir).resolve()
    home = state_dir / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    password = admin_password(state_dir)
    passwords = home / "simple_auth_manager_passwords.json"
    passwords.write_text(json.dumps({DEMO_USER: password}))
    passwords.chmod(0o600)
    _LOGINS[f"http://{LISTEN_HOST}:{port}"] = (DEMO_USER, password)
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # LocalExecutor starts `parallelism` workers: keep it small on a 2-core machine.
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{DEMO_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API__HOST": LISTEN_HOST,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://{LISTEN_HOST}:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{LISTEN_HOST}:{port}/execution/",
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


def upgrade_ledger(env: Mapping[str, str], timeout: float = 180.0) -> str:
    """`incident-ops ledger upgrade` on the ledger of `env` (INCIDENT_OPS_LEDGER_URL), as airflow-init
    does in docker-compose.yaml: run before Airflow's processes start, which refuse a ledger whose
    schema is not this release's. Returns the command's line; raises with its error when it fails."""
    result = subprocess.run(
        [sys.executable, "-m", "incident_ops", "ledger", "upgrade"],
        env=dict(env), cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout, start_new_session=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"incident-ops ledger upgrade exited {result.returncode}: "
                           f"{(result.stderr or result.stdout).strip()}")
    return result.stdout.strip()


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


def api_token(base_url: str, username: str | None = None, password: str | None = None) -> str:
    """A JWT for Airflow's REST API from the simple auth manager's token endpoint.

    Without `password`: the login of the stack this process started on `base_url` (`login_for`)."""
    if password is None:
        known_user, password = login_for(base_url)
        username = username or known_user
    username = username or DEMO_USER
    response = requests.post(
        f"{base_url}/auth/token", json={"username": username, "password": password}, timeout=10
    )
    response.raise_for_status()
    return response.json()["access_token"]
