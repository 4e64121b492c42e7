"""The navigation-memory study: agents with and without memory, and the paper's ablations, on the
city benchmark (`amft.navigation.benchmark`), per memory-dependent subset, in both metric
conventions, over several seeds, on the study harness (`amft.evaluation.harness`): a run is one
agent with one seed, in its own folder, skipped once finished.

Agents: ``follower`` (the hand-written decision rule) and ``modular`` (a learned controller
trained with AMFT on decisions of expert episodes of the seed's city, disjoint from the test
episodes), each with any memory ablation. Every agent runs the same episodes, so agents are
compared pairwise on them (exact McNemar test on TC, Wilcoxon signed-rank on nDTW).
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rich.console import Console
from scipy import stats

from amft.defaults import changed_from_default
from amft.evaluation.harness import (Metric, RunsFailed, StudyRun, check_recipes, plot_bars, plot_curves, run_study,
                                     summarize, write_results)
from amft.io import atomic_write_json, atomic_write_text
from amft.memory.system import Mem4NavConfig

from .agents import FollowerAgent
from .benchmark import SPLITS, SUBSETS, NavBenchmark, build_benchmark, evaluate_episodes, training_stream
from .metrics import CONVENTION_A, CONVENTION_B
from .modular import ModularTrainingConfig, collect_decisions, train_modular_policy

__all__ = ["AgentRun", "NavStudyConfig", "bootstrap_ci", "paired_tests", "report_nav_study", "results_markdown",
           "run_nav_study", "study_runs"]

METRICS = ("TC", "SPD", "nDTW")


@dataclass
class NavStudyConfig:
    """A study file (YAML): see configs/mem4nav-study.yaml."""

    output_dir: str = field(default="runs/mem4nav-study", metadata={"help": "Where the runs, tables and plots go."})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={
        "help": "Every agent runs once per seed (the seed of its city and episodes)."})
    city_size: int = field(default=8, metadata={"help": "Intersections along each side of the synthetic city."})
    per_subset: int = field(default=50, metadata={"help": "Episodes per subset, split and seed."})
    agents: dict[str, dict[str, Any]] = field(default_factory=dict, metadata={
        "help": "Name -> {agent: follower or modular, memory: an ablation (full, no-octree, ..., none), "
                "memory_options: further memory settings (e.g. {long_term_index: hnsw}), and for a modular agent "
                "its training settings}."})
    train_episodes: int = field(default=200, metadata={
        "help": "Modular agents: expert episodes of the seed's city they learn from."})
    validation_episodes: int = field(default=40, metadata={
        "help": "Modular agents: expert episodes held out for the meta-gradient."})
    reference: str = field(default="none", metadata={
        "help": "The agent the others are tested against (paired, on the same episodes)."})

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
        if not any(spec.get("agent") == "modular" for spec in self.agents.values()):
            given = changed_from_default(self, ("train_episodes", "validation_episodes"))
            if given:
                raise ValueError(f"{', '.join(given)}: episodes a modular agent learns from, and no agent is modular")


AGENT_KINDS = ("follower", "modular")
AGENT_KEYS = ("agent", "memory", "memory_options")


def make_policy(agent: Mapping[str, Any], seed: int, benchmark: NavBenchmark, train_episodes: int,
                validation_episodes: int) -> tuple[Callable | None, list[dict] | None]:
    """The decision policy of the agent these settings describe, and its training log: (None, None)
    for the follower's hand-written rule; for a modular agent, its controller trained on expert
    episodes of the benchmark's city (disjoint from its evaluation episodes)."""
    if agent.get("agent", "follower") == "follower":
        return None, None
    memory, memory_options = agent.get("memory", "full"), agent.get("memory_options", {})
    decisions = [collect_decisions(benchmark.city, benchmark.observer,
                                   list(itertools.islice(training_stream(benchmark, f"{stream}:{seed}"), count)), memory,
                                   memory_options)
                 for count, stream in ((train_episodes, "train"), (validation_episodes, "validation"))]
    options = {k: v for k, v in agent.items() if k not in AGENT_KEYS}
    policy, log = train_modular_policy(*decisions, ModularTrainingConfig(**{"seed": seed, **options}))
    return policy.decide, log


