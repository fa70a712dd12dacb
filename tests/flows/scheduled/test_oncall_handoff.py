"""The oncall_handoff task body over a month of timetable firings: what is posted where, once per
slot, skipped on days off, late slots caught up with a note, PagerDuty as the source of truth and
the alert check; against a Slack recorder, and against the local fake Slack / PagerDuty servers."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from pytest_httpserver import HTTPServer

from incident_ops.clients.pagerduty import IncidentPager
from incident_ops.clients.slack import IncidentSlack, make_web_client, message_key
from incident_ops.core.handoff import timetable_crons
from incident_ops.core.ledger import Ledger
from incident_ops.core.runbook import Runbook
from incident_ops.flows import scheduled
from tests.clients.conftest import FakePagerDuty, FakeSlack, patch_slack_sleeps
from tests.flows.scheduled.conftest import FakePager, RecordingSlack, add_incident, jst

DEV_TEAM = "#dev-team"


def firings(start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """When the DAG's timetable fires (Mon 10:00, Mon-Fri 9:00 and 18:00 JST, holidays included)."""
    times = []
    day = start
    while day < end:
        if day.weekday() < 5:
            times += [day.replace(hour=9), day.replace(hour=18)]
        if day.weekday() == 0:
            times.append(day.replace(hour=10))
        day += dt.timedelta(days=1)
    return sorted(times)


def run(at: dt.datetime, runbook: Runbook, ledger: Ledger, services, now: dt.datetime | None = None) -> dict:
    return scheduled.oncall_handoff(at, now=now or at, runbook=runbook, ledger=ledger, services=services)


def test_the_timetable_fires_at_every_slot_in_tokyo_time(runbook: Runbook) -> None:
    from airflow.timetables.base import DataInterval, TimeRestriction
    from airflow.timetables.trigger import MultipleCronTriggerTimetable

    timetable = MultipleCronTriggerTimetable(*timetable_crons(runbook), timezone="Asia/Tokyo")
    restriction = TimeRestriction(earliest=jst(2026, 11, 1), latest=jst(2026, 11, 30, 23, 59), catchup=True)
    fired, last = [], None
    while (info := timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)) is not None:
        fired.append(info.run_after.astimezone(jst(2026, 1, 1).tzinfo))
        last = DataInterval(info.data_interval.start, info.data_interval.end)
    assert fired == firings(jst(2026, 11, 1), jst(2026, 12, 1))


def test_a_month_of_firings_posts_every_slot_once(runbook: Runbook, ledger: Ledger, slack: RecordingSlack, services) -> None:
    results = {at: run(at, runbook, ledger, services) for at in firings(jst(2026, 11, 1), jst(2026, 12, 1))}
    posted = [item for result in results.values() for item in result["posted"]]
    assert Counter(item["kind"] for item in posted) == {"business_hours": 19, "off_hours": 19, "handoff": 5}
    assert all(not item["late"] and item["posted"] and item["recorded"] for item in posted)
    assert len(slack.to(DEV_TEAM)) == 43 == len(slack.messages)
    skipped = {at: result for at, result in results.items() if not result["posted"]}
    assert sorted(skipped) == [jst(2026, 11, 3, 9), jst(2026, 11, 3, 18), jst(2026, 11, 23, 9), jst(2026, 11, 23, 18)]
    assert skipped[jst(2026, 11, 23, 9)]["kind"] == "none"
    assert skipped[jst(2026, 11, 23, 9)]["reason"] == "11/23(月・勤労感謝の日) は休日のため交代の通知はありません"
    assert results[jst(2026, 11, 23, 10)]["kind"] == "handoff"
    # Business-hours posts name the team, off-hours posts the rotation's engineer (mentioned).
    assert results[jst(2026, 11, 24, 9)]["posted"][0]["on_call"] == ["tanaka", "yamada", "ito", "watanabe", "dev_lead"]
    assert results[jst(2026, 11, 24, 18)]["posted"][0]["on_call"] == ["ito"]
    assert slack.messages[-1]["text"].startswith("【業務時間終了・オンコール開始】11/30(月) 18:00\nここからはオンコール担当 <@U0WATANA1>")

    # Re-running every firing (a clear-and-rerun, or a catch-up) posts nothing more.
    calls = slack.calls
    for at in results:
        assert run(at, runbook, ledger, services, now=at + dt.timedelta(days=40))["posted"] == []
    assert len(slack.messages) == 43 and slack.calls == calls


