"""EC2 APIs SecureDR calls that moto does not emulate yet.

EBS snapshot block-public-access is an account-level, per-Region setting. Moto has no model of
it, and a security check must not be weakened to suit the emulator, so the sandbox adds the three
calls with AWS's request and response shapes. A fresh sandbox Region starts ``unblocked`` as a new
AWS account does.

EBS snapshot lock (``LockSnapshot``, ``UnlockSnapshot``, ``DescribeLockedSnapshots``) is missing
from moto too; see :mod:`sandbox.snapshot_locks`. ``RegisterImage`` in moto ignores the block
device mappings it is given; the sandbox remembers the snapshots they name so that deleting one
of them is refused while the AMI is registered, as on AWS. What one account may do with
another's snapshots and keys: :mod:`sandbox.cross_account`.
"""

from __future__ import annotations

from typing import Any

from moto.core.responses import ActionResult
from moto.ec2.models.amis import Ami
from moto.ec2.responses import EC2Response

from sandbox import cross_account, snapshot_locks

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


#: (account id, Region, AMI id) -> snapshot ids its block device mappings name
AMI_SNAPSHOTS: dict[tuple[str, str, str], list[str]] = {}
_ORIGINAL: dict[str, Any] = {}


def _register_image(self: EC2Response) -> ActionResult:
    # AWS: "You can't delete a snapshot of the root device of an EBS volume used by a registered
    # AMI" (https://docs.aws.amazon.com/ebs/latest/userguide/ebs-deleting-snapshot.html). Moto
    # ignores BlockDeviceMappings and invents a snapshot of its own, so the AMI would neither
    # show nor protect the snapshot it was registered from.
    result = _ORIGINAL["register_image"](self)
    mappings = self._get_param("BlockDeviceMappings", []) or []
    snapshot_ids = [
        m["Ebs"]["SnapshotId"] for m in mappings if (m.get("Ebs") or {}).get("SnapshotId")
    ]
    ami_id = result.result["ImageId"]
    if snapshot_ids:
        backend = self.ec2_backend
        AMI_SNAPSHOTS[(self.current_account, self.region, ami_id)] = snapshot_ids
        ami = backend.amis[ami_id]
        root = next(
            (
                m["Ebs"]["SnapshotId"]
                for m in mappings
                if m.get("DeviceName") == ami.root_device_name and m.get("Ebs")
            ),
            snapshot_ids[0],
        )
        if root in backend.snapshots:
            backend.snapshots.pop(ami.ebs_snapshot.id, None)  # moto's invented snapshot
            ami.ebs_snapshot = backend.snapshots[root]
    return result


def _ami_filter_value(self: Any, filter_name: str, method_name: str | None = None) -> Any:
    # DescribeImages' block-device-mapping.snapshot-id filter finds the AMIs that use a snapshot
    # (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeImages.html); moto
    # does not implement it.
    if filter_name == "block-device-mapping.snapshot-id":
        key = (self.ec2_backend.account_id, self.ec2_backend.region_name, self.id)
        return AMI_SNAPSHOTS.get(key) or [self.ebs_snapshot.id]
    return _ORIGINAL["ami_filter_value"](self, filter_name, method_name)


def ami_snapshot_ids(account: str, region: str, ami_id: str) -> list[str]:
    """Snapshots an AMI registered through the sandbox names in its block device mappings."""
    return list(AMI_SNAPSHOTS.get((account, region, ami_id), []))


def install() -> None:
    """Teach moto's EC2 responder the calls above (idempotent)."""
    EC2Response.get_snapshot_block_public_access_state = _get_state  # type: ignore[attr-defined]
    EC2Response.enable_snapshot_block_public_access = _enable  # type: ignore[attr-defined]
    EC2Response.disable_snapshot_block_public_access = _disable  # type: ignore[attr-defined]
    snapshot_locks.install()
    cross_account.install()
    if "register_image" not in _ORIGINAL:
        _ORIGINAL["register_image"] = EC2Response.register_image
        _register_image.__name__ = "register_image"
        EC2Response.register_image = _register_image  # type: ignore[method-assign]
        _ORIGINAL["ami_filter_value"] = Ami.get_filter_value
        Ami.get_filter_value = _ami_filter_value  # type: ignore[method-assign]


def reset() -> None:
    """Forget every Region's setting and every lock (moto's own reset does not know about them)."""
    _STATE.clear()
    AMI_SNAPSHOTS.clear()
    snapshot_locks.reset()
