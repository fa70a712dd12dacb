"""Every command that README.md, docs/*.md and bench/README.md show is run here as written, or is
exempt with a reason.

A command is one logical line of a shell code block (`bash`, `sh`, `shell`, `console`): `\\`
continuations joined with one space, a trailing `# comment` dropped. Lines that only set variables
(`SANDBOX=http://…`, `export AWS_…=…`) are not commands; they are the block's settings, and each
command runs after the settings of its block that come before it. A `NAME=$(…)` line is a command
(it is run and checked) and, like a setting, precedes the later commands of its block.

`RUN` maps each command, exactly as the page shows it, to where it runs (its stage) and what its
output must show; `EXEMPT` maps the commands that cannot run here to the reason. A command is looked
up by its text, so the same text on two pages is one entry. The meta-tests (no marker, so in
`make check` too) fail when a page shows a command in neither table, when a table names a command no
page shows any more, when a code block has no language, and when a block with an exempt command is
not followed by a note saying that it is not run by the tests.

Stages, each with its markers:

- `cli` (process): the `incident-ops` commands, with a temporary ledger (`INCIDENT_OPS_LEDGER_URL`)
  that holds a recovered P1, INC-20261120-a1b2c3, as the postmortem-done example needs.
- `sandbox` (process): against the sandbox started with the documented command (`sandbox-start`),
  on its documented ports.
- `demo` (slow): against a running `make demo` (`demo-start`), on its documented ports.
- `process` / `slow`: run on their own (make targets, pytest).

Every command runs with `bash` from the project root, with AWS_*, GITHUB_*, AIRFLOW_CONN_* and
INCIDENT_OPS_RUNBOOK removed from the environment so that only what the page sets counts.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = ("README.md", "docs/*.md", "bench/README.md")
SHELL_LANGUAGES = frozenset({"bash", "sh", "shell", "console", "zsh"})
OTHER_LANGUAGES = frozenset({"text", "dotenv", "ini", "json", "yaml", "toml", "mermaid", "python", "jinja", "diff"})
EXEMPT_NOTE = "not run by the tests"

# The fixed ports the documented commands use: the sandbox's (AWS, HTTP, HTTPS) and make demo's Airflow.
SANDBOX_PORTS = (5055, 5056, 5057)
AIRFLOW_PORT = 8080
DOCUMENTED_INCIDENT = "INC-20261120-a1b2c3"
JST = ZoneInfo("Asia/Tokyo")


# --- reading the pages ------------------------------------------------------------------------------

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
HEADING = re.compile(r"^#{1,6} ")
VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
CAPTURE = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)=\$\(.*\)$")


@dataclass(frozen=True)
class Block:
    path: str  # relative to the project, e.g. docs/operations.md
    line: int  # the opening fence, 1-based
    language: str
    lines: tuple[str, ...]
    after: str  # the page's text from the closing fence to the next code block or heading


@dataclass(frozen=True)
class Command:
    text: str
    source: str  # path:line
    setup: tuple[str, ...] = ()  # the block's settings and captures before it
    capture: str | None = None  # the variable of a `NAME=$(...)` command


def code_blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    relative = path.relative_to(PROJECT_ROOT).as_posix()
    blocks, index = [], 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        language = opening["info"].strip().split(" ")[0].lower()
        body, end = [], index + 1
        while end < len(lines) and lines[end].strip() != fence:
            line = lines[end]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            end += 1
        after, following = [], end + 1
        while following < len(lines) and not FENCE.match(lines[following]) and not HEADING.match(lines[following]):
            after.append(lines[following])
            following += 1
        blocks.append(Block(relative, index + 1, language, tuple(body), "\n".join(after)))
        index = end + 1
    return blocks


def _without_comment(line: str) -> tuple[str, str | None]:
    """The line without a trailing `# comment`, and the quote left open at its end (None if none)."""
    quote, index = None, 0
    while index < len(line):
        char = line[index]
        if quote == "'":
            quote = None if char == "'" else quote
        elif quote == '"':
            if char == "\\":
                index += 1
            elif char == '"':
                quote = None
        elif char == "\\":
            index += 1
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1] in " \t"):
            return line[:index].rstrip(), None
        index += 1
    return line.rstrip(), quote


def logical_lines(block: Block, problems: list[str]) -> Iterator[tuple[int, str]]:
    """(line number, command text) of each logical line of a shell block."""
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(block.lines, block.line + 1):
        line = raw
        if block.language == "console":
            if not parts and not line.startswith("$ "):
                continue  # output
            line = line[2:] if not parts else line.removeprefix("> ")
        text, open_quote = _without_comment(line.strip())
        if open_quote:
            problems.append(f"{block.path}:{number}: a quoted string spans lines; keep each line's quotes closed")
        if not text and not parts:
            continue
        if not parts:
            start = number
        if text.endswith("\\"):
            parts.append(text[:-1].rstrip())
            continue
        parts.append(text)
        yield start, " ".join(part for part in parts if part)
        parts = []
    if parts:
        problems.append(f"{block.path}:{start}: the block ends inside a `\\` continuation")


def is_setting(text: str) -> bool:
    """Only variable assignments (optionally `export`ed), no command substitution."""
    if "$(" in text or "`" in text:
        return False
    words = shlex.split(text)
    if words[:1] == ["export"]:
        words = words[1:]
    return bool(words) and all(VARIABLE.match(word) for word in words)


@dataclass
class Pages:
    blocks: list[Block] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def read_pages() -> Pages:
    pages = Pages()
    paths = sorted({path for pattern in DOCUMENTS for path in PROJECT_ROOT.glob(pattern)})
    for path in paths:
        for block in code_blocks(path):
            pages.blocks.append(block)
            if not block.language:
                pages.problems.append(f"{block.path}:{block.line}: a code block without a language (```bash, ```text, …)")
                continue
            if block.language not in SHELL_LANGUAGES:
                if block.language not in OTHER_LANGUAGES:
                    pages.problems.append(
                        f"{block.path}:{block.line}: unknown language {block.language!r}: add it to SHELL_LANGUAGES "
                        "(its commands are then tested) or OTHER_LANGUAGES"
                    )
                continue
            setup: list[str] = []
            for number, text in logical_lines(block, pages.problems):
                if is_setting(text):
                    setup.append(text)
                    continue
                capture = CAPTURE.match(text)
                pages.commands.append(Command(text, f"{block.path}:{number}", tuple(setup),
                                              capture["name"] if capture else None))
                if capture:
                    setup.append(text)
    return pages


PAGES = read_pages()


# --- what each command must show -------------------------------------------------------------------

Check = Callable[[subprocess.CompletedProcess], None]


def _json(result: subprocess.CompletedProcess) -> Any:
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"not JSON ({exc}): {result.stdout[:2000]}") from None


def prints(*texts: str) -> Check:
    def check(result: subprocess.CompletedProcess) -> None:
        for text in texts:
            assert text in result.stdout, f"{text!r} not in the output:\n{result.stdout[:3000]}"

    return check


def json_with(*keys: str, **values: Any) -> Check:
    """The output is one JSON object with these keys (and these values)."""

    def check(result: subprocess.CompletedProcess) -> None:
        data = _json(result)
        assert isinstance(data, dict), data
        missing = [key for key in (*keys, *values) if key not in data]
        assert not missing, f"keys {missing} missing from {sorted(data)}"
        for key, value in values.items():
            assert data[key] == value, f"{key} = {data[key]!r}, expected {value!r}"

    return check


def both(*checks: Check) -> Check:
    def check(result: subprocess.CompletedProcess) -> None:
        for each in checks:
            each(result)

    return check


def playbook_report(*, check_mode: bool, ok: bool, first_step_changed: bool | None = None) -> Check:
    keys = ("scenario", "environment", "check_mode", "incident_id", "ok", "steps")
    step_keys = {"step", "action", "ok", "changed", "skipped", "before", "after", "message", "details", "check_mode"}

    def check(result: subprocess.CompletedProcess) -> None:
        json_with(*keys, check_mode=check_mode, ok=ok)(result)
        steps = _json(result)["steps"]
        assert steps and all(step_keys <= set(step) for step in steps), steps
        if first_step_changed is not None:
            assert steps[0]["changed"] is first_step_changed, steps[0]

    return check


def webhook_answer(result: subprocess.CompletedProcess) -> None:
    answer = _json(result)
    assert answer.get("status") in ("new", "joined"), answer
    assert answer.get("incident_id", "").startswith("INC-"), answer


def sns_published(result: subprocess.CompletedProcess) -> None:
    published = _json(result)
    assert published["http_status"] == 200, published
    webhook_answer(subprocess.CompletedProcess([], 0, json.dumps(published["answer"]), ""))


def captured(pattern: str) -> Check:
    """A `NAME=$(...)` command: the variable's value (printed after it) matches `pattern`."""

    def check(result: subprocess.CompletedProcess) -> None:
        assert re.fullmatch(pattern, result.stdout), f"captured {result.stdout!r}, expected /{pattern}/"

    return check


