"""`make demo` lifecycle: local Airflow comes up with the DAG listed, listening on 127.0.0.1 only, the
login printed is the state folder's own, and Ctrl-C (SIGINT) stops every process the demo started —
nothing of its process groups survives."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts.airflow_local import free_port_block

PROJECT_ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) of every live process (/proc/<pid>/stat)."""
    table = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            table[int(proc.name)] = (int(fields[1]), int(fields[2]))
    return table


def descendants(pid: int) -> list[int]:
    """Every live process started by `pid`, at any depth (setproctitle hides AIRFLOW_HOME of some)."""
    table = process_table()
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        children = [child for child, (ppid, _) in table.items() if ppid == parent]
        found.extend(children)
        todo.extend(children)
    return found


def listening_addresses(pids: list[int]) -> set[tuple[str, int]]:
    """(address, port) of the TCP sockets those processes listen on (/proc/net/tcp and tcp6)."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            # the kernel prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.add((socket.inet_ntop(family, raw), int(port, 16)))
    return found


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
        password = (tmp_path / "admin-password").read_text().strip()
        assert f"Login      : admin / {password}" in text, text
        assert processes_under(tmp_path / "airflow"), "Airflow should be running before Ctrl-C"
        started = descendants(demo.pid)
        table = process_table()
        groups = {table[pid][1] for pid in started if pid in table}
        listening = listening_addresses(started)
        assert ("127.0.0.1", base + 3) in listening and ("127.0.0.1", base + 1) in listening, listening
        assert {address for address, _ in listening} == {"127.0.0.1"}, f"listening beyond 127.0.0.1: {listening}"

        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=90)
        assert demo.returncode == 0, rest
        assert "no process of the demo is left" in rest
        assert processes_under(tmp_path / "airflow") == []
        left = [pid for pid, (_, group) in process_table().items() if group in groups]
        assert left == [], f"processes of the demo's groups {sorted(groups)} survived: {left}"
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
