"""SNS envelope parsing, signature versions 1 and 2, the certificate URL rule and the certificate cache
(pure functions, certificates generated here)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time

import pytest

from incident_ops.webhooks import sns
from incident_ops.webhooks.sns import CertificateCache, SnsError

from .helpers import CERT_URL, NOW, SigningCert, alarm, canonical, confirmation, notification


def public_key(cert: SigningCert):
    return sns.load_public_key(cert.pem, NOW)


def envelope_of(data: dict) -> dict[str, str]:
    return sns.parse_envelope(json.dumps(data).encode())


# --- envelope ------------------------------------------------------------------------------------


def test_parses_a_real_notification(cert: SigningCert) -> None:
    data = notification(cert, alarm())
    envelope = envelope_of(data)
    assert envelope["Type"] == "Notification"
    assert json.loads(envelope["Message"])["AlarmName"] == "peoplebooster-production-alb-5xx"
    assert envelope["SignatureVersion"] == "2"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"Type": "Publish"}', "Type must be one of"),
        (b'{"Type": "Notification"}', "Notification without MessageId"),
    ],
)
def test_malformed_envelopes_are_400(body: bytes, fragment: str) -> None:
    with pytest.raises(SnsError) as caught:
        sns.parse_envelope(body)
    assert caught.value.status == 400 and fragment in caught.value.reason


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("SignatureVersion", "3", "SignatureVersion must be"),
        ("TopicArn", "arn:aws:s3:::bucket", "not an SNS topic ARN"),
        ("MessageId", "../../etc", "not an SNS message id"),
        ("Timestamp", "yesterday", "not an ISO 8601 time"),
        ("Message", 42, "Message must be a string"),
    ],
)
def test_bad_fields_are_400(cert: SigningCert, field: str, value: object, fragment: str) -> None:
    data = {**notification(cert, alarm()), field: value}
    with pytest.raises(SnsError) as caught:
        envelope_of(data)
    assert caught.value.status == 400 and fragment in caught.value.reason


def test_canonical_string_follows_the_sns_field_order(cert: SigningCert) -> None:
    note = envelope_of(notification(cert, "hello", subject="S"))
    text = sns.string_to_sign(note).decode()
    assert [line for line in text.splitlines()[::2]] == ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    without_subject = envelope_of(notification(cert, "hello", subject=None))
    assert "Subject" not in sns.string_to_sign(without_subject).decode()
    confirm = envelope_of(confirmation(cert))
    text = sns.string_to_sign(confirm).decode()
    positions = [text.index(f"{key}\n") for key in ("Message", "\nMessageId", "\nSubscribeURL", "\nTimestamp",
                                                        "\nToken", "\nTopicArn", "\nType")]
    assert positions == sorted(positions) and "SigningCertURL" not in text
    assert sns.string_to_sign(confirm) == canonical(confirm)


# --- signatures ----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
def test_valid_signatures_verify(cert: SigningCert, version: str) -> None:
    envelope = envelope_of(notification(cert, alarm(), version=version))
    sns.verify_signature(envelope, public_key(cert))  # no exception


def test_subscription_confirmation_signature_verifies(cert: SigningCert) -> None:
    sns.verify_signature(envelope_of(confirmation(cert)), public_key(cert))


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize("field", ["Message", "MessageId", "Subject", "Timestamp", "TopicArn"])
def test_a_tampered_field_fails(cert: SigningCert, version: str, field: str) -> None:
    data = notification(cert, alarm(), version=version)
    if field == "Timestamp":
        data[field] = "2026-11-27T15:31:00.000Z"
    elif field == "TopicArn":
        data[field] = data[field].replace("alerts", "alertz")
    else:
        data[field] = data[field] + "x"
    with pytest.raises(SnsError) as caught:
        sns.verify_signature(envelope_of(data), public_key(cert))
    assert caught.value.status == 403 and caught.value.code == "signature_invalid"


def test_signature_version_swapped_fails(cert: SigningCert) -> None:
    data = notification(cert, alarm(), version="1")
    data["SignatureVersion"] = "2"
    with pytest.raises(SnsError, match="does not verify"):
        sns.verify_signature(envelope_of(data), public_key(cert))


def test_another_key_fails(cert: SigningCert) -> None:
    other = SigningCert.make()
    with pytest.raises(SnsError, match="does not verify"):
        sns.verify_signature(envelope_of(notification(other, alarm())), public_key(cert))


def test_signature_not_base64_is_403(cert: SigningCert) -> None:
    data = {**notification(cert, alarm()), "Signature": "!!!not base64!!!"}
    with pytest.raises(SnsError) as caught:
        sns.verify_signature(envelope_of(data), public_key(cert))
    assert caught.value.status == 403


# --- certificate URLs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        CERT_URL,
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem",
        "https://sns.ap-northeast-1.amazonaws.com:443/SimpleNotificationService-abc.pem",
        "HTTPS://SNS.AP-NORTHEAST-1.AMAZONAWS.COM/SimpleNotificationService-abc.pem",
    ],
)
def test_sns_hosts_are_allowed(url: str) -> None:
    sns.check_sns_url(url, pem=True)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://sns.ap-northeast-1.amazonaws.com/SimpleNotificationService-abc.pem", "only https"),
        ("https://sns.ap-northeast-1.amazonaws.com.evil.example/x.pem", "the host must be"),
        ("https://evil.example/sns.ap-northeast-1.amazonaws.com/x.pem", "the host must be"),
        ("https://sns.ap-northeast-1.amazonaws.com@evil.example/x.pem", "credentials"),
        ("https://user:pw@sns.ap-northeast-1.amazonaws.com/x.pem", "credentials"),
        ("https://sns.ap-northeast-1.amazonaws.com:8443/x.pem", "the host must be"),
        ("https://s3.ap-northeast-1.amazonaws.com/x.pem", "the host must be"),
        ("https://snsXap-northeast-1.amazonaws.com/x.pem", "the host must be"),
        ("https://sns.ap-northeast-1.amazonaws.com/x.pem?redirect=evil", "not a .pem"),
        ("https://sns.ap-northeast-1.amazonaws.com/x.txt", "not a .pem"),
        ("https://127.0.0.1:5057/sns/SimpleNotificationService-sandbox.pem", "the host must be"),
        ("file:///etc/passwd", "only https"),
        ("https://sns.ap-northeast-1.amazonaws.com\\@evil.example/x.pem", "not a plain URL"),
        ("https://sns.ap-northeast-1.amazonaws.com/x.pem#frag", "fragment"),
        ("https://[::1/x.pem", "not a valid URL"),
    ],
)
def test_other_urls_are_refused(url: str, why: str) -> None:
    with pytest.raises(SnsError) as caught:
        sns.check_sns_url(url, pem=True)
    assert caught.value.status == 403 and why in caught.value.reason


def test_extra_hosts_only_by_explicit_configuration() -> None:
    url = "https://127.0.0.1:5057/sns/SimpleNotificationService-sandbox.pem"
    sns.check_sns_url(url, {"127.0.0.1:5057"}, pem=True)
    with pytest.raises(SnsError):
        sns.check_sns_url(url, {"127.0.0.1:5058"}, pem=True)  # another port of the same host
    with pytest.raises(SnsError):
        sns.check_sns_url(url.replace("https", "http"), {"127.0.0.1:5057"}, pem=True)  # still https only


def test_subscribe_urls_may_have_a_query() -> None:
    url = "https://sns.ap-northeast-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=a&Token=b"
    assert sns.check_sns_url(url, what="SubscribeURL").query.startswith("Action=")


# --- certificate cache ---------------------------------------------------------------------------


def test_cache_fetches_once_per_url(cert: SigningCert) -> None:
    cache = CertificateCache(size=4)
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return cert.pem

    for _ in range(5):
        cache.get(CERT_URL, fetch, NOW)
    assert fetched == [CERT_URL]


def test_cache_is_bounded_lru(cert: SigningCert) -> None:
    cache = CertificateCache(size=2)
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return cert.pem

    urls = [f"https://sns.us-east-1.amazonaws.com/c{i}.pem" for i in range(3)]
    cache.get(urls[0], fetch, NOW)
    cache.get(urls[1], fetch, NOW)
    cache.get(urls[0], fetch, NOW)  # 0 is now the most recent
    cache.get(urls[2], fetch, NOW)  # evicts 1
    assert len(cache) == 2
    cache.get(urls[0], fetch, NOW)
    cache.get(urls[1], fetch, NOW)  # fetched again
    assert fetched == [urls[0], urls[1], urls[2], urls[1]]


def test_concurrent_cold_cache_fetches_once(cert: SigningCert) -> None:
    cache = CertificateCache()
    fetched: list[str] = []

    def slow_fetch(url: str) -> bytes:
        fetched.append(url)
        time.sleep(0.2)
        return cert.pem

    threads = [threading.Thread(target=cache.get, args=(CERT_URL, slow_fetch, NOW)) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fetched == [CERT_URL]


def test_expired_or_future_certificates_are_refused() -> None:
    expired = SigningCert.make(not_before=NOW - dt.timedelta(days=400), not_after=NOW - dt.timedelta(days=1))
    with pytest.raises(SnsError, match="expired or not yet valid"):
        CertificateCache().get(CERT_URL, lambda url: expired.pem, NOW)
    valid = SigningCert.make(not_before=NOW - dt.timedelta(days=1), not_after=NOW + dt.timedelta(days=1))
    cache = CertificateCache()
    cache.get(CERT_URL, lambda url: valid.pem, NOW)
    with pytest.raises(SnsError, match="expired"):  # the cached key is checked again on use
        cache.get(CERT_URL, lambda url: valid.pem, NOW + dt.timedelta(days=2))


def test_non_certificates_and_non_rsa_keys_are_refused() -> None:
    with pytest.raises(SnsError, match="PEM certificate"):
        sns.load_public_key(b"<html>hello</html>", NOW)
    with pytest.raises(SnsError, match="RSA"):
        sns.load_public_key(SigningCert.make(kind="ec").pem, NOW)


# --- the alarm in the message --------------------------------------------------------------------


def test_alarm_from_message() -> None:
    found = sns.alarm_from_message(json.dumps(alarm()))
    assert found["AlarmName"] == "peoplebooster-production-alb-5xx" and found["NewStateValue"] == "ALARM"


@pytest.mark.parametrize(
    "message",
    [
        "plain text from the console",
        "[]",
        json.dumps({"NewStateValue": "ALARM"}),
        json.dumps({"AlarmName": "", "NewStateValue": "ALARM"}),
        json.dumps({"AlarmName": "x" * 256, "NewStateValue": "ALARM"}),
        json.dumps({"AlarmName": "a", "NewStateValue": "BROKEN"}),
        json.dumps({"AlarmName": "a", "NewStateValue": "ALARM", "StateChangeTime": "soon"}),
        json.dumps({"AlarmName": "a", "NewStateValue": "ALARM", "NewStateReason": {"x": 1}}),
    ],
)
def test_not_an_alarm_is_422(message: str) -> None:
    with pytest.raises(SnsError) as caught:
        sns.alarm_from_message(message)
    assert caught.value.status == 422
