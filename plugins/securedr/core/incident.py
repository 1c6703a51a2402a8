"""Classify CloudTrail API calls (as EventBridge delivers them) into DR incidents.

Pure: no Airflow, no boto3. :func:`classify` takes one EventBridge event of detail-type
``AWS API Call via CloudTrail`` and a :class:`ResponseScope` (what the plan protects, which
accounts are inside it, which principals are SecureDR's own) and returns an :class:`Incident`
naming the kind, the resource, the actor, the event time and the proposed containment, or None
when the call is not an incident (SecureDR's own call, a failed call, a resource outside the
plan, a change that does not weaken anything).

Guarantees: a call that failed (``errorCode`` set) is never an incident; a call by SecureDR's own
principals is never an incident (see :meth:`ResponseScope.is_own`); the proposed containment is
always safe and reversible (it removes only what the call added, or puts a protection back);
anything that cannot be undone safely is proposed as alert-only (``containment is None``).

Event shape (EventBridge envelope with the CloudTrail record in ``detail``):
https://docs.aws.amazon.com/eventbridge/latest/ref/events-structure.html
https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-record-contents.html
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from securedr.core.plan import Plan

DETAIL_TYPE = "AWS API Call via CloudTrail"

# Incident kinds.
SNAPSHOT_SHARED = "snapshot-shared"
SNAPSHOT_BPA_DISABLED = "snapshot-block-public-access-disabled"
KEY_DISABLED = "key-disabled"
KEY_DELETION_SCHEDULED = "key-deletion-scheduled"
KEY_POLICY_CHANGED = "key-policy-changed"
EVIDENCE_BUCKET_CHANGED = "evidence-bucket-changed"
EVIDENCE_DELETED = "evidence-deleted"
DR_COPY_DELETED = "dr-copy-deleted"
ROLE_POLICY_CHANGED = "role-policy-changed"

# Containment actions (see securedr.aws.containment, one function each).
UNSHARE_EBS_SNAPSHOT = "unshare-ebs-snapshot"
UNSHARE_DB_SNAPSHOT = "unshare-db-snapshot"
BLOCK_SNAPSHOT_PUBLIC_ACCESS = "block-snapshot-public-access"
CANCEL_KEY_DELETION = "cancel-key-deletion"  # CancelKeyDeletion, then EnableKey
ENABLE_KEY = "enable-key"
ENABLE_BUCKET_VERSIONING = "enable-bucket-versioning"
BLOCK_BUCKET_PUBLIC_ACCESS = "block-bucket-public-access"

#: S3 bucket-level calls on the evidence bucket. CloudTrail names PutPublicAccessBlock
#: "PutBucketPublicAccessBlock"; both spellings are accepted.
#: https://docs.aws.amazon.com/AmazonS3/latest/userguide/cloudtrail-logging-s3-info.html
S3_BUCKET_EVENTS = (
    "PutBucketPolicy",
    "DeleteBucketPolicy",
    "PutBucketPublicAccessBlock",
    "DeleteBucketPublicAccessBlock",
    "PutPublicAccessBlock",
    "DeletePublicAccessBlock",
    "PutBucketVersioning",
    "PutObjectLockConfiguration",
    "PutBucketObjectLockConfiguration",
)
S3_DELETE_EVENTS = ("DeleteObject", "DeleteObjects")
IAM_ROLE_EVENTS = ("PutRolePolicy", "AttachRolePolicy", "DetachRolePolicy", "DeleteRolePolicy")
KMS_EVENTS = ("DisableKey", "ScheduleKeyDeletion", "PutKeyPolicy")

_ASSUMED_ROLE = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):sts::(?P<account>\d{12}):assumed-role/(?P<role>[^/]+)/"
    r"(?P<session>.+)$"
)
_ACCOUNT_IN_ARN = re.compile(r"^arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:(\d{12}):")
_KEY_ID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32}"
)
_PUBLIC_ACCESS_FLAGS = (
    "BlockPublicAcls",
    "IgnorePublicAcls",
    "BlockPublicPolicy",
    "RestrictPublicBuckets",
)


class EventShapeError(ValueError):
    """The message is no EventBridge CloudTrail event; it names what is missing."""


@dataclass(frozen=True)
class Containment:
    """One safe, reversible action that undoes an incident (see securedr.aws.containment)."""

    action: str
    region: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Incident:
    """A DR incident: what happened to which resource, by whom, when, and what to do."""

    kind: str
    resource: str  #: the snapshot id, key ARN, bucket, ``s3://bucket/key`` or role name
    region: str
    actor: str  #: the caller's ARN (userIdentity.arn)
    event_time: str  #: CloudTrail eventTime (ISO 8601, UTC)
    event_name: str
    event_id: str
    summary: str
    containment: Containment | None  #: None: alert only (nothing safe to undo)
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def alert_only(self) -> bool:
        return self.containment is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "resource": self.resource,
            "region": self.region,
            "actor": self.actor,
            "event_time": self.event_time,
            "event_name": self.event_name,
            "event_id": self.event_id,
            "summary": self.summary,
            "containment": None
            if self.containment is None
            else {
                "action": self.containment.action,
                "region": self.containment.region,
                "params": dict(self.containment.params),
            },
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class ResponseScope:
    """What the plan protects and who is SecureDR, as classification needs it.

    ``key_arns``: the ARNs behind the plan's KMS keys (aliases resolved by the caller).
    """

    plan_name: str
    regions: frozenset[str]
    dr_region: str
    inside_accounts: frozenset[str]
    key_arns: frozenset[str]
    evidence_bucket: str
    evidence_prefix: str
    watched_roles: frozenset[str]  #: role names whose policies are watched
    own_roles: frozenset[str]  #: role ARNs whose prefixed sessions are SecureDR's own
    own_principals: frozenset[str]  #: IAM user / role ARNs: every call is SecureDR's own
    own_session_prefixes: tuple[str, ...]
    block_public_access_state: str = "block-all-sharing"

    @classmethod
    def from_plan(cls, plan: Plan, key_arns: Iterable[str] = ()) -> ResponseScope:
        response = plan.incident_response
        role_arns = [plan.restore.role_arn, response.backup_role_arn]
        accounts = set(response.trusted_accounts)
        if plan.vault is not None:
            role_arns += [plan.vault.role_arn, plan.vault.recovery.role_arn]
            accounts.add(plan.vault.account_id)
        for arn in role_arns:
            match = _ACCOUNT_IN_ARN.match(arn or "")
            if match:
                accounts.add(match[1])
        roles = [arn for arn in role_arns if arn]
        watched = {
            arn.rsplit("/", 1)[-1]
            for arn in (plan.restore.role_arn, response.backup_role_arn)
            if arn
        }
        return cls(
            plan_name=plan.name,
            regions=frozenset(plan.all_regions),
            dr_region=plan.regions.dr,
            inside_accounts=frozenset(accounts),
            key_arns=frozenset(key_arns),
            evidence_bucket=plan.evidence_bucket.name,
            evidence_prefix=plan.evidence_bucket.prefix.strip("/") + "/",
            watched_roles=frozenset(watched),
            own_roles=frozenset(roles),
            own_principals=frozenset(response.own_principal_arns),
            own_session_prefixes=tuple(response.own_session_prefixes),
            block_public_access_state=response.block_public_access_state,
        )

    def is_own(self, identity: Mapping[str, Any]) -> bool:
        """True when ``userIdentity`` is one of SecureDR's own principals or role sessions."""
        arn = str(identity.get("arn") or "")
        if arn in self.own_principals:
            return True
        match = _ASSUMED_ROLE.match(arn)
        if match is None:
            return False
        issuer = ((identity.get("sessionContext") or {}).get("sessionIssuer") or {}).get("arn")
        role_arn = (
            issuer or f"arn:{match['partition']}:iam::{match['account']}:role/{match['role']}"
        )
        if role_arn in self.own_principals:
            return True
        return role_arn in self.own_roles and match["session"].startswith(self.own_session_prefixes)

    def is_plan_key(self, key: str) -> bool:
        if key in self.key_arns:
            return True
        found = _KEY_ID.search(key)
        return bool(found) and any(arn.endswith("/" + found[0]) for arn in self.key_arns)


