"""Tasks: prompt rows, demonstration rows, a reward function, named splits and a text env.

``get_task(name, **config_overrides)`` builds a registered task::

    from amft.tasks import get_task
    task = get_task("general-points", template="compact")

Register more with ``register_task(name, factory, config=...)``; ``available_tasks()`` lists the
names.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, Callable

from .base import DataError, Env, Task, TaskConfig, Verification, completion_text, load_rows

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
    "task_config_class",
    "task_names",
    "task_owning_option",
]

_REGISTRY: dict[str, Callable[..., Task]] = {}
_CONFIGS: dict[str, Callable[[], type[TaskConfig]]] = {}
_NAMES: dict[str, str] = {}  # every registered key -> the task's own name (aliases resolved)


def register_task(
    name: str, factory: Callable[..., Task], *aliases: str, config: Callable[[], type[TaskConfig]]
) -> None:
    """Register ``factory(config=None, **config_overrides) -> Task`` under ``name`` (and
    ``aliases``); ``config()`` returns the task's config dataclass (a :class:`TaskConfig`, without
    fields for a task without options), whose fields the CLI parses as flags and YAML keys."""
    for key in (name, *aliases):
        _REGISTRY[key] = factory
        _CONFIGS[key] = config
        _NAMES[key] = name


def task_config_class(name: str) -> type[TaskConfig]:
    """The config dataclass of the task ``name``: its fields are the task's options."""
    if name not in _CONFIGS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(available_tasks())}")
    return _CONFIGS[name]()


def task_names() -> tuple[str, ...]:
    """The registered tasks by their own names (without aliases)."""
    return tuple(sorted(set(_NAMES.values())))


def task_owning_option(option: str) -> str | None:
    """The name of the task whose config declares ``option`` (None: no task's)."""
    for name in task_names():
        if option in task_config_class(name).field_names():
            return name
    return None


def available_tasks() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def _builtin(name: str, module: str, config_class: str, task_class: str, *aliases: str) -> None:
    """Register a task of this package, imported only when first used. Its task class takes
    ``(config=None, **overrides)``; its config class is a :class:`TaskConfig`."""

    def config() -> type[TaskConfig]:
        return getattr(import_module(module, __name__), config_class)

    def factory(**overrides: Any) -> Task:
        given = overrides.pop("config", None)
        unknown = sorted(set(overrides) - set(config().field_names()))
        if unknown:
            raise ValueError(f"unknown {name} option(s) {unknown}; known: {sorted(config().field_names())}")
        return getattr(import_module(module, __name__), task_class)(given, **overrides)

    register_task(name, factory, *aliases, config=config)


_builtin("general-points", ".general_points", "GeneralPointsConfig", "GeneralPointsTask", "gp-l", "general_points")
_builtin("gp-vl", ".general_points", "GeneralPointsVisualConfig", "GeneralPointsVisualTask")
_builtin("math", ".math", "MathConfig", "MathTask")
_builtin("virl", ".virl.task", "VirlConfig", "VirlTask", "virl-l")
_builtin("virl-vl", ".virl.visual", "VirlVisualConfig", "VirlVisualTask")
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
