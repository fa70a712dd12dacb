"""send_email against a local aiosmtpd server (plain, AUTH, STARTTLS)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest
import trustme

from incident_ops.clients.email import EmailError, build_message, send_email
from tests.clients.conftest import SmtpSink, free_port

SUBJECT = "【P1インシデント発生】全ユーザーがアクセス不可"
BODY = "@channel 【P1インシデント発生】\n発生時刻: 22:05\n症状: 全ユーザーがアクセス不可\n"


def test_send_email_utf8_body_and_subject(smtp_sink: tuple[SmtpSink, int]) -> None:
    sink, port = smtp_sink

    sent = send_email("127.0.0.1", port, "incident-bot@peoplebooster.com", "ops@peoplebooster.com", SUBJECT, BODY,
                      message_id="INC-20260105-001.fallback@incident-ops")

    assert len(sink.envelopes) == 1
    envelope = sink.envelopes[0]
    assert envelope.mail_from == "incident-bot@peoplebooster.com"
    assert envelope.rcpt_tos == ["ops@peoplebooster.com"]
    received = sink.messages[0]
    assert received["Subject"] == SUBJECT
    assert received["To"] == "ops@peoplebooster.com"
    assert received["Message-ID"] == "<INC-20260105-001.fallback@incident-ops>"
    assert received.get_content_charset() == "utf-8"
    assert received.get_content().replace("\r\n", "\n") == BODY
    assert sent["Message-ID"] == received["Message-ID"]
    assert sink.logins == []


def test_send_email_with_login_to_several(smtp_sink: tuple[SmtpSink, int]) -> None:
    sink, port = smtp_sink

    send_email("127.0.0.1", port, "bot@peoplebooster.com", ["ops@peoplebooster.com", "cto@peoplebooster.com"],
               "件名", "本文", username="bot", password="smtp-pass")

    assert sink.logins == [("bot", "smtp-pass")]
    assert sink.envelopes[0].rcpt_tos == ["ops@peoplebooster.com", "cto@peoplebooster.com"]


def test_send_email_bad_password_raises(smtp_sink: tuple[SmtpSink, int]) -> None:
    sink, port = smtp_sink
    with pytest.raises(EmailError, match=rf"127.0.0.1:{port}.*ops@peoplebooster.com"):
        send_email("127.0.0.1", port, "bot@peoplebooster.com", "ops@peoplebooster.com", "s", "b",
                   username="bot", password="wrong")
    assert sink.envelopes == []


def test_send_email_unreachable_server_raises() -> None:
    with pytest.raises(EmailError, match="failed"):
        send_email("127.0.0.1", free_port(), "a@b.c", "ops@peoplebooster.com", "s", "b", timeout=2)


@pytest.fixture
def starttls_server() -> Iterator[tuple[SmtpSink, int, ssl.SSLContext]]:
    from aiosmtpd.controller import Controller

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    sink, port = SmtpSink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, tls_context=server_context, require_starttls=True)
    controller.start()
    try:
        yield sink, port, client_context
    finally:
        controller.stop()


def test_send_email_starttls(starttls_server: tuple[SmtpSink, int, ssl.SSLContext]) -> None:
    sink, port, client_context = starttls_server

    send_email("127.0.0.1", port, "bot@peoplebooster.com", "ops@peoplebooster.com", SUBJECT, BODY,
               starttls=True, ssl_context=client_context)

    assert sink.messages[0].get_content().replace("\r\n", "\n") == BODY


def test_send_email_without_starttls_is_refused_when_required(
    starttls_server: tuple[SmtpSink, int, ssl.SSLContext]
) -> None:
    sink, port, _ = starttls_server
    with pytest.raises(EmailError):
        send_email("127.0.0.1", port, "bot@peoplebooster.com", "ops@peoplebooster.com", "s", "b")
    assert sink.envelopes == []


def test_build_message_needs_a_recipient() -> None:
    with pytest.raises(ValueError, match="recipient"):
        build_message("a@b.c", [], "s", "b")
