"""Mem4NavMemory: the composite memory and its ablations on hand-made observations."""

import pytest
import torch

from amft.memory.system import ABLATIONS, Mem4NavConfig, Mem4NavMemory


def unit(seed: int) -> torch.Tensor:
    vector = torch.randn(64, generator=torch.Generator().manual_seed(seed))
    return vector / vector.norm()


HYDRANT, BANK, STREET = unit(1), unit(2), unit(3)


def walk(memory: Mem4NavMemory, stops) -> None:
    for position, embedding, names in stops:
        memory.observe(position, embedding, names)


def test_places_are_told_apart_by_position_with_the_octree_and_by_appearance_without():
    # Two hydrants 40 m apart that look the same, with a street between them.
    stops = [((0.0, 0.0, 0.0), HYDRANT, ["fire hydrant"]), ((20.0, 0.0, 0.0), STREET, []),
             ((40.0, 0.0, 0.0), HYDRANT, ["fire hydrant"])]
    counts = {}
    for name in ("full", "no-octree", "none"):
        memory = Mem4NavMemory(Mem4NavConfig(**ABLATIONS[name]))
        walk(memory, stops)
        counts[name] = memory.places_with("fire hydrant")
    assert counts == {"full": 2, "no-octree": 1, "none": 0}


def test_recall_uses_the_short_term_memory_first_and_the_long_term_memory_without_it():
    stops = [((0.0, 0.0, 0.0), BANK, ["red bank"]), ((20.0, 0.0, 0.0), STREET, []), ((20.0, 20.0, 0.0), HYDRANT, [])]
    full = Mem4NavMemory()
    walk(full, stops)
    back = full.recall((0.0, 0.0, 0.0), BANK)
    assert (back.source, back.landmarks, back.seen_before) == ("short-term", ["red bank"], True)

    long_only = Mem4NavMemory(short_term=False)
    walk(long_only, stops)
    back = long_only.recall((0.0, 0.0, 0.0), BANK)
    assert (back.source, back.landmarks, back.seen_before) == ("long-term", ["red bank"], True)
    # Same place, different look: the decoded observation is not similar enough to call it the same place.
    assert not long_only.recall((0.0, 0.0, 0.0), HYDRANT).seen_before

    # Somewhere new that looks like nothing stored: the short-term memory has nothing near, so the
    # long-term memory answers, and nothing stored there is this place.
    elsewhere = full.recall((300.0, 300.0, 0.0), unit(9))
    assert elsewhere.source == "long-term" and not elsewhere.seen_before
    assert Mem4NavMemory(**ABLATIONS["none"]).recall((0.0, 0.0, 0.0), BANK).source == "none"


def test_short_term_positions_stay_put_when_the_graph_anchor_moves():
    memory = Mem4NavMemory(long_term=False)
    walk(memory, [((0.0, 0.0, 0.0), BANK, ["red bank"]), ((20.0, 0.0, 0.0), STREET, []), ((40.0, 0.0, 0.0), HYDRANT, [])])
    # Anchored at the last node (40, 0): the bank's entry is 40 m behind, wherever the anchor went.
    bank = next(e for e in memory.short_term.entries.values() if e.object_id == "red bank")
    assert bank.relative_position == pytest.approx((-40.0, 0.0, 0.0))
    assert memory.recall((0.0, 0.0, 0.0), BANK).seen_before
    assert not memory.recall((20.0, 0.0, 0.0), BANK).seen_before  # near nothing similar: 20 m from the bank


def test_reset_forgets_the_episode():
    memory = Mem4NavMemory()
    walk(memory, [((0.0, 0.0, 0.0), BANK, ["red bank"])])
    memory.reset()
    assert memory.places_with("red bank") == 0 and len(memory.short_term) == 0 and len(memory.long_term) == 0
