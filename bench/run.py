"""Benchmarks (issue 8): each figure on its own line as `name = value unit`.

    make bench                                   # everything
    .venv/bin/python -m bench.run parse fanout   # some of them

Benchmarks: parse, economy (GetMetricData batching, in-process), fanout, storm, live (alarm → page
latency on Airflow standalone, and AWS/Slack/PagerDuty calls per incident by scenario).
Environment: BENCH_INCIDENTS (20), BENCH_SCENARIOS (deploy,resource,database,external,security;
empty to skip the full runs), BENCH_STORM_DELIVERIES (5000), BENCH_STORM_SECONDS (10),
BENCH_STORM_SENDERS (8), INCIDENT_OPS_TEST_POSTGRES_URL (PostgreSQL for the storm; skipped if absent),
BENCH_PAGE_DELIVERIES (20), BENCH_PAGE_MODES (dag,intake) for `page` (alarm → PagerDuty, the page at once).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "plugins", ROOT / "include"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

REGION = "ap-northeast-1"
PG_URL = os.environ.get("INCIDENT_OPS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def figure(name: str, value: Any, unit: str = "") -> None:
    if isinstance(value, float):
        value = f"{value:.3f}" if value < 10 else f"{value:.1f}"
    print(f"{name} = {value} {unit}".rstrip(), flush=True)


def note(text: str) -> None:
    print(f"# {text}", flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _aws_env() -> None:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": REGION}.items():
        os.environ.setdefault(key, value)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.pop("AWS_PROFILE", None)


class CallCounter:
    """Counts every API call a boto3 client makes (botocore's before-call event; retries not counted)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def watch(self, client: Any) -> Any:
        service = client.meta.service_model.service_name

        def count(model: Any, **_: Any) -> None:
            self.calls[f"{service}:{model.name}"] += 1

        client.meta.events.register("before-call.*.*", count)
        return client


# --- 3. parse cost ---------------------------------------------------------------------------------


def bench_parse() -> None:
    """Each DAG file parsed the way the DAG processor does (tests/dags/parse_dags.py), network and
    database access forbidden; one fresh process per run, best of 3 (the first includes cold caches)."""
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "AIRFLOW_HOME": home, "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
               "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"), "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
               "PYTHONPATH": str(ROOT / "plugins")}
        best: dict[str, float] = {}
        forbidden: list[str] = []
        errors: dict[str, Any] = {}
        for _ in range(3):
            result = subprocess.run([sys.executable, str(ROOT / "tests" / "dags" / "parse_dags.py"), str(ROOT / "dags")],
                                    env=env, capture_output=True, text=True, timeout=600)
            if result.returncode != 0:
                raise RuntimeError(result.stderr[-2000:])
            parsed = json.loads(result.stdout.strip().splitlines()[-1])
            forbidden = parsed["forbidden_attempts"]
            for name, info in parsed["files"].items():
                best[name] = min(best.get(name, float("inf")), info["seconds"])
                if info["import_errors"]:
                    errors[name] = info["import_errors"]
    for name, seconds in sorted(best.items()):
        figure(f"parse_{Path(name).stem}", seconds, "s")
    figure("parse_max", max(best.values()), "s")
    figure("parse_over_0_3s", sum(1 for s in best.values() if s > 0.3), "files")
    figure("parse_forbidden_attempts", len(forbidden), "calls")
    if errors:
        note(f"import errors: {errors}")


# --- 4/5. evidence against moto in-process ------------------------------------------------------------


def _seed_logs(logs: Any, groups: list[str], end: dt.datetime) -> None:
    at = int((end - dt.timedelta(minutes=5)).timestamp() * 1000)
    for group in groups:
        logs.create_log_group(logGroupName=group)
        logs.create_log_stream(logGroupName=group, logStreamName="web/1")
        logs.put_log_events(logGroupName=group, logStreamName="web/1", logEvents=[
            {"timestamp": at + i, "message": f"{'ERROR' if i % 2 else 'INFO'} request {i} failed"} for i in range(10)
        ])


