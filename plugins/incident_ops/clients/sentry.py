"""Sentry: the new and the spiking issues of a project (runbook Phase 2, Sentryの確認).

`SentryClient` reads `GET /api/0/projects/{org}/{project}/issues/?query=is:unresolved&statsPeriod=24h`
(following the `Link` header's next cursor) over the shared `HttpClient`; `classify_issues` is the
pure rule:

- new: first seen at or after `since`;
- spiking: not new, and the last hourly bucket of `stats["24h"]` (the latest bucket that starts at or
  before `now`) has at least `spike_factor` × the average of the previous hourly buckets, and at
  least `min_events` events.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from incident_ops.clients.http import HttpClient, RetryPolicy

__all__ = ["DEFAULT_SENTRY_URL", "SentryClient", "classify_issues", "parse_sentry_time", "summarize_issue"]

DEFAULT_SENTRY_URL = "https://sentry.io"
_LINK = re.compile(r'<(?P<url>[^>]+)>;\s*rel="(?P<rel>\w+)";\s*results="(?P<results>\w+)"(?:;\s*cursor="(?P<cursor>[^"]*)")?')


def parse_sentry_time(value: str | dt.datetime) -> dt.datetime:
    """Sentry's ISO 8601 times ('2026-01-05T01:02:03.456789Z') as aware datetimes."""
    if isinstance(value, dt.datetime):
        when = value
    else:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when


def _aware(value: dt.datetime, name: str) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name} needs a time zone: {value!r}")
    return value


def _hourly(issue: Mapping[str, Any], now: dt.datetime) -> tuple[int, list[int]]:
    """(last hour's count, previous hours' counts) from stats['24h'] up to `now`."""
    buckets = (issue.get("stats") or {}).get("24h") or []
    cutoff = now.timestamp()
    points = sorted((float(ts), int(n or 0)) for ts, n in buckets if float(ts) <= cutoff)
    if not points:
        return 0, []
    return points[-1][1], [n for _, n in points[:-1]]


def summarize_issue(issue: Mapping[str, Any], now: dt.datetime) -> dict[str, Any]:
    last_hour, previous = _hourly(issue, now)
    return {
        "id": issue.get("id"),
        "short_id": issue.get("shortId"),
        "title": issue.get("title"),
        "culprit": issue.get("culprit"),
        "permalink": issue.get("permalink"),
        "level": issue.get("level"),
        "count": int(issue.get("count") or 0),
        "user_count": int(issue.get("userCount") or 0),
        "first_seen": issue.get("firstSeen"),
        "last_seen": issue.get("lastSeen"),
        "last_hour": last_hour,
        "hourly_average": round(sum(previous) / len(previous), 2) if previous else 0.0,
    }


def classify_issues(
    issues: Iterable[Mapping[str, Any]],
    since: dt.datetime,
    now: dt.datetime,
    spike_factor: float = 3.0,
    min_events: int = 1,
) -> dict[str, list[dict[str, Any]]]:
    """{"new": [...], "spiking": [...]} — summaries, the busiest first (pure; the times are inputs)."""
    _aware(since, "since")
    _aware(now, "now")
    if spike_factor <= 0:
        raise ValueError("spike_factor must be positive")
    new: list[dict[str, Any]] = []
    spiking: list[dict[str, Any]] = []
    for issue in issues:
        first_seen = issue.get("firstSeen")
        summary = summarize_issue(issue, now)
        if first_seen and parse_sentry_time(first_seen) >= since:
            new.append(summary)
            continue
        last_hour, previous = _hourly(issue, now)
        baseline = sum(previous) / len(previous) if previous else 0.0
        if last_hour >= max(spike_factor * baseline, min_events):
            spiking.append(summary)
    new.sort(key=lambda item: (item["count"], item["last_hour"]), reverse=True)
    spiking.sort(key=lambda item: (item["last_hour"], item["count"]), reverse=True)
    return {"new": new, "spiking": spiking}


def _next_page(link_header: str | None) -> str | None:
    for match in _LINK.finditer(link_header or ""):
        if match["rel"] == "next" and match["results"] == "true":
            return match["url"]
    return None


class SentryClient:
    """Sentry's web API with a bearer token (an auth token with project:read)."""

    def __init__(
        self,
        base_url: str = DEFAULT_SENTRY_URL,
        token: str | None = None,
        *,
        http: HttpClient | None = None,
        policy: RetryPolicy | None = None,
        verify: bool | str = True,
        max_pages: int = 5,
    ) -> None:
        if http is None:
            if not token:
                raise ValueError("a Sentry auth token is required (or pass an HttpClient)")
            http = HttpClient(base_url, headers={"Authorization": f"Bearer {token}"}, policy=policy, verify=verify)
        self.http = http
        self.max_pages = max_pages

    def unresolved_issues(self, organization: str, project: str, stats_period: str = "24h") -> list[dict[str, Any]]:
        path = f"/api/0/projects/{quote(organization, safe='')}/{quote(project, safe='')}/issues/"
        params: dict[str, str] | None = {"query": "is:unresolved", "statsPeriod": stats_period}
        url: str = path
        issues: list[dict[str, Any]] = []
        for _ in range(self.max_pages):
            response = self.http.request("GET", url, params=params)
            page = response.json()
            if not isinstance(page, list):
                raise ValueError(f"Sentry answered GET {url} with {type(page).__name__}, expected a list of issues")
            issues.extend(page)
            next_url = _next_page(response.headers.get("Link"))
            if next_url is None:
                break
            url, params = next_url, None
        return issues

    def new_and_spiking_issues(
        self,
        organization: str,
        project: str,
        since: dt.datetime,
        now: dt.datetime,
        spike_factor: float = 3.0,
        min_events: int = 1,
    ) -> dict[str, list[dict[str, Any]]]:
        return classify_issues(self.unresolved_issues(organization, project), since, now, spike_factor, min_events)
