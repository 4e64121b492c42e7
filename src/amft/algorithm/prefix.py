"""Math of prefix rollouts: completions that start with the first part of the prompt's demonstration
and are finished by the policy (see docs/design.md, 'Prefix rollouts').

- Prefix-RFT (arXiv 2507.01679): one hybrid rollout per group starts from a token-level prefix whose
  share of the demonstration is drawn between a cosine-decaying lower bound and a fixed upper one
  (:func:`prefix_low`, :func:`draw_prefix_ratio`, :func:`prefix_length`); its advantages come from
  sub-groups (:func:`prefix_group_advantages`) and only its highest-entropy prefix tokens keep theirs
  (:func:`entropy_clip_prefix`).
- UFT (arXiv 2505.16984): all rollouts of a prompt share a hint of the first demonstration chunks, a
  binomial number of them with a probability that decays on a cosine (:func:`hint_probability`,
  :func:`chunk_cut_points`, :func:`draw_hint_chunks`).
- BREAD (arXiv 2506.17211): a group whose rollouts all fail is regrown from the shortest run of
  demonstration episodes from which the policy succeeds (:class:`AnchorSearch`, :func:`anchor_search`).

Demonstrations are cut at steps (:func:`split_steps`) or, when they are one step long, at tokens
(:func:`prefix_unit_ends`). Draws take an explicit ``random.Random``, so a caller that seeds it from
the training step reproduces them exactly after a resume.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .losses import ADVANTAGE_SCALES, _check_groups
from .methods import chord_mu

__all__ = [
    "SINGLETON_BASELINES",
    "AnchorSearch",
    "anchor_search",
    "chunk_cut_points",
    "draw_hint_chunks",
    "draw_prefix_ratio",
    "entropy_clip_prefix",
    "hint_chunk_count",
    "hint_probability",
    "prefix_group_advantages",
    "prefix_length",
    "prefix_low",
    "prefix_unit_ends",
    "split_steps",
]

#: What the continuation of a hybrid rollout is compared with: nothing (its raw reward, as Prefix-RFT's
#: code does for its singleton sub-group) or the mean of the ordinary rollouts of its group.
SINGLETON_BASELINES = ("none", "group")

# A product such as 0.29 * 100 lands at 28.999999999999996 in floating point; within this of an
# integer it counts as that integer.
_FLOOR_TOLERANCE = 1e-9


# ------------------------------------------------------------------------------------------------
# Schedules and draws
# ------------------------------------------------------------------------------------------------
def prefix_low(step: int, total_steps: int, start: float = 0.95, end: float = 0.05) -> float:
    """Prefix-RFT's lower bound of the prefix share at ``step``: a cosine from ``start`` at step 0 to
    ``end`` at ``total_steps``, then ``end`` (the decay segment of CHORD's mu schedule)."""
    return chord_mu(step, mu_peak=start, mu_valley=end, warmup_steps=0, decay_steps=total_steps)


def hint_probability(step: int, hint_steps: int, p_high: float = 0.95, p_low: float = 0.05) -> float | None:
    """UFT's probability of each hint chunk at ``step``: a cosine from ``p_high`` at step 0 to ``p_low``
    at ``hint_steps``; ``None`` (no hint at all) after ``hint_steps``."""
    if step > hint_steps:
        return None
    return chord_mu(step, mu_peak=p_high, mu_valley=p_low, warmup_steps=0, decay_steps=hint_steps)


def draw_prefix_ratio(low: float, high: float, rng: random.Random) -> float:
    """A prefix share drawn uniformly on ``[low, high]`` (Prefix-RFT's Beta(1, 1) sampler)."""
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"need 0 <= low <= high <= 1, got {low}, {high}")
    return low + (high - low) * rng.random()


def prefix_length(ratio: float, demo_len: int, *, min_len: int = 1, max_len: int | None = None) -> int:
    """Tokens of a ``demo_len``-token demonstration that a prefix of share ``ratio`` takes:
    floor(ratio * demo_len), raised to ``min_len``, then capped at ``demo_len - 1`` (something is always
    left to generate) and at ``max_len``; never negative."""
    length = max(math.floor(ratio * demo_len + _FLOOR_TOLERANCE), min_len)
    length = min(length, demo_len - 1)
    if max_len is not None:
        length = min(length, max_len)
    return max(length, 0)


