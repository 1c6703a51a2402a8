"""Several AWS accounts in the sandbox: what one account may do with another's snapshots and keys.

Moto keeps one backend per account and maps credentials to an account (an ``AssumeRole`` into a
role ARN of another account answers credentials of that account; see :mod:`sandbox.accounts`).
But each service only ever looks in the caller's own account: a shared snapshot cannot be copied,
a key of another account cannot be addressed by ARN, and no key policy is judged. This module
gives the sandbox AWS's cross-account rules, always on (they only ever apply when two accounts
meet, so single-account behaviour is moto's, unchanged):

EBS (https://docs.aws.amazon.com/ebs/latest/userguide/ebs-modifying-snapshot-permissions.html,
https://docs.aws.amazon.com/ebs/latest/userguide/share-kms-key.html)

- ``CopySnapshot`` of a snapshot owned by another account works only when the owner shared it
  with the caller's account (``createVolumePermission`` for that account id, or public). A
  snapshot not shared with the caller does not exist for it: ``InvalidSnapshot.NotFound``
  (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html).
- The copy is owned by the caller, in the caller's Region backend, encrypted under the
  ``KmsKeyId`` given (reported as the key's ARN). If the caller may not use the source
  snapshot's key (the key policy does not grant it ``kms:DescribeKey``, ``kms:CreateGrant``,
  ``kms:GenerateDataKey``, ``kms:GenerateDataKeyWithoutPlaintext``, ``kms:ReEncryptFrom`` and
  ``kms:Decrypt``, the key is disabled or pending deletion, or it is the owner's AWS managed
  key), or may not use the destination key, the call still answers a ``SnapshotId``: "if you
  attempt to copy an encrypted snapshot without having permissions to use the encryption key,
  the operation fails silently and the snapshot copy receives the "Given key ID is not
  accessible" status message" (https://docs.aws.amazon.com/ebs/latest/userguide/ebs-copy-snapshot.html;
  ``StateMessage``: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_Snapshot.html).
  The copy shows ``State: error`` once its copy time (section ``timing``) has passed.
- ``DescribeSnapshots`` shows the snapshots the caller may create volumes from: its own, those
  shared with its account, public ones; ``OwnerIds`` (``self``, account ids) and
  ``RestorableByUserIds`` (``self``, account ids, ``all``) narrow the answer
  (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeSnapshots.html). Asking by
  id for another account's snapshot not shared with the caller answers
  ``InvalidSnapshot.NotFound``. Deleting, sharing or locking another account's snapshot stays
  impossible (moto looks in the caller's own account only: ``InvalidSnapshot.NotFound``).

RDS (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_ShareSnapshot.html,
https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CopyDBSnapshot.html)

- ``CopyDBSnapshot`` with the ARN of another account's manual snapshot works only when the owner
  shared it (``ModifyDBSnapshotAttribute`` ``AttributeName=restore``, the caller's account id or
  ``all``); otherwise ``DBSnapshotNotFound``. An encrypted shared snapshot needs a ``KmsKeyId``
  (API reference: "If you copy an encrypted DB snapshot that is shared from another AWS account,
  then you must specify a value for KmsKeyId"), and its key must be usable by the caller: a
  snapshot under the owner's AWS managed key (aws/rds) cannot be copied by another account
  ("You can't share a snapshot that has been encrypted using the default AWS KMS key of the AWS
  account that shared the snapshot", USER_ShareSnapshot). Refusal: ``KMSKeyNotAccessibleFault``
  "The source snapshot KMS key [<arn>] does not exist, is not enabled or you do not have
  permissions to access it." (RDS's message as quoted in awslabs/aurora-snapshot-tool#26 and #29).

KMS (https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-modifying-external-accounts.html)

- A key of another account can be named by its key ARN (or alias ARN) in the same Region. Only
  the operations AWS documents as "Cross-account use: Yes" (``DescribeKey``, ``Encrypt``,
  ``Decrypt``, ``ReEncrypt``, ``GenerateDataKey*``, ``CreateGrant``, ``ListGrants``,
  ``RetireGrant``, ``RevokeGrant``, ``GetPublicKey``, ``Sign``, ``Verify``, ``GenerateMac``,
  ``VerifyMac``, ``DeriveSharedSecret``) are judged by the key's policy
  (:mod:`sandbox.key_policy`); every other operation (``DisableKey``, ``ScheduleKeyDeletion``,
  ``PutKeyPolicy``, ``EnableKey``, ``GetKeyPolicy``...) fails across accounts whatever the key
  policy says ("if you give a principal in a different account kms:ScheduleKeyDeletion ... in a
  key policy, the user's attempts to call these operations on resources fail", same page; each
  API reference: "Cross-account use: No"). A refused call answers ``AccessDeniedException``
  "User: <caller ARN> is not authorized to perform: kms:<Action> on resource: <key ARN> because
  no resource-based policy allows the kms:<Action> action", KMS's answer when the key policy
  does not allow a call.

Sandbox-only: ``CreateKey`` with the tag ``securedr:sandbox-key-id`` creates the key with that
key id (and drops the tag), so a plan can name a key ARN before the sandbox exists.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models import ec2_backends
from moto.ec2.models.elastic_block_store import Snapshot
from moto.ec2.responses import EC2Response
from moto.ec2.utils import random_snapshot_id
from moto.kms.models import KmsBackend, kms_backends
from moto.kms.responses import KmsResponse
from moto.rds.exceptions import DBSnapshotNotFoundFault, RDSClientError
from moto.rds.models import DBSnapshot, RDSBackend, rds_backends
from moto.rds.responses import RDSResponse
from moto.utilities.utils import get_partition

from sandbox import key_policy, realism

SANDBOX_KEY_ID_TAG = "securedr:sandbox-key-id"
NOT_ACCESSIBLE = "Given key ID is not accessible"

#: KMS operations AWS lets a principal of another account perform (key policy permitting).
KMS_CROSS_ACCOUNT = frozenset(
    {
        "CreateGrant",
        "Decrypt",
        "DeriveSharedSecret",
        "DescribeKey",
        "Encrypt",
        "GenerateDataKey",
        "GenerateDataKeyPair",
        "GenerateDataKeyPairWithoutPlaintext",
        "GenerateDataKeyWithoutPlaintext",
        "GenerateMac",
        "GetPublicKey",
        "ListGrants",
        "ReEncrypt",
        "RetireGrant",
        "RevokeGrant",
        "Sign",
        "Verify",
        "VerifyMac",
    }
)
#: What the user of a shared encrypted EBS snapshot needs on its key (share-kms-key.html).
EBS_SOURCE_KEY_ACTIONS = (
    "kms:DescribeKey",
    "kms:CreateGrant",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:ReEncryptFrom",
    "kms:Decrypt",
)
#: What encrypting a copy under a key of another account needs on that key.
DESTINATION_KEY_ACTIONS = (
    "kms:DescribeKey",
    "kms:CreateGrant",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:ReEncryptTo",
)
#: What copying a shared encrypted DB snapshot needs on the snapshot's key.
RDS_SOURCE_KEY_ACTIONS = ("kms:DescribeKey", "kms:CreateGrant", "kms:Decrypt")

_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:([a-z0-9-]+):(\d{12}):(key|alias)/(.+)$")
_ORIGINAL: dict[str, Any] = {}


# -- who is calling ----------------------------------------------------------------------------


def caller_arn(responder: Any) -> str | None:
    """The ARN of the principal whose credentials signed the request (as GetCallerIdentity)."""
    from moto.sts.models import sts_backends

    try:
        access_key = responder.get_access_key()
        account = responder.current_account
        partition = get_partition(getattr(responder, "region", "us-east-1"))
        _user_id, arn, _account = sts_backends[account][partition].get_caller_identity(
            access_key, responder.region
        )
    except Exception:  # an unsigned or unknown request: the account alone names it
        return None
    return str(arn)


def caller(responder: Any) -> key_policy.Principal:
    return key_policy.principal_for(responder.current_account, caller_arn(responder))


def _existing(backends: Any) -> Iterator[tuple[str, Any]]:
    """(account, per-Region backends) that exist, without creating any."""
    yield from list(dict.items(backends))


def _region_backend(backends: Any, account: str, region: str) -> Any:
    """The account's backend in ``region`` if it exists (never creates one)."""
    per_account = dict.get(backends, account)
    return None if per_account is None else dict.get(per_account, region)


