"""Layers only look down: a module may import its own layer and the layers below it, never one above.

The order is declared once, here. A module belongs to the layer of the longest prefix of its
name listed below, so a module can sit above the rest of its package (the navigation study runs
agents and writes tables; the tasks may use the navigation benchmark, not the study).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import amft

SOURCE_ROOT = Path(amft.__file__).parent

LAYERS: tuple[tuple[str, ...], ...] = (
    ("amft", "amft.io", "amft.defaults", "amft.algorithm"),  # neutral helpers and the pure-torch algorithm core
    ("amft.models", "amft.memory"),  # tokenizers and model loading; Mem4Nav's memory
    ("amft.navigation",),  # the city benchmark and its agents, on the memory
    ("amft.tasks",),  # tasks, their data, verifiers and environments
    ("amft.training",),  # the training engine on TRL
    ("amft.evaluation", "amft.navigation.study"),  # evaluation, reports and studies
    ("amft.cli", "amft.__main__"),  # the command line
)
LEVEL = {prefix: level for level, prefixes in enumerate(LAYERS) for prefix in prefixes}
TRAINING_LEVEL = LEVEL["amft.training"]


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def level_of(module: str) -> int:
    """The layer of the longest listed prefix of ``module``."""
    parts = module.split(".")
    for length in range(len(parts), 0, -1):
        prefix = ".".join(parts[:length])
        if prefix in LEVEL:
            return LEVEL[prefix]
    raise AssertionError(f"{module} belongs to no layer: add its package to LAYERS in {__file__}")


def exists(module: str) -> bool:
    path = SOURCE_ROOT.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_modules(module: str, source: str, *, package: bool = False) -> list[tuple[int, str]]:
    """(line, module) for every import of an amft module in ``source`` (the text of ``module``), lazy
    ones inside functions included. ``from package import name`` counts as importing ``package.name``
    when that is a module."""
    home = module if package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = home.split(".")[: len(home.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.append((node.lineno, submodule if exists(submodule) else base))
    return [(line, target) for line, target in found if target == "amft" or target.startswith("amft.")]


SOURCES = sorted(SOURCE_ROOT.rglob("*.py"))


def test_every_module_has_a_layer():
    assert SOURCES
    for path in SOURCES:
        level_of(module_name(path))


@pytest.mark.parametrize("path", SOURCES, ids=module_name)
def test_module_imports_only_its_layer_and_below(path):
    module = module_name(path)
    imports = imported_modules(module, path.read_text(), package=path.name == "__init__.py")
    upward = [f"line {line}: {target} (layer {level_of(target)})" for line, target in imports
              if level_of(target) > level_of(module)]
    assert not upward, f"{module} (layer {level_of(module)}) imports a higher layer:\n" + "\n".join(upward)


def test_the_walk_resolves_relative_and_submodule_imports():
    source = "from amft.navigation import study\nfrom ..training import trainer\nfrom .base import Task\n"
    imports = imported_modules("amft.tasks.citynav", source)
    assert imports == [(1, "amft.navigation.study"), (2, "amft.training.trainer"), (3, "amft.tasks.base")]
    assert [level_of(target) > level_of("amft.tasks.citynav") for _, target in imports] == [True, True, False]


def lower_modules() -> list[str]:
    return [module_name(path) for path in SOURCES if level_of(module_name(path)) < TRAINING_LEVEL]


IMPORT_CHECK = """
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
leaked = sorted(m for m in sys.modules if m.split(".")[0] == "trl" or m.startswith("amft.training"))
print(" ".join(leaked))
"""


@pytest.mark.parametrize("modules", [["amft.memory"], ["amft.navigation"], lower_modules()],
                         ids=["amft.memory", "amft.navigation", "every-module-below-training"])
def test_lower_layers_do_not_load_the_training_engine_or_trl(modules):
    result = subprocess.run([sys.executable, "-c", IMPORT_CHECK, *modules], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"importing {modules} loaded: {result.stdout.strip()}"
