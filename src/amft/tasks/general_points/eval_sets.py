"""Fixed, seeded, versioned evaluation sets for GP-L (see docs/design.md, 'Evaluation sets').

Splits (each 234 episodes by default, distinct ordered rank tuples within a split):

============== ================= =========================== ==============================
split          rule              deal sampler                accepted value multisets
============== ================= =========================== ==============================
id             (10, 10, 10)      4 ranks uniform on 1..13    ``demo``
rl-only        (10, 10, 10)      4 ranks uniform on 1..13    ``rl-only``
unseen-deals   (10, 10, 10)      4 ranks uniform on 1..13    ``unseen`` (never trained on)
ood-rule       (11, 12, 13)      3 uniform + 1 face rank     any solvable one
============== ================= =========================== ==============================

Generation (:func:`generate_split`): ``rng = random.Random(f"{GENERATOR_VERSION}:{seed}:{split}")``
(string seeds are hashed with SHA-512 by ``random``, so this is stable across runs and
platforms); draw deals with the split's sampler, keep those whose value multiset is
accepted and whose ordered ranks are new, until ``n`` are kept.

Files: ``eval_sets/<split>.jsonl``; line 1 is a header record::

    {"header": true, "generator_version": ..., "seed": 42, "split": "id", "n_episodes": 234,
     "rule": [10, 10, 10], "sampling": "id", "accept": "demo",
     "partition": {"seed": 0, "unseen_fraction": 0.15, "demo_fraction": 0.5, "target": 24,
                   "counts": {...}}}

then one record per episode: ``{"episode": i, "ranks": [...], "cards": [...],
"values": [...], "rule": [j, q, k]}``.

:func:`load_eval_set` checks the header against the expected settings and raises
:class:`EvalSetMismatchError` when they differ; nothing is ever regenerated silently.
Regenerate explicitly with ``python -m amft.tasks.general_points.eval_sets --write``
(``--check`` verifies the committed files byte for byte).  The committed files are for
the default :class:`GeneralPointsConfig`; a task with other partition / eval settings
generates its episodes in memory with the same function (see ``GeneralPointsTask``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

from .cards import ID_RULE, Rule, multiset, rank_symbol, sample_ranks
from .config import GeneralPointsConfig
from .partition import Partition, make_partition
from .solver import solvable

__all__ = [
    "GENERATOR_VERSION",
    "EVAL_SPLITS",
    "SPLIT_SPECS",
    "EVAL_DIR",
    "EvalSetMismatchError",
    "split_header",
    "generate_split",
    "render_split_file",
    "write_eval_sets",
    "load_eval_set",
    "main",
]

GENERATOR_VERSION = "gp-eval-v1"
EVAL_SPLITS: tuple[str, ...] = ("id", "rl-only", "unseen-deals", "ood-rule")
#: rule: "id" or "ood" (the config's ood_rule); sampling: the deal sampler, "id" or "ood";
#: accept: a partition role or "solvable"
SPLIT_SPECS: dict[str, dict[str, str]] = {
    "id": {"rule": "id", "sampling": "id", "accept": "demo"},
    "rl-only": {"rule": "id", "sampling": "id", "accept": "rl-only"},
    "unseen-deals": {"rule": "id", "sampling": "id", "accept": "unseen"},
    "ood-rule": {"rule": "ood", "sampling": "ood", "accept": "solvable"},
}
EVAL_DIR = Path(__file__).resolve().parent / "eval_sets"
_MAX_DRAWS = 2_000_000


class EvalSetMismatchError(ValueError):
    """A stored evaluation set does not match the requested settings."""


def _check_split(split: str) -> dict[str, str]:
    if split not in SPLIT_SPECS:
        raise ValueError(f"unknown split {split!r}; known: {EVAL_SPLITS}")
    return SPLIT_SPECS[split]


def _split_rule(split: str, config: GeneralPointsConfig) -> Rule:
    return ID_RULE if _check_split(split)["rule"] == "id" else config.held_out_rule


def _partition(config: GeneralPointsConfig) -> Partition:
    return make_partition(config.partition_seed, float(config.unseen_fraction), float(config.demo_fraction),
                          config.target)


def split_header(split: str, config: GeneralPointsConfig | None = None) -> dict[str, Any]:
    """The header record a file for ``split`` under ``config`` must carry."""
    config = config or GeneralPointsConfig()
    spec = _check_split(split)
    part = _partition(config)
    return {
        "header": True,
        "generator_version": GENERATOR_VERSION,
        "seed": config.eval_seed,
        "split": split,
        "n_episodes": config.eval_episodes_per_split,
        "rule": list(_split_rule(split, config).as_tuple()),
        "sampling": spec["sampling"],
        "accept": spec["accept"],
        "partition": {**part.settings(), "counts": part.counts()},
    }


def generate_split(split: str, config: GeneralPointsConfig | None = None) -> list[dict[str, Any]]:
    """The episodes of ``split`` (without prompts), deterministic in the config's eval settings."""
    config = config or GeneralPointsConfig()
    spec = _check_split(split)
    rule = _split_rule(split, config)
    part = _partition(config)
    accept = None if spec["accept"] == "solvable" else part.members(spec["accept"])
    if accept is not None and not accept:
        raise ValueError(f"split {split!r}: the partition has no {spec['accept']!r} multisets")
    rng = random.Random(f"{GENERATOR_VERSION}:{config.eval_seed}:{split}")
    seen: set[tuple[int, ...]] = set()
    rows: list[dict[str, Any]] = []
    draws = 0
    while len(rows) < config.eval_episodes_per_split:
        draws += 1
        if draws > _MAX_DRAWS:
            raise RuntimeError(f"split {split!r}: could not draw {config.eval_episodes_per_split} distinct deals")
        ranks = sample_ranks(rng, ood=spec["sampling"] == "ood")
        values = rule.values(ranks)
        key = multiset(values)
        if accept is not None:
            if key not in accept:
                continue
        elif not solvable(key, config.target):
            continue
        if ranks in seen:
            continue
        seen.add(ranks)
        rows.append({"episode": len(rows), "ranks": list(ranks), "cards": [rank_symbol(r) for r in ranks],
                     "values": values, "rule": list(rule.as_tuple())})
    return rows


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=True, separators=(", ", ": "))