def figures(**expected: str) -> Check:
    """`make bench` lines `name = value unit`: each prefix names some figure; exact values where given."""

    def check(result: subprocess.CompletedProcess) -> None:
        found = dict(re.findall(r"^(\S+) = (\S+)", result.stdout, re.M))
        for name, value in expected.items():
            if value:
                assert found.get(name) == value, f"{name} = {found.get(name)!r}, expected {value!r}\n{result.stdout}"
            else:
                assert any(key.startswith(name) for key in found), f"no figure {name}*:\n{result.stdout}"

    return check


def demo_report(path: str) -> Check:
    def check(result: subprocess.CompletedProcess) -> None:
        report = json.loads((PROJECT_ROOT / path).read_text(encoding="utf-8"))
        assert report["dag_run_state"] == "success", report["dag_run_state"]
        assert report["healthy"] is True
        assert report["incident_id"].startswith("INC-") and report["postmortem"], report

    return check


def pending_postmortem(incident_id: str) -> Check:
    """`reminders --json`: the incident's postmortem is in `pending`."""

    def check(result: subprocess.CompletedProcess) -> None:
        pending = [row["incident_id"] for row in _json(result)["pending"]]
        assert incident_id in pending, pending

    return check


def ok(result: subprocess.CompletedProcess) -> None:
    """The exit status says it all."""


