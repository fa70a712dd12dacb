"""HMAC-SHA256 authentication of the generic alert webhook (pure: no Airflow, no clock of its own).

The sender signs `timestamp + "." + body` (the raw bytes it posts) with the shared secret:

    X-Incident-Timestamp: 1795793400                 (Unix seconds)
    X-Incident-Signature: sha256=<hex HMAC-SHA256>

The request is accepted only when the signature matches (constant-time comparison) and the
timestamp is within the replay window of the receiver's clock, in both directions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "HmacError",
    "sign",
    "signature_header",
    "verify",
]

TIMESTAMP_HEADER = "X-Incident-Timestamp"
SIGNATURE_HEADER = "X-Incident-Signature"
# ASCII digits only (`\d` would take other scripts' digits, which are not "Unix seconds").
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_SIGNATURE = re.compile(r"^sha256=([0-9a-fA-F]{64})$")


class HmacError(Exception):
    """Authentication failed: HTTP `status` (401), a short `code` and the `reason`."""

    def __init__(self, code: str, reason: str, status: int = 401) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = reason


def sign(secret: str | bytes, timestamp: str | int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `timestamp.body` with `secret`."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(key, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def signature_header(secret: str | bytes, timestamp: str | int, body: bytes) -> dict[str, str]:
    """The two headers a sender adds."""
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: f"sha256={sign(secret, timestamp, body)}"}


def verify(
    secret: str | bytes,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    *,
    now: dt.datetime,
    window_seconds: float = 300.0,
) -> int:
    """The request's timestamp (Unix seconds) when authentic and fresh; HmacError otherwise.

    The header may carry surrounding whitespace (stripped before signing, as senders' HTTP stacks
    may add it); the returned integer is the canonical instant a replay check must use."""
    if not timestamp:
        raise HmacError("signature_missing", f"the {TIMESTAMP_HEADER} header is missing")
    if not signature:
        raise HmacError("signature_missing", f"the {SIGNATURE_HEADER} header is missing")
    timestamp = timestamp.strip()
    if not _TIMESTAMP.match(timestamp):
        raise HmacError("timestamp_invalid", f"{TIMESTAMP_HEADER} must be Unix seconds")
    match = _SIGNATURE.match(signature.strip())
    if not match:
        raise HmacError("signature_invalid", f"{SIGNATURE_HEADER} must be 'sha256=<64 hex digits>'")
    expected = sign(secret, timestamp, body)
    if not hmac.compare_digest(expected, match.group(1).lower()):
        raise HmacError("signature_invalid", "the signature does not match the body and timestamp")
    sent = int(timestamp)
    skew = now.timestamp() - sent
    if skew > window_seconds:
        raise HmacError("timestamp_expired", f"the timestamp is {int(skew)} s old (window {int(window_seconds)} s)")
    if skew < -window_seconds:
        raise HmacError("timestamp_expired",
                        f"the timestamp is {int(-skew)} s in the future (window {int(window_seconds)} s)")
    return sent
