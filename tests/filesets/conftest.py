"""Fixtures for file sets: the demo estate (with its file-set sources) and one backup run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from tests.operators.helpers import task_context

RUN_ID = "scheduled__2026-11-26T02:00:00+00:00"


@dataclass
class FileSetBackup:
    """What BackupFileSetsOperator returned for one run, with helpers to read it."""

    run_id: str
    entries: list[dict[str, Any]]

    def entry(self, name: str) -> dict[str, Any]:
        return next(e for e in self.entries if e["name"] == name)

    def file(self, name: str, path: str) -> dict[str, Any]:
        return next(f for f in self.entry(name)["files"] if f["path"] == path)


def run_backup(run_id: str = RUN_ID, **kwargs: Any) -> FileSetBackup:
    from securedr.operators.filesets import BackupFileSetsOperator

    entries = BackupFileSetsOperator(task_id="backup_file_sets", **kwargs).execute(
        task_context(run_id=run_id)
    )
    return FileSetBackup(run_id=run_id, entries=entries)


def envelope_objects(plan) -> list[dict[str, Any]]:
    """Every object version under the plan's file-set prefix in the evidence bucket."""
    s3 = boto3.client("s3", region_name=plan.regions.dr)
    prefix = f"{plan.evidence_bucket.prefix}/file-sets/"
    versions: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_object_versions").paginate(
        Bucket=plan.evidence_bucket.name, Prefix=prefix
    ):
        versions.extend(page.get("Versions", []))
    return versions


@pytest.fixture
def file_set_backup(estate, plan) -> FileSetBackup:
    return run_backup()
