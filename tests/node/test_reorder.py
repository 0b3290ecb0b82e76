"""The one reorder stage: order, holes given up on after their wait, proof of absence, bounds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ec_node.node.reorder import Hole, Reorder


def _never(a: int, b: int) -> bool:
    return False


def test_in_order_items_pass_at_once() -> None:
    r: Reorder[str] = Reorder(8)
    for i in range(3):
        assert r.add(10 + i, f"c{i}", now=0.0)
    assert r.release(0.0, 4.0, _never) == ([(10, "c0"), (11, "c1"), (12, "c2")], [])
    assert r.next == 13 and r.hole() is None


def test_a_hole_holds_later_items_until_its_wait_is_over() -> None:
    r: Reorder[str] = Reorder(8)
    r.add(1, "a", 0.0)
    r.release(0.0, 4.0, _never)
    r.add(3, "c", 1.0)
    assert r.release(1.0, 4.0, _never) == ([], []) and r.hole() == (2, 3) and r.deadline(4.0) == 5.0
    assert r.release(4.9, 4.0, _never) == ([], [])
    assert r.release(5.0, 4.0, _never) == ([(3, "c")], [Hole(2, 2)])
    assert not r.add(2, "late", 6.0)  # passed: never out of order


def test_indices_known_absent_are_no_hole() -> None:
    r: Reorder[str] = Reorder(8)
    r.add(1, "a", 0.0)
    r.release(0.0, 4.0, _never)
    r.add(9, "b", 0.0)
    assert r.release(0.0, 4.0, lambda a, b: (a, b) == (2, 9)) == ([(9, "b")], [])


def test_bounded_a_full_stage_moves_on() -> None:
    r: Reorder[int] = Reorder(2)
    r.add(0, 0, 0.0)
    r.release(0.0, 4.0, _never)
    r.add(5, 5, 0.0)
    r.add(6, 6, 0.0)
    items, holes = r.release(0.0, 4.0, _never)
    assert [i for i, _ in items] == [5, 6] and holes == [Hole(1, 4)]


def test_final_gives_up_on_every_hole() -> None:
    r: Reorder[int] = Reorder(8)
    for i in (0, 2, 5):
        r.add(i, i, 0.0)
    items, holes = r.release(0.0, 4.0, _never, final=True)
    assert [i for i, _ in items] == [0, 2, 5] and holes == [Hole(1, 1), Hole(3, 4)]


def test_max_held_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Reorder(0)


@given(st.permutations(list(range(12))))
def test_any_arrival_order_comes_out_sorted_without_loss_when_waited_for(order: list[int]) -> None:
    r: Reorder[int] = Reorder(64)
    out: list[int] = []
    r.add(0, 0, 0.0)  # the start is known
    out += [i for i, _ in r.release(0.0, 1e9, _never)[0]]
    for i in order:
        if i:
            r.add(i, i, 0.0)
            out += [i for i, _ in r.release(0.0, 1e9, _never)[0]]
    assert out == list(range(12))
