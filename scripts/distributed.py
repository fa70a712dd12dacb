"""The production shape without Docker: Airflow on CeleryExecutor + PostgreSQL + Redis, as processes.

`DistributedStack` is what `docker-compose.yaml` runs, one process per compose service, on this
machine's PostgreSQL and Redis:

| compose service | here |
|---|---|
| `postgres` | 127.0.0.1:5432: a fresh database per run for Airflow's metadata, another for the ledger |
| `redis` | 127.0.0.1:6379: the Celery broker, every key under a per-run prefix, a per-run queue |
| `airflow-init` | `airflow db migrate` |
| `airflow-apiserver` | `airflow api-server` (UI, REST API, Execution API, the `/incidents/webhooks/*` plugin) |
| `airflow-scheduler`, `airflow-dag-processor`, `airflow-triggerer` | the same commands |
| `airflow-worker` (scaled: `workers`) | `airflow celery worker` (small concurrency: 2-core machines); more workers are `airflow-worker-2`, … |
| `sandbox` (profile) | `python -m sandbox` |

Each process runs in its own process group (`scripts.airflow_local.ManagedProcess`) and carries a
per-run marker variable, so `stop()` can prove that nothing is left: it stops every group, then
looks through /proc for any process that still carries the marker or belongs to a process group the
components' children moved into (a process that sets its title, as Celery's pool and Airflow's task
runners do, hides the marker), killing and reporting it; then it deletes the run's Redis keys and drops
both databases. `stop()` returns a `Teardown` saying what it found.

For fault-tolerance tests, `kill(name)` SIGKILLs one component and everything it started (as losing its
host would), `stop_component(name)` stops it the way an orchestrator does (SIGTERM, then SIGKILL),
`start_component(name)` starts it again with the same command and environment, and `restart(name)`
does both and waits until the component is back (the worker answers a ping, a scheduler, triggerer or
dag-processor heartbeats again).

**Workers without a shared disk.** `workers=N` starts N Celery workers (`airflow-worker`,
`airflow-worker-2`, …), each with its own Celery hostname on the run's queue, and its own folders,
as separate hosts would have: its state folder (`INCIDENT_OPS_STATE_DIR=<state_dir>/worker-N`), its
task logs (`<state_dir>/worker-N/logs`) and worker log server port. With more than one worker each
also records its own host name on the task instances it runs (`hostname`: its Celery hostname,
through `[core] hostname_callable`). `worker_env` adds or overrides variables per worker name.
`artifacts="s3"` puts every artifact (evidence, charts, postmortem drafts) at
`s3://<bucket>/incident-ops/<run id>` in the sandbox's moto, the bucket the sandbox seeds for the
production inventory (`artifacts_bucket` in its endpoints), opened with `aws_default` (moto's
endpoint in the connection's extra); the default `"file"` keeps them under each worker's folder.

It offers what `scripts.incident_runner.run_incident` needs of a stack (`base_url`,
`sns_webhook_url`, `sandbox_client()`, `state_dir`, `endpoints`), so an incident runs through it
exactly as through `LocalStack`:

    .venv/bin/python scripts/distributed.py --scenario deploy
    .venv/bin/python scripts/distributed.py --scenario deploy --workers 2 --artifacts s3
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include"))

from scripts.airflow_local import (  # noqa: E402
    DEMO_USER,
    HOSTNAME_VARIABLE,
    PROJECT_ROOT,
    ManagedProcess,
    admin_password,
    airflow_env,
    free_port_block,
    upgrade_ledger,
    wait_for_http,
)
from scripts.incident_runner import (  # noqa: E402
    DAG_ID,
    AirflowApi,
    run_incident,
    sandbox_connections,
    sandbox_webhook_env,
)

__all__ = [
    "AIRFLOW_COMPONENTS",
    "ARTIFACT_STORES",
    "DEFAULT_POSTGRES_URL",
    "DEFAULT_REDIS_URL",
    "RUN_MARKER",
    "DistributedStack",
    "Teardown",
    "postgres_parts",
    "processes_with_marker",
]

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# Every process of a run carries RUN_MARKER=<run id> in its environment (children inherit it).
RUN_MARKER = "INCIDENT_OPS_DISTRIBUTED_RUN"
CELERY_APP = "airflow.providers.celery.executors.celery_executor.app"
# The order of `stop()`: the workers first (warm shutdown, nothing new is taken), the API server late
# (workers and the triggerer report to its Execution API), the sandbox last.
STOP_ORDER = ("airflow-worker", "airflow-scheduler", "airflow-triggerer", "airflow-dag-processor",
              "airflow-apiserver", "sandbox")
# The components `kill`/`stop_component`/`start_component`/`restart` act on (the sandbox keeps the
# stand-ins' state in memory: restarting it would be a different test); with `workers=N` also
# `airflow-worker-2` … `airflow-worker-N`.
AIRFLOW_COMPONENTS = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                      "airflow-worker")
WORKER = "airflow-worker"
_WORKER_NAME = re.compile(r"^airflow-worker(?:-([2-9]|[1-9][0-9]+))?$")
# Where the artifacts go: "file" (each worker's state folder), "s3" (the sandbox's bucket in moto).
ARTIFACT_STORES = ("file", "s3")
# The health endpoint's part and heartbeat field of the components that heartbeat.
_HEARTBEATS = {
    "airflow-scheduler": ("scheduler", "latest_scheduler_heartbeat"),
    "airflow-triggerer": ("triggerer", "latest_triggerer_heartbeat"),
    "airflow-dag-processor": ("dag_processor", "latest_dag_processor_heartbeat"),
}


@dataclass
class Teardown:
    """What `stop()` found and removed; everything empty means nothing was left behind."""

    stop_errors: list[str] = field(default_factory=list)
    leftover_processes: list[dict[str, Any]] = field(default_factory=list)
    redis_keys_deleted: int = 0
    redis_keys_left: list[str] = field(default_factory=list)
    databases_dropped: list[str] = field(default_factory=list)
    databases_left: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.stop_errors or self.leftover_processes or self.redis_keys_left or self.databases_left)


def processes_with_marker(run_id: str) -> list[dict[str, Any]]:
    """Every live process whose environment has RUN_MARKER=run_id (Linux /proc; zombies excluded)."""
    needle = f"{RUN_MARKER}={run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            stat = (entry / "stat").read_text()
            state = stat.rsplit(")", 1)[1].split()[0]
            if state == "Z":
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        try:
            pgid: int | None = os.getpgid(int(entry.name))
        except ProcessLookupError:
            pgid = None
        found.append({"pid": int(entry.name), "pgid": pgid, "cmdline": cmdline[:300]})
    return found


def _process_table() -> dict[int, tuple[int, int]]:
    """{pid: (parent pid, process group)} of every live, non-zombie process (Linux /proc)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            table[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return table


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()[:300]
    except OSError:
        return ""


def process_tree(pgid: int) -> dict[int, int]:
    """{pid: process group} of the group `pgid` and of every descendant of its members, including the
    ones that moved into process groups of their own (Airflow's task runners do)."""
    table = _process_table()
    found = {pid: group for pid, (_, group) in table.items() if group == pgid}
    frontier = list(found)
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, group) in table.items():
            if ppid == parent and pid not in found:
                found[pid] = group
                frontier.append(pid)
    return found


