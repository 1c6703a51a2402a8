"""dr_restore: the manual DR run - restore signed, verified recovery points into the DR Region.

initiate (validate the request) -> enforce access control (initiator with their MFA code,
approval by a second person with theirs) -> retrieve the encrypted backup (signed manifest, DR
copies checked) -> restore (EBS volumes, RDS instances, file sets decrypted and checked against
the manifest, under the restore role) -> wait -> confirm (checks, RTO/RPO, report, notification).
Every decision and action is appended to the audit trail.

``source`` picks what is restored: the workload account's DR copies, or - when the workload
account is lost - the vault copies, read and restored under the vault recovery role into the
recovery account, with the manifests, MFA ledger, audit trail and report in the vault evidence
bucket. Empty: the vault when the plan has one.

Trigger it from the UI ("Trigger DAG" with the form below); approvers answer under "Required
Actions". Runbook: docs/restore.md.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param, chain

from securedr.core.mfa import MFA_CODE_PATTERN
from securedr.core.restore_request import (
    LATEST,
    REASON_MAX_LENGTH,
    REASON_MIN_LENGTH,
    RECOVERY_POINT_PATTERN,
    RESOURCE_ID_PATTERN,
    SOURCES,
    TICKET_PATTERN,
)
from securedr.notifiers.sns import SnsNotifier
from securedr.operators.access import (
    CheckApprovalOperator,
    CheckInitiatorOperator,
    RestoreApprovalOperator,
)
from securedr.operators.filesets import RestoreFileSetsOperator
from securedr.operators.restore import (
    ConfirmRestoreOperator,
    InitiateRestoreOperator,
    RestoreRecoveryPointsOperator,
    RetrieveRecoveryPointsOperator,
)
from securedr.sensors.restore import RestoredResourcesSensor

# The form's checks are a convenience; InitiateRestoreOperator re-validates everything against
# the plan (with the same constants) before any AWS call.
with DAG(
    dag_id="dr_restore",
    description="Manual DR run: restore signed, verified recovery points (two-person approval)",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    # FabAuthManager: only the DR roles may trigger (initiators) or answer (approvers) this DAG.
    # Which user may do either for a given run is then the plan's call (check_initiator,
    # approve_restore's assignment, check_approval). SimpleAuthManager ignores this mapping.
    access_control={
        "DR Initiator": {"DAGs": {"can_read", "can_edit"}, "DAG Runs": {"can_read", "can_create"}},
        "DR Approver": {"DAGs": {"can_read", "can_edit"}, "DAG Runs": {"can_read"}},
    },
    default_args={
        "retry_delay": timedelta(seconds=30),
        "on_failure_callback": SnsNotifier(
            subject="SecureDR restore FAILED at {{ ti.task_id }}",
            message=(
                "dr_restore run {{ run_id }} (requested by {{ dag_run.triggering_user_name }}) "
                "failed at task {{ ti.task_id }}. Nothing further will be restored by this run. "
                "See the task log and the audit trail."
            ),
        ),
    },
    params={
        "recovery_point": Param(
            LATEST,
            type="string",
            pattern=RECOVERY_POINT_PATTERN,
            title="Recovery point",
            description=(
                "'latest' (newest signed manifest), a manifest key, a nightly run id "
                "(scheduled__...), or a DR copy id (snap-... / securedr-...)."
            ),
        ),
        "resources": Param(
            ["all"],
            type="array",
            items={"type": "string", "pattern": rf"^(all|{RESOURCE_ID_PATTERN[1:-1]})$"},
            minItems=1,
            uniqueItems=True,
            title="Resources",
            description="'all', or the source ids to restore (vol-..., DB ids), one a line.",
        ),
        "target_region": Param(
            None,
            type=["null", "string"],
            title="Target Region",
            description="Leave empty for the plan's DR Region (the only Region restores go to).",
        ),
        "availability_zone": Param(
            None,
            type=["null", "string"],
            title="Availability Zone",
            description="Leave empty for the plan's restore.availability_zone.",
        ),
        "reason": Param(
            type="string",
            minLength=REASON_MIN_LENGTH,
            maxLength=REASON_MAX_LENGTH,
            title="Reason",
            description="Why this restore is needed; the approvers and the audit trail see it.",
        ),
        "ticket": Param(
            None,
            type=["null", "string"],
            pattern=TICKET_PATTERN,
            title="Ticket",
            description="Incident or change ticket (optional), e.g. INC-1234.",
        ),
        "source": Param(
            None,
            type=["null", "string"],
            enum=[None, *SOURCES],
            title="Restore from",
            description=(
                "'vault': the vault copies in the vault account, under the vault recovery role "
                "(when the workload account is lost); 'workload': the workload account's DR "
                "copies. Leave empty for the vault when the plan has one, else the workload."
            ),
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Check access and the recovery points, restore nothing.",
        ),
        # Checked (and spent) by check_initiator; never logged, returned or audited. A code
        # works once and expires within about a minute, so the copy in the run's conf is dead.
        "mfa_code": Param(
            type="string",
            pattern=MFA_CODE_PATTERN,
            title="Your MFA code",
            description=(
                "The current 6-digit code from the authenticator app you enrolled for SecureDR "
                "(`securedr mfa enroll`). Enter it last, just before triggering."
            ),
        ),
    },
    tags=["securedr", "dr", "restore"],
    doc_md=__doc__,
) as dag:
    initiate = InitiateRestoreOperator(task_id="initiate_restore")
    check_initiator = CheckInitiatorOperator(task_id="check_initiator", initiation=initiate.output)
    approve = RestoreApprovalOperator(task_id="approve_restore", request=initiate.output)
    check_approval = CheckApprovalOperator(task_id="check_approval", decision=approve.output)
    retrieve = RetrieveRecoveryPointsOperator(
        task_id="retrieve_recovery_points", initiation=initiate.output
    )
    restore_volumes = RestoreRecoveryPointsOperator(
        task_id="restore_volumes",
        kind="ebs",
        initiation=initiate.output,
        retrieval=retrieve.output,
    )
    restore_databases = RestoreRecoveryPointsOperator(
        task_id="restore_databases",
        kind="rds",
        initiation=initiate.output,
        retrieval=retrieve.output,
    )
    restore_files = RestoreFileSetsOperator(
        task_id="restore_file_sets",
        initiation=initiate.output,
        retrieval=retrieve.output,
    )
    wait_restored = RestoredResourcesSensor(
        task_id="wait_for_restored_resources",
        restored=[restore_volumes.output, restore_databases.output],
    )
    confirm = ConfirmRestoreOperator(
        task_id="confirm_restore",
        initiation=initiate.output,
        approval=check_approval.output,
        retrieval=retrieve.output,
        restored=[restore_volumes.output, restore_databases.output],
        file_sets=restore_files.output,
    )

    chain(
        initiate,
        check_initiator,
        approve,
        check_approval,
        retrieve,
        [restore_volumes, restore_databases],
        wait_restored,
        confirm,
    )
    chain(retrieve, restore_files, confirm)
