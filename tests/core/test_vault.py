"""The vault's pure rules: lock parameters, names, the verdict on a vault copy, manifest entries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from securedr.core.manifest import build_manifest
from securedr.core.model import RecoveryPoint, Verification
from securedr.core.retained import retained_copies
from securedr.core.vault import (
    VaultError,
    account_of_arn,
    lock_request,
    manifest_vault,
    rds_vault_identifier,
    vault_copy_problems,
    vault_entry,
    vault_tags,
)

KEY = "arn:aws:kms:us-west-2:222222222222:key/5ec0dd00-0000-4000-8000-00000000a001"
RUN = "scheduled__2026-12-03T02:00:00+00:00"
T0 = datetime(2026, 12, 3, 2, 30, tzinfo=UTC)


def point(kind: str = "ebs") -> RecoveryPoint:
    return RecoveryPoint(
        kind=kind,  # type: ignore[arg-type]
        source_id="vol-1" if kind == "ebs" else "orders-db",
        source_region="us-east-1",
        snapshot_id="snap-src",
        size_gib=8,
        source_encrypted=True,
        run_id=RUN,
        dr_region="us-west-2",
        dr_snapshot_id="snap-dr" if kind == "ebs" else "securedr-orders-db-abc-us-east-1",
        dr_created_at=T0.isoformat(),
    )


def vault_snapshot(p: RecoveryPoint, **changes) -> dict:
    tags = [{"Key": k, "Value": v} for k, v in vault_tags(p, plan="demo", run_id=RUN).items()]
    snap = {
        "SnapshotId": "snap-vault",
        "State": "completed",
        "Encrypted": True,
        "KmsKeyId": KEY,
        "StartTime": T0,
        "Tags": tags,
    }
    snap.update(changes)
    return snap


def lock(days: int = 31, state: str = "compliance-cooloff") -> dict:
    return {
        "SnapshotId": "snap-vault",
        "LockState": state,
        "CoolOffPeriod": 24,
        "LockExpiresOn": T0 + timedelta(days=days),
    }


def problems(p: RecoveryPoint, snap, **kw) -> list[str]:
    args = dict(
        expected_key_arn=KEY,
        plan="demo",
        run_id=RUN,
        shared_with=[],
        lock=lock(),
        keep_days=30,
    )
    args.update(kw)
    return vault_copy_problems(p, snap, **args)


def test_lock_request_is_compliance_with_cool_off_and_a_duration_in_days():
    assert lock_request("snap-1", cool_off_hours=24, duration_days=31) == {
        "SnapshotId": "snap-1",
        "LockMode": "compliance",
        "CoolOffPeriod": 24,
        "LockDuration": 31,
    }
    with pytest.raises(VaultError, match="cool_off_hours"):
        lock_request("snap-1", cool_off_hours=73, duration_days=31)
    with pytest.raises(VaultError, match="1-36500"):
        lock_request("snap-1", cool_off_hours=1, duration_days=0)


def test_a_good_vault_copy_has_no_problems():
    p = point()
    assert problems(p, vault_snapshot(p)) == []


@pytest.mark.parametrize(
    ("changes", "kw", "expected"),
    [
        ({"State": "pending"}, {}, "state is 'pending'"),
        ({"KmsKeyId": "arn:aws:kms:us-west-2:123456789012:key/dr"}, {}, "not the vault CMK"),
        ({"Encrypted": False}, {}, "NOT encrypted"),
        ({}, {"shared_with": ["123456789012"]}, "shared with 123456789012"),
        ({}, {"lock": None}, "no snapshot lock"),
        ({}, {"lock": lock(state="governance")}, "not compliance mode"),
        ({}, {"lock": lock(days=10)}, "before the retention period"),
        ({}, {"run_id": "another-run"}, "securedr:run-id"),
    ],
)
def test_each_vault_copy_problem_is_named(changes, kw, expected):
    p = point()
    found = problems(p, vault_snapshot(p, **changes), **kw)
    assert any(expected in f for f in found), found


def test_a_vault_copy_of_another_dr_copy_is_refused():
    p = point()
    snap = vault_snapshot(p)
    other = RecoveryPoint.from_dict({**p.to_dict(), "dr_snapshot_id": "snap-other"})
    assert any("securedr:source-snapshot" in f for f in problems(other, snap))


def test_rds_has_no_lock_and_the_entry_says_null():
    p = point("rds")
    tags = [{"Key": k, "Value": v} for k, v in vault_tags(p, plan="demo", run_id=RUN).items()]
    snap = {
        "DBSnapshotIdentifier": "x",
        "DBSnapshotArn": "arn:aws:rds:us-west-2:222222222222:snapshot:x",
        "Status": "available",
        "Encrypted": True,
        "KmsKeyId": KEY,
        "SnapshotCreateTime": T0,
        "TagList": tags,
    }
    assert problems(p, snap, lock=None) == []
    entry = vault_entry(
        p,
        snap,
        account_id="222222222222",
        region="us-west-2",
        kms_key_arn=KEY,
        vault_snapshot_id="x",
        lock=None,
        problems=[],
    )
    assert entry == {
        "account_id": "222222222222",
        "region": "us-west-2",
        "kind": "rds",
        "db_snapshot_identifier": "x",
        "arn": "arn:aws:rds:us-west-2:222222222222:snapshot:x",
        "kms_key_arn": KEY,
        "created_at": T0.isoformat(),
        "lock": None,
        "verified": True,
    }


def test_rds_vault_identifier_is_deterministic_and_names_the_workload_account():
    ident = rds_vault_identifier("securedr-orders-db-abc-us-east-1", "123456789012")
    assert ident == "securedr-orders-db-abc-us-east-1-123456789012"
    assert account_of_arn("arn:aws:rds:us-west-2:123456789012:snapshot:x") == "123456789012"
    with pytest.raises(VaultError):
        account_of_arn("not-an-arn")


def test_manifest_gains_the_vault_entries_and_the_top_level_vault():
    ebs, rds = point(), point("rds")
    entry = vault_entry(
        ebs,
        vault_snapshot(ebs),
        account_id="222222222222",
        region="us-west-2",
        kms_key_arn=KEY,
        vault_snapshot_id="snap-vault",
        lock=lock(),
        problems=[],
    )
    assert entry["lock"] == {
        "mode": "compliance",
        "cool_off_hours": 24,
        "expires_on": (T0 + timedelta(days=31)).isoformat(),
    }
    top = manifest_vault(
        account_id="222222222222", evidence_bucket="vault-evidence", kms_keys={"us-west-2": KEY}
    )
    payload = build_manifest(
        plan="demo",
        run_id=RUN,
        dag_id="dr_nightly_backup",
        created_at=T0.isoformat(),
        dr_region="us-west-2",
        dr_kms_key_arn="arn:dr",
        verifications=[
            Verification(point=ebs.to_dict(), passed=True),
            Verification(point=rds.to_dict(), passed=True),
        ],
        vault={"vault": top, "points": {ebs.label: entry}},
    )
    assert payload["vault"] == top
    by_kind = {p["kind"]: p for p in payload["recovery_points"]}
    assert by_kind["ebs"]["vault"] == entry
    # A verified point the vault step never reached is named as not in the vault.
    assert by_kind["rds"]["vault"]["verified"] is False
    assert payload["summary"]["vault_verified"] == 1
    # Without a vault the manifest keeps its shape.
    plain = build_manifest(
        plan="demo",
        run_id=RUN,
        dag_id="dr_nightly_backup",
        created_at=T0.isoformat(),
        dr_region="us-west-2",
        dr_kms_key_arn="arn:dr",
        verifications=[Verification(point=ebs.to_dict(), passed=True)],
    )
    assert "vault" not in plain and "vault" not in plain["recovery_points"][0]


def test_retained_copies_mark_points_the_vault_holds():
    manifest = {
        "run_id": RUN,
        "recovery_points": [
            {
                "kind": "ebs",
                "source_id": "vol-1",
                "source_region": "us-east-1",
                "dr_region": "us-west-2",
                "dr_snapshot_id": "snap-dr",
                "dr_created_at": T0.isoformat(),
                "verified": True,
                "vault": {"verified": True},
            }
        ],
    }
    within, _ = retained_copies([("k", manifest)], now=T0, keep_days=30)
    assert [c.vaulted for c in within] == [True]


def test_report_fails_on_a_point_not_protected_in_the_vault():
    from securedr.core.report import nightly_report, render_nightly_text

    ebs = point()
    failed = {"account_id": "222222222222", "verified": False, "problems": ["lock refused"]}
    common = dict(
        plan="demo",
        run_id=RUN,
        started_at=T0.isoformat(),
        finished_at=T0.isoformat(),
        duration_seconds=1,
        verifications=[Verification(point=ebs.to_dict(), passed=True)],
        manifest=None,
        retention=None,
    )
    vault = {"vault": {"account_id": "222222222222"}, "points": {ebs.label: failed}}
    report = nightly_report(**common, vault=vault)
    assert not report["succeeded"]
    assert report["not_in_vault"] == ["us-east-1/vol-1: lock refused"]
    assert "NOT PROTECTED IN THE VAULT us-east-1/vol-1" in render_nightly_text(report)
    good = {**failed, "verified": True, "problems": None, "snapshot_id": "snap-v"}
    ok = nightly_report(**common, vault={**vault, "points": {ebs.label: good}})
    assert ok["succeeded"] and ok["recovery_points"][0]["in_vault"]
    assert nightly_report(**common)["succeeded"]  # no vault: unchanged
    manifest = {"url": "s3://w/m.json", "key_id": "k", "vault_url": "s3://v/m.json"}
    text = render_nightly_text(nightly_report(**{**common, "manifest": manifest}, vault=vault))
    assert "Manifest in the vault: s3://v/m.json (COMPLIANCE)" in text