def parse_message_body(body: str | Mapping[str, Any]) -> dict[str, Any]:
    """The EventBridge event in an SQS message body (EventBridge sends the event as JSON)."""
    import json

    if isinstance(body, Mapping):
        return dict(body)
    try:
        event = json.loads(body)
    except (TypeError, ValueError):
        raise EventShapeError("the message body is not JSON") from None
    if not isinstance(event, dict):
        raise EventShapeError("the message body is not a JSON object")
    return event


def classify(event: Mapping[str, Any], scope: ResponseScope) -> Incident | None:
    """The incident ``event`` is, or None (see the module docstring for the guarantees).

    Raises :class:`EventShapeError` when ``event`` is no CloudTrail API-call event at all.
    """
    if event.get("detail-type") != DETAIL_TYPE or not isinstance(event.get("detail"), Mapping):
        raise EventShapeError(
            f"expected an EventBridge event of detail-type {DETAIL_TYPE!r} with a 'detail' "
            f"object, found detail-type {event.get('detail-type')!r}"
        )
    detail: Mapping[str, Any] = event["detail"]
    if detail.get("errorCode"):
        return None  # the call failed: nothing changed
    identity = detail.get("userIdentity") or {}
    if scope.is_own(identity):
        return None
    name = str(detail.get("eventName") or "")
    source = str(detail.get("eventSource") or "")
    region = str(detail.get("awsRegion") or event.get("region") or "")
    params = detail.get("requestParameters") or {}
    base = _Base(
        actor=str(identity.get("arn") or identity.get("principalId") or "unknown"),
        event_time=str(detail.get("eventTime") or event.get("time") or ""),
        event_name=name,
        event_id=str(detail.get("eventID") or event.get("id") or ""),
        region=region,
        account=str(detail.get("recipientAccountId") or event.get("account") or ""),
    )
    if source == "iam.amazonaws.com":
        return _iam(base, params, scope)
    if region not in scope.regions:
        return None
    if source == "ec2.amazonaws.com":
        return _ec2(base, params, scope)
    if source == "rds.amazonaws.com":
        return _rds(base, params, scope)
    if source == "kms.amazonaws.com":
        return _kms(base, params, detail, scope)
    if source == "s3.amazonaws.com":
        return _s3(base, params, scope)
    return None


