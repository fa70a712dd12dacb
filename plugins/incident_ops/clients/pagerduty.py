"""PagerDuty for an incident: Events API v2 (trigger/acknowledge/resolve) and a few REST API calls.

Built on the `pagerduty` package (the maintained successor of pdpyras): `EventsApiV2Client` and
`RestApiV2Client`, both httpx2 clients that accept only https:// base URLs. The dedup key of every
event is the incident id, so a retried trigger updates the same PagerDuty alert.

Retries: the package retries by itself, per status, with exponential backoff
(`sleep_timer * sleep_timer_base ** n`); by default it retries 429 without limit and 5xx only on the
Events API. `configure_retries` bounds it (429 and 5xx, `attempts` each, both APIs). The package does
not read Retry-After, so `configure_retries` also installs httpx event hooks that make the next
request wait until the Retry-After of the previous answer has passed.

That is right for the Events API (the dedup key makes a repeat the same alert) and for REST reads,
not for the one REST write that acts: a responder request places a phone call. `add_responder`
sends it through `single_attempt(rest)` (the package retries only a 429 — refused — there) and,
after a 5xx, a timeout or a dropped connection, reads the incident's responder requests
(`GET /incidents/{id}`) and sends again only when the lost one is not there.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx2
import pagerduty
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from incident_ops.clients.http import retry_after_seconds

__all__ = [
    "DEFAULT_EVENTS_URL",
    "DEFAULT_REST_URL",
    "PD_SEVERITIES",
    "IncidentPager",
    "PagerDutyError",
    "configure_retries",
    "pd_severity",
    "prepare_event",
    "single_attempt",
]

log = logging.getLogger(__name__)

DEFAULT_EVENTS_URL = "https://events.pagerduty.com"
DEFAULT_REST_URL = "https://api.pagerduty.com"
PD_SEVERITIES: tuple[str, ...] = ("critical", "error", "warning", "info")
_SEVERITY_MAP = {"P1": "critical", "P2": "error", "P3": "warning", "P4": "info"}
_RETRY_STATUSES = (429, 500, 502, 503, 504)
_SUMMARY_MAX = 1024


class PagerDutyError(RuntimeError):
    """A PagerDuty call failed (after the retries). `status` is the HTTP status when there was one."""

    def __init__(self, what: str, detail: str, status: int | None = None) -> None:
        self.what = what
        self.status = status
        where = f" (HTTP {status})" if status is not None else ""
        super().__init__(f"PagerDuty {what} failed{where}: {detail}")


def pd_severity(severity: str) -> str:
    """Runbook severity → PagerDuty severity: P1 critical, P2 error, P3 warning, P4 info."""
    if severity in PD_SEVERITIES:
        return severity
    try:
        return _SEVERITY_MAP[severity.upper()]
    except KeyError:
        raise ValueError(
            f"unknown severity {severity!r}; expected one of {', '.join(_SEVERITY_MAP)} or {', '.join(PD_SEVERITIES)}"
        ) from None


def prepare_event(
    action: str,
    dedup_key: str,
    *,
    summary: str | None = None,
    severity: str | None = None,
    source: str | None = None,
    component: str | None = None,
    group: str | None = None,
    event_class: str | None = None,
    custom_details: Mapping[str, Any] | None = None,
    links: Sequence[Mapping[str, str]] | None = None,
    timestamp: str | None = None,
) -> dict[str, Any]:
    """The Events API v2 body (without routing_key) for `action` — pure, like Airflow's prepare_event_data.

    `trigger` needs summary, severity (P1–P4 or a PagerDuty severity) and source; acknowledge and
    resolve need only the dedup key.
    """
    if action not in ("trigger", "acknowledge", "resolve"):
        raise ValueError(f"event action must be trigger, acknowledge or resolve, got {action!r}")
    if not dedup_key:
        raise ValueError("dedup_key is required (the incident id)")
    event: dict[str, Any] = {"event_action": action, "dedup_key": dedup_key}
    if action != "trigger":
        return event
    if not summary:
        raise ValueError("a trigger needs a summary")
    if not source:
        raise ValueError("a trigger needs a source")
    if severity is None:
        raise ValueError("a trigger needs a severity")
    payload: dict[str, Any] = {
        "summary": summary if len(summary) <= _SUMMARY_MAX else summary[: _SUMMARY_MAX - 1] + "…",
        "severity": pd_severity(severity),
        "source": source,
    }
    for key, value in (("component", component), ("group", group), ("class", event_class), ("timestamp", timestamp)):
        if value:
            payload[key] = value
    if custom_details:
        payload["custom_details"] = dict(custom_details)
    event["payload"] = payload
    if links:
        for link in links:
            if "href" not in link:
                raise ValueError(f"a link needs an href: {link!r}")
        event["links"] = [dict(link) for link in links]
    return event


class _RetryAfter:
    """httpx event hooks: remember a 429/5xx answer's Retry-After, make the next request wait it out."""

    def __init__(self, max_wait: float, sleep: Callable[[float], None], clock: Callable[[], float]) -> None:
        self.max_wait = max_wait
        self.sleep = sleep
        self.clock = clock
        self._not_before = 0.0
        self._lock = threading.Lock()

    def on_response(self, response: httpx2.Response) -> None:
        if response.status_code in _RETRY_STATUSES:
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            if wait is not None:
                with self._lock:
                    self._not_before = max(self._not_before, self.clock() + min(wait, self.max_wait))

    def on_request(self, request: httpx2.Request) -> None:
        with self._lock:
            remaining = self._not_before - self.clock()
            self._not_before = 0.0
        if remaining > 0:
            log.info("PagerDuty asked to retry after a delay; waiting %.1fs more", remaining)
            self.sleep(remaining)


