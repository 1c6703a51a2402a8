"""Section ``metrics``: calls and copies in flight, counted on the sandbox's side of the wire."""

from __future__ import annotations

import json
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from sandbox import realism
from sandbox.realism import metrics

NO_RETRIES = Config(retries={"max_attempts": 1, "mode": "standard"})
SOURCE, DR = "us-east-1", "us-west-2"
OURS = [{"ResourceType": "snapshot", "Tags": [{"Key": "securedr:role", "Value": "dr-copy"}]}]


def client(service: str, url: str, region: str = SOURCE):
    return boto3.client(service, endpoint_url=url, region_name=region, config=NO_RETRIES)


def source_snapshots(url: str, count: int) -> list[str]:
    ec2 = client("ec2", url)
    volume = ec2.create_volume(AvailabilityZone=f"{SOURCE}a", Size=8)["VolumeId"]
    return [ec2.create_snapshot(VolumeId=volume)["SnapshotId"] for _ in range(count)]


def served(url: str) -> dict:
    with urllib.request.urlopen(f"{url}{metrics.ENDPOINT}") as response:
        return json.loads(response.read())


def test_counts_every_call_by_service_and_action_including_refused_ones(aws):
    sources = source_snapshots(aws, 2)  # before the section is on: not counted
    realism.configure("metrics")
    realism.configure("timing", copy_seconds=60)
    realism.configure("quotas", ebs_copies_per_region=1)
    dr = client("ec2", aws, DR)
    dr.copy_snapshot(SourceRegion=SOURCE, SourceSnapshotId=sources[0])
    try:
        dr.copy_snapshot(SourceRegion=SOURCE, SourceSnapshotId=sources[1])
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "ResourceLimitExceeded"
    else:
        raise AssertionError("the quota should have refused the second copy")
    dr.describe_snapshots(SnapshotIds=[])
    got = served(aws)
    assert got["calls"] == {"ec2": {"CopySnapshot": 2, "DescribeSnapshots": 1}}
    assert got["total_calls"] == 3
    assert got["errors"] == {"ec2": {"CopySnapshot": {"ResourceLimitExceeded": 1}}}


def test_most_copies_in_flight_per_destination_region_ours_apart(aws):
    sources = source_snapshots(aws, 4)
    realism.configure("metrics")
    realism.configure("timing", copy_seconds=60)
    dr = client("ec2", aws, DR)
    dr.copy_snapshot(SourceRegion=SOURCE, SourceSnapshotId=sources[0])  # not ours: no tags
    for source in sources[1:3]:
        dr.copy_snapshot(SourceRegion=SOURCE, SourceSnapshotId=source, TagSpecifications=OURS)
    realism.advance(60)  # all three complete
    dr.copy_snapshot(SourceRegion=SOURCE, SourceSnapshotId=sources[3], TagSpecifications=OURS)
    client("ec2", aws, "eu-west-1").copy_snapshot(
        SourceRegion=SOURCE, SourceSnapshotId=sources[3], TagSpecifications=OURS
    )
    got = served(aws)["max_in_flight"]
    assert got[DR]["ebs"] == {"ours": 2, "all": 3}
    assert got[DR]["rds"] == {"ours": 0, "all": 0}
    assert got[DR]["ours_total"] == 2
    assert got["eu-west-1"]["ebs"] == {"ours": 1, "all": 1}
    assert served(aws)["copies_started"]["ebs"] == {"ours": 4, "all": 5}


def test_pending_time_is_the_union_of_our_copies_intervals(aws):
    sources = source_snapshots(aws, 3)
    realism.configure("metrics")
    realism.configure("timing", copy_seconds=100)
    dr = client("ec2", aws, DR)
    dr.copy_snapshot(SourceRegion=SOURCE, SourceSnapshotId=sources[0], TagSpecifications=OURS)
    realism.advance(50)  # overlaps the first by 50 s
    dr.copy_snapshot(SourceRegion=SOURCE, SourceSnapshotId=sources[1], TagSpecifications=OURS)
    realism.advance(200)  # a gap, then a copy that is not ours
    dr.copy_snapshot(SourceRegion=SOURCE, SourceSnapshotId=sources[2])
    pending = served(aws)["pending"]
    assert abs(pending["our_copies"]["union_seconds"] - 150) < 1
    assert len(pending["our_copies"]["intervals"]) == 1
    assert abs(pending["all_copies"]["union_seconds"] - 250) < 1


def test_rds_tags_mark_a_copy_ours():
    params = {
        "Tags.Tag.1.Key": "securedr:role",
        "Tags.Tag.1.Value": "dr-copy",
        "Tags.Tag.2.Key": "securedr:plan",
        "Tags.Tag.2.Value": "demo",
    }
    assert metrics.request_tags(params) == {"securedr:role": "dr-copy", "securedr:plan": "demo"}


def test_union_of_intervals():
    assert metrics.union_seconds([(0, 10), (5, 15), (20, 25)]) == (20, [[0, 15], [20, 25]])
    assert metrics.union_seconds([]) == (0, [])


def test_post_forgets_what_was_counted(aws):
    realism.configure("metrics")
    client("ec2", aws).describe_volumes()
    request = urllib.request.Request(f"{aws}{metrics.ENDPOINT}", method="POST")
    urllib.request.urlopen(request).close()
    assert served(aws)["total_calls"] == 0


def test_rds_cross_region_copies_count_in_flight_same_region_ones_do_not(aws):
    rds = client("rds", aws)
    rds.create_db_instance(
        DBInstanceIdentifier="orders-db",
        DBInstanceClass="db.t4g.micro",
        Engine="postgres",
        AllocatedStorage=20,
        MasterUsername="dbadmin",
        MasterUserPassword="sandbox-only-password",
    )
    arns = [
        rds.create_db_snapshot(DBInstanceIdentifier="orders-db", DBSnapshotIdentifier=f"o-{i}")[
            "DBSnapshot"
        ]["DBSnapshotArn"]
        for i in range(2)
    ]
    realism.configure("metrics")
    realism.configure("timing", copy_seconds=60)
    ours = [{"Key": "securedr:role", "Value": "dr-copy"}]
    client("rds", aws, DR).copy_db_snapshot(
        SourceDBSnapshotIdentifier=arns[0],
        TargetDBSnapshotIdentifier="o-0-dr",
        SourceRegion=SOURCE,
        Tags=ours,
    )
    rds.copy_db_snapshot(SourceDBSnapshotIdentifier="o-1", TargetDBSnapshotIdentifier="o-1-copy")
    got = served(aws)
    assert got["max_in_flight"][DR]["rds"] == {"ours": 1, "all": 1}
    assert got["max_in_flight"][SOURCE]["rds"] == {"ours": 0, "all": 0}  # same Region: no quota
    assert got["copies_started"]["rds"] == {"ours": 1, "all": 2}
