"""Fixtures for dr_restore: a restore-ready plan, a fast "nightly backup", and a run harness.

``backup`` creates what a nightly run leaves behind - recovery points, DR copies with lineage
tags, a signed manifest in the evidence bucket - directly through the adapters, in about a
second instead of the two minutes ``dr_nightly_backup`` takes end to end (that path is covered
by tests/e2e). ``Harness`` runs the restore operators in DAG order with a small fake context,
so every step after the human approval can be tested without a scheduler.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
import yaml

from tests.conftest import REPO

EXTERNAL_ID = "securedr-test-external-id-0123456789"
ACCOUNT = "123456789012"
#: The enrolled authenticators of the plan's people (what `securedr mfa enroll` stored).
MFA_SECRETS = {
    "alice": "ALICEALICEALICEALICEALICEALICE22",
    "bob": "BOBBOBBOBBOBBOBBOBBOBBOBBOBBOB22",
    "carol": "CAROLCAROLCAROLCAROLCAROLCAROL22",
}


class MfaClock:
    """The clock MFA codes are checked against in these tests: real time, plus whatever the
    test skipped ahead - a person who needs a second code waits for the next step; the tests
    skip the wait instead."""

    def __init__(self) -> None:
        self.offset = timedelta(0)
        self.handed_out: dict[str, int] = {}

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def code(self, user: str) -> str:
        from securedr.core.mfa import TOTP_PERIOD_SECONDS, code_at, time_step

        last = self.handed_out.get(user)
        if last is not None and time_step(self.now()) <= last:
            steps = last + 1 - time_step(self.now())
            self.offset += timedelta(seconds=TOTP_PERIOD_SECONDS * steps)
        now = self.now()
        self.handed_out[user] = time_step(now)
        return code_at(MFA_SECRETS[user], now)


MFA_CLOCK = MfaClock()


@pytest.fixture(autouse=True)
def mfa_clock(monkeypatch: pytest.MonkeyPatch) -> MfaClock:
    """A fresh MFA clock per test, used by the operators' checks."""
    import securedr.operators.access

    MFA_CLOCK.__init__()
    monkeypatch.setattr(securedr.operators.access, "mfa_now", MFA_CLOCK.now)
    return MFA_CLOCK


def mfa_code(user: str) -> str:
    """What ``user``'s authenticator app shows now (never a code already handed out)."""
    return MFA_CLOCK.code(user)


def enrol_mfa(monkeypatch: pytest.MonkeyPatch, users=tuple(MFA_SECRETS)) -> None:
    """Enrol ``users`` the way a secrets backend serves them to tasks (AIRFLOW_VAR_...)."""
    from securedr.core.mfa import secret_variable

    for user in users:
        monkeypatch.setenv(f"AIRFLOW_VAR_{secret_variable(user).upper()}", MFA_SECRETS[user])


@dataclass
class Backup:
    """What a nightly run left behind."""

    run_id: str
    manifest_key: str
    created_at: str
    points: list[dict[str, Any]]
    document: dict[str, Any]
    file_sets: list[dict[str, Any]] = field(default_factory=list)

    def point(self, kind: str) -> dict[str, Any]:
        return next(p for p in self.points if p["kind"] == kind)


def write_plan(tmp_path: Path, **restore_overrides: Any) -> Path:
    """A copy of the shipped plan with restore settings filled in; returns its path."""
    data = yaml.safe_load((REPO / "include" / "dr_plan.yaml").read_text())
    data.setdefault("restore", {}).update(restore_overrides.pop("restore", {}))
    data.update(restore_overrides)
    path = tmp_path / "dr_plan.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def restore_plan(estate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The demo plan plus a restore role, private DB network and SNS topic in the sandbox."""
    from sandbox.estate import (
        ensure_notification_topic,
        ensure_restore_network,
        ensure_restore_role,
    )
    from securedr.core.plan import load_plan

    base = load_plan()
    dr = base.regions.dr
    subnet_group, sg_id = ensure_restore_network(base, os.environ["AWS_ENDPOINT_URL"])
    topic = ensure_notification_topic(base, os.environ["AWS_ENDPOINT_URL"])
    role_arn = ensure_restore_role(
        base,
        os.environ["AWS_ENDPOINT_URL"],
        external_id=EXTERNAL_ID,
        dr_key_arn=estate.key_arns[dr],
    )
    path = write_plan(
        tmp_path,
        restore={
            "role_arn": role_arn,
            "db_subnet_group": subnet_group,
            "security_group_ids": [sg_id],
        },
        notifications={"sns_topic_arn": topic},
    )
    monkeypatch.setenv("SECUREDR_PLAN", str(path))
    monkeypatch.setenv("AIRFLOW_VAR_SECUREDR_RESTORE_EXTERNAL_ID", EXTERNAL_ID)
    enrol_mfa(monkeypatch)
    return load_plan(path)


