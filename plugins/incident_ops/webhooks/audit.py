"""The webhooks' audit trail: one JSON line per delivery, accepted or refused (never the body itself,
only its size and SHA-256), to the logger `incident_ops.webhooks.audit` and, when configured, a file.

Whatever a request carried, its line stays one short ASCII line:

- every string is cut at `MAX_FIELD` characters (with how much was cut), every list at `MAX_ITEMS`
  items, nested values two levels deep; anything else becomes a capped string;
- the JSON is ASCII-escaped (`ensure_ascii`): no byte of the input can end or split a line;
- the line is appended with one `write` on an `O_APPEND` descriptor.

The file is rotated by size like `logging.handlers.RotatingFileHandler`: before a line would take it
past `max_bytes`, `audit.jsonl` becomes `audit.jsonl.1` (`.1` → `.2`, … up to `backups`). Rotation is
per process (several API server workers may each rotate; no line is lost, the numbering may shift).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from pathlib import Path
from typing import Any

__all__ = ["MAX_FIELD", "MAX_ITEMS", "AuditLog", "cap"]

log = logging.getLogger("incident_ops.webhooks.audit")

MAX_FIELD = 512
MAX_ITEMS = 10
_MAX_KEYS = 40
_MAX_KEY = 64
_MAX_DEPTH = 2
_MAX_LINE = 16 * 1024


def _cap_text(value: str, limit: int) -> str:
    if len(value) <= limit:
        return value
    return f"{value[:limit]}...(+{len(value) - limit} chars)"


def cap(value: Any, limit: int = MAX_FIELD, depth: int = 0) -> Any:
    """`value` with every string, list and mapping cut to size (JSON-ready)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if value.bit_length() <= 64 else f"<an integer of {value.bit_length()} bits>"
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _cap_text(value, limit)
    if depth < _MAX_DEPTH and isinstance(value, list | tuple):
        items = [cap(item, limit, depth + 1) for item in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            items.append(f"...(+{len(value) - MAX_ITEMS} items)")
        return items
    if depth < _MAX_DEPTH and isinstance(value, dict):
        return {_cap_text(str(key), _MAX_KEY): cap(item, limit, depth + 1)
                for key, item in list(value.items())[:_MAX_KEYS]}
    try:
        text = str(value)
    except Exception:  # noqa: BLE001 - an object that cannot say what it is
        text = f"<{type(value).__name__}>"
    return _cap_text(text, limit)


def _line(entry: dict[str, Any]) -> str:
    for limit in (MAX_FIELD, 128):
        line = json.dumps(cap(entry, limit), ensure_ascii=True, sort_keys=True, allow_nan=False)
        if len(line) <= _MAX_LINE:
            return line
    return json.dumps({"audit": "entry too large", "keys": cap(sorted(str(k) for k in entry), 64)}, ensure_ascii=True)


class AuditLog:
    def __init__(self, path: Path | None, *, max_bytes: int = 10 * 1024 * 1024, backups: int = 5) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()

    def write(self, entry: dict[str, Any]) -> None:
        try:
            line = _line(entry)
        except Exception:  # noqa: BLE001 - the line must be written whatever the entry holds
            log.exception("cannot serialise an audit entry")
            line = json.dumps({"audit": "entry not serialisable", "http_status": cap(entry.get("http_status"))})
        status = entry.get("http_status")
        level = logging.WARNING if isinstance(status, int) and status >= 400 else logging.INFO
        log.log(level, "%s", line)
        if self.path is None:
            return
        data = (line + "\n").encode("ascii")
        try:
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._rotate_for(len(data))
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                try:
                    written = os.write(fd, data)  # one write: lines of several processes never interleave
                    while written < len(data):
                        written += os.write(fd, data[written:])
                finally:
                    os.close(fd)
        except OSError:
            log.exception("cannot append to the audit file %s", self.path)

    def _rotate_for(self, size: int) -> None:
        assert self.path is not None
        if self.max_bytes <= 0:
            return
        try:
            current = self.path.stat().st_size
        except FileNotFoundError:
            return
        if current == 0 or current + size <= self.max_bytes:
            return
        if self.backups <= 0:
            self.path.unlink(missing_ok=True)
            return
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))

    def files(self) -> list[Path]:
        """The current file, then the rotated ones, newest first (those that exist)."""
        if self.path is None:
            return []
        names = [self.path] + [self.path.with_name(f"{self.path.name}.{i}") for i in range(1, self.backups + 1)]
        return [path for path in names if path.exists()]

    def entries(self) -> list[dict[str, Any]]:
        """What the current file holds (for tests and people)."""
        if self.path is None or not self.path.exists():
            return []
        with self._lock:
            return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
