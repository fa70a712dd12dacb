"""HttpClient's retries are urllib3's Retry: idempotent methods only; a POST is sent once."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from incident_ops.clients.http import HttpClient, HttpError, RetryPolicy, retry_after_seconds


@pytest.fixture
def urllib3_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """urllib3's Retry sleeps with time.sleep: record instead."""
    import urllib3.util.retry

    sleeps: list[float] = []

    class Clock:
        @staticmethod
        def sleep(seconds: float) -> None:
            sleeps.append(seconds)

        time = staticmethod(time.time)

    monkeypatch.setattr(urllib3.util.retry, "time", Clock)
    return sleeps


def client(httpserver: HTTPServer, **policy: float) -> HttpClient:
    return HttpClient(httpserver.url_for("/"), policy=RetryPolicy(**{"attempts": 4, "backoff": 0.5, **policy}))


def test_get_is_retried_on_503_with_backoff(httpserver: HTTPServer, urllib3_sleeps: list[float]) -> None:
    httpserver.expect_ordered_request("/status").respond_with_data("busy", status=503)
    httpserver.expect_ordered_request("/status").respond_with_data("busy", status=503)
    httpserver.expect_ordered_request("/status").respond_with_json({"ok": True})

    assert client(httpserver).get_json("/status") == {"ok": True}
    assert [r.method for r, _ in httpserver.log] == ["GET"] * 3
    assert urllib3_sleeps == [1.0]  # urllib3: no pause before the first retry, then backoff × 2


def test_get_429_honours_retry_after_capped(httpserver: HTTPServer, urllib3_sleeps: list[float]) -> None:
    httpserver.expect_ordered_request("/x").respond_with_data("slow down", status=429, headers={"Retry-After": "7"})
    httpserver.expect_ordered_request("/x").respond_with_data("slow down", status=429, headers={"Retry-After": "90"})
    httpserver.expect_ordered_request("/x").respond_with_json([])

    assert client(httpserver, max_backoff=30.0).get_json("/x") == []
    assert urllib3_sleeps == [7.0, 30.0]


def test_get_gives_up_with_the_last_answer(httpserver: HTTPServer, urllib3_sleeps: list[float]) -> None:
    httpserver.expect_request("/x").respond_with_data("upstream broke", status=502)
    with pytest.raises(HttpError, match=r"GET .*/x: HTTP 502 after 4 attempt\(s\): upstream broke") as caught:
        client(httpserver).get_json("/x")
    assert len(httpserver.log) == 4 and caught.value.may_have_acted


@pytest.mark.parametrize("status", [500, 503, 429])
def test_post_is_sent_once_whatever_the_answer(httpserver: HTTPServer, urllib3_sleeps: list[float], status: int) -> None:
    httpserver.expect_request("/dispatch", method="POST").respond_with_data("no", status=status,
                                                                              headers={"Retry-After": "1"})
    with pytest.raises(HttpError, match=rf"HTTP {status} after 1 attempt") as caught:
        client(httpserver).post_json("/dispatch", {"a": 1})
    assert len(httpserver.log) == 1 and urllib3_sleeps == []
    assert caught.value.may_have_acted is (status >= 500)
    assert caught.value.retry_after == 1.0


def test_post_timeout_is_not_retried_and_may_have_acted(httpserver: HTTPServer) -> None:
    received: list[str] = []
    answered = threading.Event()

    def slow(request: Request) -> Response:
        received.append(request.method)
        time.sleep(0.6)
        answered.set()
        return Response("{}", content_type="application/json")

    httpserver.expect_request("/dispatch", method="POST").respond_with_handler(slow)
    with pytest.raises(HttpError, match="no answer after 1 attempt.*ReadTimeout") as caught:
        client(httpserver, timeout=0.2).post_json("/dispatch", {})
    assert answered.wait(5) and received == ["POST"] and caught.value.may_have_acted


def test_refused_connection_never_reached_the_server(urllib3_sleeps: list[float]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    http = HttpClient(f"http://127.0.0.1:{port}", policy=RetryPolicy(attempts=3, backoff=0.0))
    with pytest.raises(HttpError, match="no answer after 3 attempt") as caught:
        http.post_json("/dispatch", {})  # a connection never opened is retried for any method
    assert not caught.value.may_have_acted


def test_other_4xx_are_not_retried(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/x").respond_with_json({"message": "Bad credentials"}, status=401)
    with pytest.raises(HttpError, match="HTTP 401 after 1 attempt") as caught:
        client(httpserver).get_json("/x")
    assert len([r for r, _ in httpserver.log if r.path == "/x"]) == 1 and not caught.value.may_have_acted


def test_once_sends_one_request(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/x").respond_with_data("busy", status=503)
    http = client(httpserver)
    with pytest.raises(HttpError, match="HTTP 503 after 1 attempt"):
        http.once().get_json("/x")
    assert len(httpserver.log) == 1 and http.once() is http.once()


def test_retry_policy_is_urllib3_retry() -> None:
    retry = RetryPolicy(attempts=5, backoff=0.5, max_backoff=20).retry()
    assert retry.total == 4 and retry.backoff_factor == 0.5 and retry.backoff_max == 20
    assert set(retry.allowed_methods) == {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"}
    assert set(retry.status_forcelist) == {429, 500, 502, 503, 504}
    assert retry.respect_retry_after_header and retry.retry_after_max == 20


def test_retry_after_seconds() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None
    assert retry_after_seconds("600", cap=60) == 60.0
