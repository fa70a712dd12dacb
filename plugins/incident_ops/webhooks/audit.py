"""The webhooks' audit trail: one JSON line per delivery, accepted or refused (never the body itself,
only its size and SHA-256), to the logger `incident_ops.webhooks.audit` and, when configured, a file."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

__all__ = ["AuditLog"]

log = logging.getLogger("incident_ops.webhooks.audit")


class AuditLog:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()

    def write(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, ensure_ascii=False, default=str, sort_keys=True)
        level = logging.INFO if entry.get("http_status", 200) < 400 else logging.WARNING
        log.log(level, "%s", line)
        if self.path is None:
            return
        try:
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as handle:
                    handle.write(line + "\n")
        except OSError:
            log.exception("cannot append to the audit file %s", self.path)

    def entries(self) -> list[dict[str, Any]]:
        """What the file holds (for tests and people)."""
        if self.path is None or not self.path.exists():
            return []
        with self._lock:
            return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
