"""The nightly's vault handshake against the multi-account sandbox.

Every call goes over real HTTP to the sandbox; a recorder (a realism observer) sees each one with
the account that made it, so the tests check the handshake's order and parameters as AWS would
see them. Needs the sandbox's accounts (sandbox.accounts.seed_vault) and its cross-account
CopySnapshot / CopyDBSnapshot of shared snapshots.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from sandbox import realism
from securedr.core.model import TAG_ROLE
from securedr.core.plan import load_plan
from securedr.core.vault import ROLE_VAULT_COPY
from securedr.operators.dr_copy import CopyToDrRegionOperator
from securedr.operators.manifest import SignRunManifestOperator
from securedr.operators.recovery_points import (
    CreateRecoveryPointsOperator,
    DiscoverProtectedResourcesOperator,
)
from securedr.operators.report import NightlyReportOperator
from securedr.operators.retention import ApplyRetentionOperator
from securedr.operators.vault import (
    CopyToVaultOperator,
    ReleaseDrIntermediatesOperator,
    VerifyVaultCopiesOperator,
)
from securedr.operators.verify import ReverifyRetainedCopiesOperator, VerifyDrCopiesOperator
from securedr.triggers.vault import VaultCopyTrigger
from tests.operators.helpers import task_context

REPO = Path(__file__).resolve().parents[2]
VAULT_PLAN = REPO / "include" / "dr_plan.vault.yaml"
WORKLOAD = "123456789012"
VAULT = "222222222222"
DR = "us-west-2"
FAST = {"poll_seconds": 1, "quota_wait_seconds": 1, "missing_grace_seconds": 30}

#: The actions the handshake is judged by (the sandbox's own seeding calls are left out).
WATCHED = {
    "ModifySnapshotAttribute",
    "CopySnapshot",
    "LockSnapshot",
    "UnlockSnapshot",
    "DeleteSnapshot",
    "ModifyDBSnapshotAttribute",
    "CopyDBSnapshot",
    "DeleteDBSnapshot",
    "AssumeRole",
}


class Recorder:
    """Every watched call the sandbox answered: (account, action, params, HTTP status)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.everything: list[tuple[str, str]] = []

        def observe(call, result) -> None:
            self.everything.append((call.account, call.action))
            if call.action in WATCHED:
                self.calls.append(
                    {
                        "account": call.account,
                        "action": call.action,
                        "params": dict(call.params),
                        "status": result[0],
                    }
                )

        realism.observer("test-vault-recorder", observe)
        realism.configure("test-vault-recorder")

    def ok(self, action: str, account: str | None = None) -> list[dict[str, Any]]:
        return [
            c
            for c in self.calls
            if c["action"] == action
            and c["status"] < 300
            and (account is None or c["account"] == account)
        ]

    def index(self, action: str, predicate=lambda c: True) -> int:
        for i, c in enumerate(self.calls):
            if c["action"] == action and c["status"] < 300 and predicate(c):
                return i
        raise AssertionError(f"no successful {action} among {[c['action'] for c in self.calls]}")


def write_vault_plan(tmp_path: Path, **changes: Any) -> str:
    data = yaml.safe_load(VAULT_PLAN.read_text())
    data["waits"] = {**(data.get("waits") or {}), **FAST}
    for section, values in changes.items():
        if isinstance(values, dict):
            data.setdefault(section, {}).update(values)
        else:
            data[section] = values
    path = tmp_path / "plan.vault.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.fixture
def vault_plan(aws, signing_keys, tmp_path, monkeypatch) -> str:
    """The demo estate with a vault: estate, vault roles / key / evidence bucket, external id."""
    from sandbox.accounts import SANDBOX_EXTERNAL_ID, seed_vault
    from sandbox.estate import seed

    path = write_vault_plan(tmp_path)
    plan = load_plan(path)
    seed(plan, aws)
    seed_vault(plan, aws)
    monkeypatch.setenv("AIRFLOW_VAR_SECUREDR_VAULT_EXTERNAL_ID", SANDBOX_EXTERNAL_ID)
    return path


