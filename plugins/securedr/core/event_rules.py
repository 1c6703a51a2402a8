"""The EventBridge rules that feed dr_incident_response, rendered for a plan.

``include/eventbridge/*.json`` each hold one rule: ``Description`` and ``EventPattern``. A
pattern names plan-specific values as placeholders: a string ``"${evidence_bucket}"`` or
``"${evidence_prefix}"`` is replaced by the value; a list element ``"${watched_roles}"`` expands
to every watched role name. Pure: reads the shipped files, talks to nobody.

Patterns follow the EventBridge pattern syntax (``exists``, ``prefix``, ``$or``; arrays in the
event match when any element does):
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns-content-based-filtering.html
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from securedr.core.incident import ResponseScope

RULES_DIR = Path(__file__).resolve().parents[3] / "include" / "eventbridge"


@dataclass(frozen=True)
class EventRule:
    """One EventBridge rule: its name (the file's stem), description and rendered pattern."""

    name: str
    description: str
    pattern: dict[str, Any]

    @property
    def pattern_json(self) -> str:
        return json.dumps(self.pattern, sort_keys=True)

    @property
    def global_service(self) -> bool:
        """IAM's CloudTrail events are delivered in us-east-1 only."""
        return self.pattern.get("source") == ["aws.iam"]


def _render(node: Any, values: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        return {k: _render(v, values) for k, v in node.items()}
    if isinstance(node, list):
        out: list[Any] = []
        for item in node:
            if isinstance(item, str) and item.startswith("${") and item.endswith("}"):
                value = values[item[2:-1]]
                out.extend(value if isinstance(value, list) else [value])
            else:
                out.append(_render(item, values))
        return out
    if isinstance(node, str) and node.startswith("${") and node.endswith("}"):
        return values[node[2:-1]]
    return node


def load_rules(scope: ResponseScope, rules_dir: Path = RULES_DIR) -> list[EventRule]:
    """Every shipped rule rendered for ``scope``, sorted by name.

    Raises ValueError naming the file when a rule is malformed or names an unknown placeholder.
    """
    values: dict[str, Any] = {
        "evidence_bucket": scope.evidence_bucket,
        "evidence_prefix": scope.evidence_prefix,
        "watched_roles": sorted(scope.watched_roles) or ["securedr-no-watched-role"],
    }
    rules = []
    for path in sorted(rules_dir.glob("*.json")):
        try:
            data = json.loads(path.read_text())
            rules.append(
                EventRule(
                    name=path.stem,
                    description=str(data["Description"]),
                    pattern=_render(data["EventPattern"], values),
                )
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(
                f"EventBridge rule {path} is malformed ({exc!r}); it needs 'Description' and "
                "'EventPattern' and may use only ${evidence_bucket}, ${evidence_prefix} and "
                "${watched_roles}"
            ) from None
    return rules
