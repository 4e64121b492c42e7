"""The table of methods is the one place a method is described: the README and `--help` read it."""

import pathlib

from amft.training import METHODS, AMFTConfig
from amft.training.methods import methods_markdown

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def test_readme_methods_table_is_the_table():
    assert methods_markdown() in README.read_text()


def test_every_method_is_listed_in_the_method_option_help():
    from dataclasses import fields

    help_text = next(f for f in fields(AMFTConfig) if f.name == "method").metadata["help"]
    for name, method in METHODS.items():
        assert f"'{name}': {method.summary}" in help_text