@dataclass(frozen=True)
class _Base:
    actor: str
    event_time: str
    event_name: str
    event_id: str
    region: str
    account: str

    def incident(
        self,
        kind: str,
        resource: str,
        summary: str,
        containment: Containment | None,
        **details: Any,
    ) -> Incident:
        return Incident(
            kind=kind,
            resource=resource,
            region=self.region,
            actor=self.actor,
            event_time=self.event_time,
            event_name=self.event_name,
            event_id=self.event_id,
            summary=summary,
            containment=containment,
            details=details,
        )


def _outsiders(values: Iterable[str], scope: ResponseScope, own_account: str) -> list[str]:
    inside = scope.inside_accounts | {own_account}
    return sorted({v for v in values if v == "all" or v not in inside})


def _items(node: Any) -> list[Mapping[str, Any]]:
    items = (node or {}).get("items") if isinstance(node, Mapping) else None
    return [i for i in items or [] if isinstance(i, Mapping)]


def _ec2(base: _Base, params: Mapping[str, Any], scope: ResponseScope) -> Incident | None:
    if base.event_name == "ModifySnapshotAttribute":
        # CloudTrail records the change as createVolumePermission.add.items[] of {group: all}
        # or {userId: account}; a removal is no incident.
        added = _items((params.get("createVolumePermission") or {}).get("add"))
        groups = [str(i["group"]) for i in added if i.get("group")]
        users = [str(i["userId"]) for i in added if i.get("userId")]
        outside = _outsiders(users, scope, base.account)
        public = "all" in groups
        if not public and not outside:
            return None
        snapshot = str(params.get("snapshotId") or "")
        who = ", ".join((["everyone (public)"] if public else []) + outside)
        return base.incident(
            SNAPSHOT_SHARED,
            snapshot,
            f"EBS snapshot {base.region}/{snapshot} shared with {who}",
            Containment(
                UNSHARE_EBS_SNAPSHOT,
                base.region,
                {
                    "snapshot_id": snapshot,
                    "group_names": ["all"] if public else [],
                    "user_ids": outside,
                },
            ),
            public=public,
            accounts=outside,
        )
    if base.event_name == "DisableSnapshotBlockPublicAccess":
        return base.incident(
            SNAPSHOT_BPA_DISABLED,
            f"ebs-snapshot-block-public-access:{base.region}",
            f"EBS snapshot block public access turned off in {base.region}",
            Containment(
                BLOCK_SNAPSHOT_PUBLIC_ACCESS,
                base.region,
                {"state": scope.block_public_access_state},
            ),
        )
    if base.event_name == "DeleteSnapshot":
        snapshot = str(params.get("snapshotId") or "")
        return base.incident(
            DR_COPY_DELETED,
            snapshot,
            f"EBS snapshot {base.region}/{snapshot} deleted outside SecureDR's retention",
            None,
            snapshot_kind="ebs",
        )
    return None