@dataclass(frozen=True)
class Run:
    stage: str
    check: Check = ok
    status: int = 0
    timeout: float = 60
    prepare: Callable[[], None] | None = None


STAGES = ("cli", "sandbox", "sandbox-start", "demo", "demo-start", "process", "slow")
CLI = ".venv/bin/incident-ops"
PUBLISH_TO_DEMO = (
    "curl -s -X POST http://127.0.0.1:5056/_sandbox/sns/publish -H 'content-type: application/json' -d "
    "'{\"endpoint\": \"http://127.0.0.1:8080/incidents/webhooks/sns\", "
    "\"alarm\": {\"AlarmName\": \"peoplebooster-production-alb-5xx\"}}'"
)
ALERT_TO_DEMO = (
    "curl -s -X POST http://127.0.0.1:8080/incidents/webhooks/alert -H 'Content-Type: application/json' "
    "-H \"X-Incident-Timestamp: $ts\" -H \"X-Incident-Signature: sha256=$sig\" -d \"$body\""
)
TOKEN_FROM_DEMO = (
    "TOKEN=$(curl -s -X POST http://127.0.0.1:8080/auth/token -H 'Content-Type: application/json' "
    "-d \"{\\\"username\\\": \\\"admin\\\", \\\"password\\\": \\\"$PASSWORD\\\"}\" | jq -r .access_token)"
)
TRIGGER_ON_DEMO = (
    "curl -s -X POST http://127.0.0.1:8080/api/v2/dags/incident_response/dagRuns "
    "-H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' "
    "-d '{\"logical_date\": null, \"conf\": {\"symptom\": \"ログインできない\", \"severity\": \"auto\", "
    "\"service\": \"backend\", \"environment\": \"production\", \"reporter\": \"monitoring\", "
    "\"alarm\": {\"AlarmName\": \"peoplebooster-production-health-check-failed\", \"NewStateValue\": \"ALARM\"}}}'"
)
BAD_TRIGGER_ON_DEMO = (
    "curl -s -o /dev/null -w '%{http_code}\\n' -X POST http://127.0.0.1:8080/api/v2/dags/incident_response/dagRuns "
    "-H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' "
    "-d '{\"logical_date\": null, \"conf\": {\"symptom\": \"ログインできない\", \"severity\": \"P9\"}}'"
)
FAULTS = "curl -s -X POST $SANDBOX/_sandbox/faults -H 'content-type: application/json' -d "


