"""The modular agent's learned controller, trained with AMFT's controller on expert decisions."""

import random

import torch

from amft.navigation.agents import FollowerAgent, run_episode
from amft.navigation.city import ACTIONS, make_city
from amft.navigation.episodes import sample_loop_episode
from amft.navigation.modular import FEATURE_NAMES, ModularTrainingConfig, collect_decisions, train_modular_policy
from amft.navigation.observations import Observer


def test_controller_learns_to_stop_where_memory_says_the_loop_closed():
    city = make_city(seed=0, size=6)
    observer, rng = Observer(city), random.Random(3)
    loops = [sample_loop_episode(city, rng) for _ in range(40)]
    train = collect_decisions(city, observer, loops[:30], "no-long-term")
    validation = collect_decisions(city, observer, loops[30:], "no-long-term")
    # Expert labels: one stop per episode, where the agent is back at its start and memory says so.
    assert int((train.expert == ACTIONS.index("stop")).sum()) == 30
    seen_before = train.inputs[:, FEATURE_NAMES.index("seen_before")]
    assert torch.all(seen_before[train.expert == ACTIONS.index("stop")] == 1.0)

    policy, log = train_modular_policy(train, validation, ModularTrainingConfig(steps=300, warmup_steps=100, meta_period=5))
    assert log[0]["mu"] == 1.0 and log[-1]["mu"] < 1.0  # SFT warm-up, then the controller's mu
    assert any(row["meta_term"] for row in log)  # meta steps took place
    assert log[-1]["validation_accuracy"] > 0.95
    agent = FollowerAgent(memory="no-long-term", policy=policy.decide)
    assert sum(run_episode(city, observer, agent, e).path[-1] == e.goal for e in loops[30:]) >= 8
