"""Slack for an incident: its channel, idempotent messages, charts, and the people in it.

`IncidentSlack` wraps an already-built `slack_sdk.WebClient`: in Airflow the one the Slack provider's
`SlackHook` builds from the connection `slack_api_default`, outside it (the break-glass command line)
`make_web_client`. Both get the same `web_client_options`: slack_sdk's retry handlers —
`RateLimitErrorRetryHandler` (429, sleeps Retry-After) for every method (a rate-limited call was not
carried out), `ServerErrorRetryHandler` (500/502/503/504) and `ConnectionErrorRetryHandler` for every
method except the two that add something each time they are carried out (`NON_IDEMPOTENT_METHODS`:
chat.postMessage, files.completeUploadExternal). Those are retried by `IncidentSlack` itself, and
only after looking for what the lost call would have left (below), with the budget of the client's
server-error handler.

Idempotency, so a retried call or task never posts twice:

- the incident channel carries the incident id in its purpose; on `name_taken` the existing channel
  is reused only when its purpose (or topic) names this incident, otherwise `name-2`, `name-3`, ...;
- every message carries Slack message metadata `{"event_type": "incident_ops", "event_payload":
  {"key": <idempotency key>}}`; before posting — and before posting again after a 5xx or a lost
  connection — the recent history (or the thread) is searched for a message with that key and that
  message is returned instead;
- a chart upload carries the key as the `block_id` of its caption block, found the same way.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest as RetryHttpRequest
from slack_sdk.http_retry.response import HttpResponse as RetryHttpResponse
from slack_sdk.http_retry.state import RetryState
from tenacity import Retrying, retry_if_exception, stop_after_attempt

from incident_ops.clients.http import IDEMPOTENT_METHODS, HttpClient, HttpError, RetryPolicy

__all__ = [
    "DEFAULT_SLACK_BASE_URL",
    "METADATA_EVENT_TYPE",
    "NON_IDEMPOTENT_METHODS",
    "IncidentSlack",
    "SlackError",
    "channel_candidates",
    "make_web_client",
    "message_key",
    "purpose_names_incident",
    "retry_handlers",
    "upload_client",
    "web_client_options",
]

log = logging.getLogger(__name__)

DEFAULT_SLACK_BASE_URL = "https://slack.com/api/"
METADATA_EVENT_TYPE = "incident_ops"
_CHANNEL_NAME_MAX = 80
_BLOCK_ID_MAX = 255
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{6,}")
_USER_ID = re.compile(r"[UW][A-Z0-9]{6,}")
# Web API methods that add something each time they are carried out: never retried blind.
NON_IDEMPOTENT_METHODS = frozenset({"chat.postMessage", "files.completeUploadExternal"})


class SlackError(RuntimeError):
    """A Slack Web API call failed (after the retry handlers gave up). `error` is Slack's code."""

    def __init__(self, method: str, error: str, status: int | None = None, detail: str = "") -> None:
        self.method = method
        self.error = error
        self.status = status
        where = f" (HTTP {status})" if status not in (None, 200) else ""
        extra = f": {detail}" if detail else ""
        super().__init__(f"Slack {method} failed{where}: {error}{extra}")


def _api_method(request: RetryHttpRequest) -> str:
    return request.url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]


class _ServerErrorRetryHandler(ServerErrorRetryHandler):
    """slack_sdk's server-error handler (500/503), also for 502/504; not for NON_IDEMPOTENT_METHODS."""

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: RetryHttpRequest,
        response: RetryHttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return (response is not None and response.status_code in (500, 502, 503, 504)
                and _api_method(request) not in NON_IDEMPOTENT_METHODS)


class _ConnectionErrorRetryHandler(ConnectionErrorRetryHandler):
    """slack_sdk's connection-error handler; not for NON_IDEMPOTENT_METHODS (a reset may follow the post)."""

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: RetryHttpRequest,
        response: RetryHttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return (_api_method(request) not in NON_IDEMPOTENT_METHODS
                and super()._can_retry(state=state, request=request, response=response, error=error))


