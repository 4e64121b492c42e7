"""The decisions the code relies on are in the repository: comments and docstrings point to
`docs/design.md` by section title, never to a document outside the repository. The README's study
tables are what the committed results files say."""

from __future__ import annotations

import ast
import io
import json
import re
import tokenize
from pathlib import Path

import pytest

import amft

SOURCE_ROOT = Path(amft.__file__).parent
REPOSITORY = SOURCE_ROOT.parent.parent
DESIGN = REPOSITORY / "docs" / "design.md"
SOURCES = sorted(SOURCE_ROOT.rglob("*.py"))
#: everything whose comments could cite a document: the library, its tests and its benchmarks
CODE = SOURCES + sorted((REPOSITORY / "tests").rglob("*.py")) + sorted((REPOSITORY / "benchmarks").rglob("*.py"))

#: references to the outside specification: its path, its sections, its decision tags (a letter and a digit)
OUTSIDE_SPEC = re.compile(r"(?i:shared/spec|\bspec\b)|§|\b[DGMV][1-9]\b")
#: every file that could point into the design document: the code, the scripts, the configs and the other docs
#: (this file's examples excepted)
CITING = [path for path in CODE if path != Path(__file__)] + sorted((REPOSITORY / "scripts").glob("*.py")) + sorted(
    (REPOSITORY / "configs").rglob("*.yaml")) + [
    REPOSITORY / "README.md", *sorted(path for path in (REPOSITORY / "docs").rglob("*.md") if path != DESIGN)]
#: a pointer into the design document (bare, or as a Markdown link) followed by its quoted section titles:
#: docs/design.md, 'One' or docs/design.md, 'One' and 'Two'
POINTER = re.compile(r"""docs/design\.md(?:\]\([^)]*\))?,\s*((?:['"][^'"]{1,120}['"](?:,?\s*(?:and\s+)?))+)""")
#: a line break with the next line's indentation and comment marker (`#` or `#:`): a citation may wrap across it
LINE_BREAK = re.compile(r"\n\s*(?:#:?\s*)?")


def prose(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every comment and every docstring-like string statement of a source file."""
    source = path.read_text(encoding="utf-8")
    found = [
        (token.start[0], token.string)
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            found.append((node.lineno, node.value.value))
    return found


def design_sections() -> set[str]:
    titles = [line.lstrip("#").strip() for line in DESIGN.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    assert len(titles) == len(set(titles)), "docs/design.md has two sections with the same title"
    return set(titles)


def relative(path: Path) -> str:
    return str(path.relative_to(REPOSITORY))


def test_the_prose_reader_finds_comments_and_docstrings(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('"""Module (spec D3)."""\nx = 1  # see shared/spec\ndef f():\n    """Decision G4."""\n')
    flagged = [line for line, text in prose(sample) if OUTSIDE_SPEC.search(text)]
    assert sorted(flagged) == [1, 2, 4]


@pytest.mark.parametrize("path", CODE, ids=relative)
def test_no_reference_to_an_outside_spec(path: Path) -> None:
    bad = [f"{relative(path)}:{line}: {OUTSIDE_SPEC.search(text).group(0)!r}"
           for line, text in prose(path) if OUTSIDE_SPEC.search(text)]
    assert not bad, "cite docs/design.md instead of the outside specification:\n" + "\n".join(bad)


def cited_sections(text: str) -> list[str]:
    """The design sections a text cites by title, citations wrapped across comment or docstring lines included."""
    unwrapped = LINE_BREAK.sub(" ", text)
    return [title for match in POINTER.finditer(unwrapped) for title in re.findall(r"""['"]([^'"]+)['"]""", match.group(1))]


def test_the_citation_reader_finds_wrapped_and_paired_titles() -> None:
    text = ("x = 1  # see docs/design.md, 'Gradient\n    # accumulation and several processes'.\n"
            '"""Read [docs/design.md](docs/design.md), \'The meta-gradient\' and\n    \'Faults\')."""\n'
            "#: see docs/design.md, 'Checkpoints and\n#: resumption'; plain docs/design.md, then prose\n")
    assert cited_sections(text) == ["Gradient accumulation and several processes", "The meta-gradient", "Faults",
                                   "Checkpoints and resumption"]


def test_every_cited_design_section_exists() -> None:
    sections = design_sections()
    cited = {(relative(path), title) for path in CITING for title in cited_sections(path.read_text(encoding="utf-8"))}
    assert cited, "no file points to a section of docs/design.md"
    missing = sorted(f"{where}: '{title}'" for where, title in cited if title not in sections)
    assert not missing, "sections cited but absent from docs/design.md:\n" + "\n".join(missing)


def test_the_readme_links_the_design_document() -> None:
    assert "docs/design.md" in (REPOSITORY / "README.md").read_text(encoding="utf-8")


#: the README's tables of the decisive studies: the results file each copies, and the splits it shows
README_TABLES = {"gp-decisive-study": ["id", "rl-only", "unseen-deals"]}


@pytest.mark.parametrize("study", README_TABLES)
def test_the_readme_table_is_the_committed_results(study: str, load_script) -> None:
    results = json.loads((REPOSITORY / "docs" / "results" / f"{study}.json").read_text(encoding="utf-8"))
    table = load_script("readme_table").readme_table(results, README_TABLES[study])
    assert table in (REPOSITORY / "README.md").read_text(encoding="utf-8"), (
        f"the README's table of {study} differs from `python scripts/readme_table.py docs/results/{study}.json "
        f"{' '.join(README_TABLES[study])}`")


def test_the_readme_table_marks_each_verdict(load_script) -> None:
    row = {"variant": "amft", "runs": 3, "id": {"mean": 0.986, "ci95": 0.012}, "mu_final": 0.81,
           "vs_frontier": {"dominated_by": ["mu-0.7", "mu-0.5"], "dominated_with_intervals_by": ["mu-0.5"]},
           "vs_reference": {"id": {"mean": 0.083, "ci95": 0.104}, "rl-only": {"mean": -0.071, "ci95": 0.117}}}
    frontier_row = {"variant": "mu-0.1", "runs": 3, "id": {"mean": 0.91, "ci95": 0.111}, "vs_frontier": {"mu": 0.1}}
    above_row = {**frontier_row, "variant": "gac", "vs_frontier": {"dominated_by": []}}
    frontier = [{**frontier_row, "variant": name, "vs_frontier": {"mu": mu}} for name, mu in (("mu-0.7", 0.7), ("mu-0.5", 0.5))]
    lines = load_script("readme_table").readme_table({"variants": [row, frontier_row, above_row, *frontier]}, ["id"]).splitlines()
    assert lines[2] == "| amft | 3 | 98.6 ± 1.2 | below mu=0.7, 0.5 [with intervals: 0.5] | +8.3 ± 10.4 / -7.1 ± 11.7 | 0.81 |"
    assert lines[3] == "| mu-0.1 | 3 | 91.0 ± 11.1 | frontier (mu=0.1) | - | - |"
    assert lines[4] == "| gac | 3 | 91.0 ± 11.1 | **on or above** | - | - |"
