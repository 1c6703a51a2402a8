"""Run single SecureDR operators against the sandbox AWS, outside a DAG run."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

ACCOUNT = "123456789012"


def task_context(
    run_id: str = "manual__2026-11-26T02:00:00+00:00", dag_id: str = "dr_nightly_backup"
):
    """The parts of an Airflow task context SecureDR operators read."""
    return {
        "run_id": run_id,
        "dag": SimpleNamespace(dag_id=dag_id),
        "dag_run": SimpleNamespace(run_id=run_id, start_date=datetime.now(UTC)),
    }


def ec2_backend(region: str) -> Any:
    """moto's in-process EC2 model (the sandbox server runs in the test process)."""
    from moto.ec2.models import ec2_backends

    return ec2_backends[ACCOUNT][region]


def rds_backend(region: str) -> Any:
    from moto.rds.models import rds_backends

    return rds_backends[ACCOUNT][region]


def sign_manifest(
    run_id: str,
    points: list[dict[str, Any]],
    *,
    days_ago: float = 0,
    plan_path: str | None = None,
) -> str:
    """Sign and store the manifest of an earlier night listing ``points``; returns its key.

    Each point: ``kind``, ``source_id``, ``snapshot_id`` (the source recovery point) and
    optionally ``dr_snapshot_id``, ``source_region`` (us-east-1), ``dr_region`` (us-west-2),
    ``verified`` (True).
    """
    from datetime import timedelta

    from securedr.operators.manifest import SignRunManifestOperator

    moment = datetime.now(UTC) - timedelta(days=days_ago)
    ctx = task_context(run_id=run_id)
    ctx["dag_run"].start_date = moment
    verdicts = []
    for p in points:
        verified = p.get("verified", True)
        point = {
            "kind": p["kind"],
            "source_id": p["source_id"],
            "source_region": p.get("source_region", "us-east-1"),
            "snapshot_id": p["snapshot_id"],
            "size_gib": 1,
            "source_encrypted": True,
            "run_id": run_id,
            "dr_region": p.get("dr_region", "us-west-2") if p.get("dr_snapshot_id") else None,
            "dr_snapshot_id": p.get("dr_snapshot_id"),
            "dr_created_at": moment.isoformat(),
        }
        verdicts.append(
            {
                "point": point,
                "passed": verified,
                "problems": [] if verified else ["failed verification"],
                "incidents": [],
            }
        )
    operator = SignRunManifestOperator(
        task_id="manifest", verifications=verdicts, plan_path=plan_path
    )
    return str(operator.execute(ctx)["key"])
