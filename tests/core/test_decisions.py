"""The words and buttons of a waiting decision (core/decisions.py, pure): what a timeout does in
Japanese, the Slack message (text + Block Kit) with outside text made inert, the Airflow UI body,
the answered message, the reminder and the timeout notice."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest

from incident_ops.core import decisions
from incident_ops.core.runbook import Runbook, parse_runbook
from tests.conftest import runbook_data

JST = dt.timezone(dt.timedelta(hours=9))
DEADLINE = dt.datetime(2026, 12, 1, 1, 10, tzinfo=dt.UTC)  # 12/01 10:10 JST
HOSTILE = "<!here> <@U123> <https://x|y>"
INCIDENT = {"id": "INC-20261201-001", "severity": "P1", "symptom": "ログインできない"}


def variant(change: Callable[[dict[str, Any]], None]) -> Runbook:
    data = runbook_data()
    change(data)
    return parse_runbook(data)


# --- outcome_on_timeout ---------------------------------------------------------------------------------

MANUAL_TEXT = "自動復旧は行わず、手動対応になります（人が判断するまで本番環境は変更しません）。"


@pytest.mark.parametrize("severity", ["P3", "P4"])
def test_manual_below_p2(runbook: Runbook, severity: str) -> None:
    assert decisions.outcome_on_timeout(runbook, kind="scenario", severity=severity, suggested="resource") == MANUAL_TEXT


def test_manual_without_a_suggestion(runbook: Runbook) -> None:
    assert decisions.outcome_on_timeout(runbook, kind="scenario", severity="P1", suggested=None) == MANUAL_TEXT


def test_suggested_names_the_auto_steps_their_reasons_and_the_steps_that_wait(runbook: Runbook) -> None:
    assert decisions.outcome_on_timeout(runbook, kind="scenario", severity="P1", suggested="resource") == (
        "提案のシナリオ「リソース枯渇」を開始します。"
        "人の回答なしで実行するのは、自動実行を許可された手順「スケールアウト」だけです"
        "（「スケールアウト」: タスクを増やすだけで、サービスごとのタスク数の上限を超えず、いつでも元の数に戻せるため）。"
        "「スケールアップ」、「AWS サポートへの問い合わせ」はそれぞれ承認を待ちます。")


def test_suggested_with_only_auto_and_read_only_steps(runbook: Runbook) -> None:
    assert decisions.outcome_on_timeout(runbook, kind="scenario", severity="P2", suggested="external") == (
        "提案のシナリオ「外部サービス障害」を開始します。"
        "人の回答なしで実行するのは、自動実行を許可された手順「フォールバック有効化」だけです"
        "（「フォールバック有効化」: 外部サービスが落ちている間だけ用意済みの代替動作に切り替えるフラグで、戻すのもフラグ1つのため）。")


def test_suggested_without_auto_steps(runbook: Runbook) -> None:
    assert decisions.outcome_on_timeout(runbook, kind="scenario", severity="P1", suggested="database") == (
        "提案のシナリオ「データベース問題」を開始します。人の回答なしで本番環境を変更する手順はありません。"
        "「フェイルオーバー」、「スナップショット復元」、「AWS サポートへの問い合わせ」はそれぞれ承認を待ちます。")
    # A step that only waits for consent (no approval of its own) waits too; a fallback-only step is not listed.
    deploy = decisions.outcome_on_timeout(runbook, kind="scenario", severity="P1", suggested="deploy")
    assert deploy.endswith("人の回答なしで本番環境を変更する手順はありません。「ロールバック」は承認を待ちます。")
    assert "ecs_rollback" not in deploy


def test_unattended_steps(runbook: Runbook) -> None:
    runs, asks = decisions.unattended_steps(runbook.scenario("external"))
    assert [s.id for s in runs] == ["check_status", "wait", "fallback"] and asks == []
    runs, asks = decisions.unattended_steps(runbook.scenario("resource"))
    assert [s.id for s in runs] == ["scale_out"] and [s.id for s in asks] == ["scale_up", "support_case"]


def test_an_approval_rejected_on_timeout(runbook: Runbook) -> None:
    assert decisions.outcome_on_timeout(runbook, kind="approval", severity="P1", scenario="database",
                                        step_id="failover") == (
        "既定値「却下」: 手順「フェイルオーバー」は実行しません（本番環境は変更しません）。")


def test_an_approval_approved_on_timeout_says_why() -> None:
    runbook = variant(lambda d: d["scenarios"]["database"]["steps"][0].update(
        auto=True, auto_reason="レプリカへの切り替えだけで、データは失われないため",
        on_timeout={"P1": "approve", "default": "reject"}))
    assert decisions.outcome_on_timeout(runbook, kind="approval", severity="P1", scenario="database",
                                        step_id="failover") == (
        "既定値「承認」: 手順「フェイルオーバー」を実行します（自動実行を許可された手順: レプリカへの切り替えだけで、データは失われないため）。")
    assert decisions.outcome_on_timeout(runbook, kind="approval", severity="P2", scenario="database",
                                        step_id="failover").startswith("既定値「却下」")


def test_an_approvals_outcome_needs_its_step(runbook: Runbook) -> None:
    with pytest.raises(ValueError, match="needs its scenario and step"):
        decisions.outcome_on_timeout(runbook, kind="approval", severity="P1", scenario="database")


# --- the Slack message ---------------------------------------------------------------------------------

OPTIONS = [decisions.Option("deploy: デプロイ後の障害（ロールバックを実行）", "deploy: デプロイ後の障害（ロールバックを実行）",
                            "primary"),
           decisions.Option("手動対応（自動復旧なし）", "手動対応（自動復旧なし）")]


def values(options: list[decisions.Option]) -> list[str]:
    return [decisions.button_value(incident_id=INCIDENT["id"], dag_id="incident_response",
                                   run_id="manual__2026-12-01T01:00:00+00:00", task_id="recover.choose_scenario",
                                   map_index=-1, option=o.value) for o in options]


def message(runbook: Runbook, *, incident: dict[str, Any] = INCIDENT, options: list[decisions.Option] = OPTIONS,
            **overrides: Any) -> tuple[str, list[dict[str, Any]]]:
    arguments: dict[str, Any] = dict(
        kind="scenario", incident=incident, subject="復旧シナリオの選択（INC-20261201-001）",
        question="どの復旧シナリオで対応しますか。", options=options, values=values(options), deadline=DEADLINE,
        minutes=10, on_timeout=MANUAL_TEXT, suggestion="デプロイ後の障害",
        reasons=["120分以内にデプロイあり", "ログに TypeError"],
        link="https://airflow.example/dags/incident_response/runs/r1/tasks/recover.choose_scenario/required_actions"
             "?map_index=-1")
    arguments.update(overrides)
    return decisions.decision_message(runbook, **arguments)


def test_the_message_text(runbook: Runbook) -> None:
    text, _ = message(runbook)
    assert text.splitlines() == [
        "【判断が必要です】復旧シナリオの選択（INC-20261201-001）",
        "インシデントID: INC-20261201-001（P1 / ログインできない）",
        "どの復旧シナリオで対応しますか。",
        "提案: デプロイ後の障害",
        "・120分以内にデプロイあり",
        "・ログに TypeError",
        "選択肢: deploy: デプロイ後の障害（ロールバックを実行） / 手動対応（自動復旧なし）",
        "回答期限: 12/01 10:10 JST（10分以内）",
        f"期限までに回答がない場合: {MANUAL_TEXT}",
        "<https://airflow.example/dags/incident_response/runs/r1/tasks/recover.choose_scenario/required_actions"
        "?map_index=-1|Airflow の画面で開く>（Required Actions）",
    ]


def test_the_deadline_is_in_japan_time_with_its_day(runbook: Runbook) -> None:
    late = dt.datetime(2026, 12, 1, 15, 5, tzinfo=dt.UTC)  # 12/02 00:05 JST
    text, _ = message(runbook, deadline=late, minutes=7.5)
    assert "回答期限: 12/02 00:05 JST（7.5分以内）" in text.splitlines()


def test_no_suggestion_and_no_link(runbook: Runbook) -> None:
    text, _ = message(runbook, suggestion=None, reasons=[], link=None)
    assert not any(line.startswith(("提案", "・")) for line in text.splitlines())
    assert "Airflow の画面で開く" not in text and "Required Actions" not in text


def test_outside_text_cannot_ping_or_link(runbook: Runbook) -> None:
    incident = {**INCIDENT, "symptom": f"{HOSTILE} &\n改行"}
    text, blocks = message(runbook, incident=incident, subject=f"件名 {HOSTILE}", question=f"問い {HOSTILE}",
                           reasons=[f"理由 {HOSTILE}"], suggestion=HOSTILE, on_timeout=f"既定 {HOSTILE}")
    inert = "&lt;!here&gt; &lt;@U123&gt; &lt;https://x|y&gt;"
    assert f"インシデントID: INC-20261201-001（P1 / {inert} &amp; 改行）" in text
    for line in (f"【判断が必要です】件名 {inert}", f"問い {inert}", f"提案: {inert}", f"・理由 {inert}",
                 f"期限までに回答がない場合: 既定 {inert}"):
        assert line in text.splitlines()
    assert "<!here>" not in text and "<@U123>" not in text and "<https://x|y>" not in text
    assert blocks[0]["text"]["text"] == text


def test_the_blocks(runbook: Runbook) -> None:
    text, blocks = message(runbook)
    assert [b["type"] for b in blocks] == ["section", "actions"]
    assert blocks[0]["text"] == {"type": "mrkdwn", "text": text}
    actions = blocks[1]
    assert actions["block_id"] == "incident_ops.decision" == decisions.DECISION_BLOCK_ID
    first, second = actions["elements"]
    assert first["type"] == second["type"] == "button"
    assert (first["action_id"], second["action_id"]) == ("decision:0", "decision:1")
    assert first["text"] == {"type": "plain_text", "text": "deploy: デプロイ後の障害（ロールバックを実行）"}
    assert first["style"] == "primary" and "style" not in second
    assert json.loads(first["value"]) == {
        "incident_id": "INC-20261201-001", "dag_id": "incident_response",
        "run_id": "manual__2026-12-01T01:00:00+00:00", "task_id": "recover.choose_scenario", "map_index": -1,
        "option": "deploy: デプロイ後の障害（ロールバックを実行）"}
    assert json.loads(second["value"])["option"] == "手動対応（自動復旧なし）"


def test_the_button_value_is_compact_json_with_the_option_as_typed() -> None:
    value = decisions.button_value(incident_id="INC-1", dag_id="d", run_id="r", task_id="t", map_index=2,
                                   option="承認")
    assert value == '{"incident_id":"INC-1","dag_id":"d","run_id":"r","task_id":"t","map_index":2,"option":"承認"}'


def test_a_long_label_is_cut_to_75_characters_the_value_is_not(runbook: Runbook) -> None:
    long = decisions.Option("選" * 100, "選" * 100)
    exact = decisions.Option("あ" * 75, "あ" * 75)
    _, blocks = message(runbook, options=[long, exact])
    first, second = blocks[1]["elements"]
    assert first["text"]["text"] == "選" * 74 + "…" and len(first["text"]["text"]) == 75
    assert second["text"]["text"] == "あ" * 75
    assert json.loads(first["value"])["option"] == "選" * 100


def test_one_value_per_option(runbook: Runbook) -> None:
    with pytest.raises(ValueError, match="one button value per option"):
        message(runbook, values=["only one"])


def test_an_approvals_buttons(runbook: Runbook) -> None:
    options = [decisions.Option("Approve", "承認", "primary"), decisions.Option("Reject", "却下", "danger")]
    text, blocks = message(runbook, kind="approval", options=options, suggestion=None,
                           reasons=["フェイルオーバー後も異常が続いています", "パラメータ: snapshot=latest"])
    lines = text.splitlines()
    assert "選択肢: 承認 / 却下" in lines
    # An approval has no suggestion; its reasons (why the step is offered, its parameters) still show.
    assert lines[3:5] == ["・フェイルオーバー後も異常が続いています", "・パラメータ: snapshot=latest"]
    assert not any(line.startswith("提案") for line in lines)
    assert [(b["text"]["text"], b["style"], json.loads(b["value"])["option"]) for b in blocks[1]["elements"]] == [
        ("承認", "primary", "Approve"), ("却下", "danger", "Reject")]


# --- the Airflow UI body -------------------------------------------------------------------------------


def test_the_body_in_markdown(runbook: Runbook) -> None:
    body = decisions.decision_body(
        runbook, kind="scenario", incident=INCIDENT, subject="s", question="どの復旧シナリオで対応しますか。",
        options=OPTIONS, deadline=DEADLINE, minutes=10, on_timeout=MANUAL_TEXT, suggestion="デプロイ後の障害",
        reasons=["120分以内にデプロイあり"])
    assert body.splitlines() == [
        "インシデント **INC-20261201-001**（P1 / ログインできない）", "",
        "どの復旧シナリオで対応しますか。", "",
        "提案: **デプロイ後の障害**", "",
        "- 120分以内にデプロイあり", "",
        "回答期限: 12/01 10:10 JST（10分以内）", "",
        f"期限までに回答がない場合: {MANUAL_TEXT}",
    ]


def test_an_approvals_body_shows_its_reasons(runbook: Runbook) -> None:
    body = decisions.decision_body(
        runbook, kind="approval", incident=INCIDENT, subject="s", question="実行してよいですか。", options=OPTIONS,
        deadline=DEADLINE, minutes=15, on_timeout="既定値「却下」", reasons=["パラメータ: snapshot=latest"])
    assert body.splitlines() == [
        "インシデント **INC-20261201-001**（P1 / ログインできない）", "",
        "実行してよいですか。", "",
        "- パラメータ: snapshot=latest", "",
        "回答期限: 12/01 10:10 JST（15分以内）", "",
        "期限までに回答がない場合: 既定値「却下」",
    ]
    bare = decisions.decision_body(
        runbook, kind="approval", incident=INCIDENT, subject="s", question="実行してよいですか。", options=OPTIONS,
        deadline=DEADLINE, minutes=15, on_timeout="既定値「却下」")
    assert bare.splitlines()[2:5] == ["実行してよいですか。", "", "回答期限: 12/01 10:10 JST（15分以内）"]


def test_the_body_escapes_outside_markdown(runbook: Runbook) -> None:
    incident = {**INCIDENT, "symptom": "[click](https://evil.example) *bold* <b>|cell|"}
    body = decisions.decision_body(
        runbook, kind="approval", incident=incident, subject="s", question="`code` _em_", options=OPTIONS,
        deadline=DEADLINE, minutes=15, on_timeout="x", suggestion="![img](https://evil.example/i.png)",
        reasons=["~strike~ \\"])
    assert r"（P1 / \[click\](https://evil.example) \*bold\* \<b\>\|cell\|）" in body
    assert r"\`code\` \_em\_" in body
    assert r"提案: **\!\[img\](https://evil.example/i.png)**" in body
    assert r"- \~strike\~ \\" in body


# --- answered, acknowledge, reminder, timeout notice -------------------------------------------------------


def test_answered_by_a_person(runbook: Runbook) -> None:
    text, blocks = decisions.answered_blocks(runbook, "質問", by="田中 太郎", option="Approve",
                                             at=dt.datetime(2026, 12, 1, 1, 3, tzinfo=dt.UTC))
    line = "✅ 田中 太郎さんが「承認」を選択しました（12/01 10:03 JST）"
    assert text == f"質問\n{line}"
    assert blocks == [{"type": "section", "text": {"type": "mrkdwn", "text": "質問"}},
                      {"type": "context", "elements": [{"type": "mrkdwn", "text": line}]}]
    assert all(b["type"] != "actions" for b in blocks)  # the buttons are gone


def test_answered_by_the_timeout_default_with_a_note(runbook: Runbook) -> None:
    text, blocks = decisions.answered_blocks(runbook, "質問", by=None, option="手動対応（自動復旧なし）",
                                             at=dt.datetime(2026, 12, 1, 15, 10, tzinfo=dt.UTC), note=MANUAL_TEXT)
    line = f"⏱ 回答がないまま期限になり、既定値「手動対応（自動復旧なし）」を適用しました（12/02 00:10 JST）\n{MANUAL_TEXT}"
    assert text == f"質問\n{line}"
    assert blocks[1]["elements"][0]["text"] == line


def test_answered_escapes_the_name_and_the_note(runbook: Runbook) -> None:
    text, _ = decisions.answered_blocks(runbook, "q", by="<!channel>", option="<@U1>", at=DEADLINE, note="<!here>")
    assert "&lt;!channel&gt;さんが「&lt;@U1&gt;」を選択しました" in text
    assert text.endswith("\n&lt;!here&gt;")


def test_option_labels() -> None:
    assert [decisions.option_label(o) for o in ("Approve", "Reject", "手動")] == ["承認", "却下", "手動"]


def test_acknowledge_blocks() -> None:
    blocks = decisions.acknowledge_blocks("宣言", "INC-1")
    assert blocks == [
        {"type": "section", "text": {"type": "mrkdwn", "text": "宣言"}},
        {"type": "actions", "block_id": "incident_ops.acknowledge", "elements": [
            {"type": "button", "action_id": "acknowledge", "style": "primary",
             "text": {"type": "plain_text", "text": "対応開始"}, "value": '{"incident_id":"INC-1"}'}]},
    ]


def test_the_reminder(runbook: Runbook) -> None:
    text = decisions.reminder_text(runbook, mention="<@U0TANAKA1>", subject=f"件名 {HOSTILE}", deadline=DEADLINE,
                                   on_timeout="既定値「却下」")
    assert text.splitlines() == [
        "<@U0TANAKA1> 【リマインド】まだ回答がありません: 件名 &lt;!here&gt; &lt;@U123&gt; &lt;https://x|y&gt;",
        "回答期限: 12/01 10:10 JST",
        "期限までに回答がない場合: 既定値「却下」",
    ]
    unaddressed = decisions.reminder_text(runbook, mention=None, subject="s", deadline=DEADLINE, on_timeout="o")
    assert unaddressed.startswith("【リマインド】")


def test_the_timeout_notice(runbook: Runbook) -> None:
    text = decisions.timeout_notice_text(runbook, mention="<@U0LEAD001>", subject="承認: データベース問題 / フェイルオーバー",
                                         incident_id="INC-1", option="Reject", outcome="既定値「却下」: 手順は実行しません。")
    assert text.splitlines() == [
        "<@U0LEAD001> 【回答期限切れ】承認: データベース問題 / フェイルオーバー",
        "インシデントID: INC-1",
        "回答がないため既定値「却下」を適用しました。",
        "既定値「却下」: 手順は実行しません。",
    ]


# --- people's words: past tense after the deadline, the questions without identifiers --------------------


def test_after_the_deadline_the_outcome_is_in_the_past_tense(runbook: Runbook) -> None:
    done = decisions.outcome_on_timeout(runbook, kind="scenario", severity="P1", suggested="resource", done=True)
    assert done.startswith("提案のシナリオ「リソース枯渇」を開始しました。") and "開始します" not in done
    assert decisions.outcome_on_timeout(runbook, kind="scenario", severity="P3", suggested="resource", done=True) == (
        "自動復旧は行わず、手動対応に切り替えました（人が判断するまで本番環境は変更しません）。")
    assert decisions.outcome_on_timeout(runbook, kind="approval", severity="P1", scenario="database",
                                        step_id="failover", done=True) == (
        "手順「フェイルオーバー」は実行せず、本番環境は変更していません。")


def test_the_timeout_notice_says_what_was_done(runbook: Runbook) -> None:
    outcome = decisions.outcome_on_timeout(runbook, kind="scenario", severity="P1", suggested="resource", done=True)
    text = decisions.timeout_notice_text(runbook, mention=None, subject="復旧シナリオの選択（INC-1）", incident_id="INC-1",
                                         option="resource: リソース枯渇（スケールアウト/スケールアップ）", outcome=outcome)
    assert text.splitlines()[2] == "回答がないため既定値「リソース枯渇（スケールアウト/スケールアップ）」を適用しました。"
    assert text.splitlines()[3].startswith("提案のシナリオ「リソース枯渇」を開始しました。")


def test_the_approval_question_names_the_step_not_the_action(runbook: Runbook) -> None:
    assert decisions.approval_question(runbook, scenario="deploy", step_id="rollback") == (
        "シナリオ「デプロイ後の障害」の手順「ロールバック」を実行してよいですか。")
    assert decisions.approval_question(runbook, scenario="deploy", step_id="rollback", consent=True).endswith(
        "シナリオは回答のないまま開始されたため、この手順は人の承認なしには実行しません。")
    assert decisions.approval_reasons(runbook, scenario="deploy", step_id="rollback") == [
        "設定: ワークフロー「rollback.yml」、バージョン「1つ前（latest-1）」、待ち時間の上限「15分」"]
    assert decisions.approval_reasons(runbook, scenario="database", step_id="failover", found="前の手順が失敗したため") == [
        "前の手順が失敗したため"]
    assert decisions.approval_subject(runbook, scenario="deploy", step_id="rollback", incident_id="INC-1") == (
        "承認: デプロイ後の障害 / ロールバック（INC-1）")
    assert decisions.scenario_subject("INC-1") == "復旧シナリオの選択（INC-1）"


def test_a_scenario_option_reads_without_its_runbook_key(runbook: Runbook) -> None:
    assert decisions.scenario_option_label(runbook, "deploy") == "デプロイ後の障害（ロールバックを実行）"
    assert decisions.option_label("deploy: デプロイ後の障害（ロールバックを実行）", runbook) == "デプロイ後の障害（ロールバックを実行）"
    assert decisions.option_label("手動対応（自動復旧なし）", runbook) == "手動対応（自動復旧なし）"
    assert decisions.option_label("unknown: x", runbook) == "unknown: x"


def _runbook_identifiers(runbook: Runbook) -> tuple[set[str], set[str]]:
    actions = {step.action for plan in runbook.scenarios.values() for step in plan.steps}
    keys = {key for plan in runbook.scenarios.values() for step in plan.steps for key in step.params}
    return actions, keys


def _identifiers_in(text: str, words: set[str]) -> list[str]:
    import re

    return [word for word in words if re.search(rf"(?<![A-Za-z0-9_]){re.escape(word)}(?![A-Za-z0-9_])", text)]


def test_no_action_id_or_parameter_key_reaches_people() -> None:
    """Every step of the real runbook: the question, its settings, the subject and what a timeout does
    (before and after) name no action id and no YAML parameter key."""
    from incident_ops.core.runbook import load_runbook

    runbook = load_runbook()
    actions, keys = _runbook_identifiers(runbook)
    assert {"github_rollback", "workflow", "timeout_seconds"} <= actions | keys
    deadline = dt.datetime(2026, 12, 1, 1, 0, tzinfo=dt.UTC)
    incident = {"id": "INC-1", "severity": "P1", "symptom": "ログインできない"}
    for name, plan in runbook.scenarios.items():
        for step in plan.steps:
            for consent in (False, True):
                question = decisions.approval_question(runbook, scenario=name, step_id=step.id, consent=consent)
                reasons = decisions.approval_reasons(runbook, scenario=name, step_id=step.id)
                subject = decisions.approval_subject(runbook, scenario=name, step_id=step.id, incident_id="INC-1")
                outcomes = [decisions.outcome_on_timeout(runbook, kind="approval", severity=severity, scenario=name,
                                                         step_id=step.id, done=done)
                            for severity in ("P1", "P4") for done in (False, True)]
                options = [decisions.Option("Approve", "承認"), decisions.Option("Reject", "却下")]
                text, blocks = decisions.decision_message(
                    runbook, kind="consent" if consent else "approval", incident=incident, subject=subject,
                    question=question, options=options, values=["a", "b"], deadline=deadline, minutes=15,
                    on_timeout=outcomes[0], reasons=reasons)
                body = decisions.decision_body(
                    runbook, kind="approval", incident=incident, subject=subject, question=question, options=options,
                    deadline=deadline, minutes=15, on_timeout=outcomes[0], reasons=reasons)
                for shown in (text, body, json.dumps(blocks[0], ensure_ascii=False), *outcomes):
                    assert _identifiers_in(shown, actions | keys) == [], (name, step.id, shown)
        for severity in ("P1", "P2", "P3"):
            for done in (False, True):
                shown = decisions.outcome_on_timeout(runbook, kind="scenario", severity=severity, suggested=name,
                                                     done=done)
                assert _identifiers_in(shown, actions) == [], shown
        assert _identifiers_in(decisions.scenario_option_label(runbook, name), actions | {name}) == []


HOSTILE_VALUE = "<!channel> <@U123> & a\nb"
ESCAPED_VALUE = "&lt;!channel&gt; &lt;@U123&gt; &amp; a b"


def test_every_phrase_escapes_hostile_input() -> None:
    """Each phrase of include/templates/phrases.ja.yaml, every value hostile: escaped for Slack and on
    one line (a newline from outside cannot start a line), never a ping."""
    import re

    from incident_ops.core import phrases

    names = re.compile(r"{{\s*([a-z_]+)")
    for key, source in phrases.phrases().items():
        values = {name: HOSTILE_VALUE for name in names.findall(source)}
        values.update({flag: True for flag in re.findall(r"{%-?\s*if\s+(?:not\s+)?([a-z_]+)\s*-?%}", source)})
        text = phrases.phrase(key, **values)
        assert "<!channel>" not in text and "<@U123>" not in text, (key, text)
        if values and any(v == HOSTILE_VALUE for v in values.values()):
            assert ESCAPED_VALUE in text, (key, text)
        assert text.count("\n") == source.count("\n"), (key, text)
        plain = phrases.phrase(key, plain=True, **values)
        assert "&lt;" not in plain and "&amp;" not in plain  # the ledger's text is plain (escaped where shown)


def test_a_missing_phrase_value_is_an_error() -> None:
    import jinja2

    from incident_ops.core.phrases import phrase

    with pytest.raises(jinja2.UndefinedError):
        phrase("refusal.not_allowed")
    with pytest.raises(KeyError, match="no phrase"):
        phrase("no.such.phrase")


def test_scenario_options_are_people_words_and_tell_the_scenarios_apart(runbook) -> None:
    options = decisions.scenario_options(runbook, "手動対応（自動復旧なし）")
    assert set(options) == set(runbook.scenarios)
    assert options["deploy"] == "デプロイ後の障害（ロールバックを実行）"
    assert not any(option.startswith(f"{name}:") for name in runbook.scenarios for option in options.values())


def test_two_scenarios_that_would_read_alike_are_refused(runbook) -> None:
    deploy = runbook.scenarios["deploy"]
    resource = runbook.scenarios["resource"].model_copy(update={"label": deploy.label,
                                                                 "remediation": deploy.remediation})
    twin = runbook.model_copy(update={"scenarios": {**runbook.scenarios, "resource": resource}})
    with pytest.raises(ValueError, match=r"scenarios\.resource: its choice reads like scenarios\.deploy's"):
        decisions.scenario_options(twin, "手動対応（自動復旧なし）")
    with pytest.raises(ValueError, match="the manual choice"):
        decisions.scenario_options(runbook, decisions.scenario_option_label(runbook, "deploy"))