def evidence_store(plan, key_arn: str):
    from securedr.aws.evidence import EvidenceStore

    bucket = plan.evidence_bucket
    return EvidenceStore(
        boto3.client("s3", region_name=plan.regions.dr),
        bucket=bucket.name,
        prefix=bucket.prefix,
        kms_key_arn=key_arn,
        lock_mode=bucket.object_lock_mode,
        lock_days=bucket.object_lock_days,
    )


def make_backup(
    plan,
    estate,
    private_key: bytes,
    *,
    run_id: str = "scheduled__2026-11-25T02:00:00+00:00",
    created_at: datetime | None = None,
    dr_key_arn: str | None = None,
    verified: bool = True,
    file_sets: list[dict[str, Any]] | None = None,
    volume_performance: dict[str, Any] | None = None,
) -> Backup:
    """Recovery points + DR copies (lineage-tagged) + a signed manifest, like a nightly run."""
    from securedr.aws import ebs, rds
    from securedr.core.manifest import build_manifest, manifest_key
    from securedr.core.model import (
        ROLE_DR_COPY,
        ROLE_RECOVERY_POINT,
        TAG_SOURCE_SNAPSHOT,
        RecoveryPoint,
        Verification,
        lineage_tags,
        rds_snapshot_identifier,
    )
    from securedr.core.signing import sign_document

    dr = plan.regions.dr
    dr_key = dr_key_arn or estate.key_arns[dr]
    created = (created_at or datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=0)
    points: list[RecoveryPoint] = []

    def tags(kind: str, source: str, region: str, role: str) -> dict[str, str]:
        return lineage_tags(
            plan=plan.name,
            run_id=run_id,
            kind=kind,  # type: ignore[arg-type]
            source_id=source,
            source_region=region,
            role=role,
        )

    for region, volumes in estate.protected_volumes.items():
        src = boto3.client("ec2", region_name=region)
        for volume in volumes:
            size = src.describe_volumes(VolumeIds=[volume])["Volumes"][0]["Size"]
            snap = ebs.create_snapshot(
                src, volume, tags("ebs", volume, region, ROLE_RECOVERY_POINT), "test point"
            )
            copy_tags = tags("ebs", volume, region, ROLE_DR_COPY)
            copy_tags[TAG_SOURCE_SNAPSHOT] = snap["SnapshotId"]
            copy_id = boto3.client("ec2", region_name=dr).copy_snapshot(
                **ebs.copy_request(
                    source_region=region,
                    snapshot_id=snap["SnapshotId"],
                    kms_key_arn=dr_key,
                    tags=copy_tags,
                    description="test DR copy",
                )
            )["SnapshotId"]
            points.append(
                RecoveryPoint(
                    kind="ebs",
                    source_id=volume,
                    source_region=region,
                    snapshot_id=snap["SnapshotId"],
                    size_gib=size,
                    source_encrypted=True,
                    run_id=run_id,
                    created_at=created.isoformat(),
                    dr_region=dr,
                    dr_snapshot_id=copy_id,
                    dr_kms_key_arn=dr_key,
                    dr_created_at=created.isoformat(),
                    **(volume_performance or {}),
                )
            )
    for region, dbs in estate.protected_databases.items():
        src = boto3.client("rds", region_name=region)
        for db in dbs:
            identifier = rds_snapshot_identifier(db, run_id)
            snap = rds.create_snapshot(
                src, db, identifier, tags("rds", db, region, ROLE_RECOVERY_POINT)
            )
            copy = boto3.client("rds", region_name=dr).copy_db_snapshot(
                **rds.copy_request(
                    source_region=region,
                    source_arn=snap["DBSnapshotArn"],
                    target_identifier=identifier,
                    kms_key_arn=dr_key,
                    tags=tags("rds", db, region, ROLE_DR_COPY),
                )
            )["DBSnapshot"]
            points.append(
                RecoveryPoint(
                    kind="rds",
                    source_id=db,
                    source_region=region,
                    snapshot_id=identifier,
                    size_gib=int(snap.get("AllocatedStorage", 20)),
                    source_encrypted=True,
                    run_id=run_id,
                    snapshot_arn=snap["DBSnapshotArn"],
                    engine=snap.get("Engine"),
                    created_at=created.isoformat(),
                    dr_region=dr,
                    dr_snapshot_id=identifier,
                    dr_snapshot_arn=copy.get("DBSnapshotArn"),
                    dr_kms_key_arn=dr_key,
                    dr_created_at=created.isoformat(),
                )
            )
    verdicts = [
        Verification(
            point=p.to_dict(),
            passed=verified,
            problems=[] if verified else ["the copy is NOT encrypted"],
            checked_at=created.isoformat(),
        )
        for p in points
    ]
    payload = build_manifest(
        plan=plan.name,
        run_id=run_id,
        dag_id="dr_nightly_backup",
        created_at=created.isoformat(),
        dr_region=dr,
        dr_kms_key_arn=estate.key_arns[dr],
        verifications=verdicts,
        file_sets=file_sets or [],
    )
    document = sign_document(payload, private_key)
    store = evidence_store(plan, estate.key_arns[dr])
    key = store.key(manifest_key(plan.name, run_id, created.isoformat()))
    store.put(key, json.dumps(document, indent=2, sort_keys=True).encode())
    return Backup(
        run_id=run_id,
        manifest_key=key,
        created_at=created.isoformat(),
        points=payload["recovery_points"],
        document=document,
        file_sets=payload["file_sets"],
    )


