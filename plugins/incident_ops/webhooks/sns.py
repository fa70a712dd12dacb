"""Amazon SNS HTTP(S) deliveries: the envelope, its signature (versions 1 and 2) and the URL rules.

Pure (no Airflow, no network): the certificate is fetched by a function the caller gives.

- `parse_envelope(body)`: the JSON envelope SNS posts (`Type` Notification, SubscriptionConfirmation
  or UnsubscribeConfirmation) with every field the type needs, or `SnsError` (400).
- `check_sns_url(url, extra_hosts, regions=...)`: `https://sns.<region>.amazonaws.com[.cn]/...` on the
  default port in one of the allowed regions, or one of the explicitly configured extra `host:port`
  (the sandbox); a certificate only at SNS's own path shape `/SimpleNotificationService-<32 hex>.pem`;
  anything else is refused (403) before any connection is made. Used for SigningCertURL and SubscribeURL.
- `verify_signature(envelope, public_key)`: SignatureVersion 1 = SHA1withRSA, 2 = SHA256withRSA,
  over SNS's canonical "key\\nvalue\\n" string of the type's fields (403 when it does not verify).
- `CertificateCache`: the signing certificates' public keys per URL (LRU, bounded); one fetch per URL
  at a time, shared by every caller waiting for it (its failure too); failures remembered for a
  while (negative cache); at most `max_fetches` URLs in flight (more: 503 `busy`); a certificate
  outside its validity period is refused on every use. `get` waits in the calling thread, `aget` in
  the event loop (the fetch runs on the caller's small dedicated executor).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import datetime as dt
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor, Future
from typing import Any, NamedTuple
from urllib.parse import SplitResult, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = [
    "MESSAGE_TYPES",
    "CertificateCache",
    "SnsError",
    "alarm_from_message",
    "check_sns_url",
    "has_lone_surrogate",
    "is_aws_sns_host",
    "load_public_key",
    "loads",
    "parse_envelope",
    "parse_timestamp",
    "string_to_sign",
    "verify_signature",
]

MESSAGE_TYPES: tuple[str, ...] = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
_COMMON = ("Type", "MessageId", "TopicArn", "Message", "Timestamp", "SignatureVersion", "Signature", "SigningCertURL")
_REQUIRED: dict[str, tuple[str, ...]] = {
    "Notification": _COMMON,
    "SubscriptionConfirmation": (*_COMMON, "Token", "SubscribeURL"),
    "UnsubscribeConfirmation": (*_COMMON, "Token", "SubscribeURL"),
}
# The fields SNS signs, in this (byte) order; Subject only when the message has one.
_SIGNED: dict[str, tuple[str, ...]] = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
_AWS_SNS_HOST = re.compile(r"^sns\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")
# The only path SNS serves its signing certificates at.
_CERT_PATH = re.compile(r"^/SimpleNotificationService-[0-9a-fA-F]{32}\.pem$")
_TOPIC_ARN = re.compile(r"^arn:aws(-[a-z]+)*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]{1,256}$")
_MESSAGE_ID = re.compile(r"^[A-Za-z0-9-]{1,128}$")
_MAX_CERT_BYTES = 64 * 1024


class SnsError(Exception):
    """A delivery refused: HTTP `status`, a short `code` and the `reason` told to the sender."""

    def __init__(self, status: int, code: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = reason


def parse_timestamp(value: str) -> dt.datetime:
    """SNS's ISO 8601 time (`2026-11-27T15:30:00.123Z`) as an aware UTC datetime; ValueError if not one
    (also for a time UTC cannot hold, such as `0001-01-01T00:00:00+09:00`)."""
    if not isinstance(value, str) or not value or len(value) > 40:
        raise ValueError("not an ISO 8601 time")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        if parsed.tzinfo is None:
            raise ValueError("the time has no time zone")
        return parsed.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("the time is out of range") from None


def loads(text: str) -> Any:
    """`json.loads`, with `NaN`/`Infinity`/`-Infinity` (not JSON, which a database would refuse later
    in the run's conf) kept as those strings."""
    return json.loads(text, parse_constant=str)


def has_lone_surrogate(text: str) -> bool:
    """True when `text` holds a lone UTF-16 surrogate (`\\ud800` in JSON): no UTF-8 for it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def parse_envelope(body: bytes) -> dict[str, str]:
    """The SNS envelope from the raw body, checked for shape (not yet for authenticity)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SnsError(400, "malformed", "the body is not UTF-8") from None
    try:
        data = loads(text)
    except (ValueError, RecursionError):
        raise SnsError(400, "malformed", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise SnsError(400, "malformed", "the body must be a JSON object (the SNS envelope)")
    kind = data.get("Type")
    if kind not in MESSAGE_TYPES:
        raise SnsError(400, "malformed", f"Type must be one of {', '.join(MESSAGE_TYPES)}, got {str(kind)[:60]!r}")
    missing = [key for key in _REQUIRED[kind] if key not in data]
    if missing:
        raise SnsError(400, "malformed", f"{kind} without {', '.join(missing)}")
    envelope: dict[str, str] = {}
    for key in (*_REQUIRED[kind], "Subject", "UnsubscribeURL"):
        if key not in data or (key == "Subject" and data[key] is None):
            continue
        if not isinstance(data[key], str):
            raise SnsError(400, "malformed", f"{key} must be a string")
        if has_lone_surrogate(data[key]):
            raise SnsError(400, "malformed", f"{key} holds a lone surrogate (not UTF-8 text)")
        envelope[key] = data[key]
    if envelope["SignatureVersion"] not in _HASHES:
        raise SnsError(400, "malformed", f"SignatureVersion must be '1' or '2', got {envelope['SignatureVersion'][:20]!r}")
    if not _MESSAGE_ID.match(envelope["MessageId"]):
        raise SnsError(400, "malformed", "MessageId is not an SNS message id")
    if not _TOPIC_ARN.match(envelope["TopicArn"]):
        raise SnsError(400, "malformed", f"TopicArn is not an SNS topic ARN: {envelope['TopicArn'][:200]!r}")
    try:
        parse_timestamp(envelope["Timestamp"])
    except ValueError:
        raise SnsError(400, "malformed", f"Timestamp is not an ISO 8601 time: {envelope['Timestamp'][:60]!r}") from None
    return envelope


def string_to_sign(envelope: Mapping[str, str]) -> bytes:
    """SNS's canonical string: for each signed field present, "name\\nvalue\\n", in SNS's order."""
    parts: list[str] = []
    for key in _SIGNED[envelope["Type"]]:
        if key in envelope:
            parts.append(f"{key}\n{envelope[key]}\n")
    return "".join(parts).encode("utf-8")


def is_aws_sns_host(host: str) -> bool:
    return bool(_AWS_SNS_HOST.match(host))


def check_sns_url(url: str, extra_hosts: Iterable[str] = (), *, what: str = "SigningCertURL",
                  pem: bool = False, regions: Iterable[str] | None = None) -> SplitResult:
    """The URL when SNS may have sent it (https, an SNS host of one of `regions` (None: any region)
    or an extra host, default port, no credentials; with `pem`, SNS's certificate path), else 403."""

    def refuse(why: str) -> SnsError:
        return SnsError(403, "url_not_allowed", f"{what} {url[:200]!r} refused: {why}")

    if not isinstance(url, str) or len(url) > 2048 or any(ch in url for ch in "\r\n\t\\ "):
        raise refuse("not a plain URL")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise refuse("not a valid URL") from None
    if parts.scheme.lower() != "https":
        raise refuse("only https is allowed")
    if "@" in parts.netloc or parts.username or parts.password:
        raise refuse("credentials in the URL")
    if parts.fragment:
        raise refuse("a fragment in the URL")
    host = (parts.hostname or "").lower()
    netloc = parts.netloc.lower()
    allowed_extra = {h.lower() for h in extra_hosts}
    aws = _AWS_SNS_HOST.match(host)
    if aws and port in (None, 443):
        if regions is not None and aws.group(1) not in regions:
            raise refuse(f"the region {aws.group(1)!r} is not one of the allowed topics' regions "
                         "(INCIDENT_OPS_SNS_CERT_REGIONS)")
    elif netloc in allowed_extra or (port in (None, 443) and host in allowed_extra):
        pass
    else:
        raise refuse("the host must be sns.<region>.amazonaws.com (or a configured extra host)")
    if pem and (parts.query or not _CERT_PATH.match(parts.path)):
        raise refuse("not an SNS certificate path (/SimpleNotificationService-<32 hex digits>.pem)")
    return parts


def verify_signature(envelope: Mapping[str, str], public_key: rsa.RSAPublicKey) -> None:
    """Raise SnsError(403) unless `Signature` is the RSA signature of the canonical string."""
    try:
        signature = base64.b64decode(envelope["Signature"], validate=True)
    except (binascii.Error, ValueError):
        raise SnsError(403, "signature_invalid", "Signature is not base64") from None
    algorithm = _HASHES[envelope["SignatureVersion"]]()
    try:
        public_key.verify(signature, string_to_sign(envelope), padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise SnsError(403, "signature_invalid",
                       f"the SNS signature (version {envelope['SignatureVersion']}) does not verify") from None


class _Certificate(NamedTuple):
    key: rsa.RSAPublicKey
    not_before: dt.datetime
    not_after: dt.datetime


def _certificate(pem: bytes) -> _Certificate:
    if len(pem) > _MAX_CERT_BYTES:
        raise SnsError(403, "certificate_invalid", "the signing certificate is too large")
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise SnsError(403, "certificate_invalid", "the SigningCertURL did not give a PEM certificate") from None
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SnsError(403, "certificate_invalid", "the signing certificate has no RSA key")
    return _Certificate(key, cert.not_valid_before_utc, cert.not_valid_after_utc)


def _valid_at(certificate: _Certificate, now: dt.datetime) -> rsa.RSAPublicKey:
    if not certificate.not_before <= now <= certificate.not_after:
        raise SnsError(403, "certificate_invalid", "the signing certificate is expired or not yet valid")
    return certificate.key


def load_public_key(pem: bytes, now: dt.datetime) -> rsa.RSAPublicKey:
    """The RSA public key of a PEM certificate valid at `now`, else SnsError(403)."""
    return _valid_at(_certificate(pem), now)


def _shutting_down(url: str) -> bytes:
    raise SnsError(503, "busy", "the webhook is shutting down; retry later")


def _busy(reason: str) -> SnsError:
    return SnsError(503, "busy", reason)


class CertificateCache:
    """Public keys of signing certificates per URL: LRU with at most `size` entries.

    - One fetch per URL at a time: the first caller starts it, every other caller waits for that
      same fetch and gets its result, a failure included (a burst with a cold cache makes one request).
    - A failure (403: not found, unreachable, not a certificate) is remembered for `failure_ttl`
      seconds (at most `max_failures` URLs, LRU): a repeat is answered without a request.
    - At most `max_fetches` URLs are fetched at once; a caller that would start one more gets
      SnsError(503, "busy") at once. So the table of fetches in flight is bounded too.
    - A waiter gives up after `timeout` seconds with SnsError(503, "busy"); the fetch goes on.
    - The certificate's validity is checked again on every use.
    """

    def __init__(self, size: int = 32, *, failure_ttl: float = 60.0, max_failures: int = 256, max_fetches: int = 4,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if size < 1 or max_failures < 1 or max_fetches < 1:
            raise ValueError("size, max_failures and max_fetches must be >= 1")
        self.size = size
        self.failure_ttl = failure_ttl
        self.max_failures = max_failures
        self.max_fetches = max_fetches
        self._monotonic = monotonic
        self._entries: OrderedDict[str, _Certificate] = OrderedDict()
        self._failures: OrderedDict[str, tuple[float, tuple[int, str, str]]] = OrderedDict()
        self._flights: dict[str, Future[_Certificate]] = {}
        self._lock = threading.Lock()
        self.fetches = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._flights)

    def _begin(self, url: str) -> _Certificate | tuple[Future[_Certificate], bool]:
        """The cached certificate, or (the fetch to wait for, whether the caller must run it)."""
        with self._lock:
            entry = self._entries.get(url)
            if entry is not None:
                self._entries.move_to_end(url)
                return entry
            failure = self._failures.get(url)
            if failure is not None:
                until, error = failure
                if self._monotonic() < until:
                    raise SnsError(*error)
                del self._failures[url]
            flight = self._flights.get(url)
            if flight is not None:
                return flight, False
            if len(self._flights) >= self.max_fetches:
                raise _busy(f"{self.max_fetches} signing certificates are being fetched already; retry later")
            flight = Future()
            flight.set_running_or_notify_cancel()  # nobody can cancel it: every waiter shares it
            self._flights[url] = flight
            self.fetches += 1
            return flight, True

    def _run(self, url: str, fetch: Callable[[str], bytes], flight: Future[_Certificate]) -> None:
        entry: _Certificate | None = None
        error: tuple[int, str, str] | None = None
        try:
            entry = _certificate(fetch(url))
        except SnsError as exc:
            error = (exc.status, exc.code, exc.reason)
        except Exception as exc:  # noqa: BLE001 - any fetch failure is the certificate being unavailable
            error = (403, "certificate_unavailable", f"the signing certificate could not be fetched: {type(exc).__name__}")
        with self._lock:
            self._flights.pop(url, None)
            if entry is not None:
                self._entries[url] = entry
                self._entries.move_to_end(url)
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
            elif error is not None and error[0] < 500:
                self._failures[url] = (self._monotonic() + self.failure_ttl, error)
                self._failures.move_to_end(url)
                while len(self._failures) > self.max_failures:
                    self._failures.popitem(last=False)
        if entry is not None:
            flight.set_result(entry)
        else:
            flight.set_exception(SnsError(*(error or (403, "certificate_unavailable", "no certificate"))))

    @staticmethod
    def _again(exc: SnsError) -> SnsError:
        return SnsError(exc.status, exc.code, exc.reason)  # each waiter raises its own exception

    def get(self, url: str, fetch: Callable[[str], bytes], now: dt.datetime,
            timeout: float | None = None) -> rsa.RSAPublicKey:
        """The key for `url` valid at `now`; fetches in this thread when no fetch is in flight."""
        got = self._begin(url)
        if isinstance(got, _Certificate):
            return _valid_at(got, now)
        flight, owner = got
        if owner:
            self._run(url, fetch, flight)
        try:
            entry = flight.result(timeout)
        except concurrent.futures.TimeoutError:
            raise _busy("the signing certificate is still being fetched; retry later") from None
        except SnsError as exc:
            raise self._again(exc) from None
        return _valid_at(entry, now)

    async def aget(self, url: str, fetch: Callable[[str], bytes], now: dt.datetime, executor: Executor,
                   timeout: float | None = None) -> rsa.RSAPublicKey:
        """`get` for the event loop: a fetch runs on `executor`, waiters hold no thread."""
        got = self._begin(url)
        if isinstance(got, _Certificate):
            return _valid_at(got, now)
        flight, owner = got
        if owner:
            try:
                executor.submit(self._run, url, fetch, flight)
            except RuntimeError:  # the executor is shut down (the process is stopping)
                self._run(url, _shutting_down, flight)
        try:
            entry = await asyncio.wait_for(asyncio.wrap_future(flight), timeout)
        except TimeoutError:
            raise _busy("the signing certificate is still being fetched; retry later") from None
        except SnsError as exc:
            raise self._again(exc) from None
        return _valid_at(entry, now)


def alarm_from_message(message: str) -> dict[str, Any]:
    """The CloudWatch alarm in a Notification's Message, or SnsError(422) when it is not one."""
    try:
        alarm = loads(message)
    except (ValueError, RecursionError):
        raise SnsError(422, "not_an_alarm", "the Message is not JSON: not a CloudWatch alarm notification") from None
    if not isinstance(alarm, dict):
        raise SnsError(422, "not_an_alarm", "the Message is not a JSON object: not a CloudWatch alarm notification")
    if has_lone_surrogate(json.dumps(alarm, ensure_ascii=False)):
        raise SnsError(422, "not_an_alarm", "the alarm holds a lone surrogate (not UTF-8 text)")
    name = alarm.get("AlarmName")
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise SnsError(422, "not_an_alarm", "the Message has no AlarmName (1-255 characters): not a CloudWatch alarm")
    state = alarm.get("NewStateValue")
    if state not in ("ALARM", "OK", "INSUFFICIENT_DATA"):
        raise SnsError(422, "not_an_alarm", "NewStateValue must be ALARM, OK or INSUFFICIENT_DATA")
    changed = alarm.get("StateChangeTime")
    if changed is not None:
        try:
            parse_timestamp(changed)
        except ValueError:
            raise SnsError(422, "not_an_alarm", "StateChangeTime is not an ISO 8601 time UTC can hold") from None
    for key in ("NewStateReason", "AlarmDescription", "Region", "AlarmArn", "AWSAccountId", "OldStateValue"):
        if alarm.get(key) is not None and not isinstance(alarm[key], str):
            raise SnsError(422, "not_an_alarm", f"{key} must be a string")
    return alarm
