"""Messages: the runbook's Slack templates line for line, times in JST, the outage, the channel name,
the short notices, and the postmortem draft."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from jinja2 import StrictUndefined, UndefinedError

from incident_ops.core import messages
from incident_ops.core.messages import (
    BLANK,
    TEMPLATES_DIR,
    channel_name,
    format_duration_ja,
    format_outage,
    format_time_jst,
    render,
    render_ack_escalation,
    render_declaration,
    render_evidence_header,
    render_failure_notice,
    render_postmortem,
    render_recovery,
)
from tests.conftest import IN_CI

UTC = dt.UTC
JST = dt.timezone(dt.timedelta(hours=9))
PROJECT_ROOT = Path(__file__).resolve().parents[2]

# The runbook's two message templates, verbatim (runbook-spec.md, Phase 1-3 and Phase 4-3).
SPEC_DECLARATION = """\
@channel 【P1インシデント発生】
発生時刻: HH:MM
症状: [症状を簡潔に記載]
影響範囲: [影響を受けているユーザー/機能]
対応者: @担当者名
状況チャンネル: #incident-YYYYMMDD"""

SPEC_RECOVERY = """\
@channel 【インシデント復旧】
復旧時刻: HH:MM
障害時間: X時間Y分
原因: [原因を簡潔に記載]
対応内容: [実施した対応]
今後の対応: ポストモーテム実施予定"""

SPEC_SECTIONS = ["概要", "タイムライン", "影響範囲", "根本原因", "対応内容", "改善策", "アクションアイテム"]

TANAKA = {"name": "田中 太郎", "slack_user_id": "U0TANAKA1"}
YAMADA = {"name": "山田 花子", "slack_user_id": "U0YAMADA1"}

# 2026-11-27T15:30Z is 00:30 on the 28th in Tokyo.
DETECTED = dt.datetime(2026, 11, 27, 15, 30, tzinfo=UTC)
RECOVERED = dt.datetime(2026, 11, 27, 16, 12, 41, tzinfo=UTC)


def fill(template: str, values: dict[str, str]) -> str:
    for placeholder, value in values.items():
        assert placeholder in template, placeholder
        template = template.replace(placeholder, value)
    return template


def _spec_file() -> Path | None:
    for candidate in (PROJECT_ROOT / "docs" / "runbook-spec.md", PROJECT_ROOT.parent / "shared" / "runbook-spec.md"):
        if candidate.is_file():
            return candidate
    return None


def test_the_copies_here_are_the_runbook_text() -> None:
    spec = _spec_file()
    if spec is None:
        message = "runbook-spec.md is not beside the project (../shared/runbook-spec.md)"
        if IN_CI:  # CI checks the templates against the runbook's own text: it must be there
            pytest.fail(f"{message}, and CI=true requires it")
        pytest.skip(message)
    text = spec.read_text(encoding="utf-8")
    blocks: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    assert SPEC_DECLARATION in blocks
    assert SPEC_RECOVERY in blocks
    table = text.split("**ポストモーテムドキュメントの作成**", 1)[1].split("## ", 1)[0]
    assert re.findall(r"^\| (\S+) \| (?!内容)", table, re.M) == SPEC_SECTIONS


# --- declaration ----------------------------------------------------------------------------------


def test_declaration_plain_is_the_runbook_template_filled_in(runbook) -> None:
    text = render_declaration(
        runbook,
        severity="P1",
        detected_at=DETECTED,
        symptom="ログインできない",
        impact="全ユーザー / ログイン",
        responders=[TANAKA],
        channel="incident-20261128",
        mentions="plain",
    )
    expected = fill(
        SPEC_DECLARATION,
        {
            "HH:MM": "00:30",
            "[症状を簡潔に記載]": "ログインできない",
            "[影響を受けているユーザー/機能]": "全ユーザー / ログイン",
            "@担当者名": "@田中 太郎",
            "incident-YYYYMMDD": "incident-20261128",
        },
    )
    assert text.splitlines() == expected.splitlines()
    assert text == expected  # a Slack message: no trailing newline


