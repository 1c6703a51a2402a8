"""The copy handshake into the cross-account DR vault.

For each verified DR copy (workload account, DR Region):

EBS
  1. the workload shares the DR copy with the vault account ONLY (``createVolumePermission``
     add ``UserId``; never the ``all`` group);
  2. the vault intake role copies it in the vault account: ``CopySnapshot`` with
     ``SourceRegion`` = the DR Region, ``Encrypted``, ``KmsKeyId`` = the vault CMK and
     SecureDR's lineage tags at creation (``TagSpecifications``);
  3. once completed, the vault role locks it: ``LockSnapshot`` in compliance mode with the
     plan's cooling-off period and a duration of at least the retention period.
RDS
  1. the workload shares the DR copy with the vault account (``ModifyDBSnapshotAttribute``
     ``restore`` ``ValuesToAdd=[vault account]``); the DR copy is encrypted under the DR CMK,
     whose key policy lets the vault account use it (AWS refuses to share snapshots under the
     default aws/rds key);
  2. the vault role copies it: ``CopyDBSnapshot`` with the DR copy's ARN as source, the vault
     CMK and the lineage tags. RDS has no snapshot lock.

Only then - after ``verify_vault_copies`` passed and the signed manifest listing the vault copy
is stored - does :func:`release_intermediate` remove the share and delete the workload's DR copy
(the "intermediate"). A point whose vault step failed keeps its DR copy; its share is removed.

The copies take time and count against the vault account's concurrent-copy quotas, so the
handshake runs as a loop like the DR copy loop (:mod:`securedr.aws.copy_loop`): a first pass in
the worker, the rest in the triggerer (:class:`securedr.triggers.vault.VaultCopyTrigger`), slots
from :class:`~securedr.core.copy_slots.CopySlots`, one batched describe per kind per pass.

AWS references:
https://docs.aws.amazon.com/ebs/latest/userguide/ebs-modifying-snapshot-permissions.html
https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_ModifySnapshotAttribute.html
https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CopySnapshot.html
https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_LockSnapshot.html
https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/share-encrypted-snapshot.html
https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_ModifyDBSnapshotAttribute.html
https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CopyDBSnapshot.html
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from securedr.aws import ebs, rds
from securedr.aws.errors import chunks, error_code
from securedr.aws.limits import classify_limit, error_message, is_transient
from securedr.aws.snapshots import poll_async
from securedr.aws.sts import AssumedRoleClients, assume_restore_role
from securedr.core.copy_slots import CopySlots
from securedr.core.model import (
    TAG_PLAN,
    TAG_ROLE,
    TAG_RUN_ID,
    TAG_SOURCE_SNAPSHOT,
    SnapshotRef,
    dict_to_tags,
    tags_to_dict,
)
from securedr.core.vault import COMPLIANCE_STATES, ROLE_VAULT_COPY, lock_request

log = logging.getLogger(__name__)

#: STS session names under the vault intake role: ``securedr-vault-<run token>``.
VAULT_SESSION_PREFIX = "securedr-vault-"
#: Deletion / unshare answers that mean "already gone" (a retried release finds its work done).
GONE_CODES = frozenset({"InvalidSnapshot.NotFound", "DBSnapshotNotFound"})
LOCK_BATCH = 200

Phase = Literal["waiting", "copying", "locking", "done", "failed"]


def assume_vault_role(
    aws_conn_id: str | None, *, role_arn: str, external_id_variable: str, region: str, run_id: str
) -> AssumedRoleClients:
    """Assume the vault intake role for ``run_id`` (external id from its Airflow Variable,
    masked in logs; session ``securedr-vault-<run token>``, renewed before it expires)."""
    return assume_restore_role(
        aws_conn_id,
        region=region,
        role_arn=role_arn,
        external_id_variable=external_id_variable,
        run_id=run_id,
        session_prefix=VAULT_SESSION_PREFIX,
        setting="vault.role_arn",
        trust_policy="the vault intake role's trust policy (include/iam)",
    )


# -- sharing with the vault account -------------------------------------------------------------


def share_request(kind: str, snapshot_id: str, account_id: str, operation: str) -> dict[str, Any]:
    """The attribute call that adds (``operation="add"``) or removes the vault account's right
    to copy a DR copy. Only that account, by id: never the public ``all`` group."""
    if not account_id.isdigit() or len(account_id) != 12:
        raise ValueError(f"vault account id {account_id!r} is not a 12-digit AWS account id")
    if kind == "ebs":
        return {
            "SnapshotId": snapshot_id,
            "Attribute": "createVolumePermission",
            "OperationType": operation,
            "UserIds": [account_id],
        }
    values = "ValuesToAdd" if operation == "add" else "ValuesToRemove"
    return {"DBSnapshotIdentifier": snapshot_id, "AttributeName": "restore", values: [account_id]}


async def share_async(
    pool: Any, region: str, kind: str, snapshot_id: str, account_id: str, operation: str
) -> None:
    request = share_request(kind, snapshot_id, account_id, operation)
    if kind == "ebs":
        await (await pool.get("ec2", region)).modify_snapshot_attribute(**request)
    else:
        await (await pool.get("rds", region)).modify_db_snapshot_attribute(**request)


def unshare(clients: Any, region: str, kind: str, snapshot_id: str, account_id: str) -> None:
    """Remove the vault account's share of a DR copy (nothing else is touched)."""
    request = share_request(kind, snapshot_id, account_id, "remove")
    if kind == "ebs":
        clients.ec2(region).modify_snapshot_attribute(**request)
    else:
        clients.rds(region).modify_db_snapshot_attribute(**request)


