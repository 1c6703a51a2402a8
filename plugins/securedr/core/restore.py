"""Restore decisions as pure functions: which recovery points, whether their DR copies can be
trusted, what to create, whether what was created is right, and how long it all took.

Everything here takes what AWS or the evidence bucket reported as plain dicts and returns
verdicts; the operators do the I/O. A restore only ever starts from a DR copy that

* is listed in a manifest whose signature verifies against the plan's trusted keys and whose
  object key matches its content (a signed manifest copied under a newer name is refused);
* is marked ``verified`` in that manifest;
* still exists, is completed, is encrypted under exactly the plan's DR key, carries SecureDR's
  lineage tags for this plan and the manifest's run, and is shared with nobody.

Pure module: no Airflow, no boto3.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from securedr.core.manifest import ManifestError, check_manifest, manifest_key, run_token
from securedr.core.model import (
    TAG_KIND,
    TAG_MANAGED,
    TAG_PLAN,
    TAG_ROLE,
    TAG_RUN_ID,
    TAG_SOURCE_ID,
    TAG_SOURCE_REGION,
    TAG_SOURCE_SNAPSHOT,
    RecoveryPoint,
    tags_to_dict,
)
from securedr.core.restore_request import RestoreRequest
from securedr.core.verify import dr_copy_problems

#: ``securedr:role`` of what a restore creates.
ROLE_RESTORED = "restored"
#: The nightly run whose manifest listed the recovery point a resource was restored from.
TAG_RECOVERY_RUN_ID = "securedr:recovery-run-id"
#: The DR copy (snapshot id / DB snapshot identifier) a resource was restored from.
TAG_RESTORED_FROM = "securedr:restored-from"

_VOLUME_READY = {"available", "in-use"}
_VOLUME_FAILED = {"error", "deleting", "deleted"}
_DB_FAILED = {
    "failed",
    "incompatible-restore",
    "incompatible-parameters",
    "incompatible-network",
    "incompatible-option-group",
    "inaccessible-encryption-credentials",
    "storage-full",
    "deleting",
    "deleted",
    "stopped",
    "stopping",
}


class RestoreRefused(Exception):
    """A recovery point cannot be trusted or found; the message says which and why."""


# --------------------------------------------------------------------------- manifests


@dataclass(frozen=True)
class ManifestChoice:
    """A verified manifest and the points chosen from it (plain dicts as in the manifest)."""

    key: str
    payload: dict[str, Any]
    points: list[dict[str, Any]]

    def summary(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "run_id": self.payload["run_id"],
            "created_at": self.payload["created_at"],
        }


def manifest_keys_to_read(keys: Sequence[str], request: RestoreRequest, plan: str) -> list[str]:
    """The manifest objects to read for ``request``, most promising first.

    ``keys`` are full object keys (any evidence prefix). Lexical order of manifest names is time
    order (see :func:`securedr.core.manifest.manifest_key`), so "latest" is the last key. Raises
    :class:`RestoreRefused` when no manifest can match.
    """
    mine = sorted(k for k in keys if f"manifests/{plan}/" in k and k.endswith(".json"))
    if not mine:
        raise RestoreRefused(
            f"the evidence bucket holds no manifest for plan {plan}; a restore needs a nightly "
            "run that completed and signed its manifest"
        )
    if request.selector == "latest":
        return [mine[-1]]
    if request.selector == "manifest":
        found = [k for k in mine if k.endswith(request.recovery_point)]
        if not found:
            raise RestoreRefused(f"no manifest {request.recovery_point} in the evidence bucket")
        return found
    if request.selector == "run":
        token = f"-{run_token(request.recovery_point)}.json"
        found = [k for k in mine if k.endswith(token)]
        if not found:
            raise RestoreRefused(
                f"no manifest for run {request.recovery_point} in the evidence bucket (did that "
                "run finish and sign its manifest?)"
            )
        return found
    # A snapshot id: search newest first.
    return list(reversed(mine))


def hidden_newer_manifests(visible: Sequence[str], hidden: Sequence[str], plan: str) -> list[str]:
    """Manifests of ``plan`` hidden by a delete marker that are newer than every visible one.

    Object Lock keeps a manifest's version but not its place in the listing: a plain
    DeleteObject adds a delete marker and "latest" would silently become an older point
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/DeleteMarker.html). Names sort in time
    order (:func:`securedr.core.manifest.manifest_key`); the result is sorted, newest last.
    """

    def mine(keys: Sequence[str]) -> list[str]:
        return sorted(k for k in keys if f"manifests/{plan}/" in k and k.endswith(".json"))

    shown = mine(visible)
    newest = shown[-1] if shown else ""
    return [k for k in mine(hidden) if k > newest]


def check_manifest_binding(key: str, payload: Mapping[str, Any], plan: str, dr_region: str) -> None:
    """Refuse a verified manifest that is stored under another name than its content implies.

    Manifests are signed, but their object key is not: without this check a valid, older
    manifest copied to a newer key would be taken for "latest" (a replay to an old state).
    """
    try:
        check_manifest(payload, plan=plan)
    except ManifestError as exc:
        raise RestoreRefused(f"manifest {key}: {exc}") from None
    expected = manifest_key(plan, str(payload.get("run_id")), str(payload.get("created_at")))
    if not key.endswith(expected):
        raise RestoreRefused(
            f"manifest {key} is signed for run {payload.get('run_id')} and belongs at "
            f"{expected}; it was copied or renamed. Investigate who wrote to the evidence bucket"
        )
    if payload.get("dr_region") != dr_region:
        raise RestoreRefused(
            f"manifest {key} lists DR copies in {payload.get('dr_region')}, not in {dr_region}"
        )


def choose_points(
    key: str, payload: Mapping[str, Any], request: RestoreRequest
) -> list[dict[str, Any]] | None:
    """The manifest's points ``request`` asks for; None if a snapshot id is not in this manifest.

    Raises :class:`RestoreRefused` if a requested resource is missing from the manifest or a
    chosen point was not verified by the nightly run.
    """
    points = [dict(p) for p in payload.get("recovery_points", [])]
    if request.selector == "snapshot":
        points = [p for p in points if p.get("dr_snapshot_id") == request.recovery_point]
        if not points:
            return None
        if request.resources and points[0].get("source_id") not in request.resources:
            raise RestoreRefused(
                f"DR copy {request.recovery_point} is a copy of {points[0].get('source_id')}, "
                f"which is not among the requested resources {', '.join(request.resources)}"
            )
    elif request.resources:
        by_source = {p.get("source_id"): p for p in points}
        missing = [r for r in request.resources if r not in by_source]
        if missing:
            raise RestoreRefused(
                f"manifest {key} has no recovery point for {', '.join(missing)}; it holds "
                f"{', '.join(sorted(str(s) for s in by_source)) or 'nothing'}. Pick another "
                "recovery_point or fix the resources list"
            )
        points = [by_source[r] for r in request.resources]
    if not points:
        raise RestoreRefused(f"manifest {key} lists no recovery points")
    unverified = [p for p in points if p.get("verified") is not True]
    if unverified:
        raise RestoreRefused(
            "recovery point(s) not verified by their nightly run: "
            + "; ".join(
                f"{p.get('kind')}:{p.get('source_id')} "
                f"({', '.join(p.get('problems') or []) or 'no verdict'})"
                for p in unverified
            )
            + ". Choose an earlier recovery_point or leave these resources out"
        )
    return points


def point_from_manifest(point: Mapping[str, Any], run_id: str) -> RecoveryPoint:
    """The manifest's point as a :class:`RecoveryPoint` (for the shared DR-copy checks)."""
    return RecoveryPoint(
        kind=point["kind"],
        source_id=point["source_id"],
        source_region=point["source_region"],
        snapshot_id=point["source_snapshot_id"],
        size_gib=int(point.get("size_gib") or 0),
        source_encrypted=bool(point.get("source_encrypted")),
        run_id=run_id,
        engine=point.get("engine"),
        created_at=point.get("created_at"),
        dr_region=point.get("dr_region"),
        dr_snapshot_id=point.get("dr_snapshot_id"),
        dr_snapshot_arn=point.get("dr_snapshot_arn"),
        dr_kms_key_arn=point.get("dr_kms_key_arn"),
        dr_created_at=point.get("dr_created_at"),
        volume_type=point.get("volume_type"),
        iops=point.get("iops"),
        throughput=point.get("throughput"),
    )


