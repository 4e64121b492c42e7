"""The navigation-memory study: agents with and without memory, and the paper's ablations, on the
city benchmark (`amft.navigation.benchmark`), per memory-dependent subset, in both metric
conventions, over several seeds.

Agents: ``follower`` (the hand-written decision rule) and ``modular`` (a learned controller
trained with AMFT on decisions of expert episodes of the seed's city, disjoint from the test
episodes), each with any memory ablation. Every agent runs the same episodes, so agents are
compared pairwise on them (exact McNemar test on TC, Wilcoxon signed-rank on nDTW).
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from amft.io import atomic_write_json, atomic_write_text
from amft.memory.system import Mem4NavConfig

from .agents import FollowerAgent
from .benchmark import SPLITS, SUBSETS, NavBenchmark, build_benchmark, evaluate_episodes, training_stream
from .metrics import CONVENTION_A, CONVENTION_B
from .modular import ModularTrainingConfig, collect_decisions, train_modular_policy

__all__ = ["NavStudyConfig", "bootstrap_ci", "paired_tests", "results_markdown", "run_nav_study"]

METRICS = ("TC", "SPD", "nDTW")


@dataclass
class NavStudyConfig:
    """A study file (YAML): see configs/mem4nav-study.yaml."""

    output_dir: str = "runs/mem4nav-study"
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    city_size: int = 8
    per_subset: int = 50
    #: variant name -> {"agent": "follower" or "modular", "memory": an ablation of amft.memory.system.ABLATIONS,
    #: "memory_options": further Mem4NavConfig fields (e.g. {long_term_index: hnsw}), and for "modular" any
    #: ModularTrainingConfig field}
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: modular agents: expert episodes of the seed's city to learn from, and held out for the meta-gradient
    train_episodes: int = 200
    validation_episodes: int = 40
    #: the variant the others are tested against (paired, on the same episodes)
    reference: str = "none"

    def __post_init__(self) -> None:
        if not self.agents:
            raise ValueError("a navigation study needs at least one agent under `agents:`")
        if self.reference not in self.agents:
            raise ValueError(f"reference {self.reference!r} is not one of the agents {list(self.agents)}")
        for name, spec in self.agents.items():
            if spec.get("agent", "follower") not in AGENT_KINDS:
                raise ValueError(f"agent {name}: unknown agent kind {spec.get('agent')!r} (known: {', '.join(AGENT_KINDS)})")
            unknown = set(spec) - set(AGENT_KEYS) - (set(ModularTrainingConfig.__dataclass_fields__)
                                                     if spec.get("agent") == "modular" else set())
            memory_keys = set(spec.get("memory_options", {}))
            unknown |= {f"memory_options.{key}" for key in memory_keys - set(Mem4NavConfig.__dataclass_fields__)}
            if unknown:
                raise ValueError(f"agent {name}: unknown options {sorted(unknown)}")


AGENT_KINDS = ("follower", "modular")
AGENT_KEYS = ("agent", "memory", "memory_options")


def _make_agent(spec: dict[str, Any], config: NavStudyConfig, seed: int, benchmark: NavBenchmark,
                logs: dict[str, Any], name: str) -> FollowerAgent:
    memory, memory_options = spec.get("memory", "full"), spec.get("memory_options", {})
    if spec.get("agent", "follower") == "follower":
        return FollowerAgent(memory=memory, memory_options=memory_options)
    key = f"{name}/seed{seed}"
    if key not in logs:
        decisions = [collect_decisions(benchmark.city, benchmark.observer,
                                       list(itertools.islice(training_stream(benchmark, f"{stream}:{seed}"), count)), memory,
                                       memory_options)
                     for count, stream in ((config.train_episodes, "train"), (config.validation_episodes, "validation"))]
        options = {k: v for k, v in spec.items() if k not in AGENT_KEYS}
        policy, log = train_modular_policy(*decisions, ModularTrainingConfig(**{"seed": seed, **options}))
        logs[key] = {"policy": policy, "log": log}
    return FollowerAgent(memory=memory, memory_options=memory_options, policy=logs[key]["policy"].decide)


def bootstrap_ci(values: Iterable[float], resamples: int = 2000) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap 95% interval over episodes (seeded, so reports are reproducible)."""
    data = np.asarray(list(values), dtype=float)
    mean = float(data.mean())
    if np.all(data == data[0]) or not np.all(np.isfinite(data)):
        return mean, mean, mean
    result = stats.bootstrap((data,), np.mean, confidence_level=0.95, n_resamples=resamples, method="percentile",
                             random_state=np.random.default_rng(0))
    return mean, float(result.confidence_interval.low), float(result.confidence_interval.high)