def _rds(base: _Base, params: Mapping[str, Any], scope: ResponseScope) -> Incident | None:
    snapshot = str(params.get("dBSnapshotIdentifier") or "")
    if base.event_name == "ModifyDBSnapshotAttribute":
        if params.get("attributeName") != "restore":
            return None
        outside = _outsiders([str(v) for v in params.get("valuesToAdd") or []], scope, base.account)
        if not outside:
            return None
        who = ", ".join("everyone (public)" if v == "all" else v for v in outside)
        return base.incident(
            SNAPSHOT_SHARED,
            snapshot,
            f"DB snapshot {base.region}/{snapshot} shared with {who}",
            Containment(
                UNSHARE_DB_SNAPSHOT, base.region, {"snapshot_id": snapshot, "values": outside}
            ),
            public="all" in outside,
            accounts=[v for v in outside if v != "all"],
        )
    if base.event_name == "DeleteDBSnapshot":
        return base.incident(
            DR_COPY_DELETED,
            snapshot,
            f"DB snapshot {base.region}/{snapshot} deleted outside SecureDR's retention",
            None,
            snapshot_kind="rds",
        )
    return None


def _kms(
    base: _Base, params: Mapping[str, Any], detail: Mapping[str, Any], scope: ResponseScope
) -> Incident | None:
    if base.event_name not in KMS_EVENTS:
        return None
    # detail.resources names the key's ARN whatever form (id, ARN, alias) the caller used.
    arns = [
        str(r.get("ARN"))
        for r in detail.get("resources") or []
        if isinstance(r, Mapping) and r.get("type") == "AWS::KMS::Key" and r.get("ARN")
    ]
    key = next((a for a in arns if scope.is_plan_key(a)), None)
    if key is None:
        given = str(params.get("keyId") or "")
        key = given if given and scope.is_plan_key(given) else None
    if key is None:
        return None
    if base.event_name == "DisableKey":
        return base.incident(
            KEY_DISABLED,
            key,
            f"plan KMS key {key} disabled",
            Containment(ENABLE_KEY, base.region, {"key_id": key}),
        )
    if base.event_name == "ScheduleKeyDeletion":
        days = params.get("pendingWindowInDays")
        return base.incident(
            KEY_DELETION_SCHEDULED,
            key,
            f"plan KMS key {key} scheduled for deletion"
            + (f" in {days} days" if days is not None else ""),
            Containment(CANCEL_KEY_DELETION, base.region, {"key_id": key}),
            pending_window_days=days,
        )
    # A key policy cannot be put back safely from an event: CloudTrail does not record the
    # policy it replaced, and a wrong policy can lock everyone (SecureDR included) out of the key.
    return base.incident(
        KEY_POLICY_CHANGED,
        key,
        f"plan KMS key {key} given a new key policy (review it; not reverted automatically)",
        None,
    )


