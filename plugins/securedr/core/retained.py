"""The DR copies a plan still holds, as the signed manifests list them.

Signed manifests - never snapshot tags - say which snapshots are SecureDR's good copies: tags can
be written by anybody allowed to tag, a manifest only by the holder of the signing key. Tags stay
discovery hints. Pure: the caller reads and verifies the manifests, and gives the clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["ListedSnapshot", "RetainedCopy", "age_text", "listed_snapshots", "retained_copies"]


@dataclass(frozen=True)
class RetainedCopy:
    """A DR copy a signed manifest lists as verified, with what the manifest says it must be."""

    kind: str
    source_id: str
    source_region: str
    dr_region: str
    dr_snapshot_id: str
    dr_kms_key_arn: str
    dr_created_at: datetime | None
    run_id: str
    manifest_key: str
    #: The manifest lists a verified vault copy of this point: the DR copy was the workload's
    #: intermediate and is released (deleted) once the vault holds the point, so its absence
    #: is expected.
    vaulted: bool = False
    #: The point's signed ``vault`` entry (None without a vault).
    vault: Mapping[str, Any] | None = None

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.source_region}/{self.source_id}"

    def point(self) -> dict[str, Any]:
        """The recovery point fields :func:`securedr.core.verify.dr_copy_problems` reads."""
        return {
            "kind": self.kind,
            "source_id": self.source_id,
            "source_region": self.source_region,
            "snapshot_id": "",
            "size_gib": 0,
            "source_encrypted": True,
            "run_id": self.run_id,
            "dr_region": self.dr_region,
            "dr_snapshot_id": self.dr_snapshot_id,
            "dr_kms_key_arn": self.dr_kms_key_arn,
        }


@dataclass(frozen=True)
class ListedSnapshot:
    """A snapshot a signed manifest names: a DR copy or the source recovery point it came from."""

    region: str
    snapshot_id: str
    location: str  # "dr" or "source"
    verified: bool
    manifest_key: str
    kind: str = "ebs"
    #: ``source_region/source_id`` as signed (retention groups by it; tags could lie).
    source: str = ""


def parse_utc(value: Any) -> datetime | None:
    """An ISO 8601 time from a signed manifest as UTC (a naive one is read as UTC); ``None``
    when absent or unreadable."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def retained_copies(
    manifests: Iterable[tuple[str, Mapping[str, Any]]],
    *,
    now: datetime,
    keep_days: int,
    skip_run_id: str | None = None,
) -> tuple[list[RetainedCopy], list[RetainedCopy]]:
    """``(within, older)``: verified DR copies the signed manifests list, newest listing first.

    ``within`` are younger than ``keep_days`` (each must still exist); ``older`` may have been
    deleted by retention, so only the ones still found are checked. A copy listed by several
    manifests (a reused copy) appears once. ``skip_run_id``'s manifest (tonight's, verified
    minutes ago) is left out.
    """
    seen: set[tuple[str, str, str]] = set()
    within: list[RetainedCopy] = []
    older: list[RetainedCopy] = []
    limit = timedelta(days=keep_days)
    for key, payload in sorted(manifests, key=lambda m: m[0], reverse=True):
        if skip_run_id is not None and payload.get("run_id") == skip_run_id:
            continue
        for p in payload.get("recovery_points") or []:
            if not p.get("verified") or not p.get("dr_snapshot_id"):
                continue
            ident = (str(p["kind"]), str(p.get("dr_region")), str(p["dr_snapshot_id"]))
            if ident in seen:
                continue
            seen.add(ident)
            created = parse_utc(p.get("dr_created_at"))
            copy = RetainedCopy(
                kind=str(p["kind"]),
                source_id=str(p["source_id"]),
                source_region=str(p["source_region"]),
                dr_region=str(p.get("dr_region") or payload.get("dr_region")),
                dr_snapshot_id=str(p["dr_snapshot_id"]),
                dr_kms_key_arn=str(p.get("dr_kms_key_arn") or payload.get("dr_kms_key_arn")),
                dr_created_at=created,
                run_id=str(payload.get("run_id")),
                manifest_key=key,
                vaulted=bool((p.get("vault") or {}).get("verified")),
                vault=dict(p["vault"]) if isinstance(p.get("vault"), Mapping) else None,
            )
            (within if created is None or now - created <= limit else older).append(copy)
    return within, older


def listed_snapshots(
    manifests: Iterable[tuple[str, Mapping[str, Any]]],
) -> dict[tuple[str, str], ListedSnapshot]:
    """Every snapshot a signed manifest names, by ``(region, snapshot id)``.

    A snapshot is ``verified`` if any manifest lists its point as verified (a DR copy reused by
    a later night keeps its verdict).
    """
    out: dict[tuple[str, str], ListedSnapshot] = {}
    for key, payload in manifests:
        # Snapshots made for resources the night could not protect are listed unverified.
        entries = [
            *(payload.get("recovery_points") or []),
            *({**n, "verified": False} for n in payload.get("not_protected") or []),
        ]
        for p in entries:
            verified = bool(p.get("verified"))
            for region, sid, location in (
                (p.get("dr_region") or payload.get("dr_region"), p.get("dr_snapshot_id"), "dr"),
                (p.get("source_region"), p.get("source_snapshot_id"), "source"),
            ):
                if not region or not sid:
                    continue
                ident = (str(region), str(sid))
                known = out.get(ident)
                if known is None or (verified and not known.verified):
                    out[ident] = ListedSnapshot(
                        str(region),
                        str(sid),
                        location,
                        verified,
                        key,
                        kind=str(p.get("kind")),
                        source=f"{p.get('source_region')}/{p.get('source_id')}",
                    )
    return out


def age_text(created: datetime | None, now: datetime) -> str:
    """'12 days', '3 h' - how long a copy has existed (or 'unknown age')."""
    if created is None:
        return "unknown age"
    delta = max(now - created, timedelta(0))
    if delta.days:
        return f"{delta.days} day" + ("" if delta.days == 1 else "s")
    hours = delta.seconds // 3600
    return f"{hours} h" if hours else f"{delta.seconds // 60} min"
