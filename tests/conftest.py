"""Shared fixtures: the project's runbook, the service-availability rule for PostgreSQL/Redis, and the
test tiers (the `server` marker put on tests that use a server fixture; the guard of `make check`)."""

from __future__ import annotations

import copy
import functools
import os
import secrets
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import settings as hypothesis_settings

from incident_ops.core.runbook import DEFAULT_RUNBOOK_PATH, Runbook, load_runbook

PROJECT_ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def service_reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip with a reason when the service is absent; in CI (CI=true) it must be there, so fail."""
    if service_reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if IN_CI:
        pytest.fail(f"{message}, and CI=true requires it")
    pytest.skip(message)


@pytest.fixture(scope="session")
def runbook() -> Runbook:
    return load_runbook()


@functools.cache
def _runbook_yaml() -> Any:
    return yaml.load(DEFAULT_RUNBOOK_PATH.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def runbook_data() -> dict[str, Any]:
    """The project's runbook file as data, a copy of its own for the caller to change (parse_runbook
    it then). Read once: yaml.safe_load of the file takes 0.2 s, a copy 2 ms."""
    return copy.deepcopy(_runbook_yaml())


@pytest.fixture(autouse=True)
def _fresh_object_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow caches one file system per scheme and connection id for the process: a test that opened
    `s3://` with one `aws_default` would hand its file system (its endpoint) to the next. Each test
    starts with an empty cache (only when Airflow's storage module is loaded: the pure tests never do)."""
    store = sys.modules.get("airflow.sdk.io.store")
    if store is not None:
        monkeypatch.setattr(store, "_STORE_CACHE", {})


@pytest.fixture
def postgres_url() -> str:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    return os.environ.get("INCIDENT_OPS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def _postgres_databases() -> Iterator[dict[str, str]]:
    """Test databases created this session ({url: admin url}); dropped at the end."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from incident_ops.core import ledger as ledger_module

    created: dict[str, str] = {}
    yield created
    ledger_module.dispose_engines()
    for url, admin_url in created.items():
        name = make_url(url).database
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                force = " WITH (FORCE)" if conn.dialect.server_version_info >= (13,) else ""
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"{force}'))
        finally:
            admin.dispose()


@pytest.fixture
def postgres_ledger_url(postgres_url: str, _postgres_databases: dict[str, str]) -> str:
    """A PostgreSQL ledger database of this test session's own (incident_ops_test_<pid>_<hex>),
    created once, emptied for each test, dropped at the end of the session."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from incident_ops.core.ledger import Ledger, events_table, incidents_table

    if not _postgres_databases:
        name = f"incident_ops_test_{os.getpid()}_{secrets.token_hex(4)}"
        admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        finally:
            admin.dispose()
        url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
        _postgres_databases[url] = postgres_url
    url = next(iter(_postgres_databases))
    with Ledger(url).engine.begin() as conn:
        conn.execute(events_table.delete())
        conn.execute(incidents_table.delete())
    return url


# ------------------------------------------------------------------------------------------------
# Test tiers (markers in pyproject.toml). `make test` runs everything; `make check` sets
# INCIDENT_OPS_TEST_TIER=check and deselects `slow`, `process` and `server`. There the guard below
# makes a test that starts a subprocess or a server without the marker fail at once, naming it.

CHECK_TIER = os.environ.get("INCIDENT_OPS_TEST_TIER", "").lower() == "check"

# Hypothesis: the full number of examples in `make test`, fewer in the check tier (the same properties,
# a smaller sample). FUZZ_EXAMPLES=2000 for a longer run (tests/webhooks/test_fuzz.py).
hypothesis_settings.register_profile(
    "incident_ops", max_examples=int(os.environ.get("FUZZ_EXAMPLES", "25" if CHECK_TIER else "150")), deadline=None)
hypothesis_settings.load_profile("incident_ops")

# Fixtures that start a local server in the test process. A test that uses one (directly or through
# another fixture: `fixturenames` is the closure) is marked `server` at collection.
SERVER_FIXTURES = frozenset({
    "make_httpserver", "make_httpserver_ipv4", "make_httpserver_ipv6",  # pytest-httpserver (`httpserver`)
    "https_server", "smtp_sink",  # tests/clients/conftest.py (`fake_pd`)
    "pd_tls", "smtp",  # tests/notification_fakes.py (`fake_pd`, `pager`)
    "sandbox",  # tests/webhooks/conftest.py
    "sandbox_server",  # tests/sandbox/conftest.py (`sb`, `sb_light`, `client`, `aws` there)
    "starttls_server",  # tests/clients/test_email.py
    "hanging_server",  # tests/faults/test_faults.py
    "moto_s3",  # tests/flows/conftest.py (a moto server for s3://)
})


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.server)


