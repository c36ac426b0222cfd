"""Exact slicing of the 160-bit digest space among runner processes.

A queue file's name ends in a 160-bit digest written as 40 hex digits.  With
``numslices`` processes sharing a queue, digest *d* belongs to slice
``(d * numslices) >> 160``: integer arithmetic, so every digest, the boundaries
included, falls in exactly one slice.  (Floating-point bounds, as some switchboards
compute them, put boundary digests in two slices or none.)
"""

from __future__ import annotations

from runnerkit.errors import QueueError

DIGEST_BITS = 160
DIGEST_HEX = DIGEST_BITS // 4
MAX_DIGEST = (1 << DIGEST_BITS) - 1


def check_slice(slice: int | None, numslices: int) -> None:
    """Check that *slice* of *numslices* is a real slice.

    :raises QueueError: *numslices* is not a positive int, or *slice* is outside it.
    """
    if isinstance(numslices, bool) or not isinstance(numslices, int) or numslices < 1:
        raise QueueError(f"numslices must be a positive int, got {numslices!r}")
    if slice is not None and (
        isinstance(slice, bool) or not isinstance(slice, int) or not 0 <= slice < numslices
    ):
        raise QueueError(f"slice must be None or an int from 0 to {numslices - 1}, got {slice!r}")


def slice_of(digest: int, numslices: int) -> int:
    """The slice that owns *digest* when the space is split *numslices* ways."""
    return (digest * numslices) >> DIGEST_BITS


def slice_bounds(slice: int, numslices: int) -> tuple[int, int]:
    """The digests ``[low, high)`` that slice *slice* of *numslices* owns."""
    low = -((-slice << DIGEST_BITS) // numslices)
    high = -((-(slice + 1) << DIGEST_BITS) // numslices)
    return low, high


def digest_pattern(slice: int | None, numslices: int) -> str | None:
    """A regular expression for the hex digests of one slice, or None if it needs arithmetic.

    When *numslices* is a power of two, a slice is a fixed prefix of the digest's bits,
    so a pattern over the hex digits selects it exactly and the listing needs no integer
    parsing at all.
    """
    if slice is None or numslices == 1:
        return f"[0-9a-f]{{{DIGEST_HEX}}}"
    if numslices & (numslices - 1):
        return None
    bits = numslices.bit_length() - 1
    width = -(-bits // 4)
    last_bits = bits - 4 * (width - 1)
    fixed = slice >> last_bits
    pattern = f"{fixed:0{width - 1}x}" if width > 1 else ""
    tail = slice & ((1 << last_bits) - 1)
    first = tail << (4 - last_bits)
    last = ((tail + 1) << (4 - last_bits)) - 1
    chars = "".join(f"{value:x}" for value in range(first, last + 1))
    pattern += f"[{chars}]" if len(chars) > 1 else chars
    return pattern + f"[0-9a-f]{{{DIGEST_HEX - width}}}"
