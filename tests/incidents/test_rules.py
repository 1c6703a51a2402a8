"""The shipped EventBridge rules, created in the sandbox's EventBridge and fed with PutEvents.

Each CloudTrail event shape that is (or may be) an incident reaches the queue; the others
(removals, reads, failed calls, other buckets and roles) do not.
"""

from __future__ import annotations

import json

import boto3
import pytest

from sandbox.incidents import ensure_incident_pipeline, put_event
from securedr.core.event_rules import load_rules
from securedr.core.incident import ResponseScope
from tests.incidents import events as ev

MATCHING = {
    "ebs public": lambda: ev.ebs_share("snap-a", [{"group": "all"}]),
    "ebs account": lambda: ev.ebs_share("snap-b", [{"userId": ev.OUTSIDER}], region="us-east-1"),
    "rds share": lambda: ev.rds_share("db-a", ["all"]),
    "bpa off": lambda: ev.bpa_disabled("eu-west-1"),
    "kms disable": lambda: ev.kms_call("DisableKey"),
    "kms delete": lambda: ev.kms_call("ScheduleKeyDeletion", pendingWindowInDays=7),
    "kms policy": lambda: ev.kms_call("PutKeyPolicy", policyName="default"),
    "bucket policy": lambda: ev.s3_call("PutBucketPolicy"),
    "bucket policy deleted": lambda: ev.s3_call("DeleteBucketPolicy"),
    "bucket pab": lambda: ev.s3_call("PutBucketPublicAccessBlock"),
    "bucket pab deleted": lambda: ev.s3_call("DeleteBucketPublicAccessBlock"),
    "bucket versioning": lambda: ev.s3_call(
        "PutBucketVersioning", VersioningConfiguration={"Status": "Suspended"}
    ),
    "object lock": lambda: ev.s3_call("PutObjectLockConfiguration"),
    "evidence delete": lambda: ev.s3_call("DeleteObject", key="securedr/manifests/x.json"),
    "evidence multi-delete": lambda: ev.s3_call("DeleteObjects", delete=""),
    "ebs delete": lambda: ev.delete_snapshot("snap-c"),
    "rds delete": lambda: ev.delete_snapshot("db-b", "rds"),
    "role put": lambda: ev.iam_call("PutRolePolicy", "securedr-restore", policyName="x"),
    "role attach": lambda: ev.iam_call("AttachRolePolicy", "securedr-backup", policyArn="arn"),
    "role detach": lambda: ev.iam_call("DetachRolePolicy", "securedr-restore", policyArn="a"),
    "role delete": lambda: ev.iam_call("DeleteRolePolicy", "securedr-backup", policyName="x"),
}

NOT_MATCHING = {
    "ebs unshare": lambda: ev.ebs_unshare("snap-a", [{"group": "all"}]),
    "rds unshare": lambda: ev.cloudtrail_event(
        source="aws.rds",
        event_name="ModifyDBSnapshotAttribute",
        region="us-west-2",
        request_parameters={
            "dBSnapshotIdentifier": "db-a",
            "attributeName": "restore",
            "valuesToRemove": ["all"],
        },
    ),
    "failed bpa off": lambda: ev.bpa_disabled(error_code="UnauthorizedOperation"),
    "kms enable": lambda: ev.kms_call("EnableKey"),
    "other bucket": lambda: ev.s3_call("PutBucketPolicy", bucket="app-logs"),
    "delete outside prefix": lambda: ev.s3_call("DeleteObject", key="tmp/x"),
    "other role": lambda: ev.iam_call("PutRolePolicy", "app-role", policyName="x"),
    "read call": lambda: ev.cloudtrail_event(
        source="aws.ec2",
        event_name="DescribeSnapshots",
        region="us-west-2",
        request_parameters={},
    ),
}


def _drain(sqs, url: str) -> list[dict]:
    bodies = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = got.get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def pipeline(aws, plan):
    created = ensure_incident_pipeline(plan, aws)
    sqs = boto3.client("sqs", region_name="us-west-2", endpoint_url=aws)
    return created, sqs


def test_every_shipped_rule_is_created_with_the_plan_values(pipeline, plan, aws):
    created, _ = pipeline
    names = [r.name for r in load_rules(ResponseScope.from_plan(plan))]
    assert created["rules"] == names
    events = boto3.client("events", region_name="us-west-2", endpoint_url=aws)
    bucket_rule = json.loads(events.describe_rule(Name="securedr-evidence-bucket")["EventPattern"])
    assert bucket_rule["detail"]["requestParameters"]["bucketName"] == ["securedr-evidence-demo"]
    roles = json.loads(events.describe_rule(Name="securedr-role-policy")["EventPattern"])
    assert roles["detail"]["requestParameters"]["roleName"] == [
        "securedr-backup",
        "securedr-restore",
    ]
    targets = events.list_targets_by_rule(Rule="securedr-snapshot-shared")["Targets"]
    assert [t["Arn"] for t in targets] == [created["queue_arn"]]


@pytest.mark.parametrize("case", sorted(MATCHING))
def test_incident_shapes_reach_the_queue(pipeline, aws, case):
    created, sqs = pipeline
    event = MATCHING[case]()
    put_event(event, aws, "us-west-2")
    bodies = _drain(sqs, created["queue_url"])
    assert len(bodies) == 1, f"{case}: {len(bodies)} deliveries"
    assert bodies[0]["detail"]["eventName"] == event["detail"]["eventName"]
    assert bodies[0]["detail"]["requestParameters"] == event["detail"]["requestParameters"]


def test_other_shapes_do_not(pipeline, aws):
    created, sqs = pipeline
    for case in sorted(NOT_MATCHING):
        put_event(NOT_MATCHING[case](), aws, "us-west-2")
    assert _drain(sqs, created["queue_url"]) == []
