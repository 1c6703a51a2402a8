"""Retention against the sandbox AWS: only SecureDR's own, expired, non-last copies go."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from airflow.sdk.exceptions import AirflowFailException

from sandbox import realism
from sandbox.estate import ensure_notification_topic
from securedr.core.model import lineage_tags
from securedr.operators.retention import ApplyRetentionOperator
from tests.operators.helpers import ec2_backend, sign_manifest

DR = "us-west-2"


def _snapshot(volume_id: str, age_days: float, *, tags: dict[str, str]) -> str:
    ec2 = boto3.client("ec2", region_name=DR)
    snap = ec2.create_snapshot(
        VolumeId=volume_id,
        TagSpecifications=[
            {"ResourceType": "snapshot", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ],
    )
    ec2_backend(DR).snapshots[snap["SnapshotId"]].start_time = datetime.now(UTC) - timedelta(
        days=age_days
    )
    return snap["SnapshotId"]


def _dr_copy_tags(plan, source_id: str, verified: bool, plan_name: str | None = None) -> dict:
    tags = lineage_tags(
        plan=plan_name or plan.name,
        run_id="scheduled__old",
        kind="ebs",
        source_id=source_id,
        source_region="us-east-1",
        role="dr-copy",
    )
    if verified:
        tags["securedr:verified"] = "scheduled__old"
    return tags


@pytest.fixture
def history(estate, plan):
    """Copies of two sources in the DR Region, plus snapshots SecureDR must never touch."""
    volume = boto3.client("ec2", region_name=DR).create_volume(AvailabilityZone=f"{DR}a", Size=1)
    vid = volume["VolumeId"]
    ages = [1, 10, 20, 30, 40]
    good = {age: _snapshot(vid, age, tags=_dr_copy_tags(plan, "vol-good", True)) for age in ages}
    unverified_only = [
        _snapshot(vid, age, tags=_dr_copy_tags(plan, "vol-never-verified", False))
        for age in (30, 40)
    ]
    # Retention counts and deletes only what signed manifests list: the nights that made them.
    for age, snap in good.items():
        sign_manifest(
            f"scheduled__night-{age}",
            [
                {
                    "kind": "ebs",
                    "source_id": "vol-good",
                    "snapshot_id": f"snap-src-{age}",
                    "dr_snapshot_id": snap,
                }
            ],
            days_ago=age,
        )
    for n, snap in enumerate(unverified_only):
        sign_manifest(
            f"scheduled__failed-{n}",
            [
                {
                    "kind": "ebs",
                    "source_id": "vol-never-verified",
                    "snapshot_id": f"snap-src-u{n}",
                    "dr_snapshot_id": snap,
                    "verified": False,
                }
            ],
            days_ago=30 + 10 * n,
        )
    foreign = _snapshot(vid, 100, tags={"Name": "made by another tool"})
    other_plan = _snapshot(vid, 100, tags=_dr_copy_tags(plan, "vol-good", True, "other-plan"))
    return {
        "good": good,
        "unverified": unverified_only,
        "foreign": foreign,
        "other_plan": other_plan,
    }


def _existing() -> set[str]:
    return {s.id for s in ec2_backend(DR).snapshots.values()}


def _verdict(created_at: datetime) -> dict:
    point = {
        "kind": "ebs",
        "source_id": "vol-good",
        "source_region": "us-east-1",
        "snapshot_id": "snap-src",
        "size_gib": 1,
        "source_encrypted": True,
        "run_id": "r",
        "dr_region": DR,
        "dr_snapshot_id": "snap-x",
        "dr_created_at": created_at.isoformat(),
    }
    return {"point": point, "passed": True, "problems": [], "incidents": []}


def test_expired_copies_go_but_the_minimum_and_outsiders_stay(history, plan, ctx):
    assert plan.retention.keep_days == 14 and plan.retention.min_copies == 3
    result = ApplyRetentionOperator(
        task_id="retention", verifications=[_verdict(datetime.now(UTC))]
    ).execute(ctx)
    remaining = _existing()
    good = history["good"]
    assert good[30] not in remaining and good[40] not in remaining
    # 1 and 10 days are within 14; the 20-day copy is kept to hold the minimum of 3.
    assert {good[1], good[10], good[20]} <= remaining
    assert set(history["unverified"]) <= remaining
    assert history["foreign"] in remaining and history["other_plan"] in remaining
    assert sorted(result["deleted"]) == sorted(f"{DR}/{good[a]}" for a in (30, 40))
    reasons = {d["copy"]: d["reason"] for d in result["decisions"]}
    assert "minimum" in reasons[good[20]]
    assert "no verified copy" in reasons[history["unverified"][0]]


def test_dry_run_deletes_nothing_and_says_what_it_would_delete(history, plan, ctx):
    before = _existing()
    result = ApplyRetentionOperator(
        task_id="retention", verifications=[_verdict(datetime.now(UTC))], dry_run="True"
    ).execute(ctx)
    assert _existing() == before
    assert result["dry_run"] is True and result["deleted"] == []
    assert sorted(result["would_delete"]) == sorted(history["good"][a] for a in (30, 40))


def _forge_local_clock(monkeypatch, offset: timedelta) -> None:
    """The worker's clock runs ``offset`` away from real (and AWS's) time."""
    from securedr.operators import retention

    monkeypatch.setattr(retention, "local_now", lambda: datetime.now(UTC) + offset)


def test_local_clock_ahead_of_aws_time_deletes_nothing(history, plan, ctx, monkeypatch):
    before = _existing()
    # The worker's clock claims it is three hours later than AWS's clock, read at retention
    # time, says: the local clock is forged (or wrong), so no age can be trusted.
    _forge_local_clock(monkeypatch, timedelta(hours=3))
    with pytest.raises(AirflowFailException, match=r"Retention refused.*ahead of the time"):
        ApplyRetentionOperator(
            task_id="retention", verifications=[_verdict(datetime.now(UTC))]
        ).execute(ctx)
    assert _existing() == before


def test_local_clock_behind_aws_time_deletes_nothing(history, plan, ctx, monkeypatch):
    before = _existing()
    _forge_local_clock(monkeypatch, -timedelta(hours=2))
    with pytest.raises(AirflowFailException, match=r"Retention refused.*behind the time"):
        ApplyRetentionOperator(task_id="retention").execute(ctx)
    assert _existing() == before


def test_copies_that_took_three_hours_do_not_stop_retention(history, plan, ctx):
    """Tonight's copies started three hours ago (a long night); AWS's time now agrees with the
    local clock, so retention runs as usual."""
    realism.configure("timing", copy_seconds=10800)  # the sandbox's long copies, where built
    realism.advance(10800)
    started = datetime.now(UTC) - timedelta(hours=3)
    result = ApplyRetentionOperator(task_id="retention", verifications=[_verdict(started)]).execute(
        ctx
    )
    good = history["good"]
    assert sorted(result["deleted"]) == sorted(f"{DR}/{good[a]}" for a in (30, 40))
    assert result["retention_refusals"] == []


def test_aws_time_unreadable_deletes_nothing(history, plan, ctx):
    before = _existing()

    def before_hook(call: realism.Call) -> None:
        if call.action == "HeadBucket":
            raise realism.AWSError("AccessDenied", "Access Denied", 403)

    realism.behaviour("test-no-aws-time", before=before_hook)
    realism.configure("test-no-aws-time")
    with pytest.raises(AirflowFailException, match="AWS's current time could not be read"):
        ApplyRetentionOperator(task_id="retention").execute(ctx)
    assert _existing() == before


def _record_deletions(refuse: dict[str, tuple[str, str]] | None = None) -> list[str]:
    """Snapshot ids DeleteSnapshot was called for; ``refuse`` answers some with an AWS error."""
    attempted: list[str] = []

    def before_hook(call: realism.Call) -> None:
        if call.service == "ec2" and call.action == "DeleteSnapshot":
            snapshot = call.param("SnapshotId")
            attempted.append(snapshot)
            if refuse and snapshot in refuse:
                code, message = refuse[snapshot]
                raise realism.AWSError(code, message, 400)

    realism.behaviour("test-deletions", before=before_hook)
    realism.configure("test-deletions")
    return attempted


def _register_ami(snapshot_id: str) -> str:
    return boto3.client("ec2", region_name=DR).register_image(
        Name=f"ami-from-{snapshot_id}",
        RootDeviceName="/dev/xvda",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": snapshot_id}}],
    )["ImageId"]


def test_a_refused_deletion_is_reported_and_the_others_proceed(history, plan, ctx):
    good = history["good"]
    # The sandbox's refusals section: DeleteSnapshot of a snapshot a registered AMI uses answers
    # InvalidSnapshot.InUse, as AWS does. The 30-day copy is the first one retention tries.
    realism.configure("refusals", ami_in_use=True)
    ami = _register_ami(good[30])
    result = ApplyRetentionOperator(task_id="retention").execute(ctx)
    remaining = _existing()
    assert good[30] in remaining and good[40] not in remaining
    assert result["deleted"] == [f"{DR}/{good[40]}"]
    [refusal] = result["retention_refusals"]
    assert refusal["copy"] == good[30] and refusal["region"] == DR
    assert refusal["code"] == "InvalidSnapshot.InUse" and ami in refusal["message"]
    assert refusal["source"] == "us-east-1/vol-good" and refusal["kind"] == "ebs"


def test_a_snapshot_already_gone_is_not_a_refusal(history, plan, ctx):
    good = history["good"]
    _record_deletions(
        {good[30]: ("InvalidSnapshot.NotFound", f"The snapshot '{good[30]}' does not exist.")}
    )
    result = ApplyRetentionOperator(task_id="retention").execute(ctx)
    assert result["retention_refusals"] == []
    assert result["already_gone"] == [f"{DR}/{good[30]}"]
    assert result["deleted"] == [f"{DR}/{good[40]}"]


def test_locked_snapshots_are_never_attempted(history, plan, ctx):
    good = history["good"]
    ec2 = boto3.client("ec2", region_name=DR)
    ec2.lock_snapshot(SnapshotId=good[40], LockMode="compliance", LockDuration=30)
    ec2.lock_snapshot(SnapshotId=good[30], LockMode="governance", LockDuration=1)
    realism.advance(2 * 86400)  # good[30]'s lock has expired: it no longer protects
    attempted = _record_deletions()
    result = ApplyRetentionOperator(task_id="retention").execute(ctx)
    assert attempted == [good[30]]
    assert good[40] in _existing() and good[30] not in _existing()
    assert result["locked"] == [good[40]]
    reasons = {d["copy"]: d["reason"] for d in result["decisions"]}
    assert "locked" in reasons[good[40]]
    # The locked copy still counts as one of the verified copies kept: the 20-day copy
    # stays only for the minimum, so nothing below min_copies is ever deleted.
    assert good[20] in _existing()


def test_a_refusal_fails_the_run_after_the_report_is_written(history, plan, ctx):
    from securedr.operators.report import NightlyReportOperator

    good = history["good"]
    realism.configure("refusals", ami_in_use=True)
    _register_ami(good[40])
    retention = ApplyRetentionOperator(task_id="apply_retention").execute(ctx)

    class TI:
        def get_task_states(self, dag_id, run_ids):
            return {run_ids[0]: {"apply_retention": "success"}}

    with pytest.raises(AirflowFailException, match="refused retention deletions") as err:
        NightlyReportOperator(
            task_id="report_run", verifications=[], manifest=None, retention=retention
        ).execute({**ctx, "ti": TI()})
    assert good[40] in str(err.value) and "InvalidSnapshot.InUse" in str(err.value)
    s3 = boto3.client("s3", region_name=plan.regions.dr)
    listed = s3.list_objects_v2(
        Bucket=plan.evidence_bucket.name,
        Prefix=f"{plan.evidence_bucket.prefix.strip('/')}/reports/nightly/{plan.name}/",
    )
    keys = [o["Key"] for o in listed.get("Contents", [])]
    assert any(k.endswith(".json") for k in keys), keys
    stored = next(k for k in keys if k.endswith(".json"))
    body = s3.get_object(Bucket=plan.evidence_bucket.name, Key=stored)["Body"].read()
    assert good[40] in body.decode() and "retention_refusals" in body.decode()


def test_unreadable_snapshot_locks_delete_nothing(history, plan, ctx):
    before = _existing()

    def before_hook(call: realism.Call) -> None:
        if call.action == "DescribeLockedSnapshots":
            raise realism.AWSError(
                "UnauthorizedOperation", "You are not authorized to perform this operation.", 403
            )

    realism.behaviour("test-no-locks", before=before_hook)
    realism.configure("test-no-locks")
    with pytest.raises(AirflowFailException, match="ec2:DescribeLockedSnapshots"):
        ApplyRetentionOperator(task_id="retention").execute(ctx)
    assert _existing() == before


def test_forged_verified_tags_never_count_towards_the_minimum_and_are_reported(
    history, plan, ctx, aws
):
    """A snapshot tagged like SecureDR's verified copies that no signed manifest lists is a
    possible forgery: counted, it would push the genuine 20-day copy out of the minimum of 3."""
    ensure_notification_topic(plan, aws)
    good = history["good"]
    vid = ec2_backend(DR).snapshots[good[1]].volume.id
    forged_recent = _snapshot(vid, 5, tags=_dr_copy_tags(plan, "vol-good", True))
    forged_expired = _snapshot(vid, 50, tags=_dr_copy_tags(plan, "vol-good", True))

    result = ApplyRetentionOperator(task_id="apply_retention").execute(ctx)

    remaining = _existing()
    assert {good[1], good[10], good[20]} <= remaining  # three genuine copies: the floor holds
    assert good[30] not in remaining and good[40] not in remaining
    assert {forged_recent, forged_expired} <= remaining  # never deleted
    reasons = {d["copy"]: d["reason"] for d in result["decisions"]}
    assert "minimum" in reasons[good[20]]
    assert "POSSIBLE FORGERY" in reasons[forged_recent]
    assert "POSSIBLE FORGERY" in reasons[forged_expired]
    assert result["possible_forgeries"] == sorted(
        f"{DR}/{s}" for s in (forged_recent, forged_expired)
    )
    assert any(forged_recent in i and "possible forgery" in i for i in result["incidents"])
    assert result["notified"] is True

    from moto.sns.models import sns_backends

    from securedr.operators.report import NightlyReportOperator
    from tests.operators.helpers import ACCOUNT

    topics = sns_backends[ACCOUNT][DR].topics.values()
    assert any(forged_recent in n[1] for t in topics for n in t.sent_notifications)

    class TI:
        def get_task_states(self, dag_id, run_ids):
            return {run_ids[0]: {}}

    report = NightlyReportOperator(
        task_id="report_run", verifications=[], manifest=None, retention=result
    ).execute({**ctx, "ti": TI()})
    assert any(forged_expired in i for i in report["incidents"])


def test_a_copy_no_signed_manifest_lists_is_never_deleted(history, plan, ctx):
    """Without the verified tag an unlisted managed snapshot is not a forgery, but retention
    still never deletes it: deleting on tags alone is what a forged tag would exploit."""
    good = history["good"]
    vid = ec2_backend(DR).snapshots[good[1]].volume.id
    stray = _snapshot(vid, 60, tags=_dr_copy_tags(plan, "vol-good", False))
    result = ApplyRetentionOperator(task_id="apply_retention").execute(ctx)
    assert stray in _existing()
    assert result["unlisted"] == [f"{DR}/{stray}"] and result["possible_forgeries"] == []
