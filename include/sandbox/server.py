"""Start and stop the sandbox: moto (AWS), and one app over HTTP and HTTPS, all on 127.0.0.1.

`start_sandbox(state_dir, ports)` runs everything in threads of the calling process and returns a
`Sandbox` (a context manager): `.endpoints`, `.client`, `.aws_env()`, `.stop()`. Ports default to
free ones (tests); `python -m sandbox` passes 5055/5056/5057. On start the sandbox writes
`<state_dir>/endpoints.json` ({aws, http, https, ca_bundle, pid, ...}); a clean stop removes it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from moto.server import ThreadedMotoServer

from .app import build_app
from .aws import AwsClients, aws_env, boto3_session, moto_fixes
from .certs import ensure_certs
from .client import SandboxClient
from .context import SandboxContext
from .scenarios import Evaluator
from .webhooks import DEFAULT_PAGERDUTY_WEBHOOK_SECRET, DEFAULT_SLACK_SIGNING_SECRET, WebhookConfig, webhook_urls

__all__ = ["DEFAULT_PORTS", "Sandbox", "start_sandbox"]

DEFAULT_PORTS = {"aws": 5055, "http": 5056, "https": 5057}
HOST = "127.0.0.1"
log = logging.getLogger(__name__)


def _bind(port: int, host: str = HOST) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise RuntimeError(f"cannot listen on {host}:{port}: {exc.strerror} (is another sandbox running?)") from exc
    sock.listen(128)
    sock.set_inheritable(False)
    return sock


def _check_free(port: int, host: str = HOST) -> None:
    if port:
        _bind(port, host).close()


class _Server:
    """One uvicorn server on a pre-bound socket, in a thread."""

    def __init__(self, app: Any, sock: socket.socket, name: str, **ssl: Any) -> None:
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", loop="asyncio", timeout_graceful_shutdown=2, **ssl)
        self.server = uvicorn.Server(config)
        self.sock = sock
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)

    def start(self, timeout: float = 15.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{self.thread.name} did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


class Sandbox:
    def __init__(self, state_dir: Path, endpoints: dict[str, Any], ctx: SandboxContext, moto: ThreadedMotoServer,
                 servers: list[_Server], evaluator: Evaluator) -> None:
        self.state_dir = state_dir
        self.endpoints = endpoints
        self.ctx = ctx
        self._moto = moto
        self._servers = servers
        self._evaluator = evaluator
        self._stopped = False
        self.client = SandboxClient(endpoints)

    def aws_env(self) -> dict[str, str]:
        """Environment variables that point boto3 at this sandbox's moto."""
        return aws_env(self.endpoints["aws"], self.endpoints["region"])

    def session(self) -> Any:
        """A boto3 session with the test credentials (give its clients endpoint_url=endpoints['aws'])."""
        return boto3_session(self.endpoints["region"])

    def boto3_client(self, service: str) -> Any:
        return self.session().client(service, endpoint_url=self.endpoints["aws"])

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.ctx.github.cancel_all()
        self._evaluator.stop()
        self.ctx.pagerduty_webhooks.stop()
        for server in self._servers:
            server.stop()
        self._moto.stop()
        moto_fixes(False)
        path = self.state_dir / "endpoints.json"
        try:
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()
        except (OSError, ValueError):
            pass

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_sandbox(
    state_dir: str | Path,
    ports: dict[str, int] | None = None,
    *,
    runbook: Any = None,
    environment: str = "production",
    environments: list[str] | None = None,
    github_delay: float = 3.0,
    tick_seconds: float = 5.0,
    resource_need: int = 8,
    write_endpoints: bool = True,
    host: str = HOST,
    public_host: str | None = None,
    airflow_url: str | None = None,
    slack_url: str | None = None,
    pagerduty_url: str | None = None,
    slack_signing_secret: str = DEFAULT_SLACK_SIGNING_SECRET,
    pagerduty_webhook_secret: str = DEFAULT_PAGERDUTY_WEBHOOK_SECRET,
) -> Sandbox:
    """Start moto, seed it, serve the app on HTTP and HTTPS; ports None/0 = free ports.

    `host` is the address to listen on (0.0.0.0 in a container); `public_host` the name other
    machines/containers use (it goes into endpoints.json and the HTTPS certificate).
    Where Slack's and PagerDuty's deliveries go: `airflow_url` (the API server's base URL: its
    /incidents/webhooks/slack and /incidents/webhooks/pagerduty), or `slack_url` / `pagerduty_url`
    themselves (they win); none: nothing is delivered until POST /_sandbox/webhooks sets them.
    `pagerduty_webhook_secret` may name several secrets (comma-separated: one signature each)."""
    from incident_ops.core.runbook import load_runbook

    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    runbook = runbook or load_runbook()
    wanted = {"aws": 0, "http": 0, "https": 0, **(ports or {})}
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    local = HOST if host in ("0.0.0.0", "::", "") else host  # how this process reaches its own servers
    public = public_host or local
    _check_free(wanted["aws"], host)
    http_sock = _bind(wanted["http"], host)
    https_sock = _bind(wanted["https"], host)
    moto_fixes(True)
    moto = ThreadedMotoServer(ip_address=host, port=wanted["aws"], verbose=False)
    moto.start()
    started: list[Any] = [moto]
    try:
        aws_port = moto.get_host_and_port()[1]
        region = runbook.environment(environment).region
        aws = AwsClients.create(f"http://{local}:{aws_port}", region)
        webhooks = WebhookConfig()
        default_slack, default_pagerduty = webhook_urls(airflow_url)
        webhooks.update({"slack_url": slack_url or default_slack, "pagerduty_url": pagerduty_url or default_pagerduty,
                         "slack_signing_secret": slack_signing_secret, "pagerduty_webhook_secrets": pagerduty_webhook_secret})
        ctx = SandboxContext(
            runbook,
            aws,
            env_name=environment,
            environments=environments,
            github_delay=github_delay,
            tick_seconds=tick_seconds,
            resource_need=resource_need,
            webhooks=webhooks,
        )
        ctx.seed()
        certs = ensure_certs(state_dir, extra_hosts=[public] if public != local else [])
        http_port = http_sock.getsockname()[1]
        https_port = https_sock.getsockname()[1]
        http = f"http://{public}:{http_port}"
        https = f"https://{public}:{https_port}"
        endpoints: dict[str, Any] = {
            "aws": f"http://{public}:{aws_port}",
            "http": http,
            "https": https,
            "ca_bundle": str(certs.ca_bundle.resolve()),
            "pid": os.getpid(),
            "region": region,
            # the automation's artifacts bucket in moto (INCIDENT_OPS_ARTIFACTS_URL=s3://<it>/<prefix>)
            "artifacts_bucket": ctx.names.artifacts_bucket,
            "state_dir": str(state_dir.resolve()),
            "health_url": f"{http}/pb/health",
            "api_base_url": f"{http}/pb",
            "slack_api": f"{http}/slack/api/",
            "pagerduty": f"{https}/pagerduty",
            "github_api": f"{http}/github",
            "sentry": f"{http}/sentry",
            "external_status_url": f"{http}/status/api/v2/status.json",
            "control": f"{http}/_sandbox",
            # where the sandbox delivers as Slack and PagerDuty (the secrets: GET /_sandbox/webhooks)
            "slack_request_url": webhooks.slack_url,
            "pagerduty_webhook_url": webhooks.pagerduty_url,
        }
        evaluator = Evaluator(ctx)
        app = build_app(ctx, evaluator, endpoints)
        servers = [
            _Server(app, http_sock, "sandbox-http"),
            _Server(app, https_sock, "sandbox-https", ssl_certfile=str(certs.cert_chain), ssl_keyfile=str(certs.private_key)),
        ]
        for server in servers:
            server.start()
            started.append(server)
        evaluator.start()
    except BaseException:
        for item in reversed(started):
            try:
                item.stop()
            except Exception:  # noqa: BLE001 - best effort while failing to start
                log.exception("sandbox: cleanup failed")
        http_sock.close()
        https_sock.close()
        moto_fixes(False)
        raise
    sandbox = Sandbox(state_dir, endpoints, ctx, moto, servers, evaluator)
    if write_endpoints:
        path = state_dir / "endpoints.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(endpoints, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
    return sandbox
