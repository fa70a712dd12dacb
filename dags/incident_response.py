"""
### incident_response — PeopleBooster 障害対応フロー

One run drives one incident through the runbook's five phases:

1. **detect** — classify (症状 → 障害レベル; a reporter's severity wins), open or join the ledger
   record, page and notify per the escalation matrix, open `#incident-YYYYMMDD` and post the
   declaration (P1/P2), confirm the outage, wait for someone to start the response by the
   severity's deadline and escalate when nobody does.
2. **investigate** — error logs (30 min), metrics (one GetMetricData call), alarms, Sentry, recent
   deploys, a chart, and a suggested scenario with its reasons, posted to the incident channel.
3. **recover** — the scenario (given in the form, or chosen/confirmed by a person in the UI; the
   suggestion is the timeout default), then its steps from the runbook; risky steps wait for an
   approval. A step with `when:` is decided first (`when_<step>`: a ladder's next rung only while
   the service is still unhealthy, the fallback only when the outage is confirmed, a support case
   only when AWS failed) and skipped with its reason otherwise; a step with `wait:` waits in the
   triggerer (待機). A scenario's `notify` channels (#infra-support) are told when it starts.
   With **check mode** every step reports what it would do and changes nothing.
4. **verify** — N consecutive healthy answers (deferrable), the functional checks, the recovery
   announcement (復旧宣言) and PagerDuty resolved.
5. **postmortem** — the draft with the runbook's sections, due 48 h after recovery (the next
   business day's 18:00 when that falls at night or on a day off: `postmortem.align`).

**Phase time boxes** (Phase 1: 0-15分, Phase 2: 15-60分, `phase_time_boxes` in the runbook) are
Airflow deadline alerts on each run (reference: the run's queued time): when a run is still in
Phase 1 at 15 minutes or in Phase 2 at 60, the incident channel and the dev lead get a notice, once
per incident and phase (`incident_ops.notifiers.time_box`).

Trigger from the form, the REST API (`POST /api/v2/dags/incident_response/dagRuns` with the same
fields as `conf`) or the alarm webhooks; invalid input is refused before anything runs. A failed
task tells the incident channel and the on-call engineer.
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DeadlineAlert, DeadlineReference, SyncCallback, TriggerRule, dag, task, task_group

from incident_ops.core.decisions import scenario_options
from incident_ops.core.runbook import SCENARIOS, load_runbook
from incident_ops.notifiers.dag_failure import DagFailureNotifier
from incident_ops.notifiers.incident import IncidentFailureNotifier
from incident_ops.notifiers.long_running import stuck_run_alert
from incident_ops.operators.conditions import StepConditionOperator
from incident_ops.operators.decision_reminder import DecisionReminderOperator
from incident_ops.operators.decisions import ScenarioChoiceOperator, StepApprovalOperator
from incident_ops.operators.remediation import RemediationOperator
from incident_ops.params import AUTO, incident_params
from incident_ops.sensors.acknowledgement import AcknowledgementSensor
from incident_ops.sensors.health import HealthSensor
from incident_ops.sensors.provider_status import ProviderStatusSensor

# Parsing reads only the runbook file beside the project: no network or database access.
RUNBOOK = load_runbook()
OPEN_TASK = "detect.open_incident"
EVIDENCE_TASK = "investigate.collect_evidence"
MANUAL_OPTION = "手動対応（自動復旧なし）"
INCIDENT_ID = "{{ ti.xcom_pull(task_ids='" + OPEN_TASK + "')['id'] }}"
CHECK_MODE = "{{ params.check_mode }}"
ENVIRONMENT = "{{ params.environment }}"
SERVICE = "{{ ti.xcom_pull(task_ids='" + OPEN_TASK + "')['service'] }}"


def flow():
    """The task bodies, imported when a task runs (clients and boto3 stay out of DAG parsing)."""
    from incident_ops.flows import incident as incident_flow

    return incident_flow


def time_box_alert(phase: int, minutes: int) -> DeadlineAlert:
    """Phase `phase` should be over `minutes` after the run was queued; the callback checks whether
    it is and stays silent if so (the core decides: incident_ops.core.timeboxes)."""
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=dt.timedelta(minutes=minutes),
        callback=SyncCallback("incident_ops.notifiers.time_box.phase_time_box_alert", kwargs={"phase": phase}),
        name=f"phase{phase}_time_box",
    )


def recovery_flow():
    """Phase 3's task bodies between the steps (notices, conditions, the wait)."""
    from incident_ops.flows import recovery

    return recovery


