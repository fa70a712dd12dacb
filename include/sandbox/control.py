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
POST /_sandbox/pagerduty/resolve     {"dedup_key", "user"}   (a person resolves in the app)
POST /_sandbox/pagerduty/reassign    {"dedup_key", "assignee", "user"}
                                     (each transition is sent as a signed v3 webhook, see webhooks.py)
POST /_sandbox/slack/click           {"channel", "ts", "action_id", "user_id"}: a person clicks a button;
                                     the signed block_actions delivery (with its answer) is returned
POST /_sandbox/slack/command         {"text", "user_id", "channel", "command": "/incident"}: a slash
                                     command; the delivery, and the answer shown to the person
GET  /_sandbox/slack/responses       what the app POSTed to the response_urls
GET|POST /_sandbox/webhooks          where Slack/PagerDuty deliver and with which secrets
                                     {"airflow_url" | "slack_url", "pagerduty_url", "slack_signing_secret",
                                      "pagerduty_webhook_secrets", "pagerduty_retry_delays", ...}
GET  /_sandbox/webhooks/deliveries?kind=slack|pagerduty|slack.block_actions|...&since=<seq>
GET  /_sandbox/people                the workspace's people: Slack and PagerDuty ids, roster, on call now
GET  /_sandbox/github/runs           GET /_sandbox/sentry/issues
GET  /_sandbox/state                 scenario, health and the AWS facts behind it
POST /_sandbox/tick                  run the evaluator once now (alarms follow the health)
GET  /_sandbox/                      an HTML page of all of it (refreshes itself)
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from incident_ops.core.oncall import rotation_engineer

from .scenarios import ScenarioError, break_scenario, clear_scenario
from .sentry import issues as sentry_issues
from .slack import SlackError, block_actions_payload, show_command_answer, slash_command_fields
from .state import FaultsError
from .webhooks import post_slack

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
    if "application/x-www-form-urlencoded" in request.headers.get("content-type", ""):
        form = await request.form()  # the HTML page's buttons
        return {k: v for k, v in form.items() if isinstance(v, str)}
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return data


def _from_page(request: Request) -> bool:
    return "application/x-www-form-urlencoded" in request.headers.get("content-type", "")


def _back_to_page(body: dict[str, Any]) -> RedirectResponse:
    """After a button of the page: back to it, as the same person."""
    acting = body.get("as") or body.get("user_id")
    return RedirectResponse("/_sandbox/" + (f"?{urlencode({'as': acting})}" if acting else ""), status_code=303)


def _answer(request: Request, body: dict[str, Any], data: Any, status: int = 200) -> Response:
    if _from_page(request) and status < 400:
        return _back_to_page(body)
    return JSONResponse(data, status_code=status)


def _base_url(request: Request) -> str:
    """The sandbox's own HTTP base (the response_urls point here)."""
    return request.app.state.endpoints.get("http") or str(request.base_url).rstrip("/")


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


async def _pagerduty_transition(request: Request, required: tuple[str, ...], act: Any) -> Response:
    """A person's action on a PagerDuty incident (the page's buttons, the tests): `act(pd, body)`."""
    try:
        body = await _json(request)
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    if not all(body.get(name) for name in required):
        return JSONResponse({"error": f"{' and '.join(required)} {'is' if len(required) == 1 else 'are'} required"},
                            status_code=400)
    try:
        incident = act(_ctx(request).pagerduty, body)
    except KeyError as exc:
        return JSONResponse({"error": str(exc.args[0])}, status_code=404)
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return _answer(request, body, incident)


@router.post("/pagerduty/acknowledge")
async def pagerduty_acknowledge(request: Request) -> Response:
    return await _pagerduty_transition(request, ("dedup_key",),
                                       lambda pd, b: pd.acknowledge(str(b["dedup_key"]), b.get("user")))


@router.post("/pagerduty/resolve")
async def pagerduty_resolve(request: Request) -> Response:
    return await _pagerduty_transition(request, ("dedup_key",),
                                       lambda pd, b: pd.resolve(str(b["dedup_key"]), b.get("user")))


@router.post("/pagerduty/reassign")
async def pagerduty_reassign(request: Request) -> Response:
    return await _pagerduty_transition(
        request, ("dedup_key", "assignee"),
        lambda pd, b: pd.reassign(str(b["dedup_key"]), str(b["assignee"]), b.get("user")))


@router.get("/pagerduty/webhooks")
def pagerduty_webhooks(request: Request) -> JSONResponse:
    """Every v3 webhook event the stand-in produced (delivered or not: see /webhooks/deliveries)."""
    pd = _ctx(request).pagerduty
    with pd.lock:
        return JSONResponse(list(pd.webhooks))


# --- Slack's side: clicks and slash commands, signed and delivered to the app --------------------


@router.post("/slack/click")
async def slack_click(request: Request) -> Response:
    """A person clicks a button: {"channel" (id or name), "ts", "action_id", "user_id"}."""
    try:
        body = await _json(request)
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    ctx = _ctx(request)
    try:
        payload = block_actions_payload(ctx.slack, _base_url(request), body.get("channel"), body.get("ts"),
                                        str(body.get("action_id") or ""), body.get("user_id"))
    except SlackError as exc:
        return JSONResponse({"error": exc.error}, status_code=404)
    action = payload["actions"][0]
    form = urlencode({"payload": json.dumps(payload, ensure_ascii=False)}).encode()
    summary = {"channel_id": payload["channel"]["id"], "message_ts": payload["container"]["message_ts"],
               "action_id": action["action_id"], "block_id": action["block_id"], "value": action["value"],
               "user_id": payload["user"]["id"]}
    delivery = await run_in_threadpool(post_slack, ctx.deliveries, ctx.webhooks, "slack.block_actions", form,
                                       by=ctx.slack.users[payload["user"]["id"]]["real_name"], summary=summary)
    return _answer(request, body, delivery)