def _remove(path: str) -> Callable[[], None]:
    return lambda: (PROJECT_ROOT / path).unlink(missing_ok=True)


RUN: dict[str, Run] = {
    # README.md: the three commands and the other targets
    "make demo": Run("demo-start"),
    "make check": Run("slow", timeout=900),
    "make demo-once SCENARIO=deploy REPORT=state/deploy-report.json": Run(
        "slow", demo_report("state/deploy-report.json"), timeout=780, prepare=_remove("state/deploy-report.json")
    ),
    'make bench BENCH="cli_startup parse economy fanout"': Run(
        "slow",
        figures(cli_startup_severity="", parse_forbidden_attempts="0", economy_get_metric_data_2svc_x_6metrics="1",
                fanout_20svc_get_metric_data="1"),
        timeout=600,
    ),
    "make lint": Run("process", timeout=300),
    # the command line (README.md, docs/operations.md, docs/runbook-file.md)
    f'{CLI} severity "ログインできない"': Run("cli", prints("P1 Critical", "login_failure")),
    f"{CLI} route --severity P1 --at 2026-11-28T03:00:00+09:00": Run("cli", prints("oncall via pagerduty", "cto via phone")),
    f"{CLI} oncall --at 2026-11-28T03:00:00+09:00": Run("cli", prints("off_hours", "rotation engineer")),
    f"{CLI} validate include/runbook/peoplebooster.yaml": Run("cli", prints("valid (PeopleBooster)")),
    f"{CLI} validate": Run("cli", prints("valid (PeopleBooster)")),
    f"{CLI} validate include/runbook/peoplebooster.yaml --json": Run(
        "cli", json_with("runbook", "severities", "symptoms", "scenarios", "environments", valid=True)
    ),
    f'{CLI} severity "ログインできない" --json': Run(
        "cli", json_with("rule", "label", "impact", "candidates", severity="P1", symptom="login_failure", source="symptom")
    ),
    f"{CLI} severity --alarm peoplebooster-production-alb-5xx --json": Run(
        "cli", json_with("rule", severity="P2", symptom="error_rate_high", source="alarm", service="backend")
    ),
    f"{CLI} route --severity P2 --at 2026-11-23T10:00:00+09:00 --json": Run(
        "cli", json_with("notifications", severity="P2", at="2026-11-23T10:00:00+09:00", unacknowledged=False)
    ),
    f"{CLI} route --severity P1 --at 2026-11-28T03:00:00+09:00 --unacknowledged": Run(
        "cli", prints("P1 (unacknowledged)", "cto via phone")
    ),
    f"{CLI} oncall --at 2026-11-28T03:00:00+09:00 --json": Run(
        "cli", json_with("on_call", "rotation_engineer", "until", "next_handoffs", mode="off_hours")
    ),
    f"{CLI} handoff --at 2026-11-02T10:00:00+09:00 --json": Run(
        "cli", json_with("on_call", "rotation_engineer", "outgoing", "incoming", "text", "next_slot", kind="handoff")
    ),
    f"{CLI} handoff --at 2026-11-23T09:00:00+09:00": Run("cli", prints("none", "勤労感謝の日")),
    f"{CLI} reminders --at 2026-11-22T23:00:00+09:00 --json": Run(
        "cli",
        both(json_with("at", "due", "pending"), pending_postmortem(DOCUMENTED_INCIDENT)),
    ),
    f"{CLI} postmortem-done {DOCUMENTED_INCIDENT} --path docs/pm.md": Run("cli", prints(DOCUMENTED_INCIDENT, "marked done")),
    f"{CLI} ledger status": Run("cli", prints("up to date")),
    f"{CLI} ledger upgrade --json": Run("cli", json_with("url", "from", "to", "head", stamped=False, state="current")),
    'PYTHONPATH=plugins .venv/bin/python -m incident_ops severity "ログインできない"': Run("cli", prints("P1 Critical")),
    "INCIDENT_OPS_RUNBOOK=include/runbook/peoplebooster.yaml "
    f"{CLI} route --severity P4 --at 2026-11-28T03:00:00+09:00": Run("cli", prints("dev_team via slack", "next business day")),
    # docs/operations.md: the sandbox, the break-glass playbook against it, the fault switches
    "PYTHONPATH=plugins:include .venv/bin/python -m sandbox --state-dir state/sandbox": Run("sandbox-start"),
    "curl -s -X POST http://127.0.0.1:5056/_sandbox/break/deploy": Run("sandbox", json_with("health", scenario="deploy")),
    f"{CLI} playbook deploy --env production --check --json": Run(
        "sandbox", playbook_report(check_mode=True, ok=True, first_step_changed=True)
    ),
    f"{CLI} playbook deploy --env production": Run("sandbox", prints("playbook deploy on production (apply): ok")),
    "curl -s -X POST http://127.0.0.1:5056/_sandbox/break/database": Run("sandbox", json_with("health", scenario="database")),
    f"{CLI} playbook database --env production --json": Run("sandbox", playbook_report(check_mode=False, ok=False), status=1),
    f"{CLI} playbook database --env production --confirm --json": Run(
        "sandbox", playbook_report(check_mode=False, ok=True, first_step_changed=True)
    ),
    FAULTS + "'{\"slack\": 429, \"slack_count\": 3}'": Run("sandbox", json_with(slack=429, slack_count=3)),
    FAULTS + "'{\"pagerduty\": 503, \"slack\": 500}'": Run("sandbox", json_with(pagerduty=503, slack=500)),
    FAULTS + "'{\"health_delay\": 30}'": Run("sandbox", json_with(health_delay=30)),
    FAULTS + "'{\"github_delay\": 60}'": Run("sandbox", json_with(github_delay=60)),
    "curl -s -X POST $SANDBOX/_sandbox/reset": Run("sandbox", json_with("aws", healthy=True)),
    # docs/alarm-intake.md (and docs/production.md's break): against make demo
    "curl -X POST http://127.0.0.1:5056/_sandbox/break/deploy": Run("demo", json_with("health", scenario="deploy")),
    PUBLISH_TO_DEMO: Run("demo", sns_published),
    "ts=$(date +%s)": Run("demo", captured(r"\d{10}")),
    "sig=$(printf '%s.%s' \"$ts\" \"$body\" | openssl dgst -sha256 -hmac \"$SECRET\" -hex | sed 's/^.* //')": Run(
        "demo", captured(r"[0-9a-f]{64}")
    ),
    ALERT_TO_DEMO: Run("demo", webhook_answer),
    "PASSWORD=$(cat state/demo/admin-password)": Run("demo", captured(r"\S{8,}")),
    TOKEN_FROM_DEMO: Run("demo", captured(r"(?!null$)\S{20,}")),
    TRIGGER_ON_DEMO: Run("demo", json_with("dag_run_id", "state", dag_id="incident_response")),
    BAD_TRIGGER_ON_DEMO: Run("demo", prints("400")),
    # docs/testing.md
    ".venv/bin/python -m pytest -q tests/core/test_triage.py": Run("process", prints("passed"), timeout=300),
}

