"""GitHub Actions stand-in under /github (the REST API's paths, JSON and status codes).

POST /github/repos/{owner}/{repo}/actions/workflows/{workflow}/dispatches starts a run of a known
workflow (rollback.yml): 204, or 200 with {"workflow_run_id", "run_url", "html_url"} when the body
asks "return_run_details": true. The run goes queued -> in_progress -> completed after `github_delay`
seconds (a fault setting). A rollback run that succeeds REALLY rolls the ECS service back in moto:
update_service to the revision `version` names ("latest-1": one ACTIVE revision before the current
one; a number: that revision; a tag like v1.41.0: the newest revision with that image tag). With the
fault github_conclusion = "failure" the run fails without touching ECS.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from .state import iso

if TYPE_CHECKING:
    from .context import SandboxContext

__all__ = ["WORKFLOWS", "GitHubState", "rollback", "router"]

WORKFLOWS: dict[str, dict[str, Any]] = {
    # The team's deploys. The sandbox records one when a scenario deploys a bad build (`break deploy`),
    # so the incident's evidence finds the recent deploy as it would on GitHub.
    "deploy.yml": {
        "id": 161334,
        "name": "Deploy",
        "inputs": {
            "environment": {"required": True, "options": ["production", "staging"]},
            "service": {"required": True},
            "version": {"required": True},
        },
    },
    "rollback.yml": {
        "id": 161335,
        "name": "Rollback",
        "inputs": {
            "environment": {"required": True, "options": ["production", "staging"]},
            "service": {"required": True},
            "version": {"required": False, "default": "latest-1"},
        },
    },
}
DOCS = "https://docs.github.com/rest/actions/workflows"


class GitHubState:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.runs: dict[int, dict[str, Any]] = {}
        self._ids = itertools.count(9100000001)
        self._numbers: dict[str, itertools.count] = {}
        self._cancel = threading.Event()

    def cancel_all(self) -> None:
        """Runs in flight never complete (a reset); later runs get a fresh switch."""
        self._cancel.set()
        self._cancel = threading.Event()

    @property
    def cancel_switch(self) -> threading.Event:
        return self._cancel

    def new_run(self, repo: str, workflow: str, ref: str, inputs: dict[str, Any], conclusion: str, actor: str) -> dict[str, Any]:
        with self.lock:
            run_id = next(self._ids)
            number = next(self._numbers.setdefault(workflow, itertools.count(1)))
            now = iso(time.time())
            spec = WORKFLOWS[workflow]
            api = f"https://api.github.com/repos/{repo}/actions/runs/{run_id}"
            run = {
                "id": run_id,
                "name": spec["name"],
                "display_title": f"{spec['name']} {inputs.get('service', '')} to {inputs.get('version', '')} ({inputs.get('environment', '')})",
                "node_id": f"WFR_{run_id:x}",
                "head_branch": ref,
                "head_sha": f"{run_id:040x}"[-40:],
                "path": f".github/workflows/{workflow}",
                "run_number": number,
                "run_attempt": 1,
                "event": "workflow_dispatch",
                "status": "queued",
                "conclusion": None,
                "workflow_id": spec["id"],
                "url": api,
                "html_url": f"https://github.com/{repo}/actions/runs/{run_id}",
                "jobs_url": f"{api}/jobs",
                "logs_url": f"{api}/logs",
                "created_at": now,
                "updated_at": now,
                "run_started_at": None,
                "actor": {"login": actor, "type": "Bot"},
                "triggering_actor": {"login": actor, "type": "Bot"},
                "repository": {"full_name": repo, "name": repo.split("/")[-1]},
                "_inputs": dict(inputs),
                "_planned_conclusion": conclusion,
                "_result": None,
            }
            self.runs[run_id] = run
            return run

    def record_completed_run(self, repo: str, workflow: str, inputs: dict[str, Any], actor: str,
                             conclusion: str = "success") -> dict[str, Any]:
        """A run that already happened (e.g. the deploy that broke the service): completed, no lifecycle."""
        with self.lock:
            run = self.new_run(repo, workflow, "main", inputs, conclusion, actor)
            run.update(event="push" if workflow == "deploy.yml" else "workflow_dispatch", status="completed",
                       conclusion=conclusion, run_started_at=run["created_at"])
            return run

    @staticmethod
    def view(run: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in run.items() if not k.startswith("_")}

    def sandbox_view(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {**self.view(r), "inputs": r["_inputs"], "result": r["_result"]}
                for r in sorted(self.runs.values(), key=lambda r: -r["id"])
            ]


def _task_definitions(ctx: SandboxContext, family: str) -> list[dict[str, Any]]:
    arns = ctx.aws.ecs.list_task_definitions(familyPrefix=family, status="ACTIVE")["taskDefinitionArns"]
    found = []
    for arn in arns:
        fam, rev = arn.rsplit("/", 1)[-1].rsplit(":", 1)
        if fam == family:
            found.append({"arn": arn, "revision": int(rev)})
    return sorted(found, key=lambda t: t["revision"])


def rollback(ctx: SandboxContext, inputs: dict[str, Any]) -> dict[str, Any]:
    """What rollback.yml does: update the ECS service to an earlier task-definition revision."""
    env = ctx.runbook.environment(str(inputs.get("environment")))
    svc = env.service(str(inputs.get("service")))
    version = str(inputs.get("version") or "latest-1")
    service = ctx.aws.ecs.describe_services(cluster=env.cluster, services=[svc.ecs_service])["services"]
    if not service or service[0].get("status") != "ACTIVE":
        raise RuntimeError(f"service {svc.ecs_service} not found in {env.cluster}")
    current = ctx.aws.ecs.describe_task_definition(taskDefinition=service[0]["taskDefinition"])["taskDefinition"]
    family, current_rev = current["family"], current["revision"]
    revisions = _task_definitions(ctx, family)
    target: dict[str, Any] | None = None
    if version.startswith("latest-"):
        steps = int(version.split("-", 1)[1] or 1)
        older = [t for t in revisions if t["revision"] < current_rev]
        target = older[-steps] if len(older) >= steps else None
    elif version.isdigit():
        target = next((t for t in revisions if t["revision"] == int(version)), None)
    else:
        for t in reversed(revisions):
            td = ctx.aws.ecs.describe_task_definition(taskDefinition=t["arn"])["taskDefinition"]
            if any(c.get("image", "").endswith(f":{version}") for c in td.get("containerDefinitions", [])):
                target = t
                break
    if target is None:
        raise RuntimeError(f"no task definition of {family} matches version {version!r} (current revision {current_rev})")
    ctx.aws.ecs.update_service(cluster=env.cluster, service=svc.ecs_service, taskDefinition=target["arn"])
    return {"service": svc.ecs_service, "from": current["taskDefinitionArn"], "to": target["arn"]}


def _lifecycle(ctx: SandboxContext, state: GitHubState, run_id: int, delay: float, cancel: threading.Event) -> None:
    start_after = min(1.0, delay / 3)
    if cancel.wait(start_after):
        return
    with state.lock:
        run = state.runs[run_id]
        run["status"] = "in_progress"
        run["run_started_at"] = run["updated_at"] = iso(time.time())
    if cancel.wait(max(delay - start_after, 0.0)):
        return
    with ctx.lock:
        if cancel.is_set():
            return
        conclusion = run["_planned_conclusion"]
        result: Any = None
        if conclusion == "success" and run["path"].endswith("rollback.yml"):
            try:
                result = rollback(ctx, run["_inputs"])
            except Exception as exc:  # noqa: BLE001 - the run fails, as the real workflow would
                conclusion, result = "failure", {"error": str(exc)}
        elif conclusion == "failure":
            result = {"error": "the workflow failed (sandbox fault github_conclusion=failure)"}
        with state.lock:
            run["status"] = "completed"
            run["conclusion"] = conclusion
            run["updated_at"] = iso(time.time())
            run["_result"] = result


# --- HTTP --------------------------------------------------------------------------------------

router = APIRouter()


def _gh_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message, "documentation_url": DOCS, "status": str(status)}, status_code=status)


def _check(ctx: SandboxContext, request: Request, owner: str, repo: str) -> JSONResponse | None:
    auth = request.headers.get("authorization", "")
    if not auth.lower().startswith(("bearer ", "token ")) or len(auth.split(" ", 1)[1].strip()) == 0:
        return _gh_error(401, "Requires authentication")
    known = {env.github.repository.lower() for env in ctx.runbook.environments.values()}
    if f"{owner}/{repo}".lower() not in known:
        return _gh_error(404, "Not Found")
    return None


def _workflow(ident: str) -> str | None:
    if ident in WORKFLOWS:
        return ident
    return next((name for name, spec in WORKFLOWS.items() if str(spec["id"]) == ident), None)


@router.post("/github/repos/{owner}/{repo}/actions/workflows/{workflow}/dispatches", response_model=None)
async def dispatch(owner: str, repo: str, workflow: str, request: Request) -> Response:
    ctx: SandboxContext = request.app.state.ctx
    if (denied := _check(ctx, request, owner, repo)) is not None:
        return denied
    name = _workflow(workflow)
    if name is None:
        return _gh_error(404, "Not Found")
    try:
        body = await request.json()
    except ValueError:
        return _gh_error(400, "Problems parsing JSON")
    if not isinstance(body, dict) or not body.get("ref"):
        return _gh_error(422, "Invalid request.\n\n\"ref\" wasn't supplied.")
    inputs = body.get("inputs") or {}
    spec = WORKFLOWS[name]["inputs"]
    unexpected = sorted(set(inputs) - set(spec))
    if unexpected:
        return _gh_error(422, f"Unexpected inputs provided: {unexpected}")
    for key, rule in spec.items():
        if rule.get("required") and not inputs.get(key):
            return _gh_error(422, f"Required input '{key}' not provided")
        if rule.get("options") and inputs.get(key) not in rule["options"]:
            return _gh_error(422, f"Provided value '{inputs.get(key)}' for input '{key}' not in the list of allowed values")
        if key not in inputs and "default" in rule:
            inputs[key] = rule["default"]
    with ctx.lock:
        state = ctx.github
        delay = ctx.faults.github_delay
        run = state.new_run(f"{owner}/{repo}", name, str(body["ref"]), inputs, ctx.faults.github_conclusion, "incident-ops[bot]")
        cancel = state.cancel_switch
    threading.Thread(target=_lifecycle, args=(ctx, state, run["id"], delay, cancel), name=f"gh-run-{run['id']}", daemon=True).start()
    if body.get("return_run_details"):
        return JSONResponse({"workflow_run_id": run["id"], "run_url": run["url"], "html_url": run["html_url"]}, status_code=200)
    return Response(status_code=204)


def _created_matches(created_at: str, query: str) -> bool:
    """GitHub's `created` filter: >=T, >T, <=T, <T, A..B or a date/time prefix (ISO 8601, UTC)."""

    def norm(value: str) -> str:
        value = value.strip().replace("+00:00", "Z")
        return value if value.endswith("Z") or len(value) <= 10 else value + "Z"

    if ".." in query:
        low, high = query.split("..", 1)
        return (low in ("", "*") or created_at >= norm(low)) and (high in ("", "*") or created_at[: len(norm(high))] <= norm(high))
    for op in (">=", "<=", ">", "<"):
        if query.startswith(op):
            bound = norm(query[len(op) :])
            return {">=": created_at >= bound, "<=": created_at[: len(bound)] <= bound, ">": created_at > bound, "<": created_at < bound}[op]
    return created_at.startswith(norm(query).rstrip("Z"))