def test_year_end_firings(runbook: Runbook, ledger: Ledger, slack: RecordingSlack, services) -> None:
    for at in firings(jst(2026, 12, 28), jst(2027, 1, 6)):
        run(at, runbook, ledger, services)
    # 年末年始 (the runbook's calendar.extra_days_off 12-29..01-03): no 9:00/18:00 hand-over from 12/29 to 1/3.
    posted_days = sorted({m["key"].split(":", 2)[2][:10] for m in slack.messages})
    assert posted_days == ["2026-12-28", "2027-01-04", "2027-01-05"]
    year_end = next(m for m in slack.messages if m["key"] == "oncall:off_hours:2026-12-28T18:00+09:00")
    assert ("12/28(月) 18:00 〜 01/04(月) 09:00（休日: 12/29(火・年末年始)、12/30(水・年末年始)、12/31(木・年末年始)、"
            "01/01(金・元日)、01/02(土・年末年始)、01/03(日・年末年始)）") in year_end["text"]


def test_missed_slots_are_posted_late_with_a_note(runbook: Runbook, ledger: Ledger, slack: RecordingSlack, services) -> None:
    run(jst(2026, 11, 6, 18), runbook, ledger, services)
    # Airflow was down over the weekend and Monday morning: the scheduler's first run is 10:00.
    result = run(jst(2026, 11, 9, 10), runbook, ledger, services, now=jst(2026, 11, 9, 10, 2))
    assert [(p["kind"], p["late"]) for p in result["posted"]] == [("business_hours", True), ("handoff", False)]
    late, handoff = slack.messages[-2:]
    assert late["text"].splitlines()[0] == "【業務時間開始】11/09(月) 09:00（遅延配信: 本来 09:00）"
    assert handoff["text"].splitlines()[0] == "【オンコール交代】11/09(月) 10:00"
    assert ledger.notice("oncall:business_hours:2026-11-09T09:00+09:00")["data"]["late"] is True


def test_a_run_that_starts_late_says_so(runbook: Runbook, ledger: Ledger, slack: RecordingSlack, services) -> None:
    result = run(jst(2026, 11, 4, 18), runbook, ledger, services, now=jst(2026, 11, 5, 7, 30))
    assert result["posted"][0]["late"]
    assert slack.messages[0]["text"].splitlines()[0] == "【業務時間終了・オンコール開始】11/04(水) 18:00（遅延配信: 本来 11/04(水) 18:00）"


def test_a_manual_run_between_slots(runbook: Runbook, ledger: Ledger, slack: RecordingSlack, services) -> None:
    quiet = run(jst(2026, 11, 4, 12, 34), runbook, ledger, services)
    assert quiet["kind"] == "none" and quiet["posted"] == [] and "交代の時刻ではありません" in quiet["reason"]
    run(jst(2026, 11, 2, 18), runbook, ledger, services)
    caught_up = run(jst(2026, 11, 4, 12, 34), runbook, ledger, services)
    assert [p["key"] for p in caught_up["posted"]] == ["oncall:business_hours:2026-11-04T09:00+09:00"]


def test_handoff_lists_open_incidents_and_pending_postmortems(runbook: Runbook, ledger: Ledger, slack: RecordingSlack,
                                                             services) -> None:
    add_incident(ledger, severity="P1", detected=jst(2026, 11, 8, 23), title="ログインできない",
                 channel="incident-20261108", channel_id="C0INC0008")
    add_incident(ledger, severity="P2", detected=jst(2026, 11, 5, 10), title="診断機能が動作しない",
                 recovered=jst(2026, 11, 5, 11), channel="incident-20261105", channel_id="C0INC0005")
    add_incident(ledger, severity="P3", detected=jst(2026, 11, 6, 10), title="レポート生成が遅い", recovered=jst(2026, 11, 6, 12))
    add_incident(ledger, severity="P1", detected=jst(2026, 11, 10, 1), title="未来の障害")  # after the slot
    run(jst(2026, 11, 9, 10), runbook, ledger, services)
    text = slack.messages[-1]["text"]
    assert "対応中のインシデント: 1件" in text
    assert "P1 ログインできない（11/08(日) 23:00 発生、対応中） <#C0INC0008|incident-20261108>" in text
    assert "未完了のポストモーテム: 1件" in text
    assert "P2 診断機能が動作しない: 期限 11/07(土) 11:00（期限超過） <#C0INC0005|incident-20261105>" in text
    assert "未来の障害" not in text and "レポート生成が遅い" not in text