def test_declaration_p2_and_several_responders_plain(runbook) -> None:
    text = render_declaration(
        runbook,
        severity="P2",
        detected_at=dt.datetime(2026, 11, 28, 9, 5, tzinfo=JST),
        symptom="診断機能が動作しない",
        impact="診断機能の利用者",
        responders=[TANAKA, YAMADA],
        channel="#incident-20261128-2",
        mentions="plain",
    )
    expected = fill(
        SPEC_DECLARATION,
        {
            "【P1": "【P2",
            "HH:MM": "09:05",
            "[症状を簡潔に記載]": "診断機能が動作しない",
            "[影響を受けているユーザー/機能]": "診断機能の利用者",
            "@担当者名": "@田中 太郎 @山田 花子",
            "incident-YYYYMMDD": "incident-20261128-2",
        },
    )
    assert text.splitlines() == expected.splitlines()


def test_declaration_slack_form_pings_and_escapes(runbook) -> None:
    text = render_declaration(
        runbook,
        severity="P1",
        detected_at=DETECTED,
        symptom="<!here> が表示される & ログイン不可",
        impact="全ユーザー",
        responders=[TANAKA, runbook.person("cto")],
        channel="incident-20261128",
        channel_id="C0INC0001",
    )
    assert text.splitlines() == [
        "<!channel> 【P1インシデント発生】",
        "発生時刻: 00:30",
        "症状: &lt;!here&gt; が表示される &amp; ログイン不可",
        "影響範囲: 全ユーザー",
        "対応者: <@U0TANAKA1> <@U0CTO0001>",
        "状況チャンネル: <#C0INC0001|incident-20261128>",
    ]


def test_declaration_slack_form_without_channel_id_shows_the_name(runbook) -> None:
    text = render_declaration(
        runbook,
        severity="P1",
        detected_at=DETECTED,
        symptom="s",
        impact="i",
        responders=[TANAKA],
        channel="incident-20261128",
    )
    assert text.splitlines()[-1] == "状況チャンネル: #incident-20261128"


def test_declaration_keeps_one_line_per_field(runbook) -> None:
    text = render_declaration(
        runbook,
        severity="P1",
        detected_at=DETECTED,
        symptom="ログインできない\nエラー多数",
        impact="全ユーザー",
        responders=[TANAKA],
        channel="incident-20261128",
        mentions="plain",
    )
    assert len(text.splitlines()) == 6
    assert "症状: ログインできない エラー多数" in text.splitlines()


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"severity": "P3"}, "declares only P1, P2"),
        ({"symptom": "  "}, "symptom is required"),
        ({"impact": None}, "impact is required"),
        ({"responders": []}, "at least one responder"),
        ({"responders": [{"name": "名無し"}]}, "Slack user id"),
        ({"detected_at": dt.datetime(2026, 11, 28, 0, 30)}, "time zone is required"),
        ({"mentions": "markdown"}, "mentions must be"),
        ({"channel": "#"}, "channel is required"),
    ],
)
def test_declaration_refuses_missing_or_wrong_values(runbook, change, error) -> None:
    kwargs = {
        "severity": "P1",
        "detected_at": DETECTED,
        "symptom": "s",
        "impact": "i",
        "responders": [TANAKA],
        "channel": "incident-20261128",
        "mentions": "slack",
    } | change
    with pytest.raises(ValueError, match=error):
        render_declaration(runbook, **kwargs)


# --- recovery -------------------------------------------------------------------------------------


