"""The vault copies a plan holds in its DR vault account, as the signed manifests list them.

Each verified recovery point of a manifest written with a vault carries a ``vault`` entry
(README, "A DR vault in another account"):

    {"account_id": "...", "region": "us-west-2", "kind": "ebs" | "rds",
     "snapshot_id": "snap-..." (ebs) | "db_snapshot_identifier": "...", "arn": "..." (rds),
     "kms_key_arn": "...", "created_at": "<AWS time>",
     "lock": {"mode": "compliance", "cool_off_hours": 24, "expires_on": "<iso>"} | null,
     "verified": true}

Vault retention deletes only what these entries list: tags in the vault account are hints at
best, a manifest only the signing key writes. Pure: the caller reads and verifies the manifests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from securedr.core.retained import parse_utc

__all__ = ["VaultListed", "listed_vault_copies"]


@dataclass(frozen=True)
class VaultListed:
    """One vault copy as signed: which copy, of what, and until when its lock holds."""

    kind: str  #: "ebs" or "rds"
    copy_id: str  #: snapshot id (EBS) or DB snapshot identifier (RDS)
    region: str
    #: ``source_region/source_id`` as signed: retention keeps copies per source.
    source: str
    verified: bool
    created_at: datetime | None
    #: The compliance lock's signed expiry (EBS); ``None`` for RDS, which has no snapshot lock.
    lock_expires_on: datetime | None
    manifest_key: str


def listed_vault_copies(
    manifests: Iterable[tuple[str, Mapping[str, Any]]],
    *,
    account_id: str,
    region: str,
) -> tuple[dict[tuple[str, str], VaultListed], list[str]]:
    """``(listed, ignored)``: every vault copy in ``account_id`` / ``region`` the manifests
    name, by ``(kind, copy id)``, and why each other vault entry was ignored.

    A copy listed by several manifests is verified if any lists it verified, and keeps the
    latest signed lock expiry (a lock is only ever extended). An entry naming another account
    or Region, another kind, or no copy id is ignored (named in ``ignored``): it can never make
    this account's retention delete anything.
    """
    listed: dict[tuple[str, str], VaultListed] = {}
    ignored: list[str] = []
    for key, payload in manifests:
        for point in payload.get("recovery_points") or []:
            entry = point.get("vault")
            if not isinstance(entry, Mapping):
                continue
            kind = entry.get("kind")
            copy_id = (
                entry.get("snapshot_id") if kind == "ebs" else entry.get("db_snapshot_identifier")
            )
            where = f"{key}: vault copy {copy_id or '?'} of {point.get('source_id')}"
            if kind not in ("ebs", "rds") or not copy_id:
                ignored.append(f"{where}: no kind or copy id; ignored")
                continue
            if str(entry.get("account_id")) != account_id or entry.get("region") != region:
                ignored.append(
                    f"{where}: listed in account {entry.get('account_id')} / "
                    f"{entry.get('region')}, not this vault ({account_id} / {region}); ignored"
                )
                continue
            lock = entry.get("lock") if isinstance(entry.get("lock"), Mapping) else None
            found = VaultListed(
                kind=str(kind),
                copy_id=str(copy_id),
                region=region,
                source=f"{point.get('source_region')}/{point.get('source_id')}",
                verified=bool(entry.get("verified")) and bool(point.get("verified")),
                created_at=parse_utc(entry.get("created_at")),
                lock_expires_on=parse_utc(lock.get("expires_on")) if lock else None,
                manifest_key=key,
            )
            known = listed.get((found.kind, found.copy_id))
            if known is not None:
                expiries = [e for e in (known.lock_expires_on, found.lock_expires_on) if e]
                found = VaultListed(
                    kind=found.kind,
                    copy_id=found.copy_id,
                    region=region,
                    source=known.source,
                    verified=known.verified or found.verified,
                    created_at=known.created_at or found.created_at,
                    lock_expires_on=max(expiries) if expiries else None,
                    manifest_key=known.manifest_key if known.verified else found.manifest_key,
                )
            listed[(found.kind, found.copy_id)] = found
    return listed, ignored
