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

from amft.evaluation.comparison import frontier_mus, frontier_verdict
from amft.evaluation.harness import Metric, interval_text


PERCENT = Metric("success", "success", scale=100.0)


def reference_difference(difference: dict[str, Any] | None) -> str:
    if not difference:
        return "-"
    return " / ".join(interval_text(difference[split], PERCENT, signed=True) for split in ("id", "rl-only"))


def readme_table(results: dict[str, Any], splits: list[str]) -> str:
    """The Markdown table of ``results`` (a study's results.json) over ``splits``."""
    header = ["variant", "seeds", *(f"`{split}`" for split in splits), "vs the fixed-mu frontier",
              "minus tuned two-stage (`id` / `rl-only`, paired)", "final mu"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    mus = frontier_mus(results["variants"])
    for row in results["variants"]:
        mu = "-" if row.get("mu_final") is None else f"{row['mu_final']:.2f}"
        cells = [row["variant"], str(row["runs"]), *(interval_text(row[split], PERCENT) for split in splits),
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
