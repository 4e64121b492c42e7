"""One loader for the options of `amft`: YAML files (configs and study files) and flags.

Every option has one owner, a dataclass that declares and explains it: the run
(:class:`~amft.cli.arguments.RunArguments`), the chosen task's config (``amft.tasks``), and the
engine and method (:class:`~amft.training.AMFTConfig`). A YAML file maps option names to values;
flags override the file. A key that no owner declares is an error naming the key and the file,
and a key that another task declares says which task owns it. Values from a file go through the
same conversions as flags (``1e-3`` is a float, ``"true"`` a bool).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import yaml

from amft.cli.arguments import RunArguments, options_without_effect
from amft.defaults import declared_default
from amft.tasks import available_tasks, task_config_class, task_names, task_owning_option

__all__ = [
    "OptionsError",
    "CommandLine",
    "check_keys",
    "check_run_keys",
    "field_names",
    "load_dataclass",
    "owners_of_run",
    "read_command_line",
    "read_mapping",
    "resolve",
    "select_variants",
    "study_parser",
    "task_and_file",
    "task_of",
]

#: a mapping of environment variables to set, as in TRL's config files
ENV_KEY = "env"


class OptionsError(ValueError):
    """Options that cannot be used; the message names the file (or the command line) and the key."""


def read_mapping(path: str) -> dict[str, Any]:
    """The YAML mapping in the file ``path`` (an empty file is an empty mapping)."""
    try:
        with open(path) as handle:
            data = yaml.safe_load(handle)
    except OSError as error:
        raise OptionsError(f"{path}: cannot read the file: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise OptionsError(f"{path}: not valid YAML: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise OptionsError(f"{path}: expected a mapping of option names to values, got {type(data).__name__}")
    return data


def field_names(*owners: type) -> set[str]:
    return {f.name for owner in owners for f in dataclasses.fields(owner) if f.init}


def check_keys(values: Mapping[str, Any], known: Iterable[str], where: str, task: str | None = None) -> None:
    """Refuse the keys of ``values`` outside ``known``, naming each and ``where`` they come from;
    with ``task``, a key that another task declares says which task owns it."""
    known = set(known)
    unknown = [key for key in values if key not in known]
    if not unknown:
        return
    problems = []
    for key in unknown:
        owner = task_owning_option(str(key)) if task is not None else None
        if owner is not None:
            problems.append(f"{key!r} is an option of task {owner}, and the task here is {task}")
            continue
        close = difflib.get_close_matches(str(key), known, n=1)
        problems.append(f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise OptionsError(f"{where}: {'; '.join(problems)}")


def load_dataclass(cls: type, values: Mapping[str, Any], where: str) -> Any:
    """``cls(**values)``, its keys checked first; errors name ``where``."""
    check_keys(values, field_names(cls), where)
    missing = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise OptionsError(f"{where}: missing key(s) {', '.join(map(repr, missing))}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise OptionsError(f"{where}: {error}") from None


def check_run_keys(values: Mapping[str, Any], where: str) -> None:
    """Refuse the keys of ``values`` that are no option of a run of its task (see :func:`check_keys`)."""
    task = task_of(values)
    check_keys(values, field_names(*owners_of_run(task)), where, task)


def task_of(values: Mapping[str, Any]) -> str:
    """The task named by ``values`` (its ``task`` key), else the default task; checked."""
    task = values.get("task") or RunArguments.task
    if task not in available_tasks():
        raise OptionsError(f"unknown task {task!r}; known tasks: {', '.join(available_tasks())}")
    return task


def owners_of_run(task: str, *, before: Sequence[type] = (), engine: bool = True) -> tuple[type, ...]:
    """The dataclasses that own the options of a run of ``task``: ``before`` (a command's own), the
    run, the task's config and, with ``engine``, `AMFTConfig`."""
    owners: list[type] = [*before, RunArguments, task_config_class(task)]
    if engine:
        from amft.training import AMFTConfig

        owners.append(AMFTConfig)
    return tuple(owners)


def _parser(owners: Sequence[type], task: str, prog: str, description: str | None, exit_on_error: bool):
    from transformers import HfArgumentParser

    others = [name for name in task_names() if task_config_class(name) is not task_config_class(task)]
    parser = HfArgumentParser(
        owners, prog=prog, allow_abbrev=False, exit_on_error=exit_on_error,
        description=f"{description or ''} Options come as flags or as keys of a YAML file (--config); flags "
        f"override the file. Shown: the options of task {task}.".strip(),
        epilog=f"These are the options of task {task} (see '{task} task options'). For another task's: "
        f"{prog} --task NAME --help, NAME one of {', '.join(others)}.",
    )
    parser.add_argument("--config", metavar="FILE",
                        help="A YAML file of options (keys are the flags' names); flags given here override it.")
    return parser


def _set_environment(values: dict[str, Any], where: str) -> None:
    variables = values.pop(ENV_KEY, {})
    if not isinstance(variables, Mapping):
        raise OptionsError(f"{where}: {ENV_KEY!r} must map environment variables to values")
    for name, value in variables.items():
        os.environ[str(name)] = str(value)


def _instantiate(owners: Sequence[type], values: Mapping[str, Any], where: str) -> tuple[Any, ...]:
    try:
        built = tuple(owner(**{name: values[name] for name in field_names(owner) if name in values}) for owner in owners)
    except (TypeError, ValueError) as error:
        raise OptionsError(f"{where}: {error}") from None
    from amft.training import AMFTConfig

    run = next(item for item in built if isinstance(item, RunArguments))
    engine = next((item for item in built if isinstance(item, AMFTConfig)), None)
    for problem in run.options_the_method_ignores(engine) if engine else ():
        raise OptionsError(f"{where}: {problem}")
    return built


def resolve(values: Mapping[str, Any], where: str, *, before: Sequence[type] = (), engine: bool = True) -> tuple[Any, ...]:
    """The option objects of one run given by ``values`` (a study's settings), in the order of
    :func:`owners_of_run`; keys and values are checked as a config file's, errors name ``where``."""
    values = dict(values)
    task = task_of(values)
    owners = owners_of_run(task, before=before, engine=engine)
    check_keys(values, field_names(*owners), where, task)
    parser = _parser(owners, task, "amft", None, exit_on_error=False)
    parser.set_defaults(**values)
    try:
        namespace = parser.parse_args([])
    except argparse.ArgumentError as error:
        raise OptionsError(f"{where}: {error}") from None
    return _instantiate(owners, vars(namespace), where)


@dataclasses.dataclass
class CommandLine:
    """The options of one command line: their owners and the values parsed (file, then flags)."""

    owners: tuple[type, ...]
    values: dict[str, Any]
    source: str  # the config file, or "the command line"
    #: the options the file or the flags give (the rest keep their defaults)
    given: frozenset[str] = frozenset()
    #: the options only the command's own preset gives (no user file, no flag)
    preset: frozenset[str] = frozenset()

    def build(self) -> tuple[Any, ...]:
        """One object per owner, in the order of :func:`owners_of_run`. A preset's setting of an
        option that the user's flags switch off (a demo's quick-evaluation size under
        ``--progress_eval_steps 0``, its AMFT controller's settings under ``--method sft``) is the
        preset's, not the user's: it returns to its default instead of being refused."""
        values = dict(self.values)
        for name in self.preset_settings_switched_off():
            values[name] = declared_default(next(owner for owner in self.owners if name in field_names(owner)), name)
        return _instantiate(self.owners, values, self.source)

    def preset_settings_switched_off(self) -> list[str]:
        """The options only the preset gives that would not act, given the others."""
        switched_off = list(options_without_effect(self.values, self.preset))
        if "method" in self.values:
            from amft.training.methods import settings_not_read_by

            switched_off += sorted(self.preset.intersection(settings_not_read_by(self.values["method"])))
        return switched_off


def task_and_file(argv: Sequence[str]) -> tuple[str | None, str | None]:
    """The ``--task`` and ``--config`` of ``argv`` (None where not given), read before the parser
    of the task's options can be built."""
    first = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    first.add_argument("--task")
    first.add_argument("--config")
    known, _ = first.parse_known_args(argv)
    return known.task, known.config


def read_command_line(argv: Sequence[str], prog: str, description: str, *, before: Sequence[type] = (),
                      engine: bool = True, config: str | None = None, unlisted: Collection[str] = ()) -> CommandLine:
    """Parse ``argv``: ``--config FILE`` (or ``config``, a preset) gives values, flags override them.
    The task (``--task``, else the file's ``task:``) is known first, so its options are parsed and
    listed by ``--help``, except the ``unlisted`` ones (options of the owners that this command
    refuses)."""
    given_task, given_file = task_and_file(argv)
    path = given_file or config
    file_values = read_mapping(path) if path else {}
    source = path or "the command line"
    _set_environment(file_values, source)
    task = task_of({"task": given_task or file_values.get("task")})
    owners = owners_of_run(task, before=before, engine=engine)
    check_keys(file_values, field_names(*owners), source, task)
    parser = _parser(owners, task, prog, description, exit_on_error=True)
    for action in parser._actions:
        if action.dest in unlisted:
            action.help = argparse.SUPPRESS
    parser.set_defaults(**file_values)
    namespace, extra = parser.parse_known_args(list(argv))
    if extra:
        flags = {arg[2:].split("=")[0].replace("-", "_"): arg for arg in extra if arg.startswith("--")}
        check_keys(flags, field_names(*owners), "the command line", task)
        raise OptionsError(f"the command line: unexpected arguments {' '.join(extra)}")
    actions = parser._option_string_actions  # option string -> its action, aliases included
    flagged = {actions[arg.split("=")[0]].dest for arg in argv if arg.split("=")[0] in actions}
    values = vars(namespace)
    values.pop("config")
    preset = set() if given_file else set(file_values) - flagged
    return CommandLine(owners, values, source, frozenset(values) & (set(file_values) | flagged), frozenset(preset))


def _seeds(text: str) -> list[int]:
    return [int(seed) for seed in text.split(",") if seed]


def _jobs(text: str) -> int:
    jobs = int(text)
    if jobs < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {jobs}")
    return jobs


def study_keys_help(config_class: type) -> str:
    """The keys of a study file, each with its help: for a study command's `--help`."""
    return "Keys of the study file: " + " ".join(
        f"{spec.name}: {spec.metadata['help']}" for spec in dataclasses.fields(config_class) if spec.init)


def study_parser(
    prog: str, description: str, example: str, threads_hint: str = "", epilog: str | None = None
) -> argparse.ArgumentParser:
    """The options every study command has: its file, where results go, seeds, a subset of its
    variants, how many runs at a time, and aggregating only."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog, allow_abbrev=False)
    parser.add_argument("--config", required=True, help=f"The study file (YAML); see {example}.")
    parser.add_argument("--output_dir", help="Where runs and results go (overrides the file's output_dir).")
    parser.add_argument("--seeds", type=_seeds, help="Comma-separated seeds (overrides the file's seeds).")
    parser.add_argument("--variants", help="Comma-separated subset of the file's variants to run and report.")
    parser.add_argument("--jobs", type=_jobs, default=1,
                        help="Runs at the same time, each in a fresh process writing its log in its run folder "
                        f"(default 1: one after the other in this process). {threads_hint}".strip())
    parser.add_argument("--report_only", action="store_true", help="Only aggregate the finished runs; run nothing.")
    return parser


def select_variants(variants: Mapping[str, Any], chosen: str | None, where: str) -> dict[str, Any]:
    """The variants named in ``chosen`` (comma-separated; None: all), in that order."""
    if not chosen:
        return dict(variants)
    names = [name for name in chosen.split(",") if name]
    unknown = [name for name in names if name not in variants]
    if unknown:
        raise OptionsError(f"{where}: unknown variants {unknown}; the study has {list(variants)}")
    return {name: variants[name] for name in names}