def _s3(base: _Base, params: Mapping[str, Any], scope: ResponseScope) -> Incident | None:
    bucket = str(params.get("bucketName") or "")
    if bucket != scope.evidence_bucket:
        return None
    name = base.event_name
    if name in S3_DELETE_EVENTS:
        key = str(params.get("key") or "")
        if name == "DeleteObject" and not key.startswith(scope.evidence_prefix):
            return None
        what = f"s3://{bucket}/{key}" if key else f"s3://{bucket}/{scope.evidence_prefix}"
        version = params.get("versionId")
        return base.incident(
            EVIDENCE_DELETED,
            what,
            f"{name} on evidence {what}"
            + (f" (version {version})" if version else " (a delete marker hides it)"),
            None,
            version_id=version,
        )
    if name not in S3_BUCKET_EVENTS:
        return None
    if name == "PutBucketVersioning":
        config = params.get("VersioningConfiguration") or {}
        status = config.get("Status") if isinstance(config, Mapping) else None
        if status == "Enabled":
            return None
        return base.incident(
            EVIDENCE_BUCKET_CHANGED,
            bucket,
            f"versioning of evidence bucket {bucket} set to {status or 'unknown'}",
            Containment(ENABLE_BUCKET_VERSIONING, base.region, {"bucket": bucket}),
            setting="versioning",
            status=status,
        )
    if name in ("PutBucketPublicAccessBlock", "PutPublicAccessBlock"):
        block = params.get("PublicAccessBlock") or {}
        config = (
            block.get("PublicAccessBlockConfiguration", block) if isinstance(block, Mapping) else {}
        )
        off = [f for f in _PUBLIC_ACCESS_FLAGS if str(config.get(f, "false")).lower() != "true"]
        if not off:
            return None
        return base.incident(
            EVIDENCE_BUCKET_CHANGED,
            bucket,
            f"public access block of evidence bucket {bucket} weakened ({', '.join(off)} off)",
            Containment(BLOCK_BUCKET_PUBLIC_ACCESS, base.region, {"bucket": bucket}),
            setting="public-access-block",
            turned_off=off,
        )
    if name in ("DeleteBucketPublicAccessBlock", "DeletePublicAccessBlock"):
        return base.incident(
            EVIDENCE_BUCKET_CHANGED,
            bucket,
            f"public access block of evidence bucket {bucket} deleted",
            Containment(BLOCK_BUCKET_PUBLIC_ACCESS, base.region, {"bucket": bucket}),
            setting="public-access-block",
        )
    setting = "bucket-policy" if "Policy" in name else "object-lock"
    return base.incident(
        EVIDENCE_BUCKET_CHANGED,
        bucket,
        f"{name} on evidence bucket {bucket} (review it; not reverted automatically)",
        None,
        setting=setting,
    )


def _iam(base: _Base, params: Mapping[str, Any], scope: ResponseScope) -> Incident | None:
    if base.event_name not in IAM_ROLE_EVENTS:
        return None
    role = str(params.get("roleName") or "")
    if role not in scope.watched_roles:
        return None
    policy = params.get("policyArn") or params.get("policyName")
    return base.incident(
        ROLE_POLICY_CHANGED,
        role,
        f"{base.event_name} on SecureDR role {role}"
        + (f" ({policy})" if policy else "")
        + "; review it (IAM changes are not reverted automatically)",
        None,
        policy=policy,
    )
