"""PagerDuty stand-in under /pagerduty: Events API v2 and the REST endpoints the automation uses.

The `pagerduty` client accepts only https:// base URLs, so use the sandbox's HTTPS port with its CA
bundle: `EventsApiV2Client(key, base_url=f"{https}/pagerduty")` posts to /pagerduty/v2/enqueue and
`RestApiV2Client(token, base_url=f"{https}/pagerduty")` reads /pagerduty/oncalls etc.

Incidents are kept by dedup_key (triggered -> acknowledged -> resolved) and assigned to the
rotation's engineer of the runbook (the schedule). A person acknowledges (or resolves) in the app
through the control calls POST /_sandbox/pagerduty/acknowledge|resolve, or through the REST API
(PUT /incidents/{id} with a From header). Each transition (acknowledged, resolved, reassigned) is
sent as a signed v3 webhook to the subscription URL, if one is configured (see webhooks.py).
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from incident_ops.core.oncall import rotation_engineer, rotation_week

from .state import iso

if TYPE_CHECKING:
    from .context import SandboxContext

__all__ = ["PagerDutyState", "router"]

SERVICE = {"id": "PSVC001", "type": "service_reference", "summary": "PeopleBooster Production"}
POLICY = {"id": "PEPOL01", "type": "escalation_policy_reference", "summary": "PeopleBooster On-call"}
WEB = "https://peoplebooster.pagerduty.com"


def _event_id() -> str:
    """A ULID-like id, as PagerDuty's v3 event ids are (26 characters, time first)."""
    return f"{int(time.time() * 1000):012X}{uuid.uuid4().hex[:14].upper()}"


