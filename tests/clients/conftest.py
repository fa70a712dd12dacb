"""Local fakes that speak the real protocols: a Slack Web API and PagerDuty (Events v2 + REST, HTTPS).

Each fake keeps the state a test asserts on (channels, messages, files, events, incidents) and every
request it received (method, path, parameters/body). Faults are queued per Slack method or per
PagerDuty path (`fail(...)`), or switched on for everything (`down = True`).

tests/test_notify.py imports the fakes and the helpers from here.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

__all__ = [
    "FakePagerDuty",
    "FakeSlack",
    "Received",
    "SleepRecorder",
    "SmtpSink",
    "free_port",
    "running_https_server",
    "running_smtp_server",
    "write_ca_bundle",
    "patch_slack_sleeps",
]


@dataclass
class Received:
    method: str
    path: str
    params: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def _json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(payload), status=status, headers=headers or {}, content_type="application/json")


def _truthy(value: Any) -> bool:
    return value in (True, 1, "1", "true", "True")


class SleepRecorder:
    """Stands in for the `time` module in retry code: records the sleeps instead of sleeping."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def __call__(self, seconds: float) -> None:
        self.sleep(seconds)


def patch_slack_sleeps(monkeypatch: pytest.MonkeyPatch) -> SleepRecorder:
    """slack_sdk's retry handlers call time.sleep: record instead (the rate-limit one sleeps Retry-After)."""
    from slack_sdk.http_retry import builtin_handlers, handler

    recorder = SleepRecorder()
    monkeypatch.setattr(builtin_handlers, "time", recorder)
    monkeypatch.setattr(handler, "time", recorder)
    return recorder


# ------------------------------------------------------------------------------------------------
# Slack


