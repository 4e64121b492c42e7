"""Mem4Nav's memory components against hand-computed values."""

import json
import math

import pytest
import torch

from amft.memory import (
    LongTermMemory,
    ReversibleTransformer,
    ShortTermMemory,
    SparseOctree,
    TopologyGraph,
    morton_decode,
    morton_encode,
    parent_key,
    retrieve,
)


@pytest.mark.parametrize(
    ("xyz", "code"),
    [((1, 0, 0), 1), ((0, 1, 0), 2), ((0, 0, 1), 4), ((1, 1, 1), 7), ((3, 5, 7), 431), ((255, 0, 0), 2_396_745),
     ((0, 255, 0), 4_793_490), ((2**21 - 1,) * 3, 2**63 - 1)],
)
def test_morton_reference_values_and_round_trip(xyz, code):
    assert morton_encode(*xyz) == code
    assert morton_decode(code) == xyz


def test_morton_parent_and_range():
    code = morton_encode(6, 3, 5)
    assert parent_key(code) == morton_encode(3, 1, 2)
    assert parent_key(code, 2) == morton_encode(1, 0, 1)
    with pytest.raises(ValueError):
        morton_encode(2**21, 0, 0)


def test_octree_leaves_fuse_revisits_and_refuse_outside_positions():
    tree = SparseOctree(side=64.0, depth=4, origin=(0.0, 0.0, 0.0))  # 4 m cells
    leaf = tree.insert((5.0, 1.0, 0.0), torch.tensor([1.0, 0.0]))
    assert leaf.key == morton_encode(1, 0, 0) and leaf.center == (6.0, 2.0, 2.0)
    again = tree.insert((7.9, 3.9, 3.9), torch.tensor([0.0, 1.0]))  # same cell
    assert again is leaf and leaf.count == 2 and leaf.embedding.tolist() == [0.5, 0.5]
    tree.insert((8.0, 0.0, 0.0), torch.tensor([2.0, 2.0]))
    assert len(tree) == 2 and tree.leaf_at((9.0, 1.0, 1.0)).key == morton_encode(2, 0, 0)
    with pytest.raises(ValueError, match="outside"):
        tree.insert((64.0, 0.0, 0.0), torch.zeros(2))
    restored = SparseOctree()
    restored.load_state_dict(json.loads(json.dumps(tree.state_dict())))
    assert restored.leaf_at((5.0, 1.0, 0.0)).embedding.tolist() == [0.5, 0.5] and restored.cell == 4.0


def test_short_term_eviction_follows_frequency_and_recency():
    stm = ShortTermMemory(capacity=3, lam=0.5)
    e = torch.eye(4)
    stm.insert("a", "bank", (0, 0, 0), e[0], step=0)
    stm.insert("b", "cafe", (1, 0, 0), e[1], step=1)
    stm.insert("c", "bakery", (2, 0, 0), e[2], step=2)
    stm.insert("a", "bank", (0, 0, 0), e[0], step=3)  # a: freq 2, last 3
    # At step 4: scores 0.5*freq - 0.5*(4 - last): a = 1 - 0.5 = 0.5, b = 0.5 - 1.5 = -1, c = 0.5 - 1 = -0.5.
    assert stm.insert("d", "hydrant", (3, 0, 0), e[3], step=4) == "b"
    # Still at step 4: a 0.5, c -0.5, d 0.5 - 0 = 0.5, so c goes.
    assert stm.insert("e", "sign", (4, 0, 0), e[0], step=4) == "c"
    # At step 5 a (1 - 1), d (0.5 - 0.5) and e (0.5 - 0.5) all score 0: the earliest inserted, a, goes.
    assert stm.insert("f", "tree", (5, 0, 0), e[1], step=5) == "a"


def test_short_term_retrieval_radius_cosine_and_reanchoring():
    stm = ShortTermMemory(capacity=10, radius=3.0, top_k=2)
    stm.insert("near-similar", "bank", (1.0, 0.0, 0.0), torch.tensor([1.0, 0.1]), step=0)
    stm.insert("near-other", "cafe", (0.0, 2.0, 0.0), torch.tensor([0.0, 1.0]), step=0)
    stm.insert("near-mid", "deli", (-1.0, -1.0, 0.0), torch.tensor([1.0, 1.0]), step=0)
    stm.insert("far", "bank", (10.0, 0.0, 0.0), torch.tensor([1.0, 0.0]), step=0)
    hits = stm.retrieve((0.0, 0.0, 0.0), torch.tensor([1.0, 0.0]), step=7)
    assert [entry.key for entry, _ in hits] == ["near-similar", "near-mid"]
    assert hits[0][1] == pytest.approx(1 / 1.01**0.5) and hits[0][0].last_access == 7
    # The anchor moves 10 m east: "far" (absolute 10 m east of the old anchor) is now at the anchor.
    stm.reanchor(old_anchor=(0.0, 0.0, 0.0), new_anchor=(10.0, 0.0, 0.0))
    assert stm.entries["far"].relative_position == (0.0, 0.0, 0.0)
    assert [entry.key for entry, _ in stm.retrieve((0.0, 0.0, 0.0), torch.tensor([1.0, 0.0]))] == ["far"]


