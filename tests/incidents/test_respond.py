"""RespondToIncidentsOperator end to end on the sandbox: classify, contain, alert, audit."""

from __future__ import annotations

import json
from types import SimpleNamespace

import boto3
import pytest
from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowFailException

from sandbox.estate import ensure_notification_topic
from securedr.aws.audit_store import S3AuditTrail
from securedr.aws.clients import AwsClients
from securedr.aws.evidence import EvidenceStore
from securedr.operators.incident import RespondToIncidentsOperator, messages_from_context
from tests.incidents import events as ev

DR = "us-west-2"


def _context(bodies=(), conf_events=()):
    asset = Asset("securedr-incident-events")
    batch = [{"MessageId": str(i), "Body": json.dumps(b)} for i, b in enumerate(bodies)]
    asset_event = SimpleNamespace(extra={"from_trigger": True, "payload": {"message_batch": batch}})
    return {
        "dag": SimpleNamespace(dag_id="dr_incident_response"),
        "run_id": "asset_triggered__2026-12-03T13:00:00+00:00",
        "dag_run": SimpleNamespace(conf={"events": list(conf_events)}),
        "triggering_asset_events": {asset: [asset_event]} if bodies else {},
    }


@pytest.fixture
def alerts(estate, plan, aws):
    """An SQS queue subscribed to the plan's topic: what SNS published."""
    topic = ensure_notification_topic(plan, aws)
    sqs = boto3.client("sqs", region_name=DR, endpoint_url=aws)
    url = sqs.create_queue(QueueName="alerts")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    boto3.client("sns", region_name=DR, endpoint_url=aws).subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=arn["QueueArn"]
    )

    def read():
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in got]

    return read


def _trail(plan, estate):
    s3 = AwsClients().s3(DR)
    store = EvidenceStore(
        s3,
        bucket=plan.evidence_bucket.name,
        prefix=plan.evidence_bucket.prefix,
        kms_key_arn=estate.key_arns[DR],
        lock_mode=plan.evidence_bucket.object_lock_mode,
        lock_days=plan.evidence_bucket.object_lock_days,
    )
    return S3AuditTrail.for_evidence(store, plan.name).read().entries


def test_messages_come_from_the_asset_events_and_conf():
    context = _context(bodies=[{"a": 1}], conf_events=[{"b": 2}])
    assert messages_from_context(context) == ['{"a": 1}', {"b": 2}]


def test_contains_alerts_and_audits(estate, plan, aws, alerts):
    kms = boto3.client("kms", region_name=DR, endpoint_url=aws)
    key_arn = estate.key_arns[DR]
    kms.schedule_key_deletion(KeyId=key_arn.rsplit("/", 1)[1], PendingWindowInDays=7)
    ec2 = boto3.client("ec2", region_name=DR, endpoint_url=aws)
    ec2.disable_snapshot_block_public_access()
    bodies = [
        ev.kms_call("ScheduleKeyDeletion", key_arn=key_arn, pendingWindowInDays=7),
        ev.bpa_disabled(DR),
        ev.kms_call("PutKeyPolicy", key_arn=key_arn, policyName="default"),
        ev.ebs_share("snap-x", [{"group": "all"}], actor_arn=ev.RESTORE_SESSION),  # our own
        {"not": "an event"},
    ]
    result = RespondToIncidentsOperator(task_id="respond_to_incidents").execute(_context(bodies))

    assert kms.describe_key(KeyId=key_arn)["KeyMetadata"]["KeyState"] == "Enabled"
    assert ec2.get_snapshot_block_public_access_state()["State"] == "block-all-sharing"
    outcomes = {i["kind"]: i["outcome"] for i in result["incidents"]}
    assert outcomes == {
        "key-deletion-scheduled": "contained",
        "snapshot-block-public-access-disabled": "contained",
        "key-policy-changed": "alert-only",
    }
    [alert] = alerts()
    assert alert["Subject"].startswith("SecureDR INCIDENT (3)")
    assert "CancelKeyDeletion + EnableKey" in alert["Message"]
    assert "alert only" in alert["Message"]
    audited = [e for e in _trail(plan, estate) if e.action.startswith("incident:")]
    assert sorted(e.action for e in audited) == [
        "incident:key-deletion-scheduled",
        "incident:key-policy-changed",
        "incident:snapshot-block-public-access-disabled",
    ]
    assert {e.actor for e in audited} == {
        "arn:aws:sts::123456789012:assumed-role/ops-admin/mallory"
    }


def test_deleted_dr_copy_is_alert_only_and_a_failed_containment_fails_the_task(
    estate, plan, alerts
):
    bodies = [
        ev.delete_snapshot("snap-0fedcba9876543210"),
        ev.ebs_share("snap-gone", [{"group": "all"}]),  # no such snapshot: containment fails
    ]
    with pytest.raises(AirflowFailException, match="containment failed"):
        RespondToIncidentsOperator(task_id="respond_to_incidents").execute(_context(bodies))
    [alert] = alerts()
    assert "snap-0fedcba9876543210" in alert["Message"]
    assert "InvalidSnapshot.NotFound" in alert["Message"]
    outcomes = {e.action: e.outcome for e in _trail(plan, estate)}
    assert outcomes["incident:dr-copy-deleted"] == "alert-only"
    assert outcomes["incident:snapshot-shared"] == "failed"


def test_only_own_calls_means_nothing_to_do(estate, alerts):
    bodies = [ev.ebs_share("snap-x", [{"group": "all"}], actor_arn=ev.RESTORE_SESSION)]
    result = RespondToIncidentsOperator(task_id="respond_to_incidents").execute(_context(bodies))
    assert result == {"messages": 1, "incidents": []}
    assert alerts() == []


def _from_queue(aws, plan, events):
    """Messages as the watcher hands them over: received (hidden 120 s), not deleted."""
    from sandbox.incidents import ensure_incident_pipeline, put_event

    queue = ensure_incident_pipeline(plan, aws)["queue_url"]
    for event in events:
        put_event(event, aws, DR)
    sqs = boto3.client("sqs", region_name=DR, endpoint_url=aws)
    got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, VisibilityTimeout=120)
    context = _context()
    asset_event = SimpleNamespace(extra={"payload": {"message_batch": got["Messages"]}})
    context["triggering_asset_events"] = {Asset("securedr-incident-events"): [asset_event]}

    def in_flight() -> int:
        attributes = sqs.get_queue_attributes(
            QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessagesNotVisible"])

    return context, in_flight


def test_handled_messages_are_deleted_from_the_queue(estate, plan, aws, alerts):
    ec2 = boto3.client("ec2", region_name=DR, endpoint_url=aws)
    ec2.disable_snapshot_block_public_access()
    context, in_flight = _from_queue(aws, plan, [ev.bpa_disabled(DR)])
    assert in_flight() == 1
    RespondToIncidentsOperator(task_id="respond_to_incidents").execute(context)
    assert in_flight() == 0


def test_messages_of_a_failed_run_stay_to_come_back(estate, plan, aws, alerts):
    context, in_flight = _from_queue(aws, plan, [ev.ebs_share("snap-gone", [{"group": "all"}])])
    with pytest.raises(AirflowFailException):
        RespondToIncidentsOperator(task_id="respond_to_incidents").execute(context)
    assert in_flight() == 1
