"""GP-VL: card images, the cards check of the reward, prompts, splits and the revision environment."""

import json
import logging

import numpy as np
import pytest
from datasets import Dataset
from trl.data_utils import prepare_multimodal_messages

from amft.tasks.general_points import GeneralPointsTask, GeneralPointsVisualTask
from amft.tasks.general_points.cards import ID_RULE, OOD_RULE, SYMBOLS
from amft.tasks.general_points.config import GeneralPointsVisualConfig
from amft.tasks.general_points.eval_sets import (
    EVAL_DIR,
    VISUAL_SPLITS,
    EvalSetMismatchError,
    load_visual_eval_set,
    main,
    render_visual_split_file,
    visual_split_path,
    write_eval_sets,
)
from amft.tasks.general_points.prompts import compact_prompt, original_prompt
from amft.tasks.general_points.rendering import (
    CANVAS_COLOUR,
    CARD_FACE,
    INK,
    SUIT_PAIRS,
    CardLayout,
    render_cards,
    suit_colour,
)
from amft.tasks.general_points.verifier import (
    WRONG_CARDS_MESSAGE,
    extract_cards,
    recognition_accuracy,
    verify_visual_text,
)

SMALL = CardLayout(128, 64)


@pytest.fixture(scope="module")
def compact():
    return GeneralPointsVisualTask(template="compact")


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def ink_mask(array: np.ndarray) -> np.ndarray:
    """Pixels in either ink: what is drawn on a card."""
    return np.all(array == INK["black"], axis=-1) | np.all(array == INK["red"], axis=-1)


def crop(array: np.ndarray, box) -> np.ndarray:
    left, top, right, bottom = box
    return array[top:bottom, left:right]


# ----------------------------------------------------------------------------------------- rendering


def test_rendering_is_a_pure_function_of_the_deal_and_rows_are_deterministic_by_seed(compact):
    a = render_cards([1, 10, 12, 13], ["S", "C", "H", "D"])
    assert a.mode == "RGB" and a.size == (128, 64)
    assert a.tobytes() == render_cards([1, 10, 12, 13], ["S", "C", "H", "D"]).tobytes()
    assert a.tobytes() != render_cards([1, 10, 12, 13], ["C", "C", "H", "D"]).tobytes()
    first, again, other = (compact.train_prompts(20, seed=s) for s in (3, 3, 4))
    assert [r["suits"] for r in first] == [r["suits"] for r in again]
    assert [r["images"][0].tobytes() for r in first] == [r["images"][0].tobytes() for r in again]
    assert [r["suits"] for r in first] != [r["suits"] for r in other]
    assert all(suit_colour(s) == "black" for r in first for s in r["suits"])
    assert all(r["images"][0].tobytes() == render_cards(r["ranks"], r["suits"]).tobytes() for r in first)


def test_the_original_canvas_has_the_original_layout():
    layout = CardLayout(1200, 1200)
    assert [layout.card_box(i) for i in range(4)] == [(5 + i * 297, 411, 5 + i * 297 + 270, 789) for i in range(4)]
    image = pixels(render_cards([1, 2, 3, 4], ["S", "S", "C", "C"], "1200x1200"))
    assert image.shape == (1200, 1200, 3)
    assert tuple(image[0, 0]) == CANVAS_COLOUR == (0x35, 0x65, 0x4D)
    assert tuple(image[410, 100]) == CANVAS_COLOUR and tuple(image[789, 100]) == CANVAS_COLOUR
    assert tuple(image[415, 20]) == CARD_FACE
    assert [SMALL.card_box(i) for i in range(4)] == [(1 + 32 * i, 12, 30 + 32 * i, 52) for i in range(4)]


def test_a_canvas_too_small_for_the_cards_is_refused():
    with pytest.raises(ValueError, match="too small"):
        render_cards([1, 2, 3, 4], ["S"] * 4, "40x20")
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        render_cards([1, 2, 3, 4], ["S"] * 4, "128 by 64")