def test_pagerduty_is_the_source_of_truth_and_disagreement_is_said(runbook: Runbook, ledger: Ledger,
                                                                  slack: RecordingSlack) -> None:
    swapped = FakePager(runbook, schedule=lambda at: runbook.person("tanaka"))
    result = run(jst(2026, 11, 4, 18), runbook, ledger, SimpleNamespace(slack=slack, pager=swapped))
    assert result["posted"][0]["on_call"] == ["tanaka"]
    text = slack.messages[0]["text"]
    assert "ここからはオンコール担当 <@U0TANAKA1> が対応します" in text
    assert "担当者の確認元: PagerDuty のスケジュール" in text
    assert ":warning: PagerDuty のスケジュール（田中 太郎）と当番表（渡辺 舞）が一致しません。" in text


def test_pagerduty_agreeing_is_quiet(runbook: Runbook, ledger: Ledger, slack: RecordingSlack, services) -> None:
    run(jst(2026, 11, 2, 10), runbook, ledger, services)
    text = slack.messages[0]["text"]
    assert "担当者の確認元: PagerDuty のスケジュール" in text and "一致しません" not in text
    assert "アラート受信: PagerDuty アプリ登録済み（アラートを受信できます）" in text


def test_the_roster_when_no_schedule_is_configured(runbook: Runbook, ledger: Ledger, slack: RecordingSlack,
                                                   pager: FakePager) -> None:
    no_schedule = runbook.model_copy(update={"oncall": runbook.oncall.model_copy(update={"pagerduty_schedule_id": None})})
    run(jst(2026, 11, 2, 10), no_schedule, ledger, SimpleNamespace(slack=slack, pager=pager))
    assert "担当者の確認元: 当番表（runbook）" in slack.messages[0]["text"]
    assert not [ask for ask in pager.asked if ask[0] == "oncalls"]
    # The alert check still asks PagerDuty for the contact methods.
    assert ("contact_methods", "PWATANA") in pager.asked


def test_pagerduty_down_falls_back_to_the_roster_and_says_so(runbook: Runbook, ledger: Ledger, slack: RecordingSlack) -> None:
    result = run(jst(2026, 11, 2, 10), runbook, ledger, SimpleNamespace(slack=slack, pager=FakePager(runbook, fail=True)))
    assert result["posted"][0]["posted"]
    text = slack.messages[0]["text"]
    assert "<@U0ITO0001> → <@U0WATANA1>" in text and "担当者の確認元: 当番表（runbook）" in text
    assert "PagerDuty のスケジュールを確認できませんでした" in text
    assert "アラート受信: PagerDuty に問い合わせできず確認できませんでした" in text


def test_no_push_method_warns_the_engineer_and_the_dev_lead_once(runbook: Runbook, ledger: Ledger,
                                                                slack: RecordingSlack) -> None:
    services = SimpleNamespace(slack=slack, pager=FakePager(runbook, no_push={"PWATANA"}))
    result = run(jst(2026, 11, 2, 10), runbook, ledger, services)
    assert result["posted"][0]["warned"] == ["watanabe", "dev_lead"]
    assert [m["channel"] for m in slack.messages] == [DEV_TEAM, "U0WATANA1", "U0LEAD001"]
    assert slack.messages[1]["text"].startswith("<@U0WATANA1> <@U0LEAD001> 【オンコール: アラート受信の確認】")
    assert "PagerDutyアプリをインストールし" in slack.messages[0]["text"]
    assert slack.messages[1]["key"] == "oncall:handoff:2026-11-02T10:00+09:00:alert:U0WATANA1"
    # The slot's 18:00 hand-over checks again (the engineer takes the night) and warns again, once.
    run(jst(2026, 11, 2, 18), runbook, ledger, services)
    run(jst(2026, 11, 2, 18), runbook, ledger, services)
    assert len(slack.messages) == 6
    assert ledger.notice("oncall:off_hours:2026-11-02T18:00+09:00")["data"]["alert"] == "no_push"


def test_nothing_to_post_needs_no_slack(runbook: Runbook, ledger: Ledger) -> None:
    result = run(jst(2026, 11, 3, 9), runbook, ledger, SimpleNamespace(slack=None, pager=None))
    assert result["posted"] == [] and "休日" in result["reason"]
    with pytest.raises(RuntimeError, match="slack_api_default"):
        run(jst(2026, 11, 4, 9), runbook, ledger, SimpleNamespace(slack=None, pager=None))


# --- against the local fake Slack Web API and PagerDuty REST ------------------------------------------


