"""The sandbox's webhook settings, and the same secrets on both sides of the local stack (no server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sandbox.__main__ import main as sandbox_main  # noqa: F401 - the CLI module imports cleanly
from sandbox.webhooks import (
    DEFAULT_PAGERDUTY_WEBHOOK_SECRET,
    DEFAULT_SLACK_SIGNING_SECRET,
    WebhookConfig,
    pagerduty_signature,
    slack_signature,
)

from scripts.incident_runner import (
    SANDBOX_PAGERDUTY_WEBHOOK_SECRET,
    SANDBOX_SLACK_SIGNING_SECRET,
    LocalStack,
    sandbox_webhook_env,
)


def test_the_stack_gives_airflow_and_the_sandbox_the_same_secrets(tmp_path: Path) -> None:
    endpoints = {"https": "https://127.0.0.1:5057", "ca_bundle": "/tmp/ca.pem"}
    env = sandbox_webhook_env(endpoints, "arn:aws:sns:ap-northeast-1:123456789012:t")
    assert json.loads(env["AIRFLOW_CONN_INCIDENT_SLACK_WEBHOOK"]) == {"conn_type": "generic", "password": SANDBOX_SLACK_SIGNING_SECRET}
    assert json.loads(env["AIRFLOW_CONN_INCIDENT_PAGERDUTY_WEBHOOK"]) == {"conn_type": "generic", "password": SANDBOX_PAGERDUTY_WEBHOOK_SECRET}
    assert (DEFAULT_SLACK_SIGNING_SECRET, DEFAULT_PAGERDUTY_WEBHOOK_SECRET) == (SANDBOX_SLACK_SIGNING_SECRET, SANDBOX_PAGERDUTY_WEBHOOK_SECRET)
    command = LocalStack(tmp_path, port=18080).sandbox_command()
    assert command[command.index("--airflow-url") + 1] == "http://127.0.0.1:18080"
    assert command[command.index("--slack-signing-secret") + 1] == SANDBOX_SLACK_SIGNING_SECRET
    assert command[command.index("--pagerduty-webhook-secret") + 1] == SANDBOX_PAGERDUTY_WEBHOOK_SECRET


def test_settings() -> None:
    config = WebhookConfig()
    assert config.slack_url is None and config.pagerduty_url is None
    config.update({"airflow_url": "http://airflow:8080", "pagerduty_webhook_secret": "a, b"})
    assert config.slack_url == "http://airflow:8080/incidents/webhooks/slack"
    assert config.pagerduty_url == "http://airflow:8080/incidents/webhooks/pagerduty"
    assert config.pagerduty_webhook_secrets == ["a", "b"]
    with pytest.raises(ValueError):
        config.update({"slack_signing_secret": ""})
    with pytest.raises(ValueError):
        config.update({"unknown": 1})


def test_signatures_are_slacks_and_pagerdutys() -> None:
    # Slack's documented example (api.slack.com/authentication/verifying-requests-from-slack)
    body = (b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
            b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
            b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
            b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")
    assert slack_signature("8f742231b10e8888abcd99yyyzzz85a5", "1531420618", body) == (
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503")
    assert pagerduty_signature(["s1", "s2"], b"{}").count("v1=") == 2
