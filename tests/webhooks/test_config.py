"""The webhook configuration: explicit variables only, verification on by default."""

from __future__ import annotations

from pathlib import Path

import pytest

from incident_ops.webhooks.config import DEFAULT_MAX_BODY_BYTES, ConfigError, WebhookConfig

from .helpers import TOPIC


def test_defaults_are_strict(tmp_path: Path) -> None:
    config = WebhookConfig.from_env({"INCIDENT_OPS_STATE_DIR": str(tmp_path)})
    assert config.verify is True
    assert config.topics == {}  # no topic is allowed until configured
    assert config.extra_cert_hosts == frozenset()
    assert config.extra_ca_bundle is None
    assert config.max_body_bytes == DEFAULT_MAX_BODY_BYTES == 256 * 1024
    assert config.replay_window_seconds == 300
    assert config.audit_log == tmp_path / "webhooks" / "audit.jsonl"
    assert config.require_signature_v2 is False and config.docs is False
    assert config.cert_regions is None and config.sns_regions == frozenset()  # no topic, no region
    assert (config.cert_fetch_concurrency, config.cert_failure_ttl_seconds) == (4, 60)
    assert (config.audit_max_bytes, config.audit_backups) == (10 * 1024 * 1024, 5)


def test_certificate_regions_default_to_the_topics_regions() -> None:
    config = WebhookConfig.from_env({"INCIDENT_OPS_SNS_TOPICS": f"{TOPIC} arn:aws-cn:sns:cn-north-1:123456789012:t"})
    assert config.sns_regions == {"ap-northeast-1", "cn-north-1"}
    config = WebhookConfig.from_env({"INCIDENT_OPS_SNS_TOPICS": TOPIC, "INCIDENT_OPS_SNS_CERT_REGIONS": "us-east-1, AP-NORTHEAST-3"})
    assert config.sns_regions == {"us-east-1", "ap-northeast-3"}


def test_hardening_settings_from_the_environment() -> None:
    config = WebhookConfig.from_env({
        "INCIDENT_OPS_SNS_REQUIRE_SIGNATURE_V2": "on",
        "INCIDENT_OPS_SNS_CERT_FETCHES": "2",
        "INCIDENT_OPS_SNS_CERT_FAILURE_TTL_SECONDS": "15",
        "INCIDENT_OPS_WEBHOOK_AUDIT_MAX_BYTES": "1000000",
        "INCIDENT_OPS_WEBHOOK_AUDIT_BACKUPS": "0",
        "INCIDENT_OPS_WEBHOOK_DOCS": "on",
        "INCIDENT_OPS_WEBHOOK_AUDIT_LOG": "-",
    })
    assert (config.require_signature_v2, config.cert_fetch_concurrency, config.cert_failure_ttl_seconds,
            config.audit_max_bytes, config.audit_backups, config.docs) == (True, 2, 15, 1_000_000, 0, True)


def test_everything_from_the_environment(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    other = "arn:aws:sns:us-east-1:123456789012:other"
    config = WebhookConfig.from_env({
        "INCIDENT_OPS_SNS_TOPICS": f"{TOPIC}=production, {other}",
        "INCIDENT_OPS_WEBHOOK_VERIFY": "off",
        "INCIDENT_OPS_SNS_EXTRA_CERT_HOSTS": "127.0.0.1:5057 localhost:8443",
        "INCIDENT_OPS_SNS_EXTRA_CA_BUNDLE": str(ca),
        "INCIDENT_OPS_WEBHOOK_REPLAY_WINDOW_SECONDS": "60",
        "INCIDENT_OPS_WEBHOOK_MAX_BODY_BYTES": "1024",
        "INCIDENT_OPS_WEBHOOK_AUDIT_LOG": "-",
        "INCIDENT_OPS_SNS_MAX_AGE_SECONDS": "0",
    })
    assert config.topics == {TOPIC: "production", other: None}
    assert config.verify is False
    assert config.extra_cert_hosts == {"127.0.0.1:5057", "localhost:8443"}
    assert config.extra_ca_bundle == str(ca)
    assert (config.replay_window_seconds, config.max_body_bytes, config.audit_log, config.sns_max_age_seconds) == (
        60, 1024, None, 0)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("INCIDENT_OPS_WEBHOOK_VERIFY", "maybe"),
        ("INCIDENT_OPS_SNS_TOPICS", "arn:aws:s3:::bucket"),
        ("INCIDENT_OPS_SNS_EXTRA_CERT_HOSTS", "https://127.0.0.1:5057"),
        ("INCIDENT_OPS_SNS_EXTRA_CERT_HOSTS", "127.0.0.1:5057/path"),
        ("INCIDENT_OPS_SNS_EXTRA_CA_BUNDLE", "/no/such/file.pem"),
        ("INCIDENT_OPS_WEBHOOK_MAX_BODY_BYTES", "lots"),
        ("INCIDENT_OPS_WEBHOOK_REPLAY_WINDOW_SECONDS", "0"),
        ("INCIDENT_OPS_SNS_REQUIRE_SIGNATURE_V2", "sometimes"),
        ("INCIDENT_OPS_SNS_CERT_REGIONS", "tokyo"),
        ("INCIDENT_OPS_SNS_CERT_REGIONS", "sns.us-east-1.amazonaws.com"),
        ("INCIDENT_OPS_SNS_CERT_FETCHES", "0"),
        ("INCIDENT_OPS_WEBHOOK_AUDIT_MAX_BYTES", "-1"),
        ("INCIDENT_OPS_WEBHOOK_DOCS", "please"),
    ],
)
def test_bad_values_fail_loudly(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        WebhookConfig.from_env({name: value})
