"""CloudTrail-via-EventBridge event shapes for the incident tests, one per case."""

from __future__ import annotations

from typing import Any

from sandbox.incidents import ACCOUNT, cloudtrail_event

OUTSIDER = "999988887777"
VAULT = "222222222222"
DR_KEY_ARN = f"arn:aws:kms:us-west-2:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
OTHER_KEY_ARN = f"arn:aws:kms:us-west-2:{ACCOUNT}:key/00000000-1111-2222-3333-444444444444"
RESTORE_SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/securedr-restore/securedr-restore-abc123"
BACKUP_SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/securedr-backup/nightly-42"

#: A literal EventBridge event as AWS delivers ModifySnapshotAttribute (public share), in full.
EBS_PUBLIC_LITERAL: dict[str, Any] = {
    "version": "0",
    "id": "6f3c2a1e-1d5b-4c1c-9f59-1b2c3d4e5f60",
    "detail-type": "AWS API Call via CloudTrail",
    "source": "aws.ec2",
    "account": ACCOUNT,
    "time": "2026-12-03T13:00:00Z",
    "region": "us-west-2",
    "resources": [],
    "detail": {
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "AssumedRole",
            "principalId": "AROAEXAMPLE:mallory",
            "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/ops-admin/mallory",
            "accountId": ACCOUNT,
            "accessKeyId": "ASIAEXAMPLE",
            "sessionContext": {
                "sessionIssuer": {
                    "type": "Role",
                    "principalId": "AROAEXAMPLE",
                    "arn": f"arn:aws:iam::{ACCOUNT}:role/ops-admin",
                    "accountId": ACCOUNT,
                    "userName": "ops-admin",
                },
                "attributes": {"creationDate": "2026-12-03T12:55:00Z", "mfaAuthenticated": "false"},
            },
        },
        "eventTime": "2026-12-03T13:00:00Z",
        "eventSource": "ec2.amazonaws.com",
        "eventName": "ModifySnapshotAttribute",
        "awsRegion": "us-west-2",
        "sourceIPAddress": "203.0.113.7",
        "userAgent": "aws-cli/2.15.0",
        "requestParameters": {
            "snapshotId": "snap-0123456789abcdef0",
            "createVolumePermission": {"add": {"items": [{"group": "all"}]}},
            "attributeType": "CREATE_VOLUME_PERMISSION",
        },
        "responseElements": {"requestId": "r-1", "_return": True},
        "requestID": "r-1",
        "eventID": "e-1",
        "readOnly": False,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management",
    },
}


def ebs_share(snapshot: str, items: list[dict[str, str]], region: str = "us-west-2", **kw: Any):
    return cloudtrail_event(
        source="aws.ec2",
        event_name="ModifySnapshotAttribute",
        region=region,
        request_parameters={
            "snapshotId": snapshot,
            "createVolumePermission": {"add": {"items": items}},
            "attributeType": "CREATE_VOLUME_PERMISSION",
        },
        **kw,
    )


def ebs_unshare(snapshot: str, items: list[dict[str, str]], region: str = "us-west-2"):
    return cloudtrail_event(
        source="aws.ec2",
        event_name="ModifySnapshotAttribute",
        region=region,
        request_parameters={
            "snapshotId": snapshot,
            "createVolumePermission": {"remove": {"items": items}},
            "attributeType": "CREATE_VOLUME_PERMISSION",
        },
    )


def rds_share(snapshot: str, values: list[str], region: str = "us-west-2", **kw: Any):
    return cloudtrail_event(
        source="aws.rds",
        event_name="ModifyDBSnapshotAttribute",
        region=region,
        request_parameters={
            "dBSnapshotIdentifier": snapshot,
            "attributeName": "restore",
            "valuesToAdd": values,
        },
        **kw,
    )


def bpa_disabled(region: str = "us-west-2", **kw: Any):
    return cloudtrail_event(
        source="aws.ec2",
        event_name="DisableSnapshotBlockPublicAccess",
        region=region,
        request_parameters={"DisableSnapshotBlockPublicAccessRequest": ""},
        **kw,
    )


def kms_call(name: str, key_arn: str = DR_KEY_ARN, region: str = "us-west-2", **params: Any):
    return cloudtrail_event(
        source="aws.kms",
        event_name=name,
        region=region,
        request_parameters={"keyId": key_arn.rsplit("/", 1)[-1], **params},
        resources=[{"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": key_arn}],
    )


def s3_call(name: str, bucket: str = "securedr-evidence-demo", **params: Any):
    return cloudtrail_event(
        source="aws.s3",
        event_name=name,
        region="us-west-2",
        request_parameters={
            "bucketName": bucket,
            "Host": f"{bucket}.s3.us-west-2.amazonaws.com",
            **params,
        },
    )


def delete_snapshot(snapshot: str, kind: str = "ebs", **kw: Any):
    if kind == "ebs":
        return cloudtrail_event(
            source="aws.ec2",
            event_name="DeleteSnapshot",
            region="us-west-2",
            request_parameters={"snapshotId": snapshot},
            **kw,
        )
    return cloudtrail_event(
        source="aws.rds",
        event_name="DeleteDBSnapshot",
        region="us-west-2",
        request_parameters={"dBSnapshotIdentifier": snapshot},
        **kw,
    )


def iam_call(name: str, role: str, **params: Any):
    return cloudtrail_event(
        source="aws.iam",
        event_name=name,
        region="us-east-1",
        request_parameters={"roleName": role, **params},
    )