# The choice's options in people's words (core.decisions.scenario_options refuses two alike).
SCENARIO_OPTIONS = scenario_options(RUNBOOK, MANUAL_OPTION)


def scenario_option(name: str) -> str:
    return SCENARIO_OPTIONS[name]


@dag(
    dag_id="incident_response",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Tokyo"),
    catchup=False,
    params=incident_params(RUNBOOK),
    doc_md=__doc__,
    tags=["incident", "peoplebooster"],
    default_args={
        "retries": 2,
        "retry_delay": dt.timedelta(seconds=5),
        "retry_exponential_backoff": True,
        "on_failure_callback": IncidentFailureNotifier(open_task_id=OPEN_TASK),
    },
    max_active_runs=16,
    render_template_as_native_obj=True,
    # The run failed: #dev-team hears of it even when no incident was opened (the task's notifier
    # tells the incident channel).
    on_failure_callback=DagFailureNotifier(),
    deadline=[
        time_box_alert(1, RUNBOOK.phase_time_boxes.detect),
        time_box_alert(2, RUNBOOK.phase_time_boxes.investigate),
        stuck_run_alert("incident_response"),  # 長時間実行中: #dev-team and the incident channel
    ],
)
def incident_response() -> None:
    @task_group(group_id="detect", tooltip="Phase 1: 検知と初期対応")
    def detect():
        @task
        def open_incident(params: dict | None = None, dag_run=None) -> dict:
            return flow().open_incident(params, run_id=dag_run.run_id, run_after=dag_run.run_after)

        @task.short_circuit(ignore_downstream_trigger_rules=True)
        def proceed(incident: dict) -> bool:
            """A run that only joined an incident another run drives stops here (occurrence recorded)."""
            return incident["proceed"]

        # The page and the declaration come straight after open_incident, side by side (not behind
        # `proceed`): each scheduler hop costs about a second, so they check `proceed` themselves.
        @task
        def notify_responders(incident: dict) -> dict:
            if not incident["proceed"]:
                return {"skipped": f"incident handled by {incident['handled_by']}"}
            return flow().notify_responders(incident)

        @task
        def declare(incident: dict) -> dict:
            if not incident["proceed"]:
                return {"skipped": f"incident handled by {incident['handled_by']}"}
            return flow().declare(incident)

        @task
        def confirm(incident: dict) -> dict:
            return flow().confirm_incident(incident)

        @task(trigger_rule=TriggerRule.ALL_DONE)
        def escalate_unacknowledged(incident: dict) -> dict:
            return flow().escalate_unacknowledged(incident)

        incident = open_incident()
        gate = proceed(incident)
        paged = notify_responders(incident)
        declared = declare(incident)
        confirmed = confirm(incident)
        ack = AcknowledgementSensor(task_id="wait_for_ack", incident=incident)
        gate >> [confirmed, ack]
        paged >> ack >> escalate_unacknowledged(incident)
        return incident, gate, declared

    @task_group(group_id="investigate", tooltip="Phase 2: 調査と診断")
    def investigate(incident):
        # Runs even when the declaration failed: notifications never block the recovery.
        @task(trigger_rule=TriggerRule.ALL_DONE)
        def collect_evidence(incident: dict) -> dict:
            return flow().collect_evidence(incident)

        return collect_evidence(incident)

    @task_group(group_id="recover", tooltip="Phase 3: 復旧対応")
    def recover(incident, evidence):
        @task.branch
        def decide_scenario(evidence: dict, params: dict | None = None) -> str:
            """Ask a person unless the form named the scenario (or a dry run has a suggestion)."""
            if params["scenario"] != AUTO or (params["check_mode"] and evidence.get("suggested")):
                return "recover.use_preset"
            return ["recover.choose_scenario", "recover.remind_choose_scenario"]

        @task.branch
        def use_preset(incident: dict, evidence: dict, params: dict | None = None) -> str:
            name = params["scenario"] if params["scenario"] != AUTO else evidence.get("suggested")
            # Recorded like a person's choice: Phase 2 (調査と診断) ends here.
            flow().record_preset_scenario(incident, name, suggested=params["scenario"] == AUTO)
            return f"recover.{name}.start" if name else "recover.manual"

        decision = decide_scenario(evidence)
        preset = use_preset(incident, evidence)
        choose = ScenarioChoiceOperator(
            task_id="choose_scenario",
            subject="復旧シナリオの選択",
            options=[scenario_option(name) for name in SCENARIOS] + [MANUAL_OPTION],
            options_mapping={scenario_option(name): f"recover.{name}.start" for name in SCENARIOS}
            | {MANUAL_OPTION: "recover.manual"},
            option_for_scenario={name: scenario_option(name) for name in SCENARIOS},
            manual_option=MANUAL_OPTION,
            defaults=[MANUAL_OPTION],
            incident_id=INCIDENT_ID,
            suggestion_task_id=EVIDENCE_TASK,
            response_timeout=dt.timedelta(minutes=RUNBOOK.decisions.scenario_choice.timeout_minutes),
        )
        remind_choice = DecisionReminderOperator(
            task_id="remind_choose_scenario",
            incident_id=INCIDENT_ID,
            decision_task_id="recover.choose_scenario",
            response_timeout=choose.response_timeout,
            check_mode=CHECK_MODE,
        )
        manual = EmptyOperator(task_id="manual", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
        done = EmptyOperator(task_id="done", trigger_rule=TriggerRule.ALL_DONE)
        decision >> [choose, preset, remind_choice]
        [choose, preset] >> manual

        approval_timeout = dt.timedelta(minutes=RUNBOOK.decisions.approval.timeout_minutes)
        for name in SCENARIOS:
            scenario = RUNBOOK.scenarios[name]

            @task_group(group_id=name, tooltip=f"{scenario.label}: {scenario.remediation}")
            def scenario_steps(name: str = name, scenario=scenario):
                start = EmptyOperator(task_id="start", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
                side = []
                if scenario.notify:
                    # Beside the steps, never in their way: a Slack error does not hold the recovery.
                    @task(task_id="notify_contacts")
                    def notify_contacts(incident: dict, name: str = name) -> dict:
                        return recovery_flow().notify_scenario_contacts(incident, name)

                    notified = notify_contacts(incident)
                    start >> notified
                    side.append(notified)
                previous, previous_id = start, None
                for step in scenario.main_steps():
                    # Every step hangs on `start` too, so a step skipped by its condition or a
                    # rejection does not skip the rest of the scenario. A step without `when` runs
                    # only if nothing before it failed. A step with `when` is decided after the step
                    # before it whatever became of that one (a ladder's next rung after a failed
                    # one): `after_<step>` (all done) isolates the failure, and `start` (all success)
                    # keeps the scenarios nobody chose skipped.
                    head_rule = TriggerRule.ALL_SUCCESS if step.when else TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS
                    chain = []
                    if step.when:
                        if previous is not start:
                            joined = EmptyOperator(task_id=f"after_{previous_id}", trigger_rule=TriggerRule.ALL_DONE)
                            previous >> joined
                            previous = joined
                        chain.append(StepConditionOperator(
                            task_id=f"when_{step.id}",
                            scenario=name,
                            step_id=step.id,
                            environment=ENVIRONMENT,
                            incident_id=INCIDENT_ID,
                            check_mode=CHECK_MODE,
                            trigger_rule=head_rule,
                            retries=0,
                        ))
                    approved_by = None
                    gate = None
                    if step.approval or step.needs_consent:
                        # Its own approval, or (consent_only) the consent a person gave by choosing
                        # the scenario; asked when the scenario started with nobody choosing it.
                        gate = StepApprovalOperator(
                            task_id=f"approve_{step.id}",
                            incident_id=INCIDENT_ID,
                            scenario=name,
                            step_id=step.id,
                            consent_only=not step.approval,
                            reason=f"recover.{name}.when_{step.id}" if step.when else None,
                            defaults=[StepApprovalOperator.REJECT],
                            check_mode=CHECK_MODE,
                            response_timeout=approval_timeout,
                            trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS if chain else head_rule,
                        )
                        chain.append(gate)
                        approved_by = (
                            "{{ (ti.xcom_pull(task_ids='recover." + name + ".approve_" + step.id
                            + "') or {}).get('approved_by') }}"
                        )
                    rule = TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS if chain else head_rule
                    if step.wait:
                        run = ProviderStatusSensor(
                            task_id=step.id,
                            scenario=name,
                            step_id=step.id,
                            environment=ENVIRONMENT,
                            incident_id=INCIDENT_ID,
                            check_mode=CHECK_MODE,
                            trigger_rule=rule,
                            retries=0,
                        )
                    else:
                        run = RemediationOperator(
                            task_id=step.id,
                            scenario=name,
                            step_id=step.id,
                            environment=ENVIRONMENT,
                            service=SERVICE,
                            incident_id=INCIDENT_ID,
                            check_mode=CHECK_MODE,
                            approved_by=approved_by,
                            trigger_rule=rule,
                        )
                    chain.append(run)
                    for upstream, downstream in zip(chain, chain[1:], strict=False):
                        upstream >> downstream
                    if previous is not start:
                        start >> chain[0]
                    previous >> chain[0]
                    if gate is not None:
                        # Starts with the gate (same upstream, same rule) to remind halfway.
                        reminder = DecisionReminderOperator(
                            task_id=f"remind_{step.id}",
                            incident_id=INCIDENT_ID,
                            decision_task_id=f"recover.{name}.approve_{step.id}",
                            step_id=step.id,
                            response_timeout=approval_timeout,
                            check_mode=CHECK_MODE,
                            trigger_rule=gate.trigger_rule,
                        )
                        for upstream in gate.upstream_list:
                            upstream >> reminder
                    previous, previous_id = run, step.id
                return start, [previous, *side]

            start, last = scenario_steps()
            [choose, preset] >> start
            last >> done
        manual >> done
        return done

    @task_group(group_id="verify", tooltip="Phase 4: 復旧確認")
    def verify(incident, after):
        health = HealthSensor(
            task_id="wait_for_health",
            environment=ENVIRONMENT,
            consecutive=RUNBOOK.verification.consecutive_healthy,
            interval=RUNBOOK.verification.interval_seconds,
            timeout_seconds=RUNBOOK.verification.timeout_minutes * 60,
            retries=0,
        )

        @task
        def functional_checks(incident: dict) -> list:
            return flow().run_functional_checks(incident)

        @task
        def announce_recovery(incident: dict) -> dict:
            return flow().announce_recovery(incident)

        checks = functional_checks(incident)
        announced = announce_recovery(incident)
        after >> health >> checks >> announced
        return announced

    @task_group(group_id="postmortem", tooltip="Phase 5: ポストモーテム")
    def postmortem(incident, evidence, after):
        @task
        def write_postmortem(incident: dict, evidence: dict) -> dict:
            return flow().write_postmortem(incident, evidence)

        written = write_postmortem(incident, evidence)
        after >> written

    incident, gate, declared = detect()
    evidence = investigate(incident)
    gate >> evidence
    declared >> evidence
    done = recover(incident, evidence)
    announced = verify(incident, done)
    postmortem(incident, evidence, announced)


incident_response_dag = incident_response()

if __name__ == "__main__":
    incident_response_dag.test()
