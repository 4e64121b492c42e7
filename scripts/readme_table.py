"""The README's table of a decisive study, printed from the study's committed results.json.

    python scripts/readme_table.py docs/results/gp-decisive-study.json id rl-only unseen-deals

One row per variant: success per split (mean ± 95% interval over seeds, percent), the verdict against the
fixed-mu frontier (the fixed mus above it on both frontier splits by the means, in brackets those above it
with the paired interval clear of zero), the paired difference from the study's reference variant on `id`
and `rl-only`, and the final mu. The README copies the output whole, so its numbers can be checked against
the results file (tests/test_docs.py does).
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def percent(measure: dict[str, float | None], sign: str = "") -> str:
    """'mean ± interval' in percent, one decimal; the mean alone where one seed gives no interval."""
    mean = f"{100 * measure['mean']:{sign}.1f}"
    return mean if measure["ci95"] is None else f"{mean} ± {100 * measure['ci95']:.1f}"


def frontier_verdict(verdict: dict[str, Any], mus: dict[str, float]) -> str:
    """The verdict against the frontier whose variants have the mus ``mus`` (name -> mu)."""
    if "mu" in verdict:
        return f"frontier (mu={verdict['mu']:g})"
    if not verdict.get("dominated_by"):
        return "**on or above**"
    text = "below mu=" + ", ".join(f"{mus[name]:g}" for name in verdict["dominated_by"])
    if verdict.get("dominated_with_intervals_by"):
        text += " [with intervals: " + ", ".join(f"{mus[name]:g}" for name in verdict["dominated_with_intervals_by"]) + "]"
    return text


def reference_difference(difference: dict[str, Any] | None) -> str:
    if not difference:
        return "-"
    return " / ".join(percent(difference[split], "+") for split in ("id", "rl-only"))


def readme_table(results: dict[str, Any], splits: list[str]) -> str:
    """The Markdown table of ``results`` (a study's results.json) over ``splits``."""
    header = ["variant", "seeds", *(f"`{split}`" for split in splits), "vs the fixed-mu frontier",
              "minus tuned two-stage (`id` / `rl-only`, paired)", "final mu"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    mus = {row["variant"]: row["vs_frontier"]["mu"] for row in results["variants"] if "mu" in row.get("vs_frontier", {})}
    for row in results["variants"]:
        mu = "-" if row.get("mu_final") is None else f"{row['mu_final']:.2f}"
        cells = [row["variant"], str(row["runs"]), *(percent(row[split]) for split in splits),
                 frontier_verdict(row.get("vs_frontier") or {}, mus), reference_difference(row.get("vs_reference")), mu]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="a study's results.json (docs/results/STUDY.json)")
    parser.add_argument("splits", nargs="+", help="the splits to show, in order")
    options = parser.parse_args()
    with open(options.results, encoding="utf-8") as file:
        print(readme_table(json.load(file), options.splits))


if __name__ == "__main__":
    main()
