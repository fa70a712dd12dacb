"""`python -m incident_ops`: the command line (see incident_ops.cli.main)."""

from incident_ops.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