def paired_tests(rows: list[dict], reference: list[dict], convention: str = "B") -> dict[str, float]:
    """Exact McNemar p-value on TC and Wilcoxon signed-rank p-value on nDTW against ``reference``
    (the same episodes in the same order)."""
    wins = sum(r[f"{convention}_TC"] > q[f"{convention}_TC"] for r, q in zip(rows, reference))
    losses = sum(r[f"{convention}_TC"] < q[f"{convention}_TC"] for r, q in zip(rows, reference))
    mcnemar = stats.binomtest(min(wins, losses), wins + losses, 0.5).pvalue if wins + losses else 1.0
    differences = [r[f"{convention}_nDTW"] - q[f"{convention}_nDTW"] for r, q in zip(rows, reference)]
    wilcoxon = stats.wilcoxon(differences).pvalue if any(differences) else 1.0
    return {"TC_wins": wins, "TC_losses": losses, "mcnemar_p": float(mcnemar), "wilcoxon_ndtw_p": float(wilcoxon)}


def _summarise(records: list[dict], variants: list[str], reference: str) -> dict[str, Any]:
    summary: dict[str, Any] = {"conventions": {"A": CONVENTION_A, "B": CONVENTION_B}, "splits": {}}
    for split in SPLITS:
        per_variant = {}
        for variant in variants:
            rows = [r for r in records if r["variant"] == variant and r["split"] == split]
            ref = [r for r in records if r["variant"] == reference and r["split"] == split]
            entry: dict[str, Any] = {}
            for subset in (*SUBSETS, "all"):
                chosen = [r for r in rows if subset in ("all", r["subset"])]
                entry[subset] = {f"{c}_{m}": bootstrap_ci(r[f"{c}_{m}"] for r in chosen) for c in "AB" for m in METRICS}
            entry["paired_vs_reference"] = {c: paired_tests(rows, ref, c) for c in "AB"}
            per_variant[variant] = entry
        summary["splits"][split] = per_variant
    return summary


def _cell(stat: tuple[float, float, float], digits: int = 1) -> str:
    mean, low, high = stat
    return f"{mean:.{digits}f}" if low == high else f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def results_markdown(summary: dict[str, Any], variants: list[str], reference: str, seeds: list[int], per_subset: int) -> str:
    lines = [f"Seeds {', '.join(map(str, seeds))}; {per_subset} episodes per subset, split and seed; mean over all "
             "episodes with a 95% percentile-bootstrap interval over episodes; p: exact McNemar test on TC against "
             f"`{reference}` on the same episodes.", ""]
    for split in SPLITS:
        for convention in "BA":
            lines += [f"**{split}, convention {summary['conventions'][convention]}**", "",
                      "| variant | " + " | ".join(f"TC {s}" for s in SUBSETS) + " | TC all | SPD all | nDTW all | p (TC) |",
                      "|---" * (len(SUBSETS) + 5) + "|"]
            for variant in variants:
                entry = summary["splits"][split][variant]
                p = entry["paired_vs_reference"][convention]["mcnemar_p"]
                cells = [_cell(entry[s][f"{convention}_TC"], 0) for s in (*SUBSETS, "all")]
                cells += [_cell(entry["all"][f"{convention}_SPD"]), _cell(entry["all"][f"{convention}_nDTW"])]
                lines.append(f"| {variant} | " + " | ".join(cells) + f" | {'-' if variant == reference else f'{p:.2g}'} |")
            lines.append("")
    return "\n".join(lines)


