"""The drill's sandbox step under the restore role: a full VPC quota fails at once, no retry."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from tests.restore.conftest import audit_entries, make_context


def test_a_full_vpc_quota_fails_the_sandbox_step_without_retries_saying_what_to_do(
    restore_plan,
):
    from sandbox import realism
    from securedr.operators.drill import CreateDrillSandboxOperator

    def before(call):
        if call.action == "CreateVpc":
            raise realism.AWSError(
                "VpcLimitExceeded", "The maximum number of VPCs has been reached."
            )

    realism.behaviour("test-vpc-quota-operator", before=before)
    realism.configure("test-vpc-quota-operator")
    operator = CreateDrillSandboxOperator(
        task_id="create_sandbox", initiation={"drill_id": "quota1", "request": {}}
    )

    # AirflowFailException: Airflow does not retry it (a retry would meet the same quota).
    with pytest.raises(AirflowFailException, match="VPCs per Region") as raised:
        operator.execute(make_context(run_id="scheduled__2026-12-01T03:00:00+00:00"))

    assert "Service Quotas" in str(raised.value)
    last = audit_entries(restore_plan)[-1]
    assert (last.action, last.outcome) == ("drill.sandbox", "failed")
