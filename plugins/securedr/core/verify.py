"""The verdict on a DR copy, as a pure function of what AWS reports about it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from securedr.core.model import (
    LINEAGE_TAGS,
    ROLE_DR_COPY,
    TAG_PLAN,
    TAG_ROLE,
    TAG_SOURCE_ID,
    RecoveryPoint,
    tags_to_dict,
)


def state_and_tags(kind: str, snapshot: Mapping[str, Any]) -> tuple[Any, str, dict[str, str]]:
    """A described EBS snapshot's or RDS DB snapshot's state, the state that means done
    (``completed`` / ``available``), and its tags."""
    if kind == "ebs":
        return snapshot.get("State"), "completed", tags_to_dict(snapshot.get("Tags"))
    return snapshot.get("Status"), "available", tags_to_dict(snapshot.get("TagList"))


def dr_copy_problems(
    point: RecoveryPoint, snapshot: dict[str, Any] | None, *, expected_key_arn: str, plan: str
) -> list[str]:
    """Everything wrong with a DR copy; ``[]`` means completed, encrypted under exactly the plan's
    DR key and carrying its lineage. Sharing is checked separately (it can be remediated)."""
    if snapshot is None:
        return ["the DR copy does not exist"]
    problems: list[str] = []
    state, done, tags = state_and_tags(point.kind, snapshot)
    if state != done:
        problems.append(f"state is {state!r}, expected {done!r}")
    encrypted = snapshot.get("Encrypted")
    if not encrypted:
        problems.append("the copy is NOT encrypted")
    key = snapshot.get("KmsKeyId")
    if encrypted and key != expected_key_arn:
        problems.append(f"encrypted under {key}, not the plan's DR key {expected_key_arn}")
    missing = [t for t in LINEAGE_TAGS if t not in tags]
    if missing:
        problems.append(f"lineage tags missing: {', '.join(missing)}")
    if tags.get(TAG_PLAN, plan) != plan:
        problems.append(f"tagged for plan {tags[TAG_PLAN]!r}, not {plan!r}")
    if tags.get(TAG_SOURCE_ID, point.source_id) != point.source_id:
        problems.append(f"tagged as a copy of {tags[TAG_SOURCE_ID]}, not {point.source_id}")
    if tags.get(TAG_ROLE, ROLE_DR_COPY) != ROLE_DR_COPY:
        problems.append(f"tagged with role {tags[TAG_ROLE]!r}, not {ROLE_DR_COPY!r}")
    return problems
