"""The verdicts on vault copies and on what a signed manifest says about them (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from securedr.core.restore import RestoreRefused
from securedr.core.vault_restore import arn_account, vault_copy_problems, vault_view

VAULT = "222222222222"
KEY = f"arn:aws:kms:us-west-2:{VAULT}:key/5ec0dd00-0000-4000-8000-00000000a001"
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
RUN = "scheduled__2026-12-03T02:00:00+00:00"


def entry(**overrides):
    return {
        "account_id": VAULT,
        "region": "us-west-2",
        "kind": "ebs",
        "snapshot_id": "snap-0123456789abcdef0",
        "kms_key_arn": KEY,
        "created_at": "2026-12-03T03:00:00+00:00",
        "lock": {"mode": "compliance", "cool_off_hours": 24, "expires_on": "2026-12-18"},
        "verified": True,
        **overrides,
    }


def manifest(*points, vault=None):
    return {
        "run_id": RUN,
        "recovery_points": list(points),
        "file_sets": [{"name": "app-config", "files": [{"path": "a"}]}],
        "vault": vault if vault is not None else {"account_id": VAULT, "kms_keys": {}},
    }


def point(**overrides):
    return {
        "kind": "ebs",
        "source_id": "vol-0123456789abcdef0",
        "source_region": "us-east-1",
        "size_gib": 8,
        "created_at": "2026-12-03T02:00:00+00:00",
        "dr_snapshot_id": "snap-0aaaaaaaaaaaaaaaa",
        "dr_kms_key_arn": "arn:aws:kms:us-west-2:123456789012:key/workload",
        "verified": True,
        "problems": [],
        "vault": entry(),
        **overrides,
    }


def snapshot(**overrides):
    return {
        "SnapshotId": "snap-0123456789abcdef0",
        "OwnerId": VAULT,
        "State": "completed",
        "Encrypted": True,
        "KmsKeyId": KEY,
        "VolumeSize": 8,
        "Tags": [
            {"Key": "securedr:managed", "Value": "true"},
            {"Key": "securedr:plan", "Value": "demo"},
            {"Key": "securedr:source-id", "Value": "vol-0123456789abcdef0"},
            {"Key": "securedr:kind", "Value": "ebs"},
            {"Key": "securedr:run-id", "Value": RUN},
        ],
        **overrides,
    }


LOCKED = {"LockState": "compliance", "LockExpiresOn": NOW + timedelta(days=14)}


def problems(view_point, found, *, lock=LOCKED, shared=(), recovery=VAULT):
    return vault_copy_problems(
        view_point,
        found,
        lock=lock,
        shared_with=list(shared),
        vault_account=VAULT,
        recovery_account=recovery,
        plan="demo",
        manifest_run_id=RUN,
        now=NOW,
    )


def view_of(p):
    return vault_view("k", manifest(p), vault_account=VAULT, dr_region="us-west-2")[
        "recovery_points"
    ][0]


def test_the_view_puts_the_vault_copy_where_restores_read_the_dr_copy():
    view = vault_view("k", manifest(point()), vault_account=VAULT, dr_region="us-west-2")
    [p] = view["recovery_points"]
    assert p["dr_snapshot_id"] == "snap-0123456789abcdef0"
    assert p["dr_kms_key_arn"] == KEY and p["dr_region"] == "us-west-2"
    assert p["dr_created_at"] == "2026-12-03T03:00:00+00:00"
    assert p["created_at"] == "2026-12-03T02:00:00+00:00"  # RPO: the source point's time
    assert p["workload_dr_snapshot_id"] == "snap-0aaaaaaaaaaaaaaaa"
    assert p["verified"] is True
    assert view["file_sets"] == []  # not in the vault


@pytest.mark.parametrize(
    ("vault_entry", "expected"),
    [
        (None, "records no vault copy"),
        (entry(verified=False), "not verified by the nightly run"),
        (entry(account_id="333333333333"), "not the plan's vault account"),
        (entry(region="eu-west-1"), "not us-west-2"),
        (entry(kms_key_arn=KEY.replace(VAULT, "123456789012")), "not a key of the vault"),
        (entry(snapshot_id=None), "names no copy"),
    ],
)
def test_a_point_without_a_usable_vault_entry_is_not_verified(vault_entry, expected):
    [p] = vault_view(
        "k", manifest(point(vault=vault_entry)), vault_account=VAULT, dr_region="us-west-2"
    )["recovery_points"]
    assert p["verified"] is False
    assert any(expected in problem for problem in p["problems"]), p["problems"]


def test_a_manifest_without_vault_copies_or_of_another_vault_is_refused():
    with pytest.raises(RestoreRefused, match="records no vault copies"):
        vault_view("k", {**manifest(point()), "vault": None}, vault_account=VAULT, dr_region="x")
    with pytest.raises(RestoreRefused, match="not in the plan's vault account"):
        vault_view(
            "k",
            manifest(point(), vault={"account_id": "333333333333"}),
            vault_account=VAULT,
            dr_region="us-west-2",
        )


def test_a_sound_locked_vault_copy_has_no_problem():
    assert problems(view_of(point()), snapshot()) == []
    cooling = {"LockState": "compliance-cooloff", "LockExpiresOn": NOW + timedelta(days=14)}
    assert problems(view_of(point()), snapshot(), lock=cooling) == []


@pytest.mark.parametrize(
    ("found", "lock", "shared", "expected"),
    [
        (None, LOCKED, (), "does not exist in the vault account"),
        (snapshot(OwnerId="123456789012"), LOCKED, (), "not the vault account"),
        (snapshot(State="pending"), LOCKED, (), "state is 'pending'"),
        (snapshot(Encrypted=False), LOCKED, (), "NOT encrypted"),
        (snapshot(KmsKeyId="arn:other"), LOCKED, (), "not the vault key"),
        (snapshot(VolumeSize=9), LOCKED, (), "9 GiB"),
        (snapshot(Tags=[]), LOCKED, (), "lineage tag securedr:plan missing"),
        (
            snapshot(Tags=[{"Key": "securedr:source-id", "Value": "vol-other"}]),
            LOCKED,
            (),
            "securedr:source-id=vol-other",
        ),
        (snapshot(), None, (), "NOT locked"),
        (snapshot(), {"LockState": "governance"}, (), "not a compliance-mode lock"),
        (snapshot(), {"LockState": "expired"}, (), "not a compliance-mode lock"),
        (
            snapshot(),
            {"LockState": "compliance", "LockExpiresOn": NOW - timedelta(seconds=1)},
            (),
            "expired on",
        ),
        (snapshot(), LOCKED, ("123456789012",), "shared with 123456789012"),
        (snapshot(), LOCKED, ("all",), "shared with all"),
    ],
)
def test_each_problem_of_a_vault_copy_is_named(found, lock, shared, expected):
    found_problems = problems(view_of(point()), found, lock=lock, shared=shared)
    assert any(expected in p for p in found_problems), found_problems


def test_a_share_with_a_third_recovery_account_is_expected():
    third = "333333333333"
    assert problems(view_of(point()), snapshot(), shared=(third,), recovery=third) == []
    assert problems(view_of(point()), snapshot(), shared=(third,)) != []


def test_rds_copies_are_judged_without_a_lock_by_their_arn_account():
    rds_entry = entry(
        kind="rds",
        snapshot_id=None,
        db_snapshot_identifier="securedr-orders-db-x-vault",
        arn=f"arn:aws:rds:us-west-2:{VAULT}:snapshot:securedr-orders-db-x-vault",
        lock=None,
    )
    p = view_of(point(kind="rds", engine="postgres", vault=rds_entry))
    found = {
        "DBSnapshotIdentifier": "securedr-orders-db-x-vault",
        "DBSnapshotArn": rds_entry["arn"],
        "Status": "available",
        "Encrypted": True,
        "KmsKeyId": KEY,
        "Engine": "postgres",
        "TagList": snapshot(
            Tags=[
                {"Key": "securedr:plan", "Value": "demo"},
                {"Key": "securedr:source-id", "Value": "vol-0123456789abcdef0"},
            ]
        )["Tags"],
    }
    assert problems(p, found, lock=None) == []
    assert any("engine is mysql" in x for x in problems(p, {**found, "Engine": "mysql"}))


def test_arn_account():
    assert arn_account(KEY) == VAULT
    assert arn_account("arn:aws:iam::333333333333:role/x") == "333333333333"
    assert arn_account("alias/x") is None