class PagerDutyState:
    def __init__(self, runbook: Any, notify: Callable[[dict[str, Any]], Any] | None = None) -> None:
        self.runbook = runbook
        self.notify = notify  # called with each v3 webhook event (outside the lock)
        self.lock = threading.RLock()
        self.incidents: dict[str, dict[str, Any]] = {}  # dedup_key -> incident
        self.events: list[dict[str, Any]] = []
        self.change_events: list[dict[str, Any]] = []
        self.webhooks: list[dict[str, Any]] = []  # every v3 webhook event, whether delivered or not
        self._numbers = itertools.count(1)
        self.people: dict[str, Any] = {}
        for person in [*runbook.oncall.roster, *runbook.contacts.people.values()]:
            if person.pagerduty_user_id:
                self.people[person.pagerduty_user_id] = person

    # --- people --------------------------------------------------------------------------------

    def user_ref(self, user_id: str) -> dict[str, Any]:
        person = self.people.get(user_id)
        return {
            "id": user_id,
            "type": "user_reference",
            "summary": person.name if person else user_id,
            "self": f"https://api.pagerduty.com/users/{user_id}",
            "html_url": f"{WEB}/users/{user_id}",
        }

    def user_full(self, user_id: str) -> dict[str, Any]:
        """The user object (what `include[]=users` expands a reference to)."""
        person = self.people.get(user_id)
        ref = self.user_ref(user_id)
        return {
            **ref,
            "type": "user",
            "name": person.name if person else user_id,
            "email": person.email if person else None,
            "time_zone": self.runbook.calendar.timezone,
            "role": "user",
        }

    def resolve_user(self, ref: str | None) -> str | None:
        """A PagerDuty user id from a PD id, a roster/people id, an email or a Slack id."""
        if not ref:
            return None
        if ref in self.people:
            return ref
        for entry in self.runbook.oncall.roster:
            if ref in (entry.id, entry.email, entry.slack_user_id):
                return entry.pagerduty_user_id
        for key, person in self.runbook.contacts.people.items():
            if ref in (key, person.email, person.slack_user_id):
                return person.pagerduty_user_id
        return None

    def oncall_user(self, at: dt.datetime) -> str:
        return rotation_engineer(self.runbook, at).pagerduty_user_id or rotation_engineer(self.runbook, at).id

    # --- incidents -----------------------------------------------------------------------------

    def incident_view(self, incident: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in incident.items() if not k.startswith("_")}

    def enqueue(self, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        errors = []
        if not event.get("routing_key"):
            errors.append("'routing_key' is missing.")
        action = event.get("event_action")
        if action not in ("trigger", "acknowledge", "resolve"):
            errors.append("'event_action' is invalid (must be one of: trigger, acknowledge, resolve).")
        payload = event.get("payload") or {}
        dedup_key = event.get("dedup_key")
        if action == "trigger":
            for key in ("summary", "source", "severity"):
                if not payload.get(key):
                    errors.append(f"'payload.{key}' is missing or blank.")
            if payload.get("severity") and payload["severity"] not in ("critical", "error", "warning", "info"):
                errors.append("'payload.severity' is invalid (must be one of: critical, error, warning, info).")
        elif action in ("acknowledge", "resolve") and not dedup_key:
            errors.append("'dedup_key' is missing or blank.")
        if errors:
            return 400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
        dedup_key = dedup_key or uuid.uuid4().hex
        now = time.time()
        webhook = None
        with self.lock:
            incident = self.incidents.get(dedup_key)
            if action == "trigger":
                # An open incident with this key absorbs the trigger (de-duplicated).
                if incident is None or incident["status"] == "resolved":
                    incident = self._new_incident(dedup_key, event, now)
                    self.incidents[dedup_key] = incident
            elif incident is not None and incident["status"] != "resolved":
                if action == "acknowledge" and incident["status"] == "triggered":
                    incident["status"] = "acknowledged"
                    incident["acknowledgements"].append({"at": iso(now), "acknowledger": {**SERVICE, "type": "service_reference"}})
                    webhook = self.webhook_event(incident, "incident.acknowledged", self.service_agent())
                elif action == "resolve":
                    incident["status"] = "resolved"
                    incident["resolved_at"] = iso(now)
                    webhook = self.webhook_event(incident, "incident.resolved", self.service_agent())
                incident["last_status_change_at"] = iso(now)
                incident["updated_at"] = iso(now)
            self.events.append(
                {
                    "at": iso(now),
                    "event_action": action,
                    "dedup_key": dedup_key,
                    "routing_key": event.get("routing_key"),
                    "payload": payload,
                    "links": event.get("links", []),
                    "images": event.get("images", []),
                    "client": event.get("client"),
                    "client_url": event.get("client_url"),
                    "incident_id": incident["id"] if incident else None,
                    "incident_status": incident["status"] if incident else None,
                }
            )
        self._send(webhook)
        return 202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key}

    def _new_incident(self, dedup_key: str, event: dict[str, Any], now: float) -> dict[str, Any]:
        payload = event.get("payload") or {}
        number = next(self._numbers)
        incident_id = f"Q{uuid.uuid4().hex[:13].upper()}"
        assignee = self.oncall_user(dt.datetime.fromtimestamp(now, dt.UTC))
        urgency = "high" if payload.get("severity") in ("critical", "error") else "low"
        return {
            "id": incident_id,
            "type": "incident",
            "summary": f"[#{number}] {payload.get('summary', '')}",
            "self": f"https://api.pagerduty.com/incidents/{incident_id}",
            "html_url": f"{WEB}/incidents/{incident_id}",
            "incident_number": number,
            "title": payload.get("summary", ""),
            "description": payload.get("summary", ""),
            "created_at": iso(now),
            "updated_at": iso(now),
            "status": "triggered",
            "incident_key": dedup_key,
            "service": SERVICE,
            "escalation_policy": POLICY,
            "assignments": [{"at": iso(now), "assignee": self.user_ref(assignee)}],
            "acknowledgements": [],
            "last_status_change_at": iso(now),
            "urgency": urgency,
            "priority": None,
            "alert_counts": {"all": 1, "triggered": 1, "resolved": 0},
            "responder_requests": [],
            "custom_details": payload.get("custom_details"),
        }

    def acknowledge(self, dedup_key: str, user: str | None) -> dict[str, Any]:
        """A person acknowledges (in the app, or through the REST API): incident.acknowledged."""
        user_id = self.resolve_user(user)
        webhook = None
        with self.lock:
            incident = self.incidents.get(dedup_key)
            if incident is None:
                raise KeyError(f"no incident with dedup_key {dedup_key!r}")
            if user_id is None:
                user_id = incident["assignments"][0]["assignee"]["id"] if incident["assignments"] else None
            if incident["status"] == "triggered":
                now = time.time()
                incident["status"] = "acknowledged"
                incident["acknowledgements"].append({"at": iso(now), "acknowledger": self.user_ref(user_id or "unknown")})
                incident["last_status_change_at"] = iso(now)
                incident["updated_at"] = iso(now)
                webhook = self.webhook_event(incident, "incident.acknowledged", self.user_ref(user_id) if user_id else None)
            view = self.incident_view(incident)
        self._send(webhook)
        return view

    def resolve(self, dedup_key: str, user: str | None) -> dict[str, Any]:
        """A person resolves (in the app, or through the REST API): incident.resolved."""
        user_id = self.resolve_user(user)
        webhook = None
        with self.lock:
            incident = self.incidents.get(dedup_key)
            if incident is None:
                raise KeyError(f"no incident with dedup_key {dedup_key!r}")
            if incident["status"] != "resolved":
                now = time.time()
                incident["status"] = "resolved"
                incident["resolved_at"] = incident["last_status_change_at"] = incident["updated_at"] = iso(now)
                webhook = self.webhook_event(incident, "incident.resolved", self.user_ref(user_id) if user_id else None)
            view = self.incident_view(incident)
        self._send(webhook)
        return view

    def set_urgency(self, dedup_key: str, urgency: str) -> dict[str, Any]:
        """A REST `PUT /incidents/{id}` changing the urgency (the escalation of a low-urgency page)."""
        with self.lock:
            incident = self.incidents.get(dedup_key)
            if incident is None:
                raise KeyError(f"no incident with dedup_key {dedup_key!r}")
            if incident["urgency"] != urgency:
                incident["urgency"] = urgency
                incident["updated_at"] = iso(time.time())
            return self.incident_view(incident)

    def reassign(self, dedup_key: str, assignee: str, user: str | None) -> dict[str, Any]:
        """A person reassigns the incident to `assignee`: incident.reassigned."""
        assignee_id = self.resolve_user(assignee)
        if assignee_id is None:
            raise ValueError(f"unknown PagerDuty user {assignee!r}")
        user_id = self.resolve_user(user)
        with self.lock:
            incident = self.incidents.get(dedup_key)
            if incident is None:
                raise KeyError(f"no incident with dedup_key {dedup_key!r}")
            now = time.time()
            incident["assignments"] = [{"at": iso(now), "assignee": self.user_ref(assignee_id)}]
            if incident["status"] == "acknowledged":  # PagerDuty: a reassigned incident is triggered again
                incident["status"] = "triggered"
                incident["last_status_change_at"] = iso(now)
            incident["updated_at"] = iso(now)
            webhook = self.webhook_event(incident, "incident.reassigned", self.user_ref(user_id) if user_id else None)
            view = self.incident_view(incident)
        self._send(webhook)
        return view

    # --- v3 webhooks ---------------------------------------------------------------------------

    def service_agent(self) -> dict[str, Any]:
        """The agent of a change made through the Events API (the integration's service)."""
        return {**SERVICE, "self": f"https://api.pagerduty.com/services/{SERVICE['id']}", "html_url": f"{WEB}/service-directory/{SERVICE['id']}"}

    def webhook_event(self, incident: dict[str, Any], event_type: str, agent: dict[str, Any] | None) -> dict[str, Any]:
        """The v3 webhook `event` object of a transition of `incident` (call with the lock held)."""
        return {
            "id": _event_id(),
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "agent": agent,
            "client": None,
            "data": {
                "id": incident["id"],
                "type": "incident",
                "self": incident["self"],
                "html_url": incident["html_url"],
                "number": incident["incident_number"],
                "status": incident["status"],
                "incident_key": incident["incident_key"],
                "created_at": incident["created_at"],
                "title": incident["title"],
                "service": self.service_agent(),
                "assignees": [{k: a["assignee"][k] for k in ("id", "type", "summary", "self", "html_url")} for a in incident["assignments"]],
                "escalation_policy": {**POLICY, "self": f"https://api.pagerduty.com/escalation_policies/{POLICY['id']}",
                                      "html_url": f"{WEB}/escalation_policies/{POLICY['id']}"},
                "teams": [],
                "priority": incident.get("priority"),
                "urgency": incident["urgency"],
                "conference_bridge": None,
                "resolve_reason": None,
            },
        }

    def _send(self, webhook: dict[str, Any] | None) -> None:
        if webhook is not None:
            with self.lock:
                self.webhooks.append(webhook)
            if self.notify is not None:
                self.notify(webhook)

    def by_id(self, incident_id: str) -> dict[str, Any] | None:
        with self.lock:
            return next((i for i in self.incidents.values() if i["id"] == incident_id), None)

    # --- schedule ------------------------------------------------------------------------------

    def oncall_entries(self, since: dt.datetime, until: dt.datetime) -> list[dict[str, Any]]:
        """The rotation's weekly shifts overlapping [since, until] (one when since == until)."""
        schedule_id = self.runbook.oncall.pagerduty_schedule_id or "PSCHED01"
        entries = []
        cursor = since
        for _ in range(60):
            start, end = rotation_week(self.runbook, cursor)
            user = self.oncall_user(cursor)
            entries.append(
                {
                    "user": self.user_ref(user),
                    "schedule": {"id": schedule_id, "type": "schedule_reference", "summary": "PeopleBooster Weekly Rotation"},
                    "escalation_policy": POLICY,
                    "escalation_level": 1,
                    "start": start.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "end": end.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            )
            if end > until:
                break
            cursor = end
        return entries


# --- HTTP --------------------------------------------------------------------------------------

router = APIRouter()


def _error(status: int, message: str, code: int, errors: list[str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "code": code, "errors": errors or []}}, status_code=status)


