"""The webhooks' configuration, from environment variables (explicit, nothing guessed).

| variable | meaning | default |
|---|---|---|
| `INCIDENT_OPS_SNS_TOPICS` | allowed SNS topic ARNs, comma/space separated; `ARN=environment` names the runbook environment of the topic's alarms | none: every topic is refused (403) |
| `INCIDENT_OPS_WEBHOOK_VERIFY` | `on` or `off`: signature checks (SNS and HMAC). `off` is for the sandbox only | `on` |
| `INCIDENT_OPS_SNS_EXTRA_CERT_HOSTS` | extra `host:port` allowed for SigningCertURL / SubscribeURL (the sandbox's HTTPS port) | none: only `sns.<region>.amazonaws.com[.cn]` |
| `INCIDENT_OPS_SNS_EXTRA_CA_BUNDLE` | CA bundle used only for the extra hosts (the sandbox's local CA) | system trust |
| `INCIDENT_OPS_SNS_MAX_AGE_SECONDS` | refuse SNS messages whose `Timestamp` is older (replays); 0 = no limit | 3600 |
| `INCIDENT_OPS_WEBHOOK_REPLAY_WINDOW_SECONDS` | HMAC timestamp window, both directions | 300 |
| `INCIDENT_OPS_WEBHOOK_MAX_BODY_BYTES` | larger bodies are refused with 413 | 262144 (256 KiB) |
| `INCIDENT_OPS_WEBHOOK_AUDIT_LOG` | JSON-lines audit file (`-` = logger only) | `$INCIDENT_OPS_STATE_DIR/webhooks/audit.jsonl` |
| `INCIDENT_OPS_WEBHOOK_RETRIGGER_AFTER_SECONDS` | an open incident with no run after this long gets its run (again) | 30 |
| `INCIDENT_OPS_SNS_REQUIRE_SIGNATURE_V2` | `on`: refuse SignatureVersion 1 (SHA1withRSA) with 403 `signature_version_refused` | `off` |
| `INCIDENT_OPS_SNS_CERT_REGIONS` | regions whose `sns.<region>.amazonaws.com[.cn]` may serve certificates and SubscribeURLs | the regions of the allowed topics' ARNs |
| `INCIDENT_OPS_SNS_CERT_FETCHES` | certificate fetches at once (a dedicated pool; more distinct URLs at once get 503 `busy`) | 4 |
| `INCIDENT_OPS_SNS_CERT_FAILURE_TTL_SECONDS` | a failed certificate URL is answered from memory (403) for this long | 60 |
| `INCIDENT_OPS_WEBHOOK_AUDIT_MAX_BYTES` | the audit file is rotated (`.1` … `.N`) before it would grow past this; 0 = never | 10485760 (10 MiB) |
| `INCIDENT_OPS_WEBHOOK_AUDIT_BACKUPS` | rotated audit files kept | 5 |
| `INCIDENT_OPS_WEBHOOK_DOCS` | `on`: serve the webhook app's OpenAPI (`/incidents/webhooks/openapi.json`) and docs | `off` |
| `INCIDENT_OPS_WEBHOOK_WORKERS` | threads of the Slack/PagerDuty webhooks' own pool (the work done after answering Slack) | 4 |
| `INCIDENT_OPS_WEBHOOK_MAX_PENDING` | Slack/PagerDuty jobs queued or running at once; more get 503 `busy` | 64 |
| `INCIDENT_OPS_PAGERDUTY_MAX_AGE_SECONDS` | refuse PagerDuty events whose `occurred_at` is older (replays) | 3600 |
| `INCIDENT_OPS_WEBHOOK_NEW_INCIDENTS_PER_SOURCE_PER_MINUTE` | new incidents one source (an SNS topic, an alert's `source`, a Slack reporter) may open in any 60 s; past it a delivery is `held` on the alarm storm record; 0 = no cap | 30 |
| `INCIDENT_OPS_WEBHOOK_NEW_INCIDENTS_PER_MINUTE` | new incidents all sources together may open in any 60 s; past it a delivery is `held`; 0 = no cap | 60 |
| `INCIDENT_OPS_WEBHOOK_STORM_WINDOW_SECONDS` | held deliveries of one environment go to one alarm storm record (and one 「アラームストーム」 notice in #dev-team) per window of this length | 600 |
| `INCIDENT_OPS_WEBHOOK_STORM_NOTICE_DELAY_SECONDS` | the notice is posted this long after the storm's first held delivery, with the counts held by then | 10 |

The HMAC secret of `/alert` comes from the Airflow connection `incident_webhook` (password), else
the Airflow Variable `incident_ops_webhook_secret`. The Slack app's signing secret is the password
of the connection `incident_slack_webhook`; the PagerDuty v3 webhook secrets (one, or several
separated by commas/whitespace during a rotation) the password of `incident_pagerduty_webhook`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "PAGERDUTY_SECRET_CONN_ID",
    "SECRET_CONN_ID",
    "SLACK_SECRET_CONN_ID",
    "SECRET_VARIABLE",
    "ConfigError",
    "FloodLimits",
    "WebhookConfig",
    "docs_enabled",
    "verification_enabled",
]

DEFAULT_MAX_BODY_BYTES = 256 * 1024
SECRET_CONN_ID = "incident_webhook"
SECRET_VARIABLE = "incident_ops_webhook_secret"
SLACK_SECRET_CONN_ID = "incident_slack_webhook"
PAGERDUTY_SECRET_CONN_ID = "incident_pagerduty_webhook"
_TOPIC_ARN = re.compile(r"^arn:aws(-[a-z]+)*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_HOST_PORT = re.compile(r"^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9a-fA-F:]+\](:\d{1,5})?$")
_PROJECT_ROOT = Path(__file__).resolve().parents[3]


class ConfigError(ValueError):
    """A webhook environment variable has a value that cannot be used."""


def _split(value: str) -> list[str]:
    return [item for item in re.split(r"[\s,]+", value.strip()) if item]


def _flag(name: str, value: str | None, default: bool) -> bool:
    if value is None or not value.strip():
        return default
    lowered = value.strip().lower()
    if lowered in ("on", "true", "1", "yes"):
        return True
    if lowered in ("off", "false", "0", "no"):
        return False
    raise ConfigError(f"{name} must be 'on' or 'off', got {value!r}")


def _number(name: str, value: str | None, default: float, minimum: float = 0) -> float:
    if value is None or not value.strip():
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if number < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value!r}")
    return number


def parse_topics(value: str) -> dict[str, str | None]:
    """`ARN[=environment]` items → {ARN: environment or None}."""
    topics: dict[str, str | None] = {}
    for item in _split(value):
        arn, _, environment = item.partition("=")
        if not _TOPIC_ARN.match(arn):
            raise ConfigError(f"INCIDENT_OPS_SNS_TOPICS: {arn!r} is not an SNS topic ARN")
        topics[arn] = environment or None
    return topics


def parse_regions(value: str) -> frozenset[str]:
    regions = set()
    for item in _split(value):
        if not _REGION.match(item.lower()):
            raise ConfigError(f"INCIDENT_OPS_SNS_CERT_REGIONS: {item!r} is not an AWS region (e.g. ap-northeast-1)")
        regions.add(item.lower())
    return frozenset(regions)


def parse_hosts(value: str) -> frozenset[str]:
    hosts = set()
    for item in _split(value):
        if "://" in item or "/" in item or not _HOST_PORT.match(item):
            raise ConfigError(f"INCIDENT_OPS_SNS_EXTRA_CERT_HOSTS: expected host or host:port, got {item!r}")
        hosts.add(item.lower())
    return frozenset(hosts)


@dataclass(frozen=True)
class FloodLimits:
    """The cap on NEW incidents (see `intake.Intake.open`): per source and overall, in any 60 s
    (0 = no cap); the alarm storm record's window and the delay of its notice."""

    per_source_per_minute: int = 30
    per_minute: int = 60
    storm_window_seconds: float = 600.0
    storm_notice_delay_seconds: float = 10.0

    @property
    def capped(self) -> bool:
        return bool(self.per_source_per_minute or self.per_minute)


