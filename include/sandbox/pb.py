"""The PeopleBooster API itself (under /pb) and the external provider's status page (under /status).

GET /pb/health answers in the runbook's format, from the health rules (health.py): 200 when healthy,
503 otherwise; database -> checks.database, external -> checks.externalServices, and deploy/resource/
security -> an `application` check and the overall status. The functional endpoints of the runbook's
checks (login with the test account, start a diagnosis, save an answer, /users/me) work while healthy
and fail while the problem they depend on lasts (an external outage only breaks the diagnoses).
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from .state import iso

if TYPE_CHECKING:
    from .context import SandboxContext
    from .health import Health

__all__ = ["TEST_ACCOUNT_EMAIL", "TEST_ACCOUNT_PASSWORD", "router"]

TEST_ACCOUNT_EMAIL = "healthcheck@peoplebooster.com"
TEST_ACCOUNT_PASSWORD = "sandbox-password"
GARBAGE = b'{"status": "heal'


class ApiState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tokens: set[str] = set()
        self.diagnoses: dict[str, dict[str, Any]] = {}
        self.next_id = 10001


def _api(request: Request) -> ApiState:
    state = getattr(request.app.state, "pb", None)
    if state is None:
        state = request.app.state.pb = ApiState()
    return state


def _failure(health: Health, uses_external: bool) -> JSONResponse | None:
    problems = health.problems
    if "database" in problems:
        return JSONResponse({"error": "ServiceUnavailable", "message": "could not connect to server: Connection refused"}, status_code=503)
    if "deploy" in problems:
        return JSONResponse({"error": "InternalServerError", "message": "calculate_score() missing 1 required positional argument: 'weights'"}, status_code=500)
    if "resource" in problems:
        return JSONResponse({"error": "ServiceUnavailable", "message": "upstream request timeout"}, status_code=503)
    if "security" in problems or "inventory" in problems:
        return JSONResponse({"error": "InternalServerError", "message": "integrity check failed"}, status_code=500)
    if "external" in problems and uses_external:
        return JSONResponse({"error": "ExternalServiceError", "message": "payments upstream returned 503"}, status_code=503)
    return None


def _authorized(request: Request, required: bool) -> JSONResponse | None:
    auth = request.headers.get("authorization", "")
    if not auth:
        return JSONResponse({"error": "Unauthorized", "message": "missing bearer token"}, status_code=401) if required else None
    token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    if token not in _api(request).tokens:
        return JSONResponse({"error": "Unauthorized", "message": "invalid or expired token"}, status_code=401)
    return None


router = APIRouter()


@router.get("/pb/health", response_model=None)
def health(request: Request) -> Response:
    ctx: SandboxContext = request.app.state.ctx
    if ctx.faults.health_delay:
        time.sleep(ctx.faults.health_delay)
    if ctx.faults.health_garbage:
        return Response(GARBAGE, status_code=200, media_type="application/json")
    result = ctx.health()
    return JSONResponse(result.body(), status_code=200 if result.healthy else 503)


@router.post("/pb/api/v1/auth/login")
async def login(request: Request) -> JSONResponse:
    ctx: SandboxContext = request.app.state.ctx
    try:
        body = await request.json()
    except ValueError:
        return JSONResponse({"error": "BadRequest", "message": "JSON body required"}, status_code=400)
    if (failed := _failure(await run_in_threadpool(ctx.health), uses_external=False)) is not None:
        return failed
    if not isinstance(body, dict) or body.get("email") != TEST_ACCOUNT_EMAIL or body.get("password") != TEST_ACCOUNT_PASSWORD:
        return JSONResponse({"error": "Unauthorized", "message": "invalid email or password"}, status_code=401)
    token = secrets.token_urlsafe(24)
    api = _api(request)
    with api.lock:
        api.tokens.add(token)
    return JSONResponse(
        {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 3600,
            "user": {"id": 2231, "email": TEST_ACCOUNT_EMAIL, "name": "ヘルスチェック用アカウント"},
        }
    )


@router.post("/pb/api/v1/diagnoses")
async def create_diagnosis(request: Request) -> JSONResponse:
    ctx: SandboxContext = request.app.state.ctx
    if (denied := _authorized(request, required=False)) is not None:
        return denied
    try:
        body = await request.json()
    except ValueError:
        body = {}
    if (failed := _failure(await run_in_threadpool(ctx.health), uses_external=True)) is not None:
        return failed
    api = _api(request)
    with api.lock:
        diagnosis_id = str(api.next_id)
        api.next_id += 1
        api.diagnoses[diagnosis_id] = {"id": diagnosis_id, "template": (body or {}).get("template", "standard"), "answers": {}, "created_at": iso(time.time())}
    return JSONResponse({"id": diagnosis_id, "status": "in_progress", "template": api.diagnoses[diagnosis_id]["template"]}, status_code=201)


@router.put("/pb/api/v1/diagnoses/{diagnosis_id}/answers/{question}")
async def save_answer(diagnosis_id: str, question: int, request: Request) -> JSONResponse:
    ctx: SandboxContext = request.app.state.ctx
    if (denied := _authorized(request, required=False)) is not None:
        return denied
    try:
        body = await request.json()
    except ValueError:
        body = {}
    if (failed := _failure(await run_in_threadpool(ctx.health), uses_external=True)) is not None:
        return failed
    api = _api(request)
    with api.lock:
        diagnosis = api.diagnoses.get(diagnosis_id)
        if diagnosis is None:
            return JSONResponse({"error": "NotFound", "message": f"diagnosis {diagnosis_id} not found"}, status_code=404)
        diagnosis["answers"][str(question)] = (body or {}).get("value")
    return JSONResponse({"id": diagnosis_id, "question": question, "value": (body or {}).get("value"), "saved": True})


@router.get("/pb/api/v1/users/me")
def me(request: Request) -> JSONResponse:
    ctx: SandboxContext = request.app.state.ctx
    if (denied := _authorized(request, required=True)) is not None:
        return denied
    if (failed := _failure(ctx.health(), uses_external=False)) is not None:
        return failed
    return JSONResponse({"id": 2231, "email": TEST_ACCOUNT_EMAIL, "name": "ヘルスチェック用アカウント", "role": "member"})


# --- external provider's status page (Statuspage format) ----------------------------------------

PAGE = {"id": "kctbh9vrtdwd", "name": "Example Payments", "url": "https://status.example-payments.com", "time_zone": "Etc/UTC"}


DESCRIPTIONS = {"none": "All Systems Operational", "minor": "Partially Degraded Service",
                "major": "Major System Outage", "critical": "Major System Outage"}


def _status(ctx: SandboxContext) -> dict[str, Any]:
    """What the page says: the provider's real state, unless the status_page fault says otherwise (a
    page that still says operational while the provider fails us)."""
    indicator = ctx.faults.status_page or ("major" if ctx.memory.external_outage else "none")
    return {"indicator": indicator, "description": DESCRIPTIONS[indicator]}


@router.get("/status/api/v2/status.json")
def status_json(request: Request) -> JSONResponse:
    ctx: SandboxContext = request.app.state.ctx
    return JSONResponse({"page": {**PAGE, "updated_at": iso(time.time())}, "status": _status(ctx)})


@router.get("/status/api/v2/summary.json")
def summary_json(request: Request) -> JSONResponse:
    ctx: SandboxContext = request.app.state.ctx
    status = _status(ctx)
    outage = status["indicator"] != "none"
    component = {"none": "operational", "minor": "degraded_performance", "major": "partial_outage",
                 "critical": "major_outage"}[status["indicator"]]
    components = [
        {"id": "pay-api", "name": "Payments API", "status": component},
        {"id": "pay-dashboard", "name": "Dashboard", "status": "operational"},
    ]
    incidents = []
    if outage:
        info = ctx.memory.breaks.get("external")
        incidents.append(
            {
                "id": "inc-sandbox",
                "name": "Payments API unavailable",
                "status": "investigating",
                "impact": "major",
                "created_at": iso(info.at if info else time.time()),
                "shortlink": "https://stspg.io/sandbox",
            }
        )
    return JSONResponse({"page": {**PAGE, "updated_at": iso(time.time())}, "status": status, "components": components, "incidents": incidents})