def release_intermediate(
    clients: Any, region: str, kind: str, snapshot_id: str, account_id: str
) -> Literal["deleted", "already_gone"]:
    """Remove the vault account's share of the DR copy, then delete the DR copy.

    Call only once the vault copy is completed, locked (EBS), verified in the vault and listed by
    the signed manifest. Idempotent: a DR copy already gone counts as released.
    """
    try:
        unshare(clients, region, kind, snapshot_id, account_id)
        if kind == "ebs":
            ebs.delete_snapshot(clients.ec2(region), snapshot_id)
        else:
            rds.delete_snapshot(clients.rds(region), snapshot_id)
    except Exception as exc:
        if error_code(exc) in GONE_CODES:
            return "already_gone"
        raise
    return "deleted"


# -- the vault copies ---------------------------------------------------------------------------


def rds_copy_request(
    *, source_arn: str, target_identifier: str, kms_key_arn: str, tags: dict[str, str]
) -> dict[str, Any]:
    """CopyDBSnapshot's parameters for a shared snapshot in the same Region: the source is named
    by its ARN ("If you are copying from a shared manual DB snapshot, this parameter must be the
    Amazon Resource Name (ARN) of the shared DB snapshot"); no ``SourceRegion`` (no presigned URL
    for a same-Region copy); the vault CMK; the lineage tags and nothing copied from the source.
    """
    return {
        "SourceDBSnapshotIdentifier": source_arn,
        "TargetDBSnapshotIdentifier": target_identifier,
        "KmsKeyId": kms_key_arn,
        "Tags": dict_to_tags(tags),
        "CopyTags": False,
    }


def lock_info(ec2: Any, snapshot_ids: list[str]) -> dict[str, dict[str, Any]]:
    """DescribeLockedSnapshots for ``snapshot_ids`` (batched, every page): id -> lock info."""
    found: dict[str, dict[str, Any]] = {}
    for batch in chunks(sorted(set(snapshot_ids)), LOCK_BATCH):
        request: dict[str, Any] = {"SnapshotIds": batch}
        while True:
            page = ec2.describe_locked_snapshots(**request)
            found.update({str(i["SnapshotId"]): i for i in page.get("Snapshots", [])})
            token = page.get("NextToken")
            if not token:
                break
            request["NextToken"] = token
    return found


