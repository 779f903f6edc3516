"""Tests for sandbox.gosort: Go's sort.Sort replayed (which tie lands first is checked against Go in
tests/integration/test_semver_peer.py; here: it sorts, and short slices keep the order of equal elements)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sandbox.gosort import INSERTION_SORT_MAX, sort_like_go
from tests.hypothesis_profiles import property_settings


@property_settings(300)
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=5), st.integers()), max_size=300))
def test_it_sorts_a_permutation_of_its_input(items: list[tuple[int, int]]) -> None:
    result = list(items)
    sort_like_go(result, lambda a, b: a[0] < b[0])  # sorted by the first field only: many ties
    assert sorted(result) == sorted(items)
    assert [key for key, _ in result] == sorted(key for key, _ in items)


@property_settings(100)
@given(st.lists(st.integers(min_value=0, max_value=2), max_size=INSERTION_SORT_MAX))
def test_up_to_twelve_elements_keep_the_order_of_ties(keys: list[int]) -> None:
    items = list(enumerate(keys))
    sort_like_go(items, lambda a, b: a[1] < b[1])
    assert items == sorted(enumerate(keys), key=lambda item: item[1])  # Python's sort is stable


def test_longer_slices_sort_the_same_way_every_time() -> None:
    items = [(index, 0 if index % 3 else 1) for index in range(40)]
    first, second = list(items), list(items)
    sort_like_go(first, lambda a, b: a[1] > b[1])
    sort_like_go(second, lambda a, b: a[1] > b[1])
    assert first == second
    assert [key for _, key in first] == sorted((key for _, key in items), reverse=True)