# -- KMS ---------------------------------------------------------------------------------------


def resolve_key(account: str, region: str, key_id: str | None) -> Any:
    """The KMS key model ``key_id`` (id, ARN, alias name or alias ARN) names, or None."""
    if not key_id:
        return None
    match = _KEY_ARN.match(key_id)
    if match:
        region, account = match[1], match[2]
    backend = _region_backend(kms_backends, account, region)
    if backend is None:
        return None
    try:
        return backend.describe_key(key_id)
    except Exception:  # unknown key or alias
        return None


def _is_aws_managed(key: Any) -> bool:
    return getattr(key, "key_manager", "CUSTOMER") == "AWS" or any(
        name.startswith("alias/aws/") for name in getattr(key, "aliases", {}) or {}
    )


def key_usable(
    key: Any,
    actions: tuple[str, ...],
    principal: key_policy.Principal,
    *,
    via_service: str | None = None,
) -> bool:
    """Whether ``principal`` may use ``key`` for ``actions`` (the key's own account included).

    A key of the caller's own account is usable when it is enabled (the sandbox does not model
    IAM); a key of another account must also be customer managed and its key policy must allow
    every action. ``via_service`` marks the use as made by an AWS service on the caller's behalf
    (``kms:ViaService``, ``kms:GrantIsForAWSResource``).
    """
    if key is None or not getattr(key, "enabled", True) or key.key_state != "Enabled":
        return False
    if key.account_id == principal.account:
        return True
    if _is_aws_managed(key):
        return False
    context = {"kms:CallerAccount": principal.account, "aws:PrincipalAccount": principal.account}
    if via_service:
        context["kms:ViaService"] = via_service
        context["kms:GrantIsForAWSResource"] = "true"
    else:
        context["kms:GrantIsForAWSResource"] = "false"
    if len(principal.arns) > 1:
        context["aws:PrincipalArn"] = principal.arns[1]
    elif principal.arns:
        context["aws:PrincipalArn"] = principal.arns[0]
    return not key_policy.missing(key.policy, actions, principal, context)


