"""`python -m incident_ops`: the command line (see incident_ops.cli)."""

from incident_ops.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
