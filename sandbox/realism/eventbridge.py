"""EventBridge pattern matching on arrays of objects, as AWS does it.

Not a section: a correction installed on import. EventBridge matches a pattern field against
every element of an array in the event, also through arrays of objects: the pattern
``{"items": {"group": ["all"]}}`` matches ``{"items": [{"group": "all"}]}``
(https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns-arrays.html).
moto 5.2.5 stops flattening at the first array, so such a pattern never matches there; the
CloudTrail record of ModifySnapshotAttribute keeps its shares in exactly such an array
(``createVolumePermission.add.items[]``), so the shipped rules depend on it.
"""

from __future__ import annotations

from typing import Any

from moto.events.models import EventPattern


def _flatten(node: Any, prefix: str = "", result: dict[str, Any] | None = None) -> dict[str, Any]:
    if result is None:
        result = {}
    if isinstance(node, dict):
        for k, v in node.items():
            key = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict) and v:
                _flatten(v, key, result)
            elif isinstance(v, list) and any(isinstance(i, dict) for i in v):
                for item in v:
                    if isinstance(item, dict):
                        for sub_key, sub_value in _flatten(item, key).items():
                            values = sub_value if isinstance(sub_value, list) else [sub_value]
                            result.setdefault(sub_key, []).extend(values)
                    else:
                        result.setdefault(key, []).append(item)
            else:
                result[key] = v
    return result


EventPattern._flatten_dict = staticmethod(_flatten)  # type: ignore[method-assign]
