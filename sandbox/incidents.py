"""The incident pipeline in the sandbox: the queue, the shipped EventBridge rules, and events.

:func:`ensure_incident_pipeline` creates what ``include/eventbridge/README`` (README, "Detect and
respond") asks an operator to deploy: the plan's SQS queue in the DR Region and every shipped rule
targeting it, in the queue's Region. On AWS the other plan Regions (and us-east-1, where IAM's
events arrive) forward to that Region's default bus with a rule whose target is the bus
(https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-cross-region.html); the sandbox's
:func:`put_event` puts every event on that bus directly, which is what the forwarding amounts to.
The CloudTrail record keeps the Region of the call in ``detail.awsRegion``.

:func:`cloudtrail_event` builds an "AWS API Call via CloudTrail" event as EventBridge delivers it
(https://docs.aws.amazon.com/eventbridge/latest/ref/events-structure.html, the CloudTrail record
in ``detail``: https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-record-contents.html)
and :func:`put_event` injects it with PutEvents. AWS refuses PutEvents with an ``aws.*`` source
from callers; moto accepts it, which is the only way to feed CloudTrail shapes to the rules here.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import boto3

from securedr.core.event_rules import load_rules
from securedr.core.incident import ResponseScope
from securedr.core.plan import SQS_QUEUE_URL_RE, Plan

ACCOUNT = "123456789012"
#: A caller that is no SecureDR principal (an intruder with an assumed role).
INTRUDER_ARN = f"arn:aws:sts::{ACCOUNT}:assumed-role/ops-admin/mallory"


def _client(service: str, region: str, endpoint_url: str | None) -> Any:
    return boto3.client(service, region_name=region, endpoint_url=endpoint_url)


def queue_region(plan: Plan) -> str:
    url = plan.incident_response.queue_url
    match = SQS_QUEUE_URL_RE.match(url or "")
    if match is None:
        raise ValueError("the plan has no incident_response.queue_url")
    return match["region"]


def ensure_incident_pipeline(plan: Plan, endpoint_url: str | None) -> dict[str, Any]:
    """The plan's incident queue and the shipped rules in every plan Region (idempotent)."""
    match = SQS_QUEUE_URL_RE.match(plan.incident_response.queue_url or "")
    if match is None:
        raise ValueError("the plan has no incident_response.queue_url")
    region, name = match["region"], match["name"]
    sqs = _client("sqs", region, endpoint_url)
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    # EventBridge may send to the queue only if its policy says so.
    # https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html#eb-sqs-permissions
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "SecureDrIncidentRules",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
    rules = load_rules(ResponseScope.from_plan(plan))
    created: list[str] = []
    events = _client("events", region, endpoint_url)
    for rule in rules:
        events.put_rule(
            Name=rule.name,
            EventPattern=rule.pattern_json,
            Description=rule.description[:512],
            State="ENABLED",
        )
        events.put_targets(Rule=rule.name, Targets=[{"Id": "securedr-incidents", "Arn": queue_arn}])
        created.append(rule.name)
    return {"queue_url": queue_url, "queue_arn": queue_arn, "rules": created}


def cloudtrail_event(
    *,
    source: str,
    event_name: str,
    region: str,
    request_parameters: dict[str, Any] | None = None,
    actor_arn: str = INTRUDER_ARN,
    session_issuer_arn: str | None = None,
    resources: list[dict[str, Any]] | None = None,
    error_code: str | None = None,
    event_time: datetime | None = None,
    account: str = ACCOUNT,
) -> dict[str, Any]:
    """One CloudTrail management event as EventBridge delivers it (detail-type, detail...)."""
    when = (event_time or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    identity: dict[str, Any] = {"type": "IAMUser", "arn": actor_arn, "accountId": account}
    if ":assumed-role/" in actor_arn:
        role, session = actor_arn.split(":assumed-role/", 1)[1].split("/", 1)
        identity = {
            "type": "AssumedRole",
            "principalId": f"AROAEXAMPLEEXAMPLE:{session}",
            "arn": actor_arn,
            "accountId": account,
            "accessKeyId": "ASIAEXAMPLEEXAMPLE",
            "sessionContext": {
                "sessionIssuer": {
                    "type": "Role",
                    "principalId": "AROAEXAMPLEEXAMPLE",
                    "arn": session_issuer_arn or f"arn:aws:iam::{account}:role/{role}",
                    "accountId": account,
                    "userName": role,
                },
                "attributes": {"creationDate": when, "mfaAuthenticated": "false"},
            },
        }
    service = source.removeprefix("aws.")
    detail: dict[str, Any] = {
        "eventVersion": "1.09",
        "userIdentity": identity,
        "eventTime": when,
        "eventSource": f"{service}.amazonaws.com",
        "eventName": event_name,
        "awsRegion": region,
        "sourceIPAddress": "203.0.113.7",
        "userAgent": "aws-cli/2.15.0",
        "requestParameters": request_parameters,
        "responseElements": None,
        "requestID": str(uuid.uuid4()),
        "eventID": str(uuid.uuid4()),
        "readOnly": False,
        "eventType": "AwsApiCall",
        "managementEvent": service != "s3" or not event_name.startswith("DeleteObject"),
        "recipientAccountId": account,
        "eventCategory": "Data" if event_name.startswith("DeleteObject") else "Management",
    }
    if resources is not None:
        detail["resources"] = resources
    if error_code:
        detail["errorCode"] = error_code
        detail["errorMessage"] = "denied"
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "AWS API Call via CloudTrail",
        "source": source,
        "account": account,
        "time": when,
        "region": region,
        "resources": [],
        "detail": detail,
    }


def put_event(event: dict[str, Any], endpoint_url: str | None, bus_region: str) -> None:
    """Inject ``event`` into ``bus_region``'s default bus (the queue's) with PutEvents."""
    events = _client("events", bus_region, endpoint_url)
    result = events.put_events(
        Entries=[
            {
                "Source": event["source"],
                "DetailType": event["detail-type"],
                "Detail": json.dumps(event["detail"]),
                "Resources": event["resources"],
            }
        ]
    )
    if result.get("FailedEntryCount"):
        raise RuntimeError(f"PutEvents refused the event: {result['Entries']}")
