"""SNS envelope parsing, signature versions 1 and 2, the certificate URL rule and the certificate cache
(pure functions, certificates generated here)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable
from typing import Any

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


PEM = "/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem"  # the shape of a real one
SANDBOX_URL = "https://127.0.0.1:5057/SimpleNotificationService-5a4db0c5a4db0c5a4db0c5a4db0c5a4d.pem"


@pytest.mark.parametrize(
    "url",
    [
        CERT_URL,
        f"https://sns.us-east-1.amazonaws.com{PEM}",
        f"https://sns.cn-north-1.amazonaws.com.cn{PEM}",
        f"https://sns.ap-northeast-1.amazonaws.com:443{PEM}",
        f"HTTPS://SNS.AP-NORTHEAST-1.AMAZONAWS.COM{PEM}",
    ],
)
def test_sns_hosts_are_allowed(url: str) -> None:
    sns.check_sns_url(url, pem=True)


@pytest.mark.parametrize(
    "path",
    [
        "/SimpleNotificationService-abc.pem",  # too short
        "/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem.pem",
        "/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec113g.pem",  # not hex
        "/x/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem",
        "/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec11361.pem",  # 33 digits
        "/anything.pem",
        "/%2e%2e/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem",
    ],
)
def test_only_the_sns_certificate_path_shape_is_fetched(path: str) -> None:
    for host in ("sns.ap-northeast-1.amazonaws.com", "127.0.0.1:5057"):
        with pytest.raises(SnsError) as caught:
            sns.check_sns_url(f"https://{host}{path}", {"127.0.0.1:5057"}, pem=True)
        assert caught.value.code == "url_not_allowed" and "not an SNS certificate path" in caught.value.reason


def test_only_the_allowed_regions() -> None:
    regions = frozenset({"ap-northeast-1"})
    sns.check_sns_url(f"https://sns.ap-northeast-1.amazonaws.com{PEM}", pem=True, regions=regions)
    for region in ("us-east-1", "cn-north-1", "ap-northeast-3"):
        suffix = ".cn" if region.startswith("cn-") else ""
        with pytest.raises(SnsError, match="not one of the allowed topics' regions"):
            sns.check_sns_url(f"https://sns.{region}.amazonaws.com{suffix}{PEM}", pem=True, regions=regions)
    with pytest.raises(SnsError, match="regions"):  # the SubscribeURL too
        sns.check_sns_url("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription", what="SubscribeURL",
                          regions=regions)
    # an explicitly configured extra host (the sandbox) has no region
    sns.check_sns_url(SANDBOX_URL, {"127.0.0.1:5057"}, pem=True, regions=regions)


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
        (f"https://sns.ap-northeast-1.amazonaws.com{PEM}?redirect=evil", "not an SNS certificate path"),
        ("https://sns.ap-northeast-1.amazonaws.com/x.txt", "not an SNS certificate path"),
        (SANDBOX_URL, "the host must be"),
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
    url = SANDBOX_URL
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


class OverlappingCallers:
    """`callers` threads call cache.get(CERT_URL) together (a barrier), and the one fetch they make is
    held until every other caller has joined it: has got from the cache the fetch in flight, which it
    then waits for (CertificateCache._begin answers a caller (flight, owner=False)). So the callers
    provably overlap; `overlapped` is False if they did not all join within 10 s."""

    def __init__(self, cache: CertificateCache, answer: Callable[[], bytes], callers: int = 20) -> None:
        self.cache, self.answer, self.callers = cache, answer, callers
        self.fetched: list[str] = []
        self.joined = 0
        self.overlapped: bool | None = None
        self.outcomes: list[Any] = [None] * callers
        self._all_joined = threading.Event()
        self._lock = threading.Lock()
        begin = cache._begin

        def counting_begin(url: str) -> Any:
            got = begin(url)
            if isinstance(got, tuple) and not got[1]:
                with self._lock:
                    self.joined += 1
                    if self.joined == callers - 1:
                        self._all_joined.set()
            return got

        cache._begin = counting_begin  # type: ignore[method-assign]

    def fetch(self, url: str) -> bytes:
        self.fetched.append(url)
        self.overlapped = self._all_joined.wait(10)
        return self.answer()

    def run(self) -> list[Any]:
        barrier = threading.Barrier(self.callers)

        def call(i: int) -> None:
            barrier.wait(10)
            try:
                self.outcomes[i] = self.cache.get(CERT_URL, self.fetch, NOW)
            except SnsError as exc:
                self.outcomes[i] = exc

        threads = [threading.Thread(target=call, args=(i,)) for i in range(self.callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not any(thread.is_alive() for thread in threads)
        return self.outcomes


def test_concurrent_cold_cache_fetches_once(cert: SigningCert) -> None:
    cache = CertificateCache()
    burst = OverlappingCallers(cache, lambda: cert.pem)
    keys = burst.run()
    assert burst.overlapped, f"only {burst.joined} of 19 callers waited for the fetch in flight"
    assert burst.fetched == [CERT_URL]  # one fetch for the 20 overlapping callers
    expected = public_key(cert).public_numbers()
    assert all(not isinstance(k, SnsError) and k.public_numbers() == expected for k in keys), keys
    assert cache.fetches == 1 and cache.in_flight == 0


def test_a_failure_is_shared_by_its_waiters_and_remembered_for_a_while() -> None:
    clock = [1000.0]
    cache = CertificateCache(failure_ttl=60, monotonic=lambda: clock[0])

    def answer_404() -> bytes:
        raise SnsError(403, "certificate_unavailable", "the SigningCertURL answered HTTP 404")

    burst = OverlappingCallers(cache, answer_404)
    errors = burst.run()
    fetched = burst.fetched

    def slow_404(url: str) -> bytes:
        fetched.append(url)
        return answer_404()

    assert burst.overlapped, f"only {burst.joined} of 19 callers waited for the fetch in flight"
    assert fetched == [CERT_URL]  # one fetch, its failure given to all 20
    assert all(isinstance(e, SnsError) for e in errors), errors
    assert len(errors) == 20 and {(e.status, e.code) for e in errors} == {(403, "certificate_unavailable")}
    assert len({id(e) for e in errors}) == 20  # each caller raises its own exception
    clock[0] += 59
    with pytest.raises(SnsError, match="HTTP 404"):
        cache.get(CERT_URL, slow_404, NOW)
    assert len(fetched) == 1  # remembered
    clock[0] += 2
    with pytest.raises(SnsError):
        cache.get(CERT_URL, slow_404, NOW)
    assert len(fetched) == 2  # the failure expired: fetched again
    assert cache.in_flight == 0


def test_remembered_failures_are_bounded() -> None:
    cache = CertificateCache(max_failures=3)

    def missing(url: str) -> bytes:
        raise SnsError(403, "certificate_unavailable", "404")

    for i in range(10):
        with pytest.raises(SnsError):
            cache.get(f"https://sns.us-east-1.amazonaws.com/c{i}.pem", missing, NOW)
    assert len(cache._failures) == 3


def test_fetches_in_flight_are_bounded_and_the_table_empties(cert: SigningCert) -> None:
    cache = CertificateCache(max_fetches=2)
    release = threading.Event()

    def held(url: str) -> bytes:
        release.wait(5)
        return cert.pem

    threads = [threading.Thread(target=cache.get, args=(f"https://sns.us-east-1.amazonaws.com/c{i}.pem", held, NOW))
               for i in range(2)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    while cache.in_flight < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(SnsError) as caught:
        cache.get("https://sns.us-east-1.amazonaws.com/c9.pem", held, NOW)
    assert (caught.value.status, caught.value.code) == (503, "busy")
    assert cache.in_flight == 2  # refused at once: it did not wait for a held fetch to end
    release.set()
    for thread in threads:
        thread.join()
    assert cache.in_flight == 0 and len(cache) == 2 and cache.fetches == 2


def test_a_waiter_gives_up_with_busy_and_the_fetch_still_fills_the_cache(cert: SigningCert) -> None:
    cache = CertificateCache()
    fetching, release = threading.Event(), threading.Event()

    def held(url: str) -> bytes:
        fetching.set()
        release.wait(10)
        return cert.pem

    owner = threading.Thread(target=cache.get, args=(CERT_URL, held, NOW))
    owner.start()
    assert fetching.wait(10)  # the owner's fetch is in flight (and held)
    with pytest.raises(SnsError) as caught:
        cache.get(CERT_URL, held, NOW, timeout=0.1)
    assert (caught.value.status, caught.value.code) == (503, "busy")
    assert cache.in_flight == 1  # the fetch goes on
    release.set()
    owner.join(10)
    cache.get(CERT_URL, held, NOW)
    assert cache.fetches == 1 and cache.in_flight == 0


@pytest.mark.parametrize("error", [RuntimeError("x"), OSError("reset"), UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad")],
                         ids=lambda e: type(e).__name__)
def test_any_fetch_error_is_certificate_unavailable(error: Exception) -> None:
    def broken(url: str) -> bytes:
        raise error

    with pytest.raises(SnsError) as caught:
        CertificateCache().get(CERT_URL, broken, NOW)
    assert (caught.value.status, caught.value.code) == (403, "certificate_unavailable")


def test_aget_waits_in_the_event_loop_for_one_fetch(cert: SigningCert) -> None:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    cache = CertificateCache()
    burst = OverlappingCallers(cache, lambda: cert.pem, callers=50)  # the fetch is held until 49 await it
    threads: set[str] = set()

    def fetch(url: str) -> bytes:
        threads.add(threading.current_thread().name)
        return burst.fetch(url)

    async def many() -> list:
        return await asyncio.gather(*(cache.aget(CERT_URL, fetch, NOW, pool, timeout=15) for _ in range(50)))

    with ThreadPoolExecutor(1, thread_name_prefix="cert-fetch") as pool:
        keys = asyncio.run(many())
    assert burst.overlapped, f"only {burst.joined} of 49 callers waited for the fetch in flight"
    assert burst.fetched == [CERT_URL] and len(keys) == 50 and threads == {"cert-fetch_0"}
    assert keys[0].public_numbers() == sns.load_public_key(cert.pem, NOW).public_numbers()


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