def _list_runs(ctx: SandboxContext, request: Request, workflow: str | None) -> JSONResponse:
    q = request.query_params
    with ctx.github.lock:
        runs = sorted(ctx.github.runs.values(), key=lambda r: -r["id"])
        if workflow is not None:
            runs = [r for r in runs if r["path"].endswith(f"/{workflow}")]
        status = q.get("status")
        if status in ("queued", "in_progress", "completed"):
            runs = [r for r in runs if r["status"] == status]
        elif status:
            runs = [r for r in runs if r["conclusion"] == status]
        for key, field in (("event", "event"), ("branch", "head_branch"), ("head_sha", "head_sha")):
            if q.get(key):
                runs = [r for r in runs if r[field] == q.get(key)]
        if q.get("created"):
            runs = [r for r in runs if _created_matches(r["created_at"], q["created"])]
        per_page = min(int(q.get("per_page") or 30), 100)
        page = max(int(q.get("page") or 1), 1)
        chosen = [GitHubState.view(r) for r in runs[(page - 1) * per_page : page * per_page]]
    return JSONResponse({"total_count": len(runs), "workflow_runs": chosen})


@router.get("/github/repos/{owner}/{repo}/actions/workflows/{workflow}/runs")
def workflow_runs(owner: str, repo: str, workflow: str, request: Request) -> JSONResponse:
    ctx: SandboxContext = request.app.state.ctx
    if (denied := _check(ctx, request, owner, repo)) is not None:
        return denied
    name = _workflow(workflow)
    if name is None:
        return _gh_error(404, "Not Found")
    return _list_runs(ctx, request, name)


