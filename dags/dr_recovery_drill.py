"""dr_recovery_drill: prove every quarter that the estate can be recovered within its targets.

start -> build an isolated sandbox (setup) -> retrieve the latest signed recovery points ->
restore them into the sandbox -> wait -> verify each as dr_restore does -> tear the sandbox down
(teardown: runs on success, failure and timeout; fails loudly on anything left) -> report (RTO
and RPO per resource against the plan's targets, NIST SP 800-53 evidence, trend across earlier
drills; JSON and HTML in the evidence bucket under drills/<plan>/). The run fails unless the
drill passed. Every step runs under the restore role and lands in the audit trail.

With a vault in the plan (or ``source: vault``) the whole drill runs from the vault: under the
vault recovery role, sandbox in the recovery account, vault copies restored, evidence and
audit trail in the vault evidence bucket - the drill proves the workload account is not needed.

Runs at 03:00 UTC on the first day of each quarter; trigger it by hand at any time. There is
deliberately no dagrun_timeout: a run-level timeout kills tasks without running teardown. Each
step has its own timeout instead, and the teardown still runs after one fires.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param, chain

from securedr.core.restore_request import SOURCES
from securedr.operators.drill import (
    TEARDOWN_TASK_ID,
    CreateDrillSandboxOperator,
    DrillReportOperator,
    StartDrillOperator,
    TeardownDrillSandboxOperator,
    VerifyDrillOperator,
)
from securedr.operators.restore import RestoreRecoveryPointsOperator, RetrieveRecoveryPointsOperator
from securedr.schedules import next_cron
from securedr.sensors.restore import RestoredResourcesSensor

with DAG(
    dag_id="dr_recovery_drill",
    description="Quarterly recovery drill: restore into an isolated sandbox, measure RTO/RPO",
    schedule=next_cron("0 3 1 1,4,7,10 *"),  # never a run for a time already past
    catchup=False,
    max_active_runs=1,
    default_args={"retry_delay": timedelta(seconds=30), "execution_timeout": timedelta(hours=2)},
    params={
        "source": Param(
            None,
            type=["null", "string"],
            enum=[None, *SOURCES],
            title="Drill from",
            description=(
                "'vault': restore the latest verified vault copies into a sandbox built in the "
                "recovery account, under the vault recovery role; 'workload': the workload "
                "account's DR copies. Empty (and every scheduled drill): the vault when the plan "
                "has one, else the workload."
            ),
        )
    },
    tags=["securedr", "dr", "drill"],
    doc_md=__doc__,
) as dag:
    start = StartDrillOperator(task_id="start_drill")
    sandbox = CreateDrillSandboxOperator(task_id="create_sandbox", initiation=start.output)
    retrieve = RetrieveRecoveryPointsOperator(
        task_id="retrieve_recovery_points", initiation=start.output
    )
    restore_volumes = RestoreRecoveryPointsOperator(
        task_id="restore_volumes",
        kind="ebs",
        initiation=start.output,
        retrieval=retrieve.output,
        sandbox=sandbox.output,
    )
    restore_databases = RestoreRecoveryPointsOperator(
        task_id="restore_databases",
        kind="rds",
        initiation=start.output,
        retrieval=retrieve.output,
        sandbox=sandbox.output,
    )
    wait_restored = RestoredResourcesSensor(
        task_id="wait_for_restored_resources",
        restored=[restore_volumes.output, restore_databases.output],
    )
    verify = VerifyDrillOperator(
        task_id="verify_restores",
        initiation=start.output,
        retrieval=retrieve.output,
        restored=[restore_volumes.output, restore_databases.output],
    )
    teardown = TeardownDrillSandboxOperator(task_id=TEARDOWN_TASK_ID, initiation=start.output)
    report = DrillReportOperator(
        task_id="report_drill", initiation=start.output, verification=verify.output
    )

    chain(
        start,
        sandbox,
        retrieve,
        [restore_volumes, restore_databases],
        wait_restored,
        verify,
        teardown.as_teardown(setups=sandbox, on_failure_fail_dagrun=True),
        report,
    )