def test_topology_graph_nodes_edges_and_shortest_paths():
    graph = TopologyGraph(delta=0.5, alpha=1.0, beta=0.5)
    a = graph.observe(torch.tensor([0.0, 0.0]), (0.0, 0.0, 0.0))
    assert graph.observe(torch.tensor([0.2, 0.0]), (2.0, 0.0, 0.0)) == a  # within delta: merged, no self-loop
    assert graph.nodes[a].position == (1.0, 0.0, 0.0) and graph.nodes[a].visits == 2 and graph.edges == {}
    b = graph.observe(torch.tensor([1.0, 0.0]), (4.0, 0.0, 0.0))
    assert graph.edges[a][b] == pytest.approx(3.0 + 0.05)  # |p(a) - p(b)| = 3, plus beta * 0.1
    graph.observe(torch.tensor([0.0, 0.0]), (1.0, 0.0, 0.0))  # back to a: a -> b and b -> a both exist now
    graph.current = a
    graph.observe(torch.tensor([1.0, 0.0]), (4.0, 0.0, 0.0), instruction_cost=1.0)
    assert graph.edges[a][b] == pytest.approx(((3.0 + 0.05) + (3.0 + 0.5)) / 2)  # averaged with the earlier weight
    c = graph.observe(torch.tensor([1.0, 1.0]), (4.0, 4.0, 0.0))
    assert graph.shortest_path(a, c) == ([a, b, c], pytest.approx(graph.edges[a][b] + graph.edges[b][c]))
    assert graph.shortest_path(c, a) is None
    restored = TopologyGraph()
    restored.load_state_dict(json.loads(json.dumps(graph.state_dict())))
    assert restored.shortest_path(a, c)[0] == [a, b, c] and restored.current == c


def test_reversible_transformer_is_invertible_on_token_sequences():
    torch.manual_seed(0)
    model = ReversibleTransformer(dim=8, depth=3, heads=2).double().eval()
    x = torch.randn(4, 5, 16, dtype=torch.float64)  # 5 tokens: F is true attention, not an affine map
    y = model(x)
    assert (y - x).abs().max() > 0.1
    assert torch.allclose(model.inverse(y), x, atol=1e-10, rtol=0)
    single = ReversibleTransformer(dim=8, depth=3, heads=2).eval()
    x32 = torch.randn(4, 5, 16)
    assert torch.allclose(single.inverse(single(x32)), x32, atol=1e-4, rtol=0)


