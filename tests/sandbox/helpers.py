"""Helpers of the sandbox tests: plain HTTP calls and boto3 clients against a running sandbox."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests
from sandbox.server import Sandbox


def get(sandbox: Sandbox, path: str, **kwargs: Any) -> requests.Response:
    return requests.get(f"{sandbox.endpoints['http']}{path}", timeout=10, **kwargs)


def post(sandbox: Sandbox, path: str, **kwargs: Any) -> requests.Response:
    return requests.post(f"{sandbox.endpoints['http']}{path}", timeout=10, **kwargs)


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


class Aws:
    """Plain boto3 clients against the sandbox's moto (what a remediation would use)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    def __getattr__(self, service: str) -> Any:
        if service.startswith("_"):
            raise AttributeError(service)
        client = self._sandbox.boto3_client(service)
        setattr(self, service, client)
        return client


class Receiver:
    """A local HTTP server that records each request (raw body, headers) and answers from a script."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[tuple[int, Any]] = []  # answers to give, in order; then `default`
        self.default: tuple[int, Any] = (200, None)
        self.delay = 0.0
        self.on_request: Callable[[dict[str, Any]], Any] | None = None  # called with each request, after the answer
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                record = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body,
                          "at": time.time()}
                with receiver.lock:
                    receiver.requests.append(record)
                    status, answer = receiver.script.pop(0) if receiver.script else receiver.default
                if receiver.delay:
                    time.sleep(receiver.delay)
                data = b"" if answer is None else json.dumps(answer, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                if receiver.on_request is not None:
                    receiver.on_request(record)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
