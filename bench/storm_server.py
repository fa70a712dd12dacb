"""The webhook intake alone, for the alarm-storm benchmark: the incident_ops webhook FastAPI app
(the same `create_app` the Airflow API server mounts) under uvicorn in its own process, with a
trigger stub that counts calls instead of starting DAG runs, and `GET /_bench/triggers` to read the
count.

    python -m bench.storm_server --ledger-url URL --pem cert.pem --cert-url URL --topic ARN --port N
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ledger-url", required=True)
    parser.add_argument("--pem", required=True)
    parser.add_argument("--cert-url", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "plugins"))

    import uvicorn

    from incident_ops.core.ledger import Ledger
    from incident_ops.core.runbook import load_runbook
    from incident_ops.webhooks.app import create_app
    from incident_ops.webhooks.config import WebhookConfig

    pem = Path(args.pem).read_bytes()
    calls: list[tuple[str, str]] = []
    lock = threading.Lock()

    def trigger(dag_id: str, run_id: str, conf: dict[str, Any]) -> bool:
        with lock:
            calls.append((dag_id, run_id))
        return True

    def fetch(url: str) -> bytes:
        if url != args.cert_url:
            raise RuntimeError(f"unexpected certificate URL {url}")
        return pem

    config = WebhookConfig(topics={args.topic: "production"}, audit_log=None)
    app = create_app(config=config, trigger=trigger, secret=lambda: "unused", fetch=fetch,
                     runbook=load_runbook(), ledger=Ledger(args.ledger_url))

    @app.get("/_bench/triggers")
    def triggers() -> dict[str, Any]:
        with lock:
            return {"calls": len(calls), "runs": sorted({run for _, run in calls})}

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