def _foreign_key_account(self: KmsResponse) -> str | None:
    try:
        key_id = json.loads(self.body or "{}").get("KeyId")
    except ValueError:
        return None
    match = _KEY_ARN.match(str(key_id or ""))
    if not match or match[2] == self.current_account or match[1] != self.region:
        return None
    return match[2]


def _access_denied(principal: key_policy.Principal, action: str, resource: str) -> realism.AWSError:
    who = principal.arns[0] if principal.arns else f"arn:aws:iam::{principal.account}:root"
    return realism.AWSError(
        "AccessDeniedException",
        f"User: {who} is not authorized to perform: kms:{action} on resource: {resource} "
        f"because no resource-based policy allows the kms:{action} action",
        400,
    )


def _kms_backend(self: KmsResponse) -> KmsBackend:
    owner = _foreign_key_account(self)
    if owner is None:
        return kms_backends[self.current_account][self.region]
    backend: KmsBackend = kms_backends[owner][self.region]
    key_id = json.loads(self.body)["KeyId"]
    action = self._get_action()
    try:
        key = backend.describe_key(key_id)
    except Exception:  # unknown key: moto answers NotFoundException as for any key
        return backend
    principal = caller(self)
    context = {"kms:CallerAccount": principal.account, "kms:GrantIsForAWSResource": "false"}
    if action not in KMS_CROSS_ACCOUNT or key_policy.missing(
        key.policy, [f"kms:{action}"], principal, context
    ):
        raise _access_denied(principal, action, key.arn)
    return backend


