"""Slices: every digest belongs to exactly one slice, for every slice count from 1 to 1024.

Slice *k* of *n* owns the digests *d* with ``k * 2**160 <= d * n < (k + 1) * 2**160``.
Those ranges are disjoint and cover the whole space, so the inequality is the definition
of "exactly one slice" that these tests check :func:`~runnerkit.slices.slice_of`,
:func:`~runnerkit.slices.slice_bounds` and :func:`~runnerkit.slices.digest_pattern`
against: exhaustively at every slice boundary (the boundary digest, one below, one above,
and 0 and ``2**160 - 1``) for each of the 1024 slice counts, and with hypothesis for
random digests and digests drawn near the boundaries.
"""

from __future__ import annotations

import functools
import itertools
import re
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from runnerkit.slices import DIGEST_HEX, MAX_DIGEST, digest_pattern, slice_bounds, slice_of
from runnerkit.switchboard import Switchboard

SPACE = 1 << 160
COUNTS = range(1, 1025)
POWERS_OF_TWO = [1 << bits for bits in range(11)]


@functools.lru_cache(maxsize=32)
def bounds(numslices: int) -> tuple[int, ...]:
    """The low bound of every slice of *numslices*, then ``2**160``."""
    return (*(slice_bounds(k, numslices)[0] for k in range(numslices)), SPACE)


@functools.cache
def patterns(numslices: int) -> tuple[re.Pattern[str], ...] | None:
    """Every slice's compiled digest pattern, or None where slicing needs arithmetic."""
    found = [digest_pattern(k, numslices) for k in range(numslices)]
    if any(pattern is None for pattern in found):
        return None
    return tuple(re.compile(pattern) for pattern in found if pattern is not None)


def check_one_slice(digest: int, numslices: int, *, every_pattern: bool = False) -> None:
    """Check that *digest* is in exactly one slice of *numslices*, by every measure.

    :param every_pattern: try every slice's pattern, not only the owner's neighbours'.
    """
    owner = slice_of(digest, numslices)
    # The definition: this inequality holds for exactly one integer, the owner.
    assert 0 <= owner < numslices
    assert owner * SPACE <= digest * numslices < (owner + 1) * SPACE
    # The bounds agree: the owner's contain the digest, its neighbours' do not.
    lows = bounds(numslices)
    assert lows[owner] <= digest < lows[owner + 1]
    assert slice_bounds(owner, numslices) == (lows[owner], lows[owner + 1])
    # The patterns agree, where slicing uses them (a power of two of slices).
    compiled = patterns(numslices)
    if compiled is None:
        assert numslices & (numslices - 1), f"{numslices} slices should have patterns"
        assert digest_pattern(owner, numslices) is None
        return
    text = f"{digest:0{DIGEST_HEX}x}"
    if every_pattern:
        matching = [k for k, pattern in enumerate(compiled) if pattern.fullmatch(text)]
        assert matching == [owner]
    else:
        for k in (owner - 1, owner, owner + 1):
            if 0 <= k < numslices:
                assert bool(compiled[k].fullmatch(text)) == (k == owner), (digest, k)


def boundary_digests(numslices: int) -> list[int]:
    """0, ``2**160 - 1``, and each slice boundary with the digests either side of it."""
    found = {0, MAX_DIGEST}
    for low in bounds(numslices)[1:-1]:
        found.update((low - 1, low, low + 1))
    return sorted(found)


def check_tiling(numslices: int) -> None:
    """The slices tile the digest space in order: no gap, no overlap, none empty."""
    lows = bounds(numslices)
    assert lows[0] == 0
    assert lows[-1] == SPACE
    assert all(low < high for low, high in itertools.pairwise(lows))
    assert len(lows) == numslices + 1