def vault_session():
    from sandbox.accounts import session

    return session(VAULT, None)


def vault_snapshots() -> list[dict]:
    ec2 = vault_session().client("ec2", region_name=DR)
    return ec2.describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": f"tag:{TAG_ROLE}", "Values": [ROLE_VAULT_COPY]}]
    )["Snapshots"]


def vault_db_snapshots() -> list[dict]:
    rds = vault_session().client("rds", region_name=DR)
    return [
        s
        for s in rds.describe_db_snapshots(SnapshotType="manual")["DBSnapshots"]
        if s["DBSnapshotIdentifier"].startswith("securedr-")
    ]


def workload_dr_copy_exists(kind: str, snapshot_id: str) -> bool:
    try:
        if kind == "ebs":
            boto3.client("ec2", region_name=DR).describe_snapshots(SnapshotIds=[snapshot_id])
        else:
            boto3.client("rds", region_name=DR).describe_db_snapshots(
                DBSnapshotIdentifier=snapshot_id
            )
    except Exception as exc:
        if "NotFound" in str(exc):
            return False
        raise
    return True


def verified_dr_copies(ctx, plan_path: str) -> list[dict]:
    """discover -> recovery points -> DR copies -> verify, as the nightly runs them."""
    resources = DiscoverProtectedResourcesOperator(task_id="discover", plan_path=plan_path).execute(
        ctx
    )
    points = CreateRecoveryPointsOperator(
        task_id="snapshot", protected_resources=resources, plan_path=plan_path
    ).execute(ctx)
    copies = CopyToDrRegionOperator(
        task_id="copy", points=points, plan_path=plan_path, deferrable=False
    ).execute(ctx)
    return VerifyDrCopiesOperator(task_id="verify", points=copies, plan_path=plan_path).execute(ctx)


def to_vault(ctx, plan_path: str, verifications: list[dict], **kw) -> dict:
    return CopyToVaultOperator(
        task_id="copy_to_vault", verifications=verifications, plan_path=plan_path, **kw
    ).execute(ctx)


def verify_vault(ctx, plan_path: str, verifications, copies) -> dict:
    return VerifyVaultCopiesOperator(
        task_id="verify_vault_copies",
        verifications=verifications,
        vault_copies=copies,
        plan_path=plan_path,
    ).execute(ctx)


def sign(ctx, plan_path: str, verifications, vault_result) -> dict:
    return SignRunManifestOperator(
        task_id="sign_run_manifest",
        verifications=verifications,
        vault=vault_result,
        plan_path=plan_path,
    ).execute(ctx)


def release(ctx, plan_path: str, verifications, vault_result, manifest) -> dict:
    return ReleaseDrIntermediatesOperator(
        task_id="release_dr_intermediates",
        verifications=verifications,
        vault_result=vault_result,
        manifest=manifest,
        plan_path=plan_path,
    ).execute(ctx)


def by_kind(verifications: list[dict]) -> dict[str, dict]:
    """One verified point per kind (the us-east-1 one: the estate has one EBS volume more)."""
    points = [v["point"] for v in verifications if v["passed"]]
    points.sort(key=lambda p: p["source_region"] != "us-east-1")
    return {kind: next(p for p in points if p["kind"] == kind) for kind in ("ebs", "rds")}


# --- the handshake -------------------------------------------------------------------------------


