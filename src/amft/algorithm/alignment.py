"""Inner products between parameter gradients, for the meta-gradient (see docs/design.md, 'The meta-gradient').

A gradient is a sequence with one tensor per parameter, in the same parameter
order for every gradient; ``None`` stands for a zero gradient (e.g. what
``torch.autograd.grad(..., allow_unused=True)`` returns for an unused parameter).

With sharded parameters (FSDP / ZeRO) each rank holds a disjoint shard of every
gradient, so a dot product is the sum of the ranks' local partial sums: pass
``sharded=True`` (and the process ``group``) and the partial sums are
all-reduced. With replicated gradients (one process, or DDP after its
all-reduce) every rank already holds the full gradient: leave ``sharded=False``,
or the result would be multiplied by the world size. Sharded callers pass the
local shards (e.g. ``DTensor.to_local()``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "Gradients",
    "gradient_cosine",
    "gradient_dot",
    "gradient_dots",
    "gradient_norm_sq",
]

Gradients = Sequence[Tensor | None]


def _result_device(grads: Sequence[Gradients], group) -> torch.device:
    for grad in grads:
        for tensor in grad:
            if tensor is not None:
                return tensor.device
    # A rank whose shards are all empty still has to join the all-reduce, on a
    # device its backend accepts.
    if dist.is_available() and dist.is_initialized() and dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _local_dot(a: Gradients, b: Gradients, device: torch.device) -> Tensor:
    if len(a) != len(b):
        raise ValueError(f"gradients have different lengths: {len(a)} and {len(b)}")
    total = torch.zeros((), dtype=torch.float32, device=device)
    for x, y in zip(a, b):
        if x is None or y is None:
            continue
        if x.shape != y.shape:
            raise ValueError(f"gradient shapes differ: {tuple(x.shape)} and {tuple(y.shape)}")
        total = total + (x.float() * y.float()).sum()
    return total


def gradient_dots(
    pairs: Sequence[tuple[Gradients, Gradients]], *, sharded: bool = False, group=None
) -> Tensor:
    """Several dot products ``<a, b>`` at once, as a float32 tensor ``(len(pairs),)``.

    In sharded mode all partial sums travel in a single all-reduce.
    """
    device = _result_device([g for pair in pairs for g in pair], group)
    dots = torch.stack([_local_dot(a, b, device) for a, b in pairs]) if pairs else torch.zeros(0, device=device)
    if sharded and dist.is_available() and dist.is_initialized():
        dist.all_reduce(dots, op=dist.ReduceOp.SUM, group=group)
    return dots


def gradient_dot(a: Gradients, b: Gradients, *, sharded: bool = False, group=None) -> Tensor:
    """``sum_i <a_i, b_i>`` over parameters, a float32 0-dim tensor."""
    return gradient_dots([(a, b)], sharded=sharded, group=group)[0]


def gradient_norm_sq(a: Gradients, *, sharded: bool = False, group=None) -> Tensor:
    """Squared L2 norm of a gradient, a float32 0-dim tensor."""
    return gradient_dots([(a, a)], sharded=sharded, group=group)[0]


def gradient_cosine(
    a: Gradients, b: Gradients, *, sharded: bool = False, group=None, eps: float = 1e-12
) -> Tensor:
    """Cosine similarity ``<a, b> / max(|a| |b|, eps)``; 0 when either gradient is zero."""
    dot, a_sq, b_sq = gradient_dots([(a, b), (a, a), (b, b)], sharded=sharded, group=group)
    return dot / torch.sqrt(a_sq * b_sq).clamp(min=eps)
