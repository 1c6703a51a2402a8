"""KMS: resolve the plan's keys and read what the pre-flight checks need."""

from __future__ import annotations

import json
from typing import Any

from securedr.aws.errors import error_code


def describe_key(kms: Any, key: str) -> dict[str, Any] | None:
    """Key metadata for an alias, id or ARN; ``None`` when no such key exists."""
    try:
        return dict(kms.describe_key(KeyId=key)["KeyMetadata"])
    except Exception as exc:
        if error_code(exc) in ("NotFoundException", "InvalidArnException"):
            return None
        raise


def rotation_enabled(kms: Any, key_id: str) -> bool:
    return bool(kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"])


def key_policy(kms: Any, key: str) -> dict[str, Any] | None:
    """The key's (default) key policy as a document; ``None`` when it cannot be read."""
    try:
        return dict(json.loads(kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"]))
    except Exception as exc:
        if error_code(exc) in ("AccessDeniedException", "NotFoundException"):
            return None
        raise