def test_handshake_shares_copies_locks_verifies_and_only_then_releases(vault_plan, ctx):
    plan = load_plan(vault_plan)
    verifications = verified_dr_copies(ctx, vault_plan)
    points = by_kind(verifications)
    ebs_points = [v for v in verifications if v["passed"] and v["point"]["kind"] == "ebs"]
    recorder = Recorder()

    copies = to_vault(ctx, vault_plan, verifications)
    assert all(c["failed"] is None for c in copies.values()), copies
    result = verify_vault(ctx, vault_plan, verifications, copies)
    entries = result["points"]
    assert all(e["verified"] for e in entries.values()), entries
    # Nothing of the workload's is deleted or unshared before the signed manifest lists the
    # vault copies.
    assert not recorder.ok("DeleteSnapshot") and not recorder.ok("DeleteDBSnapshot")
    for kind, sid in ((k, p["dr_snapshot_id"]) for k, p in points.items()):
        assert workload_dr_copy_exists(kind, sid)
    manifest = sign(ctx, vault_plan, verifications, result)
    done = release(ctx, vault_plan, verifications, result, manifest)
    assert sorted(done["deleted"]) == sorted(
        f"{DR}/{v['point']['dr_snapshot_id']}" for v in verifications if v["passed"]
    )

    ebs_dr = points["ebs"]["dr_snapshot_id"]
    # EBS: shared with the vault account only, by id, never the public group.
    shares = [c for c in recorder.ok("ModifySnapshotAttribute") if c["params"].get("SnapshotId")]
    assert {c["account"] for c in shares} == {WORKLOAD}
    for c in shares:
        assert not any(k.startswith("GroupName") for k in c["params"]), c
        assert [v for k, v in c["params"].items() if k.startswith("UserId")] == [VAULT]
    add = recorder.index(
        "ModifySnapshotAttribute",
        lambda c: c["params"].get("OperationType") == "add" and c["params"]["SnapshotId"] == ebs_dr,
    )
    copy = recorder.index("CopySnapshot", lambda c: c["params"]["SourceSnapshotId"] == ebs_dr)
    assert recorder.calls[copy]["account"] == VAULT
    copy_params = recorder.calls[copy]["params"]
    assert copy_params["SourceRegion"] == DR
    assert copy_params["Encrypted"] in ("true", True)
    assert copy_params["KmsKeyId"] == plan.vault.kms_key(DR)
    vault_id = entries[f"ebs:{points['ebs']['source_region']}/{points['ebs']['source_id']}"][
        "snapshot_id"
    ]
    lock = recorder.index("LockSnapshot", lambda c: c["params"]["SnapshotId"] == vault_id)
    assert recorder.calls[lock]["account"] == VAULT
    lock_params = recorder.calls[lock]["params"]
    assert lock_params["LockMode"] == "compliance"
    assert int(lock_params["CoolOffPeriod"]) == plan.vault.lock.cool_off_hours
    assert int(lock_params["LockDuration"]) == plan.retention.keep_days + 1
    assert "ExpirationDate" not in lock_params
    remove = recorder.index(
        "ModifySnapshotAttribute",
        lambda c: (
            c["params"].get("OperationType") == "remove" and c["params"]["SnapshotId"] == ebs_dr
        ),
    )
    delete = recorder.index("DeleteSnapshot", lambda c: c["params"]["SnapshotId"] == ebs_dr)
    assert add < copy < lock < remove < delete
    assert recorder.calls[delete]["account"] == WORKLOAD
    assert not recorder.ok("UnlockSnapshot")
    assert not workload_dr_copy_exists("ebs", ebs_dr)

    # RDS: shared with the vault account only, copied from the DR copy's ARN under the vault
    # CMK, then unshared and deleted.
    rds_dr = points["rds"]["dr_snapshot_id"]
    rds_calls = recorder.ok("ModifyDBSnapshotAttribute")
    assert {c["account"] for c in rds_calls} == {WORKLOAD}
    added = [v for c in rds_calls for k, v in c["params"].items() if k.startswith("ValuesToAdd")]
    assert added == [VAULT]
    rds_copy = recorder.index("CopyDBSnapshot")
    assert recorder.calls[rds_copy]["account"] == VAULT
    assert recorder.calls[rds_copy]["params"]["SourceDBSnapshotIdentifier"].endswith(
        f":snapshot:{rds_dr}"
    )
    assert recorder.calls[rds_copy]["params"]["KmsKeyId"] == plan.vault.kms_key(DR)
    rds_delete = recorder.index("DeleteDBSnapshot")
    assert rds_copy < rds_delete and recorder.calls[rds_delete]["account"] == WORKLOAD
    assert not workload_dr_copy_exists("rds", rds_dr)

    # Everything in the vault ran under the intake role, in a session named after the run.
    from securedr.core.manifest import run_token

    roles = recorder.ok("AssumeRole")
    assert roles and {c["params"]["RoleArn"] for c in roles} == {plan.vault.role_arn}
    assert {c["params"]["RoleSessionName"] for c in roles} == {
        "securedr-vault-" + run_token(ctx["run_id"])
    }
    assert all(c["params"].get("ExternalId") for c in roles)

    # The vault holds both, private, under its CMK; the EBS one locked in compliance mode.
    vault_ebs = next(s for s in vault_snapshots() if s["SnapshotId"] == vault_id)
    assert len(vault_snapshots()) == len(ebs_points)
    assert vault_ebs["KmsKeyId"] == plan.vault.kms_key(DR)
    ec2 = vault_session().client("ec2", region_name=DR)
    assert (
        ec2.describe_snapshot_attribute(
            SnapshotId=vault_ebs["SnapshotId"], Attribute="createVolumePermission"
        )["CreateVolumePermissions"]
        == []
    )
    (locked,) = ec2.describe_locked_snapshots(SnapshotIds=[vault_ebs["SnapshotId"]])["Snapshots"]
    assert locked["LockState"] in ("compliance-cooloff", "compliance")
    (vault_rds,) = vault_db_snapshots()
    assert vault_rds["KmsKeyId"] == plan.vault.kms_key(DR)


