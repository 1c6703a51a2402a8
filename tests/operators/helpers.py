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