@functools.lru_cache(maxsize=2)  # the runs of a study go seed by seed: both splits of the current seed
def _benchmark(seed: int, split: str, city_size: int, per_subset: int) -> NavBenchmark:
    return build_benchmark(seed, split, city_size=city_size, per_subset=per_subset)


@dataclass(frozen=True)
class AgentRun(StudyRun):
    """One agent (a variant of the study) with one seed: trained if it learns (on the seed's city),
    then run on every episode of both splits of the seed's benchmark."""

    spec: dict[str, Any]
    city_size: int
    per_subset: int
    train_episodes: int
    validation_episodes: int

    @property
    def recipe(self) -> dict[str, Any]:
        """The agent and the benchmark, and for a modular agent the episodes it learns from."""
        learns = self.spec.get("agent") == "modular"
        episodes = {"train_episodes": self.train_episodes, "validation_episodes": self.validation_episodes}
        return {"spec": self.spec, "city_size": self.city_size, "per_subset": self.per_subset,
                **(episodes if learns else {})}

    def execute(self) -> None:
        home = _benchmark(self.seed, "test", self.city_size, self.per_subset)
        policy, log = make_policy(self.spec, self.seed, home, self.train_episodes, self.validation_episodes)
        episodes = []
        for split in SPLITS:
            benchmark = home if split == "test" else _benchmark(self.seed, split, self.city_size, self.per_subset)
            agent = FollowerAgent(memory=self.spec.get("memory", "full"),
                                  memory_options=self.spec.get("memory_options", {}), policy=policy)
            episodes += [{"split": split, **row} for row in evaluate_episodes(benchmark, agent)]
        atomic_write_json(self.result_path, {"episodes": episodes, "training": log})


def study_runs(config: NavStudyConfig) -> list[AgentRun]:
    """Every agent with every seed, seed-major."""
    return [AgentRun(variant, seed, os.path.join(config.output_dir, "runs", variant, f"seed{seed}"), None, spec,
                     config.city_size, config.per_subset, config.train_episodes, config.validation_episodes)
            for seed in config.seeds for variant, spec in config.agents.items()]


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


def _episode(row: Mapping[str, Any]) -> tuple:
    return row["seed"], row["subset"], row["episode"]


def _summarise(records: list[dict], variants: list[str], reference: str) -> dict[str, Any]:
    summary: dict[str, Any] = {"conventions": {"A": CONVENTION_A, "B": CONVENTION_B}, "splits": {}}
    for split in SPLITS:
        per_variant = {}
        for variant in variants:
            rows = [r for r in records if r["variant"] == variant and r["split"] == split]
            by_episode = {_episode(r): r for r in records if r["variant"] == reference and r["split"] == split}
            shared = [r for r in rows if _episode(r) in by_episode]  # seeds both have finished
            ref = [by_episode[_episode(r)] for r in shared]
            entry: dict[str, Any] = {}
            for subset in (*SUBSETS, "all"):
                chosen = [r for r in rows if subset in ("all", r["subset"])]
                entry[subset] = {f"{c}_{m}": bootstrap_ci(r[f"{c}_{m}"] for r in chosen) for c in "AB" for m in METRICS}
            entry["paired_vs_reference"] = {c: paired_tests(shared, ref, c) for c in "AB"}
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


def table_metrics() -> list[Metric]:
    """The results table's columns (convention B): TC per subset and overall, SPD and nDTW, per split."""
    return [metric for split in SPLITS for metric in (
        *(Metric(f"{split}/TC {subset}", f"{split} TC {subset}") for subset in (*SUBSETS, "all")),
        Metric(f"{split}/SPD", f"{split} SPD"), Metric(f"{split}/nDTW", f"{split} nDTW"))]