EXEMPT: dict[str, str] = {
    "make test": "the whole suite: this test is part of it",
    "make lock": "re-resolves requirements.lock from the package index and rewrites it",
    "make bench": "every benchmark, 10–20 minutes with a live stack; the subset with BENCH=… runs (slow tier)",
    "BENCH_INCIDENTS=5 BENCH_SCENARIOS=deploy make bench BENCH=live": (
        "a whole stack for several minutes; tests/e2e runs the same LocalStack and run_incident for every scenario"
    ),
    "cp .env.example .env": "would overwrite the working tree's .env; the first step of the Docker walk-through",
    "docker compose build": "no Docker engine here; tests/production/test_compose.py checks the compose file and Dockerfile",
    "docker compose --profile sandbox up": (
        "no Docker engine here; tests/production/test_compose.py checks the compose file, the Dockerfile and .env.example"
    ),
    "curl -X POST http://127.0.0.1:5056/_sandbox/sns/publish -H 'content-type: application/json' -d "
    "'{\"endpoint\": \"http://airflow-apiserver:8080/incidents/webhooks/sns\", "
    "\"alarm\": {\"AlarmName\": \"peoplebooster-production-alb-5xx\"}}'": (
        "airflow-apiserver exists only inside compose's network (no Docker engine here); the same publish to "
        "make demo's API server runs"
    ),
    ".venv/bin/python scripts/distributed.py --scenario deploy": (
        "needs PostgreSQL and Redis for about 3 minutes; tests/production/test_distributed.py runs the same "
        "DistributedStack and run_incident in make test"
    ),
}


