"""Where the incident's artifacts live: evidence, charts, postmortem drafts, weekly reports.

Tasks of one run may execute on different hosts (Celery workers), so nothing is handed from one task to
the next through a worker's disk. Every artifact is written and read through Airflow's
`ObjectStoragePath`, and XCom and the ledger carry its URL (`file://…` on one machine, `s3://…` in
production), never a local path.

- `INCIDENT_OPS_ARTIFACTS_URL`: the base location. Default `file://<state dir>` (the state folder,
  `INCIDENT_OPS_STATE_DIR`, default `state/`), which keeps the local layout `incidents/<id>/…`,
  `postmortems/`, `reports/`. In production: `s3://<bucket>/incident-ops`.
- `INCIDENT_OPS_ARTIFACTS_CONN_ID`: the Airflow connection of a remote store; default `aws_default` for
  `s3://`. `file://` uses none.
- Postmortem drafts go to the runbook's `postmortem.storage`: a URL (`s3://…`, `file://…`) is used as it
  is, an absolute folder as `file://`, a relative folder is under the artifacts location.
  `INCIDENT_OPS_POSTMORTEM_STORAGE` (a URL or an absolute folder) overrides it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

__all__ = [
    "ARTIFACTS_CONN_ENV",
    "ARTIFACTS_URL_ENV",
    "POSTMORTEM_STORAGE_ENV",
    "artifact",
    "artifacts_url",
    "conn_id_for",
    "exists",
    "open_url",
    "postmortem_url",
    "read_bytes",
    "read_text",
    "to_url",
    "url_of",
    "write_bytes",
    "write_text",
]

ARTIFACTS_URL_ENV = "INCIDENT_OPS_ARTIFACTS_URL"
ARTIFACTS_CONN_ENV = "INCIDENT_OPS_ARTIFACTS_CONN_ID"
POSTMORTEM_STORAGE_ENV = "INCIDENT_OPS_POSTMORTEM_STORAGE"
DEFAULT_CONN_IDS = {"s3": "aws_default", "s3a": "aws_default"}


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def to_url(location: str | Path) -> str:
    """`location` as a URL: a URL stays as it is (no trailing slash), a local path becomes `file://`
    of its absolute form (so a location recorded before artifacts were URLs still reads)."""
    text = str(location).strip()
    if not text:
        raise ValueError("an empty artifact location")
    if "://" in text:
        scheme, rest = text.split("://", 1)
        rest = rest.rstrip("/")
        return f"{scheme.lower()}://{rest}" if rest else f"{scheme.lower()}://"
    return f"file://{Path(text).expanduser().resolve()}"


def artifacts_url() -> str:
    """The base URL of every artifact (`INCIDENT_OPS_ARTIFACTS_URL`, default `file://<state dir>`)."""
    configured = os.environ.get(ARTIFACTS_URL_ENV, "").strip()
    if configured:
        return to_url(configured)
    from incident_ops.flows.incident import state_dir

    return to_url(state_dir())


def conn_id_for(url: str) -> str | None:
    """The Airflow connection that opens `url`: none for `file://`; `INCIDENT_OPS_ARTIFACTS_CONN_ID`,
    else the scheme's default (`aws_default` for `s3://`), for a remote store."""
    scheme = _scheme(url)
    if scheme in ("", "file", "local"):
        return None
    return os.environ.get(ARTIFACTS_CONN_ENV, "").strip() or DEFAULT_CONN_IDS.get(scheme)


def open_url(location: str | Path) -> ObjectStoragePath:
    """The ObjectStoragePath of a URL (or a legacy local path), with the store's connection."""
    from airflow.sdk import ObjectStoragePath

    url = to_url(location)
    return ObjectStoragePath(url, conn_id=conn_id_for(url))


def artifact(*parts: str) -> ObjectStoragePath:
    """`<artifacts URL>/<parts…>`, e.g. `artifact("incidents", incident_id, "evidence.json")`."""
    path = open_url(artifacts_url())
    for part in parts:
        path = path / part
    return path


def url_of(path: ObjectStoragePath) -> str:
    """The plain URL of `path` (`s3://bucket/key`, `file:///abs/path`): what XCom and the ledger keep.
    The connection is not in it; `open_url` finds it again from the settings."""
    return to_url(path.as_uri())


def _parent_ready(path: ObjectStoragePath) -> None:
    # A local file system needs the folders. Object stores have none (creating one could even try to
    # create the bucket), so an object is simply put at its key.
    if (path.protocol or "file") in ("file", "local"):
        path.parent.mkdir(parents=True, exist_ok=True)


def write_bytes(path: ObjectStoragePath, data: bytes) -> str:
    """Write `data` at `path` (whole object, so a retry rewrites it); returns its URL."""
    _parent_ready(path)
    path.write_bytes(data)
    return url_of(path)


def write_text(path: ObjectStoragePath, text: str) -> str:
    """Write `text` (UTF-8) at `path`; returns its URL."""
    return write_bytes(path, text.encode("utf-8"))


def exists(location: str | Path | None) -> bool:
    if not location:
        return False
    return bool(open_url(location).exists())


def read_bytes(location: str | Path) -> bytes:
    return open_url(location).read_bytes()


def read_text(location: str | Path) -> str:
    return read_bytes(location).decode("utf-8")


def postmortem_url(runbook: Any) -> str:
    """Where postmortem drafts go: `INCIDENT_OPS_POSTMORTEM_STORAGE`, else the runbook's
    `postmortem.storage` (a URL or absolute folder as it is; a relative folder under the artifacts URL)."""
    override = os.environ.get(POSTMORTEM_STORAGE_ENV, "").strip()
    if override:
        return to_url(override)
    storage = str(runbook.postmortem.storage).strip()
    if "://" in storage or Path(storage).expanduser().is_absolute():
        return to_url(storage)
    relative = storage.strip("/")
    return f"{artifacts_url()}/{relative}" if relative else artifacts_url()