def restore_source_problems(
    point: Mapping[str, Any],
    snapshot: Mapping[str, Any] | None,
    *,
    shared_with: Sequence[str],
    expected_key_arn: str,
    plan: str,
    manifest_run_id: str,
) -> list[str]:
    """Everything that makes a DR copy unfit to restore from; ``[]`` means fit.

    On top of the nightly verification (:func:`securedr.core.verify.dr_copy_problems`): the copy
    is still SecureDR's (``securedr:managed=true``, this plan, the manifest's run), is the one
    the manifest names, is encrypted under the key the manifest recorded, and is shared with
    nobody (``shared_with`` lists accounts/groups, empty when private).
    """
    rp = point_from_manifest(point, manifest_run_id)
    problems = dr_copy_problems(
        rp, dict(snapshot) if snapshot else None, expected_key_arn=expected_key_arn, plan=plan
    )
    if snapshot is None:
        return problems
    tags = tags_to_dict(snapshot.get("Tags") if rp.kind == "ebs" else snapshot.get("TagList"))
    if tags.get(TAG_MANAGED, "true") != "true":
        problems.append(f"{TAG_MANAGED} is {tags[TAG_MANAGED]!r}: SecureDR did not create it")
    if TAG_RUN_ID in tags and tags[TAG_RUN_ID] != manifest_run_id:
        problems.append(
            f"tagged as made by run {tags[TAG_RUN_ID]}, but the manifest is run {manifest_run_id}"
        )
    if (
        rp.kind == "ebs"
        and TAG_SOURCE_SNAPSHOT in tags
        and tags[TAG_SOURCE_SNAPSHOT] != rp.snapshot_id
    ):
        problems.append(
            f"tagged as a copy of {tags[TAG_SOURCE_SNAPSHOT]}, the manifest says {rp.snapshot_id}"
        )
    if point.get("dr_kms_key_arn") and point["dr_kms_key_arn"] != expected_key_arn:
        problems.append(
            f"the manifest records key {point['dr_kms_key_arn']}, not the plan's DR key "
            f"{expected_key_arn}"
        )
    if rp.kind == "ebs":
        size = snapshot.get("VolumeSize")
        if size is not None and rp.size_gib and int(size) != rp.size_gib:
            problems.append(f"snapshot is {size} GiB, the manifest says {rp.size_gib} GiB")
    else:
        engine = snapshot.get("Engine")
        if rp.engine and engine and engine != rp.engine:
            problems.append(f"snapshot engine is {engine}, the manifest says {rp.engine}")
    if shared_with:
        problems.append(
            f"shared with {', '.join(shared_with)}; a copy others can read is not restored "
            "(the nightly run makes it private again and reports an incident)"
        )
    return problems


