"""dr_nightly_backup: protect every selected resource with a verified, signed DR copy.

pre-flight checks -> discover -> recovery points -> wait -> copy to the DR Region -> wait
-> verify -> (with a vault: copy into the vault account -> verify there) -> signed manifest
-> (with a vault: release the workload's intermediate DR copies) -> re-verify every retained
copy of earlier nights -> retention -> report (always); beside the snapshots, after the
pre-flight checks: encrypted file sets (into the manifest). Without a vault in the plan the
vault steps do nothing.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param, TriggerRule, chain

from securedr.operators.dr_copy import CopyToDrRegionOperator
from securedr.operators.filesets import BackupFileSetsOperator
from securedr.operators.manifest import SignRunManifestOperator
from securedr.operators.preflight import PreflightChecksOperator
from securedr.operators.recovery_points import (
    CreateRecoveryPointsOperator,
    DiscoverProtectedResourcesOperator,
)
from securedr.operators.report import NightlyReportOperator
from securedr.operators.retention import ApplyRetentionOperator
from securedr.operators.vault import (
    CopyToVaultOperator,
    ReleaseDrIntermediatesOperator,
    VerifyVaultCopiesOperator,
)
from securedr.operators.verify import ReverifyRetainedCopiesOperator, VerifyDrCopiesOperator
from securedr.schedules import next_cron
from securedr.sensors.recovery_points import RecoveryPointsSensor

with DAG(
    dag_id="dr_nightly_backup",
    description="Encrypted, verified, signed DR copies of every protected resource",
    schedule=next_cron("0 2 * * *"),  # deploying or unpausing never starts a run for the past
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    params={
        "retention_dry_run": Param(
            False,
            type="boolean",
            title="Retention dry run",
            description="Log what retention would delete, and delete nothing.",
        ),
    },
    tags=["securedr", "dr", "backup"],
    doc_md=__doc__,
) as dag:
    preflight = PreflightChecksOperator(task_id="preflight_security_checks", retries=0)
    discover = DiscoverProtectedResourcesOperator(task_id="discover_protected_resources")
    recovery_points = CreateRecoveryPointsOperator(
        task_id="create_recovery_points", protected_resources=discover.output
    )
    wait_recovery_points = RecoveryPointsSensor(
        task_id="wait_for_recovery_points", points=recovery_points.output, location="source"
    )
    dr_copies = CopyToDrRegionOperator(task_id="copy_to_dr_region", points=recovery_points.output)
    wait_dr_copies = RecoveryPointsSensor(
        task_id="wait_for_dr_copies", points=dr_copies.output, location="dr"
    )
    verify = VerifyDrCopiesOperator(task_id="verify_dr_copies", points=dr_copies.output)
    vault_copies = CopyToVaultOperator(task_id="copy_to_vault", verifications=verify.output)
    # Runs even if the copy step failed: every point it did not finish is then named as not in
    # the vault (and keeps its DR copy), and the manifest of what WAS protected is still signed.
    verify_vault = VerifyVaultCopiesOperator(
        task_id="verify_vault_copies",
        verifications=verify.output,
        vault_copies=vault_copies.output,
        trigger_rule=TriggerRule.ALL_DONE,
    )
    file_sets = BackupFileSetsOperator(task_id="backup_file_sets")
    manifest = SignRunManifestOperator(
        task_id="sign_run_manifest",
        verifications=verify.output,
        file_sets=file_sets.output,
        vault=verify_vault.output,
    )
    # Only once the signed manifest lists the vault copies.
    release = ReleaseDrIntermediatesOperator(
        task_id="release_dr_intermediates",
        verifications=verify.output,
        vault_result=verify_vault.output,
        manifest=manifest.output,
    )
    # Earlier nights' copies, from the signed manifests: one task, batched describes.
    reverify = ReverifyRetainedCopiesOperator(task_id="reverify_retained_copies")
    retention = ApplyRetentionOperator(
        task_id="apply_retention",
        verifications=verify.output,
        dry_run="{{ params.retention_dry_run }}",
    )
    report = NightlyReportOperator(
        task_id="report_run",
        verifications=verify.output,
        manifest=manifest.output,
        retention=retention.output,
        file_sets=file_sets.output,
        retained=reverify.output,
        preflight=preflight.output,
        vault=verify_vault.output,
        trigger_rule=TriggerRule.ALL_DONE,
        retries=0,
    )

    chain(
        preflight,
        discover,
        recovery_points,
        wait_recovery_points,
        dr_copies,
        wait_dr_copies,
        verify,
        vault_copies,
        verify_vault,
        manifest,
        release,
        reverify,
        retention,
        report,
    )
    chain(preflight, file_sets, manifest)
