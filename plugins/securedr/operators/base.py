"""What every SecureDR operator shares: the plan, AWS clients, keys and the run's identity."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator, Variable

from securedr.aws import kms as kms_adapter
from securedr.aws.clients import AwsClients
from securedr.aws.evidence import EvidenceStore
from securedr.core import signing
from securedr.core.plan import Plan, load_plan, plan_dir

_PEM_PUBLIC = re.compile(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)


class SecureDrError(Exception):
    """A DR step refused to go on; the message says what was wrong and what to do."""


class SecureDrMixin:
    """Plan, AWS clients and keys for any SecureDR task (operator or sensor).

    Subclasses set ``plan_path`` (default ``$SECUREDR_PLAN`` or ``include/dr_plan.yaml``) and
    ``aws_conn_id`` (the Airflow AWS connection: credentials, role, endpoint).
    """

    plan_path: str | None
    aws_conn_id: str | None

    @cached_property
    def plan(self) -> Plan:
        return load_plan(self.plan_path)

    @cached_property
    def clients(self) -> AwsClients:
        return AwsClients(self.aws_conn_id)

    def key_arn(self, region: str) -> str:
        """The ARN behind the plan's key for ``region`` (aliases resolved by KMS)."""
        metadata = kms_adapter.describe_key(self.clients.kms(region), self.plan.kms_key(region))
        if metadata is None:
            raise SecureDrError(
                f"KMS key {self.plan.kms_key(region)} in {region} does not exist; "
                "fix kms_keys in the plan"
            )
        return str(metadata["Arn"])

    @cached_property
    def evidence(self) -> EvidenceStore:
        bucket = self.plan.evidence_bucket
        dr = self.plan.regions.dr
        return EvidenceStore(
            self.clients.s3(dr),
            bucket=bucket.name,
            prefix=bucket.prefix,
            kms_key_arn=self.key_arn(dr),
            lock_mode=bucket.object_lock_mode,
            lock_days=bucket.object_lock_days,
        )

    def signing_private_key(self) -> bytes:
        """The manifest signing key from its Airflow Variable (masked in logs by its name)."""
        name = self.plan.signing.private_key_variable
        value = Variable.get(name, default=None)
        if not value:
            raise SecureDrError(
                f"the signing key Variable {name!r} is not set; provision it as described in "
                "README, 'Signing keys' (AIRFLOW_VAR_" + name.upper() + " or a secrets backend)"
            )
        return str(value).encode()

    def trusted_public_keys(self) -> list[bytes]:
        path = self.plan.trusted_keys_path(plan_dir(self.plan_path))
        try:
            data = path.read_bytes()
        except OSError:
            raise SecureDrError(
                f"trusted signing keys file {path} cannot be read; set signing.trusted_keys in "
                "the plan to a PEM bundle of the public keys"
            ) from None
        keys = _PEM_PUBLIC.findall(data)
        if not keys:
            raise SecureDrError(f"trusted signing keys file {path} holds no PEM public key")
        return keys


class SecureDrOperator(SecureDrMixin, BaseOperator):
    """Base for SecureDR steps: reads and validates the plan, then talks to AWS through hooks.

    The constructor only stores arguments; every AWS call happens in ``execute``.
    """

    template_fields: Sequence[str] = ("plan_path",)
    ui_color = "#dbeafe"

    def __init__(
        self, *, plan_path: str | None = None, aws_conn_id: str | None = "aws_default", **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.plan_path = plan_path
        self.aws_conn_id = aws_conn_id

    def publish_incident(self, context: Any, subject: str, lines: list[str], what: str) -> bool:
        """Publish an incident to the plan's SNS topic; ``True`` once SNS accepted it.

        Never raises: the caller has already acted (made a copy private, kept a snapshot), and a
        lost message must not hide that in the run report, so a failure is logged and ``False``.
        """
        from securedr.notifiers.sns import SnsNotifier

        notifier = SnsNotifier(
            subject=subject,
            message="\n".join(lines),
            plan_path=self.plan_path,
            aws_conn_id=self.aws_conn_id,
            clients=self.clients,
        )
        try:
            return notifier.notify(context) is not None
        except Exception as exc:
            self.log.error("Could not publish the %s incident: %s", what, exc)
            return False


def run_identity(context: Any) -> tuple[str, str]:
    """(dag_id, run_id) of the running task."""
    return str(context["dag"].dag_id), str(context["run_id"])


def public_key_pem(private_key_pem: bytes) -> bytes:
    """The PEM public key matching a PEM Ed25519 private key."""
    from cryptography.hazmat.primitives import serialization

    return (
        signing.load_private_key(private_key_pem)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
