"""A modular navigation agent with a learned controller, trained with AMFT's balance controller
(Mem4Nav's modular pipeline; the algorithm core of ``amft.algorithm`` on a non-language policy).

Perception (the observation and its embedding), mapping (Mem4Nav's memory) and planning (the
instruction tracker) are the follower's; the controller is a small MLP from the step's facts
(instruction step, intersection, anchor or target in view, places counted by memory, place
recognised by memory) and the observation embedding to one of the navigator's actions. Without
memory the memory features are zero, so the controller cannot tell the second fire hydrant from
the first, or the start of a loop from any other place.

Training is per decision, on the states of expert episodes, as for the language-model agents:
L_SFT is the cross-entropy of the expert's action; L_RL is the group policy gradient (GRPO-style
advantages over ``group_size`` actions sampled per state, reward 1 when the action does what the
expert's does); mu comes from :class:`amft.algorithm.MetaGradientController` (SFT warm-up, then
the meta-gradient on held-out decisions plus the entropy term).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from amft.algorithm.controllers import ControllerStats, MetaGradientController, meta_alignment_from_gradients

from .agents import Facts, FollowerAgent
from .city import ACTIONS, City
from .episodes import Episode
from .observations import Observer

__all__ = ["FEATURE_NAMES", "Decisions", "ModularPolicy", "ModularTrainingConfig", "collect_decisions", "facts_features",
           "train_modular_policy"]

_KINDS = ("straight", "turn", "turn_around", "stop", "loop")
_MAX_COUNT = 5


def _one_hot(index: int, size: int) -> list[float]:
    return [float(i == index) for i in range(size)]


def facts_features(facts: Facts) -> list[float]:
    kind, step = facts.step[0], facts.step
    side = step[1] if kind in ("turn", "loop") else None
    ordinal = step[2] if kind == "stop" else 0
    return [*_one_hot(_KINDS.index(kind), len(_KINDS)), float(side == "left"), float(side == "right"),
            float(facts.at_intersection), float(facts.moved), float(facts.anchor_here), float(facts.target_here),
            *_one_hot(min(facts.target_places, _MAX_COUNT), _MAX_COUNT + 1), *_one_hot(min(ordinal, _MAX_COUNT), _MAX_COUNT + 1),
            float(facts.seen_before), float(facts.counts_places)]


FEATURE_NAMES = (*(f"step:{kind}" for kind in _KINDS), "side:left", "side:right", "at_intersection", "moved",
                 "anchor_here", "target_here", *(f"places:{i}" for i in range(_MAX_COUNT + 1)),
                 *(f"ordinal:{i}" for i in range(_MAX_COUNT + 1)), "seen_before", "counts_places")
FEATURES = len(FEATURE_NAMES)


class ModularPolicy(nn.Module):
    def __init__(self, observation_dim: int = 64, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(FEATURES + observation_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden),
                                 nn.Tanh(), nn.Linear(hidden, len(ACTIONS)))

    def forward(self, inputs: Tensor) -> Tensor:
        return self.net(inputs)

    @torch.no_grad()
    def decide(self, facts: Facts, embedding: Tensor) -> str:
        """The greedy action for one step (the agent's ``policy`` callback)."""
        inputs = torch.tensor(facts_features(facts) + embedding.tolist()).unsqueeze(0)
        return ACTIONS[int(self(inputs).argmax())]


@dataclass
class Decisions:
    """States of expert episodes: inputs, the expert's action and which actions do the same."""

    inputs: Tensor  # (n, FEATURES + observation_dim)
    expert: Tensor  # (n,) action index
    valid: Tensor  # (n, len(ACTIONS)) 1.0 where the action does what the expert's does

    def __len__(self) -> int:
        return self.expert.numel()

    def sample(self, count: int, generator: torch.Generator) -> Decisions:
        index = torch.randint(len(self), (count,), generator=generator)
        return Decisions(self.inputs[index], self.expert[index], self.valid[index])


def collect_decisions(city: City, observer: Observer, episodes: list[Episode], memory: str,
                      memory_options: dict | None = None) -> Decisions:
    """Walk each expert episode with the tracker and ``memory`` (and further ``memory_options``), recording
    every decision."""
    agent = FollowerAgent(memory=memory, memory_options=memory_options or {})
    inputs, expert, valid = [], [], []
    for episode in episodes:
        agent.reset(episode.instruction)
        state = episode.start
        for action in episode.actions:
            text = observer.text(state)
            x, y = city.positions[state.node]
            embedding = observer.embed(text)
            facts = agent.observe(text, embedding, (x, y, 0.0))
            same = state.equivalent(city, action)
            inputs.append(facts_features(facts) + embedding.tolist())
            expert.append(ACTIONS.index(same[0]))
            valid.append([float(a in same) for a in ACTIONS])
            agent.commit(facts, same[0])
            if action != "stop":
                state = state.step(city, action)
    return Decisions(torch.tensor(inputs), torch.tensor(expert), torch.tensor(valid))


@dataclass
class ModularTrainingConfig:
    steps: int = 600
    batch_size: int = 64
    group_size: int = 8
    learning_rate: float = 3e-3
    warmup_steps: int = 200
    entropy_calibration_steps: int = 20
    mu_init: float = 0.8
    meta_period: int = 10
    meta_lr: float = 0.02
    entropy_lr: float = 0.05
    seed: int = 0


def _losses(policy: ModularPolicy, demos: Decisions, states: Decisions, group_size: int,
            generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """(L_SFT, L_RL, mean entropy of the policy on ``states``)."""
    sft = nn.functional.cross_entropy(policy(demos.inputs), demos.expert)
    log_probs = torch.log_softmax(policy(states.inputs), dim=-1)
    actions = torch.multinomial(log_probs.detach().exp(), group_size, replacement=True, generator=generator)
    rewards = states.valid.gather(1, actions)
    advantages = (rewards - rewards.mean(dim=1, keepdim=True)) / (rewards.std(dim=1, keepdim=True) + 1e-4)
    rl = -(advantages * log_probs.gather(1, actions)).mean()
    entropy = -(log_probs.exp() * log_probs).sum(dim=-1).mean()
    return sft, rl, entropy


def train_modular_policy(train: Decisions, validation: Decisions, config: ModularTrainingConfig,
                         observation_dim: int = 64) -> tuple[ModularPolicy, list[dict[str, float]]]:
    """Train a controller with L = (1 - mu) L_RL + mu L_SFT and AMFT's mu; returns it and its log."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    random.seed(config.seed)
    policy = ModularPolicy(observation_dim)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=config.learning_rate)
    controller = MetaGradientController(
        mu_init=config.mu_init, meta_lr=config.meta_lr, entropy_lr=config.entropy_lr, meta_period=config.meta_period,
        normalization="cosine", warmup_steps=config.warmup_steps, entropy_calibration_steps=config.entropy_calibration_steps)
    parameters = list(policy.parameters())
    log = []
    for step in range(1, config.steps + 1):
        demos, states = train.sample(config.batch_size, generator), train.sample(config.batch_size, generator)
        sft, rl, entropy = _losses(policy, demos, states, config.group_size, generator)
        alignment = None
        if controller.is_meta_step():
            g_sft = torch.autograd.grad(sft, parameters, retain_graph=True)
            g_rl = torch.autograd.grad(rl, parameters, retain_graph=True)
            held_out = validation.sample(config.batch_size, generator)
            _, val_rl, _ = _losses(policy, held_out, held_out, config.group_size, generator)
            alignment = meta_alignment_from_gradients(torch.autograd.grad(val_rl, parameters), g_sft, g_rl)
        mu = controller.update(ControllerStats(entropy=float(entropy.detach()), meta_alignment=alignment))
        loss = (1 - mu) * rl + mu * sft
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 20 == 0 or step == config.steps:
            with torch.no_grad():
                accuracy = float(validation.valid.gather(1, policy(validation.inputs).argmax(-1, keepdim=True)).mean())
            log.append({"step": step, "mu": mu, "entropy": float(entropy.detach()), "sft_loss": float(sft.detach()),
                        "rl_loss": float(rl.detach()), "validation_accuracy": accuracy, **controller.last_terms})
    return policy, log
