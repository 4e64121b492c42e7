"""Episode evaluation of a task that shows images (GP-VL): every episode's call reads its own image through the
processor, batched across episodes, with revision, and the split reports card recognition accuracy (see
docs/design.md, 'The image variant (GP-VL)')."""

import json

import pytest
import torch

from amft.evaluation.evaluate import evaluate
from amft.evaluation.report import read_task_metrics, write_summary
from amft.models import build_tiny_model
from amft.tasks import get_task
from amft.tasks.general_points import solutions
from amft.tasks.general_points.prompts import render_completion


@pytest.fixture(scope="module")
def task():
    return get_task("gp-vl", template="compact")


def answer(row) -> str:
    """A right answer to the row: its cards, its values and the smallest solution."""
    formula = min(solutions(row["values"], row["target"]))
    return render_completion("compact", row["cards"], row["values"], f"{formula}={row['target']}", "plain")


@pytest.fixture(scope="module")
def memorised(task):
    """tiny-test-vl trained to answer the first two `id` episodes. Their text prompts are the same, so only
    their images tell which answer is right."""
    torch.manual_seed(0)
    model, processor = build_tiny_model("tiny-test-vl", seed=0)
    rows = task.eval_episodes("id")[:2]
    assert rows[0]["prompt"] == rows[1]["prompt"] and rows[0]["cards"] != rows[1]["cards"]
    eos = processor.tokenizer.eos_token_id
    examples = []
    for row in rows:
        prompt = processor.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        encoded = processor(text=[prompt + answer(row)], images=[row["images"]], return_tensors="pt",
                            add_special_tokens=False)
        prompt_length = processor(text=[prompt], images=[row["images"]], return_tensors="pt",
                                  add_special_tokens=False)["input_ids"].size(1)
        input_ids = torch.cat([encoded["input_ids"], torch.tensor([[eos]])], dim=1)
        labels = input_ids.clone()
        labels[:, :prompt_length] = -100
        examples.append({"input_ids": input_ids, "pixel_values": encoded["pixel_values"], "labels": labels})
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(400):
        loss = model(**examples[step % 2]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model, processor


def test_each_episode_is_read_with_its_own_image_and_recognition_is_counted_over_all_answers(task, memorised,
                                                                                              tmp_path):
    model, processor = memorised
    result = evaluate(model, processor, task, "id", max_attempts=2, temperature=0.0, max_new_tokens=64, limit=3,
                      progress=False)
    rows = task.eval_episodes("id")[:3]
    # Episodes 0 and 1 differ only in their image: both answered right means each call saw its own.
    assert [r.completions[0] for r in result.records[:2]] == [answer(rows[0]), answer(rows[1])]
    assert [(r.success, r.attempts) for r in result.records] == [(True, 1), (True, 1), (False, 2)]
    # Episode 2 shows other cards: its two answers (the second after the feedback) state wrong cards.
    assert result.records[2].rewards == [-1.5, -1.5]
    assert [r.metrics for r in result.records] == [{"recognition_accuracy": 1.0}] * 2 + [{"recognition_accuracy": 0.0}]
    assert result.metrics == {"recognition_accuracy": 2 / 4}  # 2 right of 4 verified answers
    assert result.success_rate == pytest.approx(2 / 3)
    assert result.summary()["recognition_accuracy"] == 0.5
    assert result.display_row()["recognition accuracy"] == "50.0%"

    summary = write_summary(str(tmp_path), results={"id": result}, initial=None, wall_time_seconds=1.0,
                            run_info={"task": task.name})
    assert summary["recognition_accuracy"] == {"id": 0.5} and summary["splits"]["id"]["recognition_accuracy"] == 0.5
    assert "| recognition accuracy |" in (tmp_path / "summary.md").read_text()
    # A study reads the measure back by name; a summary without the task's own measures has none.
    written = json.loads((tmp_path / "summary.json").read_text())
    assert read_task_metrics(written) == {"recognition_accuracy": {"id": 0.5}}
    assert read_task_metrics({key: value for key, value in written.items() if key != "recognition_accuracy"}) == {}


def test_a_text_tokenizer_cannot_evaluate_an_image_task(task):
    model, tokenizer = build_tiny_model("tiny-test", seed=0)
    with pytest.raises(ValueError, match="gp-vl shows images: evaluate it with a vision-language model"):
        evaluate(model, tokenizer, task, "id", max_attempts=1, limit=1, progress=False)