def _create_key(self: KmsBackend, *args: Any, **kwargs: Any) -> Any:
    # Sandbox-only: a fixed key id, so a plan can name the key's ARN before the sandbox runs.
    names = ("policy", "key_usage", "key_spec", "description", "tags")
    params = dict(zip(names, args, strict=False)) | kwargs
    tags = list(params.get("tags") or [])
    wanted = next((t["TagValue"] for t in tags if t.get("TagKey") == SANDBOX_KEY_ID_TAG), None)
    params["tags"] = [t for t in tags if t.get("TagKey") != SANDBOX_KEY_ID_TAG] or None
    if wanted and wanted in self.keys:
        from moto.kms.exceptions import AlreadyExistsException

        raise AlreadyExistsException(f"A key with id {wanted} already exists")
    key = _ORIGINAL["create_key"](self, **params)
    if wanted:
        remembered = self.tagger.list_tags_for_resource(key.id).get("Tags", [])
        self.tagger.delete_all_tags_for_resource(key.id)
        del self.keys[key.id]
        key.id = wanted
        partition = get_partition(self.region_name)
        key.arn = f"arn:{partition}:kms:{self.region_name}:{self.account_id}:key/{wanted}"
        self.keys[wanted] = key
        if remembered:
            self.tagger.tag_resource(wanted, remembered)
    return key


def _by_any_id(name: str) -> Any:
    original = getattr(KmsBackend, name)

    def method(self: KmsBackend, key_id: str, *args: Any, **kwargs: Any) -> Any:
        # Moto indexes its keys by key id here and fails (HTTP 500) on a key ARN, which the
        # API accepts (https://docs.aws.amazon.com/kms/latest/APIReference/API_DisableKey.html).
        return original(self, self.get_key_id(key_id), *args, **kwargs)

    method.__name__ = name
    return method


#: Key-state operations moto only accepts a bare key id for.
_KEY_STATE_OPERATIONS = (
    "disable_key",
    "enable_key",
    "cancel_key_deletion",
    "schedule_key_deletion",
)


# -- EBS ---------------------------------------------------------------------------------------


def _status(self: Snapshot) -> str:
    status = self.__dict__.get("_sandbox_status", "completed")
    if status == "completed" and self.__dict__.get("_copy_error"):
        return "error"
    return str(status)


def _set_status(self: Snapshot, value: str) -> None:
    self.__dict__["_sandbox_status"] = value


def _state_message(self: Snapshot) -> str | None:
    return self.__dict__.get("_copy_error") if self.status == "error" else None


def shared_with(snapshot: Snapshot, account: str) -> bool:
    """Whether ``account`` may create volumes from (and copy) ``snapshot``."""
    return (
        snapshot.owner_id == account
        or account in snapshot.create_volume_permission_userids
        or "all" in snapshot.create_volume_permission_groups
    )


def _foreign_snapshot(snapshot_id: str, region: str, account: str) -> Snapshot | None:
    for owner, _ in _existing(ec2_backends):
        if owner == account:
            continue
        backend = _region_backend(ec2_backends, owner, region)
        if backend is not None and snapshot_id in backend.snapshots:
            return backend.snapshots[snapshot_id]  # type: ignore[no-any-return]
    return None


def _not_found(snapshot_id: str) -> EC2ClientError:
    return EC2ClientError(
        "InvalidSnapshot.NotFound", f"The snapshot '{snapshot_id}' does not exist."
    )


def _source_key(snapshot: Snapshot) -> Any:
    key_id = snapshot.kms_key_id or (snapshot.volume.kms_key_id if snapshot.volume else None)
    owner_region = snapshot.ec2_backend.region_name
    return resolve_key(snapshot.owner_id, owner_region, key_id)


