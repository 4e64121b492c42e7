"""Tasks: prompt rows, demonstration rows, a reward function, named splits and a text env.

``get_task(name, **config_overrides)`` builds a registered task::

    from amft.tasks import get_task
    task = get_task("general-points", template="compact")

Register more with ``register_task(name, factory)``; ``available_tasks()`` lists the names.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, Callable

from .base import DataError, Env, Task, Verification, completion_text, load_rows

__all__ = [
    "DataError",
    "Env",
    "Task",
    "Verification",
    "completion_text",
    "load_rows",
    "get_task",
    "register_task",
    "available_tasks",
    "task_options",
]

_REGISTRY: dict[str, Callable[..., Task]] = {}
_OPTIONS: dict[str, Callable[[], tuple[str, ...]]] = {}


def register_task(
    name: str, factory: Callable[..., Task], *aliases: str, options: Callable[[], tuple[str, ...]] = tuple
) -> None:
    """Register ``factory(**config_overrides) -> Task`` under ``name`` (and ``aliases``);
    ``options()`` names the config overrides it accepts."""
    for key in (name, *aliases):
        _REGISTRY[key] = factory
        _OPTIONS[key] = options


def task_options(name: str) -> tuple[str, ...]:
    """The config options the task ``name`` accepts."""
    if name not in _OPTIONS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(available_tasks())}")
    return _OPTIONS[name]()


def available_tasks() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def _builtin(name: str, module: str, config_class: str, task_class: str, *aliases: str) -> None:
    """Register a task of this package, imported only when first used. Its task class takes
    ``(config=None, **overrides)`` and its config class names its options with ``field_names()``."""

    def options() -> tuple[str, ...]:
        return tuple(getattr(import_module(module, __name__), config_class).field_names())

    def factory(**overrides: Any) -> Task:
        config = overrides.pop("config", None)
        unknown = sorted(set(overrides) - set(options()))
        if unknown:
            raise ValueError(f"unknown {name} option(s) {unknown}; known: {sorted(options())}")
        return getattr(import_module(module, __name__), task_class)(config, **overrides)

    register_task(name, factory, *aliases, options=options)


_builtin("general-points", ".general_points", "GeneralPointsConfig", "GeneralPointsTask", "gp-l", "general_points")
_builtin("math", ".math", "MathConfig", "MathTask")
_builtin("virl", ".virl.task", "VirlConfig", "VirlTask", "virl-l")
_builtin("citynav", ".citynav", "CityNavConfig", "CityNavTask")


def get_task(name: str, **config_overrides: Any) -> Task:
    """The task registered as ``name``, configured with ``config_overrides``.

    Raises ``ValueError`` listing the known names for an unknown one.
    """
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(available_tasks())}") from None
    return factory(**config_overrides)
