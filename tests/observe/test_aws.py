"""Read-only observation against moto: ECS state, alarms in ALARM, error logs, metrics in one call."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from incident_ops.core.runbook import Runbook
from incident_ops.observe.aws import (
    alarms_in_alarm,
    ecs_service_state,
    error_log_events,
    fetch_metrics,
    metric_query_id,
)

REGION = "ap-northeast-1"
# CloudWatch Logs refuses events older than 14 days, so the window ends at the current minute.
END = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)


def iso(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[boto3.session.Session]:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": REGION, "MOTO_EC2_LOAD_DEFAULT_AMIS": "false"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield boto3.session.Session(region_name=REGION)


# --- ECS ------------------------------------------------------------------------------------------


def test_ecs_service_state(aws: boto3.session.Session) -> None:
    ecs = aws.client("ecs")
    ecs.create_cluster(clusterName="peoplebooster-production")
    td = ecs.register_task_definition(family="peoplebooster-backend", containerDefinitions=[
        {"name": "app", "image": "backend:v1", "memory": 512}])["taskDefinition"]["taskDefinitionArn"]
    for name, count in (("peoplebooster-backend", 4), ("peoplebooster-frontend", 2)):
        ecs.create_service(cluster="peoplebooster-production", serviceName=name, taskDefinition=td, desiredCount=count)
    ecs.update_service(cluster="peoplebooster-production", service="peoplebooster-backend", desiredCount=6)

    state = ecs_service_state(ecs, "peoplebooster-production",
                              ["peoplebooster-backend", "peoplebooster-frontend", "peoplebooster-missing"])

    json.dumps(state)  # plain data only
    backend = state["services"]["peoplebooster-backend"]
    assert (backend["desired_count"], backend["running_count"], backend["pending_count"]) == (6, 6, 0)
    assert backend["task_definition"] == td
    assert backend["deployments"][0]["status"] == "PRIMARY"
    assert backend["deployments"][0]["created_at"].endswith("Z")
    assert state["services"]["peoplebooster-frontend"]["desired_count"] == 2
    assert state["failures"] == [{"arn": state["failures"][0]["arn"], "reason": "MISSING"}]
    assert state["failures"][0]["arn"].endswith("peoplebooster-missing")


# --- alarms ---------------------------------------------------------------------------------------


def test_alarms_in_alarm(aws: boto3.session.Session) -> None:
    cloudwatch = aws.client("cloudwatch")
    for name in ("peoplebooster-production-alb-5xx", "peoplebooster-production-rds-cpu-high",
                 "peoplebooster-production-backend-cpu-high", "other-team-alarm"):
        cloudwatch.put_metric_alarm(AlarmName=name, Namespace="AWS/ApplicationELB", MetricName="HTTPCode_Target_5XX_Count",
                                    Dimensions=[{"Name": "LoadBalancer", "Value": "app/x/1"}], Statistic="Sum",
                                    Period=60, EvaluationPeriods=1, Threshold=10,
                                    ComparisonOperator="GreaterThanThreshold")
    for name in ("peoplebooster-production-alb-5xx", "peoplebooster-production-rds-cpu-high", "other-team-alarm"):
        cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="Threshold Crossed: test")

    everything = alarms_in_alarm(cloudwatch)
    ours = alarms_in_alarm(cloudwatch, prefix="peoplebooster-production")

    json.dumps(ours)
    assert {a["name"] for a in everything} == {"peoplebooster-production-alb-5xx",
                                               "peoplebooster-production-rds-cpu-high", "other-team-alarm"}
    assert sorted(a["name"] for a in ours) == ["peoplebooster-production-alb-5xx", "peoplebooster-production-rds-cpu-high"]
    alarm = next(a for a in ours if a["name"] == "peoplebooster-production-alb-5xx")
    assert alarm["state"] == "ALARM" and alarm["reason"] == "Threshold Crossed: test"
    assert alarm["dimensions"] == {"LoadBalancer": "app/x/1"} and alarm["type"] == "metric"


# --- logs -----------------------------------------------------------------------------------------

GROUPS = {"application": "/aws/ecs/peoplebooster-production/application",
          "error": "/aws/ecs/peoplebooster-production/error"}


def ms(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)


def seed_logs(logs: Any) -> None:
    for group in GROUPS.values():
        logs.create_log_group(logGroupName=group)
        logs.create_log_stream(logGroupName=group, logStreamName="backend/app/1")
    app_events = [
        (END - dt.timedelta(minutes=45), "ERROR too old to count"),
        (END - dt.timedelta(minutes=20), "INFO request ok"),
        (END - dt.timedelta(minutes=15), "ERROR database connection refused"),
        (END - dt.timedelta(minutes=10), "WARN slow query"),
        (END - dt.timedelta(minutes=5), "ERROR Timeout calling payments"),
    ]
    logs.put_log_events(logGroupName=GROUPS["application"], logStreamName="backend/app/1",
                        logEvents=[{"timestamp": ms(t), "message": m} for t, m in app_events])
    error_events = [(END - dt.timedelta(minutes=m), f"Traceback #{m}") for m in (50, 25, 12, 3)]
    logs.put_log_events(logGroupName=GROUPS["error"], logStreamName="backend/app/1",
                        logEvents=[{"timestamp": ms(t), "message": m} for t, m in error_events])


def test_error_log_events(aws: boto3.session.Session) -> None:
    logs = aws.client("logs")
    seed_logs(logs)

    found = error_log_events(logs, GROUPS, END)

    json.dumps(found)
    assert found["start"] == iso(END - dt.timedelta(minutes=30)) and found["end"] == iso(END)
    app, err = found["groups"]["application"], found["groups"]["error"]
    assert app["filter_pattern"] == "ERROR" and err["filter_pattern"] is None
    assert [e["message"] for e in app["events"]] == ["ERROR database connection refused",
                                                     "ERROR Timeout calling payments"]
    assert app["events"][0]["timestamp"] == iso(END - dt.timedelta(minutes=15))
    assert [e["message"] for e in err["events"]] == ["Traceback #25", "Traceback #12", "Traceback #3"]
    assert (app["count"], err["count"], found["total"]) == (2, 3, 5)
    assert not app["truncated"] and not app["missing"]


def test_error_log_events_limit_and_missing_group(aws: boto3.session.Session) -> None:
    logs = aws.client("logs")
    seed_logs(logs)
    found = error_log_events(logs, {**GROUPS, "worker": "/aws/ecs/peoplebooster-production/worker"}, END, limit=2)
    assert found["groups"]["error"]["count"] == 2 and found["groups"]["error"]["truncated"]
    assert found["groups"]["worker"]["missing"] and found["groups"]["worker"]["count"] == 0


class PagedLogs:
    """A logs client answering at most `page` events per call, with nextToken (as AWS may)."""

    def __init__(self, logs: Any, page: int) -> None:
        self._logs, self._page, self.calls = logs, page, 0

    def filter_log_events(self, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        kwargs["limit"] = self._page
        return self._logs.filter_log_events(**kwargs)


def test_error_log_events_follows_next_token(aws: boto3.session.Session) -> None:
    logs = aws.client("logs")
    seed_logs(logs)
    paged = PagedLogs(logs, page=1)
    found = error_log_events(paged, {"error": GROUPS["error"]}, END)
    assert found["groups"]["error"]["count"] == 3 and not found["groups"]["error"]["truncated"]
    assert paged.calls >= 3


# --- metrics --------------------------------------------------------------------------------------


def put_metrics(cloudwatch: Any, environment: Any) -> None:
    for minute in range(1, 6):
        when = END - dt.timedelta(minutes=minute)
        for service, base in (("peoplebooster-backend", 80.0), ("peoplebooster-frontend", 20.0)):
            dims = [{"Name": "ClusterName", "Value": environment.cluster}, {"Name": "ServiceName", "Value": service}]
            cloudwatch.put_metric_data(Namespace="AWS/ECS", MetricData=[
                {"MetricName": "CPUUtilization", "Dimensions": dims, "Timestamp": when, "Value": base + minute,
                 "Unit": "Percent"},
                {"MetricName": "MemoryUtilization", "Dimensions": dims, "Timestamp": when, "Value": base / 2,
                 "Unit": "Percent"},
            ])
        lb = [{"Name": "LoadBalancer", "Value": environment.load_balancer}]
        cloudwatch.put_metric_data(Namespace="AWS/ApplicationELB", MetricData=[
            {"MetricName": "RequestCount", "Dimensions": lb, "Timestamp": when, "Value": 1000, "Unit": "Count"},
            {"MetricName": "HTTPCode_Target_5XX_Count", "Dimensions": lb, "Timestamp": when, "Value": 50,
             "Unit": "Count"},
            {"MetricName": "HTTPCode_ELB_5XX_Count", "Dimensions": lb, "Timestamp": when, "Value": 7,
             "Unit": "Count"},
        ])
        db = [{"Name": "DBClusterIdentifier", "Value": environment.database.cluster_id}]
        cloudwatch.put_metric_data(Namespace="AWS/RDS", MetricData=[
            {"MetricName": "DatabaseConnections", "Dimensions": db, "Timestamp": when, "Value": 120, "Unit": "Count"},
            {"MetricName": "CPUUtilization", "Dimensions": db, "Timestamp": when, "Value": 35, "Unit": "Percent"},
        ])


def test_fetch_metrics_in_one_call(aws: boto3.session.Session, runbook: Runbook) -> None:
    env = runbook.environment("production")
    cloudwatch = aws.client("cloudwatch")
    put_metrics(cloudwatch, env)
    calls: list[dict[str, Any]] = []  # what was sent, one entry per HTTP call
    sent: list[dict[str, Any]] = []
    cloudwatch.meta.events.register("before-parameter-build.cloudwatch.GetMetricData",
                                    lambda params, **_: sent.append(params))
    cloudwatch.meta.events.register("before-call.cloudwatch.GetMetricData",
                                    lambda params, **_: calls.append(sent[-1]))
    services = ["peoplebooster-backend", "peoplebooster-frontend"]

    found = fetch_metrics(cloudwatch, env.metrics, env, services, END, minutes=60, period=60)

    json.dumps(found)
    assert found["api_calls"] == 1 and len(calls) == 1
    assert len(calls[0]["MetricDataQueries"]) == 2 * 2 + 5  # per-service ECS metrics once per service
    series = found["series"]
    assert set(series) == {
        "ecs_cpu_peoplebooster_backend", "ecs_cpu_peoplebooster_frontend",
        "ecs_memory_peoplebooster_backend", "ecs_memory_peoplebooster_frontend",
        "alb_requests", "alb_5xx", "elb_5xx", "rds_connections", "rds_cpu",
    }
    cpu = series["ecs_cpu_peoplebooster_backend"]
    assert cpu["label"] == "ECS CPU (peoplebooster-backend)" and cpu["unit"] == "Percent"
    assert cpu["metric_id"] == "ecs_cpu" and cpu["service"] == "peoplebooster-backend"
    assert cpu["dimensions"] == {"ClusterName": "peoplebooster-production", "ServiceName": "peoplebooster-backend"}
    assert cpu["timestamps"] == [iso(END - dt.timedelta(minutes=m)) for m in (5, 4, 3, 2, 1)]
    assert cpu["values"] == [85.0, 84.0, 83.0, 82.0, 81.0]
    assert series["ecs_memory_peoplebooster_frontend"]["values"] == [10.0] * 5
    assert series["alb_5xx"]["dimensions"] == {"LoadBalancer": env.load_balancer}
    assert series["alb_5xx"]["values"] == [50.0] * 5
    # the load balancer's own 5xx beside the targets', each with its Japanese name for the highlights
    assert series["elb_5xx"]["metric"] == "HTTPCode_ELB_5XX_Count" and series["elb_5xx"]["values"] == [7.0] * 5
    assert series["elb_5xx"]["dimensions"] == {"LoadBalancer": env.load_balancer}
    assert (series["alb_5xx"]["label_ja"], series["elb_5xx"]["label_ja"]) == ("ALB 5xx（ターゲット）",
                                                                            "ALB 5xx（ロードバランサー自身）")
    assert cpu["label_ja"] == "ECS CPU（peoplebooster-backend）"
    assert series["rds_connections"]["dimensions"] == {"DBClusterIdentifier": "peoplebooster-production-db"}
    assert series["rds_cpu"]["values"] == [35.0] * 5
    ids = [q["Id"] for q in calls[0]["MetricDataQueries"]]
    assert len(set(ids)) == len(ids)


class PagedCloudWatch:
    """Splits each answer's points over two pages with a NextToken."""

    def __init__(self, cloudwatch: Any) -> None:
        self._cw, self.calls = cloudwatch, 0

    def get_metric_data(self, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        token = kwargs.pop("NextToken", None)
        answer = self._cw.get_metric_data(**kwargs)
        for item in answer["MetricDataResults"]:
            half = len(item["Timestamps"]) // 2
            part = slice(half, None) if token else slice(0, half)
            item["Timestamps"], item["Values"] = item["Timestamps"][part], item["Values"][part]
        return {**answer, **({} if token else {"NextToken": "page-2"})}


def test_fetch_metrics_merges_pages(aws: boto3.session.Session, runbook: Runbook) -> None:
    env = runbook.environment("production")
    cloudwatch = aws.client("cloudwatch")
    put_metrics(cloudwatch, env)
    paged = PagedCloudWatch(cloudwatch)
    found = fetch_metrics(paged, env.metrics, env, ["peoplebooster-backend"], END)
    assert found["api_calls"] == paged.calls == 2
    assert found["series"]["ecs_cpu_peoplebooster_backend"]["values"] == [85.0, 84.0, 83.0, 82.0, 81.0]


def test_fetch_metrics_with_plain_dicts_and_no_cluster(aws: boto3.session.Session) -> None:
    cloudwatch = aws.client("cloudwatch")
    env = {"cluster": "c", "load_balancer": "app/x/1", "database": {"cluster_id": None, "instance_id": "db-1"}}
    specs = [{"id": "rds_cpu", "label": "RDS CPU", "namespace": "AWS/RDS", "metric": "CPUUtilization",
              "stat": "Average", "unit": "Percent"}]
    found = fetch_metrics(cloudwatch, specs, env, [], END)
    assert found["series"]["rds_cpu"]["dimensions"] == {"DBInstanceIdentifier": "db-1"}
    assert found["series"]["rds_cpu"]["values"] == [] and found["api_calls"] == 1
    assert fetch_metrics(cloudwatch, [], env, [], END)["api_calls"] == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ecs_cpu_peoplebooster-backend", "ecs_cpu_peoplebooster_backend"),
        ("5xx", "m_5xx"),
        ("ALB Requests", "m_ALB_Requests"),
        ("a.b/c", "a_b_c"),
    ],
)
def test_metric_query_id(text: str, expected: str) -> None:
    assert metric_query_id(text) == expected


def test_naive_times_are_refused(aws: boto3.session.Session) -> None:
    with pytest.raises(ValueError, match="UTC offset"):
        error_log_events(aws.client("logs"), GROUPS, dt.datetime(2026, 1, 5, 1, 30))
