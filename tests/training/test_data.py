"""The trainer's data helpers on hand-made tensors."""

import torch

from amft.training.data import RowStream, replace_completions


def test_replace_completions_widens_and_overwrites_only_the_given_rows():
    rollouts = {
        "completion_ids": torch.tensor([[5, 6, 0], [7, 0, 0]]),
        "completion_mask": torch.tensor([[1, 1, 0], [1, 0, 0]]),
        "old_per_token_logps": torch.tensor([[-0.1, -0.2, 0.0], [-0.3, 0.0, 0.0]]),
        "advantages": torch.tensor([1.0, -1.0]),
    }
    out = replace_completions(rollouts, rows=[1], token_ids=[[9, 8, 7, 2]], pad_id=0)
    assert out["completion_ids"].tolist() == [[5, 6, 0, 0], [9, 8, 7, 2]]
    assert out["completion_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert torch.equal(out["old_per_token_logps"], torch.tensor([[-0.1, -0.2, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))
    assert out["advantages"] is rollouts["advantages"]
    assert rollouts["completion_ids"].tolist() == [[5, 6, 0], [7, 0, 0]]  # the input is left as it was

    shorter = replace_completions(rollouts, rows=[0], token_ids=[[4]], pad_id=0)
    assert shorter["completion_ids"].tolist() == [[4, 0, 0], [7, 0, 0]]
    assert shorter["completion_mask"].tolist() == [[1, 0, 0], [1, 0, 0]]


def test_row_stream_shards_split_the_global_batch_of_one_stream():
    rows = [{"i": i} for i in range(10)]
    single = RowStream(rows, batch_size=4, seed=3)
    shards = [RowStream(rows, batch_size=2, seed=3, process_index=p, num_processes=2) for p in range(2)]
    for _ in range(5):  # crosses epoch boundaries
        together = [row for pair in zip(*(s.next_batch() for s in shards)) for row in pair]
        assert together == single.next_batch()
