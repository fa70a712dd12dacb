"""docker-compose.yaml, Dockerfile and .env.example against each other, requirements.txt and the design.

No Docker engine here, so the file is checked the way Compose reads it: PyYAML resolves the anchors
and merge keys, the ${...} are interpolated from .env.example (Compose's rules: `:-` default, `:?`
required, `$$` a literal `$`), then the result is checked for what the design needs: every service,
CeleryExecutor everywhere, broker/result backend/metadata/ledger URLs on the compose services,
dags/plugins and the runtime's parts of include/ mounted (never include/sandbox), healthchecks, depends_on conditions on real services, the image's
Airflow version and providers equal to requirements.txt, no secret in the files. The Dockerfile is
read stage by stage (FROM ... AS name, COPY): the default image (the last stage) and its ancestors hold
nothing of the sandbox, which only the compose `sandbox` service builds. When the
`compose-spec` package is installed (a Rust implementation of the Compose Specification), the
interpolated file must also pass its schema-aware parser.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy.engine import make_url

from scripts.incident_runner import sandbox_connections, sandbox_webhook_env

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"

# service -> the Airflow command it runs (None: not an Airflow component)
AIRFLOW_COMMANDS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery worker",
}
ONE_SHOT = {"airflow-init", "airflow-cli"}
REQUIRED_SERVICES = {"postgres", "redis", "airflow-init", *AIRFLOW_COMMANDS}
PROFILE_SERVICES = {"flower": ["flower"], "sandbox": ["sandbox"], "airflow-cli": ["debug"]}
MOUNTS = {"dags": "/opt/airflow/dags", "plugins": "/opt/airflow/plugins",
          "include/runbook": "/opt/airflow/include/runbook", "include/templates": "/opt/airflow/include/templates",
          "include/iam": "/opt/airflow/include/iam"}
# What the runtime reads from include/ (plugins/incident_ops/core/runbook.py and core/messages.py) and
# the IAM policy document: the only parts of include/ in the production image.
RUNTIME_INCLUDE = {"include/runbook", "include/templates", "include/iam"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
# Providers the official (non-slim) apache/airflow image ships; used here only where named.
BASE_IMAGE_PROVIDERS = {"fab"}

_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


# --- reading the files as Compose does ------------------------------------------------------------


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a Compose .env file (comments and blank lines skipped, one level of quotes)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), f"{path.name}:{number}: not KEY=VALUE: {raw!r}"
        assert key not in values, f"{path.name}:{number}: {key} is set twice"
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def interpolate(text: str, env: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        op, arg = match.group(2), match.group(3)
        value = env.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":-", "-"):
            return arg if unset else value
        if op in (":?", "?"):
            if unset:
                raise KeyError(f"required variable {name} is not set: {arg}")
            return value
        return value or ""

    return _VARIABLE.sub(replace, text)


def required_variables(text: str) -> set[str]:
    return {m.group(1) for m in _VARIABLE.finditer(text) if m.group(2) in (":?", "?")}


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def compose(env_example: dict[str, str]) -> dict[str, Any]:
    data = yaml.safe_load(interpolate(COMPOSE.read_text(encoding="utf-8"), env_example))
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def airflow_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every service built from the project's runtime image (the x-airflow-common anchor)."""
    return {name: svc for name, svc in services.items() if (svc.get("build") or {}).get("target") == "runtime"}


def command_text(svc: dict[str, Any]) -> str:
    command = svc.get("command")
    return " ".join(command) if isinstance(command, list) else str(command or "")


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;#]+)", line.strip())
        if match:
            found[match.group(1).lower().replace("_", "-")] = match.group(2)
    return found


