"""Slack Web API stand-in: /slack/api/<method>, answering the way Slack does.

Point slack_sdk at it with `WebClient(token=..., base_url=f"{http}/slack/api/")`. Bodies may be
form-encoded or JSON (slack_sdk sends chat.postMessage as JSON, most others as forms), the token as
`Authorization: Bearer xox...` or a `token` field. Answers are HTTP 200 with {"ok": true, ...} or
{"ok": false, "error": "..."}; rate limits (a fault) are HTTP 429 with Retry-After.

The workspace knows the runbook's people (roster and contacts, by Slack id and email) and starts
with its team channels (#infra-support, #dev-team).

Slack's side of the app's interactivity: `block_actions_payload` (a person clicks a button of a
message), `slash_command_fields` (a person types `/incident ...`) build what Slack sends to the
app's request URL (webhooks.py signs and posts it); the `response_url` they carry is served here at
POST /slack/actions/<token> (replace_original / delete_original / in_channel / ephemeral).
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import secrets
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

if TYPE_CHECKING:
    from .context import SandboxContext

__all__ = ["BOT_USER_ID", "SlackError", "SlackWorkspace", "block_actions_payload", "router", "slash_command_fields"]

TEAM_ID = "T0PEOPLEB1"
TEAM_NAME = "PeopleBooster"
TEAM_DOMAIN = "peoplebooster"
# The app's (deprecated) verification token, sent in payloads as Slack still does.
VERIFICATION_TOKEN = "sandboxVerificationToken0"
RESPONSE_URL_USES = 5  # Slack: a response_url may be used up to 5 times within 30 minutes
RESPONSE_URL_SECONDS = 30 * 60
BOT_USER_ID = "U0INCBOT01"
BOT_ID = "B0INCBOT01"
APP_ID = "A0INCBOT01"
_CHANNEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,79}$")


class SlackError(Exception):
    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


class SlackWorkspace:
    """Channels, members, messages and files of the sandbox workspace."""

    def __init__(self, runbook: Any) -> None:
        self.lock = threading.RLock()
        self._ids = itertools.count(1)
        self._ts_counter = itertools.count(1)
        self._last_ts = 0.0
        self.users: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.ephemeral: list[dict[str, Any]] = []
        self.files: dict[str, dict[str, Any]] = {}
        self.response_urls: dict[str, dict[str, Any]] = {}  # token -> where the answers go
        self.responses: list[dict[str, Any]] = []  # every POST to a response_url, as received
        self._add_user(BOT_USER_ID, "incident-bot", "Incident Bot", None, is_bot=True)
        people = [*runbook.oncall.roster, *runbook.contacts.people.values()]
        for person in people:
            handle = (person.email or person.slack_user_id).split("@")[0]
            self._add_user(person.slack_user_id, handle, person.name, person.email)
        for name in runbook.contacts.channels.values():
            self.create_channel(name.lstrip("#"), creator=BOT_USER_ID, members=list(self.users))

    # --- model ---------------------------------------------------------------------------------

    def _add_user(self, user_id: str, name: str, real_name: str, email: str | None, is_bot: bool = False) -> None:
        self.users[user_id] = {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": name,
            "real_name": real_name,
            "deleted": False,
            "is_bot": is_bot,
            "is_app_user": False,
            "tz": "Asia/Tokyo",
            "tz_offset": 32400,
            "profile": {"real_name": real_name, "display_name": name, "email": email, "team": TEAM_ID, **({"bot_id": BOT_ID} if is_bot else {})},
        }

    def _next_ts(self) -> str:
        now = max(time.time(), self._last_ts + 0.000001)
        self._last_ts = now
        return f"{now:.6f}"

    def create_channel(self, name: str, creator: str, members: list[str] | None = None, is_private: bool = False) -> dict[str, Any]:
        with self.lock:
            if not _CHANNEL_NAME.match(name):
                raise SlackError("invalid_name_specials" if name else "invalid_name_required")
            if any(c["name"] == name for c in self.channels.values()):
                raise SlackError("name_taken")
            channel_id = f"C0{next(self._ids):08X}"
            now = int(time.time())
            self.channels[channel_id] = {
                "id": channel_id,
                "name": name,
                "name_normalized": name,
                "is_channel": not is_private,
                "is_group": is_private,
                "is_im": False,
                "is_mpim": False,
                "is_private": is_private,
                "is_archived": False,
                "is_general": False,
                "is_shared": False,
                "is_org_shared": False,
                "is_ext_shared": False,
                "created": now,
                "creator": creator,
                "context_team_id": TEAM_ID,
                "topic": {"value": "", "creator": "", "last_set": 0},
                "purpose": {"value": "", "creator": "", "last_set": 0},
                "members": list(dict.fromkeys([creator, *(members or [])])),
            }
            self.messages[channel_id] = []
            return self.channels[channel_id]

    def channel_view(self, channel: dict[str, Any], for_user: str = BOT_USER_ID) -> dict[str, Any]:
        view = {k: v for k, v in channel.items() if k != "members"}
        view["is_member"] = for_user in channel["members"]
        view["num_members"] = len(channel["members"])
        return view

    def open_dm(self, user_id: str) -> dict[str, Any]:
        """The bot's direct-message channel with a person (created on first use)."""
        with self.lock:
            for channel in self.channels.values():
                if channel["is_im"] and channel["user"] == user_id:
                    return channel
            channel_id = f"D0{next(self._ids):08X}"
            self.channels[channel_id] = {
                "id": channel_id,
                "name": f"@{self.users[user_id]['name']}",
                "is_im": True,
                "is_channel": False,
                "is_group": False,
                "is_mpim": False,
                "is_private": True,
                "is_archived": False,
                "user": user_id,
                "created": int(time.time()),
                "members": [BOT_USER_ID, user_id],
            }
            self.messages[channel_id] = []
            return self.channels[channel_id]

    def find_channel(self, ref: str | None) -> dict[str, Any]:
        if not ref:
            raise SlackError("channel_not_found")
        with self.lock:
            if ref in self.channels:
                return self.channels[ref]
            if ref in self.users and ref != BOT_USER_ID:
                return self.open_dm(ref)  # chat.postMessage to a user id: a DM from the bot
            name = ref.lstrip("#")
            for channel in self.channels.values():
                if channel["name"] == name:
                    return channel
        raise SlackError("channel_not_found")

    def message_view(self, message: dict[str, Any], with_metadata: bool) -> dict[str, Any]:
        view = {k: v for k, v in message.items() if not k.startswith("_") and k != "metadata"}
        if with_metadata and message.get("metadata"):
            view["metadata"] = message["metadata"]
        return view

    def post(self, channel_id: str, fields: dict[str, Any], user: str = BOT_USER_ID) -> dict[str, Any]:
        with self.lock:
            ts = self._next_ts()
            message: dict[str, Any] = {
                "type": "message",
                "user": user,
                "bot_id": BOT_ID if user == BOT_USER_ID else None,
                "app_id": APP_ID if user == BOT_USER_ID else None,
                "team": TEAM_ID,
                "text": fields.get("text") or "",
                "ts": ts,
            }
            message = {k: v for k, v in message.items() if v is not None}
            for key in ("blocks", "attachments", "files", "metadata"):
                if fields.get(key):
                    message[key] = fields[key]
            thread_ts = fields.get("thread_ts")
            if thread_ts:
                parent = next((m for m in self.messages[channel_id] if m["ts"] == thread_ts), None)
                message["thread_ts"] = thread_ts
                message["parent_user_id"] = parent["user"] if parent else user
                if parent is not None:
                    parent["thread_ts"] = thread_ts
                    parent["reply_count"] = parent.get("reply_count", 0) + 1
                    parent["latest_reply"] = ts
                    parent.setdefault("reply_users", [])
                    if user not in parent["reply_users"]:
                        parent["reply_users"].append(user)
                if fields.get("reply_broadcast"):
                    message["subtype"] = "thread_broadcast"
            if fields.get("files"):
                message["upload"] = True
            message["_channel"] = channel_id
            self.messages[channel_id].append(message)
            return message

    def add_ephemeral(self, channel: dict[str, Any], to_user: str, text: str, blocks: Any = None,
                      thread_ts: str | None = None, user: str = BOT_USER_ID) -> dict[str, Any]:
        """A message only `to_user` sees (chat.postEphemeral, a slash command's answer)."""
        with self.lock:
            message = {
                "channel": channel["name"],
                "channel_id": channel["id"],
                "ts": self._next_ts(),
                "thread_ts": thread_ts,
                "user": user,
                "to_user": to_user,
                "text": text or "",
                "blocks": blocks,
                "metadata": None,
                "files": [],
                "edited": False,
            }
            self.ephemeral.append(message)
            return message

    def find_message(self, channel_ref: str | None, ts: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
        channel = self.find_channel(channel_ref)
        with self.lock:
            message = next((m for m in self.messages[channel["id"]] if m["ts"] == ts), None)
        if message is None:
            raise SlackError("message_not_found")
        return channel, message

    def person(self, user_id: str | None) -> dict[str, Any]:
        user = self.users.get(str(user_id))
        if user is None or user["is_bot"]:
            raise SlackError("user_not_found")
        return user

    def new_response_url(self, base: str, channel_id: str | None, message_ts: str | None, user_id: str) -> str:
        token = secrets.token_urlsafe(18)
        with self.lock:
            self.response_urls[token] = {"channel_id": channel_id, "message_ts": message_ts, "user_id": user_id,
                                         "created": time.time(), "uses": 0}
        return f"{base.rstrip('/')}/slack/actions/{TEAM_ID}/{next(self._ids)}/{token}"

    def respond(self, token: str, body: Any) -> tuple[int, dict[str, Any]]:
        """A POST to a response_url: what Slack does with it, and its answer."""
        with self.lock:
            target = self.response_urls.get(token)
            record: dict[str, Any] = {"ts": self._next_ts(), "token": token[:6], "body": body, "status": None, "effect": None}
            self.responses.append(record)
            if target is None:
                record["status"] = 404
                return 404, {"ok": False, "error": "invalid_url"}
            if time.time() - target["created"] > RESPONSE_URL_SECONDS:
                record["status"] = 404
                return 404, {"ok": False, "error": "expired_url"}
            if target["uses"] >= RESPONSE_URL_USES:
                record["status"] = 404
                return 404, {"ok": False, "error": "used_url"}
            if not isinstance(body, dict):
                record["status"] = 400
                return 400, {"ok": False, "error": "invalid_payload"}
            blocks = _maybe_json(body.get("blocks"))
            if blocks is not None and not isinstance(blocks, list):
                record["status"] = 400
                return 400, {"ok": False, "error": "invalid_blocks"}
            target["uses"] += 1
            record.update(user=target["user_id"], channel_id=target["channel_id"], message_ts=target["message_ts"])
            channel = self.channels.get(target["channel_id"] or "")
            original = None
            if channel is not None and target["message_ts"]:
                original = next((m for m in self.messages[channel["id"]] if m["ts"] == target["message_ts"]), None)
            if _bool(body.get("delete_original")) and original is not None:
                self.messages[channel["id"]].remove(original)
                record["effect"] = "deleted"
            elif _bool(body.get("replace_original")) and original is not None:
                if body.get("text") is not None:
                    original["text"] = str(body["text"])
                original["blocks"] = blocks or []
                original["edited"] = {"user": BOT_USER_ID, "ts": self._next_ts()}
                record["effect"] = "replaced"
            elif channel is None:
                record["effect"] = "dropped: no channel"
            elif body.get("response_type") == "in_channel":
                message = self.post(channel["id"], {"text": body.get("text") or "", "blocks": blocks,
                                                    "thread_ts": body.get("thread_ts")})
                record["effect"] = f"in_channel {message['ts']}"
            else:
                message = self.add_ephemeral(channel, target["user_id"], str(body.get("text") or ""), blocks,
                                             thread_ts=body.get("thread_ts"))
                record["effect"] = f"ephemeral {message['ts']}"
            record["status"] = 200
            return 200, {"ok": True}

    def all_messages(self) -> list[dict[str, Any]]:
        """Every message (and ephemeral message) of every channel, oldest first, for the control API."""
        with self.lock:
            out = []
            for channel_id, messages in self.messages.items():
                name = self.channels[channel_id]["name"]
                for m in messages:
                    out.append(
                        {
                            "channel": name,
                            "channel_id": channel_id,
                            "ts": m["ts"],
                            "thread_ts": m.get("thread_ts") if m.get("thread_ts") != m["ts"] else None,
                            "user": m["user"],
                            "text": m.get("text", ""),
                            "blocks": m.get("blocks"),
                            "metadata": m.get("metadata"),
                            "files": [f.get("name") for f in m.get("files", [])],
                            "edited": bool(m.get("edited")),
                            "ephemeral": False,
                        }
                    )
            for m in self.ephemeral:
                out.append({**m, "ephemeral": True})
            out.sort(key=lambda m: float(m["ts"]))
            return out


# --- request parsing ---------------------------------------------------------------------------


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


async def _params(request: Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query_params)
    content_type = request.headers.get("content-type", "")
    body = await request.body()
    if body:
        if "application/json" in content_type:
            try:
                data = json.loads(body)
            except ValueError as exc:
                raise SlackError("invalid_json") from exc
            if isinstance(data, dict):
                params.update(data)
        elif "multipart/form-data" in content_type:
            form = await request.form()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
        else:
            form = await request.form()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
    return params


def _token(request: Request, params: dict[str, Any]) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return params.get("token")


def _bool(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes")


def _cursor(value: Any) -> int:
    if not value:
        return 0
    try:
        return int(base64.b64decode(str(value)).decode().split(":", 1)[1])
    except (ValueError, IndexError) as exc:
        raise SlackError("invalid_cursor") from exc


def _next_cursor(offset: int) -> str:
    return base64.b64encode(f"offset:{offset}".encode()).decode()


def _page(items: list[Any], params: dict[str, Any], default_limit: int = 100) -> tuple[list[Any], str]:
    offset = _cursor(params.get("cursor"))
    limit = int(params.get("limit") or default_limit)
    limit = max(1, min(limit, 1000))
    page = items[offset : offset + limit]
    more = offset + limit < len(items)
    return page, _next_cursor(offset + limit) if more else ""


# --- methods -----------------------------------------------------------------------------------


def _auth_test(ctx: SandboxContext, ws: SlackWorkspace, p: dict[str, Any], request: Request) -> dict[str, Any]:
    return {
        "url": "https://peoplebooster.slack.com/",
        "team": TEAM_NAME,
        "user": "incident-bot",
        "team_id": TEAM_ID,
        "user_id": BOT_USER_ID,
        "bot_id": BOT_ID,
        "is_enterprise_install": False,
    }


def _conversations_create(ctx: SandboxContext, ws: SlackWorkspace, p: dict[str, Any], request: Request) -> dict[str, Any]:
    channel = ws.create_channel(str(p.get("name") or ""), creator=BOT_USER_ID, is_private=_bool(p.get("is_private")))
    return {"channel": ws.channel_view(channel)}


def _set_field(field: str):
    def method(ctx: SandboxContext, ws: SlackWorkspace, p: dict[str, Any], request: Request) -> dict[str, Any]:
        channel = ws.find_channel(p.get("channel"))
        value = p.get(field)
        if value is None:
            raise SlackError("invalid_arguments")
        if len(str(value)) > 250:
            raise SlackError("too_long")
        with ws.lock:
            channel[field] = {"value": str(value), "creator": BOT_USER_ID, "last_set": int(time.time())}
        return {field: str(value), "channel": ws.channel_view(channel)}

    return method


def _conversations_list(ctx: SandboxContext, ws: SlackWorkspace, p: dict[str, Any], request: Request) -> dict[str, Any]:
    types = str(p.get("types") or "public_channel").split(",")
    with ws.lock:
        channels = [
            ws.channel_view(c)
            for c in ws.channels.values()
            if (("im" in types) if c["is_im"] else ("private_channel" in types) if c["is_private"] else ("public_channel" in types))
            and not (_bool(p.get("exclude_archived")) and c["is_archived"])
        ]
    page, cursor = _page(channels, p)
    return {"channels": page, "response_metadata": {"next_cursor": cursor}}


def _conversations_open(ctx: SandboxContext, ws: SlackWorkspace, p: dict[str, Any], request: Request) -> dict[str, Any]:
    users = [u.strip() for u in str(p.get("users") or "").split(",") if u.strip()]
    if len(users) != 1:
        raise SlackError("not_enough_users" if not users else "too_many_users")
    if users[0] not in ws.users or users[0] == BOT_USER_ID:
        raise SlackError("user_not_found")
    channel = ws.open_dm(users[0])
    return {"channel": {"id": channel["id"]} if not _bool(p.get("return_im")) else ws.channel_view(channel)}


def _conversations_join(ctx: SandboxContext, ws: SlackWorkspace, p: dict[str, Any], request: Request) -> dict[str, Any]:
    channel = ws.find_channel(p.get("channel"))
    if channel["is_private"]:
        raise SlackError("method_not_supported_for_channel_type")
    with ws.lock:
        if BOT_USER_ID not in channel["members"]:
            channel["members"].append(BOT_USER_ID)
    return {"channel": ws.channel_view(channel)}


def _conversations_info(ctx: SandboxContext, ws: SlackWorkspace, p: dict[str, Any], request: Request) -> dict[str, Any]:
    return {"channel": ws.channel_view(ws.find_channel(p.get("channel")))}


def _conversations_members(ctx: SandboxContext, ws: SlackWorkspace, p: dict[str, Any], request: Request) -> dict[str, Any]:
    channel = ws.find_channel(p.get("channel"))
    page, cursor = _page(list(channel["members"]), p)
    return {"members": page, "response_metadata": {"next_cursor": cursor}}


def _conversations_invite(ctx: SandboxContext, ws: SlackWorkspace, p: dict[str, Any], request: Request) -> dict[str, Any]:
    channel = ws.find_channel(p.get("channel"))
    if channel["is_im"]:
        raise SlackError("method_not_supported_for_channel_type")
    users = [u.strip() for u in str(p.get("users") or "").split(",") if u.strip()]
    if not users:
        raise SlackError("no_user")
    force = _bool(p.get("force"))
    errors = []
    with ws.lock:
        for user in users:
            if user not in ws.users:
                errors.append({"user": user, "ok": False, "error": "user_not_found"})
            elif user == BOT_USER_ID:
                errors.append({"user": user, "ok": False, "error": "cant_invite_self"})
            elif user in channel["members"]:
                errors.append({"user": user, "ok": False, "error": "already_in_channel"})
        if errors and not force:
            raise SlackError(errors[0]["error"], errors=errors)
        for user in users:
            if user in ws.users and user not in channel["members"]:
                channel["members"].append(user)
    result: dict[str, Any] = {"channel": ws.channel_view(channel)}
    if errors:
        result["errors"] = errors
    return result


def _conversations_history(ctx: SandboxContext, ws: SlackWorkspace, p: dict[str, Any], request: Request) -> dict[str, Any]:
    channel = ws.find_channel(p.get("channel"))
    with_metadata = _bool(p.get("include_all_metadata"))
    inclusive = _bool(p.get("inclusive"))
    oldest = float(p.get("oldest") or 0)
    latest = float(p.get("latest") or 0) or float("inf")
    with ws.lock:
        items = [
            m
            for m in ws.messages[channel["id"]]
            if (m.get("thread_ts") in (None, m["ts"]) or m.get("subtype") == "thread_broadcast")
            and (oldest <= float(m["ts"]) if inclusive else oldest < float(m["ts"]))
            and (float(m["ts"]) <= latest if inclusive else float(m["ts"]) < latest)
        ]
        items = [ws.message_view(m, with_metadata) for m in reversed(items)]
    page, cursor = _page(items, p)
    return {"messages": page, "has_more": bool(cursor), "pin_count": 0, "response_metadata": {"next_cursor": cursor}}


def _conversations_replies(ctx: SandboxContext, ws: SlackWorkspace, p: dict[str, Any], request: Request) -> dict[str, Any]:
    channel = ws.find_channel(p.get("channel"))
    ts = p.get("ts")
    with_metadata = _bool(p.get("include_all_metadata"))
    with ws.lock:
        items = [m for m in ws.messages[channel["id"]] if m["ts"] == ts or m.get("thread_ts") == ts]
        if not items:
            raise SlackError("thread_not_found")
        items = [ws.message_view(m, with_metadata) for m in items]
    page, cursor = _page(items, p)
    return {"messages": page, "has_more": bool(cursor), "response_metadata": {"next_cursor": cursor}}


def _message_fields(p: dict[str, Any]) -> dict[str, Any]:
    fields = {
        "text": p.get("text"),
        "blocks": _maybe_json(p.get("blocks")),
        "attachments": _maybe_json(p.get("attachments")),
        "metadata": _maybe_json(p.get("metadata")),
        "thread_ts": p.get("thread_ts"),
        "reply_broadcast": _bool(p.get("reply_broadcast")),
    }
    if fields["metadata"] is not None and not (isinstance(fields["metadata"], dict) and "event_type" in fields["metadata"]):
        raise SlackError("invalid_metadata_format")
    if fields["blocks"] is not None and not isinstance(fields["blocks"], list):
        raise SlackError("invalid_blocks_format")
    return fields


def _chat_post_message(ctx: SandboxContext, ws: SlackWorkspace, p: dict[str, Any], request: Request) -> dict[str, Any]:
    channel = ws.find_channel(p.get("channel"))
    fields = _message_fields(p)
    if not fields["text"] and not fields["blocks"] and not fields["attachments"]:
        raise SlackError("no_text")
    if len(str(fields["text"] or "")) > 40000:
        raise SlackError("msg_too_long")
    if channel["is_archived"]:
        raise SlackError("is_archived")
    message = ws.post(channel["id"], fields)
    return {"channel": channel["id"], "ts": message["ts"], "message": ws.message_view(message, True)}


def _chat_update(ctx: SandboxContext, ws: SlackWorkspace, p: dict[str, Any], request: Request) -> dict[str, Any]:
    channel = ws.find_channel(p.get("channel"))
    fields = _message_fields(p)
    with ws.lock:
        message = next((m for m in ws.messages[channel["id"]] if m["ts"] == p.get("ts")), None)
        if message is None:
            raise SlackError("message_not_found")
        if message["user"] != BOT_USER_ID:
            raise SlackError("cant_update_message")
        for key in ("text", "blocks", "attachments", "metadata"):
            if fields[key] is not None:
                message[key] = fields[key]
        message["edited"] = {"user": BOT_USER_ID, "ts": ws._next_ts()}
        return {"channel": channel["id"], "ts": message["ts"], "text": message.get("text", ""), "message": ws.message_view(message, True)}


def _chat_post_ephemeral(ctx: SandboxContext, ws: SlackWorkspace, p: dict[str, Any], request: Request) -> dict[str, Any]:
    channel = ws.find_channel(p.get("channel"))
    user = p.get("user")
    if user not in ws.users:
        raise SlackError("user_not_found")
    if user not in channel["members"]:
        raise SlackError("user_not_in_channel")
    fields = _message_fields(p)
    if not fields["text"] and not fields["blocks"]:
        raise SlackError("no_text")
    message = ws.add_ephemeral(channel, user, fields["text"] or "", fields["blocks"], thread_ts=fields["thread_ts"])
    return {"message_ts": message["ts"]}


def _files_get_upload_url(ctx: SandboxContext, ws: SlackWorkspace, p: dict[str, Any], request: Request) -> dict[str, Any]:
    filename = p.get("filename")
    length = p.get("length")
    if not filename or length in (None, ""):
        raise SlackError("invalid_arguments")
    file_id = f"F0{uuid.uuid4().hex[:8].upper()}"
    with ws.lock:
        ws.files[file_id] = {
            "id": file_id,
            "name": filename,
            "title": filename,
            "length": int(length),
            "alt_txt": p.get("alt_txt"),
            "snippet_type": p.get("snippet_type"),
            "content": None,
            "created": int(time.time()),
            "completed": False,
        }
    base = str(request.base_url).rstrip("/")
    return {"upload_url": f"{base}/slack/upload/{file_id}", "file_id": file_id}


def _file_view(f: dict[str, Any]) -> dict[str, Any]:
    content = f["content"] or b""
    return {
        "id": f["id"],
        "created": f["created"],
        "timestamp": f["created"],
        "name": f["name"],
        "title": f["title"],
        "mimetype": "text/plain" if f["name"].endswith((".txt", ".md", ".log", ".json")) else "application/octet-stream",
        "filetype": f["name"].rsplit(".", 1)[-1] if "." in f["name"] else "binary",
        "user": BOT_USER_ID,
        "size": len(content),
        "url_private": f"https://files.slack.com/files-pri/{TEAM_ID}-{f['id']}/{f['name']}",
        "permalink": f"https://peoplebooster.slack.com/files/{BOT_USER_ID}/{f['id']}/{f['name']}",
    }


def _files_complete_upload(ctx: SandboxContext, ws: SlackWorkspace, p: dict[str, Any], request: Request) -> dict[str, Any]:
    files = _maybe_json(p.get("files"))
    if not isinstance(files, list) or not files:
        raise SlackError("invalid_arguments")
    channel = ws.find_channel(p.get("channel_id") or p.get("channels")) if (p.get("channel_id") or p.get("channels")) else None
    done = []
    with ws.lock:
        for item in files:
            f = ws.files.get(item.get("id", "")) if isinstance(item, dict) else None
            if f is None or f["content"] is None:
                raise SlackError("file_not_found")
            if item.get("title"):
                f["title"] = item["title"]
            f["completed"] = True
            done.append(_file_view(f))
        if channel is not None:
            ws.post(channel["id"], {"text": p.get("initial_comment") or "", "files": done, "thread_ts": p.get("thread_ts")})
    return {"files": done}


def _users_lookup_by_email(ctx: SandboxContext, ws: SlackWorkspace, p: dict[str, Any], request: Request) -> dict[str, Any]:
    email = str(p.get("email") or "").lower()
    for user in ws.users.values():
        if (user["profile"].get("email") or "").lower() == email and email:
            return {"user": user}
    raise SlackError("users_not_found")


def _users_info(ctx: SandboxContext, ws: SlackWorkspace, p: dict[str, Any], request: Request) -> dict[str, Any]:
    user = ws.users.get(str(p.get("user")))
    if user is None:
        raise SlackError("user_not_found")
    return {"user": user}


# --- Slack's side of interactivity --------------------------------------------------------------


def _trigger_id() -> str:
    return f"{int(time.time())}.{secrets.randbelow(10**12)}.{uuid.uuid4().hex}"


def _actor(user: dict[str, Any]) -> dict[str, Any]:
    return {"id": user["id"], "username": user["name"], "name": user["name"], "team_id": TEAM_ID}


def find_action(message: dict[str, Any], action_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(block, element) of the interactive element `action_id` in the message's blocks."""
    for block in message.get("blocks") or []:
        elements = block.get("elements") if block.get("type") == "actions" else [block.get("accessory")]
        for element in elements or []:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return block, element
    raise SlackError("action_not_found")


def block_actions_payload(ws: SlackWorkspace, base_url: str, channel_ref: str | None, ts: str | None,
                          action_id: str, user_id: str | None) -> dict[str, Any]:
    """What Slack sends the app when `user_id` clicks the button `action_id` of message `ts`."""
    user = ws.person(user_id)
    channel, message = ws.find_message(channel_ref, ts)
    block, element = find_action(message, action_id)
    action: dict[str, Any] = {
        "action_id": element["action_id"],
        "block_id": block.get("block_id") or uuid.uuid4().hex[:5],
        "text": element.get("text") or {"type": "plain_text", "text": ""},
        "value": element.get("value", ""),
        "type": element.get("type", "button"),
        "action_ts": f"{time.time():.6f}",
    }
    if element.get("style"):
        action["style"] = element["style"]
    view = ws.message_view(message, True)
    view.pop("_channel", None)
    return {
        "type": "block_actions",
        "user": _actor(user),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": {"type": "message", "message_ts": message["ts"], "channel_id": channel["id"], "is_ephemeral": False},
        "trigger_id": _trigger_id(),
        "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel["id"], "name": channel["name"]},
        "message": view,
        "state": {"values": {}},
        "response_url": ws.new_response_url(base_url, channel["id"], message["ts"], user["id"]),
        "actions": [action],
    }


def slash_command_fields(ws: SlackWorkspace, base_url: str, channel_ref: str | None, user_id: str | None, text: str,
                         command: str = "/incident") -> dict[str, str]:
    """The form fields Slack posts to the app when `user_id` types `<command> <text>` in a channel."""
    user = ws.person(user_id)
    channel = ws.find_channel(channel_ref)
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": TEAM_ID,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel["id"],
        "channel_name": channel["name"] if not channel["is_im"] else "directmessage",
        "user_id": user["id"],
        "user_name": user["name"],
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": ws.new_response_url(base_url, channel["id"], None, user["id"]),
        "trigger_id": _trigger_id(),
    }


def show_command_answer(ws: SlackWorkspace, channel_ref: str, user_id: str, command: str, delivery: dict[str, Any]) -> None:
    """What the person sees after a slash command: the app's immediate answer (ephemeral unless
    response_type is in_channel), or Slack's own error when the app failed or was too slow."""
    channel = ws.find_channel(channel_ref)
    status, answer = delivery.get("status"), delivery.get("answer")
    if status is None or not 200 <= status < 300:
        error = "http_service_error" if status is not None else delivery.get("error")
        if error != "operation_timeout" and status is None:
            error = "dispatch_failed"
        ws.add_ephemeral(channel, user_id, f'{command} failed with the error "{error}"', user="USLACKBOT")
        return
    if isinstance(answer, dict) and (answer.get("text") or answer.get("blocks")):
        if answer.get("response_type") == "in_channel":
            ws.post(channel["id"], {"text": answer.get("text") or "", "blocks": _maybe_json(answer.get("blocks"))})
        else:
            ws.add_ephemeral(channel, user_id, str(answer.get("text") or ""), _maybe_json(answer.get("blocks")))
    elif isinstance(answer, str) and answer.strip():
        ws.add_ephemeral(channel, user_id, answer)


METHODS = {
    "auth.test": _auth_test,
    "conversations.create": _conversations_create,
    "conversations.setPurpose": _set_field("purpose"),
    "conversations.setTopic": _set_field("topic"),
    "conversations.list": _conversations_list,
    "conversations.info": _conversations_info,
    "conversations.open": _conversations_open,
    "conversations.join": _conversations_join,
    "conversations.members": _conversations_members,
    "conversations.invite": _conversations_invite,
    "conversations.history": _conversations_history,
    "conversations.replies": _conversations_replies,
    "chat.postMessage": _chat_post_message,
    "chat.update": _chat_update,
    "chat.postEphemeral": _chat_post_ephemeral,
    "files.getUploadURLExternal": _files_get_upload_url,
    "files.completeUploadExternal": _files_complete_upload,
    "users.lookupByEmail": _users_lookup_by_email,
    "users.info": _users_info,
}

router = APIRouter()


def _slack_json(data: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers=headers, media_type="application/json; charset=utf-8")


@router.api_route("/slack/api/{method}", methods=["GET", "POST"])
async def slack_method(method: str, request: Request) -> JSONResponse:
    ctx: SandboxContext = request.app.state.ctx
    ws = ctx.slack
    try:
        params = await _params(request)
        token = _token(request, params)
        if not token:
            raise SlackError("not_authed")
        if not token.startswith("xox"):
            raise SlackError("invalid_auth")
        handler = METHODS.get(method)
        if handler is None:
            raise SlackError("unknown_method")
        result = handler(ctx, ws, params, request)
    except SlackError as exc:
        return _slack_json({"ok": False, "error": exc.error, **exc.extra})
    return _slack_json({"ok": True, **result})


@router.post("/slack/actions/{team_id}/{number}/{token}")
async def slack_response_url(team_id: str, number: str, token: str, request: Request) -> JSONResponse:
    """A response_url of an interaction or a slash command (Slack's hooks.slack.com/actions/...)."""
    ws: SlackWorkspace = request.app.state.ctx.slack
    body = await request.body()
    try:
        data: Any = json.loads(body) if body else None
    except ValueError:
        data = None
    status, answer = ws.respond(token, data)
    return _slack_json(answer, status)


@router.post("/slack/upload/{file_id}")
async def slack_upload(file_id: str, request: Request) -> PlainTextResponse:
    ctx: SandboxContext = request.app.state.ctx
    ws = ctx.slack
    content_type = request.headers.get("content-type", "")
    if "multipart/form-data" in content_type:
        form = await request.form()
        upload = next((v for v in form.values() if not isinstance(v, str)), None)
        data = await upload.read() if upload is not None else b""
    else:
        data = await request.body()
    with ws.lock:
        f = ws.files.get(file_id)
        if f is None:
            return PlainTextResponse("file not found", status_code=404)
        f["content"] = data
    return PlainTextResponse(f"OK - {len(data)}")
