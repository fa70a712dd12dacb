"""Every AWS call the end-to-end incidents made through Airflow is granted by the IAM policy.

The session stack records each AWS API call of every task (`INCIDENT_OPS_AWS_CALL_LOG`, one
`iam-prefix:Operation` a line, written by the clients `incident_ops.services.IncidentServices`
builds) when the stack fixture enables it. This test reads that log after the scenarios ran (the
e2e conftest orders this module last); run alone, it first runs the security scenario itself, which
touches ECS, EC2, ELB, CloudWatch and CloudWatch Logs. The converse (the policy grants nothing the
code does not call) is tests/production/test_iam_policy.py, on every module of the collection.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from incident_ops.services import AWS_CALL_LOG_VARIABLE
from scripts.incident_runner import LocalStack, run_incident

# Stack start if it runs alone (up to 7 min) and one incident (up to 10 min).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

POLICY_PATH = Path(__file__).resolve().parents[2] / "include" / "iam" / "incident-automation-policy.json"


def granted_actions() -> set[str]:
    policy = json.loads(POLICY_PATH.read_text(encoding="utf-8"))
    actions: set[str] = set()
    for statement in policy["Statement"]:
        value = statement["Action"]
        actions |= set(value if isinstance(value, list) else [value])
    return actions


def recorded_calls(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split() if path.exists() else []


def test_every_aws_call_of_the_end_to_end_runs_is_in_the_policy(stack: LocalStack) -> None:
    log = stack.extra_env.get(AWS_CALL_LOG_VARIABLE)
    # A failure, not a skip: without the recorder the least-privilege check would silently vanish.
    assert log, (f"the e2e stack does not record AWS calls: the stack fixture needs "
                 f"extra_env={{'{AWS_CALL_LOG_VARIABLE}': <state dir>/aws-calls.log}}")
    path = Path(log)
    if not recorded_calls(path):  # nothing ran through the stack yet in this session
        report = run_incident(stack, "security", say=lambda _: None, timeout=600)
        assert report["dag_run_state"] == "success", report["tasks"]
    calls = recorded_calls(path)
    # the recorder saw the investigation and a remediation, so an empty or partial log cannot pass
    assert {"cloudwatch:GetMetricData", "logs:FilterLogEvents", "ecs:DescribeServices"} <= set(calls), sorted(set(calls))
    assert any(call in calls for call in ("ecs:UpdateService", "ssm:PutParameter", "rds:FailoverDBCluster",
                                          "elasticloadbalancing:DeregisterTargets")), sorted(set(calls))
    missing = sorted(set(calls) - granted_actions())
    assert not missing, f"the incidents called {missing}, which include/iam/incident-automation-policy.json does not grant"
