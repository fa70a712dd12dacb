"""The command line: `incident-ops` (installed by make), or `python -m incident_ops` from plugins/.

The subcommands and their framework are in `incident_ops.cli.main`; `playbook` and `schedule` add
theirs. This package's `__init__` stays light: `run` is the process entry point.
"""

from __future__ import annotations

import os

__all__ = ["run"]


def run() -> int:
    """The `incident-ops` process: process-wide settings first, then the command line."""
    # Pydantic otherwise scans every installed distribution's entry points for plugins on the first
    # model (tens of ms in Airflow's environment); the command line uses none.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from incident_ops.cli.main import main

    return main()