def run_metrics(episodes: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """One run's numbers for the results table: means over its episodes (convention B)."""
    metrics = {}
    for split in SPLITS:
        rows = [r for r in episodes if r["split"] == split]
        for subset in (*SUBSETS, "all"):
            chosen = [r["B_TC"] for r in rows if subset in ("all", r["subset"])]
            metrics[f"{split}/TC {subset}"] = sum(chosen) / len(chosen)
        for name in ("SPD", "nDTW"):
            metrics[f"{split}/{name}"] = sum(r[f"B_{name}"] for r in rows) / len(rows)
    return metrics


def run_nav_study(config: NavStudyConfig, jobs: int = 1, console: Console | None = None) -> dict[str, Any]:
    """Run every agent with every seed on the study harness (finished runs are skipped), then report
    (see :func:`report_nav_study`). Raises :class:`RunsFailed` after the report if runs failed."""
    failed = run_study(study_runs(config), jobs, console)
    summary = report_nav_study(config, console)
    if failed:
        raise RunsFailed(failed)
    return summary


def report_nav_study(config: NavStudyConfig, console: Console | None = None) -> dict[str, Any]:
    """From the finished runs: `results.md`/`.csv`/`.json` (the harness's table: mean and t-interval over
    seeds; then, per episode, both conventions with bootstrap intervals and paired tests against the
    reference agent), `episodes.csv`, `tc_by_subset.png` and, with modular agents,
    `modular_training.png`. Returns the rows, the per-episode statistics and the training logs."""
    console = console or Console()
    check_recipes(study_runs(config), finished_only=True)
    records, results, logs = [], [], {}
    for run in study_runs(config):
        if not run.done:
            continue
        with open(run.result_path) as handle:
            result = json.load(handle)
        records += [{"variant": run.variant, "seed": run.seed, **row} for row in result["episodes"]]
        results.append((run.variant, run.seed, run_metrics(result["episodes"])))
        if result["training"] is not None:
            logs[f"{run.variant}/seed{run.seed}"] = result["training"]
    variants = [variant for variant in config.agents if any(name == variant for name, _, _ in results)]
    if not variants:
        console.print("No finished runs yet.")
        return {}
    os.makedirs(config.output_dir, exist_ok=True)
    rows = summarize(results, variants, table_metrics())
    per_episode = _summarise(records, variants, config.reference)
    seeds = sorted({seed for _, seed, _ in results})
    note = (f"Seeds {', '.join(map(str, seeds))}; {config.per_subset} episodes per subset, split and seed. Task "
            "completion (TC, %), SPD (m) and nDTW in convention B; mean over seeds ± the half-width of the 95% "
            "Student-t interval over seeds.")
    appendix = "Per episode:\n\n" + results_markdown(per_episode, variants, config.reference, seeds, config.per_subset)
    settings = {key: value for key, value in vars(config).items() if key != "output_dir"}
    table = write_results(config.output_dir, rows, table_metrics(), note=note, settings=settings, appendix=appendix,
                          details={"per_episode": per_episode, "training": logs})
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(records[0]))
    writer.writeheader()
    writer.writerows({k: (v if not isinstance(v, float) or math.isfinite(v) else "inf") for k, v in r.items()}
                     for r in records)
    atomic_write_text(os.path.join(config.output_dir, "episodes.csv"), text.getvalue())
    plot_bars(rows, {f"{split}: task completion (convention B)": [Metric(f"{split}/TC {s}", s) for s in SUBSETS]
                     for split in SPLITS}, os.path.join(config.output_dir, "tc_by_subset.png"), ylabel="TC (%)",
              ylim=(0, 105))
    if logs:
        learners = [variant for variant in variants if any(key.startswith(f"{variant}/") for key in logs)]
        accuracy = "held-out decisions matching the expert"
        panels = {title: {variant: [[(row["step"], scale * row[key]) for row in log]
                                    for name, log in logs.items() if name.startswith(f"{variant}/")]
                          for variant in learners}
                  for title, key, scale in (("mu", "mu", 1.0), (accuracy, "validation_accuracy", 100.0))}
        plot_curves(panels, learners, os.path.join(config.output_dir, "modular_training.png"), xlabel="step",
                    ylabels={"mu": "mu", accuracy: "%"})
    console.print(table)
    return {"rows": rows, **per_episode, "training": logs}
