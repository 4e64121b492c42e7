"""Tasks: prompt rows, demonstration rows, a reward function, named splits and a text env.

``get_task(name, **config_overrides)`` builds a registered task::

    from amft.tasks import get_task
    task = get_task("general-points", template="compact")

Register more with ``register_task(name, factory)``; ``available_tasks()`` lists the names.
"""

from __future__ import annotations

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


def _general_points(**overrides: Any) -> Task:
    from .general_points import GeneralPointsConfig, GeneralPointsTask

    config = overrides.pop("config", None)
    known = set(GeneralPointsConfig.field_names())
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown general-points option(s) {unknown}; known: {sorted(known)}")
    return GeneralPointsTask(config, **overrides)


def _general_points_options() -> tuple[str, ...]:
    from .general_points import GeneralPointsConfig

    return tuple(GeneralPointsConfig.field_names())


register_task("general-points", _general_points, "gp-l", "general_points", options=_general_points_options)


def _math(**overrides: Any) -> Task:
    from .math import MathConfig, MathTask

    known = set(MathConfig.field_names())
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown math option(s) {unknown}; known: {sorted(known)}")
    return MathTask(**overrides)


def _math_options() -> tuple[str, ...]:
    from .math import MathConfig

    return MathConfig.field_names()


register_task("math", _math, options=_math_options)


def _virl(**overrides: Any) -> Task:
    from .virl.task import VirlConfig, VirlTask

    unknown = sorted(set(overrides) - set(VirlConfig.field_names()))
    if unknown:
        raise ValueError(f"unknown virl option(s) {unknown}; known: {sorted(VirlConfig.field_names())}")
    return VirlTask(**overrides)


def _virl_options() -> tuple[str, ...]:
    from .virl.task import VirlConfig

    return VirlConfig.field_names()


register_task("virl", _virl, "virl-l", options=_virl_options)


def get_task(name: str, **config_overrides: Any) -> Task:
    """The task registered as ``name``, configured with ``config_overrides``.

    Raises ``ValueError`` listing the known names for an unknown one.
    """
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(available_tasks())}") from None
    return factory(**config_overrides)
