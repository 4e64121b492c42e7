"""What an agent perceives in the synthetic city, as text and as a deterministic embedding
(see docs/design.md, 'Observations'): the landmarks at the agent's node ("here"), the other visible ones with a
bearing bucket (ahead, left, right, behind) and a distance bucket, the node's degree, and the street sign at intersections. False negatives and
false positives are controllable. The embedding hashes the observation's tokens into buckets
and applies a fixed random projection, so equal observations have equal embeddings.
"""

from __future__ import annotations

import math
import random
import zlib

import torch

from .city import City, NavigatorState

__all__ = ["Observer"]

_BEARINGS = ("ahead", "right", "behind", "left")


def _street_names(city: City, node: int, block: float) -> tuple[str | None, str | None]:
    x, y = city.positions[node]
    avenue = f"Avenue {chr(ord('A') + round(x / block))}" if abs(x / block - round(x / block)) < 1e-6 else None
    street = f"Street {round(y / block) + 1}" if abs(y / block - round(y / block)) < 1e-6 else None
    return avenue, street


class Observer:
    """Turns navigator states into observation texts and embeddings."""

    def __init__(self, city: City, *, block: float = 80.0, visibility: float = 30.0, false_negative: float = 0.0,
                 false_positive: float = 0.0, dim: int = 64, buckets: int = 1024, seed: int = 0) -> None:
        self.city, self.block, self.visibility = city, block, visibility
        self.false_negative, self.false_positive = false_negative, false_positive
        self.buckets = buckets
        self._rng = random.Random(f"mem4nav-observer:{seed}")
        generator = torch.Generator().manual_seed(zlib.crc32(f"mem4nav-projection:{dim}:{buckets}".encode()))
        self.projection = torch.randn(buckets, dim, generator=generator) / math.sqrt(dim)
        self._nearby = self._index_landmarks()

    def _index_landmarks(self) -> dict[int, list[tuple[int, float]]]:
        """Landmark nodes within the visibility radius of each node (with their distance)."""
        nodes = sorted(self.city.landmarks)
        nearby: dict[int, list[tuple[int, float]]] = {}
        for node in self.city.edges:
            here = self.city.positions[node]
            nearby[node] = [(other, d) for other in nodes if (d := math.dist(here, self.city.positions[other])) <= self.visibility]
        return nearby

    def text(self, state: NavigatorState) -> str:
        here = self.city.positions[state.node]
        seen = []
        for other, distance in self._nearby.get(state.node, []):
            if self._rng.random() < self.false_negative:
                continue
            if other == state.node:
                seen.extend(f"{landmark.name} here" for landmark in self.city.landmarks[other])
                continue
            there = self.city.positions[other]
            bearing = math.degrees(math.atan2(there[0] - here[0], there[1] - here[1]))
            bucket = _BEARINGS[round(((bearing - state.heading) % 360) / 90) % 4]
            for landmark in self.city.landmarks[other]:
                seen.append(f"{landmark.name} {bucket} {round(distance / 10) * 10}m")
        if self.false_positive and self._rng.random() < self.false_positive:
            seen.append(f"fire hydrant {self._rng.choice(_BEARINGS)} {self._rng.choice((10, 20, 30))}m")
        parts = ["landmarks: " + ("; ".join(sorted(seen)) if seen else "none"), f"degree {self.city.degree(state.node)}"]
        if self.city.is_intersection(state.node):
            avenue, street = _street_names(self.city, state.node, self.block)
            parts.append(f"sign: {avenue} & {street}")
        return " | ".join(parts)

    def embed(self, text: str) -> torch.Tensor:
        """Bag of hashed tokens, projected to ``dim`` and normalised to unit length."""
        counts = torch.zeros(self.buckets)
        for token in text.replace("|", " ").replace(";", " ").split():
            counts[zlib.crc32(token.encode()) % self.buckets] += 1.0
        vector = counts @ self.projection
        return vector / vector.norm().clamp(min=1e-12)
