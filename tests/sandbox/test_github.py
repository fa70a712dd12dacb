"""The GitHub Actions stand-in: dispatch, the run's lifecycle, the real rollback in moto, errors."""

from __future__ import annotations

from typing import Any

from sandbox.server import Sandbox

from .helpers import Aws, get, post, wait_for

AUTH = {"Authorization": "Bearer ghp_sandbox", "Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}


def dispatches(runbook: Any, workflow: str = "rollback.yml") -> str:
    return f"/github/repos/{runbook.environment('production').github.repository}/actions/workflows/{workflow}/dispatches"


def backend_revision(aws: Aws) -> int:
    service = aws.ecs.describe_services(cluster="peoplebooster-production", services=["peoplebooster-backend"])["services"][0]
    return int(service["taskDefinition"].rsplit(":", 1)[1])


def test_dispatch_204_then_run_listed_and_rolled_back(sb: Sandbox, aws: Aws, runbook: Any) -> None:
    repo = runbook.environment("production").github.repository
    before = backend_revision(aws)
    response = post(sb, dispatches(runbook), headers=AUTH, json={"ref": "main", "inputs": {"environment": "production", "service": "backend", "version": "latest-1"}})
    assert response.status_code == 204 and response.content == b""
    runs = get(sb, f"/github/repos/{repo}/actions/workflows/rollback.yml/runs", headers=AUTH, params={"event": "workflow_dispatch"}).json()
    assert runs["total_count"] == 1
    run = runs["workflow_runs"][0]
    assert run["status"] in ("queued", "in_progress") and run["conclusion"] is None and run["head_branch"] == "main"
    done = wait_for(lambda: (r := get(sb, f"/github/repos/{repo}/actions/runs/{run['id']}", headers=AUTH).json())["status"] == "completed" and r)
    assert done["conclusion"] == "success"
    assert backend_revision(aws) == before - 1
    assert sb.client.github_runs()[0]["result"]["to"].endswith(f":{before - 1}")


def test_run_details_and_statuses(sb: Sandbox, runbook: Any) -> None:
    response = post(sb, dispatches(runbook), headers=AUTH, json={"ref": "main", "inputs": {"environment": "production", "service": "frontend"}, "return_run_details": True})
    assert response.status_code == 200
    details = response.json()
    assert set(details) == {"workflow_run_id", "run_url", "html_url"}
    repo = runbook.environment("production").github.repository
    seen = set()

    def completed() -> bool:
        run = get(sb, f"/github/repos/{repo}/actions/runs/{details['workflow_run_id']}", headers=AUTH).json()
        seen.add(run["status"])
        return run["status"] == "completed"

    wait_for(completed, interval=0.02)
    assert {"in_progress", "completed"} <= seen
    assert get(sb, f"/github/repos/{repo}/actions/runs", headers=AUTH, params={"status": "success"}).json()["total_count"] == 1
    created = get(sb, f"/github/repos/{repo}/actions/runs/{details['workflow_run_id']}", headers=AUTH).json()["created_at"]
    runs = f"/github/repos/{repo}/actions/workflows/rollback.yml/runs"
    assert get(sb, runs, headers=AUTH, params={"created": f">={created}"}).json()["total_count"] == 1
    assert get(sb, runs, headers=AUTH, params={"created": ">=2999-01-01T00:00:00Z"}).json()["total_count"] == 0


def test_failure_fault_leaves_ecs_alone(sb: Sandbox, aws: Aws, runbook: Any) -> None:
    before = backend_revision(aws)
    sb.client.set_faults(github_conclusion="failure")
    response = post(sb, dispatches(runbook), headers=AUTH, json={"ref": "main", "inputs": {"environment": "production", "service": "backend"}, "return_run_details": True})
    repo = runbook.environment("production").github.repository
    run = wait_for(lambda: (r := get(sb, f"/github/repos/{repo}/actions/runs/{response.json()['workflow_run_id']}", headers=AUTH).json())["status"] == "completed" and r)
    assert run["conclusion"] == "failure"
    assert backend_revision(aws) == before


def test_errors(sb_light: Sandbox, runbook: Any) -> None:
    body = {"ref": "main", "inputs": {"environment": "production", "service": "backend"}}
    assert post(sb_light, dispatches(runbook), json=body).status_code == 401
    assert post(sb_light, dispatches(runbook, "deploy-everything.yml"), headers=AUTH, json=body).status_code == 404
    assert post(sb_light, "/github/repos/someone/else/actions/workflows/rollback.yml/dispatches", headers=AUTH, json=body).status_code == 404
    missing_ref = post(sb_light, dispatches(runbook), headers=AUTH, json={"inputs": body["inputs"]})
    assert missing_ref.status_code == 422
    unexpected = post(sb_light, dispatches(runbook), headers=AUTH, json={"ref": "main", "inputs": {**body["inputs"], "force": "yes"}})
    assert unexpected.status_code == 422 and "Unexpected inputs" in unexpected.json()["message"]
    missing = post(sb_light, dispatches(runbook), headers=AUTH, json={"ref": "main", "inputs": {"environment": "production"}})
    assert missing.status_code == 422 and "service" in missing.json()["message"]
    assert sb_light.client.github_runs() == []
    recorded = sb_light.client.records("github")
    assert [r["status"] for r in recorded] == [401, 404, 404, 422, 422, 422]
    assert recorded[1]["body"] == body