def dockerfile_instructions(text: str) -> list[tuple[str, list[str]]]:
    """(INSTRUCTION, arguments) of a Dockerfile: comments dropped, `\\` continuations joined."""
    instructions: list[tuple[str, list[str]]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        words = (pending + line).split()
        pending = ""
        if words:
            instructions.append((words[0].upper(), words[1:]))
    return instructions


def dockerfile_stages() -> dict[str, dict[str, Any]]:
    """stage name -> {"from": image or stage, "text": the stage's lines, "copies": [(sources, dest, from)]},
    in the file's order (the last one is what `docker build .` builds)."""
    stages: dict[str, dict[str, Any]] = {}
    current = None
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line.strip(), re.IGNORECASE)
        if match:
            current = match.group(2) or f"stage{len(stages)}"
            stages[current] = {"from": match.group(1), "text": "", "copies": []}
        elif current:
            stages[current]["text"] += line + "\n"
    for name, stage in stages.items():
        for instruction, args in dockerfile_instructions(stage["text"]):
            if instruction in ("COPY", "ADD"):
                flags = [a for a in args if a.startswith("--")]
                paths = [a for a in args if not a.startswith("--")]
                source_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
                assert len(paths) >= 2 and not paths[0].startswith("["), f"{name}: COPY {args}: use the plain form"
                stage["copies"].append((paths[:-1], paths[-1], source_stage))
    return stages


def stage_chain(stages: dict[str, dict[str, Any]], name: str) -> list[str]:
    """`name` and the stages it is built FROM (and COPY --from), nearest first."""
    chain, todo = [], [name]
    while todo:
        current = todo.pop(0)
        if current in chain or current not in stages:
            continue
        chain.append(current)
        todo.append(stages[current]["from"])
        todo.extend(source for _, _, source in stages[current]["copies"] if source)
    return chain


def base_image(stages: dict[str, dict[str, Any]], name: str) -> str:
    """The external image at the root of stage `name`."""
    while stages[name]["from"] in stages:
        name = stages[name]["from"]
    return stages[name]["from"]


def copied_paths(stage: dict[str, Any]) -> list[str]:
    """The build-context paths a stage copies (normalised: no ./, no trailing /; "." is the whole context)."""
    return [source.removeprefix("./").rstrip("/") or "." for sources, _, origin in stage["copies"] if origin is None
            for source in sources]


def brings_in(source: str, path: str) -> bool:
    """Whether copying `source` of the build context brings `path` (or part of it) along."""
    source = source.rstrip("/")
    return source in (".", "*") or path == source or path.startswith(source + "/") or source.startswith(path + "/") \
        or ("*" in source and path.startswith(source.split("*", 1)[0].rstrip("/")))


# --- the tests ------------------------------------------------------------------------------------


def test_compose_parses_and_has_every_service_of_the_design(services: dict[str, dict[str, Any]]) -> None:
    assert REQUIRED_SERVICES <= set(services), REQUIRED_SERVICES - set(services)
    for name, profiles in PROFILE_SERVICES.items():
        assert services[name].get("profiles") == profiles, name
    for name in REQUIRED_SERVICES:
        assert "profiles" not in services[name], f"{name} must run without a profile"
    for name, command in AIRFLOW_COMMANDS.items():
        assert command_text(services[name]) == command, name
    assert command_text(services["flower"]) == "celery flower"
    assert command_text(services["sandbox"]).startswith("python -m sandbox")


