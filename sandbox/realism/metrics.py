"""Section ``metrics``: what a run asked of AWS, counted where AWS would see it.

Not a behaviour of AWS: a meter on the sandbox's side of the wire, so that ``make scale`` (and
any test) measures calls and copy concurrency from the requests the sandbox actually served,
whatever the client did (retries included). It never changes an answer.

While the section is on it records:

- every request by ``(service, action)``, and those answered with an error by code;
- every snapshot copy started (EBS ``CopySnapshot``, RDS ``CopyDBSnapshot``), whether it is
  *ours* (its request carries every tag of the ``ours`` parameter, by default
  ``{"securedr:role": "dr-copy"}``, SecureDR's lineage tag for a DR copy), and for how long the
  ``timing`` section keeps it pending;
- each time a copy starts, how many copies are in flight into its destination Region (EBS and
  RDS apart; RDS counting cross-Region copies only, as AWS's quota does), all of them and ours,
  keeping the most seen: in-flight counts only rise when a copy starts, so sampling there sees
  every maximum;
- source snapshots started (``CreateSnapshot``, ``CreateDBSnapshot``) and their pending time.

:func:`snapshot` returns all of it as JSON-able data, including the union of the intervals during
which at least one copy of ours was pending ("the time AWS kept our copies pending"). The server
serves it at ``GET /moto-api/securedr/metrics`` and forgets it on ``POST`` to the same path
(:func:`install_endpoint`). Parameters: ``ours`` (tags), nothing else.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

import sandbox.realism as realism
from sandbox.realism import timing

NAME = "metrics"
#: The lineage tag SecureDR puts on every DR copy (securedr.core.model.TAG_ROLE/ROLE_DR_COPY).
DEFAULT_OURS = {"securedr:role": "dr-copy"}
ENDPOINT = "/moto-api/securedr/metrics"

_LOCK = threading.RLock()
_CALLS: Counter[tuple[str, str]] = Counter()
_ERRORS: Counter[tuple[str, str, str]] = Counter()


@dataclass
class Started:
    """A snapshot or copy the sandbox started, and its pending interval (sandbox clock)."""

    service: str  #: ``ec2`` or ``rds``
    region: str  #: where it lands
    resource_id: str
    copy: bool
    ours: bool
    entry: timing.InProgress | None  #: None when it completed at once

    def interval(self) -> tuple[float, float] | None:
        if self.entry is None:
            return None
        start = self.entry.started.timestamp()
        return start, start + self.entry.seconds


_STARTED: list[Started] = []
#: (destination Region, "ebs"/"rds") -> {"ours": most seen, "all": most seen}
_MAX_IN_FLIGHT: dict[tuple[str, str], dict[str, int]] = {}
#: destination Region -> most copies of ours in flight at once, EBS and RDS together
_MAX_OURS_TOTAL: dict[str, int] = {}
_OURS_KEYS: set[tuple[str, str, str, str]] = set()

_SNAPSHOT_ID = re.compile(r"<snapshotId>(snap-[0-9a-zA-Z]+)</snapshotId>")
_ERROR_CODE = re.compile(r"<Code>([^<]+)</Code>|\"__type\"\s*:\s*\"(?:[^\"#]*#)?([^\"]+)\"")
_KIND = {"ec2": "ebs", "rds": "rds"}


def _forget() -> None:
    with _LOCK:
        _CALLS.clear()
        _ERRORS.clear()
        _STARTED.clear()
        _MAX_IN_FLIGHT.clear()
        _MAX_OURS_TOTAL.clear()
        _OURS_KEYS.clear()


def _text(body: Any) -> str:
    if isinstance(body, bytes):
        return body.decode(errors="replace")
    return body if isinstance(body, str) else ""


def _status(result: Any) -> int:
    if isinstance(result, tuple) and result and isinstance(result[0], int):
        return result[0]
    return int(getattr(result, "status_code", 200))


def request_tags(params: dict[str, Any]) -> dict[str, str]:
    """Tags a query-protocol request carries, whatever its list shape.

    EC2 sends ``TagSpecification.1.Tag.N.Key``/``.Value``; RDS ``Tags.Tag.N.Key``/``.Value``
    (or ``Tags.member.N``): every ``<prefix>.Key`` pairs with ``<prefix>.Value``.
    """
    tags: dict[str, str] = {}
    for key, value in params.items():
        if key.endswith(".Key") and isinstance(value, str):
            tags[value] = str(params.get(key[: -len("Key")] + "Value", ""))
    return tags


def _is_ours(call: realism.Call) -> bool:
    wanted = (realism.settings(NAME) or {}).get("ours") or DEFAULT_OURS
    tags = request_tags(call.params)
    return all(tags.get(k) == v for k, v in wanted.items())


def _new_resource_id(call: realism.Call, body: str) -> str | None:
    if call.service == "ec2":
        found = _SNAPSHOT_ID.search(body)
        return found.group(1) if found else None
    create = call.action == "CreateDBSnapshot"
    identifier = call.param("DBSnapshotIdentifier" if create else "TargetDBSnapshotIdentifier")
    return str(identifier).lower() if identifier else None


def _sample(region: str) -> None:
    """Copies in flight into ``region`` now; keep the most seen."""
    counts = {("ebs", "all"): 0, ("ebs", "ours"): 0, ("rds", "all"): 0, ("rds", "ours"): 0}
    with timing._LOCK:
        entries = list(timing._IN_PROGRESS.items())
    for key, entry in entries:
        if not entry.copy or entry.region != region:
            continue
        if entry.service == "rds" and not entry.cross_region:
            continue
        kind = _KIND[entry.service]
        counts[(kind, "all")] += 1
        if key in _OURS_KEYS:
            counts[(kind, "ours")] += 1
    for kind in ("ebs", "rds"):
        seen = _MAX_IN_FLIGHT.setdefault((region, kind), {"ours": 0, "all": 0})
        for which in ("ours", "all"):
            seen[which] = max(seen[which], counts[(kind, which)])
    total = counts[("ebs", "ours")] + counts[("rds", "ours")]
    _MAX_OURS_TOTAL[region] = max(_MAX_OURS_TOTAL.get(region, 0), total)


def observe(call: realism.Call, result: realism.TYPE_RESPONSE) -> None:
    status = _status(result)
    body = _text(result[2]) if isinstance(result, tuple) and len(result) > 2 else ""
    with _LOCK:
        _CALLS[(call.service, call.action)] += 1
        if status >= 400:
            found = _ERROR_CODE.search(body)
            code = (found.group(1) or found.group(2)) if found else str(status)
            _ERRORS[(call.service, call.action, code)] += 1
            return
        started = {
            "CreateSnapshot": False,
            "CopySnapshot": True,
            "CreateDBSnapshot": False,
            "CopyDBSnapshot": True,
        }
        if call.service not in _KIND or call.action not in started:
            return
        resource_id = _new_resource_id(call, body)
        if resource_id is None:
            return
        key = (call.service, call.account, call.region, resource_id)
        copy = started[call.action]
        ours = copy and _is_ours(call)
        with timing._LOCK:
            entry = timing._IN_PROGRESS.get(key)
        _STARTED.append(Started(call.service, call.region, resource_id, copy, ours, entry))
        if copy:
            if ours:
                _OURS_KEYS.add(key)
            _sample(call.region)


def union_seconds(intervals: list[tuple[float, float]]) -> tuple[float, list[list[float]]]:
    """Total length of the union of ``intervals``, and the merged intervals themselves."""
    merged: list[list[float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return sum(end - start for start, end in merged), merged


def _pending(items: list[Started]) -> dict[str, Any]:
    seconds, merged = union_seconds([i for s in items if (i := s.interval()) is not None])
    return {"count": len(items), "union_seconds": round(seconds, 3), "intervals": merged}


def snapshot() -> dict[str, Any]:
    """Everything recorded since the section was switched on (or last forgotten)."""
    with _LOCK:
        calls: dict[str, dict[str, int]] = {}
        for (service, action), count in sorted(_CALLS.items()):
            calls.setdefault(service, {})[action] = count
        errors: dict[str, dict[str, dict[str, int]]] = {}
        for (service, action, code), count in sorted(_ERRORS.items()):
            errors.setdefault(service, {}).setdefault(action, {})[code] = count
        copies = [s for s in _STARTED if s.copy]
        in_flight: dict[str, dict[str, Any]] = {}
        for (region, kind), seen in sorted(_MAX_IN_FLIGHT.items()):
            in_flight.setdefault(region, {})[kind] = dict(seen)
        for region, total in _MAX_OURS_TOTAL.items():
            in_flight.setdefault(region, {})["ours_total"] = total
        return {
            "calls": calls,
            "total_calls": sum(_CALLS.values()),
            "errors": errors,
            "max_in_flight": in_flight,
            "copies_started": {
                kind: {
                    "ours": sum(1 for s in copies if s.ours and _KIND[s.service] == kind),
                    "all": sum(1 for s in copies if _KIND[s.service] == kind),
                }
                for kind in ("ebs", "rds")
            },
            "pending": {
                "our_copies": _pending([s for s in copies if s.ours]),
                "all_copies": _pending(copies),
                "snapshots": _pending([s for s in _STARTED if not s.copy]),
            },
        }


def _endpoint(request: Any, full_url: str, headers: Any) -> realism.TYPE_RESPONSE:
    if request.method == "POST":
        _forget()
        return 200, {"Content-Type": "application/json"}, json.dumps({"status": "ok"})
    body = snapshot() if realism.settings(NAME) is not None else {"error": "metrics is off"}
    return 200, {"Content-Type": "application/json"}, json.dumps(body)


def install_endpoint() -> None:
    """Serve :func:`snapshot` under moto's own API paths (before the server starts)."""
    from moto.moto_api._internal import urls

    urls.url_paths["{0}" + ENDPOINT + "$"] = _endpoint


realism.observer(NAME, observe)
realism.on_reset(NAME, _forget)
