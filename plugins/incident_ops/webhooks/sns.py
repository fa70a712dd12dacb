"""Amazon SNS HTTP(S) deliveries: the envelope, its signature (versions 1 and 2) and the URL rules.

Pure (no Airflow, no network): the certificate is fetched by a function the caller gives.

- `parse_envelope(body)`: the JSON envelope SNS posts (`Type` Notification, SubscriptionConfirmation
  or UnsubscribeConfirmation) with every field the type needs, or `SnsError` (400).
- `check_sns_url(url, extra_hosts)`: `https://sns.<region>.amazonaws.com[.cn]/...` on the default
  port, or one of the explicitly configured extra `host:port` (the sandbox); anything else is
  refused (403) before any connection is made. Used for SigningCertURL and SubscribeURL.
- `verify_signature(envelope, public_key)`: SignatureVersion 1 = SHA1withRSA, 2 = SHA256withRSA,
  over SNS's canonical "key\\nvalue\\n" string of the type's fields (403 when it does not verify).
- `CertificateCache`: the signing certificates' public keys per URL (LRU, bounded), fetched once
  even by concurrent deliveries; a certificate outside its validity period is refused.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any
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
    "is_aws_sns_host",
    "load_public_key",
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
_AWS_SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
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
    """SNS's ISO 8601 time (`2026-11-27T15:30:00.123Z`) as an aware UTC datetime; ValueError if not one."""
    if not isinstance(value, str) or not value or len(value) > 40:
        raise ValueError("not an ISO 8601 time")
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("the time has no time zone")
    return parsed.astimezone(dt.UTC)


def parse_envelope(body: bytes) -> dict[str, str]:
    """The SNS envelope from the raw body, checked for shape (not yet for authenticity)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SnsError(400, "malformed", "the body is not UTF-8") from None
    try:
        data = json.loads(text)
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
                  pem: bool = False) -> SplitResult:
    """The URL when SNS may have sent it (https, an SNS host, default port, no credentials), else 403."""

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
    if is_aws_sns_host(host) and port in (None, 443):
        pass
    elif netloc in allowed_extra or (port in (None, 443) and host in allowed_extra):
        pass
    else:
        raise refuse("the host must be sns.<region>.amazonaws.com (or a configured extra host)")
    if pem and (parts.query or not parts.path.endswith(".pem")):
        raise refuse("not a .pem certificate path")
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


def load_public_key(pem: bytes, now: dt.datetime) -> rsa.RSAPublicKey:
    """The RSA public key of a PEM certificate valid at `now`, else SnsError(403)."""
    if len(pem) > _MAX_CERT_BYTES:
        raise SnsError(403, "certificate_invalid", "the signing certificate is too large")
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise SnsError(403, "certificate_invalid", "the SigningCertURL did not give a PEM certificate") from None
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise SnsError(403, "certificate_invalid", "the signing certificate is expired or not yet valid")
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SnsError(403, "certificate_invalid", "the signing certificate has no RSA key")
    return key


class CertificateCache:
    """Public keys of signing certificates per URL: LRU with at most `size` entries.

    `get(url, fetch, now)` fetches through `fetch(url) -> bytes` only on a miss, one fetch at a time
    per URL (a burst of deliveries with a cold cache makes one request). The certificate's validity
    is checked again on every use.
    """

    def __init__(self, size: int = 32) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self.size = size
        self._entries: OrderedDict[str, tuple[rsa.RSAPublicKey, dt.datetime, dt.datetime]] = OrderedDict()
        self._lock = threading.Lock()
        self._url_locks: dict[str, threading.Lock] = {}
        self.fetches = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _cached(self, url: str) -> tuple[rsa.RSAPublicKey, dt.datetime, dt.datetime] | None:
        with self._lock:
            entry = self._entries.get(url)
            if entry is not None:
                self._entries.move_to_end(url)
            return entry

    def get(self, url: str, fetch: Callable[[str], bytes], now: dt.datetime) -> rsa.RSAPublicKey:
        entry = self._cached(url)
        if entry is None:
            with self._lock:
                url_lock = self._url_locks.setdefault(url, threading.Lock())
            with url_lock:
                entry = self._cached(url)
                if entry is None:
                    self.fetches += 1
                    pem = fetch(url)
                    key = load_public_key(pem, now)
                    cert = x509.load_pem_x509_certificate(pem)
                    entry = (key, cert.not_valid_before_utc, cert.not_valid_after_utc)
                    with self._lock:
                        self._entries[url] = entry
                        self._entries.move_to_end(url)
                        while len(self._entries) > self.size:
                            evicted, _ = self._entries.popitem(last=False)
                            self._url_locks.pop(evicted, None)
        key, not_before, not_after = entry
        if not not_before <= now <= not_after:
            raise SnsError(403, "certificate_invalid", "the signing certificate is expired or not yet valid")
        return key


def alarm_from_message(message: str) -> dict[str, Any]:
    """The CloudWatch alarm in a Notification's Message, or SnsError(422) when it is not one."""
    try:
        alarm = json.loads(message)
    except (ValueError, RecursionError):
        raise SnsError(422, "not_an_alarm", "the Message is not JSON: not a CloudWatch alarm notification") from None
    if not isinstance(alarm, dict):
        raise SnsError(422, "not_an_alarm", "the Message is not a JSON object: not a CloudWatch alarm notification")
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
            raise SnsError(422, "not_an_alarm", "StateChangeTime is not an ISO 8601 time") from None
    for key in ("NewStateReason", "AlarmDescription", "Region", "AlarmArn", "AWSAccountId", "OldStateValue"):
        if alarm.get(key) is not None and not isinstance(alarm[key], str):
            raise SnsError(422, "not_an_alarm", f"{key} must be a string")
    return alarm
