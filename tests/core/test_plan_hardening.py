"""The plan loader against hostile or careless plan files.

Every load that could hang on a weak loader (alias bomb, FIFO, deep nesting) runs in a forked
child with a time limit, so a regression fails the test instead of hanging the suite. The
limits are generous: they are guards, not timing assertions.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from securedr.core import plan_yaml
from securedr.core.plan import MAX_LISTED_PROBLEMS, Plan, PlanError, load_plan, parse_plan
from securedr.core.plan_yaml import (
    MAX_ALIASES,
    MAX_DEPTH,
    MAX_PLAN_BYTES,
    UndefinedVariableError,
    expand_variables,
)
from securedr.core.redaction import redact, secret_kind

SHIPPED = Path(__file__).resolve().parents[2] / "include" / "dr_plan.yaml"
SHIPPED_TEXT = SHIPPED.read_text(encoding="utf-8")
BASE: dict[str, Any] = yaml.safe_load(SHIPPED_TEXT)
GUARD_SECONDS = 20

# A throw-away RSA key in PEM, as a careless admin might paste it (never used for anything).
PRIVATE_PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n"
    "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n"
    "-----END PRIVATE KEY-----\n"
)
PEM_MARKER = "MzEfYyjiWA4R4"
# AWS's documented example secret access key.
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def valid() -> dict[str, Any]:
    return copy.deepcopy(BASE)


def write(directory: Path, data: Any) -> Path:
    path = directory / "plan.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _load_and_report(path: str, conn: Any) -> None:
    try:
        plan = load_plan(path)
        conn.send(("ok", plan.name, ""))
    except PlanError as error:
        conn.send(("plan_error", error.problems, str(error)))
    except BaseException as error:  # report whatever escaped to the parent
        conn.send(("escaped", type(error).__name__, str(error)[:2000]))


def load_guarded(path: Path) -> tuple[str, Any, str]:
    """``load_plan(path)`` in a forked child, killed after GUARD_SECONDS (then the test fails)."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_load_and_report, args=(str(path), sender), daemon=True)
    child.start()
    try:
        if not receiver.poll(GUARD_SECONDS):
            pytest.fail(f"loading {path.name} did not finish within {GUARD_SECONDS}s")
        return receiver.recv()
    finally:
        child.kill()
        child.join()


def refused(path: Path) -> tuple[list[tuple[str, str]], str]:
    outcome, problems, text = load_guarded(path)
    assert outcome == "plan_error", (outcome, problems, text)
    return problems, text


def problem_at(problems: list[tuple[str, str]], path: str) -> str:
    messages = [m for p, m in problems if p == path]
    assert messages, f"no problem at {path!r}: {problems}"
    return " | ".join(messages)


def parse_error(data: Any, base_dir: Path | None = None) -> PlanError:
    with pytest.raises(PlanError) as info:
        parse_plan(data, "test", base_dir)
    return info.value