@dataclass(frozen=True)
class WebhookConfig:
    topics: dict[str, str | None] = field(default_factory=dict)
    verify: bool = True
    extra_cert_hosts: frozenset[str] = frozenset()
    extra_ca_bundle: str | None = None
    sns_max_age_seconds: float = 3600.0
    replay_window_seconds: float = 300.0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    audit_log: Path | None = None
    retrigger_after_seconds: float = 30.0
    cert_cache_size: int = 32
    http_timeout_seconds: float = 5.0
    require_signature_v2: bool = False
    # None: the regions of the allowed topics' ARNs (see `sns_regions`).
    cert_regions: frozenset[str] | None = None
    cert_fetch_concurrency: int = 4
    cert_failure_ttl_seconds: float = 60.0
    audit_max_bytes: int = 10 * 1024 * 1024
    audit_backups: int = 5
    docs: bool = False
    workers: int = 4
    max_pending: int = 64
    pagerduty_max_age_seconds: float = 3600.0
    new_incidents_per_source_per_minute: int = 30
    new_incidents_per_minute: int = 60
    storm_window_seconds: float = 600.0
    storm_notice_delay_seconds: float = 10.0

    @property
    def flood(self) -> FloodLimits:
        """The intake's cap on new incidents (the four settings above)."""
        return FloodLimits(self.new_incidents_per_source_per_minute, self.new_incidents_per_minute,
                           self.storm_window_seconds, self.storm_notice_delay_seconds)

    @property
    def sns_regions(self) -> frozenset[str]:
        """The regions whose SNS hosts may serve signing certificates and SubscribeURLs."""
        if self.cert_regions is not None:
            return self.cert_regions
        return frozenset(arn.split(":")[3] for arn in self.topics)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WebhookConfig:
        env = os.environ if environ is None else environ
        audit = env.get("INCIDENT_OPS_WEBHOOK_AUDIT_LOG")
        if audit is None or not audit.strip():
            state = env.get("INCIDENT_OPS_STATE_DIR") or str(_PROJECT_ROOT / "state")
            audit_path: Path | None = Path(state) / "webhooks" / "audit.jsonl"
        elif audit.strip() == "-":
            audit_path = None
        else:
            audit_path = Path(audit.strip())
        ca_bundle = (env.get("INCIDENT_OPS_SNS_EXTRA_CA_BUNDLE") or "").strip() or None
        if ca_bundle and not Path(ca_bundle).is_file():
            raise ConfigError(f"INCIDENT_OPS_SNS_EXTRA_CA_BUNDLE: no file {ca_bundle!r}")
        return cls(
            topics=parse_topics(env.get("INCIDENT_OPS_SNS_TOPICS", "")),
            verify=_flag("INCIDENT_OPS_WEBHOOK_VERIFY", env.get("INCIDENT_OPS_WEBHOOK_VERIFY"), True),
            extra_cert_hosts=parse_hosts(env.get("INCIDENT_OPS_SNS_EXTRA_CERT_HOSTS", "")),
            extra_ca_bundle=ca_bundle,
            sns_max_age_seconds=_number("INCIDENT_OPS_SNS_MAX_AGE_SECONDS", env.get("INCIDENT_OPS_SNS_MAX_AGE_SECONDS"), 3600.0),
            replay_window_seconds=_number(
                "INCIDENT_OPS_WEBHOOK_REPLAY_WINDOW_SECONDS", env.get("INCIDENT_OPS_WEBHOOK_REPLAY_WINDOW_SECONDS"), 300.0, 1
            ),
            max_body_bytes=int(
                _number("INCIDENT_OPS_WEBHOOK_MAX_BODY_BYTES", env.get("INCIDENT_OPS_WEBHOOK_MAX_BODY_BYTES"),
                        DEFAULT_MAX_BODY_BYTES, 1)
            ),
            audit_log=audit_path,
            retrigger_after_seconds=_number(
                "INCIDENT_OPS_WEBHOOK_RETRIGGER_AFTER_SECONDS", env.get("INCIDENT_OPS_WEBHOOK_RETRIGGER_AFTER_SECONDS"), 30.0
            ),
            require_signature_v2=_flag("INCIDENT_OPS_SNS_REQUIRE_SIGNATURE_V2",
                                       env.get("INCIDENT_OPS_SNS_REQUIRE_SIGNATURE_V2"), False),
            cert_regions=parse_regions(regions) if (regions := env.get("INCIDENT_OPS_SNS_CERT_REGIONS", "")).strip() else None,
            cert_fetch_concurrency=int(_number("INCIDENT_OPS_SNS_CERT_FETCHES", env.get("INCIDENT_OPS_SNS_CERT_FETCHES"), 4, 1)),
            cert_failure_ttl_seconds=_number("INCIDENT_OPS_SNS_CERT_FAILURE_TTL_SECONDS",
                                             env.get("INCIDENT_OPS_SNS_CERT_FAILURE_TTL_SECONDS"), 60.0),
            audit_max_bytes=int(_number("INCIDENT_OPS_WEBHOOK_AUDIT_MAX_BYTES", env.get("INCIDENT_OPS_WEBHOOK_AUDIT_MAX_BYTES"),
                                        10 * 1024 * 1024)),
            audit_backups=int(_number("INCIDENT_OPS_WEBHOOK_AUDIT_BACKUPS", env.get("INCIDENT_OPS_WEBHOOK_AUDIT_BACKUPS"), 5)),
            docs=docs_enabled(env),
            workers=int(_number("INCIDENT_OPS_WEBHOOK_WORKERS", env.get("INCIDENT_OPS_WEBHOOK_WORKERS"), 4, 1)),
            max_pending=int(_number("INCIDENT_OPS_WEBHOOK_MAX_PENDING", env.get("INCIDENT_OPS_WEBHOOK_MAX_PENDING"), 64, 1)),
            pagerduty_max_age_seconds=_number("INCIDENT_OPS_PAGERDUTY_MAX_AGE_SECONDS",
                                              env.get("INCIDENT_OPS_PAGERDUTY_MAX_AGE_SECONDS"), 3600.0, 1),
            new_incidents_per_source_per_minute=int(_number(
                "INCIDENT_OPS_WEBHOOK_NEW_INCIDENTS_PER_SOURCE_PER_MINUTE",
                env.get("INCIDENT_OPS_WEBHOOK_NEW_INCIDENTS_PER_SOURCE_PER_MINUTE"), 30)),
            new_incidents_per_minute=int(_number("INCIDENT_OPS_WEBHOOK_NEW_INCIDENTS_PER_MINUTE",
                                                 env.get("INCIDENT_OPS_WEBHOOK_NEW_INCIDENTS_PER_MINUTE"), 60)),
            storm_window_seconds=_number("INCIDENT_OPS_WEBHOOK_STORM_WINDOW_SECONDS",
                                         env.get("INCIDENT_OPS_WEBHOOK_STORM_WINDOW_SECONDS"), 600.0, 60),
            storm_notice_delay_seconds=_number("INCIDENT_OPS_WEBHOOK_STORM_NOTICE_DELAY_SECONDS",
                                               env.get("INCIDENT_OPS_WEBHOOK_STORM_NOTICE_DELAY_SECONDS"), 10.0),
        )


def docs_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """`INCIDENT_OPS_WEBHOOK_DOCS`: the webhook app's OpenAPI and docs pages are served only when on."""
    env = os.environ if environ is None else environ
    return _flag("INCIDENT_OPS_WEBHOOK_DOCS", env.get("INCIDENT_OPS_WEBHOOK_DOCS"), False)


def verification_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """`INCIDENT_OPS_WEBHOOK_VERIFY` (on unless set off)."""
    env = os.environ if environ is None else environ
    return _flag("INCIDENT_OPS_WEBHOOK_VERIFY", env.get("INCIDENT_OPS_WEBHOOK_VERIFY"), True)
