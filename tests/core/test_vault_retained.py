"""Which vault copies the signed manifests list: only this vault's, verified if any manifest
says so, with the latest signed lock expiry."""

from __future__ import annotations

from datetime import UTC, datetime

from securedr.core.vault_retained import listed_vault_copies

VAULT = "222222222222"


def _manifest(
    key, copy_id, *, account=VAULT, region="us-west-2", verified=True, expires=None, kind="ebs"
):
    entry = {
        "account_id": account,
        "region": region,
        "kind": kind,
        "verified": verified,
        "created_at": "2026-11-20T02:00:00+00:00",
        "lock": {"mode": "compliance", "expires_on": expires} if expires else None,
    }
    entry["snapshot_id" if kind == "ebs" else "db_snapshot_identifier"] = copy_id
    return key, {
        "recovery_points": [
            {
                "kind": kind,
                "source_id": "vol-1",
                "source_region": "us-east-1",
                "verified": verified,
                "vault": entry,
            },
            {"kind": "ebs", "source_id": "vol-2", "source_region": "us-east-1", "verified": True},
        ]
    }


def test_only_this_vaults_entries_are_listed_and_the_rest_named():
    listed, ignored = listed_vault_copies(
        [
            _manifest("m1", "snap-a"),
            _manifest("m2", "snap-b", account="333333333333"),
            _manifest("m3", "snap-c", region="eu-west-1"),
            _manifest("m4", "", kind="ebs"),
            _manifest("m5", "securedr-db-1", kind="rds"),
        ],
        account_id=VAULT,
        region="us-west-2",
    )
    assert sorted(listed) == [("ebs", "snap-a"), ("rds", "securedr-db-1")]
    assert listed[("ebs", "snap-a")].source == "us-east-1/vol-1"
    assert listed[("ebs", "snap-a")].created_at == datetime(2026, 11, 20, 2, tzinfo=UTC)
    assert len(ignored) == 3 and all("ignored" in i for i in ignored)
    assert listed[("rds", "securedr-db-1")].lock_expires_on is None


def test_a_copy_listed_twice_is_verified_if_any_says_so_and_keeps_the_latest_lock():
    listed, _ = listed_vault_copies(
        [
            _manifest("m1", "snap-a", verified=False, expires="2026-12-01T00:00:00+00:00"),
            _manifest("m2", "snap-a", verified=True, expires="2026-12-20T00:00:00+00:00"),
            _manifest("m3", "snap-a", verified=False, expires="2026-12-05T00:00:00+00:00"),
        ],
        account_id=VAULT,
        region="us-west-2",
    )
    (copy,) = listed.values()
    assert copy.verified and copy.manifest_key == "m2"
    assert copy.lock_expires_on == datetime(2026, 12, 20, tzinfo=UTC)