def chunk_cut_points(num_units: int, max_chunks: int) -> list[int]:
    """Where ``num_units`` units are cut into n = min(max_chunks, num_units) chunks: round(j * m / n)
    for j = 0..n (UFT's hint chunks, BREAD's episodes). ``[0]`` when there is no unit."""
    if max_chunks < 1:
        raise ValueError(f"max_chunks must be >= 1, got {max_chunks}")
    if num_units <= 0:
        return [0]
    chunks = min(max_chunks, num_units)
    return [round(j * num_units / chunks) for j in range(chunks + 1)]


def hint_chunk_count(uniforms: Sequence[float], p: float) -> int:
    """How many of the chunks enter the hint: one Bernoulli(p) per chunk, from its uniform draw, summed
    (a Binomial(len(uniforms), p) count)."""
    return sum(u < p for u in uniforms)


def draw_hint_chunks(num_chunks: int, p: float, rng: random.Random) -> int:
    """A Binomial(num_chunks, p) number of hint chunks, drawn from ``rng``."""
    return hint_chunk_count([rng.random() for _ in range(num_chunks)], p)


# ------------------------------------------------------------------------------------------------
# Cutting demonstrations
# ------------------------------------------------------------------------------------------------
def split_steps(text: str, separator: str | None = None) -> list[str]:
    """The steps of a demonstration: pieces ending with ``separator``, which each keeps.

    Without a separator, blank lines ("\\n\\n") separate steps when they give at least 3, else line
    breaks. A piece of whitespace only joins the step before it (the first step when it leads), so
    the steps always concatenate back to ``text``.
    """
    if separator is None:
        by_paragraph = split_steps(text, "\n\n")
        return by_paragraph if len(by_paragraph) >= 3 else split_steps(text, "\n")
    if not separator:
        raise ValueError("separator must be non-empty")
    pieces = [piece + separator for piece in text.split(separator)]
    pieces[-1] = pieces[-1][: -len(separator)]
    steps: list[str] = []
    carried = ""
    for piece in pieces:
        if not piece:
            continue
        if not piece.strip():
            if steps:
                steps[-1] += piece
            else:
                carried += piece
            continue
        steps.append(carried + piece)
        carried = ""
    if carried:
        steps.append(carried)
    return steps


def prefix_unit_ends(step_token_ends: Sequence[int], demo_len: int) -> list[int]:
    """Token counts at which a prefix may end, increasing, each in 1..demo_len - 1.

    ``step_token_ends`` are the token counts at the end of each demonstration step (the last one
    ``demo_len``). A demonstration of two or more steps is cut at the end of any step but the last (so
    the policy always writes the final step); a step that adds no token merges with the next one. A
    demonstration of one step is cut at tokens: any length up to ``demo_len - 1``.
    """
    if len(step_token_ends) < 2:
        return list(range(1, demo_len))
    ends = sorted({end for end in step_token_ends[:-1] if 0 < end < demo_len})
    return ends


# ------------------------------------------------------------------------------------------------
# Prefix-RFT: advantages of sub-groups and the entropy clip of prefix tokens
# ------------------------------------------------------------------------------------------------
def prefix_group_advantages(
    rewards: Tensor,
    group_size: int,
    hybrid: Tensor,
    *,
    scale: str = "group",
    singleton_baseline: str = "none",
    eps: float = 1e-4,
) -> tuple[Tensor, Tensor]:
    """Prefix-RFT's advantages for groups that mix ordinary rollouts with hybrid ones: ``(A, A_prefix)``,
    both ``(N,)``.

    - Ordinary rows: ``(r - m) / (s + eps)`` with the mean m and unbiased std s of the group's ordinary
      rows only (``scale="none"``: ``r - m``).
    - A hybrid row's continuation: each hybrid row is its own sub-group, whose statistics count as
      mean 0 and std 1, so ``r / (1 + eps)`` (``scale="none"``: ``r``). With
      ``singleton_baseline="group"`` it is scored like one more ordinary row instead: ``(r - m) / (s + eps)``.
    - A hybrid row's prefix tokens: ``A_prefix = r / (1 + eps) - m`` (``scale="none"``: ``r - m``); 0 on
      ordinary rows.

    ``hybrid`` (``(N,)`` bool) marks the hybrid rows; every group needs at least one ordinary row. A group
    without hybrid rows gets exactly :func:`~amft.algorithm.losses.group_advantages`.
    """
    if scale not in ("group", "none"):
        raise ValueError(f"prefix advantages support scale 'group' or 'none', got {scale!r} "
                         f"(of {ADVANTAGE_SCALES})")
    if singleton_baseline not in SINGLETON_BASELINES:
        raise ValueError(f"singleton_baseline must be one of {SINGLETON_BASELINES}, got {singleton_baseline!r}")
    _check_groups(rewards, group_size)
    if hybrid.shape != rewards.shape:
        raise ValueError(f"hybrid must have shape {tuple(rewards.shape)}, got {tuple(hybrid.shape)}")
    grouped = rewards.float().view(-1, group_size)
    ordinary = ~hybrid.bool().view(-1, group_size)
    counts = ordinary.sum(dim=1, keepdim=True)
    if (counts == 0).any():
        raise ValueError("every group needs at least one ordinary rollout")
    mean = torch.where(ordinary, grouped, torch.zeros_like(grouped)).sum(dim=1, keepdim=True) / counts
    squares = torch.where(ordinary, (grouped - mean) ** 2, torch.zeros_like(grouped)).sum(dim=1, keepdim=True)
    std = torch.where(counts > 1, (squares / (counts - 1).clamp(min=1)).sqrt(), torch.zeros_like(squares))
    divide = scale == "group"
    against_group = (grouped - mean) / (std + eps) if divide else grouped - mean
    singleton = grouped / (1.0 + eps) if divide else grouped
    hybrid_continuation = against_group if singleton_baseline == "group" else singleton
    advantages = torch.where(ordinary, against_group, hybrid_continuation)
    prefix_advantages = torch.where(ordinary, torch.zeros_like(grouped), singleton - mean)
    return advantages.reshape(-1), prefix_advantages.reshape(-1)


