"""A run's own report: the training-dynamics plot."""

import warnings

from amft.evaluation.report import plot_training_dynamics

HISTORY = [{"step": step, "amft/mu": 0.8, "amft/entropy": 1.0, "reward": 0.1 * step} for step in (1, 2, 3)]


def test_the_training_dynamics_plot_of_a_run_without_quick_evaluations_says_so(tmp_path, saved_figures):
    for name, success in (("with.png", {"id": [(1, 0.2), (3, 0.5)]}), ("without.png", {})):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an empty panel's legend would warn
            plot_training_dynamics(HISTORY, success, str(tmp_path / name))
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")
    (with_panel,), (without_panel,) = ([ax for ax in figure.axes if ax.get_title() == "evaluation success"]
                                       for figure in saved_figures)
    assert [line.get_label() for line in with_panel.get_lines()] == ["id"] and not with_panel.texts
    assert with_panel.get_lines()[0].get_ydata().tolist() == [0.2, 0.5]
    assert not without_panel.get_lines() and "no quick evaluations" in without_panel.texts[0].get_text()