def _rest_auth(request: Request) -> JSONResponse | None:
    auth = request.headers.get("authorization", "")
    if not (auth.startswith("Token token=") or auth.lower().startswith("bearer ")):
        return _error(401, "Unauthorized", 2006, ["Authorization header with a token is required"])
    return None


def _parse_time(value: str | None, default: dt.datetime) -> dt.datetime:
    if not value:
        return default
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return default
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _list_param(request: Request, name: str) -> list[str]:
    return request.query_params.getlist(f"{name}[]") + request.query_params.getlist(name)


def _paged(key: str, items: list[Any], request: Request) -> dict[str, Any]:
    limit = int(request.query_params.get("limit") or 25)
    offset = int(request.query_params.get("offset") or 0)
    page = items[offset : offset + limit]
    total = len(items) if request.query_params.get("total") == "true" else None
    return {key: page, "limit": limit, "offset": offset, "more": offset + limit < len(items), "total": total}


@router.post("/pagerduty/v2/enqueue")
async def enqueue(request: Request) -> JSONResponse:
    ctx: SandboxContext = request.app.state.ctx
    try:
        event = await request.json()
    except ValueError:
        return JSONResponse({"status": "invalid event", "message": "Event object is invalid", "errors": ["Malformed JSON"]}, status_code=400)
    if not isinstance(event, dict):
        return JSONResponse({"status": "invalid event", "message": "Event object is invalid", "errors": ["Not an object"]}, status_code=400)
    status, body = ctx.pagerduty.enqueue(event)
    return JSONResponse(body, status_code=status)