def _plot(summary: dict[str, Any], variants: list[str], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(SPLITS), figsize=(6 * len(SPLITS), 4), sharey=True)
    width = 0.8 / len(variants)
    for axis, split in zip(np.atleast_1d(axes), SPLITS):
        for i, variant in enumerate(variants):
            stats_ = [summary["splits"][split][variant][s]["B_TC"] for s in SUBSETS]
            means = [s[0] for s in stats_]
            errors = [[s[0] - s[1] for s in stats_], [s[2] - s[0] for s in stats_]]
            axis.bar(np.arange(len(SUBSETS)) + i * width, means, width, yerr=errors, label=variant, capsize=2)
        axis.set_xticks(np.arange(len(SUBSETS)) + 0.4 - width / 2, SUBSETS)
        axis.set_title(f"{split}: task completion (convention B)")
        axis.set_ylim(0, 105)
    np.atleast_1d(axes)[0].set_ylabel("TC (%)")
    np.atleast_1d(axes)[-1].legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def run_nav_study(config: NavStudyConfig, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every agent on every seed's benchmark; write episodes.csv, results.md/.json and tc_by_subset.png."""
    os.makedirs(config.output_dir, exist_ok=True)
    variants, records, trained = list(config.agents), [], {}
    total, done = len(config.seeds) * len(SPLITS) * len(variants), 0
    for seed in config.seeds:
        # Modular agents learn on the test split's city and also run on the unseen one.
        home = build_benchmark(seed, "test", city_size=config.city_size, per_subset=config.per_subset)
        for split in SPLITS:
            benchmark = home if split == "test" else build_benchmark(seed, split, city_size=config.city_size,
                                                                       per_subset=config.per_subset)
            for variant in variants:
                done += 1
                progress(f"[{done}/{total}] {variant} · seed {seed} · {split}")
                agent = _make_agent(config.agents[variant], config, seed, home, trained, variant)
                for row in evaluate_episodes(benchmark, agent):
                    records.append({"variant": variant, "seed": seed, "split": split, **row})
    summary = _summarise(records, variants, config.reference)
    summary["training"] = {key: value["log"] for key, value in trained.items()}
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=list(records[0]))
    writer.writeheader()
    writer.writerows({k: (v if not isinstance(v, float) or math.isfinite(v) else "inf") for k, v in r.items()}
                     for r in records)
    atomic_write_text(os.path.join(config.output_dir, "episodes.csv"), table.getvalue())
    atomic_write_json(os.path.join(config.output_dir, "results.json"), summary)
    markdown = results_markdown(summary, variants, config.reference, config.seeds, config.per_subset)
    atomic_write_text(os.path.join(config.output_dir, "results.md"), markdown + "\n")
    _plot(summary, variants, os.path.join(config.output_dir, "tc_by_subset.png"))
    if trained:
        _plot_training(summary["training"], os.path.join(config.output_dir, "modular_training.png"))
    return summary


def _plot_training(logs: dict[str, list[dict]], path: str) -> None:
    """mu and held-out decision accuracy of the modular agents over training steps (one line per run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (mu_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for key, log in sorted(logs.items()):
        steps = [row["step"] for row in log]
        mu_axis.plot(steps, [row["mu"] for row in log], label=key, linewidth=1)
        accuracy_axis.plot(steps, [100 * row["validation_accuracy"] for row in log], label=key, linewidth=1)
    mu_axis.set(title="modular agents: mu", xlabel="step", ylabel="mu")
    accuracy_axis.set(title="held-out decisions doing what the expert does", xlabel="step", ylabel="%")
    accuracy_axis.legend(fontsize=6)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
