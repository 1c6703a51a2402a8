"""Initiate: the trigger parameters are validated against the plan before any AWS call."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from securedr.core.plan import load_plan
from securedr.core.restore_request import (
    PARAM_NAMES,
    RestoreRequest,
    RestoreRequestError,
    classify_recovery_point,
    parse_restore_request,
)
from tests.restore.conftest import VALID_PARAMS, make_context

PLAN = load_plan()
DR = PLAN.regions.dr


def parse(**changes):
    return parse_restore_request({**VALID_PARAMS, **changes}, PLAN)


def problems(**changes) -> dict[str, str]:
    with pytest.raises(RestoreRequestError) as info:
        parse(**changes)
    return dict(info.value.problems)


def test_defaults_resolve_against_the_plan():
    request = parse()
    assert request == RestoreRequest(
        recovery_point="latest",
        selector="latest",
        resources=(),
        target_region=DR,
        availability_zone=PLAN.restore.availability_zone,
        reason=VALID_PARAMS["reason"],
        ticket="INC-4711",
        dry_run=False,
    )
    assert RestoreRequest.from_dict(request.to_dict()) == request


@pytest.mark.parametrize(
    ("value", "selector", "normal"),
    [
        ("latest", "latest", "latest"),
        ("snap-0123456789abcdef0", "snapshot", "snap-0123456789abcdef0"),
        ("securedr-orders-db-9295b2a2f494", "snapshot", "securedr-orders-db-9295b2a2f494"),
        (
            "securedr/manifests/demo-estate/20261125T020000Z-0123456789abcdef.json",
            "manifest",
            "manifests/demo-estate/20261125T020000Z-0123456789abcdef.json",
        ),
        ("scheduled__2026-11-25T02:00:00+00:00", "run", "scheduled__2026-11-25T02:00:00+00:00"),
    ],
)
def test_recovery_point_forms(value, selector, normal):
    request = parse(recovery_point=value)
    assert (request.selector, request.recovery_point) == (selector, normal)


def test_manifest_of_another_plan_is_not_a_recovery_point():
    assert (
        classify_recovery_point(
            "securedr/manifests/other-plan/20261125T020000Z-0123456789abcdef.json", "demo-estate"
        )
        is None
    )


def test_resources_forms():
    assert parse(resources="all").resources == ()
    assert parse(resources=["all"]).resources == ()
    assert parse(resources=["vol-0123456789abcdef0", "orders-db"]).resources == (
        "vol-0123456789abcdef0",
        "orders-db",
    )
    assert parse(resources="orders-db").resources == ("orders-db",)


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"reason": "because"}, "reason", "at least 15"),
        ({"reason": None}, "reason", "is required"),
        ({"target_region": "eu-west-1"}, "target_region", "not the plan's DR Region"),
        ({"target_region": "mars-1"}, "target_region", "AWS Region name"),
        ({"availability_zone": "eu-west-1a"}, "availability_zone", "not an Availability Zone"),
        ({"resources": []}, "resources", "is empty"),
        ({"resources": ["all", "orders-db"]}, "resources", "cannot be combined"),
        ({"resources": ["orders-db", "orders-db"]}, "resources[1]", "listed twice"),
        ({"resources": ["../etc/passwd"]}, "resources[0]", "not a source id"),
        ({"recovery_point": "yesterday"}, "recovery_point", "names no recovery point"),
        ({"ticket": "INC 1; drop"}, "ticket", "not a ticket reference"),
        ({"dry_run": "false"}, "dry_run", "expected true or false"),
        ({"resource": ["orders-db"]}, "resource", "not a dr_restore parameter"),
    ],
)
def test_each_malformed_field_is_named_with_what_to_do(changes, field, says):
    found = problems(**changes)
    assert field in found, found
    assert says in found[field]


def test_every_problem_is_reported_at_once():
    found = problems(reason="", target_region="eu-west-1", dry_run=1)
    assert set(found) == {"reason", "target_region", "dry_run"}
    error = RestoreRequestError(list(found.items()))
    assert "3 problems" in str(error) and "nothing was done" in str(error)


# --------------------------------------------------------------------------- generated confs

_junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.lists(st.text(max_size=10), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)

# For each field, values that must be refused (drawn from junk, minus the few valid ones).
_INVALID = {
    "recovery_point": _junk.filter(
        lambda v: (
            not (
                v is None or (isinstance(v, str) and classify_recovery_point(v.strip(), PLAN.name))
            )
        )
    ),
    "resources": st.one_of(
        st.just([]),
        st.integers(),
        st.booleans(),
        st.lists(st.sampled_from(["all", "x y", "", "vol-xyz", "-db", "1db"]), min_size=2),
    ),
    "target_region": st.one_of(st.integers(), st.sampled_from(["eu-west-1", "us-east-1", "x"])),
    "availability_zone": st.one_of(
        st.integers(), st.sampled_from(["eu-west-1a", "us-west-2", "a"])
    ),
    "reason": st.one_of(
        st.none(), st.integers(), st.text(max_size=14).map(str.strip), st.text(min_size=1001)
    ),
    "ticket": st.one_of(st.integers(), st.sampled_from(["has space", "a" * 65, "-lead", "x;y"])),
    "dry_run": st.one_of(st.none(), st.integers(), st.text(max_size=5)),
}


@st.composite
def malformed_confs(draw):
    conf = dict(VALID_PARAMS)
    broken = draw(st.lists(st.sampled_from(sorted(_INVALID)), min_size=1, max_size=3, unique=True))
    for name in broken:
        conf[name] = draw(_INVALID[name])
    if draw(st.booleans()):
        conf[draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in PARAM_NAMES))] = 1
    return conf


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(conf=malformed_confs())
def test_generated_malformed_confs_are_refused(conf):
    with pytest.raises(RestoreRequestError) as info:
        parse_restore_request(conf, PLAN)
    assert info.value.problems
    for field, message in info.value.problems:
        assert field and message


@settings(max_examples=100, deadline=None)
@given(
    resources=st.one_of(
        st.just("all"),
        st.lists(
            st.from_regex(r"vol-[0-9a-f]{17}", fullmatch=True), min_size=1, max_size=5, unique=True
        ),
    ),
    reason=st.text(alphabet="abcdefghij klmnop.,", min_size=15, max_size=200).filter(
        lambda r: len(r.strip()) >= 15
    ),
    dry_run=st.booleans(),
)
def test_generated_valid_confs_are_accepted(resources, reason, dry_run):
    request = parse(resources=resources, reason=reason, dry_run=dry_run)
    assert request.dry_run is dry_run and request.target_region == DR


@pytest.fixture
def no_aws(monkeypatch):
    """Any botocore call fails the test (and the endpoint is unreachable, to be sure)."""
    from botocore.client import BaseClient

    def forbidden(self, operation_name, api_params):
        raise AssertionError(f"AWS call {operation_name} made while validating a request")

    monkeypatch.setattr(BaseClient, "_make_api_call", forbidden)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)
@given(conf=malformed_confs())
def test_initiate_refuses_malformed_confs_without_any_aws_call(no_aws, conf):
    from securedr.operators.restore import InitiateRestoreOperator

    op = InitiateRestoreOperator(task_id="initiate_restore")
    with pytest.raises(AirflowFailException, match="The restore request is invalid"):
        op.execute(make_context(params=conf))


def test_initiate_accepts_a_valid_conf_without_any_aws_call(no_aws):
    from securedr.operators.restore import InitiateRestoreOperator

    result = InitiateRestoreOperator(task_id="initiate_restore").execute(
        make_context(user="alice", params=VALID_PARAMS)
    )
    assert result["initiator"] == "alice"
    assert RestoreRequest.from_dict(result["request"]).target_region == DR