def _copy_snapshot(self: EC2Response) -> Any:
    source_id = str(self._get_param("SourceSnapshotId") or "")
    source_region = str(self._get_param("SourceRegion") or self.region)
    account = self.current_account
    own = _region_backend(ec2_backends, account, source_region)
    if own is not None and source_id in own.snapshots:
        return _ORIGINAL["copy_snapshot"](self)
    source = _foreign_snapshot(source_id, source_region, account)
    if source is None:
        return _ORIGINAL["copy_snapshot"](self)  # moto's own InvalidSnapshot.NotFound
    if not shared_with(source, account):
        raise _not_found(source_id)
    self.error_on_dryrun()
    principal = caller(self)
    kms_key_id = self._get_param("KmsKeyId")
    encrypted = bool(source.encrypted or self._get_bool_param("Encrypted", False) or kms_key_id)
    failure = None
    if source.encrypted and not key_usable(
        _source_key(source),
        EBS_SOURCE_KEY_ACTIONS,
        principal,
        via_service=f"ec2.{source_region}.amazonaws.com",
    ):
        failure = NOT_ACCESSIBLE
    destination_key = resolve_key(account, self.region, kms_key_id) if kms_key_id else None
    if kms_key_id and not key_usable(
        destination_key,
        DESTINATION_KEY_ACTIONS,
        principal,
        via_service=f"ec2.{self.region}.amazonaws.com",
    ):
        failure = NOT_ACCESSIBLE
    backend = self.ec2_backend
    copy = Snapshot(
        backend,
        random_snapshot_id(),
        volume=source.volume,
        description=self._get_param("Description") or "",
        encrypted=encrypted,
        kms_key_id=destination_key.arn if destination_key is not None else kms_key_id,
    )
    if failure:
        copy.__dict__["_copy_error"] = failure
    backend.snapshots[copy.id] = copy
    copy.add_tags(self._parse_tag_specification().get("snapshot", {}))
    return ActionResult({"SnapshotId": copy.id, "Tags": copy.tag_set})


def _restorable_by(snapshot: Snapshot, who: str, account: str) -> bool:
    if who == "all":
        return "all" in snapshot.create_volume_permission_groups
    return shared_with(snapshot, account if who == "self" else who)


def _describe_snapshots(self: EC2Response) -> Any:
    from moto.ec2.utils import generic_filter

    account, region = self.current_account, self.region
    wanted = list(self._get_param("SnapshotIds", []) or [])
    owners = [account if o == "self" else o for o in self._get_param("OwnerIds", []) or []]
    restorable = list(self._get_param("RestorableByUserIds", []) or [])
    own = list(self.ec2_backend.snapshots.values())
    visible = own + [
        snapshot
        for owner, _ in _existing(ec2_backends)
        if owner != account
        for snapshot in list(
            getattr(_region_backend(ec2_backends, owner, region), "snapshots", {}).values()
        )
        if shared_with(snapshot, account)
    ]
    if wanted:
        by_id = {s.id: s for s in visible}
        for snapshot_id in wanted:
            if snapshot_id not in by_id:
                if _foreign_snapshot(snapshot_id, region, account) is not None:
                    raise _not_found(snapshot_id)
                from moto.ec2.exceptions import InvalidSnapshotIdError

                raise InvalidSnapshotIdError()  # moto's answer for an id nobody holds
        visible = [by_id[i] for i in dict.fromkeys(wanted)]
    if owners:
        visible = [s for s in visible if s.owner_id in owners]
    if restorable:
        visible = [s for s in visible if any(_restorable_by(s, w, account) for w in restorable)]
    filters = self._filters_from_querystring()
    if filters:
        visible = generic_filter(filters, visible)
    return ActionResult({"Snapshots": visible})


# -- RDS ---------------------------------------------------------------------------------------


class KMSKeyNotAccessible(RDSClientError):
    def __init__(self, message: str) -> None:
        super().__init__("KMSKeyNotAccessibleFault", message)


def _rds_snapshot_shared(snapshot: DBSnapshot, account: str) -> bool:
    allowed = snapshot.attributes.get("restore", []) or []
    return account in allowed or "all" in allowed