def retry_handlers(max_retries: int = 5, backoff_factor: float = 0.5) -> list[RetryHandler]:
    """slack_sdk retry handlers: rate limits (sleeps Retry-After), 5xx and connection errors."""
    interval = BackoffRetryIntervalCalculator(backoff_factor=backoff_factor)
    return [
        RateLimitErrorRetryHandler(max_retry_count=max_retries),
        _ServerErrorRetryHandler(max_retry_count=max_retries, interval_calculator=interval),
        _ConnectionErrorRetryHandler(max_retry_count=max_retries, interval_calculator=interval),
    ]


def web_client_options(max_retries: int = 5, backoff_factor: float = 0.5) -> dict[str, Any]:
    """The WebClient arguments both constructions share (`make_web_client`, and `SlackHook(**options)`)."""
    return {"retry_handlers": retry_handlers(max_retries, backoff_factor)}


def make_web_client(
    token: str,
    base_url: str = DEFAULT_SLACK_BASE_URL,
    *,
    timeout: int = 30,
    max_retries: int = 5,
    backoff_factor: float = 0.5,
) -> WebClient:
    """A WebClient for `base_url` (a local fake in tests) as SlackHook would build it, outside Airflow."""
    if not base_url.endswith("/"):
        base_url += "/"
    return WebClient(token=token, base_url=base_url, timeout=timeout,
                     **web_client_options(max_retries, backoff_factor))


def upload_client(verify: bool | str = True, timeout: float = 60.0) -> HttpClient:
    """The client that POSTs a file's bytes to the upload URL Slack hands out (not a Web API method).

    That POST is retried (urllib3, like a PUT): it fills the one file Slack reserved, and sending the
    bytes again replaces them; nothing is shared before files.completeUploadExternal.
    """
    return HttpClient("", policy=RetryPolicy(timeout=timeout, methods=IDEMPOTENT_METHODS | {"POST"}), verify=verify)


def _write_budget(client: WebClient) -> tuple[int, Callable[[int], float]]:
    """(retries, pause before retry n) of the client's server-error handler, for the writes retried here."""
    for handler in client.retry_handlers or []:
        if isinstance(handler, ServerErrorRetryHandler):
            return handler.max_retry_count, handler.interval_calculator.calculate_sleep_duration
    return 0, lambda _: 0.0


def _may_have_acted(exc: BaseException) -> bool:
    """A 5xx or a lost connection: the call may have been carried out. (A Slack error code was not.)"""
    return isinstance(exc, SlackError) and (exc.status is None or exc.status >= 500)


def channel_candidates(name: str, limit: int = 20) -> Iterator[str]:
    """`name`, then `name-2`, `name-3`, ... (Slack rules: lower case, no '#', at most 80 characters)."""
    base = name.strip().lstrip("#").lower()
    if not base:
        raise ValueError("the channel name is empty")
    yield base[:_CHANNEL_NAME_MAX]
    for n in range(2, limit + 1):
        suffix = f"-{n}"
        yield base[: _CHANNEL_NAME_MAX - len(suffix)] + suffix


def purpose_names_incident(text: str | None, incident_id: str) -> bool:
    """True when a channel purpose/topic names `incident_id` as a whole token (INC-1 is not INC-12)."""
    if not text:
        return False
    return re.search(rf"(?<![\w-]){re.escape(incident_id)}(?![\w-])", text) is not None


def message_key(message: dict[str, Any]) -> str | None:
    """The idempotency key a message carries (metadata, or the caption block of an upload)."""
    metadata = message.get("metadata") or {}
    if metadata.get("event_type") == METADATA_EVENT_TYPE:
        key = (metadata.get("event_payload") or {}).get("key")
        if isinstance(key, str):
            return key
    for block in message.get("blocks") or []:
        block_id = block.get("block_id") if isinstance(block, dict) else None
        if isinstance(block_id, str) and block_id.startswith(f"{METADATA_EVENT_TYPE}:"):
            return block_id.split(":", 1)[1]
    return None


def _block_id(key: str) -> str:
    block_id = f"{METADATA_EVENT_TYPE}:{key}"
    if len(block_id) > _BLOCK_ID_MAX:
        raise ValueError(f"idempotency key too long for a Slack block_id ({len(key)} characters)")
    return block_id