def test_each_cards_rank_and_suit_are_read_back_from_its_pixels(compact):
    """Every card of 52 is drawn alone in each slot; a card of an episode image matches exactly one of them."""
    references = {}
    for rank in SYMBOLS:
        for suit in "SCHD":
            alone = ink_mask(pixels(render_cards([rank] * 4, [suit] * 4)))
            references[(rank, suit)] = [crop(alone, SMALL.card_box(i)) for i in range(4)]
    distinct = {tuple(masks[0].flatten()) for masks in references.values()}
    assert len(distinct) == 52
    for split in ("id", "rl-only", "ood-rule", "ood-visual"):
        for row in compact.eval_episodes(split)[:15]:
            image = pixels(row["images"][0])
            for i, (rank, suit) in enumerate(zip(row["ranks"], row["suits"])):
                drawn = crop(image, SMALL.card_box(i))
                mask = ink_mask(drawn)
                matches = [card for card, masks in references.items() if np.array_equal(masks[i], mask)]
                assert matches == [(rank, suit)]
                assert np.all(drawn[mask] == INK[suit_colour(suit)])


def test_a_red_deal_differs_from_its_black_twin_only_in_colour_and_in_the_suit_shapes(compact):
    """`ood-visual` shows the deals of `id` with each suit turned to its red counterpart."""
    black_rows, red_rows = compact.eval_episodes("id"), compact.eval_episodes("ood-visual")
    assert [r["ranks"] for r in black_rows] == [r["ranks"] for r in red_rows]
    for black_row, red_row in zip(black_rows[:20], red_rows[:20]):
        assert red_row["suits"] == [SUIT_PAIRS[s] for s in black_row["suits"]]
        black, red = pixels(black_row["images"][0]), pixels(red_row["images"][0])
        outside_suits = np.ones(black.shape[:2], dtype=bool)
        for i in range(4):
            left, top, right, bottom = SMALL.suit_box(i)
            outside_suits[top:bottom, left:right] = False
        black_ink, red_ink = ink_mask(black), ink_mask(red)
        assert np.array_equal(black_ink & outside_suits, red_ink & outside_suits)
        assert np.all(black[black_ink & outside_suits] == INK["black"])
        assert np.all(red[red_ink & outside_suits] == INK["red"])
        assert np.array_equal(black[~black_ink & ~red_ink], red[~black_ink & ~red_ink])
        assert black_ink.sum() > 0 and np.all(red[red_ink] == INK["red"])


# ----------------------------------------------------------------------------------------- the reward

CARDS, VALUES = ["A", "3", "K", "6"], [1, 3, 10, 6]


@pytest.mark.parametrize("text, reward, message", [
    # the cards are checked first: wrong cards score -1.5 whatever the formula
    (' cards: A 3 Q 6 ; formula: 10*3-6*1=24', -1.5, WRONG_CARDS_MESSAGE),
    (' cards: A 3 Q 6 ; formula: 10 x 3', -1.5, WRONG_CARDS_MESSAGE),
    (' cards: A 3 K ; formula: 10*3-6*1', -1.5, WRONG_CARDS_MESSAGE),
    (' cards: A 3 K 6 6 ; formula: 10*3-6*1', -1.5, WRONG_CARDS_MESSAGE),
    (' number: 1 3 10 6 ; formula: 10*3-6*1=24', -1.5, WRONG_CARDS_MESSAGE),
    (' cards: 1 3 10 6 ; formula: 10*3-6*1=24', -1.5, WRONG_CARDS_MESSAGE),
    # right cards, in any order: the formula is scored as in GP-L
    (' cards: A 3 K 6 ; formula: 10*3-6*1=24', 5.0, "Correct solution."),
    (' cards: 6 K A 3 ; formula: 10*3-6*1=24', 5.0, "Correct solution."),
    (' cards: A 3 K 6 ; formula: 10 x 3', -3.0, "illegal characters."),
    (' cards: A 3 K 6 ; formula: 10*3*6', -2.0, "you didn't use numbers: [1]."),
    (' cards: A 3 K 6 ; formula: 10+3+6+1', -1.0,
     "10 is partially correct but the full formula does not match any solution."),
    # the original's forms: a JSON-like answer with quoted symbols, and JSON proper
    ('{"cards": [\'K\', \'A\', \'3\', \'6\'], "number": [10, 1, 3, 6], "formula": "10*3-6*1=24",}', 5.0,
     "Correct solution."),
    ('{"cards": [\'A\', \'3\', \'J\', \'6\'], "formula": "10*3-6*1=24",}', -1.5, WRONG_CARDS_MESSAGE),
    ('{"cards": ["A", "3", "K", "6"], "formula": "10*3-6*1=24"}', 5.0, "Correct solution."),
    ('{"cards": "A, 3, K, 6", "formula": "10*3-6*1=24"}', 5.0, "Correct solution."),
    ('{"cards": [\'A3K6\'], "formula": "10*3-6*1=24",}', -1.5, WRONG_CARDS_MESSAGE),
])
def test_wrong_cards_score_minus_one_and_a_half_before_the_formula_is_read(text, reward, message):
    verdict = verify_visual_text(text, CARDS, VALUES)
    assert (verdict.reward, verdict.message, verdict.success) == (reward, message, reward == 5.0)


