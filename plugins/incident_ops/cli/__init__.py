"""The command line (`incident-ops`, or `python -m incident_ops`): see `incident_ops.cli.main`.

Kept empty so that importing a subcommand module costs only what that module needs.
"""
