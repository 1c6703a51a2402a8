"""Read the plan's signed run manifests back from the evidence bucket.

Only manifests whose signature verifies against the plan's trusted keys, that are stored under
the key their signed content implies and that list copies in the plan's DR Region are returned;
every other one is named in ``rejected`` (someone wrote to the evidence bucket) and ignored, so
a forged or replayed manifest can never vouch for a snapshot.
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
    evidence: EvidenceStore, trusted: Any, *, plan: str, dr_region: str
) -> SignedManifests:
    """Every manifest of ``plan`` that can be trusted (see the module docstring)."""
    out = SignedManifests()
    keys = [k for k in evidence.list("manifests", plan) if k.endswith(".json")]
    out.reads = 1 + len(keys) // 1000
    for key in keys:
        out.reads += 1
        try:
            payload = signing.verify_document(json.loads(evidence.get(key)), trusted)
            check_manifest_binding(key, payload, plan, dr_region)
        except (ValueError, signing.SignatureError, RestoreRefused) as exc:
            out.rejected.append(f"manifest {key} cannot be trusted: {str(exc)[:300]}")
            continue
        out.manifests.append((key, payload))
    return out