def test_the_manifest_records_the_vault_and_is_also_stored_in_the_vault(vault_plan, ctx):
    plan = load_plan(vault_plan)
    verifications = verified_dr_copies(ctx, vault_plan)
    copies = to_vault(ctx, vault_plan, verifications)
    result = verify_vault(ctx, vault_plan, verifications, copies)
    manifest = sign(ctx, vault_plan, verifications, result)

    s3 = boto3.client("s3", region_name=DR)
    document = json.loads(
        s3.get_object(Bucket=plan.evidence_bucket.name, Key=manifest["key"])["Body"].read()
    )
    payload = document["payload"]
    assert payload["vault"] == {
        "account_id": VAULT,
        "evidence_bucket": plan.vault.evidence_bucket,
        "kms_keys": dict(plan.vault.kms_keys),
    }
    by = {p["kind"]: p for p in payload["recovery_points"]}
    ebs_entry, rds_entry = by["ebs"]["vault"], by["rds"]["vault"]
    assert ebs_entry["verified"] and rds_entry["verified"]
    assert ebs_entry["account_id"] == VAULT and ebs_entry["region"] == DR
    assert ebs_entry["snapshot_id"].startswith("snap-")
    assert ebs_entry["kms_key_arn"] == plan.vault.kms_key(DR)
    assert ebs_entry["created_at"]
    assert ebs_entry["lock"]["mode"] == "compliance"
    assert ebs_entry["lock"]["cool_off_hours"] == plan.vault.lock.cool_off_hours
    assert ebs_entry["lock"]["expires_on"]
    assert rds_entry["lock"] is None
    assert rds_entry["db_snapshot_identifier"] and rds_entry["arn"].startswith("arn:aws:rds:")
    # The DR copy (the intermediate) stays named in the manifest.
    assert by["ebs"]["dr_snapshot_id"]

    # The same signed bytes in the vault's evidence bucket, under COMPLIANCE retention.
    vault_s3 = vault_session().client("s3", region_name=DR)
    key = plan.vault.evidence_prefix + "/" + manifest["key"].split("/", 1)[1]
    assert manifest["vault_url"] == f"s3://{plan.vault.evidence_bucket}/{key}"
    head = vault_s3.head_object(Bucket=plan.vault.evidence_bucket, Key=key)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    body = vault_s3.get_object(Bucket=plan.vault.evidence_bucket, Key=key)["Body"].read()
    assert json.loads(body) == document
    # A retried manifest step reuses both.
    again = sign(ctx, vault_plan, verifications, result)
    assert again["sha256"] == manifest["sha256"] and again["vault_url"] == manifest["vault_url"]