@pytest.mark.parametrize("first", range(1, 1025, 128), ids=lambda first: f"{first}-{first + 127}")
def test_every_boundary_digest_is_in_exactly_one_slice(first: int) -> None:
    # All 1024 slice counts, in eight groups that can run in parallel.
    for numslices in range(first, first + 128):
        check_tiling(numslices)
        digests = boundary_digests(numslices)
        # 0 and the largest digest, and three digests at each of the n - 1 boundaries.
        assert len(digests) == 3 * (numslices - 1) + 2
        for digest in digests:
            check_one_slice(digest, numslices)


@st.composite
def near_a_boundary(draw: st.DrawFn) -> tuple[int, int]:
    """A slice count, and a digest at most 2 from one of its slice boundaries."""
    numslices = draw(st.integers(1, 1024) | st.sampled_from(POWERS_OF_TWO))
    low = bounds(numslices)[draw(st.integers(0, numslices))]
    return min(max(low + draw(st.integers(-2, 2)), 0), MAX_DIGEST), numslices


ANY_DIGEST = st.tuples(
    st.integers(0, MAX_DIGEST) | st.sampled_from([0, 1, MAX_DIGEST - 1, MAX_DIGEST]),
    st.integers(1, 1024) | st.sampled_from(POWERS_OF_TWO),
)


@settings(max_examples=400, deadline=None, database=None)
@given(ANY_DIGEST | near_a_boundary())
@example((0, 1))
@example((MAX_DIGEST, 1))
@example((0, 1024))
@example((MAX_DIGEST, 1024))
@example((MAX_DIGEST, 1023))
@example((SPACE // 3, 3))
@example((SPACE // 3 + 1, 3))
@example((2 * SPACE // 3, 3))
@example((2 * SPACE // 3 + 1, 3))
@example((SPACE // 2 - 1, 2))
@example((SPACE // 2, 2))
@example((SPACE // 1024 - 1, 1024))
@example((SPACE // 1024, 1024))
@example((-(-SPACE // 1000) - 1, 1000))
@example((-(-SPACE // 1000), 1000))
@example((-(-SPACE * 999 // 1000), 1000))
def test_any_digest_is_in_exactly_one_slice(case: tuple[int, int]) -> None:
    digest, numslices = case
    check_one_slice(digest, numslices, every_pattern=True)
    # Counted the slow way too: the digest is in one slice's bounds, and in no other's.
    lows = bounds(numslices)
    owners = [k for k in range(numslices) if lows[k] <= digest < lows[k + 1]]
    assert owners == [slice_of(digest, numslices)]


def some_boundary_digests(numslices: int) -> list[int]:
    """The digests at and either side of the first 8, the last 8 and 16 other boundaries."""
    lows = bounds(numslices)
    chosen = {
        *range(1, 9),
        *range(numslices - 8, numslices),
        *range(1, numslices, -(-numslices // 16)),
    }
    found = {0, MAX_DIGEST}
    for k in chosen:
        if 0 < k < numslices:
            found.update((lows[k] - 1, lows[k], lows[k] + 1))
    return sorted(found)


@pytest.mark.parametrize("numslices", [1, 2, 3, 7, 64, 100, 1000, 1023, 1024])
def test_sliced_listings_split_boundary_files_exactly(tmp_path: Path, numslices: int) -> None:
    # What a runner sees: each file named with a boundary digest is listed by exactly
    # one slice's switchboard, the one that owns its digest.
    queue = tmp_path / "queue"
    queue.mkdir()
    names = {}
    for index, digest in enumerate(some_boundary_digests(numslices)):
        filebase = f"1700000000.{index:09d}+{digest:040x}"
        (queue / f"{filebase}.pck").touch()
        names[filebase] = digest
    listed: dict[str, list[int]] = {filebase: [] for filebase in names}
    for k in range(numslices):
        for filebase in Switchboard("test", queue, k, numslices).files:
            listed[filebase].append(k)
    wrong = {
        filebase: slices
        for filebase, slices in listed.items()
        if slices != [slice_of(names[filebase], numslices)]
    }
    assert wrong == {}