def bench_economy() -> None:
    """GetMetricData calls for 2 services × 6 metrics (12 series): must be 1; and the runbook's own
    production metric list for its services."""
    _aws_env()
    import boto3
    from moto import mock_aws

    from incident_ops.actions.registry import aws_client_config
    from incident_ops.core.runbook import load_runbook
    from incident_ops.observe.aws import fetch_metrics

    env = load_runbook().environment("production")
    specs = [{"id": f"m{i}", "label": f"Metric {i}", "namespace": "AWS/ECS", "metric": name, "stat": "Average",
              "unit": "Percent", "per_service": True}
             for i, name in enumerate(["CPUUtilization", "MemoryUtilization", "CPUReservation", "MemoryReservation",
                                       "RunningTaskCount", "PendingTaskCount"])]
    end = dt.datetime.now(dt.UTC)
    with mock_aws():
        counter = CallCounter()
        cloudwatch = counter.watch(boto3.client("cloudwatch", region_name=REGION, config=aws_client_config()))
        answer = fetch_metrics(cloudwatch, specs, env, ["backend", "worker"], end)
        figure("economy_get_metric_data_2svc_x_6metrics", counter.calls["cloudwatch:GetMetricData"], "calls")
        figure("economy_series_2svc_x_6metrics", len(answer["series"]), "series")
        counter.calls.clear()
        services = [s.ecs_service for s in env.services.values()]
        answer = fetch_metrics(cloudwatch, env.metrics, env, services, end)
        figure("economy_get_metric_data_runbook", counter.calls["cloudwatch:GetMetricData"], "calls")
        figure("economy_series_runbook", len(answer["series"]), "series")


def bench_fanout(services_count: int = 20) -> None:
    """Evidence (fetch_metrics + error_log_events) for 20 services against moto in-process."""
    _aws_env()
    import boto3
    from moto import mock_aws

    from incident_ops.actions.registry import aws_client_config
    from incident_ops.core.runbook import load_runbook
    from incident_ops.observe.aws import error_log_events, fetch_metrics

    env = load_runbook().environment("production")
    names = [f"peoplebooster-production-svc{i:02d}" for i in range(services_count)]
    end = dt.datetime.now(dt.UTC)
    with mock_aws():
        counter = CallCounter()
        logs = counter.watch(boto3.client("logs", region_name=REGION, config=aws_client_config()))
        cloudwatch = counter.watch(boto3.client("cloudwatch", region_name=REGION, config=aws_client_config()))
        groups = {name: {"application": f"/ecs/{name}", "error": f"/ecs/{name}/error"} for name in names}
        _seed_logs(logs, [g for pair in groups.values() for g in pair.values()], end)
        counter.calls.clear()
        started = time.perf_counter()
        metrics = fetch_metrics(cloudwatch, env.metrics, env, names, end)
        metric_seconds = time.perf_counter() - started
        events = 0
        for pair in groups.values():
            events += error_log_events(logs, pair, end, minutes=30)["total"]
        total = time.perf_counter() - started
    figure(f"fanout_{services_count}svc_seconds", total, "s")
    figure(f"fanout_{services_count}svc_metrics_seconds", metric_seconds, "s")
    figure(f"fanout_{services_count}svc_get_metric_data", counter.calls["cloudwatch:GetMetricData"], "calls")
    figure(f"fanout_{services_count}svc_filter_log_events", counter.calls["logs:FilterLogEvents"], "calls")
    figure(f"fanout_{services_count}svc_aws_calls", sum(counter.calls.values()), "calls")
    figure(f"fanout_{services_count}svc_series", len(metrics["series"]), "series")
    figure(f"fanout_{services_count}svc_log_events", events, "events")


# --- 2. alarm storm ---------------------------------------------------------------------------------


def _pg_database() -> tuple[str, Callable[[], None]] | None:
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            pass
    except OSError:
        return None
    name = f"incident_ops_bench_{os.getpid()}_{secrets.token_hex(3)}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False), drop