def test_recovery_plain_is_the_runbook_template_filled_in(runbook) -> None:
    text = render_recovery(
        runbook,
        detected_at=DETECTED,
        recovered_at=RECOVERED,
        cause="デプロイ後の不具合",
        actions="ロールバックを実行",
        mentions="plain",
    )
    expected = fill(
        SPEC_RECOVERY,
        {
            "HH:MM": "01:12",
            "X時間Y分": "0時間42分",
            "[原因を簡潔に記載]": "デプロイ後の不具合",
            "[実施した対応]": "ロールバックを実行",
        },
    )
    assert text.splitlines() == expected.splitlines()
    assert text == expected


def test_recovery_slack_form(runbook) -> None:
    text = render_recovery(
        runbook,
        detected_at=DETECTED,
        recovered_at=DETECTED + dt.timedelta(hours=2, minutes=5, seconds=59),
        cause="DB接続数 > 上限",
        actions="RDSフェイルオーバー",
    )
    assert text.splitlines() == [
        "<!channel> 【インシデント復旧】",
        "復旧時刻: 02:35",
        "障害時間: 2時間5分",
        "原因: DB接続数 &gt; 上限",
        "対応内容: RDSフェイルオーバー",
        "今後の対応: ポストモーテム実施予定",
    ]


def test_recovery_before_detection_is_an_error(runbook) -> None:
    with pytest.raises(ValueError, match="before detected_at"):
        render_recovery(runbook, detected_at=RECOVERED, recovered_at=DETECTED, cause="c", actions="a")


def test_recovery_needs_a_cause(runbook) -> None:
    with pytest.raises(ValueError, match="cause is required"):
        render_recovery(runbook, detected_at=DETECTED, recovered_at=RECOVERED, cause="", actions="a")


# --- formatting -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (dt.timedelta(0), "0時間0分"),
        (dt.timedelta(seconds=59), "0時間0分"),
        (dt.timedelta(seconds=60), "0時間1分"),
        (dt.timedelta(minutes=42, seconds=59, microseconds=999999), "0時間42分"),
        (dt.timedelta(minutes=59, seconds=59), "0時間59分"),
        (dt.timedelta(hours=1), "1時間0分"),
        (dt.timedelta(hours=2, minutes=5), "2時間5分"),
        (dt.timedelta(hours=26), "26時間0分"),
        (dt.timedelta(days=1, hours=2, seconds=30), "26時間0分"),
        (dt.timedelta(days=3, minutes=5), "72時間5分"),
    ],
)
def test_format_outage(duration, text) -> None:
    assert format_outage(duration) == text


def test_format_outage_refuses_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_outage(dt.timedelta(seconds=-1))


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (dt.datetime(2026, 11, 27, 15, 30, tzinfo=UTC), "00:30"),
        (dt.datetime(2026, 11, 27, 14, 59, 59, tzinfo=UTC), "23:59"),
        (dt.datetime(2026, 11, 28, 0, 5, tzinfo=JST), "00:05"),
        (dt.datetime(2026, 11, 28, 8, 5, tzinfo=UTC), "17:05"),
        (dt.datetime(2026, 11, 28, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5))), "23:00"),
    ],
)
def test_format_time_jst(moment, text) -> None:
    assert format_time_jst(moment) == text


def test_format_time_jst_refuses_naive() -> None:
    with pytest.raises(ValueError, match="time zone is required"):
        format_time_jst(dt.datetime(2026, 11, 28, 0, 30))


@pytest.mark.parametrize(
    ("minutes", "text"), [(15, "15分"), (30, "30分"), (120, "2時間"), (1440, "24時間"), (90, "1時間30分")]
)
def test_format_duration_ja(minutes, text) -> None:
    assert format_duration_ja(minutes) == text


# --- channel name ---------------------------------------------------------------------------------


def test_channel_name_is_the_jst_date_across_utc_midnight(runbook) -> None:
    assert channel_name(runbook, dt.datetime(2026, 11, 27, 15, 30, tzinfo=UTC), []) == "incident-20261128"
    assert channel_name(runbook, dt.datetime(2026, 11, 27, 14, 59, tzinfo=UTC), []) == "incident-20261127"


