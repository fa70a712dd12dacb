"""Sentry: the pure classification, and the client against a local fake of the issues API."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from incident_ops.clients.http import HttpClient, HttpError, RetryPolicy
from incident_ops.clients.sentry import SentryClient, classify_issues, parse_sentry_time

UTC = dt.UTC
NOW = dt.datetime(2026, 1, 5, 13, 30, tzinfo=UTC)
SINCE = NOW - dt.timedelta(minutes=30)
HOUR0 = int(dt.datetime(2026, 1, 4, 14, 0, tzinfo=UTC).timestamp())  # 24 hourly buckets up to 13:00


def stats(last: int, previous: int) -> dict[str, list[list[int]]]:
    return {"24h": [[HOUR0 + 3600 * n, previous] for n in range(23)] + [[HOUR0 + 3600 * 23, last]]}


def issue(issue_id: str, first_seen: str, last: int, previous: int, count: int = 100, **extra: Any) -> dict[str, Any]:
    return {
        "id": issue_id, "shortId": f"PB-{issue_id}", "title": f"Error {issue_id}", "culprit": "app.views",
        "permalink": f"https://sentry.io/organizations/pb/issues/{issue_id}/", "level": "error",
        "count": str(count), "userCount": 7, "firstSeen": first_seen, "lastSeen": "2026-01-05T13:29:00Z",
        "stats": stats(last, previous), **extra,
    }


ISSUES = [
    issue("1", "2026-01-05T13:10:00.123456Z", last=40, previous=0, count=40),  # new
    issue("2", "2025-12-01T00:00:00Z", last=90, previous=10, count=5000),     # spiking: 90 >= 3 × 10
    issue("3", "2025-12-01T00:00:00Z", last=25, previous=10, count=4000),     # steady: 25 < 30
    issue("4", "2025-12-01T00:00:00Z", last=0, previous=0, count=3),          # quiet
    issue("5", "2025-12-01T00:00:00Z", last=3, previous=0, count=3),          # woke up: 3 >= max(0, 1)
]


def test_parse_sentry_time() -> None:
    assert parse_sentry_time("2026-01-05T13:10:00.123456Z") == dt.datetime(2026, 1, 5, 13, 10, 0, 123456, tzinfo=UTC)
    assert parse_sentry_time("2026-01-05T13:10:00").tzinfo is not None


def test_classify_new_and_spiking() -> None:
    result = classify_issues(ISSUES, SINCE, NOW)

    assert [i["id"] for i in result["new"]] == ["1"]
    assert [i["id"] for i in result["spiking"]] == ["2", "5"]
    spike = result["spiking"][0]
    assert spike["last_hour"] == 90 and spike["hourly_average"] == 10.0 and spike["count"] == 5000
    assert spike["permalink"].endswith("/2/")


def test_classify_factor_and_threshold() -> None:
    assert [i["id"] for i in classify_issues(ISSUES, SINCE, NOW, spike_factor=2.0)["spiking"]] == ["2", "3", "5"]
    assert [i["id"] for i in classify_issues(ISSUES, SINCE, NOW, min_events=10)["spiking"]] == ["2"]


def test_classify_ignores_buckets_after_now() -> None:
    early = NOW - dt.timedelta(hours=1)  # 12:30: the 13:00 bucket is in the future
    assert classify_issues([ISSUES[1]], SINCE - dt.timedelta(hours=1), early)["spiking"] == []


def test_classify_needs_aware_times() -> None:
    with pytest.raises(ValueError, match="time zone"):
        classify_issues(ISSUES, SINCE.replace(tzinfo=None), NOW)


def test_client_reads_the_issues_api_with_pagination(httpserver: HTTPServer) -> None:
    path = "/api/0/projects/peoplebooster/backend/issues/"
    seen: list[Request] = []

    def page(request: Request) -> Response:
        seen.append(request)
        if request.args.get("cursor") == "0:100:0":
            return Response(json.dumps(ISSUES[3:]), content_type="application/json",
                            headers={"Link": f'<{httpserver.url_for(path)}?cursor=0:200:0>; rel="next"; results="false"; cursor="0:200:0"'})
        return Response(json.dumps(ISSUES[:3]), content_type="application/json", headers={
            "Link": f'<{httpserver.url_for(path)}?cursor=0:0:1>; rel="previous"; results="false"; cursor="0:0:1", '
                    f'<{httpserver.url_for(path)}?query=is%3Aunresolved&statsPeriod=24h&cursor=0:100:0>; rel="next"; results="true"; cursor="0:100:0"',
        })

    httpserver.expect_request(path).respond_with_handler(page)
    client = SentryClient(httpserver.url_for("/"), "sntrys_token", policy=RetryPolicy(backoff=0.0))

    result = client.new_and_spiking_issues("peoplebooster", "backend", SINCE, NOW)

    assert [i["id"] for i in result["new"]] == ["1"] and [i["id"] for i in result["spiking"]] == ["2", "5"]
    assert len(seen) == 2
    assert seen[0].method == "GET"
    assert seen[0].args["query"] == "is:unresolved" and seen[0].args["statsPeriod"] == "24h"
    assert seen[0].headers["Authorization"] == "Bearer sntrys_token"
    assert seen[1].args["cursor"] == "0:100:0"


def test_client_retries_5xx_and_raises_on_4xx(httpserver: HTTPServer) -> None:
    path = "/api/0/projects/peoplebooster/backend/issues/"
    httpserver.expect_ordered_request(path).respond_with_data("busy", status=503)
    httpserver.expect_ordered_request(path).respond_with_json(ISSUES[:1])
    client = SentryClient(http=HttpClient(httpserver.url_for("/"), policy=RetryPolicy(backoff=0.0)))
    assert [i["id"] for i in client.unresolved_issues("peoplebooster", "backend")] == ["1"]
    assert len(httpserver.log) == 2

    httpserver.clear()
    httpserver.expect_request(path).respond_with_json({"detail": "Invalid token"}, status=401)
    with pytest.raises(HttpError, match="HTTP 401"):
        client.unresolved_issues("peoplebooster", "backend")


def test_client_needs_a_token() -> None:
    with pytest.raises(ValueError, match="token"):
        SentryClient("https://sentry.io")
