"""The run manifest: what a nightly run protected, where each DR copy is, and its verdict.

A manifest is a signed document (see :mod:`securedr.core.signing`). Restores only use recovery
points listed in a manifest whose signature verifies against the plan's trusted keys and whose
verdict for that point is ``verified``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from securedr.core.model import Verification

MANIFEST_KIND = "securedr-run-manifest"
MANIFEST_VERSION = 1


class ManifestError(ValueError):
    """A manifest is malformed or does not describe what the caller expected."""


def run_token(run_id: str) -> str:
    """A short, path-safe, stable token for a run id (run ids contain ':' and '+')."""
    return hashlib.sha256(run_id.encode()).hexdigest()[:16]


def manifest_key(plan: str, run_id: str, created_at: str) -> str:
    """Object key parts under the evidence prefix; lexical order is time order."""
    stamp = created_at.replace("-", "").replace(":", "").split(".")[0].split("+")[0]
    return f"manifests/{plan}/{stamp}Z-{run_token(run_id)}.json"


def build_manifest(
    *,
    plan: str,
    run_id: str,
    dag_id: str,
    created_at: str,
    dr_region: str,
    dr_kms_key_arn: str,
    verifications: Iterable[Verification],
    file_sets: Iterable[Mapping[str, Any]] = (),
    vault: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest payload (unsigned). Points are sorted so equal runs give equal bytes.

    ``vault`` (the vault verification's result: ``{"vault": {...}, "points": {label: entry}}``)
    adds the top-level ``vault`` and each verified point's ``vault`` entry (a verified point the
    vault step never reached gets a failed entry); without it the manifest keeps its shape.

    Resources the run could not protect are listed under ``not_protected`` (with the reason),
    not as recovery points. Raises :class:`ManifestError` for a verified point without its DR
    copy's AWS time (``dr_created_at``): retention's forged-clock guard depends on it.
    """
    points = []
    not_protected = []
    for verification in verifications:
        point = verification.recovery_point
        if point.not_protected is not None:
            entry = {
                "kind": point.kind,
                "source_id": point.source_id,
                "source_region": point.source_region,
                "reason": point.not_protected,
            }
            # What the night did make for it (a snapshot, a copy that failed): listed, so
            # retention - which deletes only what signed manifests list - can expire it.
            if point.snapshot_id:
                entry["source_snapshot_id"] = point.snapshot_id
            if point.dr_snapshot_id:
                entry["dr_region"] = point.dr_region
                entry["dr_snapshot_id"] = point.dr_snapshot_id
            not_protected.append(entry)
            continue
        if verification.passed and not point.dr_created_at:
            raise ManifestError(
                f"{point.label}: the DR copy {point.dr_snapshot_id} has no AWS timestamp "
                "(dr_created_at); verification must record StartTime / SnapshotCreateTime"
            )
        points.append(
            {
                "kind": point.kind,
                "source_id": point.source_id,
                "source_region": point.source_region,
                "source_snapshot_id": point.snapshot_id,
                "source_encrypted": point.source_encrypted,
                "engine": point.engine,
                "size_gib": point.size_gib,
                "created_at": point.created_at,
                "dr_region": point.dr_region,
                "dr_snapshot_id": point.dr_snapshot_id,
                "dr_snapshot_arn": point.dr_snapshot_arn,
                "dr_kms_key_arn": point.dr_kms_key_arn,
                "dr_created_at": point.dr_created_at,
                "volume_type": point.volume_type,
                "iops": point.iops,
                "throughput": point.throughput,
                "verified": verification.passed,
                "problems": list(verification.problems),
                "incidents": list(verification.incidents),
                "verified_at": verification.checked_at,
            }
        )
        if vault is not None and verification.passed:
            points[-1]["vault"] = (vault.get("points") or {}).get(point.label) or {
                **_vault_base(vault),
                "kind": point.kind,
                "verified": False,
                "problems": ["the vault step never reached this point"],
            }
    points.sort(key=lambda p: (p["kind"], p["source_region"], p["source_id"]))
    not_protected.sort(key=lambda p: (p["kind"], p["source_region"], p["source_id"]))
    verified = sum(1 for p in points if p["verified"])
    payload: dict[str, Any] = {
        "kind": MANIFEST_KIND,
        "version": MANIFEST_VERSION,
        "plan": plan,
        "run_id": run_id,
        "dag_id": dag_id,
        "created_at": created_at,
        "dr_region": dr_region,
        "dr_kms_key_arn": dr_kms_key_arn,
        "recovery_points": points,
        "file_sets": sorted(file_sets, key=lambda f: str(f.get("name", ""))),
        "summary": {"recovery_points": len(points), "verified": verified},
    }
    if vault is not None:
        payload["vault"] = dict(vault.get("vault") or {})
        payload["summary"]["vault_verified"] = sum(
            1 for p in points if (p.get("vault") or {}).get("verified")
        )
    if not_protected:  # only then, so manifests of complete nights keep their earlier shape
        payload["not_protected"] = not_protected
        payload["summary"]["not_protected"] = len(not_protected)
    return payload


def _vault_base(vault: Mapping[str, Any]) -> dict[str, Any]:
    top = vault.get("vault") or {}
    return {"account_id": top.get("account_id"), "region": None}


def check_manifest(payload: Mapping[str, Any], *, plan: str | None = None) -> dict[str, Any]:
    """Structural checks on a verified payload; raise :class:`ManifestError` on any mismatch."""
    if payload.get("kind") != MANIFEST_KIND:
        raise ManifestError(f"not a SecureDR run manifest (kind {payload.get('kind')!r})")
    if payload.get("version") != MANIFEST_VERSION:
        raise ManifestError(f"unsupported manifest version {payload.get('version')!r}")
    if plan is not None and payload.get("plan") != plan:
        raise ManifestError(f"manifest belongs to plan {payload.get('plan')!r}, not {plan!r}")
    if not isinstance(payload.get("recovery_points"), list):
        raise ManifestError("manifest has no recovery_points list")
    return dict(payload)