@router.post("/slack/command")
async def slack_command(request: Request) -> Response:
    """A person types a slash command: {"text", "user_id", "channel" (default #infra-support), "command"}."""
    try:
        body = await _json(request)
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    ctx = _ctx(request)
    command = str(body.get("command") or "/incident")
    channel = str(body.get("channel") or ctx.runbook.contacts.channels["infra"])
    try:
        fields = slash_command_fields(ctx.slack, _base_url(request), channel, body.get("user_id"),
                                      str(body.get("text") or ""), command)
    except SlackError as exc:
        return JSONResponse({"error": exc.error}, status_code=404)
    summary = {"channel_id": fields["channel_id"], "command": command, "text": fields["text"], "user_id": fields["user_id"]}
    delivery = await run_in_threadpool(post_slack, ctx.deliveries, ctx.webhooks, "slack.slash_command",
                                       urlencode(fields).encode(), by=ctx.slack.users[fields["user_id"]]["real_name"],
                                       summary=summary)
    if ctx.webhooks.slack_url:
        show_command_answer(ctx.slack, fields["channel_id"], fields["user_id"], command, delivery)
    return _answer(request, body, delivery)


@router.get("/slack/responses")
def slack_responses(request: Request) -> JSONResponse:
    ws = _ctx(request).slack
    with ws.lock:
        return JSONResponse(json.loads(json.dumps(ws.responses)))


@router.get("/webhooks")
def get_webhooks(request: Request) -> JSONResponse:
    return JSONResponse(_ctx(request).webhooks.to_dict())


@router.post("/webhooks")
async def post_webhooks(request: Request) -> JSONResponse:
    ctx = _ctx(request)
    try:
        ctx.webhooks.update(await _json(request))
    except (ValueError, TypeError) as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return JSONResponse(ctx.webhooks.to_dict())


@router.get("/webhooks/deliveries")
def get_deliveries(request: Request, kind: str | None = None, since: int = 0) -> JSONResponse:
    return JSONResponse(_ctx(request).deliveries.list(kind, since))


def _people(ctx: SandboxContext) -> list[dict[str, Any]]:
    runbook = ctx.runbook
    oncall = rotation_engineer(runbook, dt.datetime.now(dt.UTC))
    people = [{"id": p.id, "roster": True, "person": p} for p in runbook.oncall.roster]
    people += [{"id": key, "roster": False, "person": p} for key, p in runbook.contacts.people.items()]
    return [
        {"id": item["id"], "name": item["person"].name, "slack_user_id": item["person"].slack_user_id,
         "pagerduty_user_id": item["person"].pagerduty_user_id, "email": item["person"].email,
         "roster": item["roster"], "oncall": item["roster"] and item["id"] == oncall.id}
        for item in people
    ]


@router.get("/people")
def get_people(request: Request) -> JSONResponse:
    return JSONResponse(_people(_ctx(request)))


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


def _buttons(blocks: Any) -> list[dict[str, Any]]:
    """The buttons of a message's actions blocks (what the page lets a person click)."""
    found = []
    for block in blocks or []:
        if not isinstance(block, dict) or block.get("type") != "actions":
            continue
        for element in block.get("elements") or []:
            if isinstance(element, dict) and element.get("type") == "button" and element.get("action_id"):
                found.append({"action_id": element["action_id"], "style": element.get("style") or "",
                              "label": (element.get("text") or {}).get("text") or element["action_id"]})
    return found


@router.get("/", response_class=HTMLResponse)
def page(request: Request, refresh: int = 3) -> HTMLResponse:
    ctx = _ctx(request)
    state = ctx.state()
    people = _people(ctx)
    slack_people = [p for p in people if p["slack_user_id"]]
    acting = request.query_params.get("as")
    if acting not in {p["slack_user_id"] for p in slack_people}:
        acting = next((p["slack_user_id"] for p in slack_people if p["oncall"]), slack_people[0]["slack_user_id"])
    names = {u["id"]: u["real_name"] for u in ctx.slack.users.values()}
    messages = ctx.slack.all_messages()
    by_channel: dict[str, list[dict[str, Any]]] = {}
    for message in messages:
        message["buttons"] = [] if message["ephemeral"] else _buttons(message.get("blocks"))
        message["from_name"] = names.get(message["user"], "Slackbot" if message["user"] == "USLACKBOT" else message["user"])
        message["to_name"] = names.get(message.get("to_user") or "", message.get("to_user") or "")
        by_channel.setdefault(message["channel"], []).append(message)
    with ctx.pagerduty.lock:
        incidents = [ctx.pagerduty.incident_view(i) for i in ctx.pagerduty.incidents.values()]
        events = list(ctx.pagerduty.events)
    deliveries = ctx.deliveries.list()[-30:]
    for delivery in deliveries:
        delivery.pop("body", None)
        delivery.pop("headers", None)
    html = _TEMPLATES.get_template("page.html").render(
        people=slack_people,
        acting=acting,
        acting_name=names.get(acting, acting),
        channel_names=[c["name"] for c in ctx.slack.channels.values() if not c.get("is_im")],
        deliveries=list(reversed(deliveries)),
        webhooks=ctx.webhooks.to_dict(),
        state=state,
        state_json=json.dumps(state, ensure_ascii=False, indent=2),
        channels=by_channel,
        incidents=incidents,
        events=events[-30:],
        runs=ctx.github.sandbox_view()[:20],
        records=list(reversed(ctx.records.list()[-50:])),
        endpoints=request.app.state.endpoints,
        refresh=max(refresh, 0),
    )
    return HTMLResponse(html)
