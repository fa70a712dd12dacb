"""Sentry stand-in: GET /sentry/api/0/projects/{org}/{project}/issues/ (Bearer token).

Issues follow the breaks: each broken scenario has its issues (first seen a few minutes before the
break, counting up while the problem lasts, frozen once it healed), next to one old low-volume issue
that every project has. `stats` has the `statsPeriod` buckets ("24h": 24 hourly, "14d": 14 daily).
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from .evidence import SENTRY_BASELINE, SENTRY_ISSUES
from .state import iso

if TYPE_CHECKING:
    from .context import SandboxContext

__all__ = ["issues", "router"]


def _issue_id(key: str) -> str:
    return str(4500000000 + int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100000000)


def _stats(first: float, last: float, rate_per_min: float, now: float, period: str) -> list[list[int]]:
    bucket = 86400 if period == "14d" else 3600
    count = 14 if period == "14d" else 24
    end = now - now % bucket + bucket
    points = []
    for i in range(count, 0, -1):
        start = end - i * bucket
        overlap = max(0.0, min(last, start + bucket) - max(first, start))
        points.append([int(start), int(round(overlap / 60 * rate_per_min))])
    return points


def issues(ctx: SandboxContext, org: str, project: str, period: str = "24h", now: float | None = None) -> list[dict[str, Any]]:
    now = time.time() if now is None else now
    found: list[dict[str, Any]] = []
    project_ref = {"id": _issue_id(project)[-7:], "name": project, "slug": project, "platform": "node"}

    def make(key: str, title: str, culprit: str, kind: str, value: str, first: float, last: float, count: int, users: int, level: str, rate: float) -> dict[str, Any]:
        issue_id = _issue_id(key)
        short = f"{project.upper()}-{int(issue_id) % 4096:X}"
        issue = {
            "id": issue_id,
            "shortId": short,
            "title": title,
            "culprit": culprit,
            "level": level,
            "status": "unresolved",
            "substatus": "new" if now - first < 86400 else "ongoing",
            "isUnhandled": level == "error",
            "type": "error",
            "metadata": {"type": kind, "value": value},
            "firstSeen": iso(first),
            "lastSeen": iso(last),
            "count": str(count),
            "userCount": users,
            "permalink": f"https://{org}.sentry.io/issues/{issue_id}/",
            "project": project_ref,
        }
        if period:
            issue["stats"] = {period: _stats(first, last, rate, now, period)}
        return issue

    for item in SENTRY_BASELINE:
        first = now - item["age_hours"] * 3600
        last = now - 5 * 3600
        rate = item["count"] / ((last - first) / 60)
        found.append(make(f"{project}:baseline:{item['title']}", item["title"], item["culprit"], item["type"], item["value"], first, last, item["count"], item["users"], item["level"], rate))
    with ctx.lock:
        breaks = list(ctx.memory.breaks.values())
    for info in breaks:
        first = info.at - 180
        last = info.healed_at or now
        minutes = max((last - first) / 60, 0.5)
        for index, (title, culprit, kind, value, rate, users) in enumerate(SENTRY_ISSUES.get(info.scenario, ())):
            count = int(rate * minutes) + 1
            found.append(
                make(f"{project}:{info.scenario}:{index}:{int(info.at)}", title, culprit, kind, value, first, last, count, min(users, count), "error", rate)
            )
    return found


router = APIRouter()


@router.get("/sentry/api/0/projects/{org}/{project}/issues/")
def project_issues(org: str, project: str, request: Request) -> JSONResponse:
    ctx: SandboxContext = request.app.state.ctx
    auth = request.headers.get("authorization", "")
    if not auth.lower().startswith("bearer ") or not auth[7:].strip():
        return JSONResponse({"detail": "Authentication credentials were not provided."}, status_code=401)
    known = {(env.sentry.organization, env.sentry.project) for env in ctx.runbook.environments.values()}
    if (org, project) not in known:
        return JSONResponse({"detail": "The requested resource does not exist"}, status_code=404)
    q = request.query_params
    period = q.get("statsPeriod", "24h")
    if period not in ("24h", "14d", ""):
        return JSONResponse({"detail": "Invalid stats_period. Valid choices are '', '24h', and '14d'"}, status_code=400)
    items = issues(ctx, org, project, period)
    words = [w for w in (q.get("query") or "").split() if ":" not in w]
    for word in words:
        items = [i for i in items if word.lower() in (i["title"] + " " + i["culprit"]).lower()]
    sort = q.get("sort", "date")
    if sort == "new":
        items.sort(key=lambda i: i["firstSeen"], reverse=True)
    elif sort == "freq":
        items.sort(key=lambda i: int(i["count"]), reverse=True)
    else:
        items.sort(key=lambda i: i["lastSeen"], reverse=True)
    limit = min(int(q.get("limit") or 25), 100)
    base = str(request.url).split("?")[0]
    link = (
        f'<{base}?&cursor=0:0:1>; rel="previous"; results="false"; cursor="0:0:1", '
        f'<{base}?&cursor=0:{limit}:0>; rel="next"; results="false"; cursor="0:{limit}:0"'
    )
    return JSONResponse(items[:limit], headers={"Link": link})