# --------------------------------------------------------------------------- what to create


def restore_tags(
    *, plan: str, run_id: str, point: Mapping[str, Any], manifest_run_id: str
) -> dict[str, str]:
    """Tags on everything a restore creates: lineage back to the source, and the restore run.

    Also how a retried task finds what it already created (``securedr:run-id`` +
    ``securedr:restored-from``).
    """
    return {
        TAG_MANAGED: "true",
        TAG_PLAN: plan,
        TAG_RUN_ID: run_id,
        TAG_ROLE: ROLE_RESTORED,
        TAG_KIND: str(point["kind"]),
        TAG_SOURCE_ID: str(point["source_id"]),
        TAG_SOURCE_REGION: str(point["source_region"]),
        TAG_RESTORED_FROM: str(point["dr_snapshot_id"]),
        TAG_RECOVERY_RUN_ID: manifest_run_id,
        "Name": f"restored-{point['source_id']}",
    }


_RDS_ID_BAD = re.compile(r"[^a-z0-9-]+")
#: Identifier prefixes of DB instances restored by dr_restore and by recovery drills.
RESTORED_DB_PREFIX = "restored"
DRILL_DB_PREFIX = "drill"


def restored_db_identifier(source_id: str, run_id: str, *, prefix: str = RESTORED_DB_PREFIX) -> str:
    """A deterministic DB instance identifier for one source database in one restore run.

    Valid for RDS (letter first, letters/digits/hyphens, no ``--``, no trailing hyphen, at most
    63 characters); deterministic so a retried task asks for the same instance and finds it.
    ``prefix`` is ``restored`` for dr_restore and ``drill`` for recovery drills, which keeps the
    restore role's right to delete drill databases away from real restores (include/iam).
    """
    if prefix not in (RESTORED_DB_PREFIX, DRILL_DB_PREFIX):
        raise ValueError(f"unknown DB identifier prefix {prefix!r}")
    digest = hashlib.sha256(f"{run_id}\0{source_id}".encode()).hexdigest()[:10]
    base = re.sub(r"-{2,}", "-", _RDS_ID_BAD.sub("-", source_id.lower())).strip("-") or "db"
    base = base[: 63 - len(prefix) - 2 - len(digest)].rstrip("-")
    return f"{prefix}-{base}-{digest}"