def test_cards_are_compared_as_multisets():
    assert verify_visual_text(" cards: 3 8 8 3 ; formula: 8/(3-8/3)", ["3", "3", "8", "8"], [3, 3, 8, 8]).reward == 5
    assert verify_visual_text(" cards: 3 8 8 8 ; formula: 8/(3-8/3)", ["3", "3", "8", "8"], [3, 3, 8, 8]).reward == -1.5
    assert extract_cards(" cards: 10 J Q K ; formula: 1") == ["10", "J", "Q", "K"]
    assert extract_cards('"cards": [\'10\', \'J\', \'Q\', \'K\'],') == ["10", "J", "Q", "K"]
    assert extract_cards("no cards here") is None


def test_the_task_reward_checks_the_rows_cards_and_recognition_accuracy_counts_wrong_cards(compact):
    row = compact.eval_episodes("id")[0]
    assert (row["cards"], row["values"]) == (["2", "5", "J", "K"], [2, 5, 10, 10])
    right, wrong = " cards: K 2 J 5 ; formula: 1+1", " cards: K 2 Q 5 ; formula: 1+1"
    verdicts = [compact.verify(row, right), compact.verify(row, wrong), compact.verify(row, [{"role": "assistant",
                                                                                             "content": wrong}])]
    # right cards: 1 is no card value (-2) and every card is unused (-2)
    assert [v.reward for v in verdicts] == [-4.0, -1.5, -1.5]
    assert recognition_accuracy(verdicts) == pytest.approx(1 / 3)
    assert recognition_accuracy([verdicts[0], None]) == 1.0 and recognition_accuracy([]) == 1.0
    columns = {key: [row[key], row[key]] for key in row if key != "prompt"}
    assert compact.reward(prompts=[row["prompt"]] * 2, completions=[right, wrong], **columns) == [-4.0, -1.5]
    success_only = GeneralPointsVisualTask(template="compact", reward="success")
    assert success_only.verify(row, wrong).reward == 0.0
    with pytest.raises(ValueError, match="'cards' column"):
        compact.verify({"values": row["values"]}, right)


# ----------------------------------------------------------------------------------------- prompts and rows

ORIGINAL_VISUAL_GOLDEN = (
    "\n"
    "[Task Description]\n"
    "You are an expert 24 points card game player. You are observing these four cards in the image.\n"
    "Note that 'J', 'Q', and 'K' count as '10'., and each card must be used once.\n"
    "Your goal is to output a formula that evaluates to 24 using numbers from the cards and operators such as "
    "'+', '-', '*', '/', '(', ')', and '='.\n"
    "\n"
    "[Output]\n"
    "Your response should be a valid json file in the following format:\n"
    "{\n"
    "  \"cards\": [x, y, z, w], where 'J', 'Q', and 'K' count as '10'.,\n"
    "  \"number\": [a, b, c, d], where a, b, c, and d are the numbers on the cards,\n"
    "  \"formula\": 'an equation that equals 24',\n"
    "}\n"
    "\n"
)


