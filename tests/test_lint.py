"""The house style is enforced in CI: ruff (with Airflow's AIR rules) passes on the whole tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# ruff in a subprocess; `make check` runs ruff itself first (`make lint`).
pytestmark = pytest.mark.process


def test_ruff_passes() -> None:
    ruff = Path(sys.executable).parent / "ruff"
    result = subprocess.run(
        [str(ruff), "check", "dags", "plugins", "tests", "scripts", "bench", "include"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:]
