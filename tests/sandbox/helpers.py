"""Helpers of the sandbox tests: plain HTTP calls and boto3 clients against a running sandbox."""

from __future__ import annotations

import time
from collections.abc import Callable
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