# --- running a command as written ----------------------------------------------------------------------


def clean_environment(**extra: str) -> dict[str, str]:
    """The test's environment without what would decide for the page (AWS, GitHub, connections, the
    runbook, pytest's own), plus `extra`."""
    dropped = ("AWS_", "GITHUB_", "AIRFLOW_CONN_", "PYTEST_", "INCIDENT_OPS_RUNBOOK", "INCIDENT_OPS_LEDGER_URL")
    env = {key: value for key, value in os.environ.items() if not key.startswith(dropped)}
    return {**env, **extra}


def run(command: Command, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """`command` exactly as the page shows it, after its block's settings, with bash from the project root."""
    script = ["set -eo pipefail", *command.setup, command.text]
    if command.capture:
        script.append(f'printf "%s" "${command.capture}"')
    return subprocess.run(["bash", "-c", "\n".join(script)], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def run_and_check(command: Command, env: dict[str, str]) -> None:
    spec = RUN[command.text]
    if spec.prepare is not None:
        spec.prepare()
    result = run(command, env, spec.timeout)
    assert result.returncode == spec.status, (
        f"{command.source}: `{command.text}` exited {result.returncode}, expected {spec.status}\n"
        f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
    )
    spec.check(result)


def commands_in(stage: str) -> list[Any]:
    """The documented commands of a stage, in page order, as pytest params (id = page:line). A command
    shown on several pages runs once, as its first page shows it (the text is the same)."""
    params, seen = [], set()
    for command in PAGES.commands:
        spec = RUN.get(command.text)
        if spec is None or spec.stage != stage or command.text in seen:
            continue
        seen.add(command.text)
        # pytest-timeout counts fixture setup: the first demo test pays for make demo's start and incident.
        allowance = 900 if stage == "demo" else 120
        params.append(pytest.param(command, id=command.source, marks=pytest.mark.timeout(spec.timeout + allowance)))
    return params


def start_command(stage: str) -> Command:
    found = {command.text: command for command in PAGES.commands if RUN.get(command.text, Run("")).stage == stage}
    assert len(found) == 1, f"expected one documented {stage} command, found {sorted(found)}"
    return next(iter(found.values()))


def busy(*ports: int) -> list[int]:
    taken = []
    for port in ports:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                taken.append(port)
    return taken


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def require_free(*ports: int) -> None:
    taken = busy(*ports)
    if taken:
        pytest.fail(f"ports {taken} are in use (a `make demo` or a sandbox running?): the documented commands use "
                    f"fixed ports; stop it and run again")


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"{what}: the process ended with {process.returncode}\n{output[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.5)


def stop_group(process: subprocess.Popen, sig: int, timeout: float) -> str:
    """Signal the process group as a terminal's Ctrl-C would; its remaining output."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
    try:
        rest, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        rest, _ = process.communicate()
        raise AssertionError(f"did not stop within {timeout:.0f} s after {signal.Signals(sig).name}:\n{rest[-3000:]}") from None
    return rest or ""


# --- the meta-tests (make check runs them) --------------------------------------------------------------


def test_the_pages_have_shell_commands() -> None:
    pages = {command.source.split(":")[0] for command in PAGES.commands}
    assert {"README.md", "docs/operations.md", "docs/alarm-intake.md", "docs/runbook-file.md"} <= pages, pages


def test_every_code_block_has_a_known_language_and_closed_lines() -> None:
    assert not PAGES.problems, "\n".join(PAGES.problems)


def test_every_documented_command_is_run_or_exempt() -> None:
    missing = [f"{command.source}: {command.text}" for command in PAGES.commands
               if command.text not in RUN and command.text not in EXEMPT]
    assert not missing, (
        "documented commands that no test runs and no exemption covers (add each to RUN in "
        f"{Path(__file__).relative_to(PROJECT_ROOT)} with its check, or to EXEMPT with the reason):\n  "
        + "\n  ".join(missing)
    )


def test_no_entry_is_stale() -> None:
    documented = {command.text for command in PAGES.commands}
    stale = sorted((set(RUN) | set(EXEMPT)) - documented)
    assert not stale, "entries that no page shows (the page changed the command?):\n  " + "\n  ".join(stale)


def test_no_command_is_both_run_and_exempt_and_every_stage_is_known() -> None:
    assert not set(RUN) & set(EXEMPT)
    assert {spec.stage for spec in RUN.values()} <= set(STAGES)
    assert all(reason.strip() for reason in EXEMPT.values())


def test_every_block_with_an_exempt_command_says_so() -> None:
    unsaid = []
    for block in PAGES.blocks:
        sources = {command.source for command in PAGES.commands if command.text in EXEMPT}
        lines = range(block.line, block.line + len(block.lines) + 1)
        exempt_here = [source for source in sources if source.split(":")[0] == block.path
                       and int(source.split(":")[1]) in lines]
        if exempt_here and EXEMPT_NOTE not in block.after.lower():
            unsaid.append(f"{block.path}:{block.line} (exempt: {', '.join(sorted(exempt_here))})")
    assert not unsaid, f"blocks with exempt commands need a note after them saying {EXEMPT_NOTE!r}:\n  " + "\n  ".join(unsaid)


def test_the_reader_joins_continuations_and_drops_comments() -> None:
    block = Block("x.md", 1, "bash", (
        "SANDBOX=http://127.0.0.1:5056",
        "# a comment line",
        "curl -s $SANDBOX/a \\",
        "     -d '{\"a\": \"# not a comment\"}'   # a comment",
        "TOKEN=$(echo t)",
        "echo \"$TOKEN\"",
    ), "")
    problems: list[str] = []
    assert list(logical_lines(block, problems)) == [
        (2, "SANDBOX=http://127.0.0.1:5056"),
        (4, "curl -s $SANDBOX/a -d '{\"a\": \"# not a comment\"}'"),
        (6, "TOKEN=$(echo t)"),
        (7, "echo \"$TOKEN\""),
    ]
    assert problems == []
    assert is_setting("export A=1 B='two words'") and not is_setting("A=1 make x") and not is_setting("A=$(date)")
    broken = Block("x.md", 1, "bash", ("echo 'open",), "")
    list(logical_lines(broken, problems))
    assert problems and "spans lines" in problems[0]


# --- the commands, as written -------------------------------------------------------------------------------


@pytest.fixture
def ledger_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A temporary ledger with the page's recovered P1 (INC-20261120-a1b2c3), for the CLI examples."""
    from incident_ops.core import ledger as ledger_module

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setattr(ledger_module, "new_incident_id", lambda detected_at: DOCUMENTED_INCIDENT)
    ledger = ledger_module.Ledger(url)
    detected = dt.datetime(2026, 11, 20, 20, 30, tzinfo=JST)
    ledger.open_or_join(fingerprint="production:backend:login_failure", severity="P1", symptom="ログインできない",
                        title="ログインできない", service="backend", environment="production", reporter="tests/docs",
                        at=detected)
    ledger.mark_recovered(DOCUMENTED_INCIDENT, detected + dt.timedelta(hours=2))
    ledger.dispose()
    return clean_environment(INCIDENT_OPS_LEDGER_URL=url)


@pytest.mark.process
@pytest.mark.parametrize("command", commands_in("cli"))
def test_incident_ops_command(command: Command, ledger_env: dict[str, str]) -> None:
    run_and_check(command, ledger_env)


@pytest.mark.process
@pytest.mark.parametrize("command", commands_in("process"))
def test_command_on_its_own(command: Command) -> None:
    run_and_check(command, clean_environment())


@pytest.fixture(scope="class")  # stopped after its class: make demo needs the ports
def sandbox_process() -> Iterator[None]:
    """The sandbox started with the page's command (`sandbox-start`) until its class is done; then
    stopped with Ctrl-C (SIGINT), as a person would, and its printed endpoints checked."""
    command = start_command("sandbox-start")
    require_free(*SANDBOX_PORTS)
    process = subprocess.Popen(["bash", "-c", command.text], cwd=PROJECT_ROOT, env=clean_environment(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_for(lambda: answers("http://127.0.0.1:5056/_sandbox/faults"), 120,
                 f"{command.source}: the sandbox's control page", process)
        yield
    finally:
        output = stop_group(process, signal.SIGINT, 60)
    endpoints, _ = json.JSONDecoder().raw_decode(output.lstrip())  # printed at start
    assert endpoints["aws"] == "http://127.0.0.1:5055" and endpoints["http"] == "http://127.0.0.1:5056", endpoints
    assert "sandbox stopped" in output


@pytest.mark.process
class TestAgainstTheSandbox:
    """The documented sandbox command, on its documented ports, and the commands that use it."""

    @pytest.mark.parametrize("command", commands_in("sandbox"))
    def test_command(self, command: Command, sandbox_process: None) -> None:
        run_and_check(command, clean_environment())


@pytest.mark.slow
@pytest.mark.parametrize("command", commands_in("slow"))
def test_slow_command(command: Command) -> None:
    if "demo" in command.text:
        require_free(AIRFLOW_PORT, *SANDBOX_PORTS)
    run_and_check(command, clean_environment())


@pytest.fixture(scope="class")
def demo() -> Iterator[None]:
    """`make demo` as the README shows it, until it says everything keeps running (its own incident
    done); then Ctrl-C (SIGINT to its process group), which must leave no process and free the ports."""
    command = start_command("demo-start")
    require_free(AIRFLOW_PORT, *SANDBOX_PORTS)
    process = subprocess.Popen(["bash", "-c", command.text], cwd=PROJECT_ROOT, env=clean_environment(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 720
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C stops it all" in line:
                break
        text = "".join(lines)
        assert "Ctrl-C stops it all" in text, f"{command.source}: make demo did not get ready:\n{text[-5000:]}"
        assert f"http://127.0.0.1:{AIRFLOW_PORT}" in text and "incident" in text, text[-5000:]
        yield
    finally:
        rest = stop_group(process, signal.SIGINT, 180)
    assert "no process of the demo is left" in rest, rest[-3000:]
    assert busy(AIRFLOW_PORT, *SANDBOX_PORTS) == []


@pytest.mark.slow
class TestAgainstTheDemo:
    """`make demo` as documented (until Ctrl-C), and the webhook and REST examples against it."""

    @pytest.mark.parametrize("command", commands_in("demo"))
    def test_command(self, command: Command, demo: None) -> None:
        run_and_check(command, clean_environment())
