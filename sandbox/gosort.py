"""Go's ``sort.Sort``, ported step for step, for the one place where its order is observable.

Flux picks the tag of a semver range with ``sort.Sort(sort.Reverse(semver.Collection(matches)))``
and takes the first element. ``sort.Sort`` is not stable: when several matching tags share the
highest precedence (``1.0.0+a`` and ``1.0.0+b``, ``1.0.0`` and ``v1.0.0``), which one ends up first
depends on the algorithm. Go (since 1.19, unchanged through 1.26) sorts with pattern-defeating
quicksort (``pdqsort`` in ``src/sort/zsortinterface.go``): up to 12 elements it is an insertion
sort, which keeps the input order of equal elements; beyond, partitioning moves them around, but
deterministically (its "random" pattern breaker is an xorshift seeded with the slice length), so
the same input always gives the same answer. :func:`sort_like_go` reproduces every comparison and
swap of that code, including its quirks (``partialInsertionSort`` shifts left down to index 1,
not to the start of the sub-slice), so the element that lands first is the one Flux returns.

It is slower than :func:`sorted` and is only used when the answer depends on it (see
:func:`sandbox.versions.resolve`).
"""

from __future__ import annotations

from collections.abc import Callable, MutableSequence
from typing import Final, TypeVar

__all__ = ["INSERTION_SORT_MAX", "sort_like_go"]

T = TypeVar("T")

#: ``maxInsertion``: slices this short are insertion-sorted (stable for equal elements).
INSERTION_SORT_MAX: Final = 12
_UINT64: Final = (1 << 64) - 1
_UNKNOWN, _INCREASING, _DECREASING = 0, 1, 2
_SHORTEST_NINTHER: Final = 50
_MAX_SWAPS: Final = 4 * 3
_MAX_STEPS: Final = 5
_SHORTEST_SHIFTING: Final = 50


class _Data:
    """Go's ``sort.Interface`` over a Python list: ``less(i, j)`` and ``swap(i, j)`` by index."""

    __slots__ = ("items", "less_items")

    def __init__(self, items: MutableSequence[T], less: Callable[[T, T], bool]) -> None:
        self.items: MutableSequence[object] = items  # type: ignore[assignment]
        self.less_items: Callable[[object, object], bool] = less  # type: ignore[assignment]

    def less(self, i: int, j: int) -> bool:
        return self.less_items(self.items[i], self.items[j])

    def swap(self, i: int, j: int) -> None:
        items = self.items
        items[i], items[j] = items[j], items[i]


def sort_like_go(items: MutableSequence[T], less: Callable[[T, T], bool]) -> None:
    """Sort ``items`` in place exactly as Go's ``sort.Sort`` would with this ``Less``.

    Args:
        items: The slice.
        less: ``Less`` on two elements (a strict weak ordering); for ``sort.Reverse`` pass the
            original ``Less`` with its arguments swapped.
    """
    n = len(items)
    if n <= 1:
        return
    _pdqsort(_Data(items, less), 0, n, n.bit_length())


def _insertion_sort(data: _Data, a: int, b: int) -> None:
    for i in range(a + 1, b):
        j = i
        while j > a and data.less(j, j - 1):
            data.swap(j, j - 1)
            j -= 1


def _sift_down(data: _Data, lo: int, hi: int, first: int) -> None:
    root = lo
    while True:
        child = 2 * root + 1
        if child >= hi:
            return
        if child + 1 < hi and data.less(first + child, first + child + 1):
            child += 1
        if not data.less(first + root, first + child):
            return
        data.swap(first + root, first + child)
        root = child


