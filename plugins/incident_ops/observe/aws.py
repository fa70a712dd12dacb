"""Read-only AWS observation for Phase 1 (confirm) and Phase 2 (investigate).

Every function takes a boto3 client and plain inputs, writes nothing, and returns plain
JSON-serialisable dicts (times as ISO 8601 UTC strings).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Any

from botocore.exceptions import ClientError

__all__ = [
    "alarms_in_alarm",
    "ecs_service_state",
    "error_log_events",
    "fetch_metrics",
    "metric_query_id",
]

_MAX_QUERIES = 500  # GetMetricData's limit per call


def _iso(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    return value


def _ms_iso(millis: int) -> str:
    return _iso(dt.datetime.fromtimestamp(millis / 1000, dt.UTC))


def _aware(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError(f"time {value!r} needs a UTC offset")
    return value


def _get(obj: Any, key: str, default: Any = None) -> Any:
    """Attribute or key (pydantic models from the runbook, or plain dicts)."""
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


# --- ECS ------------------------------------------------------------------------------------------


def ecs_service_state(ecs: Any, cluster: str, services: Iterable[str]) -> dict[str, Any]:
    """`aws ecs describe-services` for the services: counts, task definition, deployments, last events."""
    names = list(services)
    state: dict[str, Any] = {"cluster": cluster, "services": {}, "failures": []}
    for i in range(0, len(names), 10):  # DescribeServices takes up to 10 services
        answer = ecs.describe_services(cluster=cluster, services=names[i:i + 10])
        for svc in answer.get("services", []):
            state["services"][svc["serviceName"]] = {
                "status": svc.get("status"),
                "desired_count": svc.get("desiredCount"),
                "running_count": svc.get("runningCount"),
                "pending_count": svc.get("pendingCount"),
                "task_definition": svc.get("taskDefinition"),
                "deployments": [
                    {
                        "id": d.get("id"),
                        "status": d.get("status"),
                        "task_definition": d.get("taskDefinition"),
                        "desired_count": d.get("desiredCount"),
                        "running_count": d.get("runningCount"),
                        "pending_count": d.get("pendingCount"),
                        "failed_tasks": d.get("failedTasks"),
                        "rollout_state": d.get("rolloutState"),
                        "created_at": _iso(d.get("createdAt")),
                        "updated_at": _iso(d.get("updatedAt")),
                    }
                    for d in svc.get("deployments", [])
                ],
                "events": [
                    {"id": e.get("id"), "created_at": _iso(e.get("createdAt")), "message": e.get("message")}
                    for e in svc.get("events", [])[:5]
                ],
            }
        state["failures"].extend({"arn": f.get("arn"), "reason": f.get("reason")} for f in answer.get("failures", []))
    return state


# --- CloudWatch alarms ----------------------------------------------------------------------------


def alarms_in_alarm(cloudwatch: Any, prefix: str | None = None) -> list[dict[str, Any]]:
    """`aws cloudwatch describe-alarms --state-value ALARM` (metric and composite alarms)."""
    kwargs: dict[str, Any] = {"StateValue": "ALARM", "AlarmTypes": ["MetricAlarm", "CompositeAlarm"]}
    if prefix:
        kwargs["AlarmNamePrefix"] = prefix
    alarms: list[dict[str, Any]] = []
    for page in cloudwatch.get_paginator("describe_alarms").paginate(**kwargs):
        for alarm in page.get("MetricAlarms", []):
            if alarm.get("StateValue") != "ALARM":  # some implementations ignore StateValue with a prefix
                continue
            alarms.append({
                "name": alarm["AlarmName"],
                "type": "metric",
                "state": alarm.get("StateValue"),
                "reason": alarm.get("StateReason"),
                "updated_at": _iso(alarm.get("StateUpdatedTimestamp")),
                "namespace": alarm.get("Namespace"),
                "metric": alarm.get("MetricName"),
                "dimensions": {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])},
                "threshold": alarm.get("Threshold"),
            })
        for alarm in page.get("CompositeAlarms", []):
            if alarm.get("StateValue") != "ALARM":
                continue
            alarms.append({
                "name": alarm["AlarmName"],
                "type": "composite",
                "state": alarm.get("StateValue"),
                "reason": alarm.get("StateReason"),
                "updated_at": _iso(alarm.get("StateUpdatedTimestamp")),
                "rule": alarm.get("AlarmRule"),
            })
    return alarms


# --- CloudWatch Logs ------------------------------------------------------------------------------


def error_log_events(logs: Any, log_groups: Mapping[str, str], end: dt.datetime, minutes: int = 30,
                     pattern: str = "ERROR", limit: int = 200) -> dict[str, Any]:
    """The runbook's two `aws logs filter-log-events` commands over the last `minutes` before `end`.

    `log_groups` maps a key to a group name ({"application": ..., "error": ...}); the "error" group
    is read unfiltered, every other group with `pattern`. At most `limit` events per group (oldest
    first); `truncated` says there were more. A group that does not exist is reported as missing.
    """
    end = _aware(end)
    start = end - dt.timedelta(minutes=minutes)
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    result: dict[str, Any] = {"start": _iso(start), "end": _iso(end), "groups": {}, "total": 0}
    for key, group in log_groups.items():
        filter_pattern = None if key == "error" else pattern
        entry: dict[str, Any] = {"log_group": group, "filter_pattern": filter_pattern, "events": [],
                                 "count": 0, "truncated": False, "missing": False}
        kwargs: dict[str, Any] = {"logGroupName": group, "startTime": start_ms, "endTime": end_ms}
        if filter_pattern:
            kwargs["filterPattern"] = filter_pattern
        token = None
        try:
            while True:
                page = logs.filter_log_events(**kwargs, limit=min(limit, 10000), **({"nextToken": token} if token else {}))
                for event in page.get("events", []):
                    if len(entry["events"]) >= limit:
                        entry["truncated"] = True
                        break
                    entry["events"].append({
                        "timestamp": _ms_iso(event["timestamp"]),
                        "stream": event.get("logStreamName"),
                        "message": event.get("message", "").rstrip("\n"),
                    })
                token = page.get("nextToken")
                if entry["truncated"] or not token:
                    break
                if len(entry["events"]) >= limit:
                    entry["truncated"] = True
                    break
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
            entry["missing"] = True
        entry["count"] = len(entry["events"])
        result["groups"][key] = entry
        result["total"] += entry["count"]
    return result


# --- CloudWatch metrics ---------------------------------------------------------------------------


def metric_query_id(text: str) -> str:
    """A GetMetricData query id: starts with a lowercase letter, then letters, digits and `_`."""
    ident = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_")
    if not ident or not ident[0].islower() or not ident[0].isalpha():
        ident = f"m_{ident}"
    return ident[:255]


def _dimensions(spec: Any, environment: Any, service: str | None) -> list[dict[str, str]]:
    namespace = _get(spec, "namespace")
    cluster = _get(environment, "cluster")
    if namespace == "AWS/ECS":
        dims = [{"Name": "ClusterName", "Value": cluster}]
        if service:
            dims.append({"Name": "ServiceName", "Value": service})
        return dims
    if namespace == "AWS/ApplicationELB":
        return [{"Name": "LoadBalancer", "Value": _get(environment, "load_balancer")}]
    if namespace == "AWS/RDS":
        database = _get(environment, "database") or {}
        cluster_id = _get(database, "cluster_id")
        if cluster_id:
            return [{"Name": "DBClusterIdentifier", "Value": cluster_id}]
        return [{"Name": "DBInstanceIdentifier", "Value": _get(database, "instance_id")}]
    return [{"Name": k, "Value": v} for k, v in (_get(spec, "dimensions") or {}).items()]


def fetch_metrics(cloudwatch: Any, metric_specs: Iterable[Any], environment: Any, services: Iterable[str],
                  end: dt.datetime, minutes: int = 60, period: int = 60) -> dict[str, Any]:
    """All series of the runbook's metric list in one GetMetricData call (more only past 500 series
    or when CloudWatch pages the answer).

    `metric_specs`: the environment's `metrics` (MetricSpec models or dicts with id, label,
    namespace, metric, stat, unit, per_service, label_ja). per_service metrics are fetched once per ECS
    service (ClusterName/ServiceName); ALB ones by LoadBalancer; RDS ones by DBClusterIdentifier
    (DBInstanceIdentifier without a cluster). Returns {"series": {id: {label, label_ja, unit, metric,
    namespace, dimensions, service, stat, metric_id (the spec's id), timestamps, values}}, "api_calls", "start", "end", "period"}.
    """
    end = _aware(end)
    start = end - dt.timedelta(minutes=minutes)
    service_names = list(services)
    queries: list[dict[str, Any]] = []
    series: dict[str, dict[str, Any]] = {}
    for spec in metric_specs:
        for service in (service_names if _get(spec, "per_service") else [None]):
            base = metric_query_id(f"{_get(spec, 'id')}_{service}" if service else str(_get(spec, "id")))
            ident, n = base, 1
            while ident in series:
                n += 1
                ident = f"{base}_{n}"
            label = f"{_get(spec, 'label')} ({service})" if service else str(_get(spec, "label"))
            label_ja = _get(spec, "label_ja") or _get(spec, "label")
            dims = _dimensions(spec, environment, service)
            series[ident] = {
                "metric_id": _get(spec, "id"), "label": label,
                "label_ja": f"{label_ja}（{service}）" if service else str(label_ja),
                "unit": _get(spec, "unit"), "metric": _get(spec, "metric"),
                "namespace": _get(spec, "namespace"), "stat": _get(spec, "stat"), "service": service,
                "dimensions": {d["Name"]: d["Value"] for d in dims}, "timestamps": [], "values": [],
            }
            queries.append({
                "Id": ident,
                "Label": label,
                "MetricStat": {
                    "Metric": {"Namespace": _get(spec, "namespace"), "MetricName": _get(spec, "metric"),
                               "Dimensions": dims},
                    "Period": period,
                    "Stat": _get(spec, "stat"),
                },
                "ReturnData": True,
            })
    calls = 0
    points: dict[str, list[tuple[dt.datetime, float]]] = {ident: [] for ident in series}
    for i in range(0, len(queries), _MAX_QUERIES):
        token = None
        while True:
            kwargs: dict[str, Any] = {"MetricDataQueries": queries[i:i + _MAX_QUERIES], "StartTime": start,
                                      "EndTime": end, "ScanBy": "TimestampAscending"}
            if token:
                kwargs["NextToken"] = token
            answer = cloudwatch.get_metric_data(**kwargs)
            calls += 1
            for item in answer.get("MetricDataResults", []):
                points[item["Id"]].extend(zip(item.get("Timestamps", []), item.get("Values", []), strict=False))
            token = answer.get("NextToken")
            if not token:
                break
    for ident, pairs in points.items():
        pairs.sort(key=lambda p: p[0])
        series[ident]["timestamps"] = [_iso(t) for t, _ in pairs]
        series[ident]["values"] = [float(v) for _, v in pairs]
    return {"series": series, "api_calls": calls, "start": _iso(start), "end": _iso(end), "period": period}
