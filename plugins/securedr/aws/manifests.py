"""Read the plan's signed run manifests back from the evidence bucket.

Only manifests whose signature verifies against the plan's trusted keys, that are stored under
the key their signed content implies and that list copies in the plan's DR Region are returned;
every other one is named in ``rejected`` (someone wrote to the evidence bucket) and ignored, so
a forged or replayed manifest can never vouch for a snapshot.

Manifests are read through their object versions: a manifest hidden by a delete marker is still
read (its copies stay SecureDR's, so hiding it can neither turn them into "forgeries" nor drop
them from the nightly re-check) and is named in ``rejected`` as hidden.
https://docs.aws.amazon.com/AmazonS3/latest/userguide/DeleteMarker.html
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from securedr.aws.evidence import EvidenceStore
from securedr.core import signing
from securedr.core.restore import RestoreRefused, check_manifest_binding


@dataclass
class SignedManifests:
    """``manifests``: ``(object key, verified payload)``; ``rejected``: why each other one was."""

    manifests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    #: S3 GetObject calls made (one per manifest) plus ListObjectsV2 pages.
    reads: int = 0


def load_signed_manifests(
    evidence: EvidenceStore,
    trusted: Any,
    *,
    plan: str,
    dr_region: str,
    latest: int | None = None,
) -> SignedManifests:
    """Every manifest of ``plan`` that can be trusted (see the module docstring).

    ``latest``: only the newest that many trusted manifests (object keys sort in time order, and
    a trusted manifest's key is bound to its signed time), read newest first and giving up
    after ``2 x latest`` GetObject calls, so a caller that needs recent nights makes one listing
    call per 1,000 versions plus a bounded number of reads, and objects someone wrote under
    newer names cannot push the real manifests out unnoticed (each is named in ``rejected``).
    """
    out = SignedManifests()
    rows = [v for v in evidence.versions("manifests", plan) if v.key.endswith(".json")]
    out.reads = 1 + len(rows) // 1000
    newest: dict[str, str] = {}  # key -> newest stored version (write-once: normally the only)
    for row in sorted(rows, key=lambda v: (v.key, v.order)):
        if not row.delete_marker and row.key not in newest:
            newest[row.key] = row.version_id
    order = sorted(newest.items())
    if latest is not None:
        order = order[::-1][: max(0, 2 * latest)]
    read: set[str] = set()
    for key, version_id in order:
        if latest is not None and len(out.manifests) >= latest:
            break
        read.add(key)
        out.reads += 1
        try:
            body = evidence.get_version(key, version_id)
            payload = signing.verify_document(json.loads(body), trusted)
            check_manifest_binding(key, payload, plan, dr_region)
        except (ValueError, signing.SignatureError, RestoreRefused) as exc:
            out.rejected.append(f"manifest {key} cannot be trusted: {str(exc)[:300]}")
            continue
        out.manifests.append((key, payload))
    if latest is not None:
        out.manifests.reverse()  # oldest first, as without ``latest``
    hidden = [
        f"manifest {row.key} is hidden by a delete marker (someone deleted it from the "
        "evidence bucket); its stored version is still read"
        for row in rows
        if row.is_latest and row.delete_marker and row.key in read
    ]
    out.rejected[:0] = hidden
    return out