@pytest.fixture
def fake_slack(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> FakeSlack:
    patch_slack_sleeps(monkeypatch)
    fake = FakeSlack(httpserver)
    fake.add_channel("dev-team")
    return fake


@pytest.fixture
def real_slack(fake_slack: FakeSlack) -> IncidentSlack:
    return IncidentSlack(make_web_client("xoxb-test", base_url=fake_slack.base_url, max_retries=1, backoff_factor=0.0))


def test_same_slot_twice_posts_once_through_the_slack_api(runbook: Runbook, tmp_path: Path, fake_slack: FakeSlack,
                                                          real_slack: IncidentSlack, pager: FakePager) -> None:
    services = SimpleNamespace(slack=real_slack, pager=pager)
    first = Ledger(f"sqlite:///{tmp_path / 'a.db'}")
    assert run(jst(2026, 11, 2, 10), runbook, first, services)["posted"][0]["posted"]
    assert run(jst(2026, 11, 2, 10), runbook, first, services)["posted"] == []
    # Even with the ledger's notice lost, the message's idempotency key in Slack stops a second post.
    second = Ledger(f"sqlite:///{tmp_path / 'b.db'}")
    again = run(jst(2026, 11, 2, 10), runbook, second, services)
    assert again["posted"][0]["posted"] is False and again["posted"][0]["recorded"] is True
    dev_team = fake_slack.channel_by_name("dev-team")["id"]
    messages = fake_slack.all_messages(dev_team)
    assert len(messages) == 1
    assert message_key(messages[0]) == "oncall:handoff:2026-11-02T10:00+09:00"
    assert messages[0]["text"].startswith("【オンコール交代】11/02(月) 10:00\n<@U0ITO0001> → <@U0WATANA1>")
    first.dispose()
    second.dispose()


def test_against_pagerduty_rest(runbook: Runbook, ledger: Ledger, fake_slack: FakeSlack, real_slack: IncidentSlack,
                                fake_pd: FakePagerDuty, pd_tls: tuple[HTTPServer, str]) -> None:
    fake_pd.oncalls = [{
        "user": {"id": "PYAMADA", "summary": "山田 花子", "name": "山田 花子", "email": "yamada@peoplebooster.com"},
        "schedule": {"id": "PSCHED01"}, "escalation_level": 1,
        "start": "2026-11-02T01:00:00Z", "end": "2026-11-09T01:00:00Z",
    }]
    fake_pd.contact_methods = {"PYAMADA": [{"id": "PE1", "type": "email_contact_method", "address": "y@example.com"}]}
    pager = IncidentPager(None, "pd-api-token", rest_url=fake_pd.url, verify=pd_tls[1], retry_attempts=1, backoff=0.0,
                          sleep=lambda _: None)
    result = run(jst(2026, 11, 4, 18), runbook, ledger, SimpleNamespace(slack=real_slack, pager=pager))
    assert result["posted"][0]["on_call"] == ["yamada"] and result["posted"][0]["warned"] == ["yamada", "dev_lead"]
    dev_team = fake_slack.channel_by_name("dev-team")["id"]
    [message] = fake_slack.all_messages(dev_team)
    assert "（山田 花子）と当番表（渡辺 舞）が一致しません" in message["text"]
    assert "PagerDuty アプリ（プッシュ通知）が登録されていません" in message["text"]
    dms = [m for cid, msgs in fake_slack.messages.items() if cid.startswith("D") for m in msgs]
    assert len(dms) == 2 and all("【オンコール: アラート受信の確認】" in m["text"] for m in dms)
    oncalls = fake_pd.calls("/oncalls")
    assert oncalls and oncalls[0].params["schedule_ids[]"] == ["PSCHED01"]
    assert json.loads(json.dumps(result))  # JSON-serialisable for XCom


def test_airflow_pendulum_instants(runbook: Runbook, ledger: Ledger, slack: RecordingSlack, services) -> None:
    import pendulum

    logical = pendulum.datetime(2026, 11, 2, 1, 0, tz="UTC")  # what Airflow hands the task as logical_date
    result = scheduled.oncall_handoff(logical, now=pendulum.datetime(2026, 11, 2, 1, 1, tz="UTC"), runbook=runbook,
                                      ledger=ledger, services=services)
    assert [p["key"] for p in result["posted"]] == ["oncall:handoff:2026-11-02T10:00+09:00"]
    later = pendulum.datetime(2026, 11, 2, 9, 0, tz="Asia/Tokyo")
    assert scheduled.postmortem_reminders(later, now=later, runbook=runbook, ledger=ledger, services=services)["sent"] == []