def backup_file_sets(run_id: str = "scheduled__2026-11-25T02:00:00+00:00") -> list[dict[str, Any]]:
    """What the nightly file-set step stores for ``run_id`` (its manifest entries)."""
    from securedr.operators.filesets import BackupFileSetsOperator
    from tests.operators.helpers import task_context

    return BackupFileSetsOperator(task_id="backup_file_sets").execute(task_context(run_id))


@pytest.fixture
def backup(restore_plan, estate, signing_keys) -> Backup:
    return make_backup(restore_plan, estate, signing_keys[0], file_sets=backup_file_sets())


# --------------------------------------------------------------------------- run harness


@dataclass
class FakeDagRun:
    run_id: str
    triggering_user_name: str | None
    start_date: datetime
    conf: dict[str, Any] = field(default_factory=dict)


def make_context(
    *,
    user: str | None = "alice",
    params: dict[str, Any] | None = None,
    run_id: str = "manual__2026-11-26T10:00:00+00:00",
    started: datetime | None = None,
) -> dict[str, Any]:
    """The part of an Airflow task context SecureDR's restore operators read."""
    dag_run = FakeDagRun(
        run_id=run_id,
        triggering_user_name=user,
        start_date=started or datetime.now(UTC) - timedelta(minutes=2),
        conf=dict(params or {}),
    )
    return {
        "dag": SimpleNamespace(dag_id="dr_restore"),
        "run_id": run_id,
        "dag_run": dag_run,
        "params": dict(params or {}),
        "ti": SimpleNamespace(task_id="test"),
    }


def approval(user: str | None, choice: str = "Approve", **extra: Any) -> dict[str, Any]:
    """What RestoreApprovalOperator returns after ``user`` answered ``choice`` (with their MFA
    code verified when they approved)."""
    verified = {"user": user, "purpose": "approve", "result": "ok", "reason": "MFA code verified"}
    return {
        "chosen_options": [choice],
        "params_input": {},
        "responded_at": datetime.now(UTC).isoformat(),
        "responded_by_user": None if user is None else {"id": user, "name": user},
        "timed_out": False,
        "mfa": verified if user and choice == "Approve" else None,
        **extra,
    }


