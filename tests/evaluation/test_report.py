"""A run's own report: the training-dynamics plot."""

import warnings

from amft.evaluation.report import plot_training_dynamics

HISTORY = [{"step": step, "amft/mu": 0.8, "amft/entropy": 1.0, "reward": 0.1 * step} for step in (1, 2, 3)]


def test_the_training_dynamics_plot_of_a_run_without_quick_evaluations_says_so(tmp_path):
    for name, success in (("with.png", {"id": [(1, 0.2), (3, 0.5)]}), ("without.png", {})):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an empty panel's legend would warn
            plot_training_dynamics(HISTORY, success, str(tmp_path / name))
        assert (tmp_path / name).stat().st_size > 10_000
