"""Separate gradients of an FSDP2-sharded model: two gloo processes shard the tiny model with `fully_shard`
(each decoder layer, then the whole model), take the gradients of four losses with `separate_gradients`
and compare their shard-local inner products with those of the same gradients taken by `autograd.grad`
on an unsharded copy and averaged over the processes. The meta step's passes run inside a micro-step
that defers FSDP2's gradient reduction (gradient accumulation), and the optimizer step's gradient must
come out as if they had not run."""

import copy
import pathlib
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
from accelerate.utils import DeepSpeedPlugin, DistributedType, FullyShardedDataParallelPlugin
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor, Shard, distribute_tensor

from amft.algorithm import gradient_dots
from amft.models import build_tiny_model
from amft.training.sharded_gradients import check_meta_step_backend, fsdp2_shards, separate_gradients

WORLD = 2


def entropy(logits):
    return -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1).mean()


def nll(logits, ids):
    return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())


def losses(model, batches):
    """Four losses as the meta step has them: two of one forward (L_RL and H), one of a second
    forward (L_SFT), one of a third (the validation loss); and the next micro-batch's loss."""
    rollouts, *others = batches
    logits = model(input_ids=rollouts).logits
    return (nll(logits, rollouts), entropy(logits), *(nll(model(input_ids=ids).logits, ids) for ids in others))


def alignment_pairs(rl, h, sft, val):
    """The inner products the meta step takes (see `meta_alignment_from_gradients`)."""
    return [(val, sft), (val, rl), (val, val), (sft, sft), (rl, rl), (h, sft), (h, rl)]


def averaged(grads):
    for grad in grads:
        dist.all_reduce(grad, op=dist.ReduceOp.AVG)
    return list(grads)


def check_gradients(rank):
    model, _ = build_tiny_model("tiny-test", seed=0)
    reference = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(100 + rank)  # each process its own batches
    batches = [torch.randint(0, model.config.vocab_size, (3, 7), generator=generator) for _ in range(4)]

    full_params = [p for p in reference.parameters() if p.requires_grad]
    rl, h, sft, val, nxt = losses(reference, batches)
    separate = [averaged(torch.autograd.grad(loss, full_params, retain_graph=True)) for loss in (rl, h, sft, val)]
    expected = gradient_dots(alignment_pairs(*separate))
    mixed = averaged(torch.autograd.grad(0.3 * rl + 0.7 * sft, full_params))
    step_gradient = [a + b for a, b in zip(mixed, averaged(torch.autograd.grad(nxt, full_params)))]

    assert fsdp2_shards(model) is None  # plain tensors: the unsharded path
    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model)  # the root keeps its parameters (embeddings, final norm) unsharded after the forward

    model.set_requires_gradient_sync(False)  # the first micro-batch of an accumulated step
    rl, h, sft, val, nxt = losses(model, batches)
    assert not all(isinstance(p, DTensor) for p in model.parameters())
    params, group = fsdp2_shards(model)
    assert all(isinstance(p, DTensor) for p in params) and dist.get_world_size(group) == WORLD
    with separate_gradients(model, params, gradient_sync_after=False) as gradient_of:
        shards = [gradient_of(loss, retain_graph=True) for loss in (rl, h, sft)] + [gradient_of(val)]
    assert all(p.grad is None for p in params)  # as before the passes
    measured = gradient_dots(alignment_pairs(*shards), sharded=True, group=group)
    torch.testing.assert_close(measured, expected, rtol=1e-5, atol=1e-7)

    (0.3 * rl + 0.7 * sft).backward()  # the Trainer's backward
    assert all(p.grad is None for p in params)  # still deferred, as the micro-step asked
    model.set_requires_gradient_sync(True)  # the step's last micro-batch reduces
    nxt.backward()
    for param, grad in zip(params, step_gradient):
        torch.testing.assert_close(param.grad.full_tensor(), grad, rtol=1e-5, atol=1e-7)


def check_refusals():
    mesh = init_device_mesh("cpu", (WORLD,))
    tensor_parallel = torch.nn.Linear(4, 4)
    for name in ("weight", "bias"):  # column-wise tensor parallelism
        sharded = distribute_tensor(getattr(tensor_parallel, name).detach(), mesh, [Shard(0)])
        setattr(tensor_parallel, name, torch.nn.Parameter(sharded))
    with pytest.raises(ValueError, match="not tensor parallelism"):
        fsdp2_shards(tensor_parallel)

    hybrid = torch.nn.Linear(4, 4)
    fully_shard(hybrid, mesh=init_device_mesh("cpu", (WORLD, 1), mesh_dim_names=("replicate", "shard")))  # HSDP: replicated over the first dimension
    with pytest.raises(ValueError, match="not HSDP"):
        fsdp2_shards(hybrid)

    partly = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    fully_shard(partly[0])
    with pytest.raises(ValueError, match="2 of 4 are DTensors"):
        fsdp2_shards(partly)


def _worker(rank, init_file, skip_file):
    torch.set_num_threads(1)
    try:
        dist.init_process_group(
            "gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60)
        )
    except Exception as error:  # noqa: BLE001 - any init failure means "no gloo here"
        pathlib.Path(f"{skip_file}.{rank}").write_text(f"{type(error).__name__}: {error}")
        return
    try:
        check_gradients(rank)
        check_refusals()
    finally:
        dist.destroy_process_group()


def test_separate_gradients_of_fsdp2_shards_match_the_unsharded_ones(spawn_on_gloo):
    spawn_on_gloo(_worker, WORLD)


def test_the_meta_step_refuses_the_backends_it_does_not_handle():
    with pytest.raises(ValueError, match="FSDP2, not FSDP1"):
        check_meta_step_backend(DistributedType.FSDP, fsdp_plugin=FullyShardedDataParallelPlugin(fsdp_version=1))
    with pytest.raises(ValueError, match="ZeRO-3"):
        check_meta_step_backend(DistributedType.DEEPSPEED, deepspeed_plugin=DeepSpeedPlugin(zero_stage=3))
    with pytest.raises(ValueError, match="tensor parallelism"):
        check_meta_step_backend(DistributedType.MULTI_GPU, tensor_parallel_size=2)
    with pytest.raises(ValueError, match="context parallelism"):
        check_meta_step_backend(DistributedType.FSDP, fsdp_plugin=FullyShardedDataParallelPlugin(fsdp_version=2),
                                context_parallel_size=2)
    # FSDP2 (its layout is checked on the parameters), ZeRO-2, DDP and one process pass.
    check_meta_step_backend(DistributedType.FSDP, fsdp_plugin=FullyShardedDataParallelPlugin(fsdp_version=2))
    check_meta_step_backend(DistributedType.DEEPSPEED, deepspeed_plugin=DeepSpeedPlugin(zero_stage=2))
    check_meta_step_backend(DistributedType.MULTI_GPU)
    check_meta_step_backend(DistributedType.NO)