def hitl_event(user: str | None, choice: str = "Approve", code: Any = None) -> dict[str, Any]:
    """The event Airflow resumes the approval task with after ``user`` answered the form."""
    return {
        "chosen_options": [choice],
        "params_input": {"approver_mfa_code": code},
        "responded_at": datetime.now(UTC),
        "responded_by_user": None if user is None else {"id": user, "name": user},
        "timedout": False,
    }


VALID_PARAMS = {
    "recovery_point": "latest",
    "resources": ["all"],
    "target_region": None,
    "availability_zone": None,
    "reason": "Region us-east-1 is down: INC-4711 failover drill",
    "ticket": "INC-4711",
    "dry_run": False,
}


class Harness:
    """Run the dr_restore steps in DAG order, in-process, passing XComs by hand."""

    def __init__(self, *, user: str = "alice", params: dict[str, Any] | None = None, **ctx: Any):
        params = {**VALID_PARAMS, **(params or {})}
        if "mfa_code" not in params and user in MFA_SECRETS:
            params["mfa_code"] = mfa_code(user)  # the initiator types their current code
        self.context = make_context(user=user, params=params, **ctx)
        self.outputs: dict[str, Any] = {}

    def initiate(self) -> dict[str, Any]:
        from securedr.operators.restore import InitiateRestoreOperator

        self.outputs["initiate"] = InitiateRestoreOperator(task_id="initiate_restore").execute(
            self.context
        )
        return self.outputs["initiate"]

    def check_initiator(self) -> dict[str, Any]:
        from securedr.operators.access import CheckInitiatorOperator

        op = CheckInitiatorOperator(task_id="check_initiator", initiation=self.outputs["initiate"])
        self.outputs["check_initiator"] = op.execute(self.context)
        return self.outputs["check_initiator"]

    def approve(
        self, user: str | None, choice: str = "Approve", code: Any = "current"
    ) -> dict[str, Any]:
        """``user`` answers the approval form (``code="current"``: their authenticator's code);
        returns what the approval task hands to check_approval."""
        from securedr.operators.access import RestoreApprovalOperator

        if code == "current":
            code = mfa_code(user) if user in MFA_SECRETS else None
        op = RestoreApprovalOperator(task_id="approve_restore", request=self.outputs["initiate"])
        self.outputs["approve"] = op.execute_complete(self.context, hitl_event(user, choice, code))
        return self.outputs["approve"]

    def check_approval(self, decision: dict[str, Any]) -> dict[str, Any]:
        from securedr.operators.access import CheckApprovalOperator

        op = CheckApprovalOperator(task_id="check_approval", decision=decision)
        self.outputs["check_approval"] = op.execute(self.context)
        return self.outputs["check_approval"]

    def retrieve(self) -> dict[str, Any]:
        from securedr.operators.restore import RetrieveRecoveryPointsOperator

        op = RetrieveRecoveryPointsOperator(
            task_id="retrieve_recovery_points", initiation=self.outputs["initiate"]
        )
        self.outputs["retrieve"] = op.execute(self.context)
        return self.outputs["retrieve"]

    def restore(self, kind: str) -> list[dict[str, Any]]:
        from securedr.operators.restore import RestoreRecoveryPointsOperator

        op = RestoreRecoveryPointsOperator(
            task_id=f"restore_{kind}",
            kind=kind,  # type: ignore[arg-type]
            initiation=self.outputs["initiate"],
            retrieval=self.outputs["retrieve"],
        )
        self.outputs[f"restore_{kind}"] = op.execute(self.context)
        return self.outputs[f"restore_{kind}"]

    def restore_file_sets(self) -> list[dict[str, Any]]:
        from securedr.operators.filesets import RestoreFileSetsOperator

        op = RestoreFileSetsOperator(
            task_id="restore_file_sets",
            initiation=self.outputs["initiate"],
            retrieval=self.outputs["retrieve"],
        )
        self.outputs["restore_file_sets"] = op.execute(self.context)
        return self.outputs["restore_file_sets"]

    def wait(self) -> None:
        from securedr.sensors.restore import RestoredResourcesSensor

        RestoredResourcesSensor(
            task_id="wait_for_restored_resources",
            restored=[self.outputs["restore_ebs"], self.outputs["restore_rds"]],
        ).execute(self.context)

    def confirm(self) -> dict[str, Any]:
        from securedr.operators.restore import ConfirmRestoreOperator

        op = ConfirmRestoreOperator(
            task_id="confirm_restore",
            initiation=self.outputs["initiate"],
            approval=self.outputs["check_approval"],
            retrieval=self.outputs["retrieve"],
            restored=[self.outputs["restore_ebs"], self.outputs["restore_rds"]],
        )
        self.outputs["confirm"] = op.execute(self.context)
        return self.outputs["confirm"]

    def run_all(self, approver: str = "bob") -> dict[str, Any]:
        self.initiate()
        self.check_initiator()
        self.check_approval(self.approve(approver))
        self.retrieve()
        self.restore("ebs")
        self.restore("rds")
        self.wait()
        return self.confirm()


