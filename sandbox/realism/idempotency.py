"""EC2 client tokens: a retried CreateVolume with the same ``ClientToken`` returns the volume the
first call created instead of a second one (moto ignores the token).

AWS always honours client tokens, so this is not a switchable section: it is installed with the
layer and always on. The same token with other parameters (besides Region / zone) fails with
``IdempotentParameterMismatch``.
https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-idempotency.html
"""

from __future__ import annotations

import threading
from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.responses import EC2Response

import sandbox.realism as realism

_LOCK = threading.Lock()
#: (account, Region, token) -> (volume id, request parameters that must match on a retry)
_TOKENS: dict[tuple[str, str, str], tuple[str, tuple[Any, ...]]] = {}
_ORIGINAL: dict[str, Any] = {}


def _signature(self: EC2Response) -> tuple[Any, ...]:
    return tuple(
        self._get_param(name)
        for name in ("SnapshotId", "Size", "VolumeType", "Iops", "Throughput", "KmsKeyId")
    )


def _create_volume(self: EC2Response) -> Any:
    token = self._get_param("ClientToken")
    if not token:
        return _ORIGINAL["create_volume"](self)
    key = (self.current_account, self.region, str(token))
    with _LOCK:
        known = _TOKENS.get(key)
        if known is not None:
            volume_id, signature = known
            volume = self.ec2_backend.volumes.get(volume_id)
            if volume is not None:
                if signature != _signature(self):
                    raise realism.AWSError(
                        "IdempotentParameterMismatch",
                        f"The client token {token} has already been used with different "
                        "parameters.",
                    )
                return ActionResult(volume)
        result = _ORIGINAL["create_volume"](self)
        volume = getattr(result, "result", None) or getattr(result, "_result", None)
        volume_id = getattr(volume, "id", None)
        if volume_id:
            _TOKENS[key] = (volume_id, _signature(self))
        return result


def install() -> None:
    if "create_volume" not in _ORIGINAL:
        _ORIGINAL["create_volume"] = EC2Response.create_volume
        EC2Response.create_volume = _create_volume  # type: ignore[method-assign]


install()