def test_a_retried_task_and_a_restarted_triggerer_make_no_second_vault_copy(vault_plan, ctx):
    verifications = verified_dr_copies(ctx, vault_plan)
    recorder = Recorder()
    realism.configure("timing", copy_seconds=60, db_snapshot_seconds=60)

    with pytest.raises(TaskDeferred) as first:
        to_vault(ctx, vault_plan, verifications)
    assert len(recorder.ok("CopySnapshot", VAULT)) == 2
    assert len(recorder.ok("CopyDBSnapshot", VAULT)) == 1
    # The task is retried (a fresh operator, nothing carried over): it finds its copies.
    with pytest.raises(TaskDeferred) as retried:
        to_vault(ctx, vault_plan, verifications)
    assert len(recorder.ok("CopySnapshot", VAULT)) == 2
    assert len(recorder.ok("CopyDBSnapshot", VAULT)) == 1

    # A triggerer restarted from the first deferral's kwargs (as stored) picks them up too.
    for deferred in (first, retried):
        trigger = deferred.value.trigger
        assert isinstance(trigger, VaultCopyTrigger)
    _, kwargs = first.value.trigger.serialize()
    restarted = VaultCopyTrigger(**kwargs)
    realism.advance(120)
    import asyncio

    event = asyncio.run(asyncio.wait_for(restarted.copy(), timeout=60))
    assert event["status"] == "done", event
    assert len(recorder.ok("CopySnapshot", VAULT)) == 2
    assert len(recorder.ok("CopyDBSnapshot", VAULT)) == 1
    assert len(recorder.ok("LockSnapshot", VAULT)) == 2
    assert len(vault_snapshots()) == 2 and len(vault_db_snapshots()) == 1
    copies = CopyToVaultOperator(
        task_id="copy_to_vault", verifications=verifications, plan_path=vault_plan
    ).resume(ctx, event)
    assert all(c["failed"] is None and c["locked"] == (c["kind"] == "ebs") for c in copies.values())


def test_a_failed_vault_step_keeps_the_dr_copy_and_fails_the_report(vault_plan, ctx):
    verifications = verified_dr_copies(ctx, vault_plan)
    points = by_kind(verifications)
    recorder = Recorder()

    def refuse_lock(call) -> None:
        # What EC2 answers when IAM denies the caller the action.
        # https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html
        if call.action == "LockSnapshot":
            raise realism.AWSError(
                "UnauthorizedOperation", "You are not authorized to perform this operation."
            )

    realism.behaviour("test-refuse-lock", before=refuse_lock)
    realism.configure("test-refuse-lock")

    copies = to_vault(ctx, vault_plan, verifications)
    ebs_label = next(label for label, c in copies.items() if c["kind"] == "ebs")
    assert "could not be locked (UnauthorizedOperation" in copies[ebs_label]["failed"]
    result = verify_vault(ctx, vault_plan, verifications, copies)
    assert result["points"][ebs_label]["verified"] is False
    manifest = sign(ctx, vault_plan, verifications, result)
    done = release(ctx, vault_plan, verifications, result, manifest)
    # Its DR copy is kept (only the vault account's share of it is removed); the RDS point,
    # fully in the vault, is released.
    assert f"{DR}/{points['ebs']['dr_snapshot_id']}" in done["kept"]
    assert len(done["kept"]) == 2 and len(done["deleted"]) == 1  # two EBS points, one RDS
    assert workload_dr_copy_exists("ebs", points["ebs"]["dr_snapshot_id"])
    assert not recorder.ok("DeleteSnapshot")
    ec2 = boto3.client("ec2", region_name=DR)
    assert (
        ec2.describe_snapshot_attribute(
            SnapshotId=points["ebs"]["dr_snapshot_id"], Attribute="createVolumePermission"
        )["CreateVolumePermissions"]
        == []
    )
    assert not workload_dr_copy_exists("rds", points["rds"]["dr_snapshot_id"])

    report = NightlyReportOperator(
        task_id="report_run",
        verifications=verifications,
        manifest=manifest,
        retention=None,
        vault=result,
        plan_path=vault_plan,
    )
    ctx["ti"] = type("TI", (), {"get_task_states": staticmethod(lambda **_: {})})()
    with pytest.raises(AirflowFailException, match="NOT protected in the vault"):
        report.execute(ctx)