def volume_client_token(run_id: str, dr_snapshot_id: str) -> str:
    """The EC2 idempotency token for restoring ``dr_snapshot_id`` in ``run_id`` (<= 64 chars)."""
    return "securedr-" + hashlib.sha256(f"{run_id}\0{dr_snapshot_id}".encode()).hexdigest()[:48]


# --------------------------------------------------------------------------- confirmation


#: The type a volume is restored as when its recovery point predates recorded volume types.
DEFAULT_VOLUME_TYPE = "gp3"
#: CreateVolume accepts Iops only for these types and Throughput only for gp3.
#: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateVolume.html
_IOPS_TYPES = {"gp3", "io1", "io2"}
_THROUGHPUT_TYPES = {"gp3"}


def volume_performance(point: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """CreateVolume's ``VolumeType`` / ``Iops`` / ``Throughput`` for restoring ``point``.

    The source volume's type, IOPS and throughput as recorded at backup time, each passed only
    where CreateVolume accepts it for that type. A point recorded before these were kept has no
    type: it restores as gp3 (AWS's own defaults for IOPS and throughput), and the second value
    says so for the log; it is ``None`` when the recorded performance is used.
    """
    volume_type = point.get("volume_type")
    if not volume_type:
        return {"VolumeType": DEFAULT_VOLUME_TYPE}, (
            f"the recovery point does not record its source volume's type (written before "
            f"SecureDR kept it): restoring as {DEFAULT_VOLUME_TYPE} with AWS's default IOPS and "
            "throughput; check the source's performance and modify the volume if it needs more"
        )
    kwargs: dict[str, Any] = {"VolumeType": str(volume_type)}
    if volume_type in _IOPS_TYPES and point.get("iops"):
        kwargs["Iops"] = int(point["iops"])
    if volume_type in _THROUGHPUT_TYPES and point.get("throughput"):
        kwargs["Throughput"] = int(point["throughput"])
    return kwargs, None


def volume_state(volume: Mapping[str, Any] | None) -> tuple[str, str]:
    """``("completed"|"pending"|"failed", detail)`` for a restored volume."""
    if volume is None:
        return "failed", "not found: it was deleted, or it is in another account/Region"
    state = str(volume.get("State", ""))
    if state in _VOLUME_READY:
        return "completed", state
    if state in _VOLUME_FAILED:
        return "failed", f"state {state}"
    return "pending", f"state {state}"


def db_state(db: Mapping[str, Any] | None) -> tuple[str, str]:
    """``("completed"|"pending"|"failed", detail)`` for a restored DB instance."""
    if db is None:
        return "failed", "not found: it was deleted, or it is in another account/Region"
    state = str(db.get("DBInstanceStatus", ""))
    if state == "available":
        return "completed", state
    if state in _DB_FAILED:
        return "failed", f"status {state}"
    return "pending", f"status {state}"


#: How long after its creation was requested a restored resource that describes do not show is
#: taken as "not visible yet" (pending) rather than "gone" (failed). EC2 and RDS describes are
#: eventually consistent; AWS advises retrying with backoff up to a few minutes.
#: https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html
NOT_FOUND_GRACE_SECONDS = 300.0


def restored_state(
    kind: str,
    found: Mapping[str, Any] | None,
    *,
    requested_at: str | None = None,
    now: datetime | None = None,
    grace_seconds: float = NOT_FOUND_GRACE_SECONDS,
) -> tuple[str, str]:
    """:func:`volume_state` / :func:`db_state`, except that a resource missing from describes
    within ``grace_seconds`` of ``requested_at`` (ISO time its creation was requested) is
    pending, not failed. Without ``requested_at`` a missing resource fails at once."""
    if found is None and requested_at:
        try:
            requested = datetime.fromisoformat(requested_at)
        except ValueError:
            requested = None
        if requested is not None:
            age = ((now or datetime.now(requested.tzinfo)) - requested).total_seconds()
            if age < grace_seconds:
                return "pending", (
                    f"not visible yet {age:.0f}s after it was requested (AWS describes are "
                    f"eventually consistent; failing only after {grace_seconds:.0f}s)"
                )
    return volume_state(found) if kind == "ebs" else db_state(found)


def restored_problems(
    kind: str,
    found: Mapping[str, Any] | None,
    *,
    point: Mapping[str, Any],
    expected_key_arn: str,
    plan: str,
    run_id: str,
) -> list[str]:
    """Everything wrong with a restored resource; ``[]`` means usable and as the point says.

    EBS: available (or already attached), encrypted under exactly the expected key, the
    recovery point's size, restored from the DR copy, tagged for this run. RDS: available,
    storage encrypted under the expected key, the recovery point's engine, at least its
    storage, not publicly accessible, tagged for this run.
    """
    if found is None:
        return ["the restored resource does not exist"]
    problems: list[str] = []
    if kind == "ebs":
        state, detail = volume_state(found)
        encrypted, key = found.get("Encrypted"), found.get("KmsKeyId")
        tags = tags_to_dict(found.get("Tags"))
        size = found.get("Size")
        if point.get("size_gib") and size != point["size_gib"]:
            problems.append(f"size is {size} GiB, the recovery point is {point['size_gib']} GiB")
        wanted, _ = volume_performance(point)
        if point.get("volume_type"):
            for field, expected in wanted.items():
                if found.get(field) != expected:
                    problems.append(
                        f"{field} is {found.get(field)}, the source volume's was {expected}"
                    )
        if found.get("SnapshotId") != point.get("dr_snapshot_id"):
            problems.append(
                f"created from {found.get('SnapshotId')}, not the DR copy "
                f"{point.get('dr_snapshot_id')}"
            )
    else:
        state, detail = db_state(found)
        encrypted, key = found.get("StorageEncrypted"), found.get("KmsKeyId")
        tags = tags_to_dict(found.get("TagList"))
        if point.get("engine") and found.get("Engine") != point["engine"]:
            problems.append(
                f"engine is {found.get('Engine')}, the recovery point is {point['engine']}"
            )
        storage = found.get("AllocatedStorage")
        if point.get("size_gib") and (storage is None or storage < point["size_gib"]):
            problems.append(
                f"storage is {storage} GiB, the recovery point had {point['size_gib']} GiB"
            )
        if found.get("PubliclyAccessible") is not False:
            problems.append(
                f"PubliclyAccessible is {found.get('PubliclyAccessible')!r}; a restored database "
                "must not be reachable from the internet"
            )
    if state != "completed":
        problems.append(f"not available ({detail})")
    if not encrypted:
        problems.append("NOT encrypted")
    elif key != expected_key_arn:
        problems.append(f"encrypted under {key}, not the expected key {expected_key_arn}")
    if tags.get(TAG_PLAN) != plan or tags.get(TAG_RUN_ID) != run_id:
        problems.append("not tagged as created by this restore run")
    return problems


def rto_seconds(started_at: datetime, confirmed_at: datetime) -> float:
    """Recovery time: from the moment the run started to the moment the restore was confirmed."""
    return max(0.0, (confirmed_at - started_at).total_seconds())


def rpo_seconds(point_created_at: str | None, run_started_at: datetime) -> float | None:
    """Recovery point age when the run started (data written after it is lost); None if unknown."""
    if not point_created_at:
        return None
    created = datetime.fromisoformat(point_created_at)
    if created.tzinfo is None:
        return None
    return max(0.0, (run_started_at - created).total_seconds())


# --------------------------------------------------------------------------- the report


def restore_report(
    *,
    plan: str,
    run_id: str,
    request: Mapping[str, Any],
    initiator: str,
    approver: str | None,
    manifest: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    started_at: datetime,
    confirmed_at: datetime,
    rto_target_minutes: float,
    rpo_target_hours: float,
    file_sets: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The restore report: who asked and approved, what was restored from which point, every
    check's verdict, the file sets restored (each file verified against the signed manifest),
    RTO and RPO against the plan's targets, and the overall outcome."""
    rto = rto_seconds(started_at, confirmed_at)
    rpos = [r["rpo_seconds"] for r in results if r.get("rpo_seconds") is not None]
    worst_rpo = max(rpos) if rpos else None
    failed = [r for r in results if r.get("problems")]
    dry_run = bool(request.get("dry_run"))
    return {
        "kind": "securedr-restore-report",
        "version": 1,
        "plan": plan,
        "run_id": run_id,
        "dry_run": dry_run,
        "source": request.get("source") or "workload",
        "initiator": initiator,
        "approver": approver,
        "reason": request.get("reason"),
        "ticket": request.get("ticket"),
        "target_region": request.get("target_region"),
        "availability_zone": request.get("availability_zone"),
        "manifest": dict(manifest),
        "started_at": started_at.isoformat(),
        "confirmed_at": confirmed_at.isoformat(),
        "rto_seconds": None if dry_run else rto,
        "rto_target_seconds": rto_target_minutes * 60,
        "rto_met": None if dry_run else rto <= rto_target_minutes * 60,
        "rpo_seconds": worst_rpo,
        "rpo_target_seconds": rpo_target_hours * 3600,
        "rpo_met": None if worst_rpo is None else worst_rpo <= rpo_target_hours * 3600,
        "resources": [dict(r) for r in results],
        "file_sets": [dict(f) for f in file_sets],
        "failed": [f"{r['kind']}:{r['source_id']}" for r in failed]
        + [f"file-set:{f['name']}" for f in file_sets if f.get("problems")],
        "succeeded": not failed and not any(f.get("problems") for f in file_sets),
    }


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def render_restore_text(report: Mapping[str, Any]) -> str:
    """The report as text for logs, e-mail and the evidence bucket."""
    outcome = "DRY RUN" if report["dry_run"] else ("SUCCEEDED" if report["succeeded"] else "FAILED")
    lines = [
        f"SecureDR restore {outcome} - plan {report['plan']}, run {report['run_id']}",
        f"Requested by {report['initiator']}, approved by {report['approver']}"
        + (f", ticket {report['ticket']}" if report.get("ticket") else ""),
        f"Reason: {report['reason']}",
        f"From {'the VAULT: ' if report.get('source') == 'vault' else ''}"
        f"manifest {report['manifest'].get('key')} (nightly run "
        f"{report['manifest'].get('run_id')}) into {report['target_region']} / "
        f"{report['availability_zone']}",
        f"RTO {_duration(report['rto_seconds'])} (target {_duration(report['rto_target_seconds'])}"
        f"{'' if report['rto_met'] is None else ', met' if report['rto_met'] else ', MISSED'}); "
        f"RPO {_duration(report['rpo_seconds'])} (target {_duration(report['rpo_target_seconds'])}"
        f"{'' if report['rpo_met'] is None else ', met' if report['rpo_met'] else ', MISSED'})",
        "",
    ]
    for r in report["resources"]:
        status = "would restore" if report["dry_run"] else ("FAILED" if r.get("problems") else "ok")
        lines.append(
            f"  [{status}] {r['kind']} {r['source_region']}/{r['source_id']} <- "
            f"{r['dr_snapshot_id']} -> {r.get('resource_id') or '-'}"
        )
        lines.extend(f"      - {p}" for p in r.get("problems") or [])
    for f in report.get("file_sets") or []:
        status = "would restore" if report["dry_run"] else ("FAILED" if f.get("problems") else "ok")
        lines.append(
            f"  [{status}] file set {f['name']}: {f.get('files', 0)} files, "
            f"{f.get('bytes', 0)} bytes verified -> {f.get('directory') or '-'}"
        )
        lines.extend(f"      - {p}" for p in f.get("problems") or [])
    return "\n".join(lines)