def test_prompts_put_the_image_first_and_leave_the_cards_out_of_the_text(compact):
    assert original_prompt(None, ID_RULE) == ORIGINAL_VISUAL_GOLDEN
    assert compact_prompt(None, OOD_RULE) == "[rule] J=11 Q=12 K=13 [target] 24 [answer]"
    row = GeneralPointsVisualTask().eval_episodes("ood-rule")[0]
    assert row["prompt"] == [{"role": "user", "content": [
        {"type": "image"}, {"type": "text", "text": original_prompt(None, OOD_RULE)}]}]
    assert row["images"][0].size == (1200, 1200)
    demo = compact.demonstrations(3, seed=0)[0]
    assert demo["prompt"][0]["content"][1]["text"].startswith("[rule] J=")
    assert demo["completion"][0]["role"] == "assistant"
    assert demo["completion"][0]["content"].startswith(" cards: " + " ".join(demo["cards"]) + " ; number: ")
    assert compact.verify(demo, demo["completion"]).reward == 5.0
    assert demo["images"][0].tobytes() == render_cards(demo["ranks"], demo["suits"]).tobytes()


def test_rows_go_through_a_dataset_into_trls_image_messages(compact):
    rows = compact.train_prompts(4, seed=0)
    example = Dataset.from_list(rows)[1]
    messages = prepare_multimodal_messages(example["prompt"], images=example["images"])
    image_part, text_part = messages[0]["content"]
    assert image_part["type"] == "image" and text_part["text"] == rows[1]["prompt"][0]["content"][1]["text"]
    assert np.array_equal(pixels(image_part["image"]), pixels(rows[1]["images"][0]))


def test_config_refuses_what_gp_vl_cannot_honour():
    assert GeneralPointsVisualConfig().image_size == (1200, 1200)
    assert GeneralPointsVisualConfig(template="compact").image_size == (128, 64)
    assert GeneralPointsVisualConfig(template="compact", image_size="96x48").image_size == (96, 48)
    with pytest.raises(ValueError, match="chat_format"):
        GeneralPointsVisualConfig(chat_format=False)
    with pytest.raises(ValueError, match="must state the cards"):
        GeneralPointsVisualConfig(template="compact", completion_format="short")
    with pytest.raises(ValueError, match="too small"):
        GeneralPointsVisualConfig(image_size="32x16")
    task = GeneralPointsVisualTask(GeneralPointsVisualConfig(template="compact"), image_size=[96, 48])
    assert task.config.image_size == (96, 48) and task.eval_episodes("id")[0]["images"][0].size == (96, 48)
    with pytest.raises(TypeError, match="GeneralPointsVisualConfig"):
        GeneralPointsVisualTask(GeneralPointsTask().config)


# ----------------------------------------------------------------------------------------- splits


def test_the_splits_load_and_are_drawn_as_specified(compact):
    text = GeneralPointsTask(template="compact")
    assert compact.splits == tuple(VISUAL_SPLITS) == ("id", "rl-only", "ood-rule", "ood-visual")
    for split, (deals_of, colour) in VISUAL_SPLITS.items():
        rows = compact.eval_episodes(split)
        assert len(rows) == 234
        deals = [(r["ranks"], r["rule"]) for r in text.eval_episodes(deals_of)]
        assert [(r["ranks"], r["rule"]) for r in rows] == deals
        assert all(r["split"] == split and len(r["suits"]) == 4 for r in rows)
        assert all(suit_colour(s) == colour for r in rows for s in r["suits"])
        assert {s for r in rows for s in r["suits"]} == ({"S", "C"} if colour == "black" else {"H", "D"})
    assert all(tuple(r["rule"]) == OOD_RULE.as_tuple() for r in compact.eval_episodes("ood-rule"))
    eval_deals = {(tuple(r["ranks"]), tuple(r["rule"])) for s in compact.splits for r in compact.eval_episodes(s)}
    assert not eval_deals & {(tuple(r["ranks"]), tuple(r["rule"])) for r in compact.validation_prompts(300, seed=0)}