@router.post("/pagerduty/v2/change/enqueue")
async def change_enqueue(request: Request) -> JSONResponse:
    ctx: SandboxContext = request.app.state.ctx
    event = await request.json()
    with ctx.pagerduty.lock:
        ctx.pagerduty.change_events.append({"at": iso(time.time()), **event})
    return JSONResponse({"status": "success", "message": "Change event processed"}, status_code=202)


@router.get("/pagerduty/oncalls")
def oncalls(request: Request) -> JSONResponse:
    ctx: SandboxContext = request.app.state.ctx
    if (denied := _rest_auth(request)) is not None:
        return denied
    now = dt.datetime.now(dt.UTC)
    since = _parse_time(request.query_params.get("since"), now)
    until = _parse_time(request.query_params.get("until"), since)
    if until < since:
        return _error(400, "Invalid Input Provided", 2001, ["until must be after since"])
    wanted = _list_param(request, "schedule_ids")
    known = ctx.runbook.oncall.pagerduty_schedule_id or "PSCHED01"
    entries = ctx.pagerduty.oncall_entries(since, until) if (not wanted or known in wanted) else []
    users = _list_param(request, "user_ids")
    if users:
        entries = [e for e in entries if e["user"]["id"] in users]
    if "users" in _list_param(request, "include"):
        entries = [{**e, "user": ctx.pagerduty.user_full(e["user"]["id"])} for e in entries]
    if request.query_params.get("earliest") == "true":
        entries = entries[:1]
    return JSONResponse(_paged("oncalls", entries, request))