@pytest.mark.parametrize(
    ("taken", "name"),
    [
        (set(), "incident-20261128"),
        ({"incident-20261127", "dev-team"}, "incident-20261128"),
        ({"incident-20261128"}, "incident-20261128-2"),
        ({"#incident-20261128", "incident-20261128-2"}, "incident-20261128-3"),
        (
            {"incident-20261128", "incident-20261128-2", "incident-20261128-3", "incident-20261128-5"},
            "incident-20261128-4",
        ),
    ],
)
def test_channel_name_suffix_when_taken(runbook, taken, name) -> None:
    assert channel_name(runbook, DETECTED, taken) == name


# --- templates and the environment ----------------------------------------------------------------


TEMPLATE_NAMES = sorted(path.name for path in TEMPLATES_DIR.glob("*.j2"))


def test_the_templates_are_there() -> None:
    assert {
        "declaration.txt.j2",
        "recovery.txt.j2",
        "postmortem.md.j2",
        "ack_escalation.txt.j2",
        "evidence_header.txt.j2",
        "failure_notice.txt.j2",
    } <= set(TEMPLATE_NAMES)


def test_one_strict_environment() -> None:
    env = messages.jinja_environment()
    assert env is messages.jinja_environment()
    assert env.undefined is StrictUndefined
    assert env.keep_trailing_newline is True
    assert env.autoescape is False


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_every_template_refuses_a_missing_value(name) -> None:
    with pytest.raises(UndefinedError):
        render(name)


def test_a_missing_value_is_an_error_not_a_blank() -> None:
    with pytest.raises(UndefinedError, match="symptom"):
        render(
            "declaration.txt.j2",
            everyone="@channel",
            severity="P1",
            detected_time="00:30",
            impact="i",
            responders="@a",
            channel="#incident-20261128",
        )


def test_render_keeps_the_templates_trailing_newline() -> None:
    text = render(
        "recovery.txt.j2", everyone="@channel", recovered_time="01:00", outage="1時間0分", cause="c", actions="a",
        next_steps="ポストモーテム実施予定",
    )
    assert text.endswith("ポストモーテム実施予定\n")


def test_no_template_contains_the_word_none(runbook) -> None:
    text = render_failure_notice(runbook, incident_id="INC-1", step="rollback", error="e", at=DETECTED)
    assert "None" not in text
    assert "ログ:" not in text


# --- short notices --------------------------------------------------------------------------------


def test_ack_escalation_plain(runbook) -> None:
    text = render_ack_escalation(
        runbook,
        incident_id="INC-20261128-7f3a2c",
        severity="P1",
        detected_at=DETECTED,
        symptom="ログインできない",
        notify=[runbook.person("cto"), runbook.person("dev_lead")],
        channel="incident-20261128",
        mentions="plain",
    )
    lines = text.splitlines()
    assert lines[0] == "@佐藤 CTO @鈴木 開発リード 【エスカレーション】P1インシデントの対応開始が確認できません"
    assert "発生時刻: 00:30" in lines
    assert "対応時間目標: 15分以内に対応開始（期限 00:45）" in lines
    assert "症状: ログインできない" in lines
    assert "インシデントID: INC-20261128-7f3a2c" in lines
    assert "状況チャンネル: #incident-20261128" in lines


def test_ack_escalation_slack_and_targets_from_the_runbook(runbook) -> None:
    text = render_ack_escalation(
        runbook,
        incident_id="INC-1",
        severity="P3",
        detected_at=DETECTED,
        symptom="レポート生成が遅い",
        notify=[],
        channel="incident-20261128",
    )
    assert text.startswith("<!channel> 【エスカレーション】P3")
    assert "対応時間目標: 2時間以内に対応開始（期限 02:30）" in text.splitlines()