def _storm(label: str, ledger_url: str, deliveries: int, seconds: float, senders: int, alarms: int) -> None:
    import requests

    from incident_ops.core.ledger import Ledger
    from tests.webhooks.helpers import CERT_URL, TOPIC, SigningCert, alarm, notification, sns_headers

    cert = SigningCert.make()
    names = [f"peoplebooster-production-bench-storm-{k:02d}" for k in range(alarms)]
    now = dt.datetime.now(dt.UTC)
    bodies = []
    for i in range(deliveries):
        envelope = notification(cert, alarm(names[i % alarms]), timestamp=now)
        bodies.append((json.dumps(envelope).encode(), sns_headers(envelope)))
    with tempfile.TemporaryDirectory() as tmp:
        pem = Path(tmp) / "cert.pem"
        pem.write_bytes(cert.pem)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "bench.storm_server", "--ledger-url", ledger_url, "--pem", str(pem),
             "--cert-url", CERT_URL, "--topic", TOPIC, "--port", str(port)],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'plugins'}"},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    requests.get(f"{base}/_bench/triggers", timeout=1).raise_for_status()
                    break
                except requests.RequestException:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"storm server did not start: {server.stderr.read().decode()[-2000:]}") from None
                    time.sleep(0.2)
            # Warm-up (the first intake builds the runbook params and the ledger schema): not counted.
            warm = notification(cert, alarm("peoplebooster-production-bench-warmup"), timestamp=now)
            requests.post(f"{base}/webhooks/sns", data=json.dumps(warm).encode(), headers=sns_headers(warm),
                          timeout=60).raise_for_status()
            latencies: list[float] = []
            statuses: Counter[int] = Counter()
            occurrences_by_status: Counter[str] = Counter()
            lock = threading.Lock()
            index = itertools.count()
            interval = seconds / deliveries
            started = time.monotonic()

            def sender() -> None:
                session = requests.Session()
                while True:
                    i = next(index)
                    if i >= deliveries:
                        return
                    wait = started + i * interval - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                    body, headers = bodies[i]
                    t0 = time.perf_counter()
                    response = session.post(f"{base}/webhooks/sns", data=body, headers=headers, timeout=60)
                    elapsed = time.perf_counter() - t0
                    with lock:
                        latencies.append(elapsed)
                        statuses[response.status_code] += 1
                        if response.status_code == 200:
                            occurrences_by_status[response.json().get("status")] += 1

            threads = [threading.Thread(target=sender) for _ in range(senders)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.monotonic() - started
            triggers = requests.get(f"{base}/_bench/triggers", timeout=10).json()
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        ledger = Ledger(ledger_url)
        incidents = [i for i in ledger.open_incidents() if i["fingerprint"].startswith("production:alarm:peoplebooster-production-bench-storm-")]
        events = sum(len(ledger.events(i["id"])) for i in incidents)
        ledger.dispose()
    occurrences = sum(i["occurrences"] for i in incidents)
    figure(f"storm_{label}_deliveries", deliveries, "requests")
    figure(f"storm_{label}_wall", wall, "s")
    figure(f"storm_{label}_http_200", statuses.get(200, 0), "requests")
    figure(f"storm_{label}_incidents", len(incidents), "incidents")
    figure(f"storm_{label}_trigger_calls", triggers["calls"] - 1, "calls")  # minus the warm-up's
    figure(f"storm_{label}_occurrences", occurrences, "occurrences")
    figure(f"storm_{label}_lost", deliveries - occurrences, "occurrences")
    figure(f"storm_{label}_ledger_events", events, "events")
    figure(f"storm_{label}_p50", percentile(latencies, 50) * 1000, "ms")
    figure(f"storm_{label}_p99", percentile(latencies, 99) * 1000, "ms")
    figure(f"storm_{label}_max", max(latencies) * 1000, "ms")
    if set(statuses) - {200}:
        note(f"storm {label}: non-200 answers {dict(statuses)}")


def bench_storm() -> None:
    """5,000 signed SNS deliveries for 20 alarms over ~10 s from 8 concurrent senders against the
    webhook app (create_app, signatures verified) under uvicorn in its own process, trigger stubbed."""
    deliveries = int(os.environ.get("BENCH_STORM_DELIVERIES", "5000"))
    seconds = float(os.environ.get("BENCH_STORM_SECONDS", "10"))
    senders = int(os.environ.get("BENCH_STORM_SENDERS", "8"))
    with tempfile.TemporaryDirectory() as tmp:
        _storm("sqlite", f"sqlite:///{Path(tmp) / 'ledger.db'}", deliveries, seconds, senders, 20)
    pg = _pg_database()
    if pg is None:
        note("storm on PostgreSQL skipped: nothing listens on 127.0.0.1:5432")
        return
    url, drop = pg
    try:
        _storm("postgresql", url, deliveries, seconds, senders, 20)
    finally:
        from incident_ops.core import ledger as ledger_module

        ledger_module.dispose_engines()
        drop()


# --- 1 + 4. the live stack ------------------------------------------------------------------------


def _parse_time(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _first(records: list[dict[str, Any]], predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    return next((r for r in records if predicate(r)), None)


def _is_page(incident_id: str) -> Callable[[dict[str, Any]], bool]:
    def check(record: dict[str, Any]) -> bool:
        body = record.get("body") if isinstance(record.get("body"), dict) else {}
        return (record["service"] == "pagerduty" and record["path"].endswith("/v2/enqueue") and record.get("status") == 202
                and body.get("event_action") == "trigger" and body.get("dedup_key") == incident_id)
    return check


def _is_declaration(incident_id: str) -> Callable[[dict[str, Any]], bool]:
    """The declaration's first post (its idempotency key `<incident>:declaration:<where>` rides in the
    message metadata)."""
    def check(record: dict[str, Any]) -> bool:
        return (record["service"] == "slack" and record["path"].endswith("/chat.postMessage")
                and record.get("status") == 200
                and f"{incident_id}:declaration:" in json.dumps(record.get("body"), ensure_ascii=False))
    return check


def _breakdown(tis: list[dict[str, Any]], sent: float, page_at: float) -> dict[str, float]:
    """Seconds spent in each phase: scheduler (to queued), task start (queued → running: executor,
    process start, imports), the task's own work."""
    by_id = {ti["task_id"]: ti for ti in tis}
    open_ti, notify_ti = by_id.get("detect.open_incident") or {}, by_id.get("detect.notify_responders") or {}

    def at(ti: dict[str, Any], key: str) -> float | None:
        return _parse_time(ti[key]) if ti.get(key) else None

    marks = [("alarm", sent), ("open_incident queued", at(open_ti, "queued_when")),
             ("open_incident running", at(open_ti, "start_date")), ("open_incident done", at(open_ti, "end_date")),
             ("notify queued", at(notify_ti, "queued_when")), ("notify running", at(notify_ti, "start_date")),
             ("page received", page_at)]
    if any(value is None for _, value in marks):
        return {}
    return {f"{a} -> {b}": vb - va for (a, va), (b, vb) in itertools.pairwise(marks)}


def _close_open_incidents(ledger_url: str) -> None:
    from incident_ops.core.ledger import Ledger

    ledger = Ledger(ledger_url)
    for incident in ledger.open_incidents():
        ledger.close(incident["id"], dt.datetime.now(dt.UTC))
    ledger.dispose()


def _floor(stack: Any, rounds: int) -> tuple[list[float], list[float]]:
    """The same two HTTP calls made directly: PagerDuty enqueue, then Slack chat.postMessage (fresh
    connections each time, like a task)."""
    import requests

    endpoints = stack.endpoints
    page, both = [], []
    for i in range(rounds):
        t0 = time.perf_counter()
        with requests.Session() as session:
            answer = session.post(f"{endpoints['pagerduty'].rstrip('/')}/v2/enqueue", verify=endpoints["ca_bundle"],
                                  json={"routing_key": "sandbox-routing-key", "event_action": "trigger",
                                        "dedup_key": f"bench-floor-{i}",
                                        "payload": {"summary": "bench floor", "source": "bench", "severity": "critical"}},
                                  timeout=30)
            answer.raise_for_status()
        page.append(time.perf_counter() - t0)
        with requests.Session() as session:
            answer = session.post(f"{endpoints['slack_api'].rstrip('/')}/chat.postMessage",
                                  headers={"Authorization": "Bearer xoxb-sandbox-token"},
                                  data={"channel": "dev-team", "text": f"bench floor {i}"}, timeout=30)
            answer.raise_for_status()
        both.append(time.perf_counter() - t0)
    return page, both


def _latency(stack: Any, count: int) -> None:
    from scripts.incident_runner import DAG_ID, SCENARIO_ALARMS, AirflowApi

    api = AirflowApi(stack.base_url)
    sandbox = stack.sandbox_client()
    ledger_url = f"sqlite:///{stack.state_dir / 'ledger.db'}"
    to_page: list[float] = []
    to_declaration: list[float] = []
    intake_ms: list[float] = []
    phases: list[dict[str, float]] = []
    alarm = SCENARIO_ALARMS["deploy"]
    for n in range(count):
        _close_open_incidents(ledger_url)
        sandbox.reset()
        time.sleep(1.0)
        sent = time.time()
        published = sandbox.sns_publish(stack.sns_webhook_url, {"AlarmName": alarm})
        answered = time.time()
        intake = published.get("answer") or {}
        if published.get("http_status") != 200 or not intake.get("dag_run_id"):
            raise RuntimeError(f"the SNS webhook refused the alarm: {published}")
        intake_ms.append((answered - sent) * 1000)
        incident_id, run_id = intake["incident_id"], intake["dag_run_id"]
        deadline = time.monotonic() + 180
        page = declaration = None
        while time.monotonic() < deadline and (page is None or declaration is None):
            records = sandbox.records()
            page = page or _first(records, _is_page(incident_id))
            declaration = declaration or _first(records, _is_declaration(incident_id))
            time.sleep(0.2)
        for attempt in range(3):  # SQLite under load: "database is locked" comes back as HTTP 500
            try:
                api._request("PATCH", f"/dags/{DAG_ID}/dagRuns/{run_id}", json={"state": "failed"})
                break
            except RuntimeError as exc:
                if attempt == 2:
                    note(f"could not stop run {run_id}: {exc}")
                time.sleep(1)
        if page is None or declaration is None:
            note(f"incident {n}: page={bool(page)} declaration={bool(declaration)} within 180 s")
            continue
        try:
            phases.append(_breakdown(api.task_instances(DAG_ID, run_id), sent, _parse_time(page["time"])))
        except RuntimeError as exc:
            note(f"no task timings for {run_id}: {exc}")
        to_page.append(_parse_time(page["time"]) - sent)
        to_declaration.append(_parse_time(declaration["time"]) - sent)
        note(f"incident {n + 1}/{count} {incident_id}: page {to_page[-1]:.2f} s, declaration {to_declaration[-1]:.2f} s")
    time.sleep(2)
    _close_open_incidents(ledger_url)
    floor_page, floor_both = _floor(stack, max(count, 10))
    figure("alarm_intake", "sns_webhook")
    figure("alarm_incidents", len(to_page), "incidents")
    figure("alarm_webhook_answer_p50", percentile(intake_ms, 50), "ms")
    figure("alarm_to_page_p50", percentile(to_page, 50), "s")
    figure("alarm_to_page_p95", percentile(to_page, 95), "s")
    figure("alarm_to_declaration_p50", percentile(to_declaration, 50), "s")
    figure("alarm_to_declaration_p95", percentile(to_declaration, 95), "s")
    figure("floor_page_p50", percentile(floor_page, 50) * 1000, "ms")
    figure("floor_page_and_declaration_p50", percentile(floor_both, 50) * 1000, "ms")
    for phase in (phases[0] if phases else {}):
        values = [p[phase] for p in phases if phase in p]
        slug = phase.replace(" -> ", "_to_").replace(" ", "_")
        figure(f"phase_{slug}_p50", percentile(values, 50), "s")
    figure("alarm_to_page_ratio_p50", percentile(to_page, 50) / percentile(floor_page, 50), "x")
    figure("alarm_to_declaration_ratio_p50", percentile(to_declaration, 50) / percentile(floor_both, 50), "x")


def _economy_by_scenario(stack: Any, scenarios: list[str], call_log: Path) -> None:
    from scripts.incident_runner import run_incident

    ledger_url = f"sqlite:///{stack.state_dir / 'ledger.db'}"
    sandbox = stack.sandbox_client()
    for scenario in scenarios:
        _close_open_incidents(ledger_url)
        time.sleep(1)
        before = len(call_log.read_text().splitlines()) if call_log.exists() else 0
        report = run_incident(stack, scenario, say=lambda _: None, timeout=900)
        time.sleep(3)  # late callbacks
        lines = call_log.read_text().splitlines()[before:] if call_log.exists() else []
        records = sandbox.records()
        calls = Counter(lines)
        figure(f"economy_{scenario}_run_state", report["dag_run_state"])
        figure(f"economy_{scenario}_run_seconds", float(report["seconds"]), "s")
        figure(f"economy_{scenario}_aws_calls", len(lines), "calls")
        figure(f"economy_{scenario}_get_metric_data", calls.get("cloudwatch:GetMetricData", 0), "calls")
        figure(f"economy_{scenario}_slack_calls", sum(1 for r in records if r["service"] == "slack"), "calls")
        figure(f"economy_{scenario}_slack_posts",
               sum(1 for r in records if r["service"] == "slack" and r["path"].endswith("/chat.postMessage")), "calls")
        figure(f"economy_{scenario}_pagerduty_calls", sum(1 for r in records if r["service"] == "pagerduty"), "calls")
        note(f"{scenario} AWS calls: {dict(sorted(calls.items()))}")
        pagerduty = Counter(f"{r['method']} {r['path']}" for r in records if r["service"] == "pagerduty")
        note(f"{scenario} PagerDuty calls: {dict(sorted(pagerduty.items()))}")


@contextlib.contextmanager
def _local_stack(name: str, *, quick_verification: bool = False, extra_env: dict[str, str] | None = None,
                 call_log: bool = False) -> Iterator[Any]:
    """A LocalStack (Airflow standalone on SQLite + the sandbox) in a fresh state folder under state/,
    started (figure `<name>_stack_start`), stopped and removed afterwards (BENCH_KEEP_STATE keeps it).
    `quick_verification`: the runbook with a 2-answer health verification; `call_log`: the AWS calls
    recorded at `stack.state_dir / "aws-calls.log"`."""
    from scripts.airflow_local import free_port_block
    from scripts.incident_runner import LocalStack

    state = Path(tempfile.mkdtemp(prefix=f"bench-{name}-", dir=ROOT / "state" if (ROOT / "state").is_dir() else None))
    env = dict(extra_env or {})
    if call_log:
        env["INCIDENT_OPS_AWS_CALL_LOG"] = str(state / "aws-calls.log")
    runbook = None
    if quick_verification:
        import yaml

        from incident_ops.core.runbook import DEFAULT_RUNBOOK_PATH

        data = yaml.safe_load(DEFAULT_RUNBOOK_PATH.read_text(encoding="utf-8"))
        data["verification"] = {"consecutive_healthy": 2, "interval_seconds": 2, "timeout_minutes": 0.75}
        runbook = state / "runbook.yaml"
        runbook.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    base = free_port_block(4)
    stack = LocalStack(state, port=base + 3, sandbox_ports={"aws": base, "http": base + 1, "https": base + 2},
                       runbook=runbook, extra_env=env)
    started = time.monotonic()
    try:
        stack.start(say=lambda _: None)
        figure(f"{name}_stack_start", time.monotonic() - started, "s")
        yield stack
    finally:
        stack.stop()
        if not os.environ.get("BENCH_KEEP_STATE"):
            shutil.rmtree(state, ignore_errors=True)
        else:
            note(f"stack state kept in {state}")


def bench_live() -> None:
    """Airflow standalone (SQLite, LocalExecutor) + the sandbox; alarms through the SNS webhook."""
    count = int(os.environ.get("BENCH_INCIDENTS", "20"))
    scenarios = [s for s in os.environ.get("BENCH_SCENARIOS", "deploy,resource,database,external,security").split(",") if s]
    with _local_stack("live", quick_verification=True, call_log=True) as stack:
        if count:
            _latency(stack, count)
        if scenarios:
            _economy_by_scenario(stack, scenarios, stack.state_dir / "aws-calls.log")


# --- 5. the page at once (webhooks/paging.py) -------------------------------------------------------


def _paged_by(ledger_url: str, incident_id: str) -> str:
    from incident_ops.core.ledger import Ledger

    ledger = Ledger(ledger_url)
    try:
        events = ledger.events(incident_id)
    finally:
        ledger.dispose()
    return "intake" if any(e["kind"] == "paged" for e in events) else "dag"


def _page_deliveries(stack: Any, mode: str, count: int) -> None:
    """`count` P1 alarms through the SNS webhook: alarm → PagerDuty trigger, the webhook's answer,
    alarm → declaration, who paged (the ledger's `paged` event) and triggers per incident."""
    from scripts.incident_runner import DAG_ID, SCENARIO_ALARMS, AirflowApi

    api = AirflowApi(stack.base_url)
    sandbox = stack.sandbox_client()
    ledger_url = f"sqlite:///{stack.state_dir / 'ledger.db'}"
    to_page: list[float] = []
    to_declaration: list[float] = []
    answer_ms: list[float] = []
    by: Counter[str] = Counter()
    most_triggers = 0
    for n in range(count):
        _close_open_incidents(ledger_url)
        sandbox.reset()
        time.sleep(1.0)
        sent = time.time()
        published = sandbox.sns_publish(stack.sns_webhook_url, {"AlarmName": SCENARIO_ALARMS["deploy"]})
        answer_ms.append((time.time() - sent) * 1000)
        intake = published.get("answer") or {}
        if published.get("http_status") != 200 or intake.get("status") != "new":
            raise RuntimeError(f"the SNS webhook did not open an incident: {published}")
        incident_id, run_id = intake["incident_id"], intake["dag_run_id"]
        deadline = time.monotonic() + 180
        page = declaration = None
        while time.monotonic() < deadline and (page is None or declaration is None):
            records = sandbox.records()
            page = page or _first(records, _is_page(incident_id))
            declaration = declaration or _first(records, _is_declaration(incident_id))
            time.sleep(0.05 if page is None else 0.2)
        # The DAG's notify_responders has run by the time the declaration is out (they start together).
        time.sleep(2.0)
        triggers = [r for r in sandbox.records() if _is_page(incident_id)(r)]
        most_triggers = max(most_triggers, len(triggers))
        by[_paged_by(ledger_url, incident_id)] += 1
        for attempt in range(3):
            try:
                api._request("PATCH", f"/dags/{DAG_ID}/dagRuns/{run_id}", json={"state": "failed"})
                break
            except RuntimeError as exc:
                if attempt == 2:
                    note(f"could not stop run {run_id}: {exc}")
                time.sleep(1)
        if page is None or declaration is None:
            note(f"page {mode} {n}: page={bool(page)} declaration={bool(declaration)} within 180 s")
            continue
        to_page.append(_parse_time(page["time"]) - sent)
        to_declaration.append(_parse_time(declaration["time"]) - sent)
        note(f"page {mode} {n + 1}/{count} {incident_id}: page {to_page[-1]:.2f} s, "
             f"declaration {to_declaration[-1]:.2f} s, answer {answer_ms[-1]:.0f} ms")
    _close_open_incidents(ledger_url)
    figure(f"page_{mode}_incidents", len(to_page), "incidents")
    figure(f"page_{mode}_alarm_to_page_p50", percentile(to_page, 50), "s")
    figure(f"page_{mode}_alarm_to_page_p95", percentile(to_page, 95), "s")
    figure(f"page_{mode}_webhook_answer_p50", percentile(answer_ms, 50), "ms")
    figure(f"page_{mode}_webhook_answer_p99", percentile(answer_ms, 99), "ms")
    figure(f"page_{mode}_alarm_to_declaration_p50", percentile(to_declaration, 50), "s")
    figure(f"page_{mode}_alarm_to_declaration_p95", percentile(to_declaration, 95), "s")
    figure(f"page_{mode}_paged_by_intake", by["intake"], "incidents")
    figure(f"page_{mode}_paged_by_dag", by["dag"], "incidents")
    figure(f"page_{mode}_max_triggers_per_incident", most_triggers, "triggers")


def bench_page() -> None:
    """Alarm → PagerDuty with the intake's page at once (`intake`) and without it (`dag`:
    INCIDENT_OPS_INTAKE_PAGE=off, the DAG alone pages, as before): a LocalStack each."""
    count = int(os.environ.get("BENCH_PAGE_DELIVERIES", "20"))
    modes = [m for m in os.environ.get("BENCH_PAGE_MODES", "dag,intake").split(",") if m]
    for mode in modes:
        if mode not in ("intake", "dag"):
            raise ValueError(f"BENCH_PAGE_MODES: {mode!r} is not intake or dag")
        with _local_stack(f"page_{mode}", extra_env={"INCIDENT_OPS_INTAKE_PAGE": "on" if mode == "intake" else "off"}) as stack:
            _page_deliveries(stack, mode, count)


# --- 6. the acknowledgement wait (sensors/acknowledgement.py, triggers/incident_waits.py) ----------


ACK_TASK = "detect.wait_for_ack"


def _ack_waits(stack: Any, count: int) -> None:
    """`count` P1 alarms; once the run's acknowledgement wait is deferred, the on-call engineer
    acknowledges in the PagerDuty app (its signed v3 webhook records it in the ledger): seconds from
    that tap to the wait's end (the task's end_date), and whether the wait held a worker slot."""
    from scripts.incident_runner import DAG_ID, SCENARIO_ALARMS, AirflowApi

    api = AirflowApi(stack.base_url)
    sandbox = stack.sandbox_client()
    ledger_url = f"sqlite:///{stack.state_dir / 'ledger.db'}"
    latencies: list[float] = []
    deferred_seen = 0
    for n in range(count):
        _close_open_incidents(ledger_url)
        sandbox.reset()
        time.sleep(1.0)
        published = sandbox.sns_publish(stack.sns_webhook_url, {"AlarmName": SCENARIO_ALARMS["deploy"]})
        intake = published.get("answer") or {}
        if published.get("http_status") != 200 or intake.get("status") != "new":
            raise RuntimeError(f"the SNS webhook did not open an incident: {published}")
        incident_id, run_id = intake["incident_id"], intake["dag_run_id"]

        def state_of(run_id: str = run_id) -> dict[str, Any]:
            return next((ti for ti in api.task_instances(DAG_ID, run_id) if ti["task_id"] == ACK_TASK), {})

        # Waiting: deferred (this release), or between two pokes of a rescheduling sensor (older ones).
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and state_of().get("state") not in ("deferred", "up_for_reschedule"):
            time.sleep(0.2)
        ti = state_of()
        if ti.get("state") not in ("deferred", "up_for_reschedule"):
            note(f"ack {n + 1}: {ACK_TASK} is {ti.get('state')!r}, not waiting, after 120 s")
            continue
        deferred_seen += ti.get("state") == "deferred"
        time.sleep(4.0)  # past the trigger's first look: the wait is in its steady polling
        tapped = time.time()
        sandbox.acknowledge(incident_id)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and state_of().get("state") not in ("success", "failed", "skipped"):
            time.sleep(0.2)
        ti = state_of()
        try:
            api._request("PATCH", f"/dags/{DAG_ID}/dagRuns/{run_id}", json={"state": "failed"})
        except RuntimeError as exc:
            note(f"could not stop run {run_id}: {exc}")
        if ti.get("state") != "success" or not ti.get("end_date"):
            note(f"ack {n + 1}: {ACK_TASK} ended {ti.get('state')!r}")
            continue
        latencies.append(_parse_time(ti["end_date"]) - tapped)
        note(f"ack {n + 1}/{count} {incident_id}: the wait ended {latencies[-1]:.2f} s after the tap")
    _close_open_incidents(ledger_url)
    figure("ack_waits_deferred", deferred_seen, "incidents")
    figure("ack_tap_to_wait_end_p50", percentile(latencies, 50), "s")
    figure("ack_tap_to_wait_end_p95", percentile(latencies, 95), "s")
    figure("ack_tap_to_wait_end_max", max(latencies) if latencies else float("nan"), "s")


def bench_ack() -> None:
    """The acknowledgement wait, deferred: PagerDuty tap → the wait ends (BENCH_ACKS, default 10)."""
    with _local_stack("ack") as stack:
        _ack_waits(stack, int(os.environ.get("BENCH_ACKS", "10")))


def _median_wall(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - started)
    return percentile(times, 50)


def bench_cli_startup(runs: int = 10) -> None:
    """The read-only command line, as installed by make, beside the interpreter's own start (same run)."""
    command = ROOT / ".venv" / "bin" / "incident-ops"
    if not command.exists():
        note(f"cli_startup skipped: {command} is missing (make venv installs it)")
        return
    interpreter = _median_wall([sys.executable, "-c", "pass"], runs)
    figure("interpreter_start", interpreter, "s")
    for argv in (["severity", "ログインできない"], ["oncall", "--at", "2026-11-28T03:00:00+09:00"]):
        seconds = _median_wall([str(command), *argv], runs)
        figure(f"cli_startup_{argv[0]}", seconds, "s")
        figure(f"cli_startup_{argv[0]}_over_interpreter", seconds / interpreter, "x")
    note(f"cli_startup: median of {runs} runs each; target <= 0.3 s")


def bench_triage_accuracy() -> None:
    from bench.triage import bench_triage

    bench_triage()


BENCHMARKS: dict[str, Callable[[], None]] = {
    "cli_startup": bench_cli_startup,
    "triage": bench_triage_accuracy,
    "parse": bench_parse,
    "economy": bench_economy,
    "fanout": bench_fanout,
    "storm": bench_storm,
    "live": bench_live,
    "page": bench_page,
    "ack": bench_ack,
}


def main(argv: list[str]) -> int:
    chosen = argv or list(BENCHMARKS)
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    for name in chosen:
        started = time.monotonic()
        BENCHMARKS[name]()
        note(f"{name}: {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
