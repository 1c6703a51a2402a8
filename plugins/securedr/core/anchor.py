"""Signed anchors of the audit trail's head, so a truncated or hidden tail is detectable.

A hash chain cannot tell its own end from a truncation: deleting (or hiding) the newest entries
leaves a valid, shorter chain. After the last entry a run writes, the run stores the head it
saw - ``(seq, hash)`` - in an *anchor*: a document signed with the manifest signing key
(:func:`securedr.core.signing.sign_document`), written once under Object Lock at
:func:`anchor_key`. ``audit-verify`` checks the trail against the newest anchor that verifies:
every entry up to the anchored one must still be there, unchanged.

Anchor payload (``kind`` binds the signature to this use, so a signed manifest can never be
taken for an anchor)::

    {"kind": "securedr.audit-anchor", "version": 1, "plan": ..., "seq": N, "hash": "<hex>",
     "run_id": ..., "anchored_at": "<ISO-8601 UTC>"}

Pure module: no Airflow, no boto3.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from securedr.core.audit import format_time, object_key
from securedr.core.signing import SignatureError, TrustedKeys, sign_document, verify_document

__all__ = [
    "ANCHOR_FOLDER",
    "ANCHOR_KIND",
    "Anchor",
    "AnchorError",
    "anchor_document",
    "anchor_prefix",
    "newest",
    "parse_anchor",
]

ANCHOR_KIND = "securedr.audit-anchor"
ANCHOR_VERSION = 1
#: Evidence folder of the anchors, beside (never inside) ``audit/``, whose every object must
#: be an entry.
ANCHOR_FOLDER = "audit-anchors"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_FIELDS = frozenset({"kind", "version", "plan", "seq", "hash", "run_id", "anchored_at"})


class AnchorError(ValueError):
    """An anchor is unsigned, forged, malformed, or belongs to another plan or object."""


@dataclass(frozen=True)
class Anchor:
    """A verified anchor: entry ``seq`` of ``plan``'s trail had ``hash`` when ``run_id``
    finished."""

    plan: str
    seq: int
    hash: str
    run_id: str
    anchored_at: str
    key: str

    @property
    def head(self) -> tuple[int, str]:
        return self.seq, self.hash


def anchor_prefix(evidence_prefix: str, plan: str) -> str:
    """``<evidence prefix>/audit-anchors/<plan>`` (no trailing slash)."""
    return "/".join(p for p in (evidence_prefix.strip("/"), ANCHOR_FOLDER, plan) if p)


def anchor_document(
    *,
    plan: str,
    seq: int,
    hash_: str,
    run_id: str,
    anchored_at: datetime,
    private_key_pem: bytes | str,
    evidence_prefix: str,
) -> tuple[str, dict[str, Any]]:
    """The object key and signed document anchoring entry ``seq`` (``hash_``) of ``plan``.

    One key per anchored ``seq``: two runs anchoring the same head write the same key, and the
    store's write-once rule keeps the first.
    """
    if not _HEX64.fullmatch(hash_):
        raise AnchorError("an anchored hash must be 64 lowercase hex characters")
    key = object_key(anchor_prefix(evidence_prefix, plan), seq)
    payload = {
        "kind": ANCHOR_KIND,
        "version": ANCHOR_VERSION,
        "plan": plan,
        "seq": seq,
        "hash": hash_,
        "run_id": run_id,
        "anchored_at": format_time(anchored_at),
    }
    return key, sign_document(payload, private_key_pem)


def parse_anchor(
    document: Any, trusted: TrustedKeys | Iterable[bytes | str], *, plan: str, key: str
) -> Anchor:
    """Verify ``document`` (stored at ``key``) as an anchor of ``plan``; raise
    :class:`AnchorError` naming what is wrong.

    The key is unsigned, so it must be the one the signed ``seq`` implies: an old anchor copied
    under a newer name is refused, like a replayed manifest.
    """
    try:
        payload = verify_document(document, trusted)
    except SignatureError as exc:
        raise AnchorError(f"anchor {key} cannot be trusted: {exc}") from None
    if not isinstance(payload, Mapping) or set(payload) != _FIELDS:
        raise AnchorError(f"anchor {key} is not an audit anchor (fields differ)")
    if payload["kind"] != ANCHOR_KIND or payload["version"] != ANCHOR_VERSION:
        raise AnchorError(f"anchor {key} is a {payload['kind']!r} document, not an anchor")
    if payload["plan"] != plan:
        raise AnchorError(f"anchor {key} anchors plan {payload['plan']!r}, not {plan!r}")
    seq = payload["seq"]
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise AnchorError(f"anchor {key} holds no valid entry number")
    if not key.endswith("/" + object_key("", seq)) and key != object_key("", seq):
        raise AnchorError(
            f"anchor {key} anchors entry {seq}: it is stored under another entry's name "
            "(an older anchor replayed as a newer one)"
        )
    hash_ = payload["hash"]
    if not isinstance(hash_, str) or not _HEX64.fullmatch(hash_):
        raise AnchorError(f"anchor {key} holds no valid hash")
    return Anchor(
        plan=plan,
        seq=seq,
        hash=hash_,
        run_id=str(payload["run_id"]),
        anchored_at=str(payload["anchored_at"]),
        key=key,
    )


def newest(anchors: Iterable[Anchor]) -> Anchor | None:
    """The anchor of the highest entry number, or None."""
    return max(anchors, key=lambda a: a.seq, default=None)
