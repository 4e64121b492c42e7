"""Fixed, seeded, versioned evaluation sets for GP-L and GP-VL (see docs/design.md, 'Evaluation sets').

Test splits (each 234 episodes by default, distinct ordered rank tuples within a split):

============== ================= =========================== ==============================
split          rule              deal sampler                accepted value multisets
============== ================= =========================== ==============================
id             (10, 10, 10)      4 ranks uniform on 1..13    ``demo``
rl-only        (10, 10, 10)      4 ranks uniform on 1..13    ``rl-only``
unseen-deals   (10, 10, 10)      4 ranks uniform on 1..13    ``unseen`` (never trained on)
ood-rule       (11, 12, 13)      3 uniform + 1 face rank     any solvable one
============== ================= =========================== ==============================

Validation splits, for choosing a study's settings without looking at a test split:
``val-id`` and ``val-rl-only`` are drawn exactly like ``id`` and ``rl-only`` (same rule,
sampler and accepted multisets, their own random stream) and also reject every deal
(ordered ranks + rule) of every test split.

Generation (:func:`generate_split`): ``rng = random.Random(f"{GENERATOR_VERSION}:{seed}:{split}")``
(string seeds are hashed with SHA-512 by ``random``, so this is stable across runs and
platforms); draw deals with the split's sampler, keep those whose value multiset is
accepted, whose ordered ranks are new and (validation splits) whose deal is in no test
split, until ``n`` are kept.

Files: ``eval_sets/<split>.jsonl``; line 1 is a header record::

    {"header": true, "generator_version": ..., "seed": 42, "split": "id", "n_episodes": 234,
     "rule": [10, 10, 10], "sampling": "id", "accept": "demo",
     "partition": {"seed": 0, "unseen_fraction": 0.15, "demo_fraction": 0.5, "target": 24,
                   "counts": {...}}}

(a validation split's header adds ``"validates": "id"`` and ``"excludes_deals_of": [<test
splits>]`` before ``partition``), then one record per episode: ``{"episode": i, "ranks": [...],
"cards": [...], "values": [...], "rule": [j, q, k]}``.

:func:`load_eval_set` checks the header against the expected settings and raises
:class:`EvalSetMismatchError` when they differ; nothing is ever regenerated silently.
Regenerate explicitly with ``python -m amft.tasks.general_points.eval_sets --write``
(``--check`` verifies the committed files byte for byte).  The committed files are for
the default :class:`GeneralPointsConfig`; a task with other partition / eval settings
generates its episodes in memory with the same function (see ``GeneralPointsTask``).

GP-VL (the cards in an image) has four test splits, each showing the deals of a GP-L test split
with a suit per card (:data:`VISUAL_SPLITS`):

============== ================ ==============
split          deals of         suits
============== ================ ==============
id             ``id``           black (S, C)
rl-only        ``rl-only``      black (S, C)
ood-rule       ``ood-rule``     black (S, C)
ood-visual     ``id``           red (H, D)
============== ================ ==============

The suit choices are drawn from ``random.Random(f"{VISUAL_GENERATOR_VERSION}:{seed}:{deals of}")``,
so ``ood-visual`` is ``id`` card for card with spades turned hearts and clubs turned diamonds: the
two differ in nothing but the look of the cards.  Files ``eval_sets/gp-vl-<split>.jsonl``; the
header records the GP-VL generator version, the split, the suit colour and, under ``deals``, the
header of the GP-L split; each episode is the GP-L one plus ``"suits": [...]``.  The image size is
not part of a file: images are drawn from the deal and suits when a task needs them.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from functools import partial
from pathlib import Path
from typing import Any, Callable

from .cards import ID_RULE, Rule, multiset, rank_symbol, sample_ranks, sampler_support
from .config import GeneralPointsConfig
from .partition import Partition, make_partition
from .rendering import draw_suits, suit_colour
from .solver import solvable

__all__ = [
    "GENERATOR_VERSION",
    "TEST_SPLITS",
    "VALIDATION_SPLITS",
    "EVAL_SPLITS",
    "SPLIT_SPECS",
    "EVAL_DIR",
    "EvalSetMismatchError",
    "UndrawableSplitError",
    "split_header",
    "generate_split",
    "render_split_file",
    "write_eval_sets",
    "load_eval_set",
    "VISUAL_GENERATOR_VERSION",
    "VISUAL_SPLITS",
    "visual_split_path",
    "visual_split_header",
    "generate_visual_split",
    "render_visual_split_file",
    "load_visual_eval_set",
    "main",
]

GENERATOR_VERSION = "gp-eval-v1"
TEST_SPLITS: tuple[str, ...] = ("id", "rl-only", "unseen-deals", "ood-rule")
#: each validation split and the test split whose drawing it repeats on other deals
VALIDATION_SPLITS: dict[str, str] = {"val-id": "id", "val-rl-only": "rl-only"}
#: every split with a file, test splits first
EVAL_SPLITS: tuple[str, ...] = TEST_SPLITS + tuple(VALIDATION_SPLITS)
#: rule: "id" or "ood" (the config's ood_rule); sampling: the deal sampler, "id" or "ood";
#: accept: a partition role or "solvable"
SPLIT_SPECS: dict[str, dict[str, str]] = {
    "id": {"rule": "id", "sampling": "id", "accept": "demo"},
    "rl-only": {"rule": "id", "sampling": "id", "accept": "rl-only"},
    "unseen-deals": {"rule": "id", "sampling": "id", "accept": "unseen"},
    "ood-rule": {"rule": "ood", "sampling": "ood", "accept": "solvable"},
}
SPLIT_SPECS.update({validation: SPLIT_SPECS[test] for validation, test in VALIDATION_SPLITS.items()})
#: the setting that leaves a partition role empty at one of its ends
_ROLE_SETTING = {"demo": "demo_fraction", "rl-only": "demo_fraction", "unseen": "unseen_fraction"}
EVAL_DIR = Path(__file__).resolve().parent / "eval_sets"

VISUAL_GENERATOR_VERSION = "gp-vl-eval-v1"
#: each GP-VL split: the GP-L test split whose deals it shows, and the colour of its suits
VISUAL_SPLITS: dict[str, tuple[str, str]] = {
    "id": ("id", "black"),
    "rl-only": ("rl-only", "black"),
    "ood-rule": ("ood-rule", "black"),
    "ood-visual": ("id", "red"),
}
VISUAL_FILE_PREFIX = "gp-vl-"


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
    header: dict[str, Any] = {
        "header": True,
        "generator_version": GENERATOR_VERSION,
        "seed": config.eval_seed,
        "split": split,
        "n_episodes": config.eval_episodes_per_split,
        "rule": list(_split_rule(split, config).as_tuple()),
        "sampling": spec["sampling"],
        "accept": spec["accept"],
    }
    if split in VALIDATION_SPLITS:
        header.update(validates=VALIDATION_SPLITS[split], excludes_deals_of=list(TEST_SPLITS))
    header["partition"] = {**part.settings(), "counts": part.counts()}
    return header


class UndrawableSplitError(ValueError):
    """The settings leave too few deals for a split."""


def _test_deals(config: GeneralPointsConfig) -> frozenset[tuple[tuple[int, ...], tuple[int, int, int]]]:
    """Every (ordered ranks, rule) of the test splits under ``config``."""
    deals: set[tuple[tuple[int, ...], tuple[int, int, int]]] = set()
    for split in TEST_SPLITS:
        try:
            rows = generate_split(split, config)
        except UndrawableSplitError:
            continue  # a test split these settings cannot draw has no deals to avoid
        deals.update((tuple(row["ranks"]), tuple(row["rule"])) for row in rows)
    return frozenset(deals)


def _undrawable(split: str, problem: str, role: str, config: GeneralPointsConfig) -> UndrawableSplitError:
    named = [_ROLE_SETTING[role]] if role in _ROLE_SETTING else []
    named += ["eval_episodes_per_split", "partition_seed"]
    settings = ", ".join(f"{name}={getattr(config, name)}" for name in named)
    return UndrawableSplitError(f"split {split!r}: {problem} ({settings}); choose other settings or do not "
                                "evaluate this split")


def generate_split(split: str, config: GeneralPointsConfig | None = None) -> list[dict[str, Any]]:
    """The episodes of ``split`` (without prompts), deterministic in the config's eval settings.

    Raises :class:`UndrawableSplitError` (naming the split and the settings) when fewer than
    ``eval_episodes_per_split`` distinct deals qualify.
    """
    config = config or GeneralPointsConfig()
    n = config.eval_episodes_per_split
    spec = _check_split(split)
    rule = _split_rule(split, config)
    role = spec["accept"]
    ood = spec["sampling"] == "ood"
    accept = None if role == "solvable" else _partition(config).members(role)

    def qualifies(ranks: tuple[int, ...]) -> bool:
        key = multiset(rule.values(ranks))
        return solvable(key, config.target) if accept is None else key in accept

    # counted over every rank tuple the sampler can draw, so that the draws below always end
    pool = frozenset(ranks for ranks in sampler_support(ood) if qualifies(ranks))
    if len(pool) < n:
        raise _undrawable(split, f"{len(pool)} distinct deals under rule {rule.as_tuple()} have a {role!r} value "
                                 f"multiset, {n} are needed", role, config)
    exclude = {ranks for ranks, deal_rule in _test_deals(config) if deal_rule == rule.as_tuple()} \
        if split in VALIDATION_SPLITS else set()
    if len(pool - exclude) < n:
        raise _undrawable(split, f"{len(pool - exclude)} distinct deals under rule {rule.as_tuple()} with a {role!r} "
                                 f"value multiset are in no test split, {n} are needed", role, config)
    rng = random.Random(f"{GENERATOR_VERSION}:{config.eval_seed}:{split}")
    seen: set[tuple[int, ...]] = set()
    rows: list[dict[str, Any]] = []
    while len(rows) < n:
        ranks = sample_ranks(rng, ood=ood)
        if ranks not in pool or ranks in exclude or ranks in seen:
            continue
        seen.add(ranks)
        rows.append({"episode": len(rows), "ranks": list(ranks), "cards": [rank_symbol(r) for r in ranks],
                     "values": rule.values(ranks), "rule": list(rule.as_tuple())})
    return rows


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=True, separators=(", ", ": "))


def render_split_file(split: str, config: GeneralPointsConfig | None = None) -> str:
    """The exact text of ``<split>.jsonl`` (header line + episode lines, ``\\n`` endings)."""
    config = config or GeneralPointsConfig()
    lines = [_dumps(split_header(split, config))] + [_dumps(r) for r in generate_split(split, config)]
    return "\n".join(lines) + "\n"


def write_eval_sets(directory: str | Path | None = None, config: GeneralPointsConfig | None = None) -> list[Path]:
    """Explicitly (re)generate every split file, GP-L's and GP-VL's, into ``directory`` (default: the package's)."""
    directory = Path(directory) if directory is not None else EVAL_DIR
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name, render in _committed_files(config).items():
        path = directory / name
        path.write_bytes(render().encode("ascii"))
        out.append(path)
    return out


def _check_deal(row: dict[str, Any]) -> None:
    ranks = tuple(int(r) for r in row["ranks"])
    rule = Rule.of(row["rule"])
    if row["values"] != rule.values(ranks) or row["cards"] != [rank_symbol(r) for r in ranks]:
        raise ValueError("cards/values do not match ranks and rule")


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
    return _read_split_file(path, expected, expected["n_episodes"], _check_deal)


def _read_split_file(path: Path, expected: dict[str, Any], n_episodes: int,
                     check_episode: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
    """The episodes of a split file whose header is ``expected``; ``check_episode`` raises on a bad one."""
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
            check_episode(row)
        except (ValueError, KeyError, TypeError) as exc:
            raise EvalSetMismatchError(f"{path}: row {i}: malformed episode: {exc}") from exc
        rows.append(row)
    if len(rows) != n_episodes:
        raise EvalSetMismatchError(f"{path}: {len(rows)} episodes, header says {n_episodes}")
    return rows


# --------------------------------------------------------------------------- the image variant


def _check_visual_split(split: str) -> tuple[str, str]:
    if split not in VISUAL_SPLITS:
        raise ValueError(f"unknown GP-VL split {split!r}; known: {tuple(VISUAL_SPLITS)}")
    return VISUAL_SPLITS[split]


def visual_split_path(split: str, directory: str | Path | None = None) -> Path:
    """The file of the GP-VL split ``split``."""
    _check_visual_split(split)
    return (Path(directory) if directory is not None else EVAL_DIR) / f"{VISUAL_FILE_PREFIX}{split}.jsonl"


def visual_split_header(split: str, config: GeneralPointsConfig | None = None) -> dict[str, Any]:
    """The header record a GP-VL split file must carry: its own version, the suit colour, and the header of
    the GP-L split whose deals it shows."""
    deals_of, colour = _check_visual_split(split)
    return {"header": True, "generator_version": VISUAL_GENERATOR_VERSION, "split": split, "suit_colour": colour,
            "deals": split_header(deals_of, config)}


def generate_visual_split(split: str, config: GeneralPointsConfig | None = None) -> list[dict[str, Any]]:
    """The episodes of the GP-VL split ``split``: the deals of its GP-L split, each card with a suit.

    The suits come from a stream seeded by the version, ``eval_seed`` and the GP-L split, so the splits
    that show the same deals draw the same suit choices: ``ood-visual`` is ``id`` with each suit
    replaced by its red counterpart (spades by hearts, clubs by diamonds).
    """
    config = config or GeneralPointsConfig()
    deals_of, colour = _check_visual_split(split)
    rng = random.Random(f"{VISUAL_GENERATOR_VERSION}:{config.eval_seed}:{deals_of}")
    return [{**episode, "suits": draw_suits(rng, colour)} for episode in generate_split(deals_of, config)]


def render_visual_split_file(split: str, config: GeneralPointsConfig | None = None) -> str:
    """The exact text of a GP-VL split file (header line + episode lines, ``\\n`` endings)."""
    lines = [_dumps(visual_split_header(split, config))] + [_dumps(r) for r in generate_visual_split(split, config)]
    return "\n".join(lines) + "\n"


def load_visual_eval_set(split: str, config: GeneralPointsConfig | None = None,
                         directory: str | Path | None = None) -> list[dict[str, Any]]:
    """Load a GP-VL split file and check its header against ``config``, as :func:`load_eval_set` does."""
    expected = visual_split_header(split, config)
    colour = expected["suit_colour"]

    def check_episode(row: dict[str, Any]) -> None:
        _check_deal(row)
        suits = row["suits"]
        if not isinstance(suits, list) or len(suits) != 4 or any(suit_colour(s) != colour for s in suits):
            raise ValueError(f"suits must be four {colour} suits, got {suits!r}")

    return _read_split_file(visual_split_path(split, directory), expected, expected["deals"]["n_episodes"],
                            check_episode)


def _committed_files(config: GeneralPointsConfig | None) -> dict[str, Callable[[], str]]:
    """File name -> its text, for every committed split file."""
    files: dict[str, Callable[[], str]] = {
        f"{split}.jsonl": partial(render_split_file, split, config) for split in EVAL_SPLITS}
    files.update({visual_split_path(split).name: partial(render_visual_split_file, split, config)
                  for split in VISUAL_SPLITS})
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m amft.tasks.general_points.eval_sets",
                                     description="Write or check the fixed GP-L and GP-VL evaluation sets "
                                                 "(default config).")
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
    for name, render in _committed_files(None).items():
        path = directory / name
        ok = path.exists() and path.read_bytes() == render().encode("ascii")
        print(f"{'ok' if ok else 'DIFFERS'} {path}")
        bad += not ok
    return 1 if bad else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
