"""Plain-text e-mail over SMTP (the emergency contact, 緊急連絡先: ops@peoplebooster.com).

The body is UTF-8 (Japanese text as is); the subject is RFC 2047-encoded by the email package.
`message_id` lets the caller derive the Message-ID from the incident id, so a resent fallback is
recognisable as the same message.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate

__all__ = ["EmailError", "build_message", "send_email"]


class EmailError(RuntimeError):
    """The SMTP server could not be reached or refused the message."""


def build_message(
    sender: str,
    to: str | Sequence[str],
    subject: str,
    body: str,
    *,
    message_id: str | None = None,
) -> EmailMessage:
    recipients = [to] if isinstance(to, str) else list(to)
    if not recipients or not all(recipients):
        raise ValueError("at least one recipient address is required")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    if message_id:
        message["Message-ID"] = message_id if message_id.startswith("<") else f"<{message_id}>"
    message.set_content(body, charset="utf-8")
    return message


def send_email(
    host: str,
    port: int,
    sender: str,
    to: str | Sequence[str],
    subject: str,
    body: str,
    *,
    username: str | None = None,
    password: str | None = None,
    starttls: bool = False,
    timeout: float = 10,
    message_id: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> EmailMessage:
    """Send one message; returns what was sent. Raises EmailError naming the server and the cause."""
    message = build_message(sender, to, subject, body, message_id=message_id)
    recipients = [to] if isinstance(to, str) else list(to)
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as smtp:
            if starttls:
                smtp.starttls(context=ssl_context or ssl.create_default_context())
            if username:
                smtp.login(username, password or "")
            refused = smtp.send_message(message, from_addr=sender, to_addrs=recipients)
    except (smtplib.SMTPException, OSError) as exc:
        raise EmailError(f"sending mail via {host}:{port} to {', '.join(recipients)} failed: {exc}") from exc
    if refused:
        raise EmailError(f"the SMTP server {host}:{port} refused recipients: {refused}")
    return message
