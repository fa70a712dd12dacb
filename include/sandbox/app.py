"""The one FastAPI app of the sandbox (served over HTTP and HTTPS), and the recorder in front of it.

`Recorder` is plain ASGI middleware: it reads the whole body of each request to a stand-in, answers
with the injected fault when one is switched on (Slack 429 with Retry-After: 1, PagerDuty 5xx), else
replays the body to the app, and records the request as received, with the status it got.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, parse_qsl

from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse

from . import control, github, pagerduty, pb, sentry, slack, sns

if TYPE_CHECKING:
    from .context import SandboxContext
    from .scenarios import Evaluator

__all__ = ["build_app", "service_of"]

PREFIXES = {"slack": "slack", "pagerduty": "pagerduty", "github": "github", "sentry": "sentry", "pb": "pb", "status": "status",
            "sns": "sns"}
HEADERS_OF_INTEREST = (
    "content-type",
    "authorization",
    "user-agent",
    "accept",
    "from",
    "x-github-api-version",
    "x-slack-retry-num",
    "idempotency-key",
)


def service_of(path: str) -> str | None:
    first = path.lstrip("/").split("/", 1)[0]
    if first.startswith("SimpleNotificationService-"):  # the SNS signing certificate, at SNS's own path shape
        return "sns"
    return PREFIXES.get(first)


def _mask(value: str) -> str:
    scheme, _, secret = value.partition(" ") if " " in value else ("", "", value)
    if "token=" in secret:
        prefix, _, secret = secret.partition("token=")
        scheme = f"{scheme} {prefix}token=".strip()
    shown = f"{secret[:5]}…{secret[-4:]}" if len(secret) > 12 else "…"
    return f"{scheme} {shown}".strip()


def _parse_body(body: bytes, content_type: str, raw: bool) -> Any:
    if not body:
        return None
    if raw:
        preview = body[:2000].decode("utf-8", errors="replace")
        return {"bytes": len(body), "text": preview}
    if "json" in content_type or body[:1] in (b"{", b"["):
        try:
            return json.loads(body)
        except ValueError:
            pass
    if "application/x-www-form-urlencoded" in content_type:
        try:
            return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            pass
    if "multipart/form-data" in content_type:
        return {"multipart": True, "bytes": len(body)}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {"bytes": len(body)}
    return text if len(text) <= 20000 else {"bytes": len(body), "text": text[:20000]}


def _fault_response(service: str, status: int) -> JSONResponse:
    if service == "slack":
        if status == 429:
            return JSONResponse({"ok": False, "error": "ratelimited"}, status_code=429, headers={"Retry-After": "1"})
        return JSONResponse({"ok": False, "error": "fatal_error"}, status_code=status)
    if status == 429:
        return JSONResponse({"error": {"message": "Rate Limit Exceeded", "code": 2020}}, status_code=429)
    return JSONResponse({"status": "error", "message": "Internal Server Error", "error": {"message": "Internal Server Error", "code": 2000}}, status_code=status)


class Recorder:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        service = service_of(path)
        if service is None:
            await self.app(scope, receive, send)
            return
        ctx: SandboxContext = scope["app"].state.ctx
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        outcome: dict[str, Any] = {"status": None}

        async def send_and_note(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                outcome["status"] = message["status"]
            await send(message)

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        fault = None
        if service == "slack" and path.startswith("/slack/api/"):
            fault = ctx.faults.take("slack")
        elif service == "pagerduty":
            fault = ctx.faults.take("pagerduty")
        record: dict[str, Any] = {
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "service": service,
            "scheme": scope.get("scheme", "http"),
            "method": scope["method"],
            "path": path,
            "query": {k: v[0] if len(v) == 1 else v for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True).items()},
            "headers": {k: (_mask(headers[k]) if k == "authorization" else headers[k]) for k in HEADERS_OF_INTEREST if k in headers},
            "body": _parse_body(body, headers.get("content-type", ""), raw=path.startswith("/slack/upload/")),
            "fault": fault,
        }
        try:
            if fault is not None:
                await _fault_response(service, fault)(scope, replay, send_and_note)
            else:
                await self.app(scope, replay, send_and_note)
        finally:
            record["status"] = outcome["status"]
            ctx.records.add(record)


def build_app(ctx: SandboxContext, evaluator: Evaluator | None = None, endpoints: dict[str, Any] | None = None) -> FastAPI:
    app = FastAPI(title="PeopleBooster sandbox", docs_url="/_sandbox/docs", openapi_url="/_sandbox/openapi.json", redoc_url=None)
    app.state.ctx = ctx
    app.state.evaluator = evaluator
    app.state.endpoints = endpoints or {}
    for module in (slack, pagerduty, github, sentry, pb, control):
        app.include_router(module.router)
    sns.register(app, app.state.endpoints)  # Amazon SNS: signs and delivers alarm notifications

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/_sandbox/")

    app.add_middleware(Recorder)
    return app