def postgres_parts(url: str) -> dict[str, Any]:
    """host/port/user/password of a PostgreSQL URL (any SQLAlchemy driver suffix)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return {"host": parsed.host or "127.0.0.1", "port": parsed.port or 5432, "user": parsed.username or "postgres",
            "password": parsed.password}


@dataclass
class DistributedStack:
    """api-server, scheduler, dag-processor, triggerer and a Celery worker + the sandbox, per run."""

    state_dir: Path
    postgres_url: str = DEFAULT_POSTGRES_URL
    redis_url: str = DEFAULT_REDIS_URL
    runbook: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    worker_concurrency: int = 4
    parallelism: int = 8
    # Celery workers: `airflow-worker`, `airflow-worker-2`, … (each its own hostname, folders, log port).
    workers: int = 1
    # Extra or overriding environment variables per worker name (on top of the run's and the worker's own).
    worker_env: dict[str, dict[str, str]] = field(default_factory=dict)
    artifacts: str = "file"
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    endpoints: dict[str, Any] = field(default_factory=dict)
    topic_arn: str | None = None
    ports: dict[str, int] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict, repr=False)
    teardown: Teardown | None = None
    commands: dict[str, list[str]] = field(default_factory=dict, repr=False)
    # Processes of a component that was killed or stopped and started again (each proven gone).
    retired: list[ManagedProcess] = field(default_factory=list, repr=False)
    _databases: list[str] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir).resolve()  # relative: against the current directory
        if self.runbook is not None:
            self.runbook = Path(self.runbook).resolve()
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.artifacts not in ARTIFACT_STORES:
            raise ValueError(f"artifacts must be one of {', '.join(ARTIFACT_STORES)}, got {self.artifacts!r}")
        unknown = sorted(set(self.worker_env) - set(self.worker_names))
        if unknown:
            raise ValueError(f"worker_env names no worker of this stack: {', '.join(unknown)} "
                             f"(workers: {', '.join(self.worker_names)})")

    @property
    def username(self) -> str:
        return DEMO_USER

    @property
    def password(self) -> str:
        """The admin password of this state folder (`<state_dir>/admin-password`, generated once)."""
        return admin_password(self.state_dir)

    # --- names of this run ----------------------------------------------------------------------

    @property
    def database(self) -> str:
        return f"incident_ops_dist_{self.run_id}"

    @property
    def ledger_database(self) -> str:
        return f"incident_ops_dist_{self.run_id}_ledger"

    def _pg_url(self, driver: str, database: str) -> str:
        from sqlalchemy.engine import URL

        parts = postgres_parts(self.postgres_url)
        return URL.create(f"postgresql+{driver}", username=parts["user"], password=parts["password"],
                          host=parts["host"], port=parts["port"], database=database).render_as_string(hide_password=False)

    @property
    def metadata_url(self) -> str:
        return self._pg_url("psycopg2", self.database)

    @property
    def ledger_url(self) -> str:
        return self._pg_url("psycopg", self.ledger_database)

    @property
    def redis_prefix(self) -> str:
        return f"incident-ops-{self.run_id}:"

    @property
    def queue(self) -> str:
        return f"incident-ops-{self.run_id}"

    @property
    def worker_names(self) -> list[str]:
        """`airflow-worker`, `airflow-worker-2`, … (`workers` of them)."""
        return [WORKER] + [f"{WORKER}-{n}" for n in range(2, self.workers + 1)]

    @staticmethod
    def worker_number(name: str) -> int:
        match = _WORKER_NAME.match(name)
        if not match:
            raise ValueError(f"{name!r} is not a worker name (airflow-worker, airflow-worker-2, ...)")
        return int(match.group(1) or 1)

    @property
    def worker_hostnames(self) -> dict[str, str]:
        """{worker name: its Celery hostname}: `<queue>@<host>` for the first, `<queue>-N@<host>` after."""
        host = socket.gethostname()
        return {name: f"{self.queue}@{host}" if name == WORKER else f"{self.queue}-{self.worker_number(name)}@{host}"
                for name in self.worker_names}

    @property
    def worker_hostname(self) -> str:
        """The first worker's Celery hostname."""
        return self.worker_hostnames[WORKER]

    def worker_state_dir(self, name: str = WORKER) -> Path:
        """The worker's own state folder (INCIDENT_OPS_STATE_DIR): `<state_dir>/worker-N`."""
        return self.state_dir / f"worker-{self.worker_number(name)}"

    @property
    def artifacts_url(self) -> str:
        """Where this run's artifacts go: `s3://<sandbox bucket>/incident-ops/<run id>` with
        artifacts="s3"; with "file", each worker's state folder (the empty string: the default)."""
        if self.artifacts != "s3":
            return ""
        bucket = self.endpoints.get("artifacts_bucket")
        if not bucket:
            raise RuntimeError("the sandbox announced no artifacts bucket (endpoints.json: artifacts_bucket)")
        return f"s3://{bucket}/incident-ops/{self.run_id}"

    def s3_client(self):
        """boto3's S3 against the sandbox's moto (to look at the artifacts bucket)."""
        from sandbox.aws import boto3_session

        return boto3_session(self.endpoints.get("region", "ap-northeast-1")).client("s3", endpoint_url=self.endpoints["aws"])

    def env_for(self, name: str) -> dict[str, str]:
        """The environment of the component `name`: the run's, plus a worker's own (see `_worker_env`)."""
        return {**self.env, **self._worker_env(name)} if _WORKER_NAME.match(name) else dict(self.env)

    def _worker_env(self, name: str) -> dict[str, str]:
        number = self.worker_number(name)
        folder = self.worker_state_dir(name)
        env = {
            "INCIDENT_OPS_STATE_DIR": str(folder),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(folder / "logs"),
            # one log server per worker: two on one machine cannot share the port
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.ports["worker_logs"] if number == 1
                                                            else self.ports[f"worker_logs_{number}"]),
        }
        if self.workers > 1:
            # Each worker records its own host name on the task instances it runs, as separate hosts
            # (containers) would: its Celery hostname. scripts/ must be importable for the callable.
            env[HOSTNAME_VARIABLE] = self.worker_hostnames[name]
            env["AIRFLOW__CORE__HOSTNAME_CALLABLE"] = "scripts.airflow_local.hostname_from_environment"
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [self.env.get("PYTHONPATH"), str(PROJECT_ROOT)]))
        env.update(self.worker_env.get(name, {}))
        return env

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    @property
    def sns_webhook_url(self) -> str:
        return f"{self.base_url}/incidents/webhooks/sns"

    def sandbox_client(self):
        from sandbox.client import SandboxClient

        return SandboxClient(self.endpoints)

    def log_path(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    # --- start ----------------------------------------------------------------------------------

    def start(self, say: Callable[[str], None] = print) -> DistributedStack:
        """Create the databases, start the sandbox, migrate Airflow's database and the ledger's, start
        the five Airflow processes, wait until the API server is up, the scheduler/triggerer/dag-processor
        report healthy, the worker answers a Celery ping and the incident DAG is listed. Stops what it
        started if any of it fails."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        base = free_port_block(5 + self.workers)
        self.ports = {"aws": base, "http": base + 1, "https": base + 2, "api": base + 3,
                      "worker_logs": base + 4, "trigger_logs": base + 5}
        self.ports.update({f"worker_logs_{n}": base + 4 + n for n in range(2, self.workers + 1)})
        try:
            say(f"creating databases {self.database} and {self.ledger_database} ...")
            self._create_databases()
            self._start_sandbox(say)
            self.env = self._airflow_env()
            self._check_executor_importable()
            say("airflow db migrate ...")
            self._migrate()
            say(upgrade_ledger(self.env))  # incident-ops ledger upgrade, as airflow-init does
            say(f"starting api-server on {self.base_url}, scheduler, dag-processor, triggerer, "
                f"{self.workers} celery worker(s) ...")
            airflow = str(Path(sys.executable).parent / "airflow")
            self.commands = {
                "airflow-apiserver": [airflow, "api-server", "--host", "127.0.0.1", "--port", str(self.ports["api"]),
                                      "--workers", "1"],
                "airflow-scheduler": [airflow, "scheduler"],
                "airflow-dag-processor": [airflow, "dag-processor"],
                "airflow-triggerer": [airflow, "triggerer"],
            }
            for worker, hostname in self.worker_hostnames.items():
                self.commands[worker] = [airflow, "celery", "worker", "--concurrency", str(self.worker_concurrency),
                                         "--queues", self.queue, "--celery-hostname", hostname,
                                         "--without-gossip", "--without-mingle"]
            for name in self.commands:
                self.start_component(name, wait=False)
            wait_for_http(f"{self.base_url}/api/v2/monitor/health", timeout=240,
                          process=self.processes["airflow-apiserver"])
            self._wait_components_healthy()
            for worker in self.worker_names:
                self._wait_worker(worker)
            AirflowApi(self.base_url, self.username, self.password).wait_for_dag(DAG_ID)
            say("distributed stack ready")
        except BaseException:
            self.stop()  # its report stays in self.teardown
            raise
        return self

    def _create_databases(self) -> None:
        import psycopg

        parts = postgres_parts(self.postgres_url)
        with psycopg.connect(dbname="postgres", autocommit=True, connect_timeout=10, **parts) as conn:
            for name in (self.database, self.ledger_database):
                conn.execute(f'CREATE DATABASE "{name}"')
                self._databases.append(name)

    def _start_sandbox(self, say: Callable[[str], None]) -> None:
        from sandbox.client import SandboxClient, load_endpoints

        sandbox_state = self.state_dir / "sandbox"
        (sandbox_state / "endpoints.json").unlink(missing_ok=True)
        env = {**os.environ, RUN_MARKER: self.run_id,
               "PYTHONPATH": f"{PROJECT_ROOT / 'plugins'}:{PROJECT_ROOT / 'include'}"}
        if self.runbook:
            env["INCIDENT_OPS_RUNBOOK"] = str(self.runbook)
        say("starting the sandbox ...")
        process = self.processes["sandbox"] = ManagedProcess(
            "sandbox",
            [sys.executable, "-m", "sandbox", "--state-dir", str(sandbox_state), "--aws-port", str(self.ports["aws"]),
             "--http-port", str(self.ports["http"]), "--https-port", str(self.ports["https"]),
             "--airflow-url", f"http://127.0.0.1:{self.ports['api']}"],
            env, self.log_path("sandbox"),
        ).start()
        deadline = time.monotonic() + 90
        while not (sandbox_state / "endpoints.json").exists():
            if not process.running() or time.monotonic() > deadline:
                raise RuntimeError(f"the sandbox did not start; see {process.log_path}")
            time.sleep(0.3)
        self.endpoints = load_endpoints(sandbox_state)
        client = SandboxClient(self.endpoints)
        client.wait_ready()
        self.topic_arn = client.sns_subscriptions()["default_topic_arn"]

    def _airflow_env(self) -> dict[str, str]:
        from cryptography.fernet import Fernet

        assert self.topic_arn is not None
        extra = {
            **sandbox_connections(self.endpoints),
            **sandbox_webhook_env(self.endpoints, self.topic_arn),
            RUN_MARKER: self.run_id,
            # the production shape: the same settings docker-compose.yaml gives every Airflow service
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata_url,
            "AIRFLOW__CELERY__BROKER_URL": self.redis_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{self.metadata_url}",
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": self.redis_prefix,
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.queue,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            # one secret for every component (compose: from .env or the shared airflow.cfg)
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            # a session-scoped standalone (the end-to-end tests) may hold the default log ports
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.ports["worker_logs"]),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.ports["trigger_logs"]),
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__API__WORKERS": "1",
            "INCIDENT_OPS_LEDGER_URL": self.ledger_url,
        }
        if self.runbook:
            extra["INCIDENT_OPS_RUNBOOK"] = str(self.runbook)
        if self.artifacts == "s3":
            # every component, the same bucket and prefix: evidence, charts and postmortem drafts too
            extra["INCIDENT_OPS_ARTIFACTS_URL"] = self.artifacts_url
            extra["INCIDENT_OPS_POSTMORTEM_STORAGE"] = f"{self.artifacts_url}/postmortems"
        extra.update(self.extra_env)
        return airflow_env(self.state_dir, port=self.ports["api"], extra=extra)

    def _check_executor_importable(self) -> None:
        """The scheduler and the worker import the CeleryExecutor first thing: fail early, and clearly,
        when the installed celery and celery provider do not fit together."""
        result = subprocess.run(
            [sys.executable, "-c", "import airflow.providers.celery.executors.celery_executor"],
            env=self.env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, start_new_session=True,
        )
        if result.returncode != 0:
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            raise RuntimeError("the CeleryExecutor cannot be imported with the installed packages: "
                               f"{lines[-1] if lines else result.returncode}")

    def _migrate(self, timeout: float = 300) -> None:
        process = ManagedProcess("airflow-init", [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
                                 self.env, self.log_path("airflow-init")).start()
        self.processes["airflow-init"] = process
        deadline = time.monotonic() + timeout
        while process.running():
            if time.monotonic() > deadline:
                process.stop()
                raise TimeoutError(f"airflow db migrate did not finish within {timeout:.0f}s; see {process.log_path}")
            time.sleep(0.5)
        code = process.process.returncode if process.process else None
        process.stop()  # reaps it and proves its group is gone
        if code != 0:
            raise RuntimeError(f"airflow db migrate exited {code}; see {process.log_path}")

    def _wait_components_healthy(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if name != "airflow-init" and not process.running():
                    raise RuntimeError(f"{name} exited early; see {process.log_path}")
            try:
                last = requests.get(f"{self.base_url}/api/v2/monitor/health", timeout=5).json()
                if all((last.get(part) or {}).get("status") == "healthy"
                       for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")):
                    return
            except (requests.RequestException, ValueError) as exc:
                last = repr(exc)
            time.sleep(1)
        raise TimeoutError(f"Airflow components not healthy within {timeout:.0f}s: {last}")

    def celery_inspect(self, command: str, name: str = WORKER, timeout: float = 60) -> dict[str, Any]:
        """`celery inspect <command> --json` of one worker of this run ({} when it did not answer)."""
        celery = str(Path(sys.executable).parent / "celery")
        result = subprocess.run(
            [celery, "--app", CELERY_APP, "inspect", command, "--destination", self.worker_hostnames[name],
             "--timeout", "5", "--json"],
            env=self.env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout, start_new_session=True,
        )
        if result.returncode != 0:
            return {}
        text = result.stdout.strip()
        for candidate in (text, *reversed(text.splitlines())):
            try:
                answer = json.loads(candidate)
            except ValueError:
                continue
            if isinstance(answer, dict):
                return answer.get(self.worker_hostnames[name]) or {}
        return {}

    def celery_ping(self, timeout: float = 60, name: str = WORKER) -> bool:
        """`celery inspect ping` of one worker of this run, as the compose healthcheck does."""
        return self.celery_inspect("ping", name, timeout).get("ok") == "pong"

    def _wait_worker(self, name: str = WORKER, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            worker = self.processes[name]
            if not worker.running():
                raise RuntimeError(f"the Celery worker {name} exited early; see {worker.log_path}")
            try:
                if self.celery_ping(name=name):
                    return
            except subprocess.TimeoutExpired:
                pass
            time.sleep(2)
        raise TimeoutError(f"the Celery worker {self.worker_hostnames[name]} did not answer a ping within {timeout:.0f}s")

    # --- faults: kill, stop and start one component -----------------------------------------------

    def _component(self, name: str) -> ManagedProcess:
        if name not in self.commands or name not in self.processes:
            raise ValueError(f"{name!r} is not a started Airflow component ({', '.join(self.commands or AIRFLOW_COMPONENTS)})")
        return self.processes[name]

    def kill(self, name: str, timeout: float = 15) -> list[dict[str, Any]]:
        """SIGKILL the component `name` and every process it started, as losing its machine or
        container would: its process group and the process groups its children moved into (the
        worker's task runners each have their own: SIGKILL to the worker's group alone would leave a
        task running without its supervisor). The group is frozen (SIGSTOP) first, so nothing forks
        while the tree is read. Returns the processes killed ({pid, pgid, cmdline}); raises if any of
        them is still there after `timeout` seconds."""
        process = self._component(name)
        if not process.running():
            raise RuntimeError(f"{name} is not running")
        leader = process.pgid
        os.killpg(leader, signal.SIGSTOP)
        # Descendants of our own child only (RUN_MARKER is no help here: a process that sets its title,
        # as Celery's pool and Airflow's task runners do, overwrites the environment /proc shows).
        tree = process_tree(leader)
        killed = [{"pid": pid, "pgid": group, "cmdline": _cmdline(pid)} for pid, group in sorted(tree.items())]
        groups = set(tree.values()) | {leader}
        deadline = time.monotonic() + timeout
        while True:
            for group in groups:
                try:
                    os.killpg(group, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if process.process is not None:
                process.process.poll()  # reap the leader
            left = [pid for pid, (_, group) in _process_table().items() if group in groups]
            if not left:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: processes survived SIGKILL: {left}")
            time.sleep(0.2)
        process.stop(timeout=5)  # reaps the leader, closes its log, proves the group is gone
        self.retired.append(process)
        return killed

    def stop_component(self, name: str, timeout: float = 30) -> dict[str, Any]:
        """Stop the component `name` as an orchestrator does: SIGTERM to its process group, SIGKILL
        after `timeout` seconds. Returns {"signal": the one that ended it, "seconds": how long it took}."""
        process = self._component(name)
        started = time.monotonic()
        ended_by = "SIGTERM"
        try:
            os.killpg(process.pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = started + timeout
        while process.group_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        if process.group_alive():
            ended_by = "SIGKILL"
        process.stop(timeout=0.5)  # SIGKILLs what is left, reaps, closes the log; raises if anything survives
        self.retired.append(process)
        return {"signal": ended_by, "seconds": round(time.monotonic() - started, 1)}

    def start_component(self, name: str, *, wait: bool = True, timeout: float = 180) -> ManagedProcess:
        """Start the component `name` with its command and the run's environment (its log is appended
        to); with `wait`, return once it is back: the API server answers, the worker answers a Celery
        ping, a scheduler, triggerer or dag-processor has heartbeated since it was started."""
        if name not in self.commands:
            raise ValueError(f"{name!r} is not an Airflow component of this stack ({', '.join(self.commands)})")
        current = self.processes.get(name)
        if current is not None and current.group_alive():
            raise RuntimeError(f"{name} is still running (group {current.pgid})")
        since = time.time()
        process = self.processes[name] = ManagedProcess(name, self.commands[name], self.env_for(name),
                                                        self.log_path(name)).start()
        if wait:
            if _WORKER_NAME.match(name):
                self._wait_worker(name, timeout)
            elif name == "airflow-apiserver":
                wait_for_http(f"{self.base_url}/api/v2/monitor/health", timeout=timeout, process=process)
            else:
                self._wait_heartbeat(name, since, timeout)
        return process

    def restart(self, name: str, *, kill: bool = False, timeout: float = 180) -> dict[str, Any]:
        """Stop (`stop_component`, or `kill` with kill=True) and start the component `name` again; wait
        until it is back. Returns what happened: {"stopped": ..., "down_seconds": ...}."""
        started = time.monotonic()
        stopped: Any = self.kill(name) if kill else self.stop_component(name)
        self.start_component(name, timeout=timeout)
        return {"stopped": stopped, "down_seconds": round(time.monotonic() - started, 1)}

    def _wait_heartbeat(self, name: str, since: float, timeout: float = 180) -> None:
        import datetime as dt

        part, field_name = _HEARTBEATS[name]
        process = self.processes[name]
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if not process.running():
                raise RuntimeError(f"{name} exited early; see {process.log_path}")
            try:
                last = requests.get(f"{self.base_url}/api/v2/monitor/health", timeout=5).json().get(part) or {}
                beat = last.get(field_name)
                if last.get("status") == "healthy" and beat and dt.datetime.fromisoformat(beat).timestamp() >= since:
                    return
            except (requests.RequestException, ValueError) as exc:
                last = repr(exc)
            time.sleep(1)
        raise TimeoutError(f"{name} did not heartbeat within {timeout:.0f}s of its start: {last}")

    # --- stop -----------------------------------------------------------------------------------

    def stop(self) -> Teardown:
        """Stop every process group, make sure no process of the run is left, delete the run's Redis
        keys, drop both databases. Never raises: what went wrong is in the returned Teardown."""
        report = Teardown()
        order = [*self.worker_names, *(n for n in STOP_ORDER if n != WORKER)]
        names = [n for n in order if n in self.processes] + [n for n in self.processes if n not in order]
        # The process groups the components' children moved into (task runners): a process that sets
        # its title hides RUN_MARKER from /proc, so the sweep below also looks for these groups.
        groups: set[int] = set()
        for name in names:
            if self.processes[name].running():
                groups |= set(process_tree(self.processes[name].pgid).values())
        for name in names:
            try:
                self.processes[name].stop(timeout=30)
            except Exception as exc:  # noqa: BLE001 - reported, and the sweep below kills what is left
                report.stop_errors.append(f"{name}: {exc}")

        def left() -> list[dict[str, Any]]:
            found = {p["pid"]: p for p in processes_with_marker(self.run_id)}
            for pid, (_, group) in _process_table().items():
                if group in groups and pid not in found and pid != os.getpid():
                    found[pid] = {"pid": pid, "pgid": group, "cmdline": _cmdline(pid)}
            return list(found.values())

        deadline = time.monotonic() + 10
        leftovers = left()
        while leftovers and time.monotonic() < deadline:
            time.sleep(0.5)
            leftovers = left()
        if leftovers:
            report.leftover_processes = leftovers
            for proc in leftovers:
                try:
                    os.kill(proc["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._clean_redis(report)
        self._drop_databases(report)
        if self.teardown is None:  # the first stop() is the one that found things; keep its report
            self.teardown = report
        return report

    def _clean_redis(self, report: Teardown) -> None:
        if not self.env:
            return
        import redis

        try:
            client = redis.Redis.from_url(self.redis_url, socket_timeout=5)
            keys = list(client.scan_iter(match=f"{self.redis_prefix}*", count=1000))
            if keys:
                report.redis_keys_deleted = int(client.delete(*keys))
            # Anything that names this run's queue must have carried the prefix too.
            report.redis_keys_left = sorted(k.decode(errors="replace") for k in client.scan_iter(
                match=f"*{self.queue}*", count=1000))
        except redis.RedisError as exc:
            report.stop_errors.append(f"redis cleanup: {exc}")

    def _drop_databases(self, report: Teardown) -> None:
        if not self._databases:
            return
        import psycopg

        parts = postgres_parts(self.postgres_url)
        try:
            with psycopg.connect(dbname="postgres", autocommit=True, connect_timeout=10, **parts) as conn:
                for name in list(self._databases):
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    report.databases_dropped.append(name)
                    self._databases.remove(name)
                rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                    (f"incident_ops_dist_{self.run_id}%",)).fetchall()
                report.databases_left = [row[0] for row in rows]
        except psycopg.Error as exc:
            report.stop_errors.append(f"dropping databases: {exc}")
            report.databases_left = list(self._databases)

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.log_path(name)
        if not path.exists():
            return f"({path} does not exist)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def log_tails(self, lines: int = 30) -> str:
        return "\n\n".join(f"--- {name} ---\n{self.log_tail(name, lines)}" for name in self.processes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="One incident through Airflow on CeleryExecutor + PostgreSQL + Redis.")
    parser.add_argument("--scenario", default="deploy", choices=["deploy", "resource", "database", "external", "security"])
    parser.add_argument("--state", type=Path, default=PROJECT_ROOT / "state" / "distributed")
    parser.add_argument("--postgres-url", default=os.environ.get("INCIDENT_OPS_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--report", type=Path, default=None, help="write the incident report (JSON) here")
    parser.add_argument("--workers", type=int, default=1,
                        help="Celery workers (airflow-worker, airflow-worker-2, ...), each with its own state folder")
    parser.add_argument("--worker-concurrency", type=int, default=4, help="task slots of each worker")
    parser.add_argument("--artifacts", choices=ARTIFACT_STORES, default="file",
                        help="where evidence, charts and postmortems go: each worker's folder, or the sandbox's S3 bucket")
    args = parser.parse_args(argv)
    stack = DistributedStack(args.state, postgres_url=args.postgres_url, redis_url=args.redis_url,
                             workers=args.workers, worker_concurrency=args.worker_concurrency, artifacts=args.artifacts)
    status = 1
    try:
        stack.start()
        report = run_incident(stack, args.scenario)
        status = 0 if report["dag_run_state"] == "success" and report["healthy"] else 1
        print(f"run {report['dag_run_id']}: {report['dag_run_state']}, healthy={report['healthy']}, "
              f"{report['seconds']} s; postmortem {report['postmortem']}")
        if args.report:
            args.report.write_text(json.dumps(report, ensure_ascii=False, indent=2, default=str))
    finally:
        stack.stop()
        teardown = stack.teardown or Teardown()  # the first stop's report (start() stops on failure)
        print(f"stopped: clean={teardown.clean} {teardown}")
        if not teardown.clean:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
