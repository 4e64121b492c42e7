"""Long-term memory written and read through a reversible Transformer (see docs/design.md, 'Long-term memory').

Each block couples the two halves of its input additively, y1 = x1 + F(LN(x2)),
y2 = x2 + G(LN(y1)), with F multi-head self-attention and G a GELU MLP, so the stack is
invertible whatever its weights (exactly up to float round-off, in eval mode).

For a key (an octree leaf or a graph node) the LTM keeps a read token theta_r (dim d) and a
stored token theta_w = R([theta_r ; v]) (dim 2d). Unlike the public code, whose read token
stays 0 forever, the next read token is the first half of the new stored token, so a key's
token carries its history. Reads are exact nearest-neighbour search over the
stored tokens by default, or HNSW search (``index="hnsw"``, the paper's index, approximate;
needs hnswlib), decoded with R^-1 into (previous read token, observation).
"""

from __future__ import annotations

from typing import Any, Hashable

import torch
from torch import Tensor, nn

from .rows import RowStore

__all__ = ["LongTermMemory", "ReversibleBlock", "ReversibleTransformer"]


class ReversibleBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm_f, self.norm_g = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def f(self, x: Tensor) -> Tensor:
        normed = self.norm_f(x)
        return self.attention(normed, normed, normed, need_weights=False)[0]

    def g(self, x: Tensor) -> Tensor:
        return self.mlp(self.norm_g(x))

    def forward(self, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor]:
        y1 = x1 + self.f(x2)
        return y1, x2 + self.g(y1)

    def inverse(self, y1: Tensor, y2: Tensor) -> tuple[Tensor, Tensor]:
        x2 = y2 - self.g(y1)
        return y1 - self.f(x2), x2


class ReversibleTransformer(nn.Module):
    """R on sequences ``(batch, tokens, 2 * dim)``: the last dimension is split into the two halves."""

    def __init__(self, dim: int, depth: int = 6, heads: int = 8, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.dim = dim
        self.blocks = nn.ModuleList(ReversibleBlock(dim, heads, mlp_ratio) for _ in range(depth))

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = x[..., : self.dim], x[..., self.dim :]
        for block in self.blocks:
            x1, x2 = block(x1, x2)
        return torch.cat([x1, x2], dim=-1)

    def inverse(self, y: Tensor) -> Tensor:
        y1, y2 = y[..., : self.dim], y[..., self.dim :]
        for block in reversed(self.blocks):
            y1, y2 = block.inverse(y1, y2)
        return torch.cat([y1, y2], dim=-1)


class LongTermMemory:
    """Tokens per key, written through R and read by nearest-neighbour search: ``index`` is
    ``"exact"`` (every stored token compared) or ``"hnsw"`` (an HNSW graph; approximate, sub-linear)."""

    def __init__(self, transformer: ReversibleTransformer, index: str = "exact") -> None:
        self.transformer = transformer.eval()  # eval mode: no dropout, so R^-1 undoes R exactly
        self.dim = transformer.dim
        self.index = index
        self.read_tokens: dict[Hashable, Tensor] = {}
        self.stored = RowStore(2 * self.dim, dtype=next(transformer.parameters()).dtype, index=index)

    def __len__(self) -> int:
        return len(self.stored)

    def write(self, key: Hashable, observation: Tensor) -> Tensor:
        """theta_w = R([theta_r ; v]) replaces the key's stored token; theta_r becomes its first half."""
        return self.write_many([key], observation)[0]

    @torch.no_grad()
    def write_many(self, keys: list[Hashable], observation: Tensor) -> Tensor:
        """:meth:`write` of one observation under several keys, in one pass of R; the stored tokens."""
        dtype = next(self.transformer.parameters()).dtype
        zeros = torch.zeros(self.dim, dtype=dtype)
        previous = torch.stack([self.read_tokens.get(key, zeros) for key in keys])
        inputs = torch.cat([previous, observation.to(dtype).expand(len(keys), -1)], dim=-1)
        tokens = self.transformer(inputs.unsqueeze(1)).squeeze(1)  # each key its own 1-token sequence
        for key, token in zip(keys, tokens):
            self.stored.put(key, token)
            self.read_tokens[key] = token[: self.dim].clone()
        return tokens

    @torch.no_grad()
    def decode(self, token: Tensor) -> tuple[Tensor, Tensor]:
        """R^-1 of a stored token: (the read token it was written with, the observation)."""
        x = self.transformer.inverse(token.view(1, 1, -1)).view(-1)
        return x[: self.dim], x[self.dim :]

    @torch.no_grad()
    def search(self, query: Tensor, top_m: int = 3) -> list[tuple[Hashable, float, Tensor]]:
        """The ``top_m`` keys whose stored tokens are nearest (L2) to ``query`` (dim 2d), with their
        distances and decoded observations."""
        hits = self.stored.nearest(query, top_m)
        if not hits:
            return []
        tokens = torch.stack([self.stored.get(key) for key, _ in hits])
        observations = self.transformer.inverse(tokens.unsqueeze(1)).squeeze(1)[:, self.dim :]
        return [(key, distance, observation) for (key, distance), observation in zip(hits, observations)]

    def state_dict(self) -> dict[str, Any]:
        """R's weights and every key's read and stored tokens (tensors: save with ``torch.save``,
        load with ``torch.load(..., weights_only=True)``)."""
        keys = list(self.stored.keys)
        return {
            "transformer": self.transformer.state_dict(), "index": self.index, "keys": keys,
            "read_tokens": torch.stack([self.read_tokens[key] for key in keys]) if keys else None,
            "stored_tokens": self.stored.rows.clone() if keys else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.transformer.load_state_dict(state["transformer"])
        self.__init__(self.transformer, state["index"])
        for i, key in enumerate(state["keys"]):
            self.stored.put(key, state["stored_tokens"][i])
            self.read_tokens[key] = state["read_tokens"][i].clone()
