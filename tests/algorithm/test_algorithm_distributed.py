"""Sharded inner products: two gloo processes, each holding half of every gradient."""

import math
import pathlib
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist

from amft.algorithm import gradient_cosine, gradient_dot, gradient_norm_sq, meta_alignment_from_gradients

WORLD = 2
# Full gradients of two parameters; rank r holds rows r::2 of each (a disjoint shard).
FULL_A = [torch.arange(6.0).reshape(3, 2) - 2.0, torch.tensor([1.0, -3.0, 2.0, 0.5])]
FULL_B = [torch.linspace(-1.0, 2.0, 6).reshape(3, 2), torch.tensor([2.0, 1.0, -1.0, 4.0])]
FULL_C = [torch.ones(3, 2), torch.tensor([0.0, 1.0, 0.0, 1.0])]


def _full_dot(a, b):
    return sum(float((x.double() * y.double()).sum()) for x, y in zip(a, b) if x is not None and y is not None)


def _shard(grad, rank):
    return [g[rank::WORLD].clone() for g in grad]


def _worker(rank, init_file, skip_file):
    torch.set_num_threads(1)
    try:
        dist.init_process_group(
            "gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD, timeout=timedelta(seconds=30)
        )
    except Exception as error:  # noqa: BLE001 - any init failure means "no gloo here"
        pathlib.Path(f"{skip_file}.{rank}").write_text(f"{type(error).__name__}: {error}")
        return
    try:
        a, b, c = _shard(FULL_A, rank), _shard(FULL_B, rank), _shard(FULL_C, rank)
        a[1] = None if rank == 1 else a[1]  # a None entry on one rank only
        full_a = [FULL_A[0], FULL_A[1] * torch.tensor([1.0, 0.0, 1.0, 0.0])]  # rank 1's rows of a[1] are zero
        dot = gradient_dot(a, b, sharded=True)
        assert dot.item() == pytest.approx(_full_dot(full_a, FULL_B), rel=1e-6)
        assert gradient_dot(a, b).item() == pytest.approx(_full_dot(a, b), rel=1e-6)  # local only
        assert gradient_norm_sq(b, sharded=True).item() == pytest.approx(_full_dot(FULL_B, FULL_B), rel=1e-6)
        expected_cos = _full_dot(FULL_B, FULL_C) / math.sqrt(_full_dot(FULL_B, FULL_B) * _full_dot(FULL_C, FULL_C))
        assert gradient_cosine(b, c, sharded=True).item() == pytest.approx(expected_cos, rel=1e-6)
        al = meta_alignment_from_gradients(c, b, a, sharded=True)
        assert al.val_dot_sft == pytest.approx(_full_dot(FULL_C, FULL_B), rel=1e-6)
        assert al.val_dot_rl == pytest.approx(_full_dot(FULL_C, full_a), rel=1e-6)
        assert al.rl_norm == pytest.approx(math.sqrt(_full_dot(full_a, full_a)), rel=1e-6)
    finally:
        dist.destroy_process_group()


def test_sharded_gradient_dot_equals_full_dot(spawn_on_gloo):
    spawn_on_gloo(_worker, WORLD)