class TierGuard:
    """In the check tier: a subprocess or a listening socket started while a test runs (its setup,
    including session- and package-scoped fixtures, its body, its teardown) fails that test unless it
    carries the marker. Installed once per session; costs nothing until something starts."""

    MARKERS = {"subprocess": "process", "server": "server"}

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.item: pytest.Item | None = None
        self.messages: list[str] = []  # raised during the current phase, for the report
        self.pending: str | None = None  # raised in another thread, for the main thread

    def violate(self, kind: str, what: str) -> None:
        item = self.item
        marker = self.MARKERS[kind]
        if item is None or os.getpid() != self.pid or item.get_closest_marker("slow") or item.get_closest_marker(marker):
            return
        if kind == "subprocess" and self._library_probe():
            return
        message = (f"this test starts a {kind} ({what}{self._origin()}): mark it `{marker}` "
                   f"(`make check` runs no test that starts a {kind})")
        self.messages.append(message)
        if threading.current_thread() is not threading.main_thread():
            # A server thread (moto, uvicorn, aiosmtpd): fail the waiting test now, not at its timeout.
            self.pending = message
            signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)
        pytest.fail(message, pytrace=False)

    def interrupt(self, signum: int, frame: Any) -> None:
        message, self.pending = self.pending, None
        if message is not None:
            pytest.fail(message, pytrace=False)

    @staticmethod
    def _library_probe() -> bool:
        """The standard library's own probes (`file -b` for platform.architecture(), which croniter
        calls on import; ldconfig for ctypes.util.find_library) and matplotlib's `fc-list` when it
        builds its font cache (once per machine): a library's set-up, not the test."""
        import ctypes.util
        import platform

        probes = {platform.__file__, ctypes.util.__file__}
        frame = sys._getframe(2)
        while frame is not None:
            name = frame.f_code.co_filename
            if name in probes or name.endswith(os.path.join("matplotlib", "font_manager.py")):
                return True
            frame = frame.f_back
        return False

    @staticmethod
    def _origin() -> str:
        """The innermost frame of the project's own code (tests, include, plugins, scripts)."""
        guard_file = str(Path(__file__))
        for frame in reversed(traceback.extract_stack()[:-3]):
            if frame.filename.startswith(str(PROJECT_ROOT)) and ".venv" not in frame.filename \
                    and frame.filename != guard_file:
                return f", from {Path(frame.filename).relative_to(PROJECT_ROOT)}:{frame.lineno}"
        return ""

    def install(self, mp: pytest.MonkeyPatch) -> None:
        import _posixsubprocess
        import multiprocessing.process
        import subprocess

        def wrap(owner: Any, name: str, kind: str, describe: Any) -> None:
            original = getattr(owner, name, None)
            if original is None:
                return

            def guarded(*args: Any, **kwargs: Any) -> Any:
                self.violate(kind, describe(*args))
                return original(*args, **kwargs)

            mp.setattr(owner, name, guarded)

        def listening(sock: socket.socket, *_: Any) -> str:
            try:
                address = sock.getsockname()
            except OSError:
                address = "?"
            if isinstance(address, tuple):
                address = f"{address[0]}:{address[1]}"
            return f"listen() on {address}"

        def command(popen: Any, args: Any, *_: Any) -> str:
            words = [args] if isinstance(args, str | bytes | os.PathLike) else list(args)
            return "`" + " ".join(os.fsdecode(w) for w in words)[:120] + "`"

        wrap(socket.socket, "listen", "server", listening)
        try:  # uvloop (uvicorn's default loop when installed) listens in C, not through socket.listen
            import uvloop
        except ImportError:
            pass
        else:
            for name in ("create_server", "create_unix_server"):
                wrap(uvloop.Loop, name, "server", lambda *_, name=name: f"uvloop {name}")
        wrap(subprocess.Popen, "_execute_child", "subprocess", command)
        wrap(multiprocessing.process.BaseProcess, "start", "subprocess", lambda process, *_: f"multiprocessing {process!r}")
        for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system"):
            wrap(os, name, "subprocess", lambda *_, name=name: f"os.{name}")
        wrap(_posixsubprocess, "fork_exec", "subprocess", lambda *_: "fork_exec")


_tier_guard = TierGuard()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    _tier_guard.item = item
    try:
        return (yield)
    finally:
        _tier_guard.item = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Iterator[pytest.TestReport]:
    report = yield
    messages, _tier_guard.messages = _tier_guard.messages, []
    if messages and report.passed:  # the test (or a thread of it) swallowed the failure: fail anyway
        report.outcome = "failed"
        report.longrepr = "\n".join(messages)
    return report


@pytest.fixture(scope="session", autouse=True)
def tier_guard() -> Iterator[None]:
    """Session-scoped, so it is set up before any other fixture (server fixtures of any scope start
    inside some test's setup, and fail that test)."""
    if not CHECK_TIER:
        yield
        return
    previous = signal.signal(signal.SIGUSR1, _tier_guard.interrupt)
    with pytest.MonkeyPatch.context() as mp:
        _tier_guard.install(mp)
        try:
            yield
        finally:
            signal.signal(signal.SIGUSR1, previous)


# Fixtures of the notification fan-out against local fakes (tests/notification_fakes.py), shared by
# tests/test_notify.py and tests/faults/.
from tests.notification_fakes import fake_pd, fake_slack, pager, pd_tls, slack_sleeps, smtp  # noqa: E402, F401
