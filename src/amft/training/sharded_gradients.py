"""Separate gradients of parameters that FSDP2 shards, for the meta step.

Under FSDP2 (`torch.distributed.fsdp.fully_shard`) each trainable parameter is a DTensor holding this
process's shard; the forward runs on unsharded copies that FSDP2 gathers and frees, so
`torch.autograd.grad` with respect to the parameters finds them unused. A gradient of the sharded
parameters is therefore taken as FSDP2 takes every gradient: a backward pass, after which FSDP2 has
reduce-scattered it (averaged over processes) into the parameters' `.grad`. `separate_gradients`
takes several such gradients in turn and keeps this process's shard of each; their inner products
are then sums of shard-local products and one all-reduce (`amft.algorithm.alignment`, `sharded=True`).
See docs/design.md, 'Gradient accumulation and several processes'.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.distributed as dist
from accelerate.utils import DeepSpeedPlugin, DistributedType, FullyShardedDataParallelPlugin
from torch.distributed.fsdp import FSDPModule
from torch.distributed.tensor import DTensor, Shard

#: One backward pass: the loss, and whether its graph is kept for a later backward pass.
GradientOf = Callable[..., list[torch.Tensor | None]]


def check_meta_step_backend(
    distributed_type: DistributedType,
    *,
    fsdp_plugin: FullyShardedDataParallelPlugin | None = None,
    deepspeed_plugin: DeepSpeedPlugin | None = None,
    tensor_parallel_size: int = 1,
    context_parallel_size: int = 1,
) -> None:
    """Raise ValueError for a backend whose sharding the meta step does not handle: FSDP1, DeepSpeed
    ZeRO-3, tensor or context parallelism. One process, DDP, ZeRO-1/2 and FSDP2 pass; FSDP2's layout
    is checked on the parameters themselves (`fsdp2_shards`)."""
    alternatives = "use FSDP2 (configs/accelerate/fsdp.yaml), DDP or ZeRO-2, or set use_meta_term=False"
    if distributed_type == DistributedType.FSDP and fsdp_plugin is not None and fsdp_plugin.fsdp_version != 2:
        raise ValueError(
            "the meta term supports FSDP2, not FSDP1's flat parameters: set fsdp_version: 2 (as "
            "configs/accelerate/fsdp.yaml does), or set use_meta_term=False"
        )
    zero_stage = deepspeed_plugin.zero_stage if deepspeed_plugin is not None else None
    if distributed_type == DistributedType.DEEPSPEED and zero_stage == 3:
        raise ValueError(
            f"the meta term does not support DeepSpeed ZeRO-3, whose partitioned parameters it takes no separate "
            f"gradients of: {alternatives}"
        )
    for kind, size in (("tensor", tensor_parallel_size), ("context", context_parallel_size)):
        if size > 1:
            raise ValueError(f"the meta term does not support {kind} parallelism (size {size}): {alternatives}")


def fsdp2_shards(model: torch.nn.Module) -> tuple[list[torch.Tensor], dist.ProcessGroup] | None:
    """FSDP2's shards of the trainable parameters of `model`, and the process group they are sharded over;
    None when FSDP2 shards no module and the parameters are plain tensors (one process, DDP, DeepSpeed
    ZeRO-1/2: every process holds the whole parameters).

    Raises ValueError for every other layout: DTensors outside FSDP2 (tensor parallelism), parameters
    partly sharded, or FSDP2 shards other than Shard(0) over a one-dimensional mesh of all processes
    (HSDP, FSDP combined with tensor, context or pipeline parallelism).
    """
    fsdp_modules = [module for module in model.modules() if isinstance(module, FSDPModule)]
    # A module that keeps its parameters unsharded after the forward (reshard_after_forward=False, the
    # root's default) exposes the unsharded tensors until it reshards, and FSDP2 puts gradients on the shards.
    for module in fsdp_modules:
        module.reshard()
    params = [param for param in model.parameters() if param.requires_grad]
    sharded = [isinstance(param, DTensor) for param in params]
    if not fsdp_modules:
        if any(sharded):
            raise ValueError(
                "the trainable parameters are DTensors but FSDP2 shards no module: the meta term supports FSDP2 "
                "sharding, not tensor parallelism or other DTensor layouts (use FSDP2 or DDP, or set "
                "use_meta_term=False)"
            )
        return None
    if not all(sharded):
        raise ValueError(
            f"the meta term needs every trainable parameter sharded by FSDP2: {sum(sharded)} of {len(params)} are "
            "DTensors and the others plain tensors (e.g. adapters added after the model was sharded)"
        )
    mesh = params[0].device_mesh
    world_size = dist.get_world_size()
    for param in params:
        plain_sharding = mesh.ndim == 1 and mesh.size() == world_size and tuple(param.placements) == (Shard(0),)
        if param.device_mesh != mesh or not plain_sharding:
            raise ValueError(
                f"a trainable parameter is placed {tuple(param.placements)} on a mesh of shape "
                f"{tuple(param.device_mesh.shape)} {param.device_mesh.mesh_dim_names or ''}: the meta term supports "
                f"FSDP2's plain sharding, Shard(0) over one mesh dimension of all {world_size} processes "
                "(not HSDP, nor FSDP with tensor, context or pipeline parallelism)"
            )
    return params, mesh.get_group()


def local_shard(tensor: torch.Tensor | None) -> torch.Tensor | None:
    """This process's part of a tensor: a DTensor's local shard; a plain tensor, or None, as it is."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


@contextmanager
def separate_gradients(
    model: torch.nn.Module, params: Sequence[torch.Tensor], *, gradient_sync_after: bool
) -> Iterator[GradientOf]:
    """Yield `gradient_of(loss, retain_graph=False)`, which runs one backward pass of `loss` and returns
    this process's shard of its gradient (averaged over processes by FSDP2), one entry per parameter
    of `params` (None where the parameter got no gradient).

    Each backward pass starts from empty `.grad`; on exit `.grad` holds what it held on entry, so a
    later backward pass accumulates exactly as if these had not run. The passes reduce-scatter even
    inside a micro-step that defers FSDP2's gradient reduction (gradient accumulation); on exit that
    setting is `gradient_sync_after`, what the caller's micro-step uses. The gradients FSDP2 defers
    in such micro-steps are added to the next reduction, so the passes must run before any is
    deferred: on the first micro-batch of an optimizer step.
    """
    saved = [param.grad for param in params]
    fsdp_modules = [module for module in model.modules() if isinstance(module, FSDPModule)]
    for module in fsdp_modules:
        module.set_requires_gradient_sync(True, recurse=False)

    def gradient_of(loss: torch.Tensor, retain_graph: bool = False) -> list[torch.Tensor | None]:
        for param in params:
            param.grad = None
        if loss.requires_grad:
            loss.backward(retain_graph=retain_graph)
        return [local_shard(param.grad) for param in params]

    try:
        yield gradient_of
    finally:
        for param, grad in zip(params, saved):
            param.grad = grad
        for module in fsdp_modules:
            module.set_requires_gradient_sync(gradient_sync_after, recurse=False)
