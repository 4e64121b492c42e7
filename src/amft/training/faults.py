"""Faults of a long run: reward functions that raise or run past a time limit, and optimizer steps whose loss
or gradients are not finite (see docs/design.md, 'Faults').
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from transformers import TrainerCallback

logger = logging.getLogger(__name__)

#: How much of a prompt a report quotes.
PROMPT_EXCERPT = 200


class RewardFailure(RuntimeError):
    """A reward function raised or ran past its time limit on a sample, and the run does not skip such samples."""


class RewardTimeout(BaseException):
    """Raised inside a reward function that runs past its limit. A BaseException, like KeyboardInterrupt, so that
    the function's own ``except Exception`` clauses do not swallow it."""


def _raise_in_thread(thread_id: int, exception: type[BaseException] | None) -> None:
    # Python's own way to interrupt a running thread: the exception is raised at its next bytecode;
    # None withdraws one that has not been raised yet.
    target = ctypes.c_ulong(thread_id)
    ctypes.pythonapi.PyThreadState_SetAsyncExc(target, ctypes.py_object(exception) if exception else None)


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise `RewardTimeout` in the calling thread once the block has run for ``seconds`` (None: no limit).

    A watchdog thread raises it at the block's next Python bytecode. Signals are left alone: Math-Verify's own
    timeouts use SIGALRM and would cancel an outer alarm. A call that does not return to Python (a C extension,
    a blocking read) is stopped when it does.
    """
    if seconds is None:
        yield
        return
    target, lock = threading.get_ident(), threading.Lock()
    state = {"running": True, "fired": False}

    def expire() -> None:
        with lock:
            if state["running"]:
                state["fired"] = True
                _raise_in_thread(target, RewardTimeout)

    watchdog = threading.Timer(seconds, expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        yield
    finally:
        watchdog.cancel()
        with lock:
            state["running"] = False
            if state["fired"]:  # it fired as the block ended: withdraw it if it has not been raised yet
                _raise_in_thread(target, None)


class GuardedReward:
    """A reward function whose failures are reported per sample (see docs/design.md, 'Faults').

    The batch is scored in one call, as TRL calls reward functions. If that call raises or runs past
    ``timeout_seconds``, each sample is scored alone (each call with the same limit) to find the ones that
    fail. A failing sample stops the run with a `RewardFailure` naming the function, the sample's index in the
    batch and its prompt, or, with ``skip_failures``, gets ``None``, which TRL scores as a missing reward
    (NaN), and is counted in `failures`. The samples scored alone are scored again, so a function with side
    effects (logging) sees them twice.
    """

    def __init__(self, function: Callable[..., list[Any]], timeout_seconds: float | None, skip_failures: bool) -> None:
        self.function = function
        self.timeout_seconds = timeout_seconds
        self.skip_failures = skip_failures
        self.__name__ = getattr(function, "__name__", type(function).__name__)  # TRL logs rewards under it
        #: samples scored as missing since `take_failures` was last called
        self.failures = 0

    def __call__(self, prompts: list[Any], completions: list[Any], **columns: Any) -> list[Any]:
        try:
            with time_limit(self.timeout_seconds):
                return self.function(prompts=prompts, completions=completions, **columns)
        except (Exception, RewardTimeout) as error:
            logger.warning("reward function %r %s on a batch of %d; scoring its samples one by one", self.__name__,
                           self._failure(error), len(prompts))
        return [self._score_alone(index, prompts, completions, columns) for index in range(len(prompts))]

    def take_failures(self) -> int:
        failures, self.failures = self.failures, 0
        return failures

    def _failure(self, error: BaseException) -> str:
        if isinstance(error, RewardTimeout):
            return f"ran past its limit of {self.timeout_seconds} s"
        return f"raised {type(error).__name__}: {error}"

    def _score_alone(self, index: int, prompts: list[Any], completions: list[Any], columns: dict[str, Any]) -> Any:
        count = len(prompts)
        # Per-sample columns are lists of one value per sample; the rest (trainer_state, log_metric) stay whole.
        alone = {key: value[index : index + 1] if isinstance(value, list) and len(value) == count else value
                 for key, value in columns.items()}
        try:
            with time_limit(self.timeout_seconds):
                (value,) = self.function(prompts=prompts[index : index + 1],
                                         completions=completions[index : index + 1], **alone)
            return value
        except (Exception, RewardTimeout) as error:
            step = getattr(columns.get("trainer_state"), "global_step", None)
            report = (f"reward function {self.__name__!r} {self._failure(error)} on sample {index} of the {count} "
                      f"scored by this process at step {step} (prompt: {str(prompts[index])[:PROMPT_EXCERPT]!r})")
            if not self.skip_failures:
                cause = None if isinstance(error, RewardTimeout) else error
                raise RewardFailure(f"{report}; set skip_failed_rewards to score such samples as missing") from cause
            logger.warning("%s: scored as missing", report)
            self.failures += 1
            return None


class NonFiniteStepSkip(TrainerCallback):
    """Skips each optimizer step whose loss (any micro-batch's) or gradients are not all finite.

    Right before the optimizer runs, every gradient is dropped (``grad = None``): torch optimizers then leave
    each parameter, its moments and its step count as they were. The decision is taken over all processes,
    so that sharded gradients skip together. The learning-rate schedule and the step counter go on. (Not
    for DeepSpeed, whose engine steps inside the backward pass.)
    """

    def __init__(self, reduce: Callable[[torch.Tensor], torch.Tensor], metrics: dict[str, list[float]]) -> None:
        self._reduce = reduce
        self._metrics = metrics
        self._loss_finite = True
        #: steps skipped since training started in this process
        self.skipped_steps = 0

    def record_loss(self, loss: torch.Tensor) -> None:
        self._loss_finite = self._loss_finite and bool(torch.isfinite(loss).all())

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        params = [p for group in optimizer.param_groups for p in group["params"]]
        local = [p.grad.to_local() if hasattr(p.grad, "to_local") else p.grad for p in params if p.grad is not None]
        finite = torch.stack([g.isfinite().all().to(args.device) for g in local]).all() if local else True
        nonfinite = torch.tensor(float(not (self._loss_finite and bool(finite))), device=args.device)
        skip = bool(self._reduce(nonfinite) > 0)
        self._loss_finite = True
        if skip:
            for p in params:
                p.grad = None
            self.skipped_steps += 1
            logger.warning("step %d: the loss or a gradient is not finite; the optimizer step is skipped "
                           "(%d skipped so far)", state.global_step + 1, self.skipped_steps)
        self._metrics["faults/skipped_step"].append(float(skip))