def _copy_db_snapshot(self: RDSBackend, *args: Any, **kwargs: Any) -> DBSnapshot:
    names = ("source_db_snapshot_identifier", "target_db_snapshot_identifier", "kms_key_id")
    params = dict(zip(names, args, strict=False)) | kwargs
    source_id = str(params.get("source_db_snapshot_identifier") or "")
    parts = source_id.split(":", 6)
    if not source_id.startswith("arn:") or len(parts) < 7 or parts[4] == self.account_id:
        return _ORIGINAL["copy_db_snapshot"](self, *args, **kwargs)  # type: ignore[no-any-return]
    region, owner, kind, name = parts[3], parts[4], parts[5], parts[6]
    source_backend = _region_backend(rds_backends, owner, region)
    snapshot = None
    if kind == "snapshot" and source_backend is not None:
        snapshot = source_backend.database_snapshots.get(name)
    if snapshot is None or not _rds_snapshot_shared(snapshot, self.account_id):
        raise DBSnapshotNotFoundFault(source_id)
    target = str(params.get("target_db_snapshot_identifier") or "")
    from moto.rds.exceptions import DBSnapshotAlreadyExistsError, SnapshotQuotaExceededFault

    if target in self.database_snapshots:
        raise DBSnapshotAlreadyExistsError(target)
    if len(self.database_snapshots) >= self.SNAPSHOT_QUOTA:
        raise SnapshotQuotaExceededFault()
    kms_key_id = params.get("kms_key_id")
    if snapshot.encrypted:
        if not kms_key_id:
            from moto.rds.exceptions import InvalidParameterValue

            raise InvalidParameterValue(
                "KmsKeyId is required to copy an encrypted DB snapshot shared from another "
                "AWS account."
            )
        principal = getattr(_RDS_CALLER, "principal", None) or key_policy.principal_for(
            self.account_id, None
        )
        source_key = resolve_key(owner, region, snapshot.kms_key_id)
        if not key_usable(
            source_key,
            RDS_SOURCE_KEY_ACTIONS,
            principal,
            via_service=f"rds.{self.region_name}.amazonaws.com",
        ):
            raise KMSKeyNotAccessible(
                f"The source snapshot KMS key [{snapshot.kms_key_id}] does not exist, is not "
                "enabled or you do not have permissions to access it."
            )
    if kms_key_id is not None:
        kms_key_id = self._validate_kms_key(kms_key_id)
        destination_key = resolve_key(self.account_id, self.region_name, kms_key_id)
        if destination_key is None or destination_key.key_state != "Enabled":
            raise KMSKeyNotAccessible(
                f"Specified KMS key [{kms_key_id}] does not exist, is not enabled or you do not "
                "have permissions to access it."
            )
    tags = params.get("tags")
    if params.get("copy_tags") and not tags:
        tags = snapshot.tags or []
    copy = DBSnapshot(
        self,
        snapshot.database,
        target,
        tags=tags,
        kms_key_id=kms_key_id,
        original_created_at=snapshot.original_snapshot_create_time,
    )
    self.database_snapshots[target] = copy
    return copy


_RDS_CALLER = threading.local()


def _rds_copy_response(self: RDSResponse) -> Any:
    # The backend does not know who signed the request; the key policy may name the role.
    _RDS_CALLER.principal = caller(self)
    try:
        return _ORIGINAL["rds_copy_response"](self)
    finally:
        _RDS_CALLER.principal = None


# -- installation ------------------------------------------------------------------------------


def install() -> None:
    """Teach moto the cross-account rules above (idempotent)."""
    if _ORIGINAL:
        return
    _ORIGINAL["create_key"] = KmsBackend.create_key
    KmsBackend.create_key = _create_key  # type: ignore[method-assign]
    for name in _KEY_STATE_OPERATIONS:
        setattr(KmsBackend, name, _by_any_id(name))
    KmsResponse.kms_backend = property(_kms_backend)  # type: ignore[assignment,method-assign]
    Snapshot.status = property(_status, _set_status)  # type: ignore[assignment,method-assign]
    Snapshot.state_message = property(_state_message)  # type: ignore[attr-defined]
    Snapshot.status_message = property(_state_message)  # type: ignore[attr-defined]
    _ORIGINAL["copy_snapshot"] = EC2Response.copy_snapshot
    _copy_snapshot.__name__ = "copy_snapshot"
    EC2Response.copy_snapshot = _copy_snapshot  # type: ignore[method-assign]
    _describe_snapshots.__name__ = "describe_snapshots"
    EC2Response.describe_snapshots = _describe_snapshots  # type: ignore[method-assign]
    _ORIGINAL["copy_db_snapshot"] = RDSBackend.copy_db_snapshot
    RDSBackend.copy_db_snapshot = _copy_db_snapshot  # type: ignore[method-assign]
    _ORIGINAL["rds_copy_response"] = RDSResponse.copy_db_snapshot
    _rds_copy_response.__name__ = "copy_db_snapshot"
    RDSResponse.copy_db_snapshot = _rds_copy_response  # type: ignore[method-assign]
