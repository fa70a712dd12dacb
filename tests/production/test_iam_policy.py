"""include/iam/incident-automation-policy.json: least privilege, checked against what the code calls.

The set of AWS actions the collection needs is not written down by hand here: it is recorded. Every
module of `incident_ops.actions.registry.ACTION_FUNCTIONS` runs against moto (in-process, seeded
with the runbook's production inventory) with the params the runbook gives it (its scenario steps,
optional and fallback steps included; the inventory for modules no step names), in check mode,
then applied, then applied again (the idempotent path), and the read-only observation helpers of
Phases 1-2 run too; every boto3 client records each call as `iam-prefix:Operation`
(`incident_ops.services.record_aws_calls`, the same recorder the end-to-end stack uses). The policy
must grant exactly that set plus the permissions AWS checks on the side of a call (iam:PassRole for
a task definition with roles): a recorded call the policy lacks fails, and so does a granted action
nothing uses.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from moto import mock_aws
from pytest_httpserver import HTTPServer

from incident_ops.actions.registry import ACTION_FUNCTIONS, Clients, run_action, step_params
from incident_ops.clients.http import HttpClient, RetryPolicy
from incident_ops.core.runbook import Runbook
from incident_ops.observe.aws import alarms_in_alarm, ecs_service_state, error_log_events, fetch_metrics
from incident_ops.services import IAM_PREFIXES, record_aws_calls
from tests.actions.inventory import seed_environment

ROOT = Path(__file__).resolve().parents[2]
POLICY_PATH = ROOT / "include" / "iam" / "incident-automation-policy.json"
ACCOUNT = "123456789012"
REGION = "ap-northeast-1"
INCIDENT = "INC-20260105-007"
# Permissions AWS evaluates for a call besides the call's own action (not API operations themselves).
IMPLIED = {
    # the scale-up copy of a task definition names the task and execution roles: ECS checks PassRole
    "ecs:RegisterTaskDefinition": {"iam:PassRole"},
}
PERMISSION_ONLY = {"iam:PassRole", "s3:ListBucket"}  # IAM actions that are no API operation
# The artifacts (evidence, charts, postmortems: incident_ops.artifacts) go through ObjectStoragePath's
# s3fs, on aiobotocore, which the boto3 recorder does not see: HeadObject/GetObject read, PutObject
# writes, ListObjectsV2 (s3:ListBucket) answers an existence check of a missing key.
ARTIFACT_ACTIONS = {"s3:GetObject", "s3:PutObject", "s3:ListBucket"}
# Global services: their ARNs carry no region (IAM, S3) and no account (S3).
NO_REGION = {"iam", "s3"}
NO_ACCOUNT = {"s3"}
# Services whose actions take no resource ARN at all: "*" is the only Resource IAM accepts for them.
NO_RESOURCE_LEVEL = {"support"}
BOTO_NAMES = {prefix: name for name, prefix in IAM_PREFIXES.items()}
READ_ONLY = re.compile(r"^[a-z0-9-]+:(Describe|List|Get|Filter)[A-Za-z]*$")


def load_policy() -> dict[str, Any]:
    return json.loads(POLICY_PATH.read_text(encoding="utf-8"))


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def granted_actions(policy: dict[str, Any]) -> set[str]:
    return {action for statement in policy["Statement"] for action in as_list(statement["Action"])}


# --- recording what the collection calls ----------------------------------------------------------


class FinishedRunGitHub:
    """GitHub Actions as far as github_rollback needs it: a dispatch whose run completes at once."""

    def __init__(self) -> None:
        self.runs: list[dict[str, Any]] = []

    def list_workflow_runs(self, repository: str, workflow: str, **_: Any) -> list[dict[str, Any]]:
        return list(self.runs)

    def dispatch_workflow(self, repository: str, workflow: str, ref: str, inputs: dict[str, Any],
                          **_: Any) -> dict[str, Any]:
        run = {"id": 1000 + len(self.runs), "status": "completed", "conclusion": "success",
               "html_url": f"https://github.com/{repository}/actions/runs/{1000 + len(self.runs)}",
               "display_title": "rollback", "created_at": "2026-01-05T01:00:00Z"}
        self.runs.append(run)
        return {"workflow_run_id": run["id"]}

    def get_run(self, repository: str, run_id: int | str) -> dict[str, Any]:
        return next(r for r in self.runs if r["id"] == int(run_id))

    def wait_for_run(self, repository: str, run_id: int | str, *, timeout: float, poll: float) -> dict[str, Any]:
        return self.get_run(repository, run_id)


@pytest.fixture
def moto_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION,
                       "MOTO_EC2_LOAD_DEFAULT_AMIS": "false"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield


def _steps_by_action(runbook: Runbook) -> dict[str, list[Any]]:
    steps: dict[str, list[Any]] = {}
    for scenario in runbook.scenarios.values():
        for step in scenario.steps:
            steps.setdefault(step.action, []).append(step)
    return steps


@pytest.fixture
def recorded(moto_env: None, runbook: Runbook, tmp_path: Path, httpserver: HTTPServer) -> set[str]:
    session = boto3.session.Session(region_name=REGION)
    seed_environment(runbook, "production", session=session)
    env = runbook.environment("production")
    logs = session.client("logs", region_name=REGION)
    for group in env.log_groups.values():
        logs.create_log_group(logGroupName=group)
    httpserver.expect_request("/api/v2/status.json").respond_with_json(
        {"status": {"indicator": "major", "description": "Partial System Outage"}})

    log = tmp_path / "aws-calls.log"
    clients = Clients.from_session(session, region_name=REGION, github=FinishedRunGitHub(),
                                   http=HttpClient("", policy=RetryPolicy(attempts=1)))
    clients.sleep = lambda _seconds: None
    for name in ("ecs", "rds", "ssm", "elbv2", "ec2", "logs", "cloudwatch", "support"):
        record_aws_calls(getattr(clients, name), str(log))

    # Phases 1-2: confirm and investigate (read only)
    now = dt.datetime(2026, 1, 5, 10, 0, tzinfo=dt.UTC)
    services = [svc.ecs_service for svc in env.services.values()]
    ecs_service_state(clients.ecs, env.cluster, services)
    alarms_in_alarm(clients.cloudwatch)
    error_log_events(clients.logs, env.log_groups, now)
    fetch_metrics(clients.cloudwatch, env.metrics, env, services, now)

    # Phase 3: every module, with the runbook's params, check mode then apply then apply again
    steps = _steps_by_action(runbook)
    ran = []
    order = ["github_rollback", "ecs_rollback", "ecs_scale_out", "ecs_scale_up", "ecs_force_deployment",
             "rds_failover", "rds_restore_snapshot", "external_status_check", "set_feature_flag",
             "isolate_service", "restore_service", "aws_support_case"]
    assert set(order) == set(ACTION_FUNCTIONS), "a new module: add it to this order"
    for action in order:
        for step in steps.get(action) or [{"action": action, "params": {}}]:
            params = step_params(runbook, "production", step, incident_id=INCIDENT, confirm=True,
                                 since="2026-01-05T09:00:00+09:00", severity="P1")
            if action == "external_status_check":
                params["url"] = httpserver.url_for("/api/v2/status.json")
            if action == "rds_restore_snapshot":
                params["poll_seconds"] = 0
            for check_mode in (True, False, False):
                result = run_action(action, clients, params, check_mode)
                assert result.ok, (action, check_mode, result.message)
            ran.append(action)
    assert set(ran) == set(ACTION_FUNCTIONS)
    return set(log.read_text(encoding="utf-8").split())


# --- the tests ------------------------------------------------------------------------------------


def test_policy_is_iam_shaped() -> None:
    policy = load_policy()
    assert policy["Version"] == "2012-10-17"
    sids = [statement["Sid"] for statement in policy["Statement"]]
    assert len(sids) == len(set(sids)) and all(re.fullmatch(r"[A-Za-z0-9]+", sid) for sid in sids)
    for statement in policy["Statement"]:
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}, statement["Sid"]
        assert statement["Effect"] == "Allow"
        assert all(re.fullmatch(r"[a-z0-9-]+:[A-Z][A-Za-z0-9]+", a) for a in as_list(statement["Action"]))
        assert statement["Resource"], statement["Sid"]
    assert len(json.dumps(policy, separators=(",", ":"))) <= 6144, "a managed policy holds at most 6,144 characters"


def test_every_action_is_an_operation_of_the_service_model() -> None:
    loader = botocore.session.get_session()
    operations: dict[str, set[str]] = {}
    for action in sorted(granted_actions(load_policy())):
        if action in PERMISSION_ONLY:
            continue
        prefix, operation = action.split(":")
        service = BOTO_NAMES.get(prefix, prefix)
        if service not in operations:
            operations[service] = set(loader.get_service_model(service).operation_names)
        assert operation in operations[service], f"{action}: no such operation in botocore's {service} model"


def test_resources_are_scoped_to_the_account_region_and_inventory(runbook: Runbook) -> None:
    names: set[str] = set()
    for name in runbook.environments:
        env = runbook.environment(name)
        names |= {env.cluster, env.database.cluster_id, env.database.instance_id, env.load_balancer.split("/")[1],
                  *env.log_groups.values(), *(svc.ecs_service for svc in env.services.values()),
                  *(svc.target_group for svc in env.services.values()),
                  *(path.lstrip("/").rsplit("/", 1)[0] for path in env.feature_flags.values())}
    for statement in load_policy()["Statement"]:
        actions = as_list(statement["Action"])
        for resource in as_list(statement["Resource"]):
            if resource == "*":
                # only what AWS cannot scope (Describe/List/GetMetricData, a service without
                # resource-level permissions), or a write held by a condition
                unscoped = all(READ_ONLY.match(a) or a.split(":")[0] in NO_RESOURCE_LEVEL for a in actions)
                assert unscoped or statement.get("Condition"), statement["Sid"]
                continue
            arn = resource.split(":", 5)
            assert len(arn) == 6 and arn[0:2] == ["arn", "aws"], resource
            service, region, account, rest = arn[2], arn[3], arn[4], arn[5]
            assert account == ("" if service in NO_ACCOUNT else ACCOUNT), resource
            assert region == ("" if service in NO_REGION else REGION), resource
            assert all(a.split(":")[0] == service for a in actions), f"{statement['Sid']}: {service} ARN, {actions}"
            assert rest.split("/")[0].split(":")[0] and rest != "*", f"{resource}: a whole service"
            named = any(name in rest for name in names) or re.search(r"role/peoplebooster-production-", rest)
            type_wide = re.fullmatch(r"[a-z-]+:\*", rest)  # e.g. cluster-snapshot:*, alarm:*
            assert named or type_wide, f"{resource} names nothing of the inventory"
        writes = [a for a in actions if not READ_ONLY.match(a)]
        if writes:  # staging is for drills (remediation refused there): IAM refuses it too
            assert "staging" not in json.dumps(statement["Resource"]), statement["Sid"]


def test_policy_grants_exactly_what_the_collection_calls(recorded: set[str]) -> None:
    needed = set(recorded) | ARTIFACT_ACTIONS
    for action in recorded:
        needed |= IMPLIED.get(action, set())
    granted = granted_actions(load_policy())
    missing = sorted(needed - granted)
    unused = sorted(granted - needed)
    assert not missing, f"the collection calls {missing}, which the policy does not grant"
    assert not unused, f"the policy grants {unused}, which nothing in the collection calls"
