"""`python -m incident_ops`: the command line (see incident_ops.cli)."""

from incident_ops.cli import run

if __name__ == "__main__":
    raise SystemExit(run())