def configure_retries(
    client: pagerduty.ApiClient,
    *,
    attempts: int = 4,
    backoff: float = 1.0,
    max_retry_after: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> pagerduty.ApiClient:
    """Bound the package's retries: up to `attempts` retries on 429/5xx/network errors, first wait = backoff.

    The package sleeps `sleep_timer * 2` before the first retry and doubles each time; Retry-After
    is honoured through event hooks. Returns the client.
    """
    if attempts < 1:
        # The package retries 429 without limit unless given a positive count.
        raise ValueError("attempts must be >= 1")
    client.retry = {status: attempts for status in _RETRY_STATUSES}
    client.max_http_attempts = attempts
    client.max_network_attempts = attempts
    client.sleep_timer = backoff / 2
    client.sleep_timer_base = 2
    client.stagger_cooldown = 0
    hooks = _RetryAfter(max_retry_after, sleep, time.monotonic)
    previous = getattr(client, "_incident_ops_retry_after", None)
    current = client.event_hooks
    client.event_hooks = {
        "request": [h for h in current.get("request", []) if previous is None or h != previous.on_request]
        + [hooks.on_request],
        "response": [h for h in current.get("response", []) if previous is None or h != previous.on_response]
        + [hooks.on_response],
    }
    client._incident_ops_retry_after = hooks  # type: ignore[attr-defined]  # reconfiguring replaces, not stacks
    return client


def single_attempt(client: pagerduty.ApiClient, rate_limit_attempts: int = 4) -> pagerduty.ApiClient:
    """A view of `client` that sends each request once: for a write that must not be repeated blind.

    A shallow copy (same connection pool, auth and event hooks) whose package retries are off for 5xx
    and network errors — the request may have acted — and kept for 429 (refused, nothing was done).
    """
    once = copy.copy(client)
    once.retry = {429: rate_limit_attempts}
    once.max_network_attempts = 0
    return once


def _may_have_acted(exc: BaseException) -> bool:
    """A 5xx, a timeout or a dropped connection (the package's Error over an httpx TransportError)."""
    if isinstance(exc, pagerduty.HttpError):
        return exc.response is not None and exc.response.status_code >= 500
    return isinstance(exc, pagerduty.Error) and isinstance(exc.__cause__, httpx2.TransportError)


def _targets(request: Mapping[str, Any]) -> list[str]:
    return [str((item.get("responder_request_target") or item).get("id"))
            for item in request.get("responder_request_targets") or []]


def _verify(verify: bool | str | ssl.SSLContext) -> bool | ssl.SSLContext:
    # httpx2 deprecates verify=<path>; a CA bundle path becomes an SSL context.
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return verify


def _instant(value: dt.datetime | str) -> dt.datetime:
    when = dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    if when.tzinfo is None:
        raise ValueError(f"a time zone is required: {value!r}")
    return when


class IncidentPager:
    """PagerDuty operations of an incident; `dedup_key` is always the incident id."""

    def __init__(
        self,
        routing_key: str | None,
        api_token: str | None = None,
        events_url: str = DEFAULT_EVENTS_URL,
        rest_url: str = DEFAULT_REST_URL,
        verify: bool | str | ssl.SSLContext = True,
        *,
        from_email: str | None = None,
        events_client: pagerduty.EventsApiV2Client | None = None,
        rest_client: pagerduty.RestApiV2Client | None = None,
        retry_attempts: int = 4,
        backoff: float = 1.0,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Build the package clients from URLs and credentials, or wrap already-built ones.

        `verify` is True, False, a CA bundle path or an SSL context. Clients passed in are used as they
        are, except that their retries are bounded with `configure_retries`. `retry_attempts`,
        `backoff` and `sleep` also pace `add_responder`'s own attempts.
        """
        try:
            if events_client is None and routing_key:
                events_client = pagerduty.EventsApiV2Client(routing_key, base_url=events_url, verify=_verify(verify))
                events_client.timeout = timeout
            if rest_client is None and api_token:
                rest_client = pagerduty.RestApiV2Client(
                    api_token, default_from=from_email, base_url=rest_url, verify=_verify(verify)
                )
                rest_client.timeout = timeout
        except pagerduty.UrlError as exc:
            raise ValueError(f"PagerDuty URL rejected: {exc} (the pagerduty package accepts only https://)") from exc
        for client in (events_client, rest_client):
            if client is not None:
                configure_retries(client, attempts=retry_attempts, backoff=backoff, sleep=sleep)
        self.events = events_client
        self.rest = rest_client
        self.rest_once = single_attempt(rest_client, retry_attempts) if rest_client is not None else None
        self.retry_attempts = retry_attempts
        self.backoff = backoff
        self.sleep = sleep

    # -- plumbing -----------------------------------------------------------------------------

    def _events(self) -> pagerduty.EventsApiV2Client:
        if self.events is None:
            raise PagerDutyError("Events API", "no routing key configured")
        return self.events

    def _rest(self) -> pagerduty.RestApiV2Client:
        if self.rest is None:
            raise PagerDutyError("REST API", "no API token configured")
        return self.rest

    def _guard(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except pagerduty.HttpError as exc:
            status = exc.response.status_code if exc.response is not None else None
            body = exc.response.text[:300] if exc.response is not None else ""
            raise PagerDutyError(what, f"{exc} {body}".strip(), status) from exc
        except pagerduty.Error as exc:
            cause = exc.__cause__
            detail = f"{exc} ({type(cause).__name__}: {cause})" if cause is not None else str(exc)
            raise PagerDutyError(what, detail) from exc
        except httpx2.HTTPError as exc:
            raise PagerDutyError(what, f"{type(exc).__name__}: {exc}") from exc

    # -- Events API v2 ------------------------------------------------------------------------

    def send(self, event: Mapping[str, Any]) -> str:
        """Send an event built by `prepare_event`; returns the dedup key PagerDuty answered with."""
        body = dict(event)
        action = body.pop("event_action")
        dedup_key = body.pop("dedup_key")
        return str(self._guard(f"{action} event {dedup_key}", lambda: self._events().send_event(action, dedup_key, **body)))

    def trigger(
        self,
        dedup_key: str,
        summary: str,
        severity: str,
        source: str,
        component: str | None = None,
        custom_details: Mapping[str, Any] | None = None,
        links: Sequence[Mapping[str, str]] | None = None,
        *,
        group: str | None = None,
        event_class: str | None = None,
    ) -> str:
        return self.send(prepare_event(
            "trigger", dedup_key, summary=summary, severity=severity, source=source, component=component,
            group=group, event_class=event_class, custom_details=custom_details, links=links,
        ))

    def acknowledge(self, dedup_key: str) -> str:
        return self.send(prepare_event("acknowledge", dedup_key))

    def resolve(self, dedup_key: str) -> str:
        return self.send(prepare_event("resolve", dedup_key))

    # -- REST API -----------------------------------------------------------------------------

    def oncall_users(self, schedule_id: str, at: dt.datetime | str) -> list[dict[str, Any]]:
        """Who is on call on `schedule_id` at `at`: [{id, name, email}], first escalation level first."""
        when = _instant(at)
        # A one-second window: the on-call periods that contain `at` (PagerDuty wants since < until).
        params = {
            "schedule_ids[]": [schedule_id],
            "since": when.isoformat(),
            "until": (when + dt.timedelta(seconds=1)).isoformat(),
            "include[]": ["users"],
        }
        oncalls = self._guard(
            f"GET /oncalls for schedule {schedule_id}", lambda: self._rest().list_all("/oncalls", params=params)
        )
        users: dict[str, dict[str, Any]] = {}
        for oncall in sorted(oncalls, key=lambda item: item.get("escalation_level") or 0):
            user = oncall.get("user") or {}
            if user.get("id") and user["id"] not in users:
                users[user["id"]] = {
                    "id": user["id"],
                    "name": user.get("name") or user.get("summary"),
                    "email": user.get("email"),
                }
        return list(users.values())

    def incident_for_dedup_key(self, dedup_key: str) -> dict[str, Any] | None:
        """The PagerDuty incident of an incident key: {id, status, acknowledged_at, acknowledged_by}, or None."""
        incidents = self._guard(
            f"GET /incidents for {dedup_key}",
            lambda: self._rest().rget("/incidents", params={"incident_key": dedup_key, "date_range": "all"}),
        )
        if not incidents:
            return None
        # A key re-triggered after a resolve has several incidents: the open one, else the latest.
        latest_first = sorted(incidents, key=lambda item: item.get("created_at") or "", reverse=True)
        incident = next((item for item in latest_first if item.get("status") != "resolved"), latest_first[0])
        acks = sorted(incident.get("acknowledgements") or [], key=lambda ack: ack.get("at") or "")
        first = acks[0] if acks else {}
        acknowledger = first.get("acknowledger") or {}
        return {
            "id": incident.get("id"),
            "status": incident.get("status"),
            "acknowledged_at": first.get("at"),
            "acknowledged_by": acknowledger.get("summary") or acknowledger.get("id"),
            "acknowledged_by_id": acknowledger.get("id"),
            "urgency": incident.get("urgency"),
        }

    def make_high_urgency(self, incident_id: str) -> dict[str, Any]:
        """`PUT /incidents/{id}` with urgency high (idempotent, so retried as any PUT). PagerDuty keeps an
        open incident's urgency when a more severe alert of the same key arrives: a P3 paged at night
        (low urgency, no phone) and raised to P1/P2 would otherwise never reach anyone's high-urgency
        notification rules."""
        body = {"incident": {"type": "incident_reference", "urgency": "high"}}
        return self._guard(f"PUT /incidents/{incident_id} urgency=high",
                           lambda: self._rest().rput(f"/incidents/{incident_id}", json=body))

    def wait_for_incident(self, dedup_key: str, attempts: int = 10, interval: float = 1.0,
                          sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
        """The incident of a just-triggered event (PagerDuty creates it asynchronously)."""
        for attempt in range(1, attempts + 1):
            incident = self.incident_for_dedup_key(dedup_key)
            if incident is not None:
                return incident
            if attempt < attempts:
                sleep(interval)
        raise PagerDutyError(f"GET /incidents for {dedup_key}", f"no incident after {attempts} look-ups")

    def responder_requests(self, incident_id: str, user_id: str | None = None) -> list[dict[str, Any]]:
        """The incident's responder requests (`GET /incidents/{id}`), those naming `user_id` when given."""
        incident = self._guard(f"GET /incidents/{incident_id}", lambda: self._rest().rget(f"/incidents/{incident_id}"))
        requests = list((incident or {}).get("responder_requests") or [])
        return [r for r in requests if user_id is None or user_id in _targets(r)]

    def add_responder(self, incident_id: str, user_id: str, message: str, requester_id: str) -> dict[str, Any]:
        """Ask a user to respond (POST /incidents/{id}/responder_requests) — one phone call, not two.

        PagerDuty notifies responders with their high-urgency notification rules (a phone call when the
        user has one), which is how the runbook's 電話 escalation is placed. The POST is sent once per
        attempt; after a 5xx, a timeout or a dropped connection the incident's responder requests for
        the user are read, and a request that was not there before is taken as the lost one's
        (returned with "adopted": True) instead of asking again. Up to `retry_attempts` more
        attempts, `backoff` apart (doubling).
        """
        body = {
            "requester_id": requester_id,
            "message": message,
            "responder_request_targets": [
                {"responder_request_target": {"id": user_id, "type": "user_reference"}},
            ],
        }
        what = f"responder request for {user_id} on {incident_id}"
        once = self.rest_once or single_attempt(self._rest(), self.retry_attempts)
        before = len(self.responder_requests(incident_id, user_id))

        def adopt() -> dict[str, Any] | None:
            found = self.responder_requests(incident_id, user_id)
            if len(found) <= before:
                return None
            log.warning("the %s lost its answer but PagerDuty recorded it: not asking again", what)
            return {**found[-1], "adopted": True}

        retrying = Retrying(
            retry=retry_if_exception(_may_have_acted),
            wait=wait_exponential(multiplier=self.backoff, max=60),
            stop=stop_after_attempt(self.retry_attempts + 1),
            sleep=self.sleep,
            reraise=True,
        )

        def send() -> dict[str, Any]:
            try:
                for attempt in retrying:
                    with attempt:
                        if attempt.retry_state.attempt_number > 1 and (adopted := adopt()) is not None:
                            return adopted
                        return once.rpost(f"/incidents/{incident_id}/responder_requests", json=body)
            except (pagerduty.Error, httpx2.HTTPError) as exc:
                if _may_have_acted(exc) and (adopted := adopt()) is not None:  # the last one may have landed
                    return adopted
                raise
            raise AssertionError("unreachable")

        return self._guard(what, send)

    def push_contact_methods(self, user_id: str) -> list[dict[str, Any]]:
        """The user's push-notification contact methods (the PagerDuty app that receives alerts)."""
        methods = self._guard(
            f"GET /users/{user_id}/contact_methods",
            lambda: self._rest().rget(f"/users/{user_id}/contact_methods"),
        )
        return [method for method in methods or [] if method.get("type") == "push_notification_contact_method"]
