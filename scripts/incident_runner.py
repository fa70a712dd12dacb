"""The local stack (sandbox + Airflow standalone) and an incident driven through it as people would.

Used by `make demo` (follows one incident, then keeps running), `make demo-once` (unattended, writes
a JSON report) and the end-to-end tests. People's parts are played through the same interfaces
people use: the acknowledgement (`answer_via="slack"`: in the PagerDuty app, the sandbox's control
endpoint, after which the PagerDuty stand-in sends its signed v3 webhook to the API server's
`/incidents/webhooks/pagerduty`; `answer_via="ui"`: the incident_acknowledge DAG), and
the human-in-the-loop answers (scenario choice, approvals), each 2–3 s after the task starts
waiting, as Airflow needs: with `answer_via="slack"` the on-call engineer clicks the option's button
on the decision's Slack message (the sandbox signs the interaction and delivers it to
`/incidents/webhooks/slack`), falling back to the Airflow REST API when no such message appears
within 20 s; with `answer_via="ui"` through the REST API as the Airflow UI does. The alarm itself
arrives the way monitoring sends it: the sandbox, acting as Amazon SNS, signs the CloudWatch
notification and delivers it to the API server's `/incidents/webhooks/sns` (the incident_ops
plugin), which opens the incident and starts the run.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include"))

from scripts.airflow_local import (  # noqa: E402
    DEMO_USER,
    LISTEN_HOST,
    PROJECT_ROOT,
    ManagedProcess,
    admin_password,
    airflow_env,
    api_token,
    local_airflow_command,
    upgrade_ledger,
    wait_for_http,
)

DAG_ID = "incident_response"
# The generic alert webhook's HMAC secret in the local stack (connection incident_webhook).
SANDBOX_WEBHOOK_SECRET = "sandbox-webhook-secret"
# The Slack app's signing secret and the PagerDuty v3 subscription's secret the sandbox signs with
# (connections incident_slack_webhook / incident_pagerduty_webhook; the sandbox's defaults too).
SANDBOX_SLACK_SIGNING_SECRET = "sandbox-slack-signing-secret"
SANDBOX_PAGERDUTY_WEBHOOK_SECRET = "sandbox-pagerduty-webhook-secret"
ANSWER_VIA = ("slack", "ui")
# How long after a decision starts waiting its Slack message may take to appear, and how long a
# delivered click may take to reach the task, before the driver answers through the REST API.
SLACK_MESSAGE_WAIT = 20.0
SLACK_ANSWER_WAIT = 15.0
# Airflow fails a task answered under ~1 s after its wait starts: answer no sooner than this.
ANSWER_AFTER = 2.5
TERMINAL_RUN_STATES = {"success", "failed"}
SCENARIO_ALARMS = {
    "deploy": "peoplebooster-production-health-check-failed",
    "resource": "peoplebooster-production-backend-cpu-high",
    "database": "peoplebooster-production-rds-connections-high",
    "external": "peoplebooster-production-health-check-failed",
    "security": "peoplebooster-production-health-check-failed",
}
SCENARIO_SYMPTOMS = {
    "deploy": "全ユーザーがアクセス不可",
    "resource": "レポート生成が遅い",
    "database": "診断機能が動作しない",
    "external": "診断機能が動作しない",
    "security": "不正アクセスの疑い",
}


def sandbox_connections(endpoints: dict[str, Any]) -> dict[str, str]:
    """AIRFLOW_CONN_* variables pointing every integration at the sandbox."""
    ca = endpoints["ca_bundle"]
    conns = {
        "aws_default": {"conn_type": "aws", "login": "testing", "password": "testing",
                        "extra": {"endpoint_url": endpoints["aws"], "region_name": endpoints.get("region", "ap-northeast-1")}},
        "slack_api_default": {"conn_type": "slack", "password": "xoxb-sandbox-token",
                              "extra": {"base_url": endpoints["slack_api"]}},
        "pagerduty_default": {"conn_type": "generic", "password": "sandbox-pagerduty-token",
                              "extra": {"routing_key": "sandbox-routing-key", "events_url": endpoints["pagerduty"],
                                        "rest_url": endpoints["pagerduty"], "from_email": "incident-ops@peoplebooster.com",
                                        "ca_bundle": ca}},
        "github_default": {"conn_type": "http", "host": endpoints["github_api"], "password": "sandbox-github-token"},
        "sentry_default": {"conn_type": "http", "host": endpoints["sentry"], "password": "sandbox-sentry-token"},
        "peoplebooster_api": {"conn_type": "http", "host": endpoints["api_base_url"], "password": "sandbox-password",
                              "extra": {"health_url": endpoints["health_url"],
                                        "external_status_url": endpoints["external_status_url"]}},
    }
    env = {f"AIRFLOW_CONN_{name.upper()}": json.dumps(conn) for name, conn in conns.items()}
    env["INCIDENT_OPS_CA_BUNDLE"] = ca
    return env


def sandbox_webhook_env(endpoints: dict[str, Any], topic_arn: str, environment: str = "production") -> dict[str, str]:
    """What the webhooks need to accept the sandbox's deliveries, all explicit: the sandbox's topic in
    the allow-list, its HTTPS host:port as an extra certificate host (signatures stay verified), its
    local CA for that host only, the generic alert webhook's HMAC secret, the Slack app's signing
    secret and the PagerDuty webhook secret (connections)."""
    return {
        "INCIDENT_OPS_SNS_TOPICS": f"{topic_arn}={environment}",
        "INCIDENT_OPS_SNS_EXTRA_CERT_HOSTS": urlsplit(endpoints["https"]).netloc,
        "INCIDENT_OPS_SNS_EXTRA_CA_BUNDLE": endpoints["ca_bundle"],
        "INCIDENT_OPS_WEBHOOK_VERIFY": "on",
        "AIRFLOW_CONN_INCIDENT_WEBHOOK": json.dumps({"conn_type": "generic", "password": SANDBOX_WEBHOOK_SECRET}),
        "AIRFLOW_CONN_INCIDENT_SLACK_WEBHOOK": json.dumps({"conn_type": "generic", "password": SANDBOX_SLACK_SIGNING_SECRET}),
        "AIRFLOW_CONN_INCIDENT_PAGERDUTY_WEBHOOK": json.dumps({"conn_type": "generic",
                                                               "password": SANDBOX_PAGERDUTY_WEBHOOK_SECRET}),
    }


class AirflowApi:
    """The parts of Airflow's REST API (v2) a person's client uses.

    Without `password`: the login of the stack this process started on `base_url` (its state
    folder's admin password, see scripts.airflow_local.api_token)."""

    def __init__(self, base_url: str, username: str | None = None, password: str | None = None) -> None:
        self.base_url = base_url
        self._login = (username, password)
        self._token = api_token(base_url, *self._login)

    # A 5xx is tried again after these pauses: standalone's SQLite answers 500 ("database is locked")
    # when another process holds a write for longer than its busy timeout, which a loaded 2-core
    # machine does. Every request sent again is idempotent (GET, PATCH, a POST with its own run id).
    RETRY_PAUSES = (1.0, 2.0, 4.0, 8.0)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        for pause in (*self.RETRY_PAUSES, None):
            response = requests.request(method, f"{self.base_url}/api/v2{path}",
                                        headers={"Authorization": f"Bearer {self._token}"}, timeout=30, **kwargs)
            if response.status_code == 401:
                self._token = api_token(self.base_url, *self._login)
                return self._request(method, path, **kwargs)
            if response.status_code < 500 or pause is None:
                break
            time.sleep(pause)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else None

    def trigger(self, dag_id: str, conf: dict[str, Any], run_id: str | None = None) -> dict[str, Any]:
        """A new run with a run id of its own, so that a POST sent again after a 5xx that did create the
        run finds it (409) instead of starting a second one."""
        run_id = run_id or f"manual__{dt.datetime.now(dt.UTC).isoformat()}"
        try:
            return self._request("POST", f"/dags/{dag_id}/dagRuns",
                                 json={"dag_run_id": run_id, "logical_date": None, "conf": conf})
        except RuntimeError as exc:
            if "HTTP 409" not in str(exc):
                raise
            return self.run(dag_id, run_id)

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self._request("GET", f"/dags/{dag_id}/dagRuns/{run_id}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self._request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=200")["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> Any:
        answer = self._request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value")
        return answer.get("value")

    def pending_hitl(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        answer = self._request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/hitlDetails?response_received=false")
        return answer.get("hitl_details", [])

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        """Until the DAG processor has parsed `dag_id` and the API lists it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self._request("GET", f"/dags/{dag_id}")
                return
            except RuntimeError:
                time.sleep(1)
        raise TimeoutError(f"DAG {dag_id} was not listed within {timeout:.0f}s")

    def answer_hitl(self, dag_id: str, run_id: str, task_id: str, chosen: list[str]) -> Any:
        return self._request("PATCH", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails",
                             json={"chosen_options": chosen, "params_input": {}})



def api_for(stack: Any) -> AirflowApi:
    """The REST API of `stack` with its login (a stack without `password`: the one this process
    remembers for its base URL)."""
    return AirflowApi(stack.base_url, getattr(stack, "username", None), getattr(stack, "password", None))


@dataclass
class LocalStack:
    """The sandbox and local Airflow (what `airflow standalone` runs, see
    scripts.airflow_local.local_airflow_command), each in its own process group, both listening on
    127.0.0.1 only. `state_dir` may be relative: it is made absolute against the current directory."""

    state_dir: Path
    port: int = 8080
    sandbox_ports: dict[str, int] = field(default_factory=lambda: {"aws": 5055, "http": 5056, "https": 5057})
    runbook: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    sandbox: ManagedProcess | None = None
    airflow: ManagedProcess | None = None
    endpoints: dict[str, Any] = field(default_factory=dict)
    topic_arn: str | None = None

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir).resolve()
        if self.runbook is not None:
            self.runbook = Path(self.runbook).resolve()

    @property
    def base_url(self) -> str:
        return f"http://{LISTEN_HOST}:{self.port}"

    @property
    def username(self) -> str:
        return DEMO_USER

    @property
    def password(self) -> str:
        """The admin password of this state folder (`<state_dir>/admin-password`, generated once)."""
        return admin_password(self.state_dir)

    def sandbox_command(self) -> list[str]:
        """The sandbox, delivering as Slack and PagerDuty to this stack's API server (its port is
        known before the sandbox starts), signed with the secrets Airflow's connections hold."""
        return [sys.executable, "-m", "sandbox", "--state-dir", str(self.state_dir / "sandbox"),
                "--host", LISTEN_HOST, "--aws-port", str(self.sandbox_ports["aws"]),
                "--http-port", str(self.sandbox_ports["http"]), "--https-port", str(self.sandbox_ports["https"]),
                "--airflow-url", self.base_url, "--slack-signing-secret", SANDBOX_SLACK_SIGNING_SECRET,
                "--pagerduty-webhook-secret", SANDBOX_PAGERDUTY_WEBHOOK_SECRET]

    def airflow_command(self) -> list[str]:
        return local_airflow_command(self.port)

    def airflow_environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Airflow's environment for this stack (absolute paths, the state folder's login)."""
        return airflow_env(self.state_dir, port=self.port, extra={**(extra or {}), **self.extra_env})

    @property
    def sns_webhook_url(self) -> str:
        """The SNS webhook the Airflow API server serves (the incident_ops plugin)."""
        return f"{self.base_url}/incidents/webhooks/sns"

    def start(self, say: Callable[[str], None] = print) -> LocalStack:
        from sandbox.client import SandboxClient, load_endpoints

        self.state_dir.mkdir(parents=True, exist_ok=True)
        sandbox_state = self.state_dir / "sandbox"
        (sandbox_state / "endpoints.json").unlink(missing_ok=True)
        env = {**os.environ, "PYTHONPATH": f"{PROJECT_ROOT / 'plugins'}:{PROJECT_ROOT / 'include'}"}
        if self.runbook:
            env["INCIDENT_OPS_RUNBOOK"] = str(self.runbook)
        say("starting the sandbox (moto, Slack, PagerDuty, GitHub, Sentry, PeopleBooster API) ...")
        self.sandbox = ManagedProcess(
            "sandbox", self.sandbox_command(), env, self.state_dir / "logs" / "sandbox.log",
        ).start()
        deadline = time.monotonic() + 90
        while not (sandbox_state / "endpoints.json").exists():
            if not self.sandbox.running() or time.monotonic() > deadline:
                raise RuntimeError(f"the sandbox did not start; see {self.sandbox.log_path}")
            time.sleep(0.3)
        self.endpoints = load_endpoints(sandbox_state)
        sandbox = SandboxClient(self.endpoints)
        sandbox.wait_ready()
        self.topic_arn = sandbox.sns_subscriptions()["default_topic_arn"]
        extra = {**sandbox_connections(self.endpoints), **sandbox_webhook_env(self.endpoints, self.topic_arn)}
        if self.runbook:
            extra["INCIDENT_OPS_RUNBOOK"] = str(self.runbook)
        airflow_environment = self.airflow_environment(extra)
        say(upgrade_ledger(airflow_environment))  # before any Airflow process opens the ledger
        say(f"starting Airflow (scheduler, dag-processor, triggerer, api-server) on {self.base_url} ...")
        self.airflow = ManagedProcess(
            "airflow", self.airflow_command(), airflow_environment,
            self.state_dir / "logs" / "airflow.log",
        ).start()
        wait_for_http(f"{self.base_url}/api/v2/monitor/health", timeout=240, process=self.airflow)
        self.wait_for_dag(DAG_ID)
        return self

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        AirflowApi(self.base_url, self.username, self.password).wait_for_dag(dag_id, timeout)

    def stop(self) -> None:
        errors = []
        for process in (self.airflow, self.sandbox):
            if process is not None:
                try:
                    process.stop()
                except RuntimeError as exc:
                    errors.append(str(exc))
        if errors:
            raise RuntimeError("; ".join(errors))

    def sandbox_client(self):
        from sandbox.client import SandboxClient

        return SandboxClient(self.endpoints)


def incident_conf(scenario: str, *, check_mode: bool = False, choose_in_ui: bool = True) -> dict[str, Any]:
    """What monitoring sends for the injected scenario (the scenario is left to the evidence and a person)."""
    return {
        "symptom": SCENARIO_SYMPTOMS[scenario],
        "severity": "auto",
        "service": "backend",
        "environment": "production",
        "reporter": "cloudwatch",
        "scenario": "auto" if choose_in_ui else scenario,
        "check_mode": check_mode,
        "alarm": {"AlarmName": SCENARIO_ALARMS[scenario], "NewStateValue": "ALARM"},
    }


def _ok(delivery: dict[str, Any]) -> bool:
    return delivery.get("status") is not None and 200 <= delivery["status"] < 300


def follow_run(
    stack: LocalStack,
    run_id: str,
    *,
    scenario: str,
    approve: bool = True,
    timeout: float = 900,
    say: Callable[[str], None] = print,
    acknowledge: bool = True,
    answer_via: str = "ui",
    unanswered: Collection[str] = (),
) -> dict[str, Any]:
    """Poll the run; play the people's parts; return the final run and task states, how each
    decision was answered (`decisions`: task_id, option, via "slack"|"ui", by) and how the incident
    was acknowledged (`acknowledged_via`: "pagerduty" (in the app; its webhook follows), "ui" (the
    incident_acknowledge DAG: the UI path, or an incident that paged nobody) or None).

    `acknowledge=False`: nobody starts the response (the escalation path). `unanswered`: decisions
    (task ids, or their last part: `choose_scenario`) nobody answers, so their timeout policy acts.
    `answer_via="slack"`: the
    on-call engineer answers each decision with its button in Slack (the REST API when no message
    for it appears within SLACK_MESSAGE_WAIT s, or the click does not reach the task); "ui": the
    REST API, as the Airflow UI's Required Actions do."""
    if answer_via not in ANSWER_VIA:
        raise ValueError(f"answer_via must be one of {', '.join(ANSWER_VIA)}, got {answer_via!r}")
    api = api_for(stack)
    sandbox = stack.sandbox_client()
    seen: dict[str, str] = {}
    waiting_since: dict[str, float] = {}
    answered: dict[Any, set[str]] = {}
    acknowledged = False
    acknowledged_via: str | None = None
    decisions: list[dict[str, Any]] = []
    clicks: dict[str, dict[str, Any]] = {}  # "<task_id>#<try>" -> the click and its decision record
    responder: dict[str, Any] | None = None
    if answer_via == "slack":
        responder = sandbox.oncall_person()  # the rotation's engineer: a roster member with a Slack id
    deadline = time.monotonic() + timeout
    incident_id = None
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        run = api.run(DAG_ID, run_id)
        for ti in sorted(api.task_instances(DAG_ID, run_id), key=lambda t: t.get("start_date") or ""):
            state = ti.get("state") or "none"
            if state == "awaiting_input":
                # Airflow fails an answer sent right after the task starts waiting: time it per try.
                waiting_since.setdefault(f"{ti['task_id']}#{ti.get('try_number')}", time.monotonic())
            if seen.get(ti["task_id"]) != state:
                seen[ti["task_id"]] = state
                if state not in ("none", "scheduled", "queued"):
                    say(f"  {ti['task_id']:<40} {state}")
        if incident_id is None and seen.get("detect.open_incident") == "success":
            incident_id = api.xcom(DAG_ID, run_id, "detect.open_incident")["id"]
            say(f"  incident {incident_id}")
        if acknowledge and incident_id and not acknowledged and seen.get("detect.notify_responders") == "success":
            time.sleep(2)
            # With answer_via="ui" the people act in the Airflow UI, acknowledging too (as this driver
            # always did: it looked for the page under a key the stand-in does not have).
            paged = answer_via == "slack" and any(i.get("incident_key") == incident_id for i in sandbox.pagerduty_incidents())
            if paged:
                pd_user = responder["pagerduty_user_id"] if responder and responder.get("pagerduty_user_id") else "PTANAKA"
                sandbox.acknowledge(incident_id, user=pd_user)
                acknowledged_via = "pagerduty"
                say("  (PagerDuty: the on-call engineer acknowledged in the app; its webhook tells Airflow)")
            else:  # the UI path, or P3/P4 paged nobody: a person starts the response from the Airflow UI
                api.trigger("incident_acknowledge", {"incident_id": incident_id, "responder": "田中 太郎"})
                acknowledged_via = "ui"
                say("  (Airflow UI: a person triggered incident_acknowledge)")
            acknowledged = True
        for detail in api.pending_hitl(DAG_ID, run_id):
            ti = detail.get("task_instance") or detail
            task_id = ti.get("task_id")
            key = f"{task_id}#{ti.get('try_number')}"
            waiting = waiting_since.get(key)
            if waiting is None or time.monotonic() - waiting < ANSWER_AFTER or task_id in answered.get(ti.get("try_number"), ()):
                continue
            if task_id in unanswered or task_id.rsplit(".", 1)[-1] in unanswered:
                continue
            options = detail.get("options") or []
            if task_id.endswith("choose_scenario"):
                chosen = [scenario_option(stack, scenario, options)]
            else:
                chosen = ["Approve" if approve else "Reject"]
            fallback = None
            if answer_via == "slack" and responder is not None:
                click = clicks.get(key)
                if click is None:
                    button = sandbox.decision_button(task_id, chosen[0], run_id=run_id, map_index=ti.get("map_index", -1))
                    if button is None:
                        if time.monotonic() - waiting < SLACK_MESSAGE_WAIT:
                            continue  # the announcement may still be on its way
                        fallback = f"no Slack message for {task_id} within {SLACK_MESSAGE_WAIT:.0f} s"
                    else:
                        delivery = sandbox.slack_click(button["channel_id"], button["ts"], button["action_id"],
                                                       responder["slack_user_id"])
                        record = {"task_id": task_id, "option": chosen[0], "via": "slack", "by": responder["name"]}
                        clicks[key] = {"at": time.monotonic(), "delivery": delivery, "record": record}
                        if _ok(delivery):
                            decisions.append(record)
                            say(f"  (Slack: {responder['name']} clicked 「{button['label']}」 for {task_id})")
                            continue
                        fallback = (f"the Slack click on {task_id} was answered "
                                    f"{delivery.get('status') or delivery.get('error')}")
                elif time.monotonic() - click["at"] < SLACK_ANSWER_WAIT:
                    continue  # clicked: the answer is on its way to the task
                else:
                    fallback = f"the Slack click on {task_id} did not reach the task within {SLACK_ANSWER_WAIT:.0f} s"
                    if click["record"] in decisions:
                        decisions.remove(click["record"])
                say(f"  (Slack: {fallback}; answering in the Airflow UI instead)")
            try:
                api.answer_hitl(DAG_ID, run_id, task_id, chosen)
            except RuntimeError as exc:
                if re.search(r"HTTP 5\d\d", str(exc)):
                    # The API server failed (SQLite busy under load): still waiting, answered at the next
                    # poll; if it did take the answer, the task is no longer listed as waiting.
                    say(f"  (Airflow UI: answering {task_id} failed, trying again: {str(exc)[:160]})")
                    continue
                if "HTTP 409" not in str(exc):
                    raise
                # Answered already: the click got there after all, or a PATCH sent again after a 5xx
                # found the first one's answer.
                if key in clicks:
                    decisions.append(clicks[key]["record"])
                answered.setdefault(ti.get("try_number"), set()).add(task_id)
                continue
            say(f"  (Airflow UI: a person answered {task_id}: {chosen[0]})")
            decisions.append({"task_id": task_id, "option": chosen[0], "via": "ui", "by": getattr(stack, "username", None) or DEMO_USER,
                              **({"fallback": fallback} if fallback else {})})
            answered.setdefault(ti.get("try_number"), set()).add(task_id)
        if run.get("state") in TERMINAL_RUN_STATES:
            break
        time.sleep(1)
    else:
        raise TimeoutError(f"run {run_id} not finished within {timeout:.0f}s")
    return {"run": run, "tasks": seen, "incident_id": incident_id, "decisions": decisions,
            "acknowledged_via": acknowledged_via}


def stop_run(api: AirflowApi, run_id: str, say: Callable[[str], None] = print, *, stack: Any = None) -> None:
    """Mark a run that is still going failed (its tasks stop), as a person would in the UI, and close
    its incident in the stack's ledger; never raises."""
    try:
        if api.run(DAG_ID, run_id).get("state") not in TERMINAL_RUN_STATES:
            api._request("PATCH", f"/dags/{DAG_ID}/dagRuns/{run_id}", json={"state": "failed"})
            say(f"stopped run {run_id} (marked failed)")
    except Exception as exc:  # noqa: BLE001 - best effort, the original failure is what matters
        say(f"could not stop run {run_id}: {exc}")
    if stack is None:
        return
    try:
        from incident_ops.core.ledger import Ledger

        incident_id = (api.xcom(DAG_ID, run_id, "detect.open_incident") or {}).get("id")
        url = getattr(stack, "ledger_url", None) or f"sqlite:///{stack.state_dir / 'ledger.db'}"
        if incident_id:
            ledger = Ledger(url)
            try:
                ledger.close(incident_id, dt.datetime.now(dt.UTC))
            finally:
                ledger.dispose()
            say(f"closed incident {incident_id}")
    except Exception as exc:  # noqa: BLE001 - best effort, as above
        say(f"could not close the incident of run {run_id}: {exc}")


def scenario_option(stack: LocalStack, scenario: str, options: Sequence[str]) -> str:
    """The choice's option that starts `scenario` (the runbook's words for it, as the DAG builds them)."""
    from incident_ops.core.decisions import scenario_options
    from incident_ops.core.runbook import load_runbook

    runbook = load_runbook(getattr(stack, "runbook", None))  # the stack's, else the project's
    wanted = scenario_options(runbook, "")[scenario]
    if wanted not in options:
        raise RuntimeError(f"no option for scenario {scenario!r} among {list(options)}")
    return wanted


def break_scenarios(stack: LocalStack, scenarios: Sequence[str], *, faults: dict[str, Any] | None = None,
                    say: Callable[[str], None] = print) -> tuple[Any, int, dict[str, Any], dict[str, Any]]:
    """Reset the sandbox, break each scenario, switch `faults` on. Returns the sandbox client, where its
    request records of this incident start, and its state before and after the break."""
    sandbox = stack.sandbox_client()
    sandbox.reset()
    records_from = len(sandbox.records())
    before = sandbox.state()
    for scenario in scenarios:
        sandbox.break_scenario(scenario)
    broken = sandbox.state()
    names = ", ".join(repr(s) for s in scenarios)
    say(f"injected scenario{'s' if len(scenarios) > 1 else ''} {names}: health {broken.get('health', {}).get('status')}")
    if faults:
        sandbox.set_faults(**faults)
        say(f"faults on: {faults}")
    return sandbox, records_from, before, broken


def run_incident(
    stack: LocalStack,
    scenario: str,
    *,
    check_mode: bool = False,
    approve: bool = True,
    say: Callable[[str], None] = print,
    timeout: float = 900,
    faults: dict[str, Any] | None = None,
    via: str | None = None,
    acknowledge: bool = True,
    answer_via: str = "ui",
    unanswered: Collection[str] = (),
) -> dict[str, Any]:
    """Break `scenario` in the sandbox, send its alarm, follow the run; the report of what happened.

    `answer_via` (see follow_run): "slack" answers the decisions with the buttons of their Slack
    messages (what `make demo` does), "ui" through the Airflow REST API.

    `via="sns"` (the default): the sandbox, acting as Amazon SNS, delivers the CloudWatch alarm
    (signed) to the API server's `/incidents/webhooks/sns`, which opens the incident and answers the
    run it created. `via="rest"`: `POST /api/v2/dags/incident_response/dagRuns` with the conf, as a
    monitoring tool with an API token would (also the default with `check_mode`, which an alarm
    cannot ask for). `faults` are switched on in the sandbox (see its /_sandbox/faults) after the
    break, off at the end.
    """
    via = via or ("rest" if check_mode else "sns")
    if via not in ("sns", "rest"):
        raise ValueError(f"via must be 'sns' or 'rest', got {via!r}")
    sandbox, records_from, before, broken = break_scenarios(stack, [scenario], faults=faults, say=say)
    api = api_for(stack)
    started = time.monotonic()
    intake = None
    try:
        if via == "sns":
            published = sandbox.sns_publish(stack.sns_webhook_url, {"AlarmName": SCENARIO_ALARMS[scenario]})
            intake = published["answer"]
            if published["http_status"] != 200 or not isinstance(intake, dict) or not intake.get("dag_run_id"):
                raise RuntimeError(f"the SNS webhook refused the alarm: HTTP {published['http_status']}: {intake}")
            run = {"dag_run_id": intake["dag_run_id"]}
            say(f"SNS delivered {SCENARIO_ALARMS[scenario]} to /incidents/webhooks/sns: {intake['status']} "
                f"incident {intake['incident_id']} ({intake.get('severity')}), run {run['dag_run_id']}")
        else:
            run = api.trigger(DAG_ID, incident_conf(scenario, check_mode=check_mode))
            say(f"triggered {DAG_ID} run {run['dag_run_id']} through the REST API")
        try:
            followed = follow_run(stack, run["dag_run_id"], scenario=scenario, approve=approve, timeout=timeout,
                                  say=say, acknowledge=acknowledge, answer_via=answer_via, unanswered=unanswered)
        except BaseException:
            # A run left going would act in the next incident, and its open incident would take the
            # next alarm of its kind (joined, no new run): stop both.
            stop_run(api, run["dag_run_id"], say, stack=stack)
            raise
    finally:
        if faults:
            sandbox.set_faults(**{name: None for name in faults if not name.endswith("_count")})
    return incident_report(stack, scenario, run["dag_run_id"], followed, via=via, intake=intake,
                           check_mode=check_mode, answer_via=answer_via, started=started,
                           records_from=records_from, before=before, broken=broken)


def incident_report(
    stack: Any,
    scenario: str,
    dag_run_id: str,
    followed: dict[str, Any],
    *,
    via: str,
    intake: dict[str, Any] | None,
    check_mode: bool,
    answer_via: str,
    started: float,
    records_from: int,
    before: dict[str, Any],
    broken: dict[str, Any],
    finished: float | None = None,
) -> dict[str, Any]:
    """The report of one followed run (what `run_incident` returns)."""
    api = api_for(stack)
    sandbox = stack.sandbox_client()
    after = sandbox.state()
    status, health = sandbox.health()
    incident_id = followed["incident_id"]
    postmortem = None
    if followed["tasks"].get("postmortem.write_postmortem") == "success":
        postmortem = api.xcom(DAG_ID, dag_run_id, "postmortem.write_postmortem")["path"]
    records = sandbox.records()[records_from:]
    acknowledge_webhooks = [
        {k: d.get(k) for k in ("event_type", "by", "url", "status", "error", "done")} | {"attempts": len(d["attempts"])}
        for d in sandbox.deliveries("pagerduty") if d.get("incident_key") == incident_id
    ]
    return {
        "incident_id": incident_id,
        "scenario": scenario,
        "check_mode": check_mode,
        "severity": (api.xcom(DAG_ID, dag_run_id, "detect.open_incident") or {}).get("severity")
        if followed["tasks"].get("detect.open_incident") == "success" else None,
        "dag_run_id": dag_run_id,
        "via": via,
        "intake": intake,
        "dag_run_state": followed["run"].get("state"),
        "seconds": round((finished or time.monotonic()) - started, 1),
        "tasks": followed["tasks"],
        "healthy": status == 200 and isinstance(health, dict) and health.get("status") == "healthy",
        "health": health,
        "slack_messages": [r for r in sandbox.slack_messages()],
        "pagerduty_events": sandbox.pagerduty_events(),
        "aws": {"before": before.get("aws"), "broken": broken.get("aws"), "after": after.get("aws")},
        "postmortem": postmortem,
        "records": len(records),
        "answer_via": answer_via,
        "decisions": followed["decisions"],
        "acknowledged_via": followed["acknowledged_via"],
        "pagerduty_webhooks": acknowledge_webhooks,
        "slack_deliveries": [{k: d.get(k) for k in ("kind", "by", "action_id", "value", "status", "error")}
                             for d in sandbox.deliveries("slack")],
    }


def run_incidents(
    stack: Any,
    scenarios: Sequence[str],
    *,
    alarms: dict[str, str] | None = None,
    approve: bool = True,
    say: Callable[[str], None] = print,
    timeout: float = 900,
    faults: dict[str, Any] | None = None,
    answer_via: str = "ui",
    started: Callable[[list[dict[str, Any]]], Any] | None = None,
) -> list[dict[str, Any]]:
    """Several incidents at once: reset the sandbox once, break every scenario, send each one's alarm
    (the sandbox as Amazon SNS, to `/incidents/webhooks/sns`), follow every run concurrently (one
    thread each, `follow_run`: each plays the people's parts of its own run and incident only), and
    return one report per incident, in the order of `scenarios` (as `run_incident` does; the Slack
    messages and the AWS state are the sandbox's, shared by the incidents).

    `alarms` overrides a scenario's alarm (default SCENARIO_ALARMS): the intake joins an alarm to the
    open incident of the same alarm, so two incidents need two alarms; a joined alarm raises. `faults`
    are switched on once every scenario is broken, off at the end. `started` is called with
    [{scenario, dag_run_id, incident_id}] once every alarm has opened its incident and run."""
    if len(set(scenarios)) != len(scenarios):
        raise ValueError(f"each scenario once: {list(scenarios)}")
    alarm_of = {**SCENARIO_ALARMS, **(alarms or {})}
    sandbox, records_from, before, broken = break_scenarios(stack, scenarios, faults=faults, say=say)
    begun = time.monotonic()
    runs: list[dict[str, Any]] = []
    results: dict[str, dict[str, Any]] = {}
    errors: dict[str, BaseException] = {}
    try:
        for scenario in scenarios:
            published = sandbox.sns_publish(stack.sns_webhook_url, {"AlarmName": alarm_of[scenario]})
            intake = published["answer"]
            if published["http_status"] != 200 or not isinstance(intake, dict) or not intake.get("dag_run_id"):
                raise RuntimeError(f"the SNS webhook refused {alarm_of[scenario]}: HTTP {published['http_status']}: {intake}")
            if intake.get("status") != "new" or intake["incident_id"] in {r["incident_id"] for r in runs}:
                raise RuntimeError(f"{alarm_of[scenario]} ({scenario}) opened no incident of its own: {intake} "
                                   "(give it another alarm: `alarms`)")
            runs.append({"scenario": scenario, "dag_run_id": intake["dag_run_id"], "incident_id": intake["incident_id"],
                         "intake": intake})
            say(f"SNS delivered {alarm_of[scenario]}: incident {intake['incident_id']} ({intake.get('severity')}), "
                f"run {intake['dag_run_id']} [{scenario}]")
        if started is not None:
            started([{k: r[k] for k in ("scenario", "dag_run_id", "incident_id")} for r in runs])

        def follow(run: dict[str, Any]) -> None:
            try:
                followed = follow_run(stack, run["dag_run_id"], scenario=run["scenario"], approve=approve,
                                      timeout=timeout, say=lambda line: say(f"[{run['scenario']}] {line}"),
                                      answer_via=answer_via)
                results[run["scenario"]] = {"followed": followed, "finished": time.monotonic()}
            except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread below
                errors[run["scenario"]] = exc

        threads = [threading.Thread(target=follow, args=(run,), name=f"follow-{run['scenario']}", daemon=True)
                   for run in runs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout + 60)
        if errors:
            scenario, error = next(iter(errors.items()))
            raise RuntimeError(f"following the {scenario} run failed: {error!r}") from error
        missing = [run["scenario"] for run in runs if run["scenario"] not in results]
        if missing:
            raise TimeoutError(f"the runs of {', '.join(missing)} were not followed to their end")
    finally:
        if faults:
            sandbox.set_faults(**{name: None for name in faults if not name.endswith("_count")})
    return [incident_report(stack, run["scenario"], run["dag_run_id"], results[run["scenario"]]["followed"],
                            via="sns", intake=run["intake"], check_mode=False, answer_via=answer_via,
                            started=begun, finished=results[run["scenario"]]["finished"],
                            records_from=records_from, before=before, broken=broken)
            for run in runs]
