"""The sandbox's control API under /_sandbox (not recorded): break, clear, reset, faults, records, views.

POST /_sandbox/break/{scenario}      deploy | resource | database | external | security
POST /_sandbox/clear/{scenario}      the cause goes away by itself (e.g. the provider recovers)
POST /_sandbox/reset                 heal everything: wipe moto, seed again; {"keep_records": true} keeps
                                     records and the stand-ins' state, {"aws": false} leaves moto alone
GET|POST /_sandbox/faults            {"slack": null|429|500, "slack_count": n, "pagerduty": null|500,
                                      "pagerduty_count": n, "health_delay": s, "health_garbage": bool,
                                      "github_conclusion": "success"|"failure", "github_delay": s,
                                      "pagerduty_no_push_user": "PXXXXXX"|null,
                                      "status_page": null|"none"|"minor"|"major"|"critical"}
                                     (status_page: what the external status page says, whatever the
                                     provider's real state; "none" during an external break = the
                                     page still says operational: the 待機 path)
GET  /_sandbox/records?service=slack|pagerduty|github|sentry|pb|status&since=<seq>
GET  /_sandbox/slack/messages?channel=<name>   GET /_sandbox/slack/channels
GET  /_sandbox/pagerduty/events      GET /_sandbox/pagerduty/incidents
POST /_sandbox/pagerduty/acknowledge {"dedup_key", "user"}   (a person acknowledges in the app)
GET  /_sandbox/github/runs           GET /_sandbox/sentry/issues
GET  /_sandbox/state                 scenario, health and the AWS facts behind it
POST /_sandbox/tick                  run the evaluator once now (alarms follow the health)
GET  /_sandbox/                      an HTML page of all of it (refreshes itself)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from .scenarios import ScenarioError, break_scenario, clear_scenario
from .sentry import issues as sentry_issues
from .state import FaultsError

if TYPE_CHECKING:
    from .context import SandboxContext

__all__ = ["router"]

router = APIRouter(prefix="/_sandbox")
_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
)


def _ctx(request: Request) -> SandboxContext:
    return request.app.state.ctx


async def _json(request: Request) -> dict[str, Any]:
    body = await request.body()
    if not body:
        return {}
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return data


@router.post("/break/{scenario}")
def post_break(scenario: str, request: Request) -> JSONResponse:
    try:
        return JSONResponse(break_scenario(_ctx(request), scenario))
    except ScenarioError as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)


@router.post("/clear/{scenario}")
def post_clear(scenario: str, request: Request) -> JSONResponse:
    try:
        return JSONResponse(clear_scenario(_ctx(request), scenario))
    except ScenarioError as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)


@router.post("/reset")
async def post_reset(request: Request) -> JSONResponse:
    try:
        body = await _json(request)
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    ctx = _ctx(request)
    await run_in_threadpool(ctx.reset, bool(body.get("keep_records", False)), bool(body.get("aws", True)))
    return JSONResponse(await run_in_threadpool(ctx.state))


@router.get("/faults")
def get_faults(request: Request) -> JSONResponse:
    return JSONResponse(_ctx(request).faults.to_dict())


@router.post("/faults")
async def post_faults(request: Request) -> JSONResponse:
    ctx = _ctx(request)
    try:
        ctx.faults.update(await _json(request))
    except (ValueError, TypeError, FaultsError) as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return JSONResponse(ctx.faults.to_dict())


@router.get("/records")
def get_records(request: Request, service: str | None = None, since: int = 0) -> JSONResponse:
    return JSONResponse(_ctx(request).records.list(service, since))


@router.get("/slack/messages")
def slack_messages(request: Request, channel: str | None = None) -> JSONResponse:
    messages = _ctx(request).slack.all_messages()
    if channel:
        messages = [m for m in messages if m["channel"] == channel.lstrip("#") or m["channel_id"] == channel]
    return JSONResponse(messages)


@router.get("/slack/channels")
def slack_channels(request: Request) -> JSONResponse:
    ws = _ctx(request).slack
    with ws.lock:
        return JSONResponse([{**ws.channel_view(c), "members": list(c["members"])} for c in ws.channels.values()])


@router.get("/pagerduty/events")
def pagerduty_events(request: Request) -> JSONResponse:
    pd = _ctx(request).pagerduty
    with pd.lock:
        return JSONResponse(list(pd.events))


@router.get("/pagerduty/incidents")
def pagerduty_incidents(request: Request) -> JSONResponse:
    pd = _ctx(request).pagerduty
    with pd.lock:
        return JSONResponse([pd.incident_view(i) for i in pd.incidents.values()])


@router.post("/pagerduty/acknowledge")
async def pagerduty_acknowledge(request: Request) -> JSONResponse:
    try:
        body = await _json(request)
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    if not body.get("dedup_key"):
        return JSONResponse({"error": "dedup_key is required"}, status_code=400)
    try:
        incident = _ctx(request).pagerduty.acknowledge(str(body["dedup_key"]), body.get("user"))
    except KeyError as exc:
        return JSONResponse({"error": str(exc.args[0])}, status_code=404)
    return JSONResponse(incident)


@router.get("/github/runs")
def github_runs(request: Request) -> JSONResponse:
    return JSONResponse(_ctx(request).github.sandbox_view())


@router.get("/sentry/issues")
def get_sentry_issues(request: Request) -> JSONResponse:
    ctx = _ctx(request)
    return JSONResponse(sentry_issues(ctx, ctx.env.sentry.organization, ctx.env.sentry.project))


@router.get("/state")
def get_state(request: Request) -> JSONResponse:
    return JSONResponse(_ctx(request).state())


@router.post("/tick")
def post_tick(request: Request) -> JSONResponse:
    ctx = _ctx(request)
    request.app.state.evaluator.tick()
    return JSONResponse(ctx.state())


@router.get("/endpoints")
def get_endpoints(request: Request) -> JSONResponse:
    return JSONResponse(request.app.state.endpoints)


@router.get("/", response_class=HTMLResponse)
def page(request: Request) -> HTMLResponse:
    ctx = _ctx(request)
    state = ctx.state()
    messages = ctx.slack.all_messages()
    by_channel: dict[str, list[dict[str, Any]]] = {}
    for message in messages:
        by_channel.setdefault(message["channel"], []).append(message)
    with ctx.pagerduty.lock:
        incidents = [ctx.pagerduty.incident_view(i) for i in ctx.pagerduty.incidents.values()]
        events = list(ctx.pagerduty.events)
    html = _TEMPLATES.get_template("page.html").render(
        state=state,
        state_json=json.dumps(state, ensure_ascii=False, indent=2),
        channels=by_channel,
        incidents=incidents,
        events=events[-30:],
        runs=ctx.github.sandbox_view()[:20],
        records=list(reversed(ctx.records.list()[-50:])),
        endpoints=request.app.state.endpoints,
        refresh=3,
    )
    return HTMLResponse(html)