class FakeSlack:
    """A Slack Web API: POST /api/<method> (form, multipart or JSON), answers {"ok": ...}."""

    def __init__(self, server: HTTPServer, bot_user_id: str = "UBOT00001") -> None:
        self.server = server
        self.bot_user_id = bot_user_id
        self.channels: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.files: dict[str, dict[str, Any]] = {}
        self.uploads: dict[str, bytes] = {}
        self.requests: list[Received] = []
        self.faults: dict[str, list[tuple[int, dict[str, str], Any, bool]]] = {}
        self.down = False
        self.page_size = 2  # small pages, so pagination is exercised
        self._ids = itertools.count(1)
        self._ts = itertools.count(1)
        server.expect_request(re.compile(r"^/.*")).respond_with_handler(self._handle)

    # -- test helpers ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return self.server.url_for("/api/")

    def fail(self, method: str, status: int, body: Any = None, headers: dict[str, str] | None = None,
             times: int = 1, *, after_acting: bool = False) -> None:
        """Answer the next `times` calls of `method` ("upload" for the upload URL) with `status` (and `body`);
        `after_acting`: carry the call out first (the answer is lost after Slack acted)."""
        for _ in range(times):
            self.faults.setdefault(method, []).append((status, headers or {}, body, after_acting))

    def add_channel(self, name: str, purpose: str = "", creator: str = "UOTHER001", archived: bool = False) -> str:
        channel_id = f"C{next(self._ids):08d}"
        self.channels[channel_id] = {
            "id": channel_id, "name": name, "name_normalized": name, "is_channel": True,
            "is_archived": archived, "creator": creator, "members": [creator],
            "purpose": {"value": purpose}, "topic": {"value": ""},
        }
        self.messages[channel_id] = []
        return channel_id

    def calls(self, method: str) -> list[Received]:
        return [r for r in self.requests if r.path == f"/api/{method}"]

    def channel_by_name(self, name: str) -> dict[str, Any]:
        return next(c for c in self.channels.values() if c["name"] == name)

    def all_messages(self, channel_id: str) -> list[dict[str, Any]]:
        return list(self.messages.get(channel_id, []))

    # -- protocol -------------------------------------------------------------------------------

    def _params(self, request: Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.args.to_dict())
        if request.is_json:
            params.update(request.get_json(silent=True) or {})
        else:
            params.update(request.form.to_dict())
        return params

    def _handle(self, request: Request) -> Response:
        params = self._params(request) if request.path.startswith("/api/") else {}
        body = request.get_data()
        self.requests.append(Received(request.method, request.path, params, dict(request.headers), body))
        if request.path.startswith("/upload/"):
            if self.faults.get("upload"):
                status, headers, _, _ = self.faults["upload"].pop(0)
                return Response("upload fault", status=status, headers=headers)
            file_id = request.path.rsplit("/", 1)[1]
            if file_id not in self.files:
                return Response("no such upload", status=404)
            self.uploads[file_id] = body
            return Response(f"OK - {len(body)}", status=200)
        method = request.path.removeprefix("/api/")
        if self.down:
            return Response("upstream connect error", status=500)
        queued = self.faults.get(method)
        if queued:
            status, headers, payload, after_acting = queued.pop(0)
            if after_acting:
                self._act(method, params)
            if payload is None:
                return Response("fault", status=status, headers=headers)
            return _json_response(payload, status, headers)
        if request.headers.get("Authorization") != "Bearer xoxb-test":
            return _json_response({"ok": False, "error": "invalid_auth"})
        return _json_response(self._act(method, params))

    def _act(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        handler = getattr(self, "_api_" + method.replace(".", "_"), None)
        if handler is None:
            return {"ok": False, "error": "unknown_method"}
        result = handler(params)
        if result.get("ok") is not False:
            result = {"ok": True, **result}
        return result

    def _next_ts(self) -> str:
        return f"1767600000.{next(self._ts):06d}"

    def _resolve(self, channel: str) -> str | None:
        if channel in self.channels:
            return channel
        name = channel.lstrip("#")
        for cid, info in self.channels.items():
            if info["name"] == name:
                return cid
        return None

    def _paginate(self, items: list[Any], params: dict[str, Any], key: str) -> dict[str, Any]:
        start = int(params.get("cursor") or 0)
        end = start + self.page_size
        page = {key: items[start:end], "response_metadata": {"next_cursor": str(end) if end < len(items) else ""}}
        page["has_more"] = end < len(items)
        return page

    def _api_auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"user_id": self.bot_user_id, "team": "PeopleBooster"}

    def _api_conversations_create(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["name"]
        if any(info["name"] == name for info in self.channels.values()):
            return {"ok": False, "error": "name_taken"}
        channel_id = self.add_channel(name, creator=self.bot_user_id)
        return {"channel": {k: v for k, v in self.channels[channel_id].items() if k != "members"}}

    def _api_conversations_setPurpose(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve(params["channel"])
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        self.channels[channel]["purpose"] = {"value": params["purpose"]}
        return {"purpose": params["purpose"]}

    def _api_conversations_list(self, params: dict[str, Any]) -> dict[str, Any]:
        channels = [
            {k: v for k, v in info.items() if k != "members"}
            for info in self.channels.values()
            if not (_truthy(params.get("exclude_archived")) and info["is_archived"])
        ]
        return self._paginate(channels, params, "channels")

    def _api_conversations_open(self, params: dict[str, Any]) -> dict[str, Any]:
        user = params["users"]
        channel_id = f"D{user[1:]}"
        if channel_id not in self.channels:
            self.channels[channel_id] = {"id": channel_id, "name": "", "is_im": True, "user": user,
                                         "is_archived": False, "members": [user, self.bot_user_id],
                                         "purpose": {"value": ""}, "topic": {"value": ""}, "creator": ""}
            self.messages[channel_id] = []
        return {"channel": {"id": channel_id}}

    def _api_conversations_invite(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve(params["channel"])
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        members = self.channels[channel]["members"]
        for user in str(params["users"]).split(","):
            if user in members:
                return {"ok": False, "error": "already_in_channel"}
            members.append(user)
        return {"channel": {"id": channel}}

    def _present(self, message: dict[str, Any], include_metadata: bool) -> dict[str, Any]:
        shown = dict(message)
        if not include_metadata:
            shown.pop("metadata", None)
        return shown

    def _api_conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve(params["channel"])
        if channel is None or not params["channel"].startswith(("C", "D", "G")):
            return {"ok": False, "error": "channel_not_found"}
        top = [m for m in self.messages[channel] if m.get("thread_ts") in (None, m["ts"])]
        newest_first = [self._present(m, _truthy(params.get("include_all_metadata"))) for m in reversed(top)]
        return self._paginate(newest_first, params, "messages")

    def _api_conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve(params["channel"])
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        ts = params["ts"]
        thread = [m for m in self.messages[channel] if m["ts"] == ts or m.get("thread_ts") == ts]
        if not thread:
            return {"ok": False, "error": "thread_not_found"}
        shown = [self._present(m, _truthy(params.get("include_all_metadata"))) for m in thread]
        return self._paginate(shown, params, "messages")

    def _store(self, channel: str, message: dict[str, Any]) -> dict[str, Any]:
        message = {"type": "message", "user": self.bot_user_id, "ts": self._next_ts(), **message}
        self.messages[channel].append(message)
        return message

    def _api_chat_postMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        target = params["channel"]
        if re.fullmatch(r"U[A-Z0-9]+", target):
            target = self._api_conversations_open({"users": target})["channel"]["id"]
        channel = self._resolve(target)
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        message: dict[str, Any] = {"text": params.get("text", "")}
        for key in ("metadata", "blocks"):
            if params.get(key):
                value = params[key]
                message[key] = json.loads(value) if isinstance(value, str) else value
        if params.get("thread_ts"):
            message["thread_ts"] = params["thread_ts"]
        stored = self._store(channel, message)
        return {"channel": channel, "ts": stored["ts"], "message": stored}

    def _api_chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve(params["channel"])
        for message in self.messages.get(channel or "", []):
            if message["ts"] == params["ts"]:
                message["text"] = params.get("text", message["text"])
                return {"channel": channel, "ts": message["ts"], "text": message["text"]}
        return {"ok": False, "error": "message_not_found"}

    def _api_files_getUploadURLExternal(self, params: dict[str, Any]) -> dict[str, Any]:
        file_id = f"F{next(self._ids):08d}"
        self.files[file_id] = {"id": file_id, "name": params["filename"], "length": int(params["length"]),
                               "alt_txt": params.get("alt_txt"), "completed": False}
        return {"upload_url": self.server.url_for(f"/upload/{file_id}"), "file_id": file_id}

    def _api_files_completeUploadExternal(self, params: dict[str, Any]) -> dict[str, Any]:
        files = json.loads(params["files"])
        shared = []
        for item in files:
            info = self.files.get(item["id"])
            if info is None or item["id"] not in self.uploads:
                return {"ok": False, "error": "file_not_found"}
            info.update(completed=True, title=item.get("title"))
            shared.append({k: v for k, v in info.items() if k in ("id", "name", "title")})
        channel = self._resolve(params.get("channel_id", ""))
        if channel is not None:
            message: dict[str, Any] = {"text": params.get("initial_comment", ""), "files": shared, "upload": True}
            if params.get("blocks"):
                message["blocks"] = json.loads(params["blocks"])
            if params.get("thread_ts"):
                message["thread_ts"] = params["thread_ts"]
            self._store(channel, message)
        return {"files": [{"id": f["id"], "title": f.get("title")} for f in shared]}


@pytest.fixture
def slack_sleeps(monkeypatch: pytest.MonkeyPatch) -> SleepRecorder:
    return patch_slack_sleeps(monkeypatch)


@pytest.fixture
def fake_slack(httpserver: HTTPServer, slack_sleeps: SleepRecorder) -> FakeSlack:
    return FakeSlack(httpserver)


# ------------------------------------------------------------------------------------------------
# PagerDuty


class FakePagerDuty:
    """PagerDuty Events API v2 (POST /v2/enqueue) and the REST endpoints the pager uses."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.requests: list[Received] = []
        self.events: list[dict[str, Any]] = []
        self.incidents: dict[str, dict[str, Any]] = {}
        self.responder_requests: list[dict[str, Any]] = []
        self.oncalls: list[dict[str, Any]] = []
        self.contact_methods: dict[str, list[dict[str, Any]]] = {}
        self.faults: dict[str, list[tuple[int, dict[str, str], Any, bool]]] = {}
        self.down = False
        self._ids = itertools.count(1)
        server.expect_request(re.compile(r"^/.*")).respond_with_handler(self._handle)

    @property
    def url(self) -> str:
        return self.server.url_for("/").rstrip("/")

    def fail(self, path: str, status: int, body: Any = None, headers: dict[str, str] | None = None,
             times: int = 1, *, after_acting: bool = False) -> None:
        """Answer the next `times` requests to `path` with `status`; `after_acting`: do what was asked first
        (the answer is lost after PagerDuty acted, as when a gateway times out)."""
        for _ in range(times):
            self.faults.setdefault(path, []).append((status, headers or {}, body, after_acting))

    def calls(self, path: str, method: str | None = None) -> list[Received]:
        return [r for r in self.requests if r.path == path and (method is None or r.method == method)]

    def _handle(self, request: Request) -> Response:
        params: dict[str, Any] = {key: request.args.getlist(key) for key in request.args}
        if request.is_json:
            params["json"] = request.get_json(silent=True)
        self.requests.append(Received(request.method, request.path, params, dict(request.headers), request.get_data()))
        if self.down:
            return Response("bad gateway", status=502)
        queued = self.faults.get(request.path)
        if queued:
            status, headers, payload, after_acting = queued.pop(0)
            if after_acting:
                self._act(request, params)
            return _json_response(payload if payload is not None else {"error": "fault"}, status, headers)
        return self._act(request, params)

    def _incident_by_id(self, incident_id: str) -> dict[str, Any] | None:
        return next((i for i in self.incidents.values() if i["id"] == incident_id), None)

    def _act(self, request: Request, params: dict[str, Any]) -> Response:
        if request.path == "/v2/enqueue" and request.method == "POST":
            return self._enqueue(params.get("json") or {})
        if request.headers.get("Authorization") != "Token token=pd-api-token":
            return _json_response({"error": {"message": "Unauthorized"}}, 401)
        if request.path == "/oncalls":
            wanted = set(params.get("schedule_ids[]", []))
            found = [o for o in self.oncalls if not wanted or o["schedule"]["id"] in wanted]
            return _json_response({"oncalls": found, "limit": 100, "offset": 0, "more": False})
        if request.path == "/incidents":
            key = (params.get("incident_key") or [""])[0]
            found = [i for i in self.incidents.values() if i["incident_key"] == key]
            return _json_response({"incidents": found, "limit": 25, "offset": 0, "more": False})
        match = re.fullmatch(r"/incidents/(\w+)", request.path)
        if match and request.method == "GET":
            incident = self._incident_by_id(match.group(1))
            if incident is None:
                return _json_response({"error": {"message": "Not Found", "code": 2100}}, 404)
            return _json_response({"incident": {"responder_requests": [], **incident}})
        match = re.fullmatch(r"/incidents/(\w+)/responder_requests", request.path)
        if match and request.method == "POST":
            incident = self._incident_by_id(match.group(1))
            if incident is None:
                return _json_response({"error": {"message": "Not Found", "code": 2100}}, 404)
            body = params.get("json") or {}
            self.responder_requests.append({"incident_id": match.group(1), **body})
            # As PagerDuty keeps it on the incident (GET /incidents/{id}: responder_requests).
            recorded = {"incident": {"id": match.group(1), "type": "incident_reference"},
                        "requester": {"id": body.get("requester_id"), "type": "user_reference"},
                        "message": body.get("message"),
                        "responder_request_targets": body.get("responder_request_targets") or []}
            incident.setdefault("responder_requests", []).append(recorded)
            return _json_response({"responder_request": recorded})
        match = re.fullmatch(r"/users/(\w+)/contact_methods", request.path)
        if match:
            return _json_response({"contact_methods": self.contact_methods.get(match.group(1), [])})
        return _json_response({"error": {"message": "Not Found"}}, 404)

    def _enqueue(self, event: dict[str, Any]) -> Response:
        if not event.get("routing_key"):
            return _json_response({"status": "invalid event", "message": "routing_key missing"}, 400)
        self.events.append(event)
        key = event.get("dedup_key") or f"generated-{next(self._ids)}"
        action = event.get("event_action")
        incident = self.incidents.get(key)
        if action == "trigger" and (incident is None or incident["status"] == "resolved"):
            severity = (event.get("payload") or {}).get("severity")
            self.incidents[key] = {"id": f"Q{next(self._ids):06d}", "incident_key": key, "status": "triggered",
                                   "acknowledgements": [],
                                   "urgency": "high" if severity in ("critical", "error") else "low"}
        elif incident is not None and action == "resolve":
            incident["status"] = "resolved"
        elif incident is not None and action == "acknowledge":
            incident["status"] = "acknowledged"
        return _json_response({"status": "success", "message": "Event processed", "dedup_key": key}, 202)


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_bundle(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_ca_bundle(tls_ca, tmp_path_factory.mktemp("pd-ca"))


def write_ca_bundle(ca: trustme.CA, directory: Path) -> str:
    path = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@contextlib.contextmanager
def running_https_server(ca: trustme.CA) -> Iterator[HTTPServer]:
    """An HTTPS pytest-httpserver on 127.0.0.1 with a certificate from `ca`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=context)
    server.start()
    try:
        yield server
    finally:
        server.clear()
        if server.is_running():
            server.stop()


@pytest.fixture(scope="session")
def https_server(tls_ca: trustme.CA) -> Iterator[HTTPServer]:
    with running_https_server(tls_ca) as server:
        yield server


@pytest.fixture
def fake_pd(https_server: HTTPServer) -> Iterator[FakePagerDuty]:
    https_server.clear()
    yield FakePagerDuty(https_server)
    https_server.clear()


# ------------------------------------------------------------------------------------------------
# SMTP


class SmtpSink:
    """aiosmtpd handler that keeps every message it receives (envelope + parsed message)."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []
        self.logins: list[tuple[str, str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        if isinstance(auth_data, LoginPassword):
            login, password = auth_data.login.decode(), auth_data.password.decode()
            self.logins.append((login, password))
            return AuthResult(success=password == "smtp-pass", handled=False)
        return AuthResult(success=False, handled=False)

    @property
    def messages(self) -> list[Any]:
        from email import message_from_bytes, policy

        return [message_from_bytes(e.original_content, policy=policy.default) for e in self.envelopes]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_smtp_server() -> Iterator[tuple[SmtpSink, int]]:
    """A local SMTP server (no TLS; AUTH LOGIN/PLAIN allowed without TLS): (sink, port)."""
    from aiosmtpd.controller import Controller

    sink = SmtpSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, authenticator=sink.authenticate,
                            auth_require_tls=False)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


@pytest.fixture
def smtp_sink() -> Iterator[tuple[SmtpSink, int]]:
    with running_smtp_server() as running:
        yield running
