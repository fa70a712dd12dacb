"""Artifacts without a shared disk (incident_ops.artifacts, flows/incident.py Phase 2 and 5).

Evidence, the metrics chart and the postmortem draft go through Airflow's ObjectStoragePath; XCom and
the ledger carry URLs. The store is `file://`, and `s3://` for real: the amazon provider's S3 file
system (s3fs) with the `aws_default` connection pointed at a moto server. Two "workers" with different
state folders share only the artifacts URL and the ledger."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from incident_ops import artifacts
from incident_ops.core.ledger import Ledger
from incident_ops.flows import incident as incident_flow
from tests.flows.scheduled.conftest import RecordingSlack

JST = dt.timezone(dt.timedelta(hours=9))
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (artifacts.ARTIFACTS_URL_ENV, artifacts.ARTIFACTS_CONN_ENV, artifacts.POSTMORTEM_STORAGE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("INCIDENT_OPS_STATE_DIR", str(tmp_path / "state"))


# --- the location ---------------------------------------------------------------------------------------


def test_the_default_is_the_state_folder(tmp_path: Path) -> None:
    assert artifacts.artifacts_url() == f"file://{tmp_path / 'state'}"
    assert artifacts.conn_id_for(artifacts.artifacts_url()) is None


def test_the_setting_and_its_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(artifacts.ARTIFACTS_URL_ENV, "s3://pb-incidents/incident-ops/")
    assert artifacts.artifacts_url() == "s3://pb-incidents/incident-ops"
    assert artifacts.conn_id_for("s3://pb-incidents/incident-ops") == "aws_default"
    assert artifacts.open_url("s3://pb-incidents/x").conn_id == "aws_default"
    monkeypatch.setenv(artifacts.ARTIFACTS_CONN_ENV, "aws_artifacts")
    assert artifacts.conn_id_for("s3://pb-incidents/incident-ops") == "aws_artifacts"
    assert artifacts.conn_id_for("file:///srv/state") is None


def test_a_local_path_reads_as_a_file_url(tmp_path: Path) -> None:
    # A location recorded before artifacts were URLs (an older run's XCom) still reads.
    legacy = tmp_path / "old" / "evidence.json"
    legacy.parent.mkdir(parents=True)
    legacy.write_text('{"suggestion": null}')
    assert artifacts.to_url(legacy) == f"file://{legacy}"
    assert json.loads(artifacts.read_text(str(legacy))) == {"suggestion": None}
    with pytest.raises(ValueError):
        artifacts.to_url(" ")


def test_where_postmortems_go(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def runbook(storage: str) -> Any:
        return SimpleNamespace(postmortem=SimpleNamespace(storage=storage))

    # A relative folder is under the artifacts location, wherever that is.
    assert artifacts.postmortem_url(runbook("postmortems")) == f"file://{tmp_path / 'state'}/postmortems"
    monkeypatch.setenv(artifacts.ARTIFACTS_URL_ENV, "s3://pb-incidents/incident-ops")
    assert artifacts.postmortem_url(runbook("postmortems")) == "s3://pb-incidents/incident-ops/postmortems"
    # A URL or an absolute folder is its own place; the environment overrides the runbook.
    assert artifacts.postmortem_url(runbook("s3://pb-docs/postmortems/")) == "s3://pb-docs/postmortems"
    assert artifacts.postmortem_url(runbook("/srv/postmortems")) == "file:///srv/postmortems"
    monkeypatch.setenv(artifacts.POSTMORTEM_STORAGE_ENV, str(tmp_path / "pm"))
    assert artifacts.postmortem_url(runbook("postmortems")) == f"file://{tmp_path / 'pm'}"


def test_the_project_runbook_keeps_postmortems_under_the_artifacts(runbook: Any, tmp_path: Path) -> None:
    assert artifacts.postmortem_url(runbook) == f"file://{tmp_path / 'state'}/postmortems"


# --- round trips ----------------------------------------------------------------------------------------


def round_trip() -> tuple[str, str]:
    text_url = artifacts.write_text(artifacts.artifact("incidents", "INC-1", "evidence.json"), '{"a": "障害"}')
    png_url = artifacts.write_bytes(artifacts.artifact("incidents", "INC-1", "metrics.png"), PNG + b"data")
    assert json.loads(artifacts.read_text(text_url)) == {"a": "障害"}
    assert artifacts.read_bytes(png_url) == PNG + b"data"
    assert artifacts.exists(png_url) and not artifacts.exists(png_url + ".missing") and not artifacts.exists(None)
    # A retry rewrites the object whole.
    assert artifacts.write_bytes(artifacts.open_url(png_url), PNG) == png_url
    assert artifacts.read_bytes(png_url) == PNG
    return text_url, png_url


def test_round_trip_through_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(artifacts.ARTIFACTS_URL_ENV, f"file://{tmp_path / 'shared'}")
    text_url, png_url = round_trip()
    assert text_url == f"file://{tmp_path / 'shared'}/incidents/INC-1/evidence.json"
    assert (tmp_path / "shared" / "incidents" / "INC-1" / "metrics.png").read_bytes() == PNG


def object_bytes(s3: Any, key: str) -> bytes:
    return s3.get_object(Bucket="pb-incidents", Key=key)["Body"].read()


def test_round_trip_through_s3(monkeypatch: pytest.MonkeyPatch, moto_s3: Any) -> None:
    monkeypatch.setenv(artifacts.ARTIFACTS_URL_ENV, "s3://pb-incidents/incident-ops")
    text_url, png_url = round_trip()
    # The URL is plain (no connection in it) and the object is in the bucket, not on a disk.
    assert text_url == "s3://pb-incidents/incident-ops/incidents/INC-1/evidence.json"
    assert object_bytes(moto_s3, "incident-ops/incidents/INC-1/metrics.png") == PNG
    assert object_bytes(moto_s3, "incident-ops/incidents/INC-1/evidence.json").decode() == '{"a": "障害"}'


def test_the_chart_is_png_bytes(runbook: Any) -> None:
    from incident_ops.charts import metrics_chart

    series = {"cpu": {"label": "CPU", "unit": "%", "timestamps": ["2026-12-01T00:00:00Z", "2026-12-01T00:01:00Z"],
                      "values": [10, 90]}}
    assert metrics_chart(series, title="t", tz=runbook.tz)[:8] == PNG
    assert metrics_chart({}, title="empty", tz=runbook.tz)[:8] == PNG


# --- two workers, no shared disk ------------------------------------------------------------------------


def fake_services(slack: RecordingSlack) -> SimpleNamespace:
    slack.invite = lambda channel, user_ids: None  # type: ignore[attr-defined]
    return SimpleNamespace(slack=slack, pager=None, sentry=None, aws=lambda name: None,
                           settings=SimpleNamespace(smtp=None, github_token=None))


def observed(monkeypatch: pytest.MonkeyPatch) -> None:
    from incident_ops.observe import aws

    series = {"alb_5xx": {"label": "ALB 5xx", "unit": "Count",
                          "timestamps": ["2026-12-01T00:00:00Z", "2026-12-01T00:05:00Z"], "values": [0, 42]}}
    monkeypatch.setattr(aws, "error_log_events", lambda *a, **k: {})
    monkeypatch.setattr(aws, "fetch_metrics", lambda *a, **k: {"series": series, "api_calls": 1})
    monkeypatch.setattr(aws, "alarms_in_alarm", lambda *a, **k: [{"name": "pb-prod-alb-5xx"}])


def as_worker(monkeypatch: pytest.MonkeyPatch, state: Path) -> None:
    """This process now plays a worker whose own disk is `state` (its state folder)."""
    state.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("INCIDENT_OPS_STATE_DIR", str(state))


@pytest.mark.parametrize("store", ["file", pytest.param("s3", marks=pytest.mark.server)])  # s3: a moto server
def test_two_workers_without_a_shared_disk(store: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                           request: pytest.FixtureRequest) -> None:
    if store == "s3":
        s3 = request.getfixturevalue("moto_s3")
        base = "s3://pb-incidents/incident-ops"
    else:
        base = f"file://{tmp_path / 'bucket'}"
    # Shared between the workers: the artifacts URL and the ledger's database, nothing else.
    monkeypatch.setenv(artifacts.ARTIFACTS_URL_ENV, base)
    monkeypatch.setenv("INCIDENT_OPS_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    slack = RecordingSlack()
    monkeypatch.setattr(incident_flow, "services_for", lambda environment: fake_services(slack))
    observed(monkeypatch)
    at = dt.datetime(2026, 12, 1, 10, 0, tzinfo=JST)
    monkeypatch.setattr(incident_flow, "_now", lambda: at)
    params = {"symptom": "エラー率上昇 5xx", "severity": "P2", "service": "backend", "environment": "production",
              "impact": "", "reporter": "test", "scenario": "auto", "check_mode": False, "alarm": {},
              "incident_id": None}

    worker_a, worker_b = tmp_path / "worker-a", tmp_path / "worker-b"
    as_worker(monkeypatch, worker_a)
    incident = incident_flow.open_incident(params, run_id="manual__two-workers", run_after=at)
    Ledger().update(incident["id"], at, slack_channel_id="C-INCIDENT")  # as `declare` leaves it
    evidence = incident_flow.collect_evidence(incident)
    # XCom carries URLs of the shared store, never a worker's path.
    prefix = f"{base}/incidents/{incident['id']}/"
    assert (evidence["path"], evidence["chart"]) == (prefix + "evidence.json", prefix + "metrics.png")
    evidence = json.loads(json.dumps(evidence))  # what XCom hands over
    assert [u["filename"] for u in slack.uploads] == ["metrics.png"] and slack.uploads[0]["bytes"][:8] == PNG
    assert not [p for p in worker_a.rglob("*") if p.suffix in (".json", ".png", ".md")]

    Ledger().mark_recovered(incident["id"], at + dt.timedelta(minutes=40),
                            postmortem_due_at=at + dt.timedelta(hours=48))  # Phase 4, on any worker
    shutil.rmtree(worker_a)  # worker A's host is gone; worker B never saw its disk
    as_worker(monkeypatch, worker_b)
    result = incident_flow.write_postmortem(incident, evidence)
    target = f"{base}/postmortems/{incident['id']}.md"
    assert result == {"path": target}
    document = artifacts.read_text(target)
    assert f"]({incident['id']}/metrics.png)" in document  # the chart embedded, linked beside the draft
    assert "pb-prod-alb-5xx" in document  # the evidence read back from the store
    assert artifacts.read_bytes(f"{base}/postmortems/{incident['id']}/metrics.png")[:8] == PNG
    assert not [p for p in worker_b.rglob("*") if p.suffix in (".json", ".png", ".md")]
    # The ledger keeps the draft's location as a URL, and the channel is told where it is.
    ledger = Ledger()
    assert ledger.get(incident["id"])["postmortem_path"] == target
    assert [e["message"] for e in ledger.events(incident["id"]) if e["kind"] == "postmortem_draft"] == [target]
    assert any(target in post["text"] for post in slack.to("C-INCIDENT"))
    if store == "s3":
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket="pb-incidents")["Contents"]}
        assert keys == {f"incident-ops/incidents/{incident['id']}/evidence.json",
                        f"incident-ops/incidents/{incident['id']}/metrics.png",
                        f"incident-ops/postmortems/{incident['id']}.md",
                        f"incident-ops/postmortems/{incident['id']}/metrics.png"}, keys
