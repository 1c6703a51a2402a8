"""Tests for securedr.core.plan: loading, validation messages and path resolution."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from securedr.core.plan import (
    DEFAULT_PLAN_PATH,
    PLAN_ENV_VAR,
    Plan,
    PlanError,
    load_plan,
    parse_plan,
    plan_dir,
)

SHIPPED = Path(__file__).resolve().parents[2] / "include" / "dr_plan.yaml"
BASE: dict[str, Any] = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))


def valid() -> dict[str, Any]:
    """A fresh deep copy of the shipped (valid) plan as parsed YAML."""
    return copy.deepcopy(BASE)


def write_plan(directory: Path, data: Any, name: str = "plan.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def load_error(directory: Path, data: Any) -> PlanError:
    path = write_plan(directory, data)
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert info.value.source == str(path)
    assert str(path) in str(info.value)
    return info.value


def only_problem(error: PlanError) -> tuple[str, str]:
    assert len(error.problems) == 1, error.problems
    return error.problems[0]


def assert_reported(error: PlanError, path: str, *fragments: str) -> None:
    """``path`` is among the problems, its message has every fragment, and so does str(error)."""
    messages = [message for p, message in error.problems if p == path]
    assert messages, f"no problem at {path!r}: {error.problems}"
    for fragment in fragments:
        assert any(fragment in m for m in messages), (fragment, messages)
    text = str(error)
    assert f"  - {path}: " in text
    for fragment in fragments:
        assert fragment in text


# --------------------------------------------------------------------------- loading


def test_shipped_plan_loads() -> None:
    plan = load_plan(SHIPPED)
    assert isinstance(plan, Plan)
    assert plan.name == "demo-estate"
    assert plan.regions.sources == ["us-east-1", "eu-west-1"]
    assert plan.regions.dr == "us-west-2"
    assert plan.all_regions == ["us-east-1", "eu-west-1", "us-west-2"]
    assert plan.kms_key("us-west-2") == "alias/securedr-dr"
    assert plan.kms_key("eu-west-1") == "alias/securedr-source"
    assert plan.retention.keep_days == 14
    assert plan.retention.min_copies == 3
    assert plan.selection.resource_types == ["ebs", "rds"]
    assert plan.evidence_bucket.name == "securedr-evidence-demo"
    assert plan.access.initiators == ["alice"]
    assert plan.access.approvers == ["bob", "carol"]


def test_default_plan_path_is_the_shipped_plan() -> None:
    assert SHIPPED.resolve() == DEFAULT_PLAN_PATH


def test_load_plan_without_env_var_reads_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PLAN_ENV_VAR, raising=False)
    assert load_plan().name == "demo-estate"
    assert plan_dir() == DEFAULT_PLAN_PATH.parent


def test_load_plan_honours_env_var(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data = valid()
    data["name"] = "from-env"
    path = write_plan(tmp_path, data)
    monkeypatch.setenv(PLAN_ENV_VAR, str(path))
    assert load_plan().name == "from-env"
    assert plan_dir() == tmp_path.resolve()


def test_explicit_path_beats_env_var(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data = valid()
    data["name"] = "explicit"
    explicit = write_plan(tmp_path, data, "explicit.yaml")
    monkeypatch.setenv(PLAN_ENV_VAR, str(tmp_path / "does-not-exist.yaml"))
    assert load_plan(explicit).name == "explicit"


def test_env_var_pointing_at_missing_file_is_reported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.yaml"
    monkeypatch.setenv(PLAN_ENV_VAR, str(missing))
    with pytest.raises(PlanError) as info:
        load_plan()
    assert info.value.source == str(missing)


def test_plan_is_immutable() -> None:
    plan = parse_plan(valid())
    with pytest.raises(ValidationError):
        plan.name = "other"  # type: ignore[misc]


def test_defaults_fill_optional_sections() -> None:
    data = valid()
    for section in ("selection", "waits", "restore", "notifications"):
        del data[section]
    plan = parse_plan(data)
    assert plan.selection.tag_key == "dr:backup"
    assert plan.selection.resource_types == ["ebs", "rds"]
    assert plan.waits.max_copies_in_flight == 20
    assert plan.restore.security_group_ids == []
    assert plan.notifications.sns_topic_arn is None


def test_key_ids_and_arns_are_accepted() -> None:
    data = valid()
    data["kms_keys"]["us-east-1"] = "1234abcd-12ab-34cd-56ef-1234567890ab"
    data["kms_keys"]["eu-west-1"] = (
        "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    )
    data["kms_keys"]["us-west-2"] = "arn:aws:kms:us-west-2:123456789012:alias/securedr-dr"
    plan = parse_plan(data)
    assert plan.kms_key("us-east-1") == "1234abcd-12ab-34cd-56ef-1234567890ab"


# --------------------------------------------------------------------------- bad files


def test_missing_file_says_how_to_fix(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"
    with pytest.raises(PlanError) as info:
        load_plan(missing)
    path, message = only_problem(info.value)
    assert path == "(file)"
    assert "not found" in message
    assert PLAN_ENV_VAR in message
    assert "create it" in message
    assert str(missing) in str(info.value)
    assert "fix the plan" in str(info.value)


def test_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("version: 1\nname: demo\nregions: [us-east-1\n  dr: us-west-2\n")
    with pytest.raises(PlanError) as info:
        load_plan(path)
    where, message = only_problem(info.value)
    assert where.startswith("line ")
    assert ", column " in where
    line = int(where.split()[1].rstrip(","))
    assert 2 <= line <= 5
    assert "not valid YAML" in message


def test_invalid_yaml_position_is_one_based(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    # A tab at the very start of the third line cannot start a token.
    path.write_text("version: 1\nname: demo\n\tbad: x\n")
    with pytest.raises(PlanError) as info:
        load_plan(path)
    where, _ = only_problem(info.value)
    assert where == "line 3, column 1"


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("- a\n- b\n", "a list"),
        ("just a string\n", "a string"),
        ("", "nothing"),
        ("42\n", "int"),
    ],
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, found: str) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    with pytest.raises(PlanError) as info:
        load_plan(path)
    where, message = only_problem(info.value)
    assert where == "(top level)"
    assert message == f"expected a mapping, found {found}"


def test_plan_file_that_is_not_utf8_is_a_plan_error(tmp_path: Path) -> None:
    # A plan saved as Latin-1 (e.g. an accented comment) is a bad plan file like any other.
    path = tmp_path / "plan.yaml"
    path.write_bytes(yaml.safe_dump(valid()).encode() + "# caf\xe9\n".encode("latin-1"))
    with pytest.raises(PlanError):
        load_plan(path)


def test_invalid_date_scalar_is_a_plan_error(tmp_path: Path) -> None:
    # YAML resolves 2024-13-45 as a timestamp; constructing it fails with a plain ValueError.
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(valid()).replace("name: demo-estate", "name: 2024-13-45"))
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert info.value.problems


# --------------------------------------------------------------------------- field problems


def test_unknown_field_is_a_typo(tmp_path: Path) -> None:
    data = valid()
    data["retention"]["keep_dayz"] = data["retention"].pop("keep_days")
    error = load_error(tmp_path, data)
    assert_reported(error, "retention.keep_dayz", "is not a plan field", "check the spelling")
    assert_reported(error, "retention.keep_days", "is required but missing")
    assert len(error.problems) == 2


def test_unknown_top_level_field(tmp_path: Path) -> None:
    data = valid()
    data["notification"] = {"sns_topic_arn": None}
    error = load_error(tmp_path, data)
    assert only_problem(error)[0] == "notification"


@pytest.mark.parametrize("bad", ["useast-1", "US-EAST-1", "us-east", "mars-north-1x", ""])
def test_bad_source_region_name(tmp_path: Path, bad: str) -> None:
    data = valid()
    data["regions"]["sources"] = ["us-east-1", bad]
    data["kms_keys"][bad] = "alias/x"
    error = load_error(tmp_path, data)
    assert_reported(error, "regions.sources", "expected an AWS Region name", f"found {bad!r}")


def test_bad_dr_region_name(tmp_path: Path) -> None:
    data = valid()
    data["regions"]["dr"] = "uswest2"
    error = load_error(tmp_path, data)
    assert_reported(error, "regions.dr", "expected an AWS Region name", "found 'uswest2'")


def test_gov_region_is_accepted() -> None:
    data = valid()
    data["regions"]["dr"] = "us-gov-west-1"
    data["kms_keys"]["us-gov-west-1"] = data["kms_keys"].pop("us-west-2")
    data["restore"]["availability_zone"] = "us-gov-west-1a"
    assert parse_plan(data).regions.dr == "us-gov-west-1"


def test_dr_region_also_a_source(tmp_path: Path) -> None:
    data = valid()
    data["regions"]["dr"] = "eu-west-1"
    data["restore"]["availability_zone"] = "eu-west-1a"
    error = load_error(tmp_path, data)
    path, message = only_problem(error)
    assert path == "regions"
    assert "'eu-west-1'" in message
    assert "also a source Region" in message
    assert "another Region" in message


def test_duplicate_source_region(tmp_path: Path) -> None:
    data = valid()
    data["regions"]["sources"] = ["us-east-1", "eu-west-1", "us-east-1"]
    error = load_error(tmp_path, data)
    assert_reported(error, "regions.sources", "lists a Region twice", "'us-east-1'")


def test_empty_source_list(tmp_path: Path) -> None:
    data = valid()
    data["regions"]["sources"] = []
    error = load_error(tmp_path, data)
    assert_reported(error, "regions.sources", "found []")


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "us-west-2"])
def test_missing_kms_key_for_a_region(tmp_path: Path, region: str) -> None:
    data = valid()
    del data["kms_keys"][region]
    error = load_error(tmp_path, data)
    _, message = only_problem(error)
    assert message.startswith("kms_keys ")
    assert f"no key for Region(s) {region}" in message
    assert "customer-managed key" in message
    assert "kms_keys" in str(error)


def test_missing_kms_keys_lists_every_region(tmp_path: Path) -> None:
    data = valid()
    data["kms_keys"] = {"eu-west-1": "alias/x"}
    _, message = only_problem(load_error(tmp_path, data))
    assert "us-east-1, us-west-2" in message


@pytest.mark.parametrize("alias", ["alias/aws/ebs", "alias/aws/rds", "alias/aws/kms"])
def test_aws_managed_key_alias_is_refused(tmp_path: Path, alias: str) -> None:
    data = valid()
    data["kms_keys"]["eu-west-1"] = alias
    error = load_error(tmp_path, data)
    assert_reported(error, "kms_keys.eu-west-1", repr(alias), "AWS-managed", "customer-managed")


def test_aws_managed_key_alias_arn_is_refused(tmp_path: Path) -> None:
    # The same AWS-managed key, named by its alias ARN instead of its alias.
    data = valid()
    data["kms_keys"]["eu-west-1"] = "arn:aws:kms:eu-west-1:123456789012:alias/aws/ebs"
    error = load_error(tmp_path, data)
    assert_reported(error, "kms_keys.eu-west-1", "AWS-managed")


@pytest.mark.parametrize(
    "key",
    [
        "securedr-source",  # alias without the alias/ prefix
        "alias/",
        "alias/has space",
        "1234abcd-12ab-34cd-56ef",  # truncated key id
        "arn:aws:kms:us-east-1:1234:key/1234abcd-12ab-34cd-56ef-1234567890ab",  # short account
        "arn:aws:s3:::bucket",
    ],
)
def test_malformed_kms_key(tmp_path: Path, key: str) -> None:
    data = valid()
    data["kms_keys"]["us-west-2"] = key
    error = load_error(tmp_path, data)
    assert_reported(error, "kms_keys.us-west-2", "expected a KMS key alias", f"found {key!r}")


def test_kms_key_for_bad_region_name(tmp_path: Path) -> None:
    data = valid()
    data["kms_keys"]["Europe"] = "alias/x"
    error = load_error(tmp_path, data)
    assert_reported(error, "kms_keys.Europe", "expected an AWS Region name", "'Europe'")


@pytest.mark.parametrize(
    ("section", "field", "value", "expected"),
    [
        ("retention", "keep_days", 0, "greater than or equal to 1"),
        ("retention", "keep_days", 36501, "less than or equal to 36500"),
        ("retention", "min_copies", 0, "greater than or equal to 1"),
        ("targets", "rpo_hours", -1, "greater than 0"),
        ("targets", "rpo_hours", 0, "greater than 0"),
        ("targets", "rto_minutes", -5, "greater than 0"),
        ("waits", "max_copies_in_flight", 21, "less than or equal to 20"),
    ],
)
def test_out_of_range_numbers(
    tmp_path: Path, section: str, field: str, value: int, expected: str
) -> None:
    data = valid()
    data[section][field] = value
    error = load_error(tmp_path, data)
    path, message = only_problem(error)
    assert path == f"{section}.{field}"
    assert expected in message
    assert message.endswith(f"found {value!r}")


@pytest.mark.parametrize(
    ("section", "field", "value", "expected"),
    [
        ("retention", "keep_days", [14], "integer"),  # int_type
        ("retention", "keep_days", "two weeks", "integer"),  # int_parsing
        ("retention", "keep_days", 1.5, "integer"),  # int_from_float
        ("targets", "rpo_hours", "soon", "number"),  # float_parsing
        ("retention", "dry_run", "maybe", "boolean"),  # bool_parsing
    ],
)
def test_wrong_type_names_what_was_found(
    tmp_path: Path, section: str, field: str, value: Any, expected: str
) -> None:
    data = valid()
    data[section][field] = value
    error = load_error(tmp_path, data)
    assert_reported(error, f"{section}.{field}", expected, f"found {value!r}")


def test_bad_literal_names_what_was_found(tmp_path: Path) -> None:
    data = valid()
    data["evidence_bucket"]["object_lock_mode"] = "STRICT"
    error = load_error(tmp_path, data)
    assert_reported(
        error, "evidence_bucket.object_lock_mode", "GOVERNANCE", "COMPLIANCE", "found 'STRICT'"
    )


def test_resource_type_list_index_in_path(tmp_path: Path) -> None:
    data = valid()
    data["selection"]["resource_types"] = ["ebs", "s3"]
    error = load_error(tmp_path, data)
    assert_reported(error, "selection.resource_types.1", "found 's3'")


def test_unsupported_version(tmp_path: Path) -> None:
    data = valid()
    data["version"] = 2
    assert_reported(load_error(tmp_path, data), "version", "found 2")


def test_missing_required_section(tmp_path: Path) -> None:
    data = valid()
    del data["access"]
    path, message = only_problem(load_error(tmp_path, data))
    assert (path, message) == ("access", "is required but missing")


@pytest.mark.parametrize(
    "name",
    [
        "Securedr-Evidence",  # upper case
        "ab",  # too short
        "a" * 64,  # too long
        "bucket_name",  # underscore
        "-bucket",  # leading hyphen
        "bucket-",  # trailing hyphen
        "my..bucket",  # consecutive dots
    ],
)
def test_bad_bucket_name(tmp_path: Path, name: str) -> None:
    data = valid()
    data["evidence_bucket"]["name"] = name
    error = load_error(tmp_path, data)
    assert_reported(error, "evidence_bucket.name", "expected an S3 bucket name", f"found {name!r}")


@pytest.mark.parametrize("name", ["abc", "my.evidence-bucket", "a" * 63, "0bucket9"])
def test_good_bucket_names(name: str) -> None:
    data = valid()
    data["evidence_bucket"]["name"] = name
    assert parse_plan(data).evidence_bucket.name == name


def test_initiator_whose_only_approver_is_themselves(tmp_path: Path) -> None:
    data = valid()
    data["access"] = {"initiators": ["alice", "bob"], "approvers": ["alice", "bob"]}
    assert parse_plan(data).access.approvers == ["alice", "bob"]  # each has someone else

    data["access"] = {"initiators": ["alice", "bob"], "approvers": ["bob"]}
    error = load_error(tmp_path, data)
    path, message = only_problem(error)
    assert path == "access"
    assert "bob" in message
    assert "alice" not in message  # alice can be approved by bob
    assert "no approver other than themselves" in message
    assert "add a second approver" in message


def test_bad_user_name(tmp_path: Path) -> None:
    data = valid()
    data["access"]["approvers"] = ["bob", "carol smith"]
    error = load_error(tmp_path, data)
    assert_reported(error, "access.approvers", "expected user names", "'carol smith'")


def test_several_problems_reported_together(tmp_path: Path) -> None:
    data = valid()
    data["retention"]["keep_days"] = 0
    data["targets"]["rpo_hours"] = -3
    data["evidence_bucket"]["name"] = "Bad_Bucket"
    data["regions"]["sources"] = ["us-east-1", "nowhere"]
    data["colour"] = "blue"
    error = load_error(tmp_path, data)
    paths = [p for p, _ in error.problems]
    assert set(paths) == {
        "retention.keep_days",
        "targets.rpo_hours",
        "evidence_bucket.name",
        "regions.sources",
        "colour",
    }
    text = str(error)
    assert "(5 problems)" in text
    assert text.count("\n  - ") == 5
    for path in paths:
        assert f"  - {path}: " in text


def test_single_problem_is_singular(tmp_path: Path) -> None:
    data = valid()
    data["retention"]["min_copies"] = 0
    assert "(1 problem)" in str(load_error(tmp_path, data))


def test_plan_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="problem"):
        parse_plan([])


# --------------------------------------------------------------------------- trusted keys path


def test_trusted_keys_path_expands_vars(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SECUREDR_HOME", "/srv/securedr")
    # Parsed without the file checks: /srv/securedr holds no recovery key here.
    plan = parse_plan(copy.deepcopy(BASE), str(SHIPPED))
    assert plan.signing.trusted_keys == "${SECUREDR_HOME}/keys/trusted-signing-keys.pem"
    assert plan.trusted_keys_path(tmp_path) == Path("/srv/securedr/keys/trusted-signing-keys.pem")


def test_trusted_keys_path_relative_to_plan_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data = valid()
    data["signing"]["trusted_keys"] = "keys/trusted.pem"
    path = write_plan(tmp_path, data)
    monkeypatch.setenv(PLAN_ENV_VAR, str(path))
    plan = load_plan()
    assert plan.trusted_keys_path(plan_dir()) == tmp_path.resolve() / "keys" / "trusted.pem"
    assert plan_dir(path) == tmp_path.resolve()


def test_trusted_keys_path_var_that_expands_to_relative(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KEYS_SUBDIR", "conf/keys")
    data = valid()
    data["signing"]["trusted_keys"] = "$KEYS_SUBDIR/trusted.pem"
    plan = parse_plan(data)
    assert plan.trusted_keys_path(tmp_path) == tmp_path / "conf" / "keys" / "trusted.pem"


def test_trusted_keys_path_expands_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    data = valid()
    data["signing"]["trusted_keys"] = "~/keys.pem"
    plan = parse_plan(data)
    assert plan.trusted_keys_path(Path("/elsewhere")) == tmp_path / "home" / "keys.pem"


# --------------------------------------------------------------------------- fuzzing

json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**6), max_value=10**6)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["us-east-1", "alias/aws/ebs", "alias/k", "", "  ", "GOVERNANCE"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += _paths(item, (*prefix, index))
    return out


PATHS = _paths(BASE)


def _mutate(data: Any, path: tuple[Any, ...], op: str, value: Any) -> Any:
    if not path:
        return value if op == "replace" else data
    parent = data
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if op == "replace":
        parent[last] = value
    elif op == "delete":
        del parent[last]
    elif op == "extra" and isinstance(parent, dict):
        parent[f"{last}_x"] = value
    return data


mutation = st.tuples(
    st.sampled_from(PATHS), st.sampled_from(["replace", "delete", "extra"]), json_like
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutation, min_size=1, max_size=4))
def test_mutated_plans_validate_or_raise_plan_error(
    mutations: list[tuple[tuple[Any, ...], str, Any]],
) -> None:
    data: Any = valid()
    for path, op, value in mutations:
        try:
            data = _mutate(data, path, op, value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this path
    try:
        plan = parse_plan(data, "fuzz")
    except PlanError as error:
        assert error.problems
        assert all(isinstance(p, str) and isinstance(m, str) and m for p, m in error.problems)
        assert str(error).startswith("DR plan fuzz is invalid")
    else:
        assert isinstance(plan, Plan)
        assert plan.regions.dr not in plan.regions.sources
        assert all(r in plan.kms_keys for r in plan.all_regions)
