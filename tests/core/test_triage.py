"""障害レベルの判定: symptom text, CloudWatch alarms, overrides, and the unmatched default."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from incident_ops.core.runbook import DEFAULT_RUNBOOK_PATH, Runbook, parse_runbook
from incident_ops.core.triage import (
    classify,
    higher_severity,
    normalize_text,
    severity_rank,
    symptom_choices,
)


def runbook_variant(change: Callable[[dict[str, Any]], None]) -> Runbook:
    data = yaml.safe_load(DEFAULT_RUNBOOK_PATH.read_text(encoding="utf-8"))
    change(data)
    return parse_runbook(data)


def all_symptom_terms() -> list[tuple[str, str, str]]:
    data = yaml.safe_load(DEFAULT_RUNBOOK_PATH.read_text(encoding="utf-8"))
    cases = []
    for symptom in data["triage"]["symptoms"]:
        for term in [symptom["id"], symptom["label"], *symptom.get("aliases", [])]:
            cases.append((term, symptom["id"], symptom["severity"]))
    return cases


@pytest.mark.parametrize(
    ("text", "severity", "symptom_id"),
    [
        # The runbook's table (症状 → 推定レベル), word for word.
        ("全ユーザーがアクセス不可", "P1", "all_users_down"),
        ("ログインできない", "P1", "login_failure"),
        ("診断機能が動作しない", "P2", "diagnosis_broken"),
        ("レポート生成が遅い", "P3", "report_slow"),
        ("UIの表示崩れ", "P4", "ui_broken"),
    ],
)
def test_the_spec_table(runbook: Runbook, text: str, severity: str, symptom_id: str) -> None:
    result = classify(runbook, text)
    assert (result.severity, result.symptom_id, result.source) == (severity, symptom_id, "symptom")
    assert result.rule == f"symptom {symptom_id} ({text}) → {severity}"


@pytest.mark.parametrize(("term", "symptom_id", "severity"), all_symptom_terms())
def test_every_id_label_and_alias_finds_its_symptom(
    runbook: Runbook, term: str, symptom_id: str, severity: str
) -> None:
    result = classify(runbook, term)
    assert result.severity == severity
    assert result.symptom_id == symptom_id
    assert result.impact == runbook.symptom(symptom_id).impact


@pytest.mark.parametrize(
    ("text", "severity", "symptom_id"),
    [
        ("Since 10:05 users cannot log in to PeopleBooster", "P1", "login_failure"),
        ("Customers say they can’t log in (curly apostrophe)", "P1", "login_failure"),
        ("LOGIN   FAILURE on prod", "P1", "login_failure"),
        ("本番環境でレポート生成が遅いとの問い合わせ", "P3", "report_slow"),
        ("ＵＩの表示崩れ（全角）", "P4", "ui_broken"),  # NFKC: full-width to half-width
        ("診断できない、回答が保存できない", "P2", "diagnosis_broken"),
        ("ALB 5xx spike after deploy", "P2", "error_rate_high"),
        ("report", "P3", "report_slow"),  # a short text contained in an alias
        ("データ", "P1", "data_loss"),  # 3 characters: contained in a label
    ],
)
def test_free_text(runbook: Runbook, text: str, severity: str, symptom_id: str) -> None:
    result = classify(runbook, text)
    assert (result.severity, result.symptom_id) == (severity, symptom_id)


def test_several_matches_take_the_higher_severity(runbook: Runbook) -> None:
    result = classify(runbook, "UIの表示崩れがあり、レポート生成が遅い")
    assert result.severity == "P3"
    assert result.symptom_id == "report_slow"
    assert result.candidates == [("report_slow", "P3"), ("ui_broken", "P4")]
    assert "2 matches" in result.rule


def test_a_two_character_text_is_not_matched_inside_terms(runbook: Runbook) -> None:
    result = classify(runbook, "ui")
    assert result.source == "unmatched"


def test_unmatched_text_is_treated_as_the_higher_default(runbook: Runbook) -> None:
    result = classify(runbook, "something odd with the invoices")
    assert result.severity == "P2"
    assert result.rule == "unmatched → P2 (when unsure, the higher one)"
    assert result.symptom_id is None
    assert result.symptom_label == "something odd with the invoices"
    assert result.impact is None
    assert result.candidates == []


def test_nothing_at_all_is_unmatched(runbook: Runbook) -> None:
    for empty in (None, "", "   "):
        result = classify(runbook, empty)
        assert (result.severity, result.source, result.symptom_label) == ("P2", "unmatched", None)


def test_unmatched_severity_comes_from_the_runbook() -> None:
    cautious = runbook_variant(lambda data: data["triage"].update(unmatched_severity="P1"))
    assert classify(cautious, "something odd").severity == "P1"


@pytest.mark.parametrize("override", ["P1", "p1", " P1 "])
def test_a_reporter_override_always_wins(runbook: Runbook, override: str) -> None:
    result = classify(runbook, "UIの表示崩れ", override=override)
    assert result.severity == "P1"
    assert result.rule.startswith("override by reporter")
    assert result.source == "override"
    # The symptom is still known, for the declaration message.
    assert result.symptom_id == "ui_broken"


def test_an_override_can_also_lower_the_severity(runbook: Runbook) -> None:
    result = classify(
        runbook, "ログインできない", override="P3", alarm={"AlarmName": "peoplebooster-production-alb-5xx"}
    )
    assert result.severity == "P3"
    assert result.source == "override"


@pytest.mark.parametrize("override", ["P5", "high", "1"])
def test_an_invalid_override_is_refused(runbook: Runbook, override: str) -> None:
    with pytest.raises(ValueError, match="override must be one of P1, P2, P3, P4"):
        classify(runbook, "UIの表示崩れ", override=override)


def test_an_empty_override_means_none(runbook: Runbook) -> None:
    assert classify(runbook, "UIの表示崩れ", override="").severity == "P4"


@pytest.mark.parametrize(
    ("alarm_name", "symptom_id", "severity", "service"),
    [
        ("peoplebooster-production-alb-5xx", "error_rate_high", "P2", "backend"),
        ("peoplebooster-production-health-check-failed", "all_users_down", "P1", "backend"),
        ("peoplebooster-production-backend-cpu-high", "report_slow", "P3", "backend"),
        ("peoplebooster-production-rds-connections-high", "diagnosis_broken", "P2", "backend"),
        ("peoplebooster-production-frontend-5xx", "ui_broken", "P4", "frontend"),
    ],
)
def test_mapped_alarms(runbook: Runbook, alarm_name: str, symptom_id: str, severity: str, service: str) -> None:
    alarm = {"AlarmName": alarm_name, "NewStateValue": "ALARM", "MetricName": "X", "Namespace": "AWS/ECS"}
    result = classify(runbook, alarm=alarm)
    assert (result.symptom_id, result.severity, result.service, result.source) == (
        symptom_id,
        severity,
        service,
        "alarm",
    )
    assert result.rule == f"alarm {alarm_name} → {symptom_id} → {severity}"


def test_an_unmapped_alarm_uses_the_documented_default(runbook: Runbook) -> None:
    result = classify(runbook, alarm={"AlarmName": "someone-elses-new-alarm"})
    assert result.severity == "P2"
    assert result.symptom_id == "error_rate_high"
    assert result.service == "backend"
    assert "default_alarm" in result.rule


def test_staging_alarms_use_the_staging_map(runbook: Runbook) -> None:
    result = classify(runbook, alarm={"AlarmName": "peoplebooster-production-frontend-5xx"}, environment="staging")
    assert "default_alarm" in result.rule


def test_an_alarm_mapping_severity_wins_over_its_symptom() -> None:
    def raise_frontend(data: dict[str, Any]) -> None:
        for alarm in data["environments"]["production"]["alarms"]:
            if alarm["name"] == "peoplebooster-production-frontend-5xx":
                alarm["severity"] = "P2"

    result = classify(runbook_variant(raise_frontend), alarm={"AlarmName": "peoplebooster-production-frontend-5xx"})
    assert result.severity == "P2"
    assert result.symptom_id == "ui_broken"
    assert "own severity" in result.rule


def test_text_and_alarm_take_the_higher(runbook: Runbook) -> None:
    health_failed = {"AlarmName": "peoplebooster-production-health-check-failed"}
    alarm_wins = classify(runbook, "UIの表示崩れ", alarm=health_failed)
    assert (alarm_wins.severity, alarm_wins.symptom_id, alarm_wins.source) == ("P1", "all_users_down", "alarm")
    assert set(alarm_wins.candidates) == {("all_users_down", "P1"), ("ui_broken", "P4")}

    text_wins = classify(runbook, "ログインできない", alarm={"AlarmName": "peoplebooster-production-alb-5xx"})
    assert (text_wins.severity, text_wins.symptom_id, text_wins.source) == ("P1", "login_failure", "symptom")
    assert text_wins.service == "backend"  # the alarm still says where


def test_a_tie_between_text_and_alarm_keeps_the_reported_symptom(runbook: Runbook) -> None:
    result = classify(runbook, "診断機能が動作しない", alarm={"AlarmName": "peoplebooster-production-alb-5xx"})
    assert (result.severity, result.symptom_id) == ("P2", "diagnosis_broken")


def test_unmatched_text_does_not_raise_an_alarm(runbook: Runbook) -> None:
    result = classify(runbook, "frontend looks odd", alarm={"AlarmName": "peoplebooster-production-frontend-5xx"})
    assert (result.severity, result.symptom_id) == ("P4", "ui_broken")


def test_an_alarm_needs_a_name(runbook: Runbook) -> None:
    with pytest.raises(ValueError, match="AlarmName"):
        classify(runbook, alarm={"NewStateValue": "ALARM"})


def test_an_unknown_environment_is_refused(runbook: Runbook) -> None:
    with pytest.raises(KeyError, match="unknown environment"):
        classify(runbook, "UIの表示崩れ", environment="prod")


def test_symptom_choices_for_forms(runbook: Runbook) -> None:
    choices = symptom_choices(runbook)
    assert choices[0] == ("all_users_down", "全ユーザーがアクセス不可")
    assert [symptom_id for symptom_id, _ in choices] == [s.id for s in runbook.triage.symptoms]
    assert ("ui_broken", "UIの表示崩れ") in choices


def test_classification_as_json(runbook: Runbook) -> None:
    data = classify(runbook, "ログインできない").to_dict()
    assert data["severity"] == "P1"
    assert data["symptom"] == "login_failure"
    assert data["label"] == "ログインできない"
    assert data["impact"] == "全ユーザー / ログイン"
    assert data["candidates"] == [{"symptom": "login_failure", "severity": "P1"}]


def test_normalize_text() -> None:
    assert normalize_text("  ＬＯＧＩＮ\u3000 Failure\n") == "login failure"
    assert normalize_text("can’t") == "can't"


def test_severity_order() -> None:
    assert severity_rank("P1") < severity_rank("P4")
    assert higher_severity("P3", "P2") == "P2"
    assert higher_severity("P1", "P1") == "P1"
    with pytest.raises(ValueError, match="unknown severity"):
        severity_rank("P0")