@router.get("/pagerduty/schedules/{schedule_id}")
def schedule(schedule_id: str, request: Request) -> JSONResponse:
    ctx: SandboxContext = request.app.state.ctx
    if (denied := _rest_auth(request)) is not None:
        return denied
    if schedule_id != (ctx.runbook.oncall.pagerduty_schedule_id or "PSCHED01"):
        return _error(404, "Not Found", 2100)
    now = dt.datetime.now(dt.UTC)
    since = _parse_time(request.query_params.get("since"), now)
    until = _parse_time(request.query_params.get("until"), since + dt.timedelta(days=14))
    entries = ctx.pagerduty.oncall_entries(since, until)
    rendered = [{"start": e["start"], "end": e["end"], "user": e["user"]} for e in entries]
    users = [ctx.pagerduty.user_ref(p.pagerduty_user_id) for p in ctx.runbook.oncall.roster if p.pagerduty_user_id]
    return JSONResponse(
        {
            "schedule": {
                "id": schedule_id,
                "type": "schedule",
                "summary": "PeopleBooster Weekly Rotation",
                "name": "PeopleBooster Weekly Rotation",
                "time_zone": ctx.runbook.calendar.timezone,
                "html_url": f"{WEB}/schedules/{schedule_id}",
                "users": users,
                "escalation_policies": [POLICY],
                "final_schedule": {"name": "Final Schedule", "rendered_schedule_entries": rendered},
            }
        }
    )


@router.get("/pagerduty/incidents")
def incidents(request: Request) -> JSONResponse:
    ctx: SandboxContext = request.app.state.ctx
    if (denied := _rest_auth(request)) is not None:
        return denied
    key = request.query_params.get("incident_key")
    statuses = _list_param(request, "statuses")
    with ctx.pagerduty.lock:
        items = [
            ctx.pagerduty.incident_view(i)
            for i in ctx.pagerduty.incidents.values()
            if (key is None or i["incident_key"] == key) and (not statuses or i["status"] in statuses)
        ]
    return JSONResponse(_paged("incidents", items, request))


@router.get("/pagerduty/incidents/{incident_id}")
def incident(incident_id: str, request: Request) -> JSONResponse:
    ctx: SandboxContext = request.app.state.ctx
    if (denied := _rest_auth(request)) is not None:
        return denied
    found = ctx.pagerduty.by_id(incident_id)
    if found is None:
        return _error(404, "Not Found", 2100)
    return JSONResponse({"incident": ctx.pagerduty.incident_view(found)})


@router.put("/pagerduty/incidents/{incident_id}")
async def update_incident(incident_id: str, request: Request) -> JSONResponse:
    ctx: SandboxContext = request.app.state.ctx
    if (denied := _rest_auth(request)) is not None:
        return denied
    found = ctx.pagerduty.by_id(incident_id)
    if found is None:
        return _error(404, "Not Found", 2100)
    body = await request.json()
    change = body.get("incident") if isinstance(body, dict) else None
    change = change if isinstance(change, dict) else {}
    status, urgency = change.get("status"), change.get("urgency")
    if status is None and urgency is None:
        return _error(400, "Invalid Input Provided", 2001, ["status or urgency is required"])
    if status is not None and status not in ("acknowledged", "resolved"):
        return _error(400, "Invalid Input Provided", 2001, ["status must be acknowledged or resolved"])
    if urgency is not None and urgency not in ("high", "low"):
        return _error(400, "Invalid Input Provided", 2001, ["urgency must be high or low"])
    sender = ctx.pagerduty.resolve_user(request.headers.get("from"))
    view = ctx.pagerduty.incident_view(found)
    if urgency is not None:
        view = ctx.pagerduty.set_urgency(found["incident_key"], urgency)
    if status == "acknowledged":
        view = ctx.pagerduty.acknowledge(found["incident_key"], sender)
    elif status == "resolved":
        view = ctx.pagerduty.resolve(found["incident_key"], sender)
    return JSONResponse({"incident": view})