def test_workload_retention_and_reverify_cope_with_released_intermediates(vault_plan, ctx):
    verifications = verified_dr_copies(ctx, vault_plan)
    copies = to_vault(ctx, vault_plan, verifications)
    result = verify_vault(ctx, vault_plan, verifications, copies)
    manifest = sign(ctx, vault_plan, verifications, result)
    release(ctx, vault_plan, verifications, result, manifest)
    recorder = Recorder()

    # The next night: tonight's intermediates are gone by design, not a problem.
    tomorrow = task_context(run_id="scheduled__2026-11-27T02:00:00+00:00")
    retained = ReverifyRetainedCopiesOperator(task_id="reverify", plan_path=vault_plan).execute(
        tomorrow
    )
    assert retained["problems"] == [], retained["problems"]
    assert retained["expired_and_gone"] == 3
    # ...while their vault copies are re-checked from the vault account.
    assert retained["vault_checked"] == 3
    outcome = ApplyRetentionOperator(task_id="retention", plan_path=vault_plan).execute(tomorrow)
    assert outcome["retention_refusals"] == []
    # Workload retention never reaches into the vault account.
    assert not [c for c in recorder.calls if c["account"] == VAULT]
    assert len(vault_snapshots()) == 2 and len(vault_db_snapshots()) == 1


def test_without_a_vault_the_steps_do_nothing(estate, ctx, capsys):
    recorder = Recorder()
    verifications = [{"point": {}, "passed": True}]
    assert CopyToVaultOperator(task_id="c", verifications=verifications).execute(ctx) is None
    verify = VerifyVaultCopiesOperator(task_id="v", verifications=verifications, vault_copies={})
    assert verify.execute(ctx) is None
    assert (
        ReleaseDrIntermediatesOperator(
            task_id="r", verifications=verifications, vault_result=None, manifest=None
        ).execute(ctx)
        is None
    )
    assert recorder.everything == []  # not one AWS call
    assert capsys.readouterr().out.count("no vault section: nothing to do") == 3


def test_earlier_nights_vault_copies_are_re_checked_from_the_vault(vault_plan, ctx):
    verifications = verified_dr_copies(ctx, vault_plan)
    copies = to_vault(ctx, vault_plan, verifications)
    result = verify_vault(ctx, vault_plan, verifications, copies)
    manifest = sign(ctx, vault_plan, verifications, result)
    release(ctx, vault_plan, verifications, result, manifest)
    # Later, someone in the vault account shares a vault copy with an outside account.
    vault_id = next(e["snapshot_id"] for e in result["points"].values() if e["kind"] == "ebs")
    vault_session().client("ec2", region_name=DR).modify_snapshot_attribute(
        SnapshotId=vault_id,
        Attribute="createVolumePermission",
        OperationType="add",
        UserIds=["111122223333"],
    )
    tomorrow = task_context(run_id="scheduled__2026-11-27T02:00:00+00:00")
    retained = ReverifyRetainedCopiesOperator(task_id="reverify", plan_path=vault_plan).execute(
        tomorrow
    )
    (problem,) = retained["problems"]
    assert problem["copy"] == f"vault {VAULT}/{DR}/{vault_id}"
    assert any("shared with 111122223333" in p for p in problem["problems"])
    assert any(vault_id in i and "111122223333" in i for i in retained["incidents"])