def _metadata(key: str) -> dict[str, Any]:
    return {"event_type": METADATA_EVENT_TYPE, "event_payload": {"key": key}}


class IncidentSlack:
    """The Slack operations of an incident, idempotent under retries."""

    def __init__(
        self,
        web_client: WebClient,
        *,
        uploader: HttpClient | None = None,
        history_limit: int = 200,
        max_channel_suffix: int = 20,
    ) -> None:
        self.client = web_client
        self.uploader = uploader or upload_client()
        self.history_limit = history_limit
        self.max_channel_suffix = max_channel_suffix
        self._bot_user_id: str | None = None
        self._ids: dict[str, str] = {}

    # -- plumbing -----------------------------------------------------------------------------

    def _call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        fn = getattr(self.client, method.replace(".", "_"))
        try:
            response = fn(**kwargs)
        except SlackApiError as exc:
            data = exc.response.data if isinstance(exc.response.data, dict) else {}
            error = data.get("error") or f"unexpected answer {str(exc.response.data)[:200]!r}"
            raise SlackError(method, error, exc.response.status_code) from exc
        except (SlackClientError, OSError) as exc:
            raise SlackError(method, type(exc).__name__, None, str(exc)) from exc
        return dict(response.data) if isinstance(response.data, dict) else {}

    def _write_once(self, method: str, kwargs: dict[str, Any],
                    landed: Callable[[], dict[str, Any] | None]) -> tuple[dict[str, Any], bool]:
        """Call a NON_IDEMPOTENT_METHODS method; after a 5xx or a lost connection, `landed()` looks for what
        the call would have left before calling again. Returns (the answer, False) or (what was found, True)."""
        retries, pause = _write_budget(self.client)
        retrying = Retrying(
            retry=retry_if_exception(_may_have_acted),
            wait=lambda state: pause(state.attempt_number - 1),
            stop=stop_after_attempt(retries + 1),
            sleep=time.sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    if attempt.retry_state.attempt_number > 1 and (found := landed()) is not None:
                        return found, True
                    return self._call(method, **kwargs), False
        except SlackError as exc:
            if not _may_have_acted(exc):
                raise
            try:
                found = landed()  # the last call may have been carried out too
            except SlackError:
                found = None
            if found is None:
                raise
            return found, True
        raise AssertionError("unreachable")

    def _pages(self, method: str, item_key: str, max_items: int | None = None, **kwargs: Any) -> Iterator[dict]:
        cursor: str | None = None
        seen = 0
        while True:
            data = self._call(method, cursor=cursor, **kwargs) if cursor else self._call(method, **kwargs)
            for item in data.get(item_key) or []:
                yield item
                seen += 1
                if max_items is not None and seen >= max_items:
                    return
            cursor = (data.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return

    def bot_user_id(self) -> str:
        if self._bot_user_id is None:
            self._bot_user_id = str(self._call("auth.test").get("user_id") or "")
        return self._bot_user_id

    # -- channel ------------------------------------------------------------------------------

    def channel_id(self, channel: str) -> str:
        """A conversation id for a channel id, a `#name` / `name`, or a user id (their DM with the bot).

        History and thread look-ups need ids; chat.postMessage alone would accept the other forms.
        """
        channel = channel.strip()
        if _CHANNEL_ID.fullmatch(channel):
            return channel
        if channel in self._ids:
            return self._ids[channel]
        if _USER_ID.fullmatch(channel):
            data = self._call("conversations.open", users=channel)
            resolved = (data.get("channel") or {}).get("id")
        else:
            found = self._find_channel(channel.lstrip("#").lower())
            resolved = found.get("id") if found else None
        if not resolved:
            raise SlackError("conversations.list", "channel_not_found", detail=f"no channel {channel!r} visible to the bot")
        self._ids[channel] = resolved
        return resolved

    def _list_channels(self) -> Iterator[dict[str, Any]]:
        return self._pages(
            "conversations.list", "channels", types="public_channel,private_channel", exclude_archived=False, limit=200
        )

    def _find_channel(self, name: str) -> dict[str, Any] | None:
        for channel in self._list_channels():
            if channel.get("name") == name or channel.get("name_normalized") == name:
                return channel
        return None

    def _belongs_to(self, channel: dict[str, Any], incident_id: str) -> bool:
        purpose = (channel.get("purpose") or {}).get("value")
        topic = (channel.get("topic") or {}).get("value")
        return purpose_names_incident(purpose, incident_id) or purpose_names_incident(topic, incident_id)

    def _is_orphan_of_ours(self, channel: dict[str, Any]) -> bool:
        """Created by this bot but left without a purpose: a run that died between create and setPurpose."""
        purpose = (channel.get("purpose") or {}).get("value")
        topic = (channel.get("topic") or {}).get("value")
        return not purpose and not topic and bool(channel.get("creator")) and channel.get("creator") == self.bot_user_id()

    def _set_purpose(self, channel_id: str, incident_id: str) -> None:
        self._call("conversations.setPurpose", channel=channel_id, purpose=f"インシデント {incident_id} の対応チャンネル")

    def ensure_channel(self, name: str, incident_id: str, *, is_private: bool = False) -> dict[str, Any]:
        """Create the incident channel, or find the one this incident already has.

        Returns {"id", "name", "created"}; `created` is False when an existing channel of this incident
        was reused. A name taken by anything else moves on to `name-2`, `name-3`, ...
        """
        if not incident_id:
            raise ValueError("incident_id is required (it marks the channel as this incident's)")
        taken: list[str] = []
        by_name: dict[str, dict[str, Any]] | None = None  # listed once, on the first collision
        for candidate in channel_candidates(name, self.max_channel_suffix):
            try:
                data = self._call("conversations.create", name=candidate, is_private=is_private)
            except SlackError as exc:
                if exc.error != "name_taken":
                    raise
                if by_name is None or candidate not in by_name:
                    by_name = {c.get("name_normalized") or c.get("name", ""): c for c in self._list_channels()}
                existing = by_name.get(candidate)
                if existing is not None and not existing.get("is_archived"):
                    if self._belongs_to(existing, incident_id):
                        return {"id": existing["id"], "name": candidate, "created": False}
                    if self._is_orphan_of_ours(existing):
                        self._set_purpose(existing["id"], incident_id)
                        return {"id": existing["id"], "name": candidate, "created": False}
                taken.append(candidate)
                log.info("Slack channel #%s is taken by something else; trying the next name", candidate)
                continue
            channel = data.get("channel") or {}
            channel_id = channel.get("id")
            if not channel_id:
                raise SlackError("conversations.create", "no channel id in the answer")
            self._set_purpose(channel_id, incident_id)
            return {"id": channel_id, "name": channel.get("name", candidate), "created": True}
        raise SlackError(
            "conversations.create",
            "name_taken",
            detail=f"all of {', '.join(taken)} are taken by other channels; raise max_channel_suffix or rename",
        )

    # -- messages -----------------------------------------------------------------------------

    def find_message(self, channel: str, idempotency_key: str, thread_ts: str | None = None) -> dict[str, Any] | None:
        """The recent message (or thread reply) carrying `idempotency_key`, if any."""
        if thread_ts:
            messages = self._pages(
                "conversations.replies", "messages", self.history_limit,
                channel=channel, ts=thread_ts, include_all_metadata=True, limit=min(self.history_limit, 200),
            )
        else:
            messages = self._pages(
                "conversations.history", "messages", self.history_limit,
                channel=channel, include_all_metadata=True, limit=min(self.history_limit, 200),
            )
        for message in messages:
            if message_key(message) == idempotency_key:
                return message
        return None

    def post(
        self,
        channel: str,
        text: str,
        *,
        idempotency_key: str,
        thread_ts: str | None = None,
        blocks: Sequence[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Post once per key. Returns {"ts", "channel", "posted"}; posted=False when it was already there."""
        if not idempotency_key:
            raise ValueError("idempotency_key is required")
        channel = self.channel_id(channel)
        existing = self.find_message(channel, idempotency_key, thread_ts)
        if existing is not None:
            return {"ts": existing.get("ts"), "channel": channel, "posted": False}
        kwargs: dict[str, Any] = {"channel": channel, "text": text, "metadata": _metadata(idempotency_key)}
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        if blocks:
            kwargs["blocks"] = list(blocks)
        # An answer lost to a 5xx or a dropped connection: the message may have landed; look before posting again.
        data, landed = self._write_once("chat.postMessage", kwargs,
                                        lambda: self.find_message(channel, idempotency_key, thread_ts))
        if landed:
            return {"ts": data.get("ts"), "channel": channel, "posted": True}
        return {"ts": data.get("ts"), "channel": data.get("channel", channel), "posted": True}

    def reply(self, channel: str, thread_ts: str, text: str, idempotency_key: str) -> dict[str, Any]:
        return self.post(channel, text, idempotency_key=idempotency_key, thread_ts=thread_ts)

    def update(
        self, channel: str, ts: str, text: str, *, blocks: Sequence[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """Replace a message's text (idempotent by nature). Returns {"ts", "channel"}."""
        kwargs: dict[str, Any] = {"channel": self.channel_id(channel), "ts": ts, "text": text}
        if blocks is not None:
            kwargs["blocks"] = list(blocks)
        data = self._call("chat.update", **kwargs)
        return {"ts": data.get("ts", ts), "channel": data.get("channel", channel)}

    def upload_image(
        self,
        channel: str,
        path_or_bytes: str | Path | bytes,
        filename: str,
        title: str,
        idempotency_key: str,
        thread_ts: str | None = None,
    ) -> dict[str, Any]:
        """Share an image once per key (files.getUploadURLExternal → upload → files.completeUploadExternal).

        Returns {"file_id", "ts", "channel", "posted"}; `ts` may be None right after an upload (Slack
        shares the file asynchronously).
        """
        if not idempotency_key:
            raise ValueError("idempotency_key is required")
        channel = self.channel_id(channel)
        existing = self.find_message(channel, idempotency_key, thread_ts)
        if existing is not None:
            files = existing.get("files") or [{}]
            return {"file_id": files[0].get("id"), "ts": existing.get("ts"), "channel": channel, "posted": False}
        data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
        ticket = self._call("files.getUploadURLExternal", filename=filename, length=len(data), alt_txt=title)
        upload_url, file_id = ticket.get("upload_url"), ticket.get("file_id")
        if not upload_url or not file_id:
            raise SlackError("files.getUploadURLExternal", "no upload_url/file_id in the answer")
        try:
            self.uploader.request("POST", upload_url, data=data, headers={"Content-Type": "application/octet-stream"})
        except HttpError as exc:
            raise SlackError("file upload", f"upload to the upload URL failed: {exc}", exc.status) from exc
        caption = [{
            "type": "context",
            "block_id": _block_id(idempotency_key),
            "elements": [{"type": "mrkdwn", "text": title}],
        }]
        done, landed = self._write_once(
            "files.completeUploadExternal",
            {"files": [{"id": file_id, "title": title}], "channel_id": channel, "thread_ts": thread_ts,
             "blocks": json.dumps(caption, ensure_ascii=False)},
            lambda: self.find_message(channel, idempotency_key, thread_ts),
        )
        if landed:
            return {"file_id": file_id, "ts": done.get("ts"), "channel": channel, "posted": True}
        ts = None
        for file in done.get("files") or []:
            shares = file.get("shares") or {}
            for kind in ("public", "private"):
                for share in (shares.get(kind) or {}).get(channel) or []:
                    ts = ts or share.get("ts")
        return {"file_id": file_id, "ts": ts, "channel": channel, "posted": True}

    # -- people -------------------------------------------------------------------------------

    def invite(self, channel: str, user_ids: Sequence[str]) -> list[str]:
        """Invite each user; already-members are fine. Returns the ids newly invited."""
        invited: list[str] = []
        channel = self.channel_id(channel)
        for user_id in dict.fromkeys(uid for uid in user_ids if uid):
            try:
                self._call("conversations.invite", channel=channel, users=user_id)
            except SlackError as exc:
                if exc.error in ("already_in_channel", "cant_invite_self"):
                    continue
                raise
            invited.append(user_id)
        return invited
