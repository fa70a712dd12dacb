"""Fixtures of the flows' tests."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def memory_s3(monkeypatch: pytest.MonkeyPatch) -> Any:
    """`s3://` with the `aws_default` connection, served by an in-memory file system (no network)."""
    from airflow.sdk.io import store
    from airflow.sdk.io.store import attach
    from fsspec.implementations.memory import MemoryFileSystem

    monkeypatch.setattr(store, "_STORE_CACHE", {})
    fs = MemoryFileSystem()
    fs.store.clear()
    fs.pseudo_dirs.clear()
    fs.pseudo_dirs.append("")
    attach("s3", conn_id="aws_default", fs=fs)
    return fs
