"""Section ``containment``: when each containment call reached the sandbox (a meter).

Not a behaviour of AWS: ``make respond-bench`` measures the latency from a CloudTrail event's
time to the call that contained it, and the sandbox is where that call lands, whatever process
made it. While the section is on, every successful containment call is recorded with the wall
clock time it was served and the resource it acted on:

- ec2 ``ModifySnapshotAttribute`` with ``OperationType=remove`` (resource: the snapshot id);
- rds ``ModifyDBSnapshotAttribute`` with ``ValuesToRemove`` (the DB snapshot identifier);
- ec2 ``EnableSnapshotBlockPublicAccess`` (``snapshot-bpa:<region>``);
- kms ``EnableKey`` and ``CancelKeyDeletion`` (the key id).

``GET /moto-api/securedr/containment`` returns them; ``POST`` switches the section on and
forgets what was recorded. It never changes an answer.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import sandbox.realism as realism

NAME = "containment"
ENDPOINT = "/moto-api/securedr/containment"

_LOCK = threading.Lock()
_CALLS: list[dict[str, Any]] = []


def _status(result: Any) -> int:
    if isinstance(result, tuple) and result and isinstance(result[0], int):
        return result[0]
    return 200


def _resource(call: realism.Call) -> str | None:
    if call.service == "ec2" and call.action == "ModifySnapshotAttribute":
        return call.param("SnapshotId") if call.param("OperationType") == "remove" else None
    if call.service == "rds" and call.action == "ModifyDBSnapshotAttribute":
        removes = call.param_list("ValuesToRemove.AttributeValue") or call.param_list(
            "ValuesToRemove.member"
        )
        return call.param("DBSnapshotIdentifier") if removes else None
    if call.service == "ec2" and call.action == "EnableSnapshotBlockPublicAccess":
        return f"snapshot-bpa:{call.region}"
    if call.service == "kms" and call.action in ("EnableKey", "CancelKeyDeletion"):
        key = str(call.param("KeyId") or "")
        return key.rsplit("/", 1)[-1]
    return None


def observe(call: realism.Call, result: realism.TYPE_RESPONSE) -> None:
    if _status(result) >= 400:
        return
    resource = _resource(call)
    if resource is None:
        return
    with _LOCK:
        _CALLS.append(
            {
                "time": time.time(),
                "service": call.service,
                "action": call.action,
                "region": call.region,
                "resource": resource,
            }
        )


def calls() -> list[dict[str, Any]]:
    with _LOCK:
        return list(_CALLS)


def _forget() -> None:
    with _LOCK:
        _CALLS.clear()


def _endpoint(request: Any, full_url: str, headers: Any) -> realism.TYPE_RESPONSE:
    if request.method == "POST":
        _forget()
        realism.configure(NAME)
        return 200, {"Content-Type": "application/json"}, json.dumps({"status": "on"})
    return 200, {"Content-Type": "application/json"}, json.dumps({"calls": calls()})


def install_endpoint() -> None:
    """Serve :func:`calls` under moto's own API paths (before the server starts)."""
    from moto.moto_api._internal import urls

    urls.url_paths["{0}" + ENDPOINT + "$"] = _endpoint


realism.observer(NAME, observe)
realism.on_reset(NAME, _forget)
install_endpoint()  # on import: realism.install() loads this module before the server starts