async def lock_info_async(ec2: Any, snapshot_ids: list[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for batch in chunks(sorted(set(snapshot_ids)), LOCK_BATCH):
        request: dict[str, Any] = {"SnapshotIds": batch}
        while True:
            page = await ec2.describe_locked_snapshots(**request)
            found.update({str(i["SnapshotId"]): i for i in page.get("Snapshots", [])})
            token = page.get("NextToken")
            if not token:
                break
            request["NextToken"] = token
    return found


@dataclass
class VaultLoop:
    """One run's vault copies in ``region`` of the vault account: what, how far, the slots.

    ``requests`` maps a point's label to ``kind``, ``dr_snapshot_id``, ``tags`` and
    ``description`` (EBS) or ``source_arn`` and ``identifier`` (RDS). ``results`` maps a label to
    ``phase``, ``shared``, ``vault_snapshot_id``, ``vault_arn``, ``requested_at``, ``locked``
    and, for a failed one, ``failed`` (why). State is JSON (trigger kwargs, the event).
    """

    account_id: str
    region: str
    vault_key: str
    plan: str
    run_id: str
    cool_off_hours: int
    lock_days: int
    requests: dict[str, dict[str, Any]]
    slots: CopySlots
    deadline: float
    poll_seconds: float
    missing_grace_seconds: float
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for label in self.requests:
            self.results.setdefault(label, {"phase": "waiting", "shared": False})

    def to_dict(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "region": self.region,
            "vault_key": self.vault_key,
            "plan": self.plan,
            "run_id": self.run_id,
            "cool_off_hours": self.cool_off_hours,
            "lock_days": self.lock_days,
            "requests": self.requests,
            "slots": self.slots.to_dict(),
            "deadline": self.deadline,
            "poll_seconds": self.poll_seconds,
            "missing_grace_seconds": self.missing_grace_seconds,
            "results": self.results,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VaultLoop:
        values = dict(data)
        values["slots"] = CopySlots.from_dict(values["slots"])
        return cls(**values)

    # -- where it stands --------------------------------------------------------------------------

    def labels(self, *phases: Phase) -> list[str]:
        return [label for label in self.requests if self.results[label]["phase"] in phases]

    @property
    def finished(self) -> bool:
        return not self.labels("waiting", "copying", "locking")

    def summary(self) -> str:
        counts = {p: len(self.labels(p)) for p in ("done", "copying", "locking", "waiting")}
        return (
            f"{counts['done']} in the vault, {counts['copying']} copying, "
            f"{counts['locking']} to lock, {counts['waiting']} waiting for a slot, "
            f"{len(self.labels('failed'))} failed"
        )

    def event(self, status: Literal["done", "deadline"]) -> dict[str, Any]:
        return {"status": status, "results": self.results, "summary": self.summary()}

    # -- the loop ---------------------------------------------------------------------------------

    async def run(self, workload: Any, vault: Any) -> dict[str, Any]:
        """Share, copy and lock every point (or fail it, by name); return the event payload.

        ``workload``: async client pool under the Airflow connection (shares);
        ``vault``: async client pool under the vault intake role (copies, describes, locks).
        """
        await self.reconcile(vault)
        while True:
            await self.step(workload, vault)
            now = time.time()
            if self.finished:
                return self.event("done")
            if now >= self.deadline:
                self._fail_at_deadline()
                return self.event("deadline")
            pause = self.slots.sleep_seconds(now, self.poll_seconds)
            if self.labels("locking"):
                pause = min(pause, self.poll_seconds)
            await asyncio.sleep(max(0.05, min(pause or self.poll_seconds, self.deadline - now)))

    async def reconcile(self, vault: Any) -> None:
        """Pick up vault copies this run already started (a retried task, a restarted
        triggerer): EBS by lineage tags (``securedr:source-snapshot`` = the DR copy), RDS by the
        deterministic identifier. A retry never starts a second vault copy of a point."""
        waiting = self.labels("waiting")
        ebs_waiting = {
            self.requests[label]["dr_snapshot_id"]: label
            for label in waiting
            if self.requests[label]["kind"] == "ebs"
        }
        if ebs_waiting:
            found = await ebs.find_snapshots_async(
                await vault.get("ec2", self.region),
                {TAG_PLAN: self.plan, TAG_RUN_ID: self.run_id, TAG_ROLE: ROLE_VAULT_COPY},
            )
            for snap in found:
                source = tags_to_dict(snap.get("Tags")).get(TAG_SOURCE_SNAPSHOT)
                label = ebs_waiting.get(source or "")
                if label and snap.get("State") != "error":
                    self._attach(label, str(snap["SnapshotId"]), None)
        rds_waiting = {
            self.requests[label]["identifier"]: label
            for label in waiting
            if self.requests[label]["kind"] == "rds"
        }
        if rds_waiting:
            found_rds = await rds.describe_snapshots_async(
                await vault.get("rds", self.region), list(rds_waiting)
            )
            for identifier, snap in found_rds.items():
                self._attach(rds_waiting[identifier], identifier, snap.get("DBSnapshotArn"))

    def _attach(self, label: str, snapshot_id: str, arn: str | None) -> None:
        result = self.results[label]
        result.update(
            phase="copying",
            shared=True,  # it was copied, so it was shared; the release removes the share
            vault_snapshot_id=snapshot_id,
            vault_arn=arn,
            requested_at=result.get("requested_at") or time.time(),
        )
        self.slots.started(label)
        log.info("%s: vault copy %s already started by an earlier try; reused.", label, snapshot_id)

    async def step(self, workload: Any, vault: Any) -> None:
        """One pass: which copies completed (lock them), then fill the free slots."""
        await self._poll(vault)
        await self._lock(vault)
        blocked: set[str] = set()
        for label in self.slots.startable(time.time()):
            kind = self.requests[label]["kind"]
            if kind in blocked:
                continue
            outcome = await self._start(workload, vault, label)
            if outcome == "no_slot":
                self.slots.no_slot(kind, time.time())
                blocked.add(kind)

    async def _poll(self, vault: Any) -> None:
        copying = self.labels("copying")
        if not copying:
            return
        refs = {label: self._ref(label) for label in copying}
        poll = await poll_async(vault, refs, self.missing_grace_seconds, "vault copies")
        if poll is None:
            return
        progress, keys = poll.progress, poll.labels
        for key in progress.completed:
            label = keys[key]
            self.slots.finished(label)
            kind = self.requests[label]["kind"]
            # RDS has no snapshot lock: an available copy is done.
            self.results[label]["phase"] = "locking" if kind == "ebs" else "done"
        for key, reason in progress.failed.items():
            label = keys[key]
            self.slots.finished(label)
            vault_id = self.results[label].get("vault_snapshot_id")
            self._fail(label, f"the vault copy {vault_id} failed: {reason}")

    async def _lock(self, vault: Any) -> None:
        """Lock every completed EBS vault copy not locked yet (one describe for all of them)."""
        locking = self.labels("locking")
        if not locking:
            return
        ec2 = await vault.get("ec2", self.region)
        ids = {self.results[label]["vault_snapshot_id"]: label for label in locking}
        try:
            current = await lock_info_async(ec2, list(ids))
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("Reading vault locks failed transiently (%s); asking again.", exc)
            return
        for snapshot_id, label in ids.items():
            if current.get(snapshot_id, {}).get("LockState") in COMPLIANCE_STATES:
                self._locked(label, snapshot_id)  # locked by an earlier try
                continue
            try:
                await ec2.lock_snapshot(
                    **lock_request(
                        snapshot_id,
                        cool_off_hours=self.cool_off_hours,
                        duration_days=self.lock_days,
                    )
                )
            except Exception as exc:
                if is_transient(exc):
                    log.warning("Locking %s failed transiently (%s); again.", snapshot_id, exc)
                    continue
                self._fail(
                    label,
                    f"the vault copy {snapshot_id} could not be locked "
                    f"({error_code(exc) or type(exc).__name__}: {error_message(exc)})",
                )
                continue
            self._locked(label, snapshot_id)

    def _locked(self, label: str, snapshot_id: str) -> None:
        self.results[label].update(phase="done", locked=True)
        log.info(
            "%s: vault copy %s locked (compliance, cooling-off %d h, %d days).",
            label,
            snapshot_id,
            self.cool_off_hours,
            self.lock_days,
        )

    def _ref(self, label: str) -> SnapshotRef:
        result = self.results[label]
        return SnapshotRef(
            self.requests[label]["kind"],  # type: ignore[arg-type]
            self.region,
            result["vault_snapshot_id"],
            requested_at=result.get("requested_at"),
        )

    async def _start(
        self, workload: Any, vault: Any, label: str
    ) -> Literal["started", "no_slot", "failed", "later"]:
        request = self.requests[label]
        result = self.results[label]
        kind = request["kind"]
        try:
            if not result.get("shared"):
                await share_async(
                    workload, self.region, kind, request["dr_snapshot_id"], self.account_id, "add"
                )
                result["shared"] = True
        except Exception as exc:
            return self._refused(label, exc, "sharing the DR copy with the vault account")
        requested_at = time.time()
        arn: str | None = None
        try:
            if kind == "ebs":
                response = await (await vault.get("ec2", self.region)).copy_snapshot(
                    **ebs.copy_request(
                        source_region=self.region,
                        snapshot_id=request["dr_snapshot_id"],
                        kms_key_arn=self.vault_key,
                        tags=request["tags"],
                        description=request["description"],
                    )
                )
                snapshot_id = str(response["SnapshotId"])
            else:
                snapshot_id = request["identifier"]
                try:
                    response = await (await vault.get("rds", self.region)).copy_db_snapshot(
                        **rds_copy_request(
                            source_arn=request["source_arn"],
                            target_identifier=snapshot_id,
                            kms_key_arn=self.vault_key,
                            tags=request["tags"],
                        )
                    )
                    arn = response["DBSnapshot"].get("DBSnapshotArn")
                except Exception as exc:
                    # Ours from an earlier try that describes did not show yet.
                    if error_code(exc) != "DBSnapshotAlreadyExists":
                        raise
        except Exception as exc:
            return self._refused(label, exc, "the copy into the vault")
        result.update(
            phase="copying", vault_snapshot_id=snapshot_id, vault_arn=arn, requested_at=requested_at
        )
        self.slots.started(label)
        log.info(
            "Copying %s %s -> vault %s/%s under %s",
            label,
            request["dr_snapshot_id"],
            self.account_id,
            snapshot_id,
            self.vault_key,
        )
        return "started"

    def _refused(
        self, label: str, exc: Exception, what: str
    ) -> Literal["no_slot", "failed", "later"]:
        if classify_limit(exc) == "concurrency":
            log.info("The vault account's concurrent-copy limit is reached (%s).", exc)
            return "no_slot"
        if is_transient(exc):
            log.warning("%s for %s failed transiently (%s); trying again.", what, label, exc)
            return "later"
        if not error_code(exc):
            raise exc
        self.slots.ruled_out(label)
        self._fail(label, f"{what} was refused ({error_code(exc)}: {error_message(exc)})")
        return "failed"

    def _fail(self, label: str, reason: str) -> None:
        self.results[label].update(phase="failed", failed=reason)
        log.error("NOT PROTECTED IN THE VAULT %s: %s", label, reason)

    def _fail_at_deadline(self) -> None:
        for label in self.labels("waiting", "copying", "locking"):
            phase = self.results[label]["phase"]
            self.slots.ruled_out(label)
            self._fail(
                label,
                f"still {phase} when the copy deadline passed (waits.copy_timeout_minutes); "
                "the DR copy is kept in the workload account",
            )
