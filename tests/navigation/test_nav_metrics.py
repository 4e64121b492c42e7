"""Both metric conventions against hand-computed values on small paths."""

import math

import pytest

from amft.navigation.metrics import dtw, episodes_convention_a, episodes_convention_b, graph_hops

LINE = {"a": ["b"], "b": ["a", "c"], "c": ["b", "d"], "d": ["c"]}


def test_dtw_and_hops():
    assert graph_hops(LINE, "a") == {"a": 0, "b": 1, "c": 2, "d": 3}
    assert dtw([0, 1, 2], [0, 2], lambda x, y: abs(x - y)) == 1.0
    with pytest.raises(ValueError):
        dtw([], [1], lambda x, y: 0.0)


def test_convention_a_on_graph_hops():
    first, second = episodes_convention_a(LINE, [(["a", "b", "c"], ["a", "b", "c", "d"]), (["a"], ["a", "b", "c", "d"])])
    # Episode 1 ends next to the goal (TC), 1 hop away, DTW 1; episode 2 ends 3 hops away, DTW 0+1+2+3 = 6.
    assert (first["TC"], first["SPD"], second["TC"], second["SPD"]) == (100.0, 1, 0.0, 3)
    assert first["nDTW"] == pytest.approx(100 * math.exp(-1 / (2 * 2)))
    assert second["nDTW"] == pytest.approx(100 * math.exp(-6 / (2 * 2)))


def test_convention_b_on_metres():
    reference = [(0.0, 0.0), (5.0, 0.0), (10.0, 0.0), (12.0, 0.0)]
    first, second = episodes_convention_b([([(0.0, 0.0), (5.0, 0.0), (10.0, 0.0)], reference),
                                           ([(0.0, 0.0), (0.0, 4.0)], reference)])
    # Episode 1 stops 2 m from the goal (TC), DTW 2, L 12; episode 2 stops sqrt(160) m away.
    assert (first["TC"], second["TC"]) == (100.0, 0.0)
    assert (first["SPD"], second["SPD"]) == pytest.approx((2.0, math.sqrt(160)))
    # Episode 2's DTW: (0, 0) matches the first three reference points (0 + 5 + 10), (0, 4) the last (sqrt(160)).
    second_dtw = 15.0 + math.sqrt(160)
    assert first["nDTW"] == pytest.approx(100 * math.exp(-2 / 12))
    assert second["nDTW"] == pytest.approx(100 * math.exp(-second_dtw / 12))
