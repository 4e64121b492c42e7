"""Which options a dataclass of options was given: the fields whose value differs from their
declared default. The checks that refuse an option a run would ignore all ask this."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any


def changed_from_default(options: Any, names: Iterable[str] | None = None) -> list[str]:
    """The fields of the dataclass instance ``options`` (all, or ``names``, in their order) whose value
    is not the declared default; a field without a default always counts as changed."""
    declared = {spec.name: spec for spec in dataclasses.fields(options)}
    return [name for name in (declared if names is None else names)
            if getattr(options, name) != _default_of(declared[name])]


def declared_default(owner: type, name: str) -> Any:
    """The default the dataclass ``owner`` declares for its field ``name``."""
    return _default_of(next(spec for spec in dataclasses.fields(owner) if spec.name == name))


def _default_of(spec: dataclasses.Field) -> Any:
    if spec.default is not dataclasses.MISSING:
        return spec.default
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return object()  # equal to nothing
