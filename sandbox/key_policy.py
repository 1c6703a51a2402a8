"""A small evaluator of KMS key policies, for calls that cross accounts in the sandbox.

Moto does not judge key policies (it only refuses a ``DescribeKey`` an explicit ``"*"`` deny
names). When a principal of one account uses a key of another, AWS allows the call only if the
key's policy (the resource-based policy of the key) allows that account or principal, and the
caller's own IAM policy delegates it
(https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-modifying-external-accounts.html).
The sandbox checks the key-policy half; the caller's IAM half is left to the IAM evaluator of the
shipped policies.

Evaluation, simplified from
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html:
an explicit ``Deny`` that matches wins; otherwise an ``Allow`` that matches allows; otherwise
the call is refused. A statement matches when its ``Principal`` names the caller (``"*"``, the
caller's account id, ``arn:aws:iam::<account>:root``, or the caller's role / user ARN), one of its
``Action`` patterns matches (IAM wildcards ``*`` and ``?``, case-insensitive) and every condition
holds. Conditions understood: the operators ``StringEquals``, ``StringNotEquals``,
``StringLike``, ``StringNotLike``, ``Bool``, ``ArnEquals``, ``ArnLike`` (and their ``IfExists``
forms) on the keys the caller passes in ``context``. A condition on a key the sandbox cannot
know makes an ``Allow`` not apply and a ``Deny`` apply: unknown means refused.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Principal:
    """Who is calling: the account, and the ARNs a policy may name the caller by."""

    account: str
    arns: tuple[str, ...] = ()
    context: Mapping[str, str] = field(default_factory=dict)

    def named_by(self, value: str) -> bool:
        if value == "*":
            return True
        if value in (self.account, f"arn:aws:iam::{self.account}:root"):
            return True
        return value in self.arns


def principal_for(account: str, caller_arn: str | None) -> Principal:
    """The caller as a key policy sees it: an assumed-role session is named by its role ARN."""
    arns: list[str] = []
    if caller_arn:
        arns.append(caller_arn)
        parts = caller_arn.split(":", 5)
        if len(parts) == 6 and parts[2] == "sts" and parts[5].startswith("assumed-role/"):
            role = parts[5].split("/")[1]
            arns.append(f"arn:aws:iam::{parts[4]}:role/{role}")
    return Principal(account=account, arns=tuple(arns))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _glob(pattern: str, value: str, *, case: bool = True) -> bool:
    if not case:
        pattern, value = pattern.lower(), value.lower()
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def _principal_matches(statement: Mapping[str, Any], caller: Principal) -> bool:
    if "NotPrincipal" in statement:
        named = statement["NotPrincipal"]
        values = _as_list(named.get("AWS")) if isinstance(named, dict) else _as_list(named)
        return not any(caller.named_by(str(v)) for v in values)
    named = statement.get("Principal")
    if named == "*":
        return True
    if not isinstance(named, dict):
        return False
    return any(caller.named_by(str(v)) for v in _as_list(named.get("AWS")))


def _action_matches(statement: Mapping[str, Any], action: str) -> bool:
    if "NotAction" in statement:
        return not any(_glob(str(p), action, case=False) for p in _as_list(statement["NotAction"]))
    return any(_glob(str(p), action, case=False) for p in _as_list(statement.get("Action")))


_OPERATORS = {
    "StringEquals": (lambda want, have: want == have, False),
    "StringNotEquals": (lambda want, have: want != have, True),
    "StringEqualsIgnoreCase": (lambda want, have: want.lower() == have.lower(), False),
    "StringLike": (lambda want, have: _glob(want, have), False),
    "StringNotLike": (lambda want, have: not _glob(want, have), True),
    "Bool": (lambda want, have: want.lower() == have.lower(), False),
    "ArnEquals": (lambda want, have: want == have, False),
    "ArnLike": (lambda want, have: _glob(want, have), False),
}


def _conditions_hold(statement: Mapping[str, Any], context: Mapping[str, str]) -> bool | None:
    """True/False, or None when a condition names an operator or key the sandbox cannot judge."""
    lowered = {k.lower(): v for k, v in context.items()}
    for operator, tests in (statement.get("Condition") or {}).items():
        if_exists = operator.endswith("IfExists")
        name = operator[: -len("IfExists")] if if_exists else operator
        if name not in _OPERATORS or not isinstance(tests, dict):
            return None
        compare, negated = _OPERATORS[name]
        for key, wanted in tests.items():
            have = lowered.get(key.lower())
            if have is None:
                if if_exists or negated:
                    continue
                return None
            results = [compare(str(w), str(have)) for w in _as_list(wanted)]
            # A negated operator holds when the value matches none; others when it matches any.
            if not (all(results) if negated else any(results)):
                return False
    return True


def _statements(policy: str | Mapping[str, Any] | None) -> Iterable[Mapping[str, Any]]:
    if policy is None:
        return []
    document = json.loads(policy) if isinstance(policy, str) else policy
    return _as_list(document.get("Statement"))


def allows(
    policy: str | Mapping[str, Any] | None,
    action: str,
    caller: Principal,
    context: Mapping[str, str] | None = None,
) -> bool:
    """Whether ``policy`` lets ``caller`` perform ``action`` (e.g. ``kms:Decrypt``)."""
    context = {**caller.context, **(context or {})}
    allowed = False
    for statement in _statements(policy):
        if not (_principal_matches(statement, caller) and _action_matches(statement, action)):
            continue
        holds = _conditions_hold(statement, context)
        if str(statement.get("Effect", "")).lower() == "deny":
            if holds is not False:
                return False
        elif holds:
            allowed = True
    return allowed


def missing(
    policy: str | Mapping[str, Any] | None,
    actions: Iterable[str],
    caller: Principal,
    context: Mapping[str, str] | None = None,
) -> list[str]:
    """The ``actions`` that ``policy`` does not let ``caller`` perform, in order."""
    return [a for a in actions if not allows(policy, a, caller, context)]
