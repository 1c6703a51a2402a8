"""Part sizes that fit every object S3 accepts into 10,000 parts."""

from __future__ import annotations

import pytest

from securedr.core.multipart import (
    DEFAULT_PART_SIZE,
    MAX_OBJECT_SIZE,
    MAX_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    ObjectTooLarge,
    part_size,
)

GIB = 1 << 30
TIB = 1 << 40


def _fits(total: int) -> int:
    size = part_size(total)
    assert MIN_PART_SIZE <= size <= MAX_PART_SIZE
    assert size % (1 << 20) == 0
    assert size * MAX_PARTS >= total, f"{total} bytes need more than {MAX_PARTS} parts of {size}"
    return size


def test_small_objects_keep_the_default_part_size():
    assert part_size(0) == DEFAULT_PART_SIZE
    assert part_size(10 << 20) == DEFAULT_PART_SIZE


def test_78_gib_fits():
    assert _fits(78 * GIB) == DEFAULT_PART_SIZE


def test_just_over_78_gib_grows_the_part():
    # 10,000 fixed 8 MiB parts hold 78.125 GiB: one byte more no longer fits.
    total = DEFAULT_PART_SIZE * MAX_PARTS + 1
    assert _fits(total) > DEFAULT_PART_SIZE
    assert _fits(79 * GIB) > DEFAULT_PART_SIZE


def test_1_tib_fits():
    assert _fits(TIB) == 105 << 20


def test_5_tib_fits():
    assert _fits(MAX_OBJECT_SIZE) == 525 << 20


def test_more_than_5_tib_is_refused_with_the_limit_named():
    with pytest.raises(ObjectTooLarge, match="5 TiB object limit"):
        part_size(MAX_OBJECT_SIZE + 1)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10"])
def test_bad_sizes_are_refused(bad):
    with pytest.raises(ValueError, match="total_bytes"):
        part_size(bad)


def test_a_minimum_below_s3s_part_floor_is_refused():
    with pytest.raises(ValueError, match="5 MiB"):
        part_size(1, minimum=1 << 20)


def test_max_parts_is_honoured():
    assert part_size(20 << 20, minimum=MIN_PART_SIZE, max_parts=3) == 7 << 20