@router.get("/github/repos/{owner}/{repo}/actions/runs")
def all_runs(owner: str, repo: str, request: Request) -> JSONResponse:
    ctx: SandboxContext = request.app.state.ctx
    if (denied := _check(ctx, request, owner, repo)) is not None:
        return denied
    return _list_runs(ctx, request, None)


@router.get("/github/repos/{owner}/{repo}/actions/runs/{run_id}")
def get_run(owner: str, repo: str, run_id: int, request: Request) -> JSONResponse:
    ctx: SandboxContext = request.app.state.ctx
    if (denied := _check(ctx, request, owner, repo)) is not None:
        return denied
    with ctx.github.lock:
        run = ctx.github.runs.get(run_id)
        if run is None:
            return _gh_error(404, "Not Found")
        return JSONResponse(GitHubState.view(run))


@router.get("/github/repos/{owner}/{repo}/actions/workflows/{workflow}")
def get_workflow(owner: str, repo: str, workflow: str, request: Request) -> JSONResponse:
    ctx: SandboxContext = request.app.state.ctx
    if (denied := _check(ctx, request, owner, repo)) is not None:
        return denied
    name = _workflow(workflow)
    if name is None:
        return _gh_error(404, "Not Found")
    spec = WORKFLOWS[name]
    return JSONResponse(
        {
            "id": spec["id"],
            "name": spec["name"],
            "path": f".github/workflows/{name}",
            "state": "active",
            "html_url": f"https://github.com/{owner}/{repo}/blob/main/.github/workflows/{name}",
        }
    )