def test_every_airflow_service_runs_the_project_image_with_celery_and_the_same_settings(
    services: dict[str, dict[str, Any]],
) -> None:
    airflow = airflow_services(services)
    assert set(AIRFLOW_COMMANDS) | ONE_SHOT | {"flower"} == set(airflow)
    images = {svc["image"] for svc in airflow.values()}
    assert len(images) == 1, images
    for name, svc in airflow.items():
        env = svc["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert "SimpleAuthManager" not in env["AIRFLOW__CORE__AUTH_MANAGER"], name
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false"
        assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "false", "alarms must start runs at once"
        assert any(f.get("path") == ".env" for f in svc.get("env_file", [])), f"{name}: connections come from .env"
    first = next(iter(airflow.values()))["environment"]
    shared = ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CELERY__RESULT_BACKEND",
              "AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "INCIDENT_OPS_LEDGER_URL", "AIRFLOW__CORE__AUTH_MANAGER")
    for name, svc in airflow.items():
        assert {k: svc["environment"][k] for k in shared} == {k: first[k] for k in shared}, name


def test_urls_point_at_the_compose_services(services: dict[str, dict[str, Any]]) -> None:
    env = services["airflow-scheduler"]["environment"]
    metadata = make_url(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert (metadata.get_backend_name(), metadata.host, metadata.port) == ("postgresql", "postgres", 5432)
    postgres = services["postgres"]["environment"]
    assert (metadata.username, metadata.password, metadata.database) == (
        postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"])

    result = env["AIRFLOW__CELERY__RESULT_BACKEND"]
    assert result.startswith("db+") and make_url(result.removeprefix("db+")) == metadata

    broker = urlsplit(env["AIRFLOW__CELERY__BROKER_URL"])
    assert (broker.scheme, broker.hostname, broker.port) == ("redis", "redis", 6379)
    assert "6379" in [str(p) for p in services["redis"].get("expose", [])]

    ledger = make_url(env["INCIDENT_OPS_LEDGER_URL"])
    assert (ledger.get_backend_name(), ledger.host, ledger.port) == ("postgresql", "postgres", 5432)
    assert ledger.database != metadata.database, "the ledger has its own database"
    assert ledger.username != metadata.username, "and its own role"

    execution = urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert (execution.hostname, execution.path) == ("airflow-apiserver", "/execution/")
    published = [str(p).rsplit(":", 1)[-1] for p in services["airflow-apiserver"]["ports"]]
    assert str(execution.port) in published


def test_every_airflow_service_mounts_dags_plugins_and_the_runtimes_include(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in airflow_services(services).items():
        mounts = {}
        for volume in svc["volumes"]:
            source, target, *mode = str(volume).split(":")
            mounts[target] = (source, mode)
        for folder, target in MOUNTS.items():
            assert target in mounts, f"{name} does not mount {folder}/"
            source, mode = mounts[target]
            assert (COMPOSE.parent / source).resolve() == ROOT / folder, (name, source)
            assert mode == ["ro"], f"{name}: {folder}/ is mounted read-only"
        assert "/opt/airflow/state" in mounts, f"{name}: postmortems and the sandbox CA live on the shared volume"
        for target, (source, _) in mounts.items():
            if source.startswith((".", "/")):
                relative = (COMPOSE.parent / source).resolve().relative_to(ROOT).as_posix()
                assert not brings_in(relative, "include/sandbox"), f"{name} mounts {source}: the sandbox is not for production"
                assert not target.startswith("/opt/airflow/include/sandbox"), name
    sandbox_mounts = [str(v).split(":")[1] for v in services["sandbox"]["volumes"]]
    assert {"/opt/airflow/plugins", "/opt/airflow/include", "/opt/airflow/state"} <= set(sandbox_mounts)


def test_healthchecks_and_depends_on_conditions(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        if name in ONE_SHOT:
            assert "healthcheck" not in svc and svc.get("restart") in (None, "no"), name
            continue
        check = svc.get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert svc.get("restart") == "always", name
    for name, svc in services.items():
        depends = svc.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on must use conditions"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on {target}, which is not a service"
            assert target != name
            condition = spec.get("condition")
            assert condition in CONDITIONS, (name, target, condition)
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target} to be healthy: it has no check"
            if condition == "service_completed_successfully":
                assert target in ONE_SHOT, (name, target)
            if not svc.get("profiles"):  # a service that always runs cannot wait for an optional one
                assert not services[target].get("profiles"), f"{name} depends on profile-only {target}"
    for name in [*AIRFLOW_COMMANDS, "flower"]:
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == depends["redis"]["condition"] == "service_healthy", name
        assert depends["airflow-init"]["condition"] == "service_completed_successfully", name
    assert services["airflow-worker"]["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"
    declared = set(compose.get("volumes") or {})
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = str(volume).split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} uses undeclared volume {source}"


@pytest.mark.process  # bash -n
def test_airflow_init_script_is_valid_bash_and_python(services: dict[str, dict[str, Any]]) -> None:
    init = services["airflow-init"]
    assert init["entrypoint"] == "/bin/bash" and init["command"][0] == "-c"
    script = init["command"][1]
    result = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    python = re.search(r"<<'PY'\n(.*?)\nPY\n", script, re.S)
    assert python, "the ledger step is a python heredoc"
    compile(python.group(1), "airflow-init ledger step", "exec")
    assert "CREATE DATABASE" in python.group(1) and "INCIDENT_OPS_LEDGER_URL" in python.group(1)
    assert init["environment"]["_AIRFLOW_DB_MIGRATE"] == "true"
    # The ledger's migrations, after its database exists and before any service opens it.
    assert script.index("CREATE DATABASE") < script.index("python -m incident_ops ledger upgrade")


def test_workers_scale_and_only_the_api_server_is_published(services: dict[str, dict[str, Any]]) -> None:
    worker = services["airflow-worker"]
    assert "container_name" not in worker and "ports" not in worker, "--scale needs neither"
    assert worker["environment"]["DUMB_INIT_SETSID"] == "0"  # warm shutdown of Celery
    for name, svc in services.items():
        if svc.get("ports") and not svc.get("profiles"):
            assert name == "airflow-apiserver", f"{name} publishes a port"
    assert all(str(p).startswith("127.0.0.1:") for p in services["sandbox"]["ports"])


def test_image_airflow_version_python_and_providers_match_requirements(services: dict[str, dict[str, Any]]) -> None:
    requirements = pins(ROOT / "requirements.txt")
    locked = pins(ROOT / "requirements.lock")
    stages = dockerfile_stages()
    assert list(stages) == ["base", "sandbox", "runtime"], list(stages)
    image, tag = base_image(stages, "runtime").split(":")
    assert image == "apache/airflow"
    match = re.fullmatch(r"(\d+\.\d+\.\d+)-python(\d+\.\d+)", tag)
    assert match, f"FROM tag {tag!r}: want <airflow version>-python<version>"
    assert match.group(1) == requirements["apache-airflow"], "the FROM tag is the apache-airflow pin"
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert f'requires-python = ">={match.group(2)}' in pyproject
    assert stages["sandbox"]["from"] == stages["runtime"]["from"] == "base", "both are the base plus their part"
    assert base_image(stages, "sandbox") == base_image(stages, "runtime")

    runtime = "".join(stages[name]["text"] for name in stage_chain(stages, "runtime"))
    assert re.search(r"-r /opt/incident-ops/requirements\.txt", runtime)
    assert re.search(r"-c /opt/incident-ops/requirements\.lock", runtime)
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in runtime
    # What the image installs is requirements.txt at the lock's versions: every pin agrees.
    for name, version in requirements.items():
        assert locked.get(name) == version, f"{name}: requirements.txt {version}, requirements.lock {locked.get(name)}"
    sandbox = stages["sandbox"]["text"]
    assert "requirements-test.txt" in sandbox and "moto" in sandbox and "trustme" in sandbox

    for svc in airflow_services(services).values():
        assert svc["image"].endswith(f":{requirements['apache-airflow']}"), svc["image"]
    assert services["sandbox"]["image"].endswith(f":{requirements['apache-airflow']}")
    assert services["sandbox"]["build"]["target"] == "sandbox"


def test_the_default_image_is_the_runtime_and_holds_no_sandbox() -> None:
    """`docker build .` builds the last stage: the production runtime, built from stages that copy
    only dags/, plugins/ and the runtime's part of include/ (no include/sandbox, no stand-ins)."""
    stages = dockerfile_stages()
    default = list(stages)[-1]
    assert default == "runtime", f"the last stage ({default}) is what a plain `docker build .` builds"
    chain = stage_chain(stages, default)
    assert "sandbox" not in chain, chain
    copied = [path for name in chain for path in copied_paths(stages[name])]
    assert {"dags", "plugins", *RUNTIME_INCLUDE} <= set(copied), copied
    for path in copied:
        assert not brings_in(path, "include/sandbox"), f"the production image copies {path}: it brings the sandbox"
        assert not path.startswith("requirements-test"), "the stand-ins' requirements are not for production"
    text = "".join(stages[name]["text"] for name in chain)
    assert not re.search(r"\b(moto|trustme)\b", text), "the stand-in packages are not for production"
    # the sandbox stage is the one that adds them
    sandbox_copies = copied_paths(stages["sandbox"])
    assert "include/sandbox" in sandbox_copies, sandbox_copies
    assert "sandbox" in stage_chain(stages, "sandbox") and default not in stage_chain(stages, "sandbox")
    # the build context does hold include/sandbox (the sandbox stage needs it)
    patterns = [line.strip().strip("/") for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.strip().startswith(("#", "!"))]
    for path in ("include", "include/sandbox", "include/sandbox/__main__.py"):
        assert not any(fnmatch.fnmatch(path, pattern) for pattern in patterns), f".dockerignore drops {path}"


def test_only_the_sandbox_service_builds_the_sandbox_target(services: dict[str, dict[str, Any]]) -> None:
    stages = dockerfile_stages()
    assert services["sandbox"]["build"]["target"] == "sandbox" and "sandbox" in stages
    assert services["sandbox"]["profiles"] == ["sandbox"]
    for name, svc in services.items():
        build = svc.get("build")
        if build is None or name == "sandbox":
            continue
        target = build.get("target", list(stages)[-1])
        assert target in stages, f"{name} builds unknown target {target}"
        assert "sandbox" not in stage_chain(stages, target), f"{name} builds {target}, which holds the sandbox"
        assert svc["image"] != services["sandbox"]["image"], f"{name} must not run the sandbox image"


def test_every_provider_the_configuration_names_is_installed(services: dict[str, dict[str, Any]]) -> None:
    """Class paths in the compose file and .env.example come from providers pinned in requirements.txt
    (the FAB auth manager may come with the official image, which ships it) and import here."""
    requirements = pins(ROOT / "requirements.txt")
    texts = COMPOSE.read_text(encoding="utf-8") + ENV_EXAMPLE.read_text(encoding="utf-8")
    paths = set(re.findall(r"airflow\.providers\.[a-z_]+(?:\.[A-Za-z_]+)+", texts))
    assert any(".celery." in p for p in paths) and any(".amazon." in p for p in paths), paths
    for path in sorted(paths):
        provider = path.split(".")[2]
        distribution = f"apache-airflow-providers-{provider.replace('_', '-')}"
        if distribution not in requirements:
            assert provider in BASE_IMAGE_PROVIDERS, f"{path}: {distribution} is not in requirements.txt"
            assert "slim" not in base_image(dockerfile_stages(), "runtime"), f"{distribution} is not in the slim image"
            continue
        module, _, attribute = path.rpartition(".")
        try:
            imported = __import__(module, fromlist=[attribute])
        except ImportError as exc:
            pytest.fail(f"{path} does not import with the locked packages: {exc}")
        assert hasattr(imported, attribute), path


def test_no_secret_in_the_committed_files(env_example: dict[str, str]) -> None:
    compose_text = COMPOSE.read_text(encoding="utf-8")
    # passwords inside URLs are always references to .env
    for password in re.findall(r"://[^:/\s@]+:([^@\s]+)@", compose_text):
        assert password.startswith("${"), password
    for key, value in re.findall(r"^\s*([A-Z_]*(?:PASSWORD|SECRET|FERNET_KEY|TOKEN))\s*:\s*(\S.*)$", compose_text, re.M):
        assert value.startswith("${"), f"{key} has a literal value in docker-compose.yaml"
    # every ${VAR:?} Compose requires has a (placeholder) value in .env.example
    missing = required_variables(compose_text) - set(env_example)
    assert not missing, missing
    for key in ("POSTGRES_PASSWORD", "INCIDENT_OPS_LEDGER_PASSWORD", "_AIRFLOW_WWW_USER_PASSWORD"):
        assert env_example[key].startswith("change-me"), f"{key} in .env.example must be a placeholder"
    # no fixed login anywhere in what runs (the demo generates its password per state folder)
    for path in [COMPOSE, DOCKERFILE, ENV_EXAMPLE, *sorted((ROOT / "scripts").glob("*.*"))]:
        assert "incident-demo" not in path.read_text(encoding="utf-8"), f"{path.name} holds the old fixed password"
    for key in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY"):
        assert key not in env_example, f"{key} must stay commented out in .env.example"
        assert f"# {key}=" in ENV_EXAMPLE.read_text(encoding="utf-8"), f".env.example documents {key}"
    dockerignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert ".env" in dockerignore and "!.env.example" in dockerignore


@pytest.mark.process  # git check-ignore
def test_git_ignores_the_env_file() -> None:
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT, capture_output=True)
    assert ignored.returncode == 0, ".env must be in .gitignore: it holds the secrets"


def test_the_secrets_manager_backend_is_documented_and_configurable(env_example: dict[str, str]) -> None:
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    backend = re.search(r"^# AIRFLOW__SECRETS__BACKEND=(\S+)$", text, re.M)
    assert backend and backend.group(1) == "airflow.providers.amazon.aws.secrets.secrets_manager.SecretsManagerBackend"
    kwargs = re.search(r"^# AIRFLOW__SECRETS__BACKEND_KWARGS='(.+)'$", text, re.M)
    assert kwargs and json.loads(kwargs.group(1))["connections_prefix"] == "airflow/connections"


def _sandbox_arguments(services: dict[str, dict[str, Any]]) -> dict[str, str]:
    command = services["sandbox"]["command"]
    assert command[:3] == ["python", "-m", "sandbox"]
    args = command[3:]
    assert len(args) % 2 == 0 and all(a.startswith("--") for a in args[::2]), args
    return dict(zip(args[::2], args[1::2], strict=True))


def test_the_sandbox_profile_points_airflow_at_the_sandbox(
    services: dict[str, dict[str, Any]], env_example: dict[str, str]
) -> None:
    """The .env.example sandbox block is what the runner gives Airflow for a sandbox at the compose
    service's address (the same function the demo and the tests use, so they cannot drift apart)."""
    args = _sandbox_arguments(services)
    host = args["--public-host"]
    assert host == "sandbox" and args["--host"] == "0.0.0.0"
    http, https = f"http://{host}:{args['--http-port']}", f"https://{host}:{args['--https-port']}"
    state = args["--state-dir"]
    endpoints = {
        "aws": f"http://{host}:{args['--aws-port']}", "http": http, "https": https,
        "ca_bundle": f"{state}/ca.pem", "region": "ap-northeast-1",
        "health_url": f"{http}/pb/health", "api_base_url": f"{http}/pb", "slack_api": f"{http}/slack/api/",
        "pagerduty": f"{https}/pagerduty", "github_api": f"{http}/github", "sentry": f"{http}/sentry",
        "external_status_url": f"{http}/status/api/v2/status.json",
    }
    topic = "arn:aws:sns:ap-northeast-1:123456789012:peoplebooster-production-alerts"
    expected = {**sandbox_connections(endpoints), **sandbox_webhook_env(endpoints, topic)}
    for key, value in expected.items():
        assert key in env_example, f".env.example's sandbox block lacks {key}"
        actual = env_example[key]
        if key.startswith("AIRFLOW_CONN_"):
            assert json.loads(actual) == json.loads(value), key
        else:
            assert actual == value, key
    assert env_example["COMPOSE_PROFILES"] == "sandbox"
    # the CA the connections name is on the volume the sandbox writes and Airflow reads
    assert state.startswith("/opt/airflow/state/")
    ports = services["sandbox"]["ports"]
    assert f"127.0.0.1:{args['--http-port']}:{args['--http-port']}" in ports


@pytest.mark.process  # python -m sandbox --help
def test_the_sandbox_accepts_the_options_the_compose_file_gives_it(services: dict[str, dict[str, Any]]) -> None:
    result = subprocess.run([sys.executable, "-m", "sandbox", "--help"], cwd=ROOT, capture_output=True, text=True,
                            env={"PYTHONPATH": f"{ROOT / 'plugins'}:{ROOT / 'include'}", "PATH": "/usr/bin:/bin"},
                            timeout=120)
    assert result.returncode == 0, result.stderr
    unknown = [option for option in _sandbox_arguments(services) if option not in result.stdout]
    assert not unknown, f"python -m sandbox does not accept {unknown} (it must listen beyond 127.0.0.1 in a container)"


def test_compose_spec_schema(env_example: dict[str, str]) -> None:
    compose_spec = pytest.importorskip(
        "compose_spec", reason="schema-aware check needs compose-spec (PyPI) in requirements-test.txt")
    data = yaml.safe_load(interpolate(COMPOSE.read_text(encoding="utf-8"), env_example))
    parsed = compose_spec.PyCompose.from_json(json.dumps(data))  # raises ValueError naming the bad key
    assert set(parsed.service_names()) == set(data["services"])