def audit_entries(plan) -> list[Any]:
    """Every audit entry of ``plan``'s trail, read straight from the sandbox S3."""
    from securedr.aws.audit_store import S3AuditTrail

    trail = S3AuditTrail(
        boto3.client("s3", region_name=plan.regions.dr),
        bucket=plan.evidence_bucket.name,
        evidence_prefix=plan.evidence_bucket.prefix,
        plan=plan.name,
    )
    return trail.read().entries


@dataclass(frozen=True)
class ApiCall:
    service: str  # the IAM prefix (botocore signing name): ec2, rds, s3, kms, sns, sts
    operation: str  # the API operation name, e.g. CreateVolume
    access_key: str
    params: tuple[str, ...]  # the request's top-level parameter names


@pytest.fixture
def api_calls(monkeypatch: pytest.MonkeyPatch) -> list[ApiCall]:
    """Every botocore API call made during the test (service, operation, whose credentials)."""
    from botocore.client import BaseClient

    calls: list[ApiCall] = []
    original = BaseClient._make_api_call

    def recording(self, operation_name, api_params):
        credentials = self._request_signer._credentials
        calls.append(
            ApiCall(
                service=self.meta.service_model.signing_name,
                operation=operation_name,
                access_key=credentials.access_key if credentials else "",
                params=tuple(sorted(api_params)),
            )
        )
        return original(self, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", recording)
    return calls


# --------------------------------------------------------------------------- the real stack

E2E_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/securedr-restore"
E2E_TOPIC_ARN = f"arn:aws:sns:us-west-2:{ACCOUNT}:securedr-restore"


@dataclass
class RestoreStack:
    stack: Any
    state: dict[str, Any]
    plan_path: Path
    nightly_run_id: str

    def api(self, user: str):
        from sandbox.stack import AirflowApi

        return AirflowApi(self.state["api_url"]).login(user, self.stack.passwords()[user])

    def env(self) -> dict[str, str]:
        """What a CLI user of this stack would export."""
        return {
            **self.stack.env(self.state["aws_url"], self.state["api_port"], "unused"),
            "SECUREDR_PLAN": str(self.plan_path),
        }


@pytest.fixture(scope="session")
def restore_stack(stack, stack_nightly):
    """The session's embedded stack (real api-server, scheduler, dag-processor, triggerer) with
    the shipped, restore-ready plan and one completed nightly backup."""
    from sandbox.stack import DEFAULT_PLAN
    from securedr.core.plan import load_plan

    plan = load_plan(DEFAULT_PLAN)
    assert plan.restore.role_arn == E2E_ROLE_ARN
    assert plan.notifications.sns_topic_arn == E2E_TOPIC_ARN
    assert stack_nightly["state"] == "success", stack_nightly["task_states"]
    state = {k: v for k, v in stack.items() if k not in ("stack", "passwords")}
    return RestoreStack(
        stack=stack["stack"],
        state=state,
        plan_path=DEFAULT_PLAN,
        nightly_run_id=stack_nightly["run_id"],
    )


# Restores from the vault (tests/restore/vault.py): the vault account and a nightly's vault copies.
from tests.restore.vault import vault, vault_backup  # noqa: E402, F401
