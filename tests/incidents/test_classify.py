"""Classification of CloudTrail-via-EventBridge events into DR incidents (pure)."""

from __future__ import annotations

import copy

import pytest

from securedr.core import incident as inc
from tests.incidents import events as ev


@pytest.fixture
def scope(plan):
    return inc.ResponseScope.from_plan(plan, key_arns=[ev.DR_KEY_ARN])


def test_public_ebs_share_literal_event(scope):
    found = inc.classify(ev.EBS_PUBLIC_LITERAL, scope)
    assert found is not None
    assert found.kind == inc.SNAPSHOT_SHARED
    assert found.resource == "snap-0123456789abcdef0"
    assert found.actor.endswith("assumed-role/ops-admin/mallory")
    assert found.event_time == "2026-12-03T13:00:00Z"
    assert found.containment == inc.Containment(
        inc.UNSHARE_EBS_SNAPSHOT,
        "us-west-2",
        {"snapshot_id": "snap-0123456789abcdef0", "group_names": ["all"], "user_ids": []},
    )


def test_share_with_outsider_is_an_incident_but_inside_accounts_are_not(scope, plan):
    event = ev.ebs_share("snap-1", [{"userId": ev.OUTSIDER}, {"userId": "123456789012"}])
    found = inc.classify(event, scope)
    assert found.containment.params["user_ids"] == [ev.OUTSIDER]
    assert found.containment.params["group_names"] == []
    # the workload account itself and a trusted account are inside the plan
    trusted = plan.model_copy(
        update={
            "incident_response": plan.incident_response.model_copy(
                update={"trusted_accounts": [ev.OUTSIDER]}
            )
        }
    )
    inside = inc.ResponseScope.from_plan(trusted)
    assert inc.classify(event, inside) is None


def test_removing_a_share_is_no_incident(scope):
    assert inc.classify(ev.ebs_unshare("snap-1", [{"group": "all"}]), scope) is None


def test_rds_share_public_and_outside(scope):
    found = inc.classify(ev.rds_share("dr-db-1", ["all", ev.OUTSIDER]), scope)
    assert found.kind == inc.SNAPSHOT_SHARED
    assert found.containment.action == inc.UNSHARE_DB_SNAPSHOT
    assert found.containment.params == {
        "snapshot_id": "dr-db-1",
        "values": sorted([ev.OUTSIDER, "all"]),
    }
    assert inc.classify(ev.rds_share("dr-db-1", ["123456789012"]), scope) is None


def test_vault_account_is_inside_the_plan():
    from securedr.core.plan import load_plan

    vault_plan = load_plan("include/dr_plan.vault.yaml")
    scope = inc.ResponseScope.from_plan(vault_plan)
    assert vault_plan.vault.account_id in scope.inside_accounts
    event = ev.ebs_share("snap-1", [{"userId": vault_plan.vault.account_id}])
    assert inc.classify(event, scope) is None


def test_bpa_disabled(scope):
    found = inc.classify(ev.bpa_disabled("eu-west-1"), scope)
    assert found.kind == inc.SNAPSHOT_BPA_DISABLED
    assert found.containment == inc.Containment(
        inc.BLOCK_SNAPSHOT_PUBLIC_ACCESS, "eu-west-1", {"state": "block-all-sharing"}
    )


def test_region_outside_the_plan_is_ignored(scope):
    assert inc.classify(ev.bpa_disabled("ap-south-1"), scope) is None


@pytest.mark.parametrize(
    ("name", "kind", "action"),
    [
        ("DisableKey", inc.KEY_DISABLED, inc.ENABLE_KEY),
        ("ScheduleKeyDeletion", inc.KEY_DELETION_SCHEDULED, inc.CANCEL_KEY_DELETION),
        ("PutKeyPolicy", inc.KEY_POLICY_CHANGED, None),
    ],
)
def test_plan_key_events(scope, name, kind, action):
    found = inc.classify(ev.kms_call(name), scope)
    assert found.kind == kind
    assert found.resource == ev.DR_KEY_ARN
    assert (found.containment.action if found.containment else None) == action
    assert inc.classify(ev.kms_call(name, key_arn=ev.OTHER_KEY_ARN), scope) is None


