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

:func:`adam_preconditioned` turns gradients into the direction an Adam step actually takes,
for the meta-gradient's ``meta_direction="adam"`` look-ahead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "Gradients",
    "adam_preconditioned",
    "gradient_cosine",
    "gradient_dot",
    "gradient_dots",
    "gradient_norm_sq",
]

Gradients = Sequence[Tensor | None]


def _result_device(grads: Sequence[Gradients], sharded: bool, group) -> torch.device:
    # The partial sums of sharded gradients are all-reduced on a device the backend accepts: NCCL takes
    # CUDA tensors only, even from a rank whose shards are all empty or offloaded to the CPU (the 0-dim
    # CPU products then add onto a CUDA total).
    if sharded and dist.is_available() and dist.is_initialized() and dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    for grad in grads:
        for tensor in grad:
            if tensor is not None:
                return tensor.device
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
    device = _result_device([g for pair in pairs for g in pair], sharded, group)
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


def adam_preconditioned(
    grads: Gradients,
    exp_avg_sqs: Sequence[Tensor | None],
    steps: Sequence[float],
    *,
    beta2: float,
    eps: float,
) -> list[Tensor | None]:
    """Each gradient times Adam's elementwise preconditioner ``P = 1 / (sqrt(v_hat) + eps)``.

    ``v_hat = exp_avg_sq / (1 - beta2 ** step)`` is the optimizer's bias-corrected second moment
    after ``step`` updates of that parameter, and the denominator is written as torch's Adam and
    AdamW write it. A parameter without second moment yet (``exp_avg_sq`` None or ``step`` 0,
    i.e. before its first optimizer step) keeps ``P = 1``: its gradient is returned unchanged.
    The preconditioner is frozen at the optimizer's current state; how the next gradient would
    change ``exp_avg_sq`` is left out (see docs/design.md, 'The meta-gradient').
    """
    if not (len(grads) == len(exp_avg_sqs) == len(steps)):
        raise ValueError(
            f"need one second moment and step per gradient: {len(grads)} gradients, "
            f"{len(exp_avg_sqs)} second moments, {len(steps)} steps"
        )
    directions = []
    for grad, exp_avg_sq, step in zip(grads, exp_avg_sqs, steps):
        if grad is None or exp_avg_sq is None or step == 0:
            directions.append(grad)
            continue
        if exp_avg_sq.shape != grad.shape:
            raise ValueError(f"second moment shape {tuple(exp_avg_sq.shape)} differs from gradient {tuple(grad.shape)}")
        denominator = exp_avg_sq.sqrt() / math.sqrt(1.0 - beta2**step) + eps
        directions.append(grad / denominator)
    return directions
