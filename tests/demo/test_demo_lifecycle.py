"""`make demo` lifecycle: Airflow standalone comes up with the DAG listed, and Ctrl-C (SIGINT) stops
every process the demo started — nothing of its process groups survives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts.airflow_local import free_port_block

PROJECT_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


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
        if f"AIRFLOW_HOME={root}".encode() in environ or f"--state-dir {root.parent}".encode() in cmdline.encode():
            found.append(f"{proc.name}: {cmdline}")
    return found


def test_demo_starts_and_ctrl_c_leaves_nothing(tmp_path: Path) -> None:
    base = free_port_block(4)
    demo = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "demo.py"), "--port", str(base + 3), "--state", str(tmp_path),
         "--no-incident", "--sandbox-port-base", str(base)],
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
            if "Ctrl-C stops it all" in line:
                break
        text = "".join(output)
        assert "Ctrl-C stops it all" in text, text
        assert f"http://127.0.0.1:{base + 3}" in text
        assert "Sandbox" in text
        assert processes_under(tmp_path / "airflow"), "Airflow should be running before Ctrl-C"

        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=90)
        assert demo.returncode == 0, rest
        assert "no process of the demo is left" in rest
        assert processes_under(tmp_path / "airflow") == []
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