@pytest.mark.parametrize(
    ("name", "params", "action"),
    [
        (
            "PutBucketVersioning",
            {"VersioningConfiguration": {"Status": "Suspended"}},
            inc.ENABLE_BUCKET_VERSIONING,
        ),
        (
            "PutBucketPublicAccessBlock",
            {
                "PublicAccessBlock": {
                    "PublicAccessBlockConfiguration": {
                        "BlockPublicAcls": True,
                        "IgnorePublicAcls": True,
                        "BlockPublicPolicy": False,
                        "RestrictPublicBuckets": True,
                    }
                }
            },
            inc.BLOCK_BUCKET_PUBLIC_ACCESS,
        ),
        (
            "DeleteBucketPublicAccessBlock",
            {"publicAccessBlock": ""},
            inc.BLOCK_BUCKET_PUBLIC_ACCESS,
        ),
        ("PutBucketPolicy", {"bucketPolicy": {"Version": "2012-10-17"}}, None),
        ("DeleteBucketPolicy", {"policy": ""}, None),
        ("PutObjectLockConfiguration", {"ObjectLockConfiguration": {}}, None),
    ],
)
def test_evidence_bucket_changes(scope, name, params, action):
    found = inc.classify(ev.s3_call(name, **params), scope)
    assert found.kind == inc.EVIDENCE_BUCKET_CHANGED
    assert found.resource == "securedr-evidence-demo"
    assert (found.containment.action if found.containment else None) == action
    assert inc.classify(ev.s3_call(name, bucket="someone-else", **params), scope) is None


def test_versioning_enabled_is_no_incident(scope):
    event = ev.s3_call("PutBucketVersioning", VersioningConfiguration={"Status": "Enabled"})
    assert inc.classify(event, scope) is None


def test_evidence_deletion_under_the_prefix_only(scope):
    found = inc.classify(ev.s3_call("DeleteObject", key="securedr/audit/demo-estate/1.json"), scope)
    assert found.kind == inc.EVIDENCE_DELETED and found.alert_only
    assert found.resource == "s3://securedr-evidence-demo/securedr/audit/demo-estate/1.json"
    assert inc.classify(ev.s3_call("DeleteObject", key="other/x"), scope) is None
    assert inc.classify(ev.s3_call("DeleteObjects", delete=""), scope).kind == inc.EVIDENCE_DELETED


def test_snapshot_deletion_is_alert_only(scope):
    for kind in ("ebs", "rds"):
        found = inc.classify(ev.delete_snapshot("snap-9", kind), scope)
        assert found.kind == inc.DR_COPY_DELETED and found.alert_only
        assert found.details["snapshot_kind"] == kind


def test_role_policy_changes_on_securedr_roles_only(scope):
    for name in inc.IAM_ROLE_EVENTS:
        for role in ("securedr-restore", "securedr-backup"):
            found = inc.classify(ev.iam_call(name, role, policyName="x"), scope)
            assert found.kind == inc.ROLE_POLICY_CHANGED and found.alert_only
        assert inc.classify(ev.iam_call(name, "app-role"), scope) is None


def test_own_role_sessions_are_ignored(scope):
    own = ev.ebs_share("snap-1", [{"group": "all"}], actor_arn=ev.RESTORE_SESSION)
    assert inc.classify(own, scope) is None
    # the backup role is SecureDR's: its prefixed sessions are ignored...
    backup = "arn:aws:sts::123456789012:assumed-role/securedr-backup/securedr-backup-run1"
    assert inc.classify(ev.delete_snapshot("snap-9", actor_arn=backup), scope) is None
    # ...but the prefix proves nothing under another role
    forged = "arn:aws:sts::123456789012:assumed-role/ops-admin/securedr-restore-x"
    assert inc.classify(ev.delete_snapshot("snap-9", actor_arn=forged), scope) is not None
    # and a session of the backup role without SecureDR's prefix is no SecureDR call
    assert inc.classify(ev.delete_snapshot("snap-9", actor_arn=ev.BACKUP_SESSION), scope)


def test_own_principal_arns_from_the_plan(plan):
    user = "arn:aws:iam::123456789012:user/securedr-nightly"
    configured = plan.model_copy(
        update={
            "incident_response": plan.incident_response.model_copy(
                update={"own_principal_arns": [user]}
            )
        }
    )
    scope = inc.ResponseScope.from_plan(configured)
    event = ev.delete_snapshot("snap-9", actor_arn=user)
    assert inc.classify(event, scope) is None
    assert inc.classify(event, inc.ResponseScope.from_plan(plan)) is not None


def test_failed_calls_are_ignored(scope):
    assert inc.classify(ev.bpa_disabled(error_code="AccessDenied"), scope) is None


def test_not_a_cloudtrail_event(scope):
    event = copy.deepcopy(ev.EBS_PUBLIC_LITERAL)
    event["detail-type"] = "EBS Snapshot Notification"
    with pytest.raises(inc.EventShapeError, match="AWS API Call via CloudTrail"):
        inc.classify(event, scope)
    with pytest.raises(inc.EventShapeError):
        inc.parse_message_body("not json")