def _heap_sort(data: _Data, a: int, b: int) -> None:
    first, lo, hi = a, 0, b - a
    for i in range((hi - 1) // 2, -1, -1):
        _sift_down(data, i, hi, first)
    for i in range(hi - 1, -1, -1):
        data.swap(first, first + i)
        _sift_down(data, lo, i, first)


def _pdqsort(data: _Data, a: int, b: int, limit: int) -> None:
    was_balanced = was_partitioned = True
    while True:
        length = b - a
        if length <= INSERTION_SORT_MAX:
            _insertion_sort(data, a, b)
            return
        if limit == 0:
            _heap_sort(data, a, b)
            return
        if not was_balanced:
            _break_patterns(data, a, b)
            limit -= 1
        pivot, hint = _choose_pivot(data, a, b)
        if hint == _DECREASING:
            _reverse_range(data, a, b)
            pivot = (b - 1) - (pivot - a)
            hint = _INCREASING
        if was_balanced and was_partitioned and hint == _INCREASING and _partial_insertion_sort(data, a, b):
            return
        if a > 0 and not data.less(a - 1, pivot):
            a = _partition_equal(data, a, b, pivot)
            continue
        mid, was_partitioned = _partition(data, a, b, pivot)
        left_len, right_len = mid - a, b - mid
        balance_threshold = length // 8
        if left_len < right_len:
            was_balanced = left_len >= balance_threshold
            _pdqsort(data, a, mid, limit)
            a = mid + 1
        else:
            was_balanced = right_len >= balance_threshold
            _pdqsort(data, mid + 1, b, limit)
            b = mid


def _partition(data: _Data, a: int, b: int, pivot: int) -> tuple[int, bool]:
    data.swap(a, pivot)
    i, j = a + 1, b - 1
    while i <= j and data.less(i, a):
        i += 1
    while i <= j and not data.less(j, a):
        j -= 1
    if i > j:
        data.swap(j, a)
        return j, True
    data.swap(i, j)
    i += 1
    j -= 1
    while True:
        while i <= j and data.less(i, a):
            i += 1
        while i <= j and not data.less(j, a):
            j -= 1
        if i > j:
            break
        data.swap(i, j)
        i += 1
        j -= 1
    data.swap(j, a)
    return j, False


def _partition_equal(data: _Data, a: int, b: int, pivot: int) -> int:
    data.swap(a, pivot)
    i, j = a + 1, b - 1
    while True:
        while i <= j and not data.less(a, i):
            i += 1
        while i <= j and data.less(a, j):
            j -= 1
        if i > j:
            break
        data.swap(i, j)
        i += 1
        j -= 1
    return i


def _partial_insertion_sort(data: _Data, a: int, b: int) -> bool:
    i = a + 1
    for _ in range(_MAX_STEPS):
        while i < b and not data.less(i, i - 1):
            i += 1
        if i == b:
            return True
        if b - a < _SHORTEST_SHIFTING:
            return False
        data.swap(i, i - 1)
        if i - a >= 2:
            # Go's loop runs down to index 1 (not a + 1): kept, it decides where ties land.
            for j in range(i - 1, 0, -1):
                if not data.less(j, j - 1):
                    break
                data.swap(j, j - 1)
        if b - i >= 2:
            for j in range(i + 1, b):
                if not data.less(j, j - 1):
                    break
                data.swap(j, j - 1)
    return False


def _break_patterns(data: _Data, a: int, b: int) -> None:
    length = b - a
    if length >= 8:
        random = length  # xorshift(length)
        modulus = 1 << length.bit_length()  # nextPowerOfTwo
        for idx in range(a + (length // 4) * 2 - 1, a + (length // 4) * 2 + 2):
            random ^= (random << 13) & _UINT64
            random ^= random >> 7
            random ^= (random << 17) & _UINT64
            other = random & (modulus - 1)
            if other >= length:
                other -= length
            data.swap(idx, a + other)


def _choose_pivot(data: _Data, a: int, b: int) -> tuple[int, int]:
    length = b - a
    swaps = [0]
    i = a + length // 4 * 1
    j = a + length // 4 * 2
    k = a + length // 4 * 3
    if length >= 8:
        if length >= _SHORTEST_NINTHER:
            i = _median_adjacent(data, i, swaps)
            j = _median_adjacent(data, j, swaps)
            k = _median_adjacent(data, k, swaps)
        j = _median(data, i, j, k, swaps)
    if swaps[0] == 0:
        return j, _INCREASING
    if swaps[0] == _MAX_SWAPS:
        return j, _DECREASING
    return j, _UNKNOWN


def _order2(data: _Data, a: int, b: int, swaps: list[int]) -> tuple[int, int]:
    if data.less(b, a):
        swaps[0] += 1
        return b, a
    return a, b


def _median(data: _Data, a: int, b: int, c: int, swaps: list[int]) -> int:
    a, b = _order2(data, a, b, swaps)
    b, c = _order2(data, b, c, swaps)
    a, b = _order2(data, a, b, swaps)
    return b


def _median_adjacent(data: _Data, a: int, swaps: list[int]) -> int:
    return _median(data, a - 1, a, a + 1, swaps)


def _reverse_range(data: _Data, a: int, b: int) -> None:
    i, j = a, b - 1
    while i < j:
        data.swap(i, j)
        i += 1
        j -= 1