def entropy_clip_prefix(entropies: Tensor, prefix_mask: Tensor, keep_fraction: float) -> Tensor:
    """The prefix tokens that keep their advantage: ``(B, T)`` bool.

    All prefix tokens of the batch are pooled and sorted by entropy (ties in position order); the
    lowest floor((1 - keep_fraction) * N) of the N lose their advantage, the rest keep it.
    """
    if not 0.0 <= keep_fraction <= 1.0:
        raise ValueError(f"keep_fraction must be in [0, 1], got {keep_fraction}")
    prefix = prefix_mask.bool()
    kept = prefix.clone()
    pooled = entropies.detach()[prefix]
    dropped = math.floor((1.0 - keep_fraction) * pooled.numel() + _FLOOR_TOLERANCE)
    if dropped:
        order = torch.sort(pooled, stable=True).indices
        keep_pooled = torch.ones_like(pooled, dtype=torch.bool)
        keep_pooled[order[:dropped]] = False
        kept[prefix] = keep_pooled
    return kept


# ------------------------------------------------------------------------------------------------
# BREAD: the anchor search
# ------------------------------------------------------------------------------------------------
class AnchorSearch:
    """Binary search for the smallest episode count e in 1..K from which the policy succeeds.

    lo = 1, hi = K + 1 (K + 1 stands for "unsolved"); while lo < hi, probe mid = (lo + hi) // 2: a
    success sets hi = mid, a failure lo = mid + 1. At most ceil(log2(K + 1)) probes; a found e was
    always probed itself. Searches of many groups advance in lockstep: each round, every unfinished
    search names its next probe and records its outcome.
    """

    def __init__(self, num_episodes: int) -> None:
        if num_episodes < 1:
            raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
        self.num_episodes = num_episodes
        self.lo, self.hi = 1, num_episodes + 1
        self.probes: list[tuple[int, bool]] = []

    @property
    def done(self) -> bool:
        return self.lo >= self.hi

    def next_probe(self) -> int:
        """The episode count to probe next."""
        if self.done:
            raise RuntimeError("the search is over")
        return (self.lo + self.hi) // 2

    def record(self, success: bool) -> None:
        """The outcome of the probe :meth:`next_probe` named."""
        probe = self.next_probe()
        self.probes.append((probe, success))
        if success:
            self.hi = probe
        else:
            self.lo = probe + 1

    @property
    def result(self) -> int | None:
        """The smallest successful episode count, or None when even all K episodes failed."""
        if not self.done:
            raise RuntimeError("the search is not over")
        return self.lo if self.lo <= self.num_episodes else None


def anchor_search(num_episodes: int, succeeds: Callable[[int], bool]) -> tuple[int | None, list[tuple[int, bool]]]:
    """One :class:`AnchorSearch` run against an oracle: ``(result, [(probe, success), ...])``."""
    search = AnchorSearch(num_episodes)
    while not search.done:
        search.record(bool(succeeds(search.next_probe())))
    return search.result, search.probes