# --------------------------------------------------------------------------- the file itself


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """A 'billion laughs' document: under 1 KB, width**levels strings when expanded."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_before_expansion(tmp_path: Path) -> None:
    bomb = alias_bomb()
    assert len(bomb.encode()) < 1024
    # The bomb sits in the value the loader used to format into its error message.
    text = "x_bomb:\n" + "".join(f"  {line}\n" for line in bomb.splitlines())
    text += SHIPPED_TEXT.replace("name: demo-estate", "name: *l8")
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    problems, message = refused(path)
    assert len(problems) == 1
    where, why = problems[0]
    assert where.startswith("line ")
    assert "alias" in why and "not expanded" in why
    assert "at x_bomb.l" in why  # the field being read when the limit was reached
    assert len(message) < 1000


def test_a_merge_key_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["m0: &m0 {a: 1, b: 2, c: 3, d: 4}"]
    for level in range(1, 12):
        keys = ", ".join(f"k{i}: *m{level - 1}" for i in range(8))
        lines.append(f"m{level}: &m{level} {{{keys}}}")
    path = tmp_path / "plan.yaml"
    path.write_text("\n".join(lines) + "\n" + SHIPPED_TEXT)
    problems, _ = refused(path)
    assert "alias" in problems[0][1]


def test_too_many_aliases_are_refused(tmp_path: Path) -> None:
    text = "one: &one x\nmany: [" + ", ".join(["*one"] * (MAX_ALIASES + 1)) + "]\n"
    path = tmp_path / "plan.yaml"
    path.write_text(text + SHIPPED_TEXT)
    problems, _ = refused(path)
    assert f"more than {MAX_ALIASES} YAML aliases" in problems[0][1]
    assert f"at many.{MAX_ALIASES}" in problems[0][1]


def test_a_few_aliases_still_work(tmp_path: Path) -> None:
    text = SHIPPED_TEXT.replace(
        "  us-east-1: alias/securedr-source\n  eu-west-1: alias/securedr-source\n",
        "  us-east-1: &source_key alias/securedr-source\n  eu-west-1: *source_key\n",
    )
    assert "*source_key" in text
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    assert load_plan(path).kms_key("eu-west-1") == "alias/securedr-source"


@pytest.mark.parametrize(
    "nested",
    [
        "[" * 5000 + "]" * 5000,  # flow style, past libyaml's own limit
        "[" * 200 + "]" * 200,  # flow style, under it
        "\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(300)) + "  " * 301 + "v",
        "\n" + "".join("  " * (i + 1) + "-\n" for i in range(300)),
    ],
    ids=["flow-5000", "flow-200", "block-mappings", "block-sequences"],
)
def test_deep_nesting_is_a_plan_error_not_a_recursion_error(tmp_path: Path, nested: str) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(SHIPPED_TEXT + f"x_deep: {nested}\n")
    problems, _ = refused(path)
    assert f"nested more than {MAX_DEPTH} levels" in problems[0][1]


def test_deep_nesting_names_the_field_being_read(tmp_path: Path) -> None:
    nested = "".join("  " * (i + 1) + f"k{i}:\n" for i in range(40)) + "  " * 41 + "v"
    path = tmp_path / "plan.yaml"
    path.write_text(SHIPPED_TEXT + f"x_deep:\n{nested}\n")
    problems, _ = refused(path)
    assert "(at x_deep.k0.k1.k2." in problems[0][1]


def test_deep_nesting_is_refused_by_the_pure_python_parser_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plan_yaml, "_Loader", yaml.SafeLoader)
    path = tmp_path / "plan.yaml"
    path.write_text(SHIPPED_TEXT + "x_deep: " + "[" * 3000 + "]" * 3000 + "\n")
    problems, _ = refused(path)
    assert "nested more than" in problems[0][1]


def test_a_plan_over_one_mib_is_refused_with_its_size(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    padding = "# " + "x" * 98 + "\n"
    path.write_text(SHIPPED_TEXT + padding * (MAX_PLAN_BYTES // len(padding) + 1))
    size = path.stat().st_size
    problems, _ = refused(path)
    assert problems == [
        (
            "(file)",
            f"is {size} bytes, more than the {MAX_PLAN_BYTES} bytes (1 MiB) a plan may have; "
            "check that the path names the plan and not another file",
        )
    ]


def test_a_plan_just_under_one_mib_loads(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    padding = "# " + "x" * 98 + "\n"
    path.write_text(SHIPPED_TEXT + padding * ((MAX_PLAN_BYTES - len(SHIPPED_TEXT)) // len(padding)))
    assert path.stat().st_size <= MAX_PLAN_BYTES
    assert load_plan(path).name == "demo-estate"


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "plan.yaml"
    os.mkfifo(fifo)
    problems, _ = refused(fifo)
    assert problems == [
        (
            "(file)",
            "is a FIFO (named pipe), not a regular file; point the plan path at the plan's "
            "YAML file",
        )
    ]


def test_a_device_is_refused_without_reading_it() -> None:
    # /dev/null reads as an empty document, which a weak loader reports as "found nothing".
    problems, _ = refused(Path("/dev/null"))
    assert problems == [
        ("(file)", "is a device, not a regular file; point the plan path at the plan's YAML file")
    ]


def test_a_directory_is_refused(tmp_path: Path) -> None:
    problems, _ = refused(tmp_path)
    assert "is a directory, not a regular file" in problem_at(problems, "(file)")


def test_a_symlink_to_a_plan_is_followed(tmp_path: Path) -> None:
    # Kubernetes mounts a ConfigMap's files as symlinks; they must keep working.
    link = tmp_path / "plan.yaml"
    link.symlink_to(SHIPPED)
    assert load_plan(link).name == "demo-estate"


def test_a_recovery_key_path_naming_a_fifo_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "recovery.pub"
    os.mkfifo(fifo)
    data = valid()
    data["file_sets"]["recovery_public_key"] = str(fifo)
    problems, _ = refused(write(tmp_path, data))
    assert "FIFO" in problem_at(problems, "file_sets.recovery_public_key")


def test_a_duplicate_key_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(SHIPPED_TEXT.replace("  dr: us-west-2\n", "  dr: us-west-2\n  dr: eu-west-1\n"))
    problems, _ = refused(path)
    (where, why), *_ = problems
    line = SHIPPED_TEXT.splitlines().index("  dr: us-west-2") + 2
    assert where == f"line {line}, column 3"
    assert "'dr' appears twice" in why


# --------------------------------------------------------------------------- secrets


def test_a_pasted_private_key_is_named_but_never_echoed(tmp_path: Path) -> None:
    data = valid()
    data["signing"]["private_key_variable"] = PRIVATE_PEM
    data["name"] = PRIVATE_PEM  # also fails the name pattern, which would echo the value
    problems, text = refused(write(tmp_path, data))
    for path in ("signing.private_key_variable", "name"):
        message = problem_at(problems, path)
        assert "a private key (PEM)" in message
        assert "treat it as exposed" in message
    assert PEM_MARKER not in text
    assert "BEGIN PRIVATE KEY" not in text


def test_an_aws_secret_key_is_named_but_never_echoed(tmp_path: Path) -> None:
    data = valid()
    data["restore"]["external_id_variable"] = AWS_SECRET
    problems, text = refused(write(tmp_path, data))
    assert "AWS secret access key" in problem_at(problems, "restore.external_id_variable")
    assert AWS_SECRET not in text


def test_a_private_key_breaking_the_yaml_is_not_echoed(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    indented = "".join(f"    {line}\n" for line in PRIVATE_PEM.splitlines())
    path.write_text(SHIPPED_TEXT + "x_key: [\n" + indented + "  : {\n")
    _, text = refused(path)
    assert PEM_MARKER not in text


def test_plan_error_redacts_whatever_it_is_given() -> None:
    error = PlanError("src", [("a", f"bad value {PRIVATE_PEM!r}"), ("b", f"x {AWS_SECRET} y")])
    assert PEM_MARKER not in str(error) and AWS_SECRET not in str(error)
    assert "[redacted PEM block]" in error.problems[0][1]
    assert error.problems[1][1] == "x [redacted secret] y"


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (PRIVATE_PEM, "a private key (PEM)"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1r", "a private key (PEM)"),
        (f"key: {AWS_SECRET}", "an AWS secret access key"),
        ("password=hunter22", "a password or secret"),
        ("SECUREDR-RECOVERY-KEY-1ABCDEF", "the SecureDR recovery PRIVATE key"),
        ("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----", None),
        ("keys/trusted-signing-keys.pem", None),
        ("0123456789abcdef0123456789abcdef01234567", None),  # a commit id, not a secret
        ("/home/Administrator/Documents/Backup2024", None),  # a path
        ("/home/Administrator/Documents/Backup2024" + AWS_SECRET, None),  # glued: redacted only
    ],
)
def test_secret_kind(text: str, kind: str | None) -> None:
    assert secret_kind(text) == kind


def test_redact_cuts_an_unterminated_pem_block() -> None:
    assert redact("x -----BEGIN RSA PRIVATE KEY-----\nMIIE") == "x [redacted PEM block]"


def test_messages_and_problem_lists_are_bounded(tmp_path: Path) -> None:
    data = valid()
    data["name"] = "n" * 100_000
    for index in range(3 * MAX_LISTED_PROBLEMS):
        data[f"x_unknown_{index}"] = index
    problems, text = refused(write(tmp_path, data))
    assert len(problems) == MAX_LISTED_PROBLEMS
    assert problems[-1][0] == "(more)"
    assert "more problems not listed" in problems[-1][1]
    assert all(len(message) <= 600 for _, message in problems)
    assert len(text) < 40_000


def test_a_huge_list_is_described_not_printed() -> None:
    data = valid()
    data["name"] = [["x"] * 50] * 50
    error = parse_error(data)
    assert "a list of 50 items" in problem_at(error.problems, "name")


# --------------------------------------------------------------------------- strict types


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [
        ("retention", "keep_days", True),
        ("retention", "min_copies", False),
        ("targets", "rpo_hours", True),
        ("waits", "poll_seconds", True),
        ("retention", "keep_days", "14"),
        ("targets", "rto_minutes", "60"),
        ("retention", "dry_run", 1),
        ("retention", "dry_run", "false"),
    ],
)
def test_no_bool_for_a_number_and_no_text_for_a_number_or_bool(
    section: str, field: str, value: Any
) -> None:
    data = valid()
    data[section][field] = value
    message = problem_at(parse_error(data).problems, f"{section}.{field}")
    if isinstance(value, bool):
        assert f"found the boolean {str(value).lower()}" in message
    else:
        assert f"found {value!r}" in message


def test_version_true_is_not_version_1() -> None:
    data = valid()
    data["version"] = True
    assert "found True" in problem_at(parse_error(data).problems, "version")


def test_a_number_for_a_name_says_to_quote_it() -> None:
    data = valid()
    data["evidence_bucket"]["prefix"] = 2024
    message = problem_at(parse_error(data).problems, "evidence_bucket.prefix")
    assert "quote it" in message


def test_integers_are_fine_for_hours_and_minutes() -> None:
    data = valid()
    data["targets"] = {"rpo_hours": 26, "rto_minutes": 60.5}
    assert parse_plan(data).targets.rpo_hours == 26.0


@pytest.mark.parametrize(
    "path",
    [
        ("signing", "trusted_keys"),
        ("signing", "private_key_variable"),
        ("restore", "external_id_variable"),
        ("restore", "db_subnet_group"),
        ("evidence_bucket", "prefix"),
        ("selection", "tag_value"),
    ],
)
@pytest.mark.parametrize("empty", ["", "   "])
def test_empty_strings_are_refused(path: tuple[str, str], empty: str) -> None:
    data = valid()
    data[path[0]][path[1]] = empty
    message = problem_at(parse_error(data).problems, ".".join(path))
    assert "is empty; give a value" in message


# --------------------------------------------------------------------------- AWS formats


@pytest.mark.parametrize(
    "role",
    [
        "securedr-restore",
        "arn:aws:iam::123456789012:user/alice",
        "arn:aws:iam::1234:role/securedr-restore",
        "arn:aws:sts::123456789012:assumed-role/securedr-restore/x",
    ],
)
def test_restore_role_must_be_a_role_arn(role: str) -> None:
    data = valid()
    data["restore"]["role_arn"] = role
    message = problem_at(parse_error(data).problems, "restore.role_arn")
    assert "expected an IAM role ARN" in message and repr(role) in message


@pytest.mark.parametrize(
    "topic",
    [
        "securedr-restore",
        "arn:aws:sqs:us-west-2:123456789012:securedr-restore",
        "arn:aws:sns:us-west-2:123456789012:",
        "arn:aws:sns:nowhere:123456789012:securedr",
        "arn:aws:sns:us-west-2:123456789012:" + "t" * 257,
        "arn:aws:sns:us-west-2:123456789012:" + "t" * 252 + ".fifo",
    ],
)
def test_notification_topic_must_be_a_topic_arn(topic: str) -> None:
    data = valid()
    data["notifications"]["sns_topic_arn"] = topic
    message = problem_at(parse_error(data).problems, "notifications.sns_topic_arn")
    assert "expected an SNS topic ARN" in message


def test_fifo_topics_and_gov_roles_are_accepted() -> None:
    data = valid()
    data["notifications"]["sns_topic_arn"] = "arn:aws:sns:us-west-2:123456789012:dr-events.fifo"
    data["restore"]["role_arn"] = "arn:aws-us-gov:iam::123456789012:role/path/securedr"
    plan = parse_plan(data)
    assert plan.notifications.sns_topic_arn.endswith(".fifo")
    data["notifications"]["sns_topic_arn"] = "arn:aws:sns:us-west-2:123456789012:" + "t" * 256
    assert parse_plan(data).notifications.sns_topic_arn.endswith("t" * 256)


def test_an_availability_zone_of_another_region_is_refused() -> None:
    data = valid()
    data["restore"]["availability_zone"] = "eu-west-1a"
    message = problem_at(parse_error(data).problems, "restore.availability_zone")
    assert "'eu-west-1a' is in Region eu-west-1, not in the DR Region us-west-2" in message
    assert "us-west-2a" in message


@pytest.mark.parametrize("zone", ["us-west-2", "us-west-2ab", "usw2-az1", "us-west-2-lax-1a"])
def test_a_malformed_availability_zone_is_refused(zone: str) -> None:
    data = valid()
    data["restore"]["availability_zone"] = zone
    message = problem_at(parse_error(data).problems, "restore.availability_zone")
    assert "expected an Availability Zone name" in message


MRK = "mrk-1234abcd12ab34cd56ef1234567890ab"


def test_multi_region_keys_are_accepted_by_id_and_by_arn() -> None:
    data = valid()
    data["kms_keys"] = {
        "us-east-1": MRK,
        "eu-west-1": f"arn:aws:kms:eu-west-1:123456789012:key/{MRK}",
        "us-west-2": f"arn:aws:kms:us-west-2:123456789012:key/{MRK}",
    }
    plan = parse_plan(data)
    assert plan.kms_key("us-east-1") == MRK
    assert plan.kms_key("us-west-2").endswith(MRK)


def test_a_key_arn_of_another_region_is_refused_with_the_replica_to_use() -> None:
    data = valid()
    data["kms_keys"]["us-west-2"] = f"arn:aws:kms:us-east-1:123456789012:key/{MRK}"
    message = problem_at(parse_error(data).problems, "kms_keys.us-west-2")
    assert "in Region us-east-1, but it is listed for us-west-2" in message
    assert f"arn:aws:kms:us-west-2:123456789012:key/{MRK}" in message


def test_an_alias_arn_of_another_region_is_refused() -> None:
    data = valid()
    data["kms_keys"]["eu-west-1"] = "arn:aws:kms:us-west-2:123456789012:alias/securedr-dr"
    message = problem_at(parse_error(data).problems, "kms_keys.eu-west-1")
    assert "listed for eu-west-1" in message


def test_a_key_arn_of_the_wrong_partition_is_refused() -> None:
    data = valid()
    data["regions"]["dr"] = "us-gov-west-1"
    data["restore"]["availability_zone"] = "us-gov-west-1a"
    data["kms_keys"]["us-gov-west-1"] = f"arn:aws:kms:us-gov-west-1:123456789012:key/{MRK}"
    message = problem_at(parse_error(data).problems, "kms_keys.us-gov-west-1")
    assert "arn:aws-us-gov:" in message


@pytest.mark.parametrize("key", ["mrk-1234", "mrk-1234ABCD12AB34CD56EF1234567890AB", "mrk-"])
def test_malformed_multi_region_key_ids_are_refused(key: str) -> None:
    data = valid()
    data["kms_keys"]["us-west-2"] = key
    assert "expected a KMS key alias" in problem_at(
        parse_error(data).problems, "kms_keys.us-west-2"
    )


# --------------------------------------------------------------------------- $VARS


def test_an_undefined_variable_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SECUREDR_NOT_SET", raising=False)
    data = valid()
    data["signing"]["trusted_keys"] = "${SECUREDR_NOT_SET}/keys/trusted.pem"
    data["restore"]["file_set_directory"] = "$SECUREDR_ALSO_NOT_SET/restored"
    data["file_sets"]["sets"][1]["source"] = "${SECUREDR_NOT_SET}/dumps"
    problems, _ = refused(write(tmp_path, data))
    assert "${SECUREDR_NOT_SET}, which is not set" in problem_at(problems, "signing.trusted_keys")
    assert "${SECUREDR_ALSO_NOT_SET}" in problem_at(problems, "restore.file_set_directory")
    assert "SECUREDR_NOT_SET" in problem_at(problems, "file_sets.sets.1.source")


def test_a_variable_in_a_field_that_is_not_a_path_is_refused() -> None:
    data = valid()
    data["restore"]["db_subnet_group"] = "${SUBNET_GROUP}"
    message = problem_at(parse_error(data).problems, "restore.db_subnet_group")
    assert "expanded only in paths" in message


def test_a_variable_unset_after_loading_is_refused_when_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = load_plan(SHIPPED)
    monkeypatch.delenv("SECUREDR_HOME")
    with pytest.raises(UndefinedVariableError, match="SECUREDR_HOME"):
        plan.trusted_keys_path(Path("/plans"))


def test_expand_variables() -> None:
    env = {"A": "/a", "B": "b"}
    assert expand_variables("${A}/$B/c", env) == "/a/b/c"
    with pytest.raises(UndefinedVariableError) as info:
        expand_variables("${A}/${C}/$D/${C}", env)
    assert info.value.names == ["C", "D"]


# --------------------------------------------------------------------------- one pass


def test_every_problem_is_listed_in_one_pass_cross_field_ones_included() -> None:
    data = valid()
    data["retention"]["keep_days"] = True  # a field problem...
    data["regions"]["dr"] = "eu-west-1"  # ...and rules between fields
    data["kms_keys"].pop("us-east-1")
    data["restore"]["availability_zone"] = "us-east-1b"
    data["access"] = {"initiators": ["alice"], "approvers": ["alice"]}
    data["file_sets"]["sets"].append(dict(data["file_sets"]["sets"][1]))
    paths = {path for path, _ in parse_error(data).problems}
    assert paths == {
        "retention.keep_days",
        "regions",
        "kms_keys",
        "restore.availability_zone",
        "access",
        "file_sets.sets",
    }


def test_a_rule_is_not_repeated_for_a_malformed_field() -> None:
    data = valid()
    data["kms_keys"]["us-west-2"] = 42
    problems = parse_error(data).problems
    assert [p for p, _ in problems] == ["kms_keys.us-west-2"]


# --------------------------------------------------------------------------- properties

pem_or_secret = st.sampled_from([PRIVATE_PEM, AWS_SECRET, f"aws_secret_access_key={AWS_SECRET}"])
PATHS = [
    ("name",),
    ("signing", "trusted_keys"),
    ("signing", "private_key_variable"),
    ("restore", "role_arn"),
    ("restore", "availability_zone"),
    ("notifications", "sns_topic_arn"),
    ("evidence_bucket", "name"),
    ("kms_keys", "us-west-2"),
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PATHS), pem_or_secret, st.text(max_size=20), st.text(max_size=20))
def test_a_secret_anywhere_is_never_echoed(
    path: tuple[str, ...], secret: str, before: str, after: str
) -> None:
    data = valid()
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = f"{before} {secret}\n{after}"
    error = parse_error(data)
    text = str(error)
    assert AWS_SECRET not in text and PEM_MARKER not in text
    assert any(p == ".".join(path) for p, _ in error.problems)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400) | st.binary(max_size=400).map(lambda b: b.decode("latin-1")))
def test_any_text_gives_a_plan_or_a_plan_error(text: str) -> None:
    try:
        result = plan_yaml.parse_plan_yaml(text)
    except plan_yaml.PlanFileError as error:
        assert error.where and error.message
        return
    try:
        assert isinstance(parse_plan(result, "fuzz"), Plan)
    except PlanError as error:
        assert error.problems


yaml_scalar = st.sampled_from(["1", "true", "x", "''", "~", "2024-01-01", "0x1F", "1e3"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(2, 12), st.integers(3, 12), yaml_scalar)
def test_any_alias_bomb_is_refused(levels: int, width: int, scalar: str) -> None:
    lines = [f"l0: &l0 [{', '.join([scalar] * width)}]"]
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    text = "\n".join(lines) + "\n"
    try:
        plan_yaml.parse_plan_yaml(text)
    except plan_yaml.PlanFileError as error:
        assert "alias" in error.message
    else:  # only a small document may load
        assert width**levels <= plan_yaml.MAX_ALIAS_NODES
        assert width * (levels - 1) <= MAX_ALIASES


def test_a_plan_built_directly_still_checks_the_rules_between_fields() -> None:
    # parse_plan defers these rules to its own pass; building the model directly must not
    # skip them.
    from pydantic import ValidationError

    data = valid()
    data["regions"]["dr"] = "eu-west-1"
    with pytest.raises(ValidationError, match="also a source Region"):
        Plan.model_validate(data)
