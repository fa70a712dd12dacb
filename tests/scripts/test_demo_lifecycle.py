"""`make demo` lifecycle: Airflow standalone comes up with the DAG listed, and Ctrl-C (SIGINT) stops
every process the demo started — nothing of its process groups survives."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def processes_under(root: Path) -> list[str]:
    """Command lines of live processes whose environment points AIRFLOW_HOME into `root`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if f"AIRFLOW_HOME={root}".encode() in environ:
            found.append(f"{proc.name}: {cmdline}")
    return found


def test_demo_starts_and_ctrl_c_leaves_nothing(tmp_path: Path) -> None:
    port = free_port()
    demo = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "demo.py"), "--port", str(port), "--state", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    try:
        deadline = time.monotonic() + 300
        assert demo.stdout is not None
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            if not line:
                break
            output.append(line)
            if "Press Ctrl-C" in line:
                break
        text = "".join(output)
        assert "Press Ctrl-C" in text, text
        assert f"http://127.0.0.1:{port}" in text
        assert "incident_response" in text
        assert "Import errors" not in text
        assert processes_under(tmp_path / "airflow"), "Airflow should be running before Ctrl-C"

        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=90)
        assert demo.returncode == 0, rest
        assert "no process of the demo is left" in rest
        assert processes_under(tmp_path / "airflow") == []
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
