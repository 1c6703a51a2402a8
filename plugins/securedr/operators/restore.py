"""The steps of a manual DR run: initiate, retrieve, restore, confirm.

Access control (initiator, approval) lives in :mod:`securedr.operators.access`; the wait between
restore and confirm in :mod:`securedr.sensors.restore`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from airflow.sdk.exceptions import AirflowFailException

from securedr.aws import ebs, rds, vault_copies
from securedr.aws import restore as restore_adapter
from securedr.aws.drill_sandbox import TAG_DRILL
from securedr.aws.evidence import EvidenceExists
from securedr.core import signing
from securedr.core.manifest import run_token
from securedr.core.restore import (
    DRILL_DB_PREFIX,
    RESTORED_DB_PREFIX,
    ManifestChoice,
    RestoreRefused,
    check_manifest_binding,
    choose_points,
    hidden_newer_manifests,
    manifest_keys_to_read,
    render_restore_text,
    restore_report,
    restore_source_problems,
    restore_tags,
    restored_db_identifier,
    restored_problems,
    rpo_seconds,
    volume_client_token,
    volume_performance,
)
from securedr.core.restore_request import RestoreRequest, RestoreRequestError, parse_restore_request
from securedr.core.vault_restore import arn_account, vault_copy_problems, vault_view
from securedr.notifiers.sns import SnsNotifier
from securedr.operators.audit import RestoreStepOperator, initiator_of
from securedr.operators.base import SecureDrOperator

#: Where a local copy of each report goes, besides the evidence bucket (as for nightly runs).
REPORTS_DIR_ENV = "SECUREDR_REPORTS_DIR"


def _request(initiation: Any) -> RestoreRequest:
    return RestoreRequest.from_dict(dict(initiation or {})["request"])


def _flatten(groups: Any) -> list[dict[str, Any]]:
    """XCom of one or several restore tasks (a list, or a list of lists) as one list."""
    items: list[dict[str, Any]] = []
    for group in groups or []:
        if isinstance(group, dict):
            items.append(group)
        else:
            items.extend(group or [])
    return items


class InitiateRestoreOperator(SecureDrOperator):
    """Validate the trigger parameters against the plan, before anything else happens.

    Guarantees: makes no AWS call at all (the plan is read from its local file); a malformed
    request fails the task (no retries) with every problem named and what to do about it.
    Returns ``{"request": <RestoreRequest as dict>, "initiator": <triggering user>}``.
    """

    ui_color = "#e0e7ff"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("retries", 0)
        # A failure callback (e.g. the DAG's SNS notifier) would call AWS for a request that
        # was refused precisely so that nothing touches AWS; the UI shows the error instead.
        kwargs["on_failure_callback"] = None
        super().__init__(**kwargs)

    def execute(self, context: Any) -> dict[str, Any]:
        params = dict(context.get("params") or {})
        try:
            request = parse_restore_request(params, self.plan)
        except RestoreRequestError as exc:
            raise AirflowFailException(str(exc)) from None
        initiator = initiator_of(context)
        self.log.info(
            "Restore requested by %s: %s from %s into %s/%s%s. Reason: %s",
            initiator,
            request.describe_resources(),
            request.recovery_point,
            request.target_region,
            request.availability_zone,
            " (dry run)" if request.dry_run else "",
            request.reason,
        )
        return {"request": request.to_dict(), "initiator": initiator}


class RetrieveRecoveryPointsOperator(RestoreStepOperator):
    """Find the requested recovery points in a signed manifest and prove their DR copies usable.

    Guarantees: restores only ever start from points this returns, and it returns a point only
    if its manifest's signature verifies against the plan's trusted keys, the manifest is stored
    under the name its content implies (no replay of an old manifest as "latest"), "latest" is
    refused while a newer manifest is hidden by a delete marker (no silent roll-back), the point is
    marked verified, and its DR copy still exists, is completed, is encrypted under exactly the
    plan's DR key, carries SecureDR's lineage tags for this plan and run, and is shared with
    nobody. Anything else is audited as ``refused`` and fails the run naming every problem.
    Returns ``{"manifest": {...}, "points": [...], "file_sets": [...]}``; the file sets (the
    signed manifest's entries, restored when every resource is requested) are checked file by
    file when they are restored.
    """

    template_fields: Sequence[str] = ("initiation", "plan_path")

    def __init__(self, *, initiation: Any, **kwargs: Any) -> None:
        kwargs.setdefault("retries", 2)
        super().__init__(**kwargs)
        self.initiation = initiation

    def execute(self, context: Any) -> dict[str, Any]:
        self.bind_run(context)
        plan = self.plan
        request = _request(self.initiation)
        try:
            if self.from_vault:
                choice = self._choose_vault(request)
                problems = self._vault_copy_problems(choice)
                unfit = "Vault copies"
            else:
                choice = self._choose(request)
                problems = self._copy_problems(choice, self.key_arn(plan.regions.dr))
                unfit = "DR copies"
            if problems:
                raise RestoreRefused(
                    f"{unfit} unfit to restore from: "
                    + "; ".join(problems)
                    + ". Nothing was restored; investigate, or choose another recovery_point"
                )
        except RestoreRefused as exc:
            self.refuse(
                context,
                action="restore.retrieve",
                resource=request.recovery_point,
                reason=str(exc),
            )
        points = [{k: p.get(k) for k in _POINT_FIELDS} for p in choice.points]
        manifest = {**choice.summary(), "source": self._source}
        if self.from_vault:
            manifest["url"] = self.evidence.url(choice.key)
            manifest["vault_account"] = plan.vault.account_id
        # File sets are restored with "all" resources: ids name snapshots' sources only.
        file_sets = (
            [dict(f) for f in choice.payload.get("file_sets") or [] if f.get("files")]
            if request.all_resources
            else []
        )
        self.audit(
            context,
            action="restore.retrieve",
            resource=choice.key,
            outcome="succeeded",
            details={
                "manifest": manifest,
                "points": [f"{p['kind']}:{p['source_id']}@{p['dr_snapshot_id']}" for p in points],
                "file_sets": [f"{f['name']} ({len(f['files'])} files)" for f in file_sets],
            },
        )
        for p in points:
            self.log.info(
                "Recovery point %s:%s/%s -> DR copy %s (taken %s) checked.",
                p["kind"],
                p["source_region"],
                p["source_id"],
                p["dr_snapshot_id"],
                p["created_at"],
            )
        return {"manifest": manifest, "points": points, "file_sets": file_sets}

    def _choose(self, request: RestoreRequest) -> ManifestChoice:
        plan = self.plan
        keys = self.evidence.list("manifests", plan.name)
        if request.selector == "latest":
            hidden = hidden_newer_manifests(
                keys, self.evidence.hidden("manifests", plan.name), plan.name
            )
            if hidden:
                older = f"the older manifest {keys[-1]}" if keys else "no manifest at all"
                raise RestoreRefused(
                    f"the newest manifest {hidden[-1]} is hidden by a delete marker"
                    + (
                        f" (and {len(hidden) - 1} more newer than every visible one)"
                        if len(hidden) > 1
                        else ""
                    )
                    + f"; 'latest' would silently restore {older}. Investigate who deleted "
                    "evidence from the bucket; its signed version is still stored (remove the "
                    "delete marker to use it), or name the recovery point to restore explicitly"
                )
        trusted = self.trusted_public_keys()
        for key in manifest_keys_to_read(keys, request, plan.name):
            try:
                document = json.loads(self.evidence.get(key))
                payload = signing.verify_document(document, trusted)
            except (ValueError, signing.SignatureError) as exc:
                raise RestoreRefused(
                    f"manifest {key} cannot be trusted ({exc}); it is unsigned, was altered, or "
                    "was signed by an untrusted key. Investigate who wrote to the evidence "
                    "bucket before restoring from it"
                ) from None
            check_manifest_binding(key, payload, plan.name, plan.regions.dr)
            points = choose_points(key, payload, request)
            if points is not None:
                self.log.info("Using manifest %s (nightly run %s).", key, payload["run_id"])
                return ManifestChoice(key=key, payload=payload, points=points)
        raise RestoreRefused(
            f"no signed manifest lists DR copy {request.recovery_point}; use a snapshot that a "
            "nightly run copied and verified, or 'latest'"
        )

    def _choose_vault(self, request: RestoreRequest) -> ManifestChoice:
        """The signed manifest and points to restore from the vault evidence bucket.

        Every manifest is read by version, oldest version first (the write-once original);
        "latest" is the newest manifest with a trusted version, and every newer object that
        is not one (written by someone holding the intake role, or hidden) is named in the log -
        none of them can be a genuine manifest, whose original version Object Lock keeps.
        """
        plan = self.plan
        vault = plan.vault
        dr = plan.regions.dr
        manifests = vault_copies.manifest_versions(self.evidence, plan.name)
        keys = manifests.keys
        candidates = manifest_keys_to_read(keys, request, plan.name)  # refuses when none
        if request.selector == "latest":
            candidates = [k for k in reversed(keys) if k.endswith(".json")]
        trusted = self.trusted_public_keys()
        try:
            for key in candidates:
                payload = vault_copies.read_trusted(
                    self.evidence, manifests, key, trusted, plan=plan.name, dr_region=dr
                )
                if payload is None:
                    if request.selector in ("manifest", "run"):
                        raise RestoreRefused(
                            f"manifest {key} in the vault evidence bucket cannot be trusted: "
                            + "; ".join(manifests.rejected[-3:])
                        )
                    continue
                view = vault_view(key, payload, vault_account=vault.account_id, dr_region=dr)
                points = choose_points(key, view, request)
                if points is not None:
                    self.log.info(
                        "Using manifest %s from the vault evidence bucket (nightly run %s).",
                        key,
                        payload["run_id"],
                    )
                    return ManifestChoice(key=key, payload=view, points=points)
        finally:
            for rejected in manifests.rejected:
                self.log.warning("Vault evidence: %s", rejected)
        raise RestoreRefused(
            f"no signed manifest in the vault evidence bucket lists vault copy "
            f"{request.recovery_point}; use a copy a nightly run brought into the vault and "
            "verified, or 'latest'"
        )

    def _vault_copy_problems(self, choice: ManifestChoice) -> list[str]:
        """Every problem of the chosen points' vault copies, checked in the vault account."""
        plan = self.plan
        vault = plan.vault
        dr = plan.regions.dr
        key_arn = self.key_arn(dr)
        found, locks, shared = vault_copies.describe_vault_copies(
            self.clients.ec2(dr), self.clients.rds(dr), choice.points
        )
        recovery_account = arn_account(vault.recovery.role_arn) or vault.account_id
        now = datetime.now(UTC)
        problems: list[str] = []
        for point in choice.points:
            sid = str(point["dr_snapshot_id"])
            issues = vault_copy_problems(
                point,
                found.get(sid),
                lock=locks.get(sid),
                shared_with=shared.get(sid, []),
                vault_account=vault.account_id,
                recovery_account=recovery_account,
                plan=plan.name,
                manifest_run_id=str(choice.payload["run_id"]),
                now=now,
            )
            if point.get("dr_kms_key_arn") != key_arn:
                issues.append(
                    f"the signed manifest records vault key {point.get('dr_kms_key_arn')}, not "
                    f"the plan's vault key {key_arn} (vault.kms_keys)"
                )
            problems.extend(f"{point['kind']}:{point['source_id']} ({sid}): {i}" for i in issues)
        return problems

    def _copy_problems(self, choice: ManifestChoice, key_arn: str) -> list[str]:
        plan = self.plan
        dr = plan.regions.dr
        ebs_ids = [p["dr_snapshot_id"] for p in choice.points if p["kind"] == "ebs"]
        rds_ids = [p["dr_snapshot_id"] for p in choice.points if p["kind"] == "rds"]
        found = {
            **(ebs.describe_snapshots(self.clients.ec2(dr), ebs_ids) if ebs_ids else {}),
            **(rds.describe_snapshots(self.clients.rds(dr), rds_ids) if rds_ids else {}),
        }
        problems: list[str] = []
        for point in choice.points:
            sid = point["dr_snapshot_id"]
            snapshot = found.get(sid)
            shared: list[str] = []
            if snapshot is not None:
                if point["kind"] == "ebs":
                    shared = [
                        p.get("Group") or p.get("UserId", "?")
                        for p in ebs.sharing(self.clients.ec2(dr), sid)
                    ]
                else:
                    shared = rds.sharing(self.clients.rds(dr), sid)
            issues = restore_source_problems(
                point,
                snapshot,
                shared_with=shared,
                expected_key_arn=key_arn,
                plan=plan.name,
                manifest_run_id=str(choice.payload["run_id"]),
            )
            problems.extend(f"{point['kind']}:{point['source_id']} ({sid}): {i}" for i in issues)
        return problems


@dataclass(frozen=True)
class _Target:
    """Where restored resources go: the plan's restore network, or a drill's sandbox."""

    availability_zone: str
    subnet_group: str | None
    security_group_ids: list[str]
    db_prefix: str
    extra_tags: dict[str, str]


_POINT_FIELDS = (
    "kind",
    "source_id",
    "source_region",
    "source_snapshot_id",
    "engine",
    "size_gib",
    "created_at",
    "dr_region",
    "dr_snapshot_id",
    "dr_snapshot_arn",
    "dr_kms_key_arn",
    "dr_created_at",
    "volume_type",
    "iops",
    "throughput",
    # Restores from the vault: the manifest's vault entry, and the workload account's DR copy
    # the vault copy was made from (for the record; it may be long gone).
    "vault",
    "workload_dr_snapshot_id",
)


class RestoreRecoveryPointsOperator(RestoreStepOperator):
    """Restore the retrieved points of one kind as new resources in the target Region.

    EBS: a volume from the DR copy with the source volume's type, IOPS and throughput (gp3 for
    recovery points recorded before those were kept, said in the log), encrypted under the
    target Region's plan key, in the requested Availability Zone. RDS: a DB instance from the
    DR copy, never publicly accessible, in the plan's subnet group and security groups, storage
    encrypted under the DR key.

    Guarantees: everything created carries lineage tags (source, DR copy, nightly run) and this
    run's id; a retried task finds what an earlier try created (volumes by tag, DB instances by
    their deterministic identifier) and never creates a second one; each creation is audited.
    A dry run creates nothing and audits ``skipped``. Returns one dict per point.

    :param sandbox: a recovery drill's sandbox (:meth:`securedr.aws.drill_sandbox.Sandbox.to_dict`).
        When given, resources go into the sandbox instead of the plan's restore network: its
        first Availability Zone, its DB subnet group and its closed security group, DB instances
        are named ``drill-...``, and everything also carries the drill's tag, which is how the
        drill's teardown finds it.
    """

    template_fields: Sequence[str] = ("initiation", "retrieval", "sandbox", "plan_path")

    def __init__(
        self,
        *,
        kind: Literal["ebs", "rds"],
        initiation: Any,
        retrieval: Any,
        sandbox: Any = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("retries", 2)
        super().__init__(**kwargs)
        self.kind = kind
        self.initiation = initiation
        self.retrieval = retrieval
        self.sandbox = sandbox

    def _target(self, request: RestoreRequest) -> _Target:
        settings = self.plan.restore
        if not self.sandbox:
            return _Target(
                availability_zone=request.availability_zone,
                subnet_group=settings.db_subnet_group,
                # Security group ids belong to one account: in the recovery account a restore
                # from the vault uses the DB subnet group of the same name and its VPC's default
                # security group (README, "Restoring from the vault").
                security_group_ids=[] if self.from_vault else list(settings.security_group_ids),
                db_prefix=RESTORED_DB_PREFIX,
                extra_tags={},
            )
        sandbox = dict(self.sandbox)
        return _Target(
            availability_zone=str(sandbox["availability_zones"][0]),
            subnet_group=str(sandbox["db_subnet_group"]),
            security_group_ids=[str(sandbox["security_group_id"])],
            db_prefix=DRILL_DB_PREFIX,
            extra_tags={TAG_DRILL: str(sandbox["drill_id"])},
        )

    def execute(self, context: Any) -> list[dict[str, Any]]:
        run_id = self.bind_run(context)
        request = _request(self.initiation)
        retrieval = dict(self.retrieval or {})
        manifest_run_id = str(retrieval["manifest"]["run_id"])
        points = [p for p in retrieval.get("points", []) if p["kind"] == self.kind]
        if not points:
            self.log.info("No %s recovery points to restore.", self.kind)
            return []
        if request.dry_run:
            return self._dry_run(context, points, request)
        if self.kind == "ebs":
            results = self._volumes(context, points, request, run_id, manifest_run_id)
        else:
            results = self._databases(context, points, request, run_id, manifest_run_id)
        return results

    def _result(
        self, point: dict[str, Any], resource_id: str | None, created: bool, region: str
    ) -> dict[str, Any]:
        return {
            "kind": point["kind"],
            "source_id": point["source_id"],
            "source_region": point["source_region"],
            "dr_snapshot_id": point["dr_snapshot_id"],
            "region": region,
            "resource_id": resource_id,
            "created": created,
            "requested_at": datetime.now(UTC).isoformat(),
            "point": point,
        }

    def _dry_run(
        self, context: Any, points: list[dict[str, Any]], request: RestoreRequest
    ) -> list[dict[str, Any]]:
        for point in points:
            self.log.info(
                "DRY RUN: would restore %s %s from %s into %s.",
                self.kind,
                point["source_id"],
                point["dr_snapshot_id"],
                request.availability_zone,
            )
            self.audit(
                context,
                action=f"restore.{self.kind}",
                resource=str(point["dr_snapshot_id"]),
                outcome="skipped",
                details={"dry_run": True, "source_id": point["source_id"]},
            )
        return [self._result(p, None, False, request.target_region) for p in points]

    def _volumes(
        self,
        context: Any,
        points: list[dict[str, Any]],
        request: RestoreRequest,
        run_id: str,
        manifest_run_id: str,
    ) -> list[dict[str, Any]]:
        region = request.target_region
        target = self._target(request)
        ec2 = self.clients.ec2(region)
        key_arn = self.key_arn(region)
        existing = restore_adapter.find_restored_volumes(ec2, plan=self.plan.name, run_id=run_id)
        results = []
        for point in points:
            sid = str(point["dr_snapshot_id"])
            volume = existing.get(sid)
            created = volume is None
            if volume is None:
                performance, note = volume_performance(point)
                if note:
                    self.log.warning("%s (%s): %s", sid, point["source_id"], note)
                try:
                    volume = restore_adapter.create_volume(
                        ec2,
                        snapshot_id=sid,
                        availability_zone=target.availability_zone,
                        kms_key_arn=key_arn,
                        tags={
                            **restore_tags(
                                plan=self.plan.name,
                                run_id=run_id,
                                point=point,
                                manifest_run_id=manifest_run_id,
                            ),
                            **target.extra_tags,
                        },
                        client_token=volume_client_token(run_id, sid),
                        performance=performance,
                    )
                except Exception as exc:
                    self.audit(
                        context,
                        action="restore.ebs",
                        resource=sid,
                        outcome="failed",
                        details={"source_id": point["source_id"], "error": str(exc)[:500]},
                    )
                    raise
                self.audit(
                    context,
                    action="restore.ebs",
                    resource=volume["VolumeId"],
                    outcome="started",
                    details={
                        "source_id": point["source_id"],
                        "dr_snapshot_id": sid,
                        "availability_zone": target.availability_zone,
                        "kms_key_arn": key_arn,
                        **performance,
                    },
                )
            self.log.info(
                "%s volume %s from %s (%s).",
                "Creating" if created else "Found from an earlier try:",
                volume["VolumeId"],
                sid,
                point["source_id"],
            )
            results.append(self._result(point, volume["VolumeId"], created, region))
        return results

    def _databases(
        self,
        context: Any,
        points: list[dict[str, Any]],
        request: RestoreRequest,
        run_id: str,
        manifest_run_id: str,
    ) -> list[dict[str, Any]]:
        region = request.target_region
        client = self.clients.rds(region)
        settings = self.plan.restore
        target = self._target(request)
        results = []
        for point in points:
            sid = str(point["dr_snapshot_id"])
            identifier = restored_db_identifier(
                str(point["source_id"]), run_id, prefix=target.db_prefix
            )
            try:
                _, created = restore_adapter.restore_db_instance(
                    client,
                    identifier=identifier,
                    snapshot_identifier=sid,
                    availability_zone=target.availability_zone,
                    subnet_group=target.subnet_group,
                    security_group_ids=target.security_group_ids,
                    instance_class=settings.db_instance_class,
                    tags={
                        **restore_tags(
                            plan=self.plan.name,
                            run_id=run_id,
                            point=point,
                            manifest_run_id=manifest_run_id,
                        ),
                        **target.extra_tags,
                    },
                )
            except restore_adapter.RestoreConflict as exc:
                self.refuse(context, action="restore.rds", resource=identifier, reason=str(exc))
            except Exception as exc:
                self.audit(
                    context,
                    action="restore.rds",
                    resource=identifier,
                    outcome="failed",
                    details={"source_id": point["source_id"], "error": str(exc)[:500]},
                )
                raise
            if created:
                self.audit(
                    context,
                    action="restore.rds",
                    resource=identifier,
                    outcome="started",
                    details={
                        "source_id": point["source_id"],
                        "dr_snapshot_id": sid,
                        "subnet_group": target.subnet_group,
                        "security_group_ids": target.security_group_ids,
                    },
                )
            self.log.info(
                "%s DB instance %s from %s (%s).",
                "Restoring" if created else "Found from an earlier try:",
                identifier,
                sid,
                point["source_id"],
            )
            results.append(self._result(point, identifier, created, region))
        return results


class RestoredResourceChecks(RestoreStepOperator):
    """Checks restored resources the same way for dr_restore and for recovery drills."""

    def check_restored(
        self,
        restored: list[dict[str, Any]],
        request: RestoreRequest,
        run_id: str,
        started: datetime,
    ) -> list[dict[str, Any]]:
        """One result per restored item: where it is, its RPO, and every problem found.

        Each resource is described once per (Region, kind) batch and judged by
        :func:`securedr.core.restore.restored_problems`; an item with no resource is a problem
        unless the run is a dry run. ``encrypted_under`` records the key the resource is
        encrypted under (``None`` if unencrypted or missing) for the caller's evidence.
        """
        plan = self.plan
        live = [r for r in restored if r.get("resource_id")]
        found: dict[str, Any] = {}
        for kind in ("ebs", "rds"):
            ids = [r["resource_id"] for r in live if r["kind"] == kind]
            if not ids:
                continue
            if kind == "ebs":
                found.update(
                    restore_adapter.describe_volumes(self.clients.ec2(request.target_region), ids)
                )
            else:
                found.update(
                    restore_adapter.describe_db_instances(
                        self.clients.rds(request.target_region), ids
                    )
                )
        expected = {
            "ebs": self.key_arn(request.target_region) if live else "",
            # RDS keeps the snapshot's key: the plan's DR key, which the retrieval proved.
            "rds": self.key_arn(plan.regions.dr) if live else "",
        }
        results = []
        for item in restored:
            point = item["point"]
            problems: list[str] = []
            if item.get("resource_id"):
                problems = restored_problems(
                    item["kind"],
                    found.get(item["resource_id"]),
                    point=point,
                    expected_key_arn=expected[item["kind"]],
                    plan=plan.name,
                    run_id=run_id,
                )
            elif not request.dry_run:
                problems = ["nothing was restored for this point"]
            results.append(
                {
                    "kind": item["kind"],
                    "source_id": item["source_id"],
                    "source_region": item["source_region"],
                    "dr_snapshot_id": item["dr_snapshot_id"],
                    "resource_id": item.get("resource_id"),
                    "region": item["region"],
                    "point_created_at": point.get("created_at"),
                    "rpo_seconds": rpo_seconds(point.get("created_at"), started),
                    "problems": problems,
                    "encrypted_under": _encryption_key(
                        item["kind"], found.get(item.get("resource_id") or "")
                    ),
                    "expected_key_arn": expected[item["kind"]],
                }
            )
            for problem in problems:
                self.log.error("%s %s: %s", item["kind"], item.get("resource_id"), problem)
        return results


def _encryption_key(kind: str, found: dict[str, Any] | None) -> str | None:
    if not found:
        return None
    encrypted = found.get("Encrypted") if kind == "ebs" else found.get("StorageEncrypted")
    return str(found.get("KmsKeyId")) if encrypted and found.get("KmsKeyId") else None


class ConfirmRestoreOperator(RestoredResourceChecks):
    """Check every restored resource, measure RTO and RPO, report, notify and audit.

    Guarantees: each resource is checked to be available, encrypted under exactly the expected
    key, the recovery point's size/engine, not public, and tagged for this run; the report
    (JSON and text) is written once to the evidence bucket under Object Lock, with the audit
    trail's head at the time so a later truncation of the trail is detectable; the outcome is
    published through :class:`securedr.notifiers.sns.SnsNotifier` and appended to the audit
    trail, whose head is then anchored (signed, write-once). The task fails, naming each
    problem, if any check failed - after reporting it.
    """

    template_fields: Sequence[str] = (
        "initiation",
        "approval",
        "retrieval",
        "restored",
        "file_sets",
        "plan_path",
    )

    def __init__(
        self,
        *,
        initiation: Any,
        approval: Any,
        retrieval: Any,
        restored: Any,
        file_sets: Any = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("retries", 1)
        super().__init__(**kwargs)
        self.file_sets = file_sets
        self.initiation = initiation
        self.approval = approval
        self.retrieval = retrieval
        self.restored = restored

    def execute(self, context: Any) -> dict[str, Any]:
        run_id = self.bind_run(context)
        plan = self.plan
        request = _request(self.initiation)
        restored = _flatten(self.restored)
        dag_run = context["dag_run"]
        now = datetime.now(UTC)
        started = (getattr(dag_run, "start_date", None) or now).astimezone(UTC)

        results = self.check_restored(restored, request, run_id, started)
        confirmed = datetime.now(UTC)
        report = restore_report(
            plan=plan.name,
            run_id=run_id,
            request=request.to_dict(),
            initiator=initiator_of(context) or "unknown",
            approver=(self.approval or {}).get("approver"),
            manifest=dict(self.retrieval or {}).get("manifest", {}),
            results=results,
            started_at=started,
            confirmed_at=confirmed,
            rto_target_minutes=plan.targets.rto_minutes,
            rpo_target_hours=plan.targets.rpo_hours,
            file_sets=list(self.file_sets or []),
        )
        outcome = "succeeded" if report["succeeded"] else "failed"
        if request.dry_run:
            outcome = "skipped"
        entry = self.audit(
            context,
            action="restore.confirm",
            resource=f"plan/{plan.name}",
            outcome=outcome,
            details={
                "rto_seconds": report["rto_seconds"],
                "rpo_seconds": report["rpo_seconds"],
                "failed": report["failed"],
                "resources": [r.get("resource_id") for r in results],
            },
        )
        report["audit_head"] = {"seq": entry.seq, "hash": entry.hash}
        text = render_restore_text(report)
        report["report_url"] = self._write(report, text, run_id, started)
        self.log.info("Restore report (%s):\n%s", report["report_url"], text)
        self._notify(context, report, text)
        # The notification's entry is this run's last: anchor the head after it.
        self.anchor_audit_head(context)
        if not report["succeeded"]:
            raise AirflowFailException(
                "Restore confirmation failed for "
                + ", ".join(report["failed"])
                + "; see the report at "
                + report["report_url"]
            )
        return report

    def _write(self, report: dict[str, Any], text: str, run_id: str, started: datetime) -> str:
        stamp = started.strftime("%Y%m%dT%H%M%SZ")
        base = self.evidence.key(
            "reports", "restore", self.plan.name, f"{stamp}-{run_token(run_id)}"
        )
        url = self.evidence.url(base + ".json")
        report["report_url"] = url
        for suffix, body, ctype in (
            (".json", json.dumps(report, indent=2, default=str).encode(), "application/json"),
            (".txt", text.encode(), "text/plain; charset=utf-8"),
        ):
            try:
                self.evidence.put(base + suffix, body, ctype)
            except EvidenceExists:
                self.log.info("%s already written by an earlier try.", base + suffix)
        local = os.environ.get(REPORTS_DIR_ENV)
        if local:
            path = Path(local) / f"restore-{stamp}-{run_token(run_id)}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str))
            path.with_suffix(".txt").write_text(text + "\n")
        return url

    def _notify(self, context: Any, report: dict[str, Any], text: str) -> None:
        topic = self.plan.notifications.sns_topic_arn
        if self.from_vault and topic:
            recovery_account = arn_account(self.plan.vault.recovery.role_arn)
            if arn_account(topic) != recovery_account:
                # The topic lives in the workload account, which a restore from the vault does
                # not rely on (it may be lost): the report in the vault evidence bucket and the
                # audit trail are the record.
                self.log.warning(
                    "Not publishing to %s: the topic is not in the recovery account %s.",
                    topic,
                    recovery_account,
                )
                self.audit(
                    context,
                    action="restore.notify",
                    resource=str(topic),
                    outcome="skipped",
                    details={"reason": f"topic not in the recovery account {recovery_account}"},
                )
                return
        state = (
            "DRY RUN" if report["dry_run"] else ("succeeded" if report["succeeded"] else "FAILED")
        )
        notifier = SnsNotifier(
            subject=f"SecureDR restore {state}: plan {report['plan']}",
            message=text + f"\n\nReport: {report['report_url']}",
            plan_path=self.plan_path,
            aws_conn_id=self.aws_conn_id,
            clients=self.clients,
        )
        try:
            message_id = notifier.notify(context)
        except Exception as exc:
            # The restore itself is done; a lost notification must not undo that verdict.
            self.log.error("Could not publish the restore notification: %s", exc)
            self.audit(
                context,
                action="restore.notify",
                resource=str(self.plan.notifications.sns_topic_arn),
                outcome="failed",
                details={"error": str(exc)[:500]},
            )
            return
        if message_id:
            self.audit(
                context,
                action="restore.notify",
                resource=str(self.plan.notifications.sns_topic_arn),
                outcome="succeeded",
                details={"message_id": message_id},
            )


__all__ = [
    "ConfirmRestoreOperator",
    "InitiateRestoreOperator",
    "RestoreRecoveryPointsOperator",
    "RestoredResourceChecks",
    "RetrieveRecoveryPointsOperator",
]
