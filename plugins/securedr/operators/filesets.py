"""File sets in the nightly backup and in a DR restore.

:class:`BackupFileSetsOperator` encrypts every file set of the plan into the evidence bucket
(one task for all sets, so the number of task instances does not grow with the number of files
or sets); :class:`RestoreFileSetsOperator` decrypts the file sets of a retrieved, signed manifest
into the plan's restore directory under the restore role, auditing every step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from securedr.aws import filesets as adapter
from securedr.core import envelope
from securedr.core.filesets import FileSetError, FileSetResult, failed_file_sets
from securedr.core.manifest import run_token
from securedr.core.plan import plan_dir
from securedr.core.restore_request import RestoreRequest
from securedr.operators.audit import RestoreStepOperator
from securedr.operators.base import SecureDrOperator, run_identity

__all__ = ["BackupFileSetsOperator", "RestoreFileSetsOperator"]


class BackupFileSetsOperator(SecureDrOperator):
    """Back up every file set of the plan as client-side encrypted envelopes.

    Guarantees: each file gets its own KMS data key under the DR Region's plan key, also
    wrapped to the plan's offline recovery public key, so it can be restored with KMS or with
    the offline key alone; it is streamed (memory flat in the file size) into an object written
    once, SSE-KMS and under Object Lock, at a key fixed by run and path, so a retry stores no
    second copy and records what an earlier try stored after decrypting it. Returns one
    manifest ``file_sets`` entry per set (path, size, plaintext SHA-256, file id, object key and
    version per file). A set that fails is reported by name with its problems once every other
    set is done; this task does not fail for it (the run report does), so the signed manifest
    still records everything that was backed up.
    """

    ui_color = "#dcfce7"

    def execute(self, context: Any) -> list[dict[str, Any]]:
        plan = self.plan
        if plan.file_sets is None:
            self.log.info("The plan has no file sets.")
            return []
        _, run_id = run_identity(context)
        base_dir = plan_dir(self.plan_path)
        public_key = plan.recovery_public_key(base_dir)
        dr_key_arn = self.key_arn(plan.regions.dr)
        self.log.info(
            "Backing up %d file set(s) under %s, recovery key id %s.",
            len(plan.file_sets.sets),
            dr_key_arn,
            envelope.recovery_key_id(public_key),
        )
        results: list[dict[str, Any]] = []
        for file_set in plan.file_sets.sets:
            try:
                result = adapter.backup_file_set(
                    self.clients,
                    file_set,
                    plan,
                    run_id=run_id,
                    dr_key_arn=dr_key_arn,
                    recovery_public_key=public_key,
                    plan_dir=base_dir,
                    log=self.log,
                )
            except Exception as exc:  # the source could not even be listed
                self.log.error("File set %s could not be read: %s", file_set.name, exc)
                result = FileSetResult.for_set(
                    file_set, kms_key_arn=dr_key_arn, recovery_public_key=public_key
                )
                result.problems.append(f"cannot read the source: {str(exc)[:500]}")
            results.append(result.to_dict())
        for failure in failed_file_sets(results):
            self.log.error("File set FAILED - %s", failure)
        return results


def _request(initiation: Any) -> RestoreRequest:
    return RestoreRequest.from_dict(dict(initiation or {})["request"])


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class RestoreFileSetsOperator(RestoreStepOperator):
    """Restore the retrieved manifest's file sets into ``restore.file_set_directory``.

    Files go to ``<file_set_directory>/<run token>/<set>/<path>``. Guarantees: every AWS call
    runs under the restore role; each file is read at the exact object version the signed
    manifest names, a header whose file id or KMS key is not the manifest's is refused before
    KMS is asked for anything, and the plaintext appears under its name only after every chunk
    authenticated and the SHA-256 matched the manifest (no partial or unverified plaintext is
    ever left behind). A refused file is audited ``refused`` and the others still restore; the
    task then fails naming every refused file. A retry keeps files an earlier try restored
    (after re-hashing them). A dry run writes nothing and audits ``skipped``. Returns one
    result per set.
    """

    template_fields: Sequence[str] = ("initiation", "retrieval", "plan_path")

    def __init__(self, *, initiation: Any, retrieval: Any, **kwargs: Any) -> None:
        kwargs.setdefault("retries", 2)
        super().__init__(**kwargs)
        self.initiation = initiation
        self.retrieval = retrieval

    def execute(self, context: Any) -> list[dict[str, Any]]:
        run_id = self.bind_run(context)
        plan = self.plan
        request = _request(self.initiation)
        file_sets = list(dict(self.retrieval or {}).get("file_sets") or [])
        if not file_sets:
            self.log.info("No file sets to restore.")
            return []
        if request.dry_run:
            for file_set in file_sets:
                self.audit(
                    context,
                    action="restore.file_set",
                    resource=str(file_set["name"]),
                    outcome="skipped",
                    details={"dry_run": True, "files": len(file_set.get("files") or [])},
                )
            return [
                {"name": s["name"], "files": 0, "bytes": 0, "directory": None, "problems": []}
                for s in file_sets
            ]
        root = plan.restore.file_set_path(plan_dir(self.plan_path))
        if root is None:
            self.refuse(
                context,
                action="restore.file_set",
                resource=", ".join(str(s["name"]) for s in file_sets),
                reason="the plan sets no restore.file_set_directory to restore file sets into; "
                "set it and run the restore again",
            )
        dr = plan.regions.dr
        dr_key_arn = self.key_arn(dr)
        s3, kms = self.clients.s3(dr), self.clients.kms(dr)
        results = []
        refused: list[str] = []
        for file_set in file_sets:
            name = str(file_set["name"])
            target = root / run_token(run_id) / name
            restored, size, problems = 0, 0, []
            for entry in file_set.get("files") or []:
                path = str(entry.get("path"))
                existing = target / path
                try:
                    if existing.is_file() and _sha256_of(existing) == entry.get("sha256"):
                        restored, size = restored + 1, size + int(entry["size"])
                        continue  # restored and verified by an earlier try
                    destination, result = adapter.restore_file(
                        s3,
                        kms,
                        entry,
                        target,
                        bucket=plan.evidence_bucket.name,
                        kms_key_arn=dr_key_arn,
                    )
                except (FileSetError, envelope.EnvelopeError) as exc:
                    message = f"{name}/{path}: {exc}"
                    problems.append(message)
                    refused.append(message)
                    self.log.error("Refused %s", message)
                    self.audit(
                        context,
                        action="restore.file",
                        resource=str(entry.get("object_key")),
                        outcome="refused",
                        details={"file_set": name, "path": path, "reason": str(exc)[:500]},
                    )
                    continue
                except Exception as exc:
                    self.audit(
                        context,
                        action="restore.file",
                        resource=str(entry.get("object_key")),
                        outcome="failed",
                        details={"file_set": name, "path": path, "error": str(exc)[:500]},
                    )
                    raise
                restored, size = restored + 1, size + result.plaintext_size
                self.audit(
                    context,
                    action="restore.file",
                    resource=str(entry.get("object_key")),
                    outcome="succeeded",
                    details={
                        "file_set": name,
                        "path": path,
                        "destination": str(destination),
                        "sha256": result.plaintext_sha256,
                        "size": result.plaintext_size,
                    },
                )
            self.audit(
                context,
                action="restore.file_set",
                resource=name,
                outcome="failed" if problems else "succeeded",
                details={
                    "directory": str(target),
                    "files": restored,
                    "bytes": size,
                    "refused": len(problems),
                },
            )
            self.log.info(
                "File set %s: %d files (%d bytes) restored and verified into %s; %d refused.",
                name,
                restored,
                size,
                target,
                len(problems),
            )
            results.append(
                {
                    "name": name,
                    "files": restored,
                    "bytes": size,
                    "directory": str(target),
                    "problems": problems,
                }
            )
        if refused:
            raise AirflowFailException(
                "File set restore refused "
                + str(len(refused))
                + " file(s), nothing of them was written: "
                + "; ".join(refused[:10])
            )
        return results
