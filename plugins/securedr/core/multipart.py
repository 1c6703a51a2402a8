"""S3 multipart sizing: a part size that fits any object S3 accepts into 10,000 parts.

S3's limits (https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html): an object is at
most 5 TiB, a multipart upload has at most 10,000 parts, and every part but the last is between
5 MiB and 5 GiB. A fixed part size cannot serve both ends: 8 MiB parts stop at 78.125 GiB, and
525 MiB parts waste memory on small files. :func:`part_size` grows the part with the object.

Pure module: no Airflow, no boto3.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_PART_SIZE",
    "MAX_OBJECT_SIZE",
    "MAX_PARTS",
    "MAX_PART_SIZE",
    "MIN_PART_SIZE",
    "ObjectTooLarge",
    "part_size",
]

MIB = 1 << 20
MIN_PART_SIZE = 5 * MIB
MAX_PART_SIZE = 5 << 30
MAX_PARTS = 10_000
MAX_OBJECT_SIZE = 5 << 40
#: Part size for objects small enough to fit 10,000 of them (up to 78.125 GiB).
DEFAULT_PART_SIZE = 8 * MIB


class ObjectTooLarge(ValueError):
    """The object is larger than S3 can store; the message names the size and the limit."""


def part_size(
    total_bytes: int,
    *,
    minimum: int = DEFAULT_PART_SIZE,
    max_parts: int = MAX_PARTS,
) -> int:
    """The part size for an object of ``total_bytes``: at least ``minimum``, a whole number of
    MiB, and large enough that ``max_parts`` parts hold the whole object.

    Raises :class:`ObjectTooLarge` above S3's 5 TiB object limit and :class:`ValueError` for a
    negative size or a minimum outside S3's 5 MiB - 5 GiB part range.
    """
    if isinstance(total_bytes, bool) or not isinstance(total_bytes, int) or total_bytes < 0:
        raise ValueError(f"total_bytes must be a non-negative integer, got {total_bytes!r}")
    if not MIN_PART_SIZE <= minimum <= MAX_PART_SIZE:
        raise ValueError(f"minimum part size {minimum} is outside S3's 5 MiB - 5 GiB range")
    if max_parts < 1:
        raise ValueError(f"max_parts must be >= 1, got {max_parts}")
    if total_bytes > MAX_OBJECT_SIZE:
        raise ObjectTooLarge(
            f"{total_bytes} bytes ({total_bytes / (1 << 40):.2f} TiB) is more than S3's "
            f"5 TiB object limit ({MAX_OBJECT_SIZE} bytes); split the file or keep it out "
            "of the file set"
        )
    needed = -(-total_bytes // max_parts)  # ceiling division
    size = max(minimum, -(-needed // MIB) * MIB)
    return min(size, MAX_PART_SIZE)