def test_long_term_tokens_accumulate_history_and_decode_exactly():
    torch.manual_seed(0)
    ltm = LongTermMemory(ReversibleTransformer(dim=4, depth=2, heads=2).double())
    first, second = torch.randn(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    token1 = ltm.write("leaf", first)
    read_after_first = ltm.read_tokens["leaf"].clone()
    token2 = ltm.write("leaf", second)
    previous, observation = ltm.decode(token2)
    assert torch.allclose(observation, second, atol=1e-10) and torch.allclose(previous, read_after_first, atol=1e-10)
    assert torch.allclose(ltm.decode(token1)[0], torch.zeros(4, dtype=torch.float64), atol=1e-10)
    assert not torch.allclose(ltm.read_tokens["leaf"], torch.zeros(4, dtype=torch.float64))  # history, unlike the public code
    ltm.write("node", first)
    hits = ltm.search(token2, top_m=2)
    assert [key for key, _, _ in hits][0] == "leaf" and hits[0][1] == pytest.approx(0.0, abs=1e-12)
    assert torch.allclose(hits[0][2], second, atol=1e-10)


def test_long_term_state_dict_restores_reads_and_later_writes_after_a_safe_load(tmp_path):
    torch.manual_seed(0)
    ltm = LongTermMemory(ReversibleTransformer(dim=4, depth=2, heads=2))
    observations = torch.randn(6, 4)
    for i, observation in enumerate(observations[:5]):
        ltm.write(("leaf", i % 3), observation)  # keys written twice carry history
    torch.save(ltm.state_dict(), tmp_path / "ltm.pt")
    restored = LongTermMemory(ReversibleTransformer(dim=4, depth=2, heads=2))  # other random weights
    restored.load_state_dict(torch.load(tmp_path / "ltm.pt", weights_only=True))
    query = ltm.stored.get(("leaf", 1))
    assert [(k, d) for k, d, _ in restored.search(query, 3)] == [(k, d) for k, d, _ in ltm.search(query, 3)]
    assert torch.equal(restored.write(("leaf", 0), observations[5]), ltm.write(("leaf", 0), observations[5]))


def test_hnsw_reads_find_the_exact_nearest_tokens_and_see_replaced_ones():
    pytest.importorskip("hnswlib")
    torch.manual_seed(0)
    transformer = ReversibleTransformer(dim=8, depth=1, heads=2)
    exact, hnsw = LongTermMemory(transformer), LongTermMemory(transformer, index="hnsw")
    observations = torch.randn(1000, 8)
    for i, observation in enumerate(observations):  # 500 keys, each written twice: the graph must replace rows
        for memory in (exact, hnsw):
            memory.write(i % 500, observation)
    queries = [exact.stored.get(k) + 0.05 * torch.randn(16) for k in range(0, 500, 5)]
    agree = sum(hnsw.search(q, 1)[0][0] == exact.search(q, 1)[0][0] for q in queries)
    assert agree >= 0.95 * len(queries)
    replaced = hnsw.stored.get(7)
    key, distance, observation = hnsw.search(replaced, 1)[0]
    assert key == 7 and distance == pytest.approx(0.0, abs=1e-5)
    assert torch.allclose(observation, observations[507], atol=1e-4)


def test_hnsw_without_hnswlib_names_the_extra_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "hnswlib", None)  # what `import hnswlib` sees when it is not installed
    with pytest.raises(ImportError, match=r"amft\[hnsw\]"):
        LongTermMemory(ReversibleTransformer(dim=2, depth=1, heads=1), index="hnsw")


def test_retrieval_prefers_similar_short_term_items_then_falls_back():
    stm = ShortTermMemory(radius=3.0)
    ltm = LongTermMemory(ReversibleTransformer(dim=2, depth=1, heads=1))
    assert retrieve(stm, ltm, (0, 0, 0), torch.tensor([1.0, 0.0]), torch.zeros(4)).source == "none"
    ltm.write("leaf", torch.tensor([0.0, 1.0]))
    stm.insert("x", "bank", (0.5, 0, 0), torch.tensor([0.0, 1.0]), step=0)
    fallback = retrieve(stm, ltm, (0, 0, 0), torch.tensor([1.0, 0.0]), torch.zeros(4), threshold=0.7)
    assert fallback.source == "long-term" and fallback.items[0][0] == "leaf"
    assert retrieve(stm, ltm, (0, 0, 0), torch.tensor([0.1, 1.0]), torch.zeros(4)).source == "short-term"


def test_row_store_grows_replaces_and_finds_nearest():
    from amft.memory.rows import RowStore

    store = RowStore(width=2, capacity=2)
    for i in range(5):  # grows past its capacity twice
        store.put(f"k{i}", torch.tensor([float(i), 0.0]))
    store.put("k1", torch.tensor([10.0, 0.0]))  # replaces, keeps its slot
    assert len(store) == 5 and store.keys == ["k0", "k1", "k2", "k3", "k4"]
    assert store.nearest(torch.tensor([9.0, 0.0]), 2) == [("k1", 1.0), ("k4", 5.0)]
    assert store.get("k3").tolist() == [3.0, 0.0] and "k9" not in store


def test_a_merge_radius_keeps_lookalike_places_apart():
    same = torch.tensor([1.0, 0.0])
    spec_graph, gated = TopologyGraph(delta=0.5), TopologyGraph(delta=0.5, merge_radius=30.0)
    for graph in (spec_graph, gated):
        for x in (0.0, 20.0, 500.0):
            graph.observe(same, (x, 0.0, 0.0))
    assert len(spec_graph.nodes) == 1  # the paper's rule: one appearance, one node, wherever it was seen
    assert len(gated.nodes) == 2 and gated.nodes[0].visits == 2  # 0 m and 20 m merge; 500 m is another place
    assert gated.nearest(same, (480.0, 0.0, 0.0))[0] == 1 and gated.nearest(same, (250.0, 0.0, 0.0)) == (None, math.inf)
    restored = TopologyGraph()
    restored.load_state_dict(json.loads(json.dumps(gated.state_dict())))
    assert restored.merge_radius == 30.0 and restored.nearest(same, (480.0, 0.0, 0.0))[0] == 1
