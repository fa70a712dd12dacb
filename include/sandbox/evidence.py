"""What each broken scenario looks like from the outside: alarms, log lines, metrics, Sentry issues.

Data only (scenarios.py and sentry.py apply it). The wording matches the runbook's scenario
signals (`log_terms`, `metrics_above`, `alarms`) so the evidence points at the scenario.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ALARMS", "ERROR_LINES", "METRICS", "SENTRY_BASELINE", "SENTRY_ISSUES", "alarm_reason"]

# Alarm name suffixes (after "<cluster>-") a break puts in ALARM.
ALARMS: dict[str, tuple[str, ...]] = {
    "deploy": ("alb-5xx",),
    "resource": ("backend-cpu-high", "backend-memory-high"),
    "database": ("rds-connections-high", "rds-cpu-high"),
    "external": ("health-check-failed",),
    "security": ("health-check-failed",),
}


def alarm_reason(suffix: str, value: float) -> str:
    thresholds = {
        "alb-5xx": 50.0,
        "backend-cpu-high": 85.0,
        "backend-memory-high": 85.0,
        "rds-connections-high": 500.0,
        "rds-cpu-high": 90.0,
        "health-check-failed": 0.0,
    }
    threshold = thresholds.get(suffix, 0.0)
    return (
        f"Threshold Crossed: 2 out of the last 3 datapoints [{value:.1f}, {value:.1f}] were greater than "
        f"the threshold ({threshold:.1f}) (minimum 2 datapoints for OK -> ALARM transition)."
    )


# Metric ids of seed.baseline_metrics -> value while the scenario's problem lasts (the max wins).
METRICS: dict[str, dict[str, float]] = {
    "deploy": {"alb_5xx": 420.0, "ecs_cpu:backend": 46.0, "unhealthy_hosts": 2.0},
    # Too few healthy targets: the load balancer answers 502/503 itself (ELB 5xx), the targets hardly any.
    "resource": {"ecs_cpu:backend": 96.5, "ecs_memory:backend": 93.0, "alb_requests": 5200.0, "alb_5xx": 4.0,
                 "elb_5xx": 240.0, "unhealthy_hosts": 1.0},
    "database": {"rds_connections": 640.0, "rds_cpu": 97.0, "alb_5xx": 350.0, "unhealthy_hosts": 4.0},
    "external": {"alb_5xx": 120.0, "unhealthy_hosts": 4.0},
    "security": {"alb_requests": 9500.0, "alb_5xx": 40.0, "unhealthy_hosts": 4.0},
}

# (level, application/error message) lines, repeated over the last minutes of a break.
ERROR_LINES: dict[str, tuple[tuple[str, str], ...]] = {
    "deploy": (
        ("ERROR", "ImportError: cannot import name 'calculate_score_v2' from 'peoplebooster.diagnoses.scoring' (/app/peoplebooster/diagnoses/scoring.py) image={image}"),
        ("ERROR", "TypeError: calculate_score() missing 1 required positional argument: 'weights' POST /api/v1/diagnoses request_id={rid}"),
        ("ERROR", "POST /api/v1/diagnoses 500 38ms 診断の作成に失敗しました request_id={rid}"),
    ),
    "resource": (
        ("ERROR", "Timeout: request exceeded 30s GET /api/v1/reports/8011 (worker timeout) request_id={rid}"),
        ("ERROR", "OutOfMemory: worker pid 41 killed by the OOM killer (memory 2048 MiB) task={task}"),
        ("WARN", "CPU throttled, p99 latency 8.2s; 応答が遅延しています request_id={rid}"),
    ),
    "database": (
        ("ERROR", "database: connection to server at \"{writer}\" port 5432 failed: Connection refused (connection refused)"),
        ("ERROR", "psycopg.OperationalError: could not connect to server: connection refused. Is the server running on host \"{writer}\" and accepting TCP/IP connections on port 5432?"),
        ("ERROR", "データベースに接続できません: database connection refused request_id={rid}"),
    ),
    "external": (
        ("ERROR", "ExternalServiceError: payments upstream returned 503 Service Unavailable (api.example-payments.com)"),
        ("ERROR", "upstream request timed out after 10s: POST https://api.example-payments.com/v1/charges request_id={rid}"),
        ("ERROR", "ExternalServiceError: 外部決済サービスに接続できません (upstream)"),
    ),
    "security": (
        ("ERROR", "SecurityAlert unauthorized: access to /api/v1/admin/users from 203.0.113.45 with a forged token"),
        ("WARN", "SecurityAlert: unauthorized login burst for healthcheck@peoplebooster.com from 198.51.100.7 (412 attempts/min)"),
        ("ERROR", "SecurityAlert unauthorized: 不正アクセスの疑い outbound connection to 192.0.2.66:4444 from task {task}"),
    ),
}

# Sentry issues a broken scenario produces: (title, culprit, metadata type, value, events/min, users).
SENTRY_ISSUES: dict[str, tuple[tuple[str, str, str, str, float, int], ...]] = {
    "deploy": (
        ("TypeError: calculate_score() missing 1 required positional argument: 'weights'", "peoplebooster.diagnoses.views in create_diagnosis", "TypeError", "calculate_score() missing 1 required positional argument: 'weights'", 95.0, 640),
        ("ImportError: cannot import name 'calculate_score_v2'", "peoplebooster.diagnoses.scoring in <module>", "ImportError", "cannot import name 'calculate_score_v2' from 'peoplebooster.diagnoses.scoring'", 40.0, 310),
    ),
    "resource": (
        ("Timeout: request exceeded 30s", "peoplebooster.reports.views in render_report", "Timeout", "request exceeded 30s (worker timeout)", 60.0, 420),
        ("OutOfMemory: worker killed by the OOM killer", "peoplebooster.reports.pdf in build", "OutOfMemory", "worker killed by the OOM killer (memory 2048 MiB)", 12.0, 90),
    ),
    "database": (
        ("OperationalError: could not connect to server: Connection refused", "peoplebooster.db in connect", "OperationalError", "could not connect to server: Connection refused", 140.0, 980),
    ),
    "external": (
        ("ExternalServiceError: payments upstream returned 503", "peoplebooster.payments.client in charge", "ExternalServiceError", "payments upstream returned 503 Service Unavailable", 55.0, 380),
    ),
    "security": (
        ("SecurityAlert: unauthorized access to /api/v1/admin/users", "peoplebooster.admin.views in list_users", "SecurityAlert", "unauthorized access with a forged token", 25.0, 3),
    ),
}

# The long-standing, low-volume issue every real project has (Sentry is never quite empty).
SENTRY_BASELINE: tuple[dict[str, Any], ...] = (
    {
        "title": "ValidationError: email format is invalid",
        "culprit": "peoplebooster.auth.views in login",
        "type": "ValidationError",
        "value": "email format is invalid",
        "age_hours": 9 * 24,
        "count": 12,
        "users": 7,
        "level": "warning",
    },
)
