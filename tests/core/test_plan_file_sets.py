"""The plan's file_sets section: every mistake is refused by field path before any AWS call."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from securedr.core.envelope import generate_recovery_keypair
from securedr.core.plan import PlanError, load_plan, parse_plan

SHIPPED = Path(__file__).resolve().parents[2] / "include" / "dr_plan.yaml"
BASE: dict[str, Any] = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))


def plan_with(tmp_path: Path, sets: list[dict[str, Any]], key: str | None = None) -> Path:
    data = copy.deepcopy(BASE)
    if key is None:
        key_file = tmp_path / "recovery.pub"
        key_file.write_text("# comment\n" + generate_recovery_keypair()[1].decode() + "\n")
        key = str(key_file)
    data["file_sets"] = {"recovery_public_key": key, "sets": sets}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def problems(path: Path) -> list[tuple[str, str]]:
    with pytest.raises(PlanError) as info:
        load_plan(path)
    return info.value.problems


def test_the_shipped_plan_has_an_s3_and_a_local_file_set() -> None:
    plan = load_plan(SHIPPED)
    assert plan.file_sets is not None
    kinds = {s.name: (s.is_s3, s.region) for s in plan.file_sets.sets}
    assert kinds == {"app-config": (True, "us-east-1"), "db-dumps": (False, None)}
    app = plan.file_sets.sets[0]
    assert (app.bucket, app.prefix) == ("securedr-demo-app-config", "config/")


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("https://bucket/prefix", "only S3 URLs are supported"),
        ("s3:/bucket/prefix", "expected 's3://bucket/prefix'"),
        ("s3://Bad_Bucket/prefix", "is not an S3 bucket name"),
        ("s3://bucket/a/../b", "'.' or '..' parts"),
        ("s3://bucket//b", "empty"),
    ],
)
def test_bad_source_urls_are_named(tmp_path: Path, source: str, fragment: str) -> None:
    found = problems(plan_with(tmp_path, [{"name": "x", "source": source, "region": "us-east-1"}]))
    assert len(found) == 1
    assert found[0][0] == "file_sets.sets.0.source"
    assert fragment in found[0][1]


def test_region_is_required_for_s3_and_refused_for_a_directory(tmp_path: Path) -> None:
    found = problems(
        plan_with(
            tmp_path,
            [
                {"name": "a", "source": "s3://bucket/p"},
                {"name": "b", "source": "/data/dumps", "region": "us-east-1"},
                {"name": "c", "source": "s3://bucket/q", "region": "mars-1"},
            ],
        )
    )
    by_path = dict(found)
    assert "needs 'region'" in by_path["file_sets.sets.0"]
    assert "only for S3 sources" in by_path["file_sets.sets.1"]
    assert "AWS Region name" in by_path["file_sets.sets.2"]


def test_duplicate_names_and_bad_names(tmp_path: Path) -> None:
    found = problems(
        plan_with(
            tmp_path,
            [
                {"name": "dumps", "source": "/a"},
                {"name": "dumps", "source": "/b"},
                {"name": "Has Space", "source": "/c"},
            ],
        )
    )
    by_path = dict(found)
    assert "Has Space" in by_path["file_sets.sets.2.name"]
    # The duplicate check runs on a list that validated; fix the name and it shows.
    found = problems(
        plan_with(tmp_path, [{"name": "dumps", "source": "/a"}, {"name": "dumps", "source": "/b"}])
    )
    assert found == [("file_sets.sets", "file set name(s) used more than once: dumps")]


def test_missing_key_file_is_named_with_what_to_do(tmp_path: Path) -> None:
    found = problems(
        plan_with(tmp_path, [{"name": "a", "source": "/a"}], key=str(tmp_path / "nope.pub"))
    )
    assert found[0][0] == "file_sets.recovery_public_key"
    assert "does not exist" in found[0][1] and "securedr keygen" in found[0][1]


def test_a_damaged_or_private_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    private, public = generate_recovery_keypair()
    damaged = public.decode()[:-1] + ("a" if public.decode()[-1] != "a" else "b")
    for text, fragment in ((damaged, "checksum"), (private.decode(), "expected a recovery public")):
        found = problems(plan_with(tmp_path, [{"name": "a", "source": "/a"}], key=text))
        assert found[0][0] == "file_sets.recovery_public_key"
        assert fragment in found[0][1]
        assert private.decode() not in found[0][1]
    two = tmp_path / "two.pub"
    two.write_text(public.decode() + "\n" + public.decode() + "\n")
    found = problems(plan_with(tmp_path, [{"name": "a", "source": "/a"}], key=str(two)))
    assert "exactly one" in found[0][1]


def test_an_inline_public_key_is_accepted(tmp_path: Path) -> None:
    public = generate_recovery_keypair()[1].decode()
    plan = load_plan(plan_with(tmp_path, [{"name": "a", "source": "dumps"}], key=public))
    assert plan.recovery_public_key(tmp_path) == public
    # A relative directory is resolved against the plan's directory.
    assert plan.file_sets.sets[0].directory(tmp_path) == tmp_path / "dumps"


def test_the_evidence_bucket_is_not_a_source() -> None:
    data = copy.deepcopy(BASE)
    data["file_sets"]["sets"] = [
        {"name": "loop", "source": "s3://securedr-evidence-demo/x", "region": "us-west-2"}
    ]
    with pytest.raises(PlanError, match="reads the evidence bucket itself"):
        parse_plan(data)