def render_split_file(split: str, config: GeneralPointsConfig | None = None) -> str:
    """The exact text of ``<split>.jsonl`` (header line + episode lines, ``\\n`` endings)."""
    config = config or GeneralPointsConfig()
    lines = [_dumps(split_header(split, config))] + [_dumps(r) for r in generate_split(split, config)]
    return "\n".join(lines) + "\n"


def write_eval_sets(directory: str | Path | None = None, config: GeneralPointsConfig | None = None) -> list[Path]:
    """Explicitly (re)generate every split file into ``directory`` (default: the package's)."""
    directory = Path(directory) if directory is not None else EVAL_DIR
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for split in EVAL_SPLITS:
        path = directory / f"{split}.jsonl"
        path.write_bytes(render_split_file(split, config).encode("ascii"))
        out.append(path)
    return out


def load_eval_set(split: str, config: GeneralPointsConfig | None = None,
                  directory: str | Path | None = None) -> list[dict[str, Any]]:
    """Load ``<split>.jsonl`` and check its header against ``config`` (default config if None).

    Raises :class:`EvalSetMismatchError` if the header (generator version, seed, episode
    count, rule, partition settings and counts) differs or the body is malformed, and
    ``FileNotFoundError`` if the file is missing.  Never regenerates.
    """
    config = config or GeneralPointsConfig()
    expected = split_header(split, config)
    path = (Path(directory) if directory is not None else EVAL_DIR) / f"{split}.jsonl"
    with path.open("r", encoding="utf-8") as fh:
        lines = [line for line in fh.read().splitlines() if line.strip()]
    if not lines:
        raise EvalSetMismatchError(f"{path}: empty evaluation-set file")
    try:
        header = json.loads(lines[0])
    except json.JSONDecodeError as exc:
        raise EvalSetMismatchError(f"{path}: row 1: invalid header: {exc.msg}") from exc
    if header != expected:
        diffs = sorted(k for k in set(header) | set(expected) if header.get(k) != expected.get(k)) \
            if isinstance(header, dict) else ["<not an object>"]
        raise EvalSetMismatchError(
            f"{path}: header does not match the requested settings (differs in: {', '.join(diffs)}); "
            f"file has {header!r}, expected {expected!r}. The evaluation sets are never regenerated "
            "silently: regenerate them explicitly with `python -m amft.tasks.general_points.eval_sets --write` "
            "or use a task config whose settings match the file.")
    rows = []
    for i, line in enumerate(lines[1:], start=2):
        try:
            row = json.loads(line)
            ranks = tuple(int(r) for r in row["ranks"])
            rule = Rule.of(row["rule"])
            if row["values"] != rule.values(ranks) or row["cards"] != [rank_symbol(r) for r in ranks]:
                raise ValueError("cards/values do not match ranks and rule")
        except (ValueError, KeyError, TypeError) as exc:
            raise EvalSetMismatchError(f"{path}: row {i}: malformed episode: {exc}") from exc
        rows.append(row)
    if len(rows) != expected["n_episodes"]:
        raise EvalSetMismatchError(f"{path}: {len(rows)} episodes, header says {expected['n_episodes']}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m amft.tasks.general_points.eval_sets",
                                     description="Write or check the fixed GP-L evaluation sets (default config).")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", action="store_true", help="regenerate the files")
    group.add_argument("--check", action="store_true", help="verify that the files regenerate byte-identically")
    parser.add_argument("--dir", default=None, help=f"directory (default: {EVAL_DIR})")
    args = parser.parse_args(argv)
    directory = Path(args.dir) if args.dir else EVAL_DIR
    if args.write:
        for path in write_eval_sets(directory):
            print(f"wrote {path}")
        return 0
    bad = 0
    for split in EVAL_SPLITS:
        path = directory / f"{split}.jsonl"
        ok = path.exists() and path.read_bytes() == render_split_file(split).encode("ascii")
        print(f"{'ok' if ok else 'DIFFERS'} {path}")
        bad += not ok
    return 1 if bad else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