def test_evidence_header(runbook) -> None:
    text = render_evidence_header(
        runbook,
        incident_id="INC-1",
        at=RECOVERED,
        window_start=DETECTED - dt.timedelta(minutes=30),
        window_end=DETECTED,
        environment="production",
        service="peoplebooster-backend",
        suggested_scenario="deploy",
        highlights=["ERROR ログ 120件", "ALB 5xx <急増>"],
    )
    assert text.splitlines() == [
        "【調査結果】INC-1",
        "確認時刻: 01:12",
        "対象期間: 00:00〜00:30",
        "対象: production / peoplebooster-backend",
        "推定シナリオ: デプロイ後の障害（ロールバックを実行）",
        "・ERROR ログ 120件",
        "・ALB 5xx &lt;急増&gt;",
    ]


def test_evidence_header_without_a_suggestion(runbook) -> None:
    text = render_evidence_header(
        runbook,
        incident_id="INC-1",
        at=RECOVERED,
        window_start=DETECTED,
        window_end=RECOVERED,
        environment="production",
        service="backend",
        mentions="plain",
    )
    assert text.splitlines()[-1] == "推定シナリオ: 判定できません（担当者が選択してください）"


def test_failure_notice(runbook) -> None:
    text = render_failure_notice(
        runbook,
        incident_id="INC-1",
        step="rollback",
        error="HTTP 500\nfrom GitHub",
        at=RECOVERED,
        notify=[TANAKA],
        log_url="http://localhost:8080/dags/incident/runs/x",
        mentions="plain",
    )
    assert text.splitlines() == [
        "@田中 太郎 【自動対応の失敗】",
        "発生時刻: 01:12",
        "手順: rollback",
        "エラー: HTTP 500 from GitHub",
        "インシデントID: INC-1",
        "ログ: http://localhost:8080/dags/incident/runs/x",
        "手動で対応してください。",
    ]


# --- postmortem -----------------------------------------------------------------------------------

INCIDENT = {
    "id": "INC-20261128-7f3a2c",
    "severity": "P1",
    "status": "recovered",
    "title": "ログイン障害",
    "symptom": "login_failure",
    "scenario": "deploy",
    "service": "backend",
    "environment": "production",
    "detected_at": DETECTED,
    "acknowledged_at": DETECTED + dt.timedelta(minutes=7),
    "acknowledged_by": "田中 太郎",
    "recovered_at": RECOVERED,
    "postmortem_due_at": None,
    "slack_channel": "incident-20261128",
    "cause": "デプロイ後の不具合",
    "occurrences": 3,
}
TIMELINE = [
    {"at": DETECTED + dt.timedelta(minutes=7), "kind": "acknowledged", "actor": "田中 太郎", "message": "対応開始"},
    {"at": DETECTED, "kind": "opened", "actor": "cloudwatch", "message": "alarm | health-check-failed"},
    {"at": RECOVERED.isoformat(), "kind": "recovered", "actor": None, "message": "復旧しました"},
    {"at": DETECTED + dt.timedelta(minutes=20), "kind": "custom_kind", "actor": "bot", "message": "独自の記録"},
]
ACTIONS = [
    {
        "step": "rollback",
        "action": "github_rollback",
        "at": DETECTED + dt.timedelta(minutes=25),
        "changed": True,
        "message": "latest-1 にロールバック",
        "details": {"workflow": "rollback.yml", "run_id": 9100000002},
        "approved_by": "山田 花子",
    },
    {"step": "failover", "action": "rds_failover", "approval": True, "ok": False},
    {"action": "ecs_scale_out", "changed": False},
]


