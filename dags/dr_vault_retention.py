"""dr_vault_retention: expire the DR vault's copies, as the vault's own retention identity.

read the signed manifests from the vault evidence bucket -> keep every copy still under its
compliance lock (DescribeLockedSnapshots and the signed expiry), the newest verified copy of
each source and at least retention.min_copies -> delete the rest older than retention.keep_days
-> report (the task's XCom and log: every decision with its reason).

Runs under the Airflow connection ``aws_vault_retention``, whose principal assumes the vault
account's ``securedr-vault-retention`` role; never under the workload's connection, which holds
no right to delete anything in the vault. A plan without a vault section skips the run. Daily
at 05:00 UTC; trigger it by hand at any time (``dry_run`` deletes nothing).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Param

from securedr.operators.vault_retention import (
    VAULT_RETENTION_CONN_ID,
    ApplyVaultRetentionOperator,
)
from securedr.schedules import next_cron

with DAG(
    dag_id="dr_vault_retention",
    description="Expire DR vault copies whose lock and retention have passed",
    schedule=next_cron("0 5 * * *"),  # never a run for a time already past
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    params={
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Log what vault retention would delete, and delete nothing.",
        ),
    },
    tags=["securedr", "dr", "vault", "retention"],
    doc_md=__doc__,
) as dag:
    ApplyVaultRetentionOperator(
        task_id="apply_vault_retention",
        aws_conn_id=VAULT_RETENTION_CONN_ID,
        dry_run="{{ params.dry_run }}",
    )
