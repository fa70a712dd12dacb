"""The Airflow plugin: Airflow's plugin manager finds it in plugins/ and mounts the webhook app at
/incidents, as the API server does (open to SNS: authenticity comes from the signatures)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.process  # the `airflow plugins` command
def test_airflow_lists_the_plugin_with_its_fastapi_app(tmp_path: Path) -> None:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
           "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"), "PYTHONPATH": str(PROJECT_ROOT / "plugins")}
    result = subprocess.run([str(Path(sys.executable).parent / "airflow"), "plugins", "--output", "json"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    plugins = json.loads(result.stdout.strip().splitlines()[-1])
    [plugin] = [p for p in plugins if p["name"] == "incident_ops"]
    assert plugin["source"] == "$PLUGINS_FOLDER/incident_ops_plugin.py"
    assert [(a["url_prefix"], a["app"]) for a in plugin["fastapi_apps"]] == [("/incidents", "fastapi.applications.FastAPI")]


def test_mounted_app_answers_under_incidents(monkeypatch, tmp_path: Path) -> None:
    import incident_ops_plugin

    monkeypatch.setenv("INCIDENT_OPS_STATE_DIR", str(tmp_path))
    [entry] = incident_ops_plugin.IncidentOpsPlugin.fastapi_apps
    root = FastAPI()
    root.mount(entry["url_prefix"], entry["app"])
    client = TestClient(root)
    response = client.post("/incidents/webhooks/sns", content=b"{}", headers={"Content-Type": "text/html"})
    assert response.status_code == 415 and response.json()["error"] == "unsupported_media_type"
    # no OpenAPI and no docs pages unless INCIDENT_OPS_WEBHOOK_DOCS=on (tests/webhooks/test_hardening.py)
    for path in ("/incidents/webhooks/openapi.json", "/incidents/webhooks/docs", "/incidents/docs", "/incidents/redoc"):
        assert client.get(path).status_code == 404, path
    # the default configuration allows no topic: every SNS topic is refused until configured
    body = json.dumps({"Type": "Notification", "MessageId": "m-1", "TopicArn": "arn:aws:sns:ap-northeast-1:123456789012:t",
                       "Message": "{}", "Timestamp": "2026-11-27T15:30:00.000Z", "SignatureVersion": "2",
                       "Signature": "AA==", "SigningCertURL": "https://sns.ap-northeast-1.amazonaws.com/x.pem"})
    response = client.post("/incidents/webhooks/sns", content=body, headers={"Content-Type": "text/plain"})
    assert response.status_code == 403 and response.json()["error"] == "topic_not_allowed"