def _postmortem(runbook, **change) -> str:
    kwargs = {
        "incident": INCIDENT,
        "timeline": TIMELINE,
        "evidence": {
            "suggestion": {"scenario": "deploy", "scores": {"deploy": 7, "resource": 1, "database": 0},
                           "reasons": {"deploy": ["直近のデプロイ: backend (5分前)", "ログに「ERROR」が120件"],
                                       "resource": ["ECS CPU が 91 (閾値 80)"]}},
            "alarms": ["peoplebooster-production-alb-5xx"],
            "deploys": [{"service": "backend", "at": "2026-11-27T15:25:00+00:00"}],
            "highlights": ["ALB 5xx: 最大 340"],
        },
        "actions": ACTIONS,
        "charts": ["charts/alb_5xx.png"],
    } | change
    return render_postmortem(runbook, **kwargs)


def test_postmortem_has_the_seven_sections_in_order(runbook) -> None:
    text = _postmortem(runbook)
    assert runbook.postmortem.sections == SPEC_SECTIONS
    assert re.findall(r"^## (.+)$", text, re.M) == SPEC_SECTIONS
    assert re.findall(r"^# (.+)$", text, re.M) == ["ポストモーテム: ログイン障害"]
    assert text.endswith("\n")


def test_postmortem_header_and_due_date(runbook) -> None:
    text = _postmortem(runbook)
    head = text.split("\n## ", 1)[0].splitlines()
    assert "- インシデントID: INC-20261128-7f3a2c" in head
    assert "- 障害レベル: P1（Critical）" in head
    assert "- 発生時刻: 2026-11-28 00:30" in head
    assert "- 復旧時刻: 2026-11-28 01:12" in head
    assert "- 障害時間: 0時間42分" in head
    assert "- 状況チャンネル: #incident-20261128" in head
    # 48 hours after the recovery, in JST.
    assert "- 作成期限: 2026-11-30 01:12（復旧から48時間以内）" in head
    assert f"- 作成者: {BLANK}" in head


def test_postmortem_due_date_from_the_ledger_wins(runbook) -> None:
    incident = INCIDENT | {"postmortem_due_at": dt.datetime(2026, 11, 29, 0, 0, tzinfo=UTC)}
    assert "- 作成期限: 2026-11-29 09:00（復旧から48時間後が業務時間外のため翌営業日の終業時刻）" in _postmortem(runbook, incident=incident)


