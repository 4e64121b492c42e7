"""With a time budget, the training bar measures the budget (time left and steps done, not max_steps),
and a spent budget stops the run where it can resume exactly."""

from transformers import TrainerControl, TrainerState, TrainingArguments

from amft.cli.pipeline import TimeBudgetCallback, TimeBudgetProgressCallback, clock
from amft.training import AMFTConfig


def test_clock_reads_minutes_and_hours():
    assert (clock(0), clock(59.6), clock(690), clock(3725), clock(-3)) == ("0:00", "1:00", "11:30", "1:02:05", "0:00")


def test_the_budget_bar_shows_the_time_left_and_the_steps_done(tmp_path):
    callback = TimeBudgetProgressCallback(TimeBudgetCallback(minutes=11.5))
    assert callback.status(step=140, max_steps=3000, elapsed=192) == "step 140 (at most 3000), 8:18 of 11:30 left"

    state, control = TrainerState(max_steps=3000), TrainerControl()
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    callback.on_train_begin(args, state, control)
    assert callback.training_bar.total == 11.5 * 60  # the bar fills with the budget's time
    state.global_step = 3
    callback.on_step_end(args, state, control)
    postfix = callback.training_bar.postfix
    assert postfix.startswith("step 3 (at most 3000), ") and postfix.endswith(" of 11:30 left")
    callback.on_train_end(args, state, control)


def test_a_spent_time_budget_stops_at_the_end_of_the_rollout_cycle(tmp_path):
    args = AMFTConfig(output_dir=str(tmp_path), use_cpu=True, method="fixed-mu", per_device_train_batch_size=16,
                      steps_per_generation=2, save_steps=2)
    budget, state = TimeBudgetCallback(minutes=0.0), TrainerState()
    for step, stops in ((3, False), (4, True)):
        state.global_step, control = step, TrainerControl()
        budget.on_step_end(args, state, control)
        assert (control.should_training_stop, control.should_save) == (stops, stops)
