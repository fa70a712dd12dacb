"""The task bodies: what each task of the DAGs does, on the core, the actions and the clients.

`incident` (incident_response's phases), `escalation` (incident_escalate), `scheduled` (the handoff,
postmortem reminders and report DAGs). DAG files import these lazily, inside their tasks.
"""