def _section(text: str, name: str) -> list[str]:
    body = text.split(f"\n## {name}\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in body.splitlines() if line]


def test_postmortem_timeline_is_a_table_in_time_order_with_jst_times(runbook) -> None:
    rows = _section(_postmortem(runbook), "タイムライン")
    assert rows[:2] == ["| 時刻 (JST) | 種別 | 実施者 | 内容 |", "|---|---|---|---|"]
    assert rows[2:6] == [
        "| 2026-11-28 00:30 | 検知 | cloudwatch | alarm \\| health-check-failed |",
        "| 2026-11-28 00:37 | 対応開始 | 田中 太郎 | 対応開始 |",
        "| 2026-11-28 00:50 | 記録 | bot | 独自の記録 |",
        "| 2026-11-28 01:12 | 復旧 | — | 復旧しました |",
    ]


def test_postmortem_actions_name_who_approved(runbook) -> None:
    rows = _section(_postmortem(runbook), "対応内容")
    assert "| 2026-11-28 00:55 | GitHub Actions rollback.yml を実行 | 成功、run 9100000002 | 山田 花子 |" in rows
    assert "| — | RDS フェイルオーバー | 失敗 | 未承認 |" in rows
    assert "| — | ECS サービスのタスク数を増加（スケールアウト） | 変更なし（適用済み） | 不要 |" in rows
    # The modules' English messages are for the logs, not for the postmortem.
    assert not any("latest-1 にロールバック" in row for row in rows)


def test_postmortem_summary_cause_impact_and_blanks(runbook) -> None:
    text = _postmortem(runbook)
    overview = _section(text, "概要")
    assert (
        overview[0]
        == "2026-11-28 00:30に「ログインできない」が発生し、2026-11-28 01:12に復旧しました（障害時間: 0時間42分）。"
    )
    assert "- シナリオ: デプロイ後の障害（ロールバックを実行）" in overview
    assert "- 対応開始: 2026-11-28 00:37（田中 太郎）、発生から0時間7分（目標: 15分以内、目標内）" in overview
    impact = _section(text, "影響範囲")
    assert "- 想定される影響（症状から）: 全ユーザー / ログイン" in impact
    assert f"- 影響を受けたユーザー数: {BLANK}" in impact
    cause = _section(text, "根本原因")
    assert "- 原因（復旧宣言時の記載）: デプロイ後の不具合" in cause
    assert f"- 根本原因: {BLANK}" in cause
    assert "- 推奨シナリオ: デプロイ後の障害（ロールバックを実行）" in cause
    assert "- ALARM 状態のアラーム: peoplebooster-production-alb-5xx" in cause
    assert "- 直近のデプロイ: backend（11/28 00:25）" in cause  # JST
    assert "| デプロイ後の障害（推奨） | 7 | 直近のデプロイ: backend (5分前)、ログに「ERROR」が120件 |" in cause
    assert "| リソース枯渇 | 1 | ECS CPU が 91 (閾値 80) |" in cause
    assert "- ALB 5xx: 最大 340" in cause
    assert "![グラフ1](charts/alb_5xx.png)" in cause
    # No Python reprs of the evidence.
    assert not any("{" in line or "[" in line.replace("[グラフ", "") for line in cause)
    assert _section(text, "改善策") == [f"- {BLANK}"]
    assert f"| {BLANK} | {BLANK} | {BLANK} |" in _section(text, "アクションアイテム")


def test_postmortem_with_nothing_recorded(runbook) -> None:
    incident = {k: INCIDENT[k] for k in ("id", "severity", "detected_at", "recovered_at")}
    text = _postmortem(runbook, incident=incident, timeline=[], evidence={}, actions=[], charts=[])
    assert re.findall(r"^## (.+)$", text, re.M) == SPEC_SECTIONS
    assert "# ポストモーテム: INC-20261128-7f3a2c" in text
    assert "| — | — | — | （記録なし） |" in text
    assert "- 対応開始: 記録なし" in text
    assert "### グラフ" not in text
    assert "None" not in text


@pytest.mark.parametrize("missing", ["id", "severity", "detected_at", "recovered_at"])
def test_postmortem_refuses_an_incident_without_the_essentials(runbook, missing) -> None:
    incident = {k: v for k, v in INCIDENT.items() if k != missing}
    with pytest.raises(ValueError, match=missing):
        _postmortem(runbook, incident=incident)


def test_postmortem_refuses_naive_times(runbook) -> None:
    with pytest.raises(ValueError, match="time zone is required"):
        _postmortem(runbook, timeline=[{"at": dt.datetime(2026, 11, 28), "kind": "x", "message": "m"}])


# --- text from outside is inert (issue 16) ------------------------------------------------------------

HOSTILE = "<!here> <!channel> <@U0EVIL> <https://evil.example|click> & ![x](https://evil.example/p.png) |cell|"


def test_every_slack_template_escapes_outside_text_and_keeps_its_own_mentions(runbook) -> None:
    from incident_ops.core.notices import render_notice

    detected = dt.datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    texts = [
        render_declaration(runbook, severity="P1", detected_at=detected, symptom=HOSTILE, impact=HOSTILE,
                           responders=[{"name": "田中", "slack_user_id": "U0TANAKA1"}], channel="incident-20261201"),
        render_recovery(runbook, detected_at=detected, recovered_at=detected + dt.timedelta(minutes=5),
                        cause=HOSTILE, actions=HOSTILE),
        render_notice(runbook, incident_id="INC-20261201-abcdef", severity="P3", symptom=HOSTILE, impact=HOSTILE,
                      detected_at=detected),
    ]
    for text in texts:
        assert "<!here>" not in text and "<@U0EVIL>" not in text and "<https://" not in text, text
        assert "&lt;!here&gt;" in text and "&amp;" in text
    assert texts[0].startswith("<!channel> ") and "<@U0TANAKA1>" in texts[0]  # the template's own mentions
    assert texts[1].startswith("<!channel> ")


def test_plain_messages_are_not_escaped(runbook) -> None:
    detected = dt.datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    text = render_recovery(runbook, detected_at=detected, recovered_at=detected, cause="a < b & c", actions="x",
                           mentions="plain")
    assert "原因: a < b & c" in text


def test_the_postmortem_makes_outside_text_inert_markdown(runbook) -> None:
    incident = INCIDENT | {"title": HOSTILE, "symptom": HOSTILE, "impact": HOSTILE, "cause": HOSTILE}
    timeline = [{"at": DETECTED, "kind": "opened", "actor": "<b>x</b>", "message": HOSTILE}]
    text = _postmortem(runbook, incident=incident, timeline=timeline, charts=["INC-1/metrics.png"])
    # The only image is our chart; no outside link, image, HTML tag or extra table cell.
    assert re.findall(r"(?<!\\)!\[", text) == ["!["]
    assert "![グラフ1](INC-1/metrics.png)" in text
    assert "<b>" not in text and not re.search(r"(?<!\\)<https", text)
    assert "\\!\\[x\\](https://evil.example/p.png)" in text
    row = next(line for line in _section(text, "タイムライン") if "evil" in line)
    assert row.count("|") - row.count("\\|") == 5  # four cells, pipes in the text escaped


def test_an_alarm_storm_is_one_timeline_row_that_counts_it(runbook) -> None:
    storm = [{"at": DETECTED + dt.timedelta(seconds=i), "kind": "occurrence", "actor": "cloudwatch",
              "message": f"同じ事象を再検知しました（{i + 2}件目）"} for i in range(1000)]
    timeline = [TIMELINE[1], *storm, TIMELINE[0]]
    rows = _section(_postmortem(runbook, timeline=timeline), "タイムライン")
    # The acknowledgement at 00:37 came in the middle of the storm: it keeps its place between two counts.
    assert rows[2:6] == [
        "| 2026-11-28 00:30 | 検知 | cloudwatch | alarm \\| health-check-failed |",
        "| 2026-11-28 00:30 | 再検知 | 監視 | 同じ事象を421回再検知（00:30〜00:37、cloudwatch） |",
        "| 2026-11-28 00:37 | 対応開始 | 田中 太郎 | 対応開始 |",
        "| 2026-11-28 00:37 | 再検知 | 監視 | 同じ事象を579回再検知（00:37〜00:46、cloudwatch） |",
    ]


@pytest.mark.parametrize(("slack_text", "plain"), [
    ("a &lt;b&gt; &amp; c", "a <b> & c"),
    ("&amp;lt; stays as typed", "&lt; stays as typed"),  # `&lt;` typed by someone, escaped once for Slack
    ("<!channel> <!here> <!subteam^S1|@sre>", "@channel @here @sre"),
    ("<@U0ENG0001> と <@U999>", "@田中 と @U999"),
    ("<#C123|incident-20261201> <#C456>", "#incident-20261201 #C456"),
    ("<https://x.example/a?b=1&amp;c=2|ログ> <https://y.example>", "ログ (https://x.example/a?b=1&c=2) https://y.example"),
    ("改行\nそのまま", "改行\nそのまま"),
])
def test_slack_text_as_plain_text_for_email(slack_text: str, plain: str) -> None:
    assert messages.slack_to_plain(slack_text, {"U0ENG0001": "田中"}) == plain


def test_plain_text_round_trips_what_was_escaped_for_slack() -> None:
    typed = "<!channel> a<b & <https://evil.example|click> &amp;"
    assert messages.slack_to_plain(messages.slack_escape(typed)) == typed