@router.post("/pagerduty/incidents/{incident_id}/responder_requests")
async def responder_requests(incident_id: str, request: Request) -> JSONResponse:
    ctx: SandboxContext = request.app.state.ctx
    if (denied := _rest_auth(request)) is not None:
        return denied
    found = ctx.pagerduty.by_id(incident_id)
    if found is None:
        return _error(404, "Not Found", 2100)
    body = await request.json()
    if isinstance(body.get("responder_request"), dict):
        body = body["responder_request"]
    targets = body.get("responder_request_targets") or []
    requester = body.get("requester_id")
    if not requester or not targets:
        return _error(400, "Invalid Input Provided", 2001, ["requester_id and responder_request_targets are required"])
    now = iso(time.time())
    resolved_targets = []
    for item in targets:
        target = item.get("responder_request_target", item)
        resolved_targets.append(
            {
                "responder_request_target": {
                    "id": target.get("id"),
                    "type": target.get("type", "user_reference"),
                    "summary": ctx.pagerduty.user_ref(target.get("id", "")).get("summary"),
                    "incidents_responders": [
                        {"state": "pending", "user": ctx.pagerduty.user_ref(target.get("id", "")), "incident": {"id": incident_id, "type": "incident_reference"}, "updated_at": now, "message": body.get("message", "")}
                    ],
                }
            }
        )
    request_obj = {
        "incident": {"id": incident_id, "type": "incident_reference", "summary": found["summary"]},
        "requester": ctx.pagerduty.user_ref(requester),
        "requested_at": now,
        "message": body.get("message", ""),
        "responder_request_targets": resolved_targets,
    }
    with ctx.pagerduty.lock:
        found["responder_requests"].append(request_obj)
    return JSONResponse({"responder_request": request_obj})


@router.get("/pagerduty/users/{user_id}")
def user(user_id: str, request: Request) -> JSONResponse:
    ctx: SandboxContext = request.app.state.ctx
    if (denied := _rest_auth(request)) is not None:
        return denied
    person = ctx.pagerduty.people.get(user_id)
    if person is None:
        return _error(404, "Not Found", 2100)
    return JSONResponse({"user": ctx.pagerduty.user_full(user_id)})


@router.get("/pagerduty/users/{user_id}/contact_methods")
def contact_methods(user_id: str, request: Request) -> JSONResponse:
    ctx: SandboxContext = request.app.state.ctx
    if (denied := _rest_auth(request)) is not None:
        return denied
    person = ctx.pagerduty.people.get(user_id)
    if person is None:
        return _error(404, "Not Found", 2100)
    methods = [
        {"id": f"PE{user_id[-5:]}", "type": "email_contact_method", "summary": "Work", "label": "Work", "address": person.email},
        {"id": f"PP{user_id[-5:]}", "type": "phone_contact_method", "summary": "Mobile", "label": "Mobile", "country_code": 81, "address": getattr(person, "phone", None) or "9012345678"},
        {"id": f"PS{user_id[-5:]}", "type": "sms_contact_method", "summary": "Mobile", "label": "Mobile", "country_code": 81, "address": getattr(person, "phone", None) or "9012345678"},
    ]
    if user_id != ctx.faults.pagerduty_no_push_user:
        methods.append({"id": f"PN{user_id[-5:]}", "type": "push_notification_contact_method", "summary": "iPhone", "label": "iPhone", "address": uuid.uuid5(uuid.NAMESPACE_DNS, user_id).hex, "device_type": "ios"})
    return JSONResponse({"contact_methods": methods})
