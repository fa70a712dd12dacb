"""障害レベルの判定: symptom text, CloudWatch alarms, overrides, and the unmatched default.

The report corpus (tests/core/triage_corpus.yaml) holds the reports the vocabulary was tuned on
(`tuned`: every one must get its level) and reports it was never tuned on (`held_out`: >= 90%).
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from incident_ops.core.runbook import DEFAULT_RUNBOOK_PATH, Runbook, RunbookError, parse_runbook
from incident_ops.core.triage import (
    Evidence,
    classify,
    higher_severity,
    normalize_report,
    normalize_text,
    severity_rank,
    symptom_choices,
)

CORPUS = Path(__file__).with_name("triage_corpus.yaml")
LEVELS = ("P1", "P2", "P3", "P4")
HELD_OUT_MINIMUM = 0.90


@cache
def runbook_data() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_RUNBOOK_PATH.read_text(encoding="utf-8"))


@cache
def corpus() -> dict[str, list[dict[str, Any]]]:
    return yaml.safe_load(CORPUS.read_text(encoding="utf-8"))


def runbook_variant(change: Callable[[dict[str, Any]], None]) -> Runbook:
    data = copy.deepcopy(runbook_data())
    change(data)
    return parse_runbook(data)


def vocabulary_error(change: Callable[[dict[str, Any]], None]) -> RunbookError:
    with pytest.raises(RunbookError) as caught:
        runbook_variant(lambda data: change(data["triage"]["vocabulary"]))
    return caught.value


def all_symptom_terms() -> list[tuple[str, str, str]]:
    cases = []
    for symptom in runbook_data()["triage"]["symptoms"]:
        for term in [symptom["id"], symptom["label"], *symptom.get("aliases", [])]:
            cases.append((term, symptom["id"], symptom["severity"]))
    return cases


def words(result: Any, facet: str | None = None) -> list[str]:
    return [item.word for item in result.evidence if facet is None or item.facet == facet]


# --- the corpus ------------------------------------------------------------------------------------


def test_the_corpus_is_large_and_covers_every_level() -> None:
    tuned, held_out = corpus()["tuned"], corpus()["held_out"]
    assert len(tuned) + len(held_out) >= 150
    assert len(held_out) >= 30
    for reports in (tuned, held_out):
        assert set(Counter(report["level"] for report in reports)) == set(LEVELS)
        for report in reports:
            assert set(report) <= {"text", "level", "note"}, report
    texts = [report["text"] for report in [*tuned, *held_out]]
    duplicated = [text for text, count in Counter(texts).items() if count > 1]
    assert duplicated == []
    # "expected-higher" is the documented way to say a report is ambiguous: never silent.
    for report in [*tuned, *held_out]:
        if "expected-higher" in report.get("note", ""):
            assert report["note"].split(":", 1)[1].strip(), report


@pytest.mark.parametrize("report", corpus()["tuned"], ids=lambda report: report["text"][:40])
def test_every_tuned_report_gets_its_level(runbook: Runbook, report: dict[str, Any]) -> None:
    result = classify(runbook, report["text"])
    assert result.severity == report["level"], result.rule


def test_tuned_accuracy_per_level_is_total(runbook: Runbook) -> None:
    right, total = Counter(), Counter()
    for report in corpus()["tuned"]:
        total[report["level"]] += 1
        right[report["level"]] += classify(runbook, report["text"]).severity == report["level"]
    assert {level: right[level] / total[level] for level in LEVELS} == dict.fromkeys(LEVELS, 1.0)


def test_held_out_accuracy(runbook: Runbook) -> None:
    reports = corpus()["held_out"]
    right = sum(classify(runbook, report["text"]).severity == report["level"] for report in reports)
    assert right / len(reports) >= HELD_OUT_MINIMUM


# --- the runbook's table, catalogue phrases ----------------------------------------------------------


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
    assert result.symptom_label == text


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
        ("データ", "P1", "data_loss"),  # data, how is not said: when unsure, the higher one
        ("reports are slow today", "P3", "report_slow"),  # reports × slow: what report_slow's phrases say
        ("Users can't sign in", "P1", "login_failure"),
        ("5xx rate high on backend", "P2", "error_rate_high"),
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
    assert "the highest of 2 readings: report_slow P3, ui_broken P4; when unsure, the higher one" in result.rule


def test_a_scope_word_contradicts_a_catalogue_phrase(runbook: Runbook) -> None:
    # 「アクセス不可」 is an alias of 全ユーザーがアクセス不可, but 一部 says it is not everyone.
    result = classify(runbook, "一部ユーザーがアクセス不可")
    assert result.severity == "P2"
    assert result.symptom_id is None  # not all_users_down: the declaration must not say 全ユーザー
    assert result.symptom_label == "一部ユーザーがアクセス不可"
    assert result.impact == "一部のユーザー / 全ユーザー / 全機能".split(" / ", 1)[0] + " / 全機能"
    assert result.rule == "symptom all_users_down (全ユーザーがアクセス不可) → P1; 一部のユーザー (一部) → P2"
    assert Evidence("scope", "partial", "一部") in result.evidence
    assert Evidence("symptom", "all_users_down", "アクセス不可") in result.evidence
    assert result.candidates == [("all_users_down", "P2")]


def test_an_english_word_is_not_matched_inside_another(runbook: Runbook) -> None:
    assert classify(runbook, "build").source == "unmatched"  # not "ui"
    assert classify(runbook, "something significant").source == "unmatched"  # not "cant"
    assert classify(runbook, "ui").severity == "P4"  # a display word, how it fails not said


# --- reading a report: facets, scope, negation, workaround ------------------------------------------


@pytest.mark.parametrize(
    ("text", "severity"),
    [
        ("情報漏えい", "P1"),
        ("個人情報漏洩の可能性", "P1"),
        ("一部機能のエラー", "P3"),
        ("ページに誤字がある", "P4"),
        ("typo on the login page", "P4"),
        ("一部ユーザーがログインできない", "P2"),
    ],
)
def test_the_issue_examples(runbook: Runbook, text: str, severity: str) -> None:
    assert classify(runbook, text).severity == severity


def test_subject_and_manner_are_the_decisive_words(runbook: Runbook) -> None:
    result = classify(runbook, "管理画面が開けない")
    assert (result.severity, result.source) == ("P2", "facets")
    assert result.evidence == [Evidence("subject", "feature", "管理画面"), Evidence("manner", "down", "開けない")]
    assert result.rule == "管理画面, 開けない: 機能 × 停止・アクセス不可 → P2"
    assert result.symptom_label == "管理画面が開けない"  # the reporter's words, not a catalogue label
    assert result.impact == "機能"


def test_how_it_fails_not_said_takes_the_higher_level(runbook: Runbook) -> None:
    result = classify(runbook, "ログインの件")
    assert result.severity == "P1"
    assert "how it fails is not said → P1 (when unsure, the higher one)" in result.rule


def test_what_is_affected_not_said(runbook: Runbook) -> None:
    result = classify(runbook, "500エラーが出る")
    assert result.severity == "P2"
    assert words(result) == ["500"]
    assert "what is affected is not said" in result.rule


@pytest.mark.parametrize(
    ("text", "severity", "scope_word"),
    [
        ("一部ユーザーがログインできない", "P2", "一部"),  # P1 lowered one level
        ("Some users cannot log in", "P2", "some"),
        ("時々ログインできないことがある", "P2", "時々"),  # intermittent: lowered
        ("一部ユーザーでレポートが遅い", "P3", None),  # lowered, but not below P3 (users are affected)
        ("全員のダッシュボードが遅い", "P2", "全員"),  # everyone: at least P2
        ("全ページで500エラー", "P1", "全ページ"),  # everyone's errors: the service is down
        ("ステージング環境でログインできない", "P4", "ステージング"),  # no user impact: at most P4
        ("多数のユーザーがログインできない", "P2", "多数"),  # 多数のユーザーに影響 is P2's definition
    ],
)
def test_scope_moves_the_level(runbook: Runbook, text: str, severity: str, scope_word: str | None) -> None:
    result = classify(runbook, text)
    assert result.severity == severity, result.rule
    if scope_word is not None:
        assert scope_word in words(result, "scope")


@pytest.mark.parametrize(
    "text",
    ["一部ユーザーの回答データが消失しています", "特定の企業の個人情報が漏洩", "ステージング環境への不正アクセス",
     "一部のユーザーで他社のデータが見える、再読み込みで消える"],
)
def test_data_loss_leaks_and_security_stay_p1(runbook: Runbook, text: str) -> None:
    result = classify(runbook, text)
    assert result.severity == "P1"
    assert "data loss, leaks and security stay P1" in result.rule


@pytest.mark.parametrize(
    ("text", "severity", "denied"),
    [
        ("ログインはできるが、ダッシュボードが遅い", "P3", "ログイン"),
        ("Login works but the dashboard is slow", "P3", "login"),
        ("データ損失はないが、診断が保存できない", "P2", "損失"),
        ("No data loss; the report page is slow", "P3", "data loss"),
        ("不正アクセスではなく、ただの表示崩れでした", "P4", "不正アクセス"),
        ("It's not down, just slow", "P3", "down"),
        ("ログインも診断も問題なく、レポートだけ遅い", "P3", "診断"),
        ("Not all users – only users of tenant ACME cannot log in", "P2", "all users"),
    ],
)
def test_negation(runbook: Runbook, text: str, severity: str, denied: str) -> None:
    result = classify(runbook, text)
    assert result.severity == severity, result.rule
    negated = [item for item in result.matched if item.negated_by]
    assert denied in [item.word for item in negated]
    assert denied not in words(result)
    assert "not counted (denied)" in result.rule
    assert any("negated_by" in item for item in result.to_dict()["matched"])


@pytest.mark.parametrize(
    ("text", "severity", "workaround"),
    [
        ("ログインできないが、再ログインで回避可能", "P2", True),  # P1 lowered one level
        ("回答が保存できないが、再読み込みで解消", "P3", True),
        ("一部ユーザーで回答が保存できない、再読み込みで解消", "P3", True),  # P3 already: not below P3
        ("特定のブラウザで診断が保存できないが、Chromeなら問題ない", "P3", True),
        ("Intermittent 502 on login for a few users, retry succeeds", "P3", True),  # "succeeds" confirms it
        ("診断できない、再読み込みしても直らない", "P2", False),  # tried, did not help
        ("診断が保存できない、回避策なし", "P2", False),  # denied
        ("表示崩れ、リロードで直る", "P4", True),  # P4 cannot go lower
    ],
)
def test_workaround(runbook: Runbook, text: str, severity: str, workaround: bool) -> None:
    result = classify(runbook, text)
    assert result.severity == severity, result.rule
    counted = [item for item in result.matched if item.facet == "workaround" and not item.negated_by]
    assert bool(counted) is workaround


def test_a_broad_word_gives_way_to_a_specific_one(runbook: Runbook) -> None:
    # 診断API is the diagnosis (P2), not the whole API (P1).
    assert classify(runbook, "診断APIがダウン").severity == "P2"
    assert classify(runbook, "APIがダウン").severity == "P1"
    # A look said after a thing is about how the thing looks; an upload of images is an upload.
    assert classify(runbook, "ログイン画面のアイコンが表示されない").severity == "P4"
    assert classify(runbook, "画像のアップロードができない").severity == "P2"


def test_a_display_word_reads_a_vague_manner_as_cosmetic(runbook: Runbook) -> None:
    result = classify(runbook, "ボタンの色がおかしい")
    assert result.severity == "P4"
    assert "counts as 表示の軽微な不具合" in result.rule


def test_clauses_pair_subjects_and_manners(runbook: Runbook) -> None:
    # Login is slow (P3), the diagnosis cannot be saved (P2): login is not "cannot" (P1).
    result = classify(runbook, "ログインは遅く、診断は保存できない")
    assert result.severity == "P2"
    # An enumeration shares the manner said last.
    assert classify(runbook, "レポート、ダッシュボード、すべて表示されない").severity == "P2"


def test_a_partial_reading_names_no_catalogue_symptom(runbook: Runbook) -> None:
    assert classify(runbook, "a few users get 403 when opening reports").symptom_id is None
    assert classify(runbook, "検索が遅い").symptom_id is None  # slow, but not a report


# --- normalisation ------------------------------------------------------------------------------------


def test_normalize_text() -> None:
    assert normalize_text("  ＬＯＧＩＮ\u3000 Failure\n") == "login failure"
    assert normalize_text("can’t") == "can't"


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("ﾛｸﾞｲﾝできません", "ログインできません"),  # half-width kana
        ("ＬＯＧＩＮ　ＦＡＩＬＵＲＥ", "login failure"),  # full-width, ideographic space
        ("情報漏えい", "情報漏洩"),  # kana/kanji variant
        ("障碍", "障害"),
        ("ユーザー", "ユーザ"),  # a long vowel mark ending a katakana word
        ("ユーザ", "ユーザ"),
        ("サーバ－が落ちた", "サーバが落ちた"),  # a dash typed as the long vowel mark
        ("ログイン できない", "ログインできない"),  # a space between Japanese characters
        ("Can't  log in", "cannot login"),  # case, contraction, spacing
        ("health-check_failed", "healthcheck failed"),
        ("TargetResponseTime", "target response time"),  # CloudWatch CamelCase
        ("DDoS PDFs", "ddos pdfs"),  # not split
        ("1行目\n2行目", "1行目。2行目"),  # a line ends a clause
    ],
)
def test_normalize_report(runbook: Runbook, text: str, normalized: str) -> None:
    assert normalize_report(text, runbook) == normalized


@pytest.mark.parametrize(
    "text", ["ログインできない", "ﾛｸﾞｲﾝできない", "ろぐいん".replace("ろぐいん", "ログイン") + "出来ない",
             "ＬＯＧＩＮできない", "loginできない", "ログイン　できない"],
)
def test_written_variants_read_the_same(runbook: Runbook, text: str) -> None:
    assert classify(runbook, text).severity == "P1"


# --- the vocabulary is data -----------------------------------------------------------------------------


def test_the_team_can_extend_the_vocabulary_without_code(runbook: Runbook) -> None:
    assert classify(runbook, "請求書PDFのロゴが違う").severity == "P4"
    assert classify(runbook, "給与計算が止まった").severity == "P1"  # unknown noun, 止まった: when unsure
    extended = runbook_variant(lambda data: data["triage"]["vocabulary"]["subjects"]["notifications"]["words"].append("給与計算"))
    assert classify(extended, "給与計算が止まった").severity == "P3"


def test_without_a_vocabulary_only_the_catalogue_phrases_are_read() -> None:
    bare = runbook_variant(lambda data: data["triage"].pop("vocabulary"))
    assert classify(bare, "ログインできない").severity == "P1"
    assert classify(bare, "Users are unable to sign in").source == "unmatched"


@pytest.mark.parametrize(
    ("change", "path", "reason"),
    [
        (lambda v: v["subjects"]["login"]["levels"].update(slo="P3"),
         "triage.vocabulary.subjects.login.levels", "unknown manner 'slo'"),
        (lambda v: v["subjects"]["login"]["levels"].pop("default"),
         "triage.vocabulary.subjects.login.levels", "needs `default`"),
        (lambda v: v["subjects"]["login"].update(levels={}),
         "triage.vocabulary.subjects.login.levels", "give `levels`"),
        (lambda v: v["subjects"]["login"]["levels"].update(slow="P5"),
         "triage.vocabulary.subjects.login.levels.slow", "P1"),
        (lambda v: v["scope"]["all"]["treat_as"].update(errors="outage"),
         "triage.vocabulary.scope.all.treat_as", "unknown manner 'outage'"),
        (lambda v: v["subjects"]["service"]["gives_way_to"].append("billing"),
         "triage.vocabulary.subjects.service.gives_way_to", "unknown subject 'billing'"),
        (lambda v: v["manners"]["loss"].update(symptom="data_gone"),
         "triage.vocabulary.manners.loss.symptom", "unknown symptom 'data_gone'"),
        (lambda v: v["manners"]["slow"]["words"].append("ダウン"),
         "triage.vocabulary.manners.slow.words", "'ダウン' is also in manners.down.words"),
        (lambda v: v["subjects"]["display"]["words"].append("ﾛｸﾞｲﾝ"),
         "triage.vocabulary.subjects.display.words", "'ﾛｸﾞｲﾝ' is also in subjects.login.words"),  # NFKC
        (lambda v: v["scope"]["minor"]["words"].append("ユーザ影響なし"),  # = ユーザー影響なし once normalised
         "triage.vocabulary.scope.minor.words", "which is already in scope.no_impact.words"),
        (lambda v: v["manners"]["exposure"]["words"].append("他社の…"),
         "triage.vocabulary.manners.exposure.words", "a pattern is 'A…B'"),
        (lambda v: v["scope"]["partial"]["words"].append("  "),
         "triage.vocabulary.scope.partial.words", "an empty word"),
        (lambda v: v["negation"].update(sideways=["x"]),
         "triage.vocabulary.negation.sideways", "unknown key"),
        (lambda v: v["scope"]["all"].update(at_least="P0"),
         "triage.vocabulary.scope.all.at_least", "P1"),
    ],
)
def test_vocabulary_errors_name_the_key(change: Callable[[dict[str, Any]], None], path: str, reason: str) -> None:
    error = vocabulary_error(change)
    assert error.path == path or error.path.startswith(path + "[")  # a list item names its index
    assert reason in error.reason
    assert str(error).startswith(error.path)


# --- overrides, alarms, the rest ---------------------------------------------------------------------


def test_unmatched_text_is_treated_as_the_higher_default(runbook: Runbook) -> None:
    result = classify(runbook, "the coffee machine on the third floor")
    assert result.severity == "P2"
    assert result.rule == "unmatched → P2 (when unsure, the higher one)"
    assert result.symptom_id is None
    assert result.symptom_label == "the coffee machine on the third floor"
    assert result.impact is None
    assert result.candidates == []
    assert result.evidence == []


def test_a_vague_word_alone_stays_unmatched(runbook: Runbook) -> None:
    # 「おかしい」 says how, not what: nothing to read; with a subject it is a reading.
    for text in ("something odd", "何かおかしい"):
        result = classify(runbook, text)
        assert (result.severity, result.source) == ("P2", "unmatched")
    assert classify(runbook, "診断機能がおかしい").source == "facets"


def test_unmatched_text_still_takes_scope_words(runbook: Runbook) -> None:
    result = classify(runbook, "No user impact: warnings in the batch log")
    assert (result.severity, result.source) == ("P4", "unmatched")
    assert result.evidence == [Evidence("scope", "no_impact", "no user impact")]


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


def test_an_override_keeps_the_evidence(runbook: Runbook) -> None:
    result = classify(runbook, "一部ユーザーがログインできない", override="P1")
    assert result.severity == "P1"
    assert "一部" in words(result, "scope")
    assert "the rules gave P2" in result.rule


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
    assert result.evidence == [Evidence("alarm", symptom_id, alarm_name)]


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
    result = classify(runbook, "something looks odd", alarm={"AlarmName": "peoplebooster-production-frontend-5xx"})
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
    assert data["evidence"] == [{"facet": "symptom", "value": "login_failure", "word": "ログインできない"}]
    assert data["matched"] == [{"facet": "symptom", "value": "login_failure", "word": "ログインできない"}]


def test_severity_order() -> None:
    assert severity_rank("P1") < severity_rank("P4")
    assert higher_severity("P3", "P2") == "P2"
    assert higher_severity("P1", "P1") == "P1"
    with pytest.raises(ValueError, match="unknown severity"):
        severity_rank("P0")
