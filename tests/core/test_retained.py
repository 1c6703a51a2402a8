"""Which DR copies the signed manifests say the plan still holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from securedr.core.retained import age_text, listed_snapshots, retained_copies

NOW = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)


def _manifest(run_id: str, days_ago: int, points: list[dict]) -> dict:
    created = (NOW - timedelta(days=days_ago)).isoformat()
    return {
        "run_id": run_id,
        "dr_region": "us-west-2",
        "dr_kms_key_arn": "arn:aws:kms:us-west-2:1:key/k",
        "recovery_points": [
            {
                "kind": "ebs",
                "source_id": "vol-1",
                "source_region": "us-east-1",
                "source_snapshot_id": f"snap-src-{p['id']}",
                "dr_region": "us-west-2",
                "dr_snapshot_id": p["id"],
                "dr_kms_key_arn": "arn:aws:kms:us-west-2:1:key/k",
                "dr_created_at": created,
                "verified": p.get("verified", True),
            }
            for p in points
        ],
    }


def test_retained_copies_split_by_age_skip_tonight_failed_and_duplicates():
    manifests = [
        ("m/1", _manifest("old", 30, [{"id": "snap-a"}])),
        ("m/2", _manifest("mid", 5, [{"id": "snap-b"}, {"id": "snap-x", "verified": False}])),
        ("m/3", _manifest("reuse", 2, [{"id": "snap-b"}])),
        ("m/4", _manifest("tonight", 0, [{"id": "snap-t"}])),
    ]
    within, older = retained_copies(manifests, now=NOW, keep_days=14, skip_run_id="tonight")
    assert [c.dr_snapshot_id for c in within] == ["snap-b"]
    assert within[0].manifest_key == "m/3"  # the newest listing
    assert [c.dr_snapshot_id for c in older] == ["snap-a"]


def test_listed_snapshots_name_dr_copies_and_source_points_with_their_verdict():
    manifests = [
        ("m/1", _manifest("a", 3, [{"id": "snap-a", "verified": False}])),
        ("m/2", _manifest("b", 2, [{"id": "snap-a"}])),
    ]
    listed = listed_snapshots(manifests)
    assert listed[("us-west-2", "snap-a")].verified is True
    assert listed[("us-west-2", "snap-a")].location == "dr"
    assert listed[("us-west-2", "snap-a")].source == "us-east-1/vol-1"
    assert listed[("us-east-1", "snap-src-snap-a")].location == "source"
    assert ("us-west-2", "snap-forged") not in listed


def test_age_text():
    assert age_text(NOW - timedelta(days=6, hours=3), NOW) == "6 days"
    assert age_text(NOW - timedelta(hours=3), NOW) == "3 h"
    assert age_text(None, NOW) == "unknown age"


def test_snapshots_of_unprotected_resources_are_listed_unverified():
    """A night that snapshotted a resource but could not copy it lists that snapshot in its
    signed manifest, so retention may expire it (it deletes only what manifests list)."""
    from securedr.core.manifest import build_manifest
    from securedr.core.model import RecoveryPoint, Verification

    failed = RecoveryPoint(
        kind="rds",
        source_id="orders-db",
        source_region="us-east-1",
        snapshot_id="securedr-orders-db-abc",
        size_gib=1,
        source_encrypted=True,
        run_id="r",
        not_protected="refused: SnapshotQuotaExceeded",
    )
    unsupported = RecoveryPoint(
        kind="rds",
        source_id="member-db",
        source_region="us-east-1",
        snapshot_id="",
        size_gib=1,
        source_encrypted=True,
        run_id="r",
        not_protected="unsupported: member of DB cluster",
    )
    payload = build_manifest(
        plan="p",
        run_id="r",
        dag_id="dr_nightly_backup",
        created_at=NOW.isoformat(),
        dr_region="us-west-2",
        dr_kms_key_arn="arn:aws:kms:us-west-2:1:key/k",
        verifications=[
            Verification(point=p.to_dict(), passed=False, problems=["not protected"])
            for p in (failed, unsupported)
        ],
    )
    listed = listed_snapshots([("m/1", payload)])
    entry = listed[("us-east-1", "securedr-orders-db-abc")]
    assert entry.verified is False and entry.location == "source"
    assert entry.source == "us-east-1/orders-db" and entry.kind == "rds"
    assert len(listed) == 1  # nothing was made for the unsupported one
