"""EC2 APIs SecureDR's pre-flight checks call that moto does not emulate yet.

EBS snapshot block-public-access is an account-level, per-Region setting. Moto has no model of
it, and a security check must not be weakened to suit the emulator, so the sandbox adds the three
calls with AWS's request and response shapes. A fresh sandbox Region starts ``unblocked`` as a new
AWS account does.
"""

from __future__ import annotations

from moto.core.responses import ActionResult
from moto.ec2.responses import EC2Response

_VALID_STATES = {"block-all-sharing", "block-new-sharing", "unblocked"}
#: (account id, Region) -> state
_STATE: dict[tuple[str, str], str] = {}


def _key(response: EC2Response) -> tuple[str, str]:
    return response.current_account, response.region


def _get_state(self: EC2Response) -> ActionResult:
    return ActionResult({"State": _STATE.get(_key(self), "unblocked"), "ManagedBy": "account"})


def _enable(self: EC2Response) -> ActionResult:
    state = self._get_param("State")
    if state not in _VALID_STATES - {"unblocked"}:
        from moto.ec2.exceptions import InvalidParameterValueError

        raise InvalidParameterValueError(str(state))
    self.error_on_dryrun()
    _STATE[_key(self)] = state
    return ActionResult({"State": state})


def _disable(self: EC2Response) -> ActionResult:
    self.error_on_dryrun()
    _STATE[_key(self)] = "unblocked"
    return ActionResult({"State": "unblocked"})


def install() -> None:
    """Teach moto's EC2 responder the snapshot block-public-access calls (idempotent)."""
    EC2Response.get_snapshot_block_public_access_state = _get_state  # type: ignore[attr-defined]
    EC2Response.enable_snapshot_block_public_access = _enable  # type: ignore[attr-defined]
    EC2Response.disable_snapshot_block_public_access = _disable  # type: ignore[attr-defined]


def reset() -> None:
    """Forget every Region's setting (moto's own reset does not know about it)."""
    _STATE.clear()
