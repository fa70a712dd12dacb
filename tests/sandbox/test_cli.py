"""`python -m sandbox` as a process: writes endpoints.json, serves, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

PROJECT_ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]  # its own waits: 60 s to start, 30 s to stop


def test_cli_start_serve_stop(tmp_path: Path) -> None:
    state_dir = tmp_path / "sandbox"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT / "plugins"), str(PROJECT_ROOT / "include")])}
    command = [sys.executable, "-m", "sandbox", "--state-dir", str(state_dir), "--aws-port", "0", "--http-port", "0", "--https-port", "0"]
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        endpoints_file = state_dir / "endpoints.json"
        deadline = time.monotonic() + 60
        while not endpoints_file.exists():
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, "no endpoints.json"
            time.sleep(0.2)
        endpoints = json.loads(endpoints_file.read_text())
        assert endpoints["pid"] == process.pid
        assert Path(endpoints["ca_bundle"]).is_file()
        assert all(endpoints[key].split("//")[1].startswith("127.0.0.1:") for key in ("aws", "http", "https"))
        assert requests.get(endpoints["health_url"], timeout=10).json()["status"] == "healthy"
        assert requests.get(f"{endpoints['https']}/pb/health", verify=endpoints["ca_bundle"], timeout=10).status_code == 200

        os.killpg(process.pid, signal.SIGTERM)
        out, err = process.communicate(timeout=30)
        assert process.returncode == 0, err.decode()
        assert json.loads(out.decode())["http"] == endpoints["http"]
        assert not endpoints_file.exists()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
