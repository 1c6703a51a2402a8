"""The signed manifest of a nightly run, written to the Object-Locked evidence bucket."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from securedr.aws.evidence import EvidenceExists, EvidenceStore
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

    With a vault (``vault``: the vault verification's result), each verified point carries its
    ``vault`` entry and the manifest its top-level ``vault``; the same signed bytes are also
    written, once, under the same key to the vault's evidence bucket (through the vault intake
    role, SSE-KMS under the vault CMK, Object Lock COMPLIANCE for as long as vault copies are
    locked), so the evidence outlives the workload account. ``vault_url`` in the result.
    """

    template_fields: Sequence[str] = ("verifications", "file_sets", "vault", "plan_path")

    def __init__(
        self, *, verifications: Any, file_sets: Any = None, vault: Any = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.verifications = verifications
        self.file_sets = file_sets
        self.vault = vault

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
            return self._result(key, document, self._to_vault(context, key, document))

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
            vault=self.vault if self.plan.vault is not None else None,
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
        return self._result(key, document, self._to_vault(context, key, document))

    def _to_vault(self, context: Any, key: str, document: dict[str, Any]) -> str | None:
        """Write the signed manifest to the vault's evidence bucket (same key); its URL."""
        vault = self.plan.vault
        if vault is None:
            return None
        from securedr.aws.vault import assume_vault_role
        from securedr.operators.vault import lock_days

        _, run_id = run_identity(context)
        dr = self.plan.regions.dr
        clients = assume_vault_role(
            self.aws_conn_id,
            role_arn=vault.role_arn,
            external_id_variable=vault.external_id_variable,
            region=dr,
            run_id=run_id,
        )
        store = EvidenceStore(
            clients.s3(dr),
            bucket=vault.evidence_bucket,
            prefix=vault.evidence_prefix,
            kms_key_arn=vault.kms_key(dr),
            lock_mode="COMPLIANCE",
            lock_days=lock_days(self.plan),
        )
        # The same object key below the vault's prefix as below the workload's.
        vault_key = store.key(key.removeprefix(self.evidence.prefix + "/"))
        body = json.dumps(document, indent=2, sort_keys=True).encode()
        try:
            url = store.put(vault_key, body)
        except EvidenceExists:
            raise AirflowFailException(
                f"{store.url(vault_key)} holds a different manifest; the vault's evidence is "
                "never overwritten - investigate who wrote it"
            ) from None
        self.log.info("Signed manifest also stored in the vault at %s (COMPLIANCE).", url)
        return url

    def _result(
        self, key: str, document: dict[str, Any], vault_url: str | None = None
    ) -> dict[str, Any]:
        result = {
            "url": self.evidence.url(key),
            "key": key,
            "key_id": document["signature"]["key_id"],
            "sha256": hashlib.sha256(signing.canonical_json(document)).hexdigest(),
            "recovery_points": len(document["payload"]["recovery_points"]),
            "files": sum(len(f.get("files") or []) for f in document["payload"]["file_sets"]),
        }
        if vault_url:
            result["vault_url"] = vault_url
        return result
