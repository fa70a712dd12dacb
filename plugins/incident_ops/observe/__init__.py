"""Read-only observation of the service (AWS state, logs, metrics) as plain JSON-serialisable dicts."""

from incident_ops.observe.aws import (
    alarms_in_alarm,
    ecs_service_state,
    error_log_events,
    fetch_metrics,
    metric_query_id,
)

__all__ = ["alarms_in_alarm", "ecs_service_state", "error_log_events", "fetch_metrics", "metric_query_id"]
