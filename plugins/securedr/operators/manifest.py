"""The signed manifest of a nightly run, written to the Object-Locked evidence bucket."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from securedr.aws.evidence import EvidenceExists
from securedr.core import signing
from securedr.core.manifest import build_manifest, check_manifest, manifest_key
from securedr.core.model import Verification
from securedr.operators.base import SecureDrOperator, run_identity


class SignRunManifestOperator(SecureDrOperator):
    """Sign the run's manifest with the plan's Ed25519 key and store it under Object Lock.

    Guarantees: the manifest lists every recovery point with its source, DR copy, key, size,
    times and verification verdict; it is signed, then verified against the trusted keys before
    it is written (a key that is not trusted fails here, not at restore time); it is written once,
    SSE-KMS under the DR key, with Object Lock retention. A retry finds the manifest already
    written for this run and reuses it. Returns the manifest's location, key id and digest.
    """

    template_fields: Sequence[str] = ("verifications", "file_sets", "plan_path")

    def __init__(self, *, verifications: Any, file_sets: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.verifications = verifications
        self.file_sets = file_sets

    def execute(self, context: Any) -> dict[str, Any]:
        dag_id, run_id = run_identity(context)
        plan = self.plan
        dag_run = context["dag_run"]
        started = getattr(dag_run, "start_date", None) or datetime.now(UTC)
        created_at = started.astimezone(UTC).isoformat()
        key = self.evidence.key(manifest_key(plan.name, run_id, created_at))
        trusted = self.trusted_public_keys()
        if self.evidence.exists(key):
            document = json.loads(self.evidence.get(key))
            payload = check_manifest(signing.verify_document(document, trusted), plan=plan.name)
            if payload["run_id"] != run_id:
                raise AirflowFailException(f"{key} holds the manifest of another run")
            self.log.info("Manifest for this run already stored at %s; reusing it.", key)
            return self._result(key, document)

        verdicts = [Verification.from_dict(v) for v in self.verifications or []]
        payload = build_manifest(
            plan=plan.name,
            run_id=run_id,
            dag_id=dag_id,
            created_at=created_at,
            dr_region=plan.regions.dr,
            dr_kms_key_arn=self.key_arn(plan.regions.dr),
            verifications=verdicts,
            file_sets=list(self.file_sets or []),
        )
        document = signing.sign_document(payload, self.signing_private_key())
        signing.verify_document(document, trusted)  # refuse to store what restores would refuse
        body = json.dumps(document, indent=2, sort_keys=True).encode()
        try:
            url = self.evidence.put(key, body)
        except EvidenceExists:
            url = self.evidence.url(key)
        self.log.info(
            "Signed manifest (%d recovery points, key %s) stored at %s",
            len(payload["recovery_points"]),
            document["signature"]["key_id"],
            url,
        )
        return self._result(key, document)

    def _result(self, key: str, document: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": self.evidence.url(key),
            "key": key,
            "key_id": document["signature"]["key_id"],
            "sha256": hashlib.sha256(signing.canonical_json(document)).hexdigest(),
            "recovery_points": len(document["payload"]["recovery_points"]),
            "files": sum(len(f.get("files") or []) for f in document["payload"]["file_sets"]),
        }
