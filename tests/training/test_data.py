"""The trainer's data helpers on hand-made tensors."""

import torch

from trl.trainer.utils import RepeatSampler

from amft.training.data import EpochRepeatSampler, RowStream, replace_completions


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


def test_the_prompt_sampler_finds_any_epochs_order_again_and_keeps_trls_order():
    settings = dict(data_source=list(range(12)), mini_repeat_count=2, batch_size=3, repeat_count=1, seed=5)
    trl_epochs = [list(sampler) for sampler in [RepeatSampler(**settings)] for _ in range(3)]  # one sampler, 3 passes
    assert trl_epochs[0] != trl_epochs[2]
    uninterrupted = EpochRepeatSampler(**settings)
    epochs = []
    for epoch in range(3):
        uninterrupted.set_epoch(epoch)
        epochs.append(list(uninterrupted))
    assert epochs == trl_epochs
    resumed = EpochRepeatSampler(**settings)  # a fresh process, resumed in epoch 2
    resumed.set_epoch(2)
    assert list(resumed) == trl_epochs[2]