def test_the_split_files_regenerate_byte_identically_and_a_changed_header_is_refused(tmp_path):
    for split in VISUAL_SPLITS:
        assert render_visual_split_file(split).encode() == visual_split_path(split).read_bytes()
    write_eval_sets(tmp_path)
    for split in VISUAL_SPLITS:
        assert visual_split_path(split, tmp_path).read_bytes() == visual_split_path(split).read_bytes()
    assert main(["--check", "--dir", str(tmp_path)]) == 0
    lines = visual_split_path("ood-visual").read_text().splitlines()
    header = json.loads(lines[0])
    header["suit_colour"] = "black"
    visual_split_path("ood-visual", tmp_path).write_text("\n".join([json.dumps(header)] + lines[1:]) + "\n")
    with pytest.raises(EvalSetMismatchError, match="suit_colour"):
        load_visual_eval_set("ood-visual", directory=tmp_path)
    black = json.loads(lines[1])
    black["suits"] = ["S", "S", "S", "S"]
    visual_split_path("ood-visual", tmp_path).write_text("\n".join([lines[0], json.dumps(black)] + lines[2:]) + "\n")
    with pytest.raises(EvalSetMismatchError, match="row 2.*red suits"):
        load_visual_eval_set("ood-visual", directory=tmp_path)
    assert main(["--check", "--dir", str(tmp_path)]) == 1
    assert EVAL_DIR == visual_split_path("id").parent


def test_other_eval_settings_generate_the_splits_in_memory(caplog):
    task = GeneralPointsVisualTask(template="compact", eval_seed=7)
    with caplog.at_level(logging.WARNING):
        rows = task.eval_episodes("ood-visual")
    assert "generating split 'ood-visual' in memory" in caplog.text
    twin = task.eval_episodes("id")
    assert [r["suits"] for r in rows] == [[SUIT_PAIRS[s] for s in r["suits"]] for r in twin]
    committed = GeneralPointsVisualTask(template="compact").eval_episodes("id")
    assert [r["ranks"] for r in rows] != [r["ranks"] for r in committed]


# ----------------------------------------------------------------------------------------- the environment


def test_the_environment_revises_with_the_image_first_and_ends_on_a_solution(compact):
    row = compact.eval_episodes("id")[0]
    env = compact.make_env(row, max_attempts=3)
    observation, _ = env.reset()
    assert observation == "[rule] J=10 Q=10 K=10 [target] 24 [answer]"
    assert env.images[0].tobytes() == row["images"][0].tobytes()
    wrong = " cards: " + " ".join(["A" if c != "A" else "2" for c in row["cards"]]) + " ; formula: 1"
    observation, reward, terminated, truncated, info = env.step(wrong)
    assert (reward, terminated, truncated) == (-1.5, False, False)
    assert observation == f"[rule] J=10 Q=10 K=10 [target] 24 [answer]{wrong} [fail] {WRONG_CARDS_MESSAGE} [answer]"
    messages = info["messages"]
    assert messages[0]["content"][0] == {"type": "image"} and messages[1:] == [
        {"role": "assistant", "content": wrong}, {"role": "user", "content": f" [fail] {WRONG_CARDS_MESSAGE} [answer]"}]
    solution = compact.demonstrations(1, seed=0)[0]
    solved = {**row, **{k: solution[k] for k in ("ranks", "cards", "values", "suits", "images")}}
    env = compact.make_env(solved, max_attempts=3)
    env.reset()
    _, reward, terminated, _, info = env.step(solution["completion"])
    assert (reward, terminated, info["is_success"]) == (5.0, True, True)
