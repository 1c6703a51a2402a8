"""The e2e profile and the stack: AWS as it behaves, with durations short enough for a laptop."""

from __future__ import annotations

import pytest

from sandbox import realism


def test_the_e2e_profile_switches_timing_consistency_and_quotas_on_with_short_durations():
    realism.install()  # loads every behaviour module; each adds its section to the profile
    profile = realism.PROFILES["e2e"]
    timing, consistency = profile["timing"], profile["consistency"]
    assert 0 < timing["snapshot_seconds"] <= 5
    assert 0 < timing["copy_seconds"] <= 5
    assert 0 < timing["db_snapshot_seconds"] <= 5
    assert 0 < consistency["seconds"] <= 2
    assert profile["quotas"]["ebs_copies_per_region"] == 20
    assert profile["quotas"]["rds_manual_snapshots"] == 100


class Spawned(Exception):
    pass


@pytest.mark.parametrize(("configured", "expected"), [(None, "e2e"), ("off", "off")])
def test_the_stack_starts_the_sandbox_aws_with_realism_unless_told_otherwise(
    tmp_path, monkeypatch, configured, expected
):
    from sandbox import stack as module

    seen: dict[str, dict[str, str]] = {}

    def spawn(self, name, argv, env, user=None):
        seen[name] = env
        raise Spawned

    monkeypatch.setattr(module.Stack, "_spawn", spawn)
    if configured is None:
        monkeypatch.delenv(module.REALISM_ENV, raising=False)
    else:
        monkeypatch.setenv(module.REALISM_ENV, configured)
    with pytest.raises(Spawned):
        module.Stack(home=tmp_path / "home").up(quiet=True)
    assert seen["sandbox-aws"][module.REALISM_ENV] == expected
