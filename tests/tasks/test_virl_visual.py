"""V-IRL-VL: the drawn street views (read back from their pixels), the two city styles, the splits,
the environment with image observations, and street-view files listed by a route."""

import json
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset
from PIL import Image
from trl.data_utils import prepare_multimodal_messages

from amft.tasks.base import DataError
from amft.tasks.images import GLYPH_HEIGHT, GLYPH_WIDTH, GLYPHS
from amft.tasks.virl import load_routes
from amft.tasks.virl.env import VirlEnv, parse_answer
from amft.tasks.virl.rendering import (
    RELATION_PLACES,
    STYLES,
    GridLayout,
    Landmark,
    board_index,
    render_views,
    sign_label,
    visible_landmarks,
)
from amft.tasks.virl.routes import VIEW_NAMES
from amft.tasks.virl.synthetic import generate_routes
from amft.tasks.virl.task import VirlConfig
from amft.tasks.virl.visual import VirlVisualConfig, VirlVisualEnv, VirlVisualTask, check_street_views

FILES = Path(__file__).parent / "virl_files"
(ROUTE,) = load_routes(FILES / "route_bare.json")


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def read_sign(image: Image.Image, view: str, slot: int, style: str, letters: int) -> tuple[str, tuple[int, ...]]:
    """The label and board colour of the sign in a third of a view, read back from the pixels: each cell
    of each glyph is ink or not (sampled at its centre), and the board shows in the gap after the first glyph."""
    layout, city = GridLayout(*image.size), STYLES[style]
    array, cell = pixels(image), layout.cell
    x0, y0 = layout.label_origin(view, slot, city, "M" * letters)
    label = ""
    def lit(k: int, row: int, col: int) -> bool:
        x = x0 + (k * (GLYPH_WIDTH + 1) + col) * cell + cell // 2
        return tuple(array[y0 + row * cell + cell // 2, x]) == city.letters

    for k in range(letters):
        bitmap = tuple("".join("#" if lit(k, row, col) else "." for col in range(GLYPH_WIDTH))
                       for row in range(GLYPH_HEIGHT))
        label += next(char for char, rows in GLYPHS.items() if rows == bitmap)
    board = tuple(int(c) for c in array[y0 + cell // 2, x0 + GLYPH_WIDTH * cell + cell // 2])
    return label, board


def board_pixels(image: Image.Image, style: str) -> dict[tuple[int, ...], int]:
    """How many pixels of each of the style's board colours the image has."""
    flat = pixels(image).reshape(-1, 3)
    return {colour: int((flat == colour).all(axis=1).sum()) for colour in STYLES[style].boards}


def views_with(image: Image.Image, colour: tuple[int, ...]) -> list[str]:
    layout, array = GridLayout(*image.size), pixels(image)
    found = []
    for view in VIEW_NAMES:
        left, top, right, bottom = layout.view_box(view)
        if (array[top:bottom, left:right] == colour).all(axis=2).any():
            found.append(view)
    return found


# ----------------------------------------------------------------------------------------- drawing


def test_the_font_and_the_palettes_keep_everything_apart():
    assert len(set(GLYPHS.values())) == len(GLYPHS)
    for style in STYLES.values():
        assert len(style.boards) == len(STYLES["daylight"].boards)
        scenery = {style.sky, style.ground, style.road, style.marking, style.window, style.door, style.letters,
                   *style.facades, (0, 0, 0)}
        assert not scenery & set(style.boards)


def test_observations_name_their_landmarks_and_signs_say_their_initials():
    assert visible_landmarks("Blue Door Cafe is on your left front; You observe an intersection") == (
        Landmark("Blue Door Cafe", "left front"),)
    assert visible_landmarks("The destination Corner Bakery is on your right; ") == (
        Landmark("Corner Bakery", "right"),)
    assert visible_landmarks("A is on your right behind, and B is on your left") == (
        Landmark("A", "right behind"), Landmark("B", "left"))
    assert visible_landmarks("No landmarks nearby; ") == ()
    assert visible_landmarks("No landmark nearby; You observe an intersection") == ()
    assert sign_label("Blue Door Cafe") == "BDC" and sign_label("Museum of Modern Art") == "MOM"
    assert sign_label("7-Eleven") == "7" and sign_label("Ivory") == "I"


def test_rendering_is_deterministic_and_the_seed_varies_only_the_plain_facades():
    landmarks = [Landmark("Blue Door Cafe", "left front")]
    first = render_views(landmarks, True, seed="route-1:1")
    assert first.size == (128, 128) and first.mode == "RGB"
    assert first.tobytes() == render_views(landmarks, True, seed="route-1:1").tobytes()
    other = render_views(landmarks, True, seed="route-2:1")
    assert other.tobytes() != first.tobytes()
    assert read_sign(first, "front", 0, "daylight", 3) == read_sign(other, "front", 0, "daylight", 3)


@pytest.mark.parametrize("size", ["128x128", "1200x1200"])
@pytest.mark.parametrize("style", ["daylight", "dusk"])
def test_a_landmark_is_read_back_from_the_pixels_where_its_relation_puts_it(style, size):
    empty = render_views([], False, style=style, size=size, seed="s")
    assert not any(board_pixels(empty, style).values())
    for relation, (view, slot) in RELATION_PLACES.items():
        image = render_views([Landmark("Silver Oak Books", relation)], False, style=style, size=size, seed="s")
        board = STYLES[style].boards[board_index("Silver Oak Books")]
        assert read_sign(image, view, slot, style, 3) == ("SOB", board)
        assert views_with(image, board) == [view]
    # Several at once, each in its place: the destination on the right, a corner behind on the left.
    image = render_views([Landmark("Maple Deli", "right"), Landmark("Red Fern Bakery", "left behind")], False,
                         style=style, size=size, seed="s")
    assert read_sign(image, "right", 1, style, 2)[0] == "MD" and read_sign(image, "back", 2, style, 3)[0] == "RFB"


def test_the_small_canvas_keeps_every_synthetic_landmark_readable():
    # Every place name the synthetic city uses, on the tiny model's 128x128 grid (one pixel per glyph cell).
    names = {text.split(" is on your")[0].removeprefix("The destination ")
             for record in generate_routes(300, seed=0) for text in record["milestone_info"].split('"landmarks": "')[1:]
             if not text.startswith("No landmark")}
    assert len(names) > 100
    for name in sorted(names)[:60]:
        image = render_views([Landmark(name, "right front")], True, seed=name)
        label, board = read_sign(image, "front", 2, "daylight", len(sign_label(name)))
        assert (label, board) == (sign_label(name), STYLES["daylight"].boards[board_index(name)])
    assert GridLayout(128, 128).cell == 1 and GridLayout(1200, 1200).cell == 9
    with pytest.raises(ValueError, match="too small"):
        GridLayout(126, 128)


def test_ood_visual_is_another_city_style_with_the_same_signs():
    landmarks = [Landmark("Blue Door Cafe", "left front")]
    day, dusk = (render_views(landmarks, True, style=style, size="1200x1200", seed="s")
                 for style in ("daylight", "dusk"))
    day_colours = {tuple(c) for c in pixels(day).reshape(-1, 3)}
    dusk_colours = {tuple(c) for c in pixels(dusk).reshape(-1, 3)}
    assert day_colours & dusk_colours == {(0, 0, 0)}  # only the border between the views
    # The same place says the same thing in both cities, on another board, shape and height.
    assert read_sign(day, "front", 0, "daylight", 3)[0] == read_sign(dusk, "front", 0, "dusk", 3)[0] == "BDC"
    layout = GridLayout(1200, 1200)
    day_box, dusk_box = (layout.sign_box("front", 0, STYLES[style]) for style in ("daylight", "dusk"))
    assert day_box[1] < dusk_box[1]
    corner = day_box[:2]
    assert tuple(pixels(day)[corner[1], corner[0]]) == STYLES["daylight"].frame  # a framed rectangle
    assert tuple(pixels(dusk)[dusk_box[1], dusk_box[0]]) not in STYLES["dusk"].boards  # a tag: its corners are cut


# ----------------------------------------------------------------------------------------- environment


def walk(env: VirlEnv) -> list:
    """(prompt text, image, messages) at every position of an expert episode (the text alone for V-IRL-L)."""
    seen = []
    env.reset()
    while True:
        seen.append((env.prompt(), env.images[0], env.messages()) if env.visual else env.prompt())
        _, reward, terminated, truncated, _ = env.step(env.expert_answer())
        assert reward == 1.0 and not truncated
        if terminated:
            return seen


def test_the_env_steps_with_an_image_of_each_position():
    env = VirlVisualEnv(ROUTE, max_attempts=100, drop_rate=0.0)
    text_env = VirlEnv(ROUTE, max_attempts=100, drop_rate=0.0)
    seen, text_prompts = walk(env), walk(text_env)
    assert env.is_success and len(seen) == len(text_prompts) == 13
    prompts = [prompt for prompt, _, _ in seen]
    # The compact [obs] keeps only the intersection flag: the landmark names are in the image.
    assert [p.split("[obs] ")[1].split("\n")[0] for p in prompts] == ["-"] * 6 + ["+"] + ["-"] * 6
    assert prompts == [text.replace("[obs] Blue Door Cafe +", "[obs] +").replace("[obs] Corner Bakery", "[obs] -")
                       for text in text_prompts]
    for prompt, image, messages in seen:
        assert image.size == (128, 128)
        assert messages == [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    # The route's landmarks show where the text observation names them; the points between show none.
    blue_door, bakery = (STYLES["daylight"].boards[board_index(name)] for name in ("Blue Door Cafe", "Corner Bakery"))
    assert views_with(seen[6][1], blue_door) == ["back"]  # left behind
    assert read_sign(seen[6][1], "back", 2, "daylight", 3)[0] == "BDC"
    assert views_with(seen[12][1], bakery) == ["right"] and read_sign(seen[12][1], "right", 1, "daylight", 2)[0] == "CB"
    for _, image, _ in seen[1:6] + seen[7:12]:
        assert not any(board_pixels(image, "daylight").values())
    # At the intersection the side views show a cross street: open ground where a point's view has a facade.
    left, top, right, bottom = GridLayout(128, 128).view_box("right")
    x, y = left + round(0.38 * (right - left)), top + round(0.7 * (bottom - top))
    assert tuple(pixels(seen[6][1])[y, x]) == STYLES["daylight"].ground
    assert tuple(pixels(seen[5][1])[y, x]) in STYLES["daylight"].facades
    # Episodes are reproducible, image for image.
    assert [image.tobytes() for _, image, _ in walk(VirlVisualEnv(ROUTE, max_attempts=100, drop_rate=0.0))] == [
        image.tobytes() for _, image, _ in seen]


def test_a_retry_shows_the_same_image_and_the_original_prompt_announces_it():
    env = VirlVisualEnv(ROUTE, max_attempts=100, form="original", drop_rate=0.0, image_size="1200x1200")
    env.reset()
    for _ in range(6):
        env.step(env.expert_answer())
    prompt = env.prompt()
    assert "while observing your surrounding street views" in prompt
    assert ("[Observation format]\nYou observe a 2x2 grid of street-view images with these headings:\n"
            "[front, right\n back, left]\n") in prompt
    assert prompt.split("[Observations and actions sequence]\n")[1].split("\n\n")[0].endswith(
        "O_7: You observe an image of 4 views; You observe an intersection\nA_7: ")
    # The answer states what the image shows: the position's text observation.
    assert parse_answer("original", env.expert_answer()) == (
        "turn_direction(south)", "Blue Door Cafe is on your left behind; You observe an intersection")
    image = env.images[0]
    observation, reward, *_ = env.step('{"current observation": "x", "action": "forward()"}')
    assert reward == -1.5 and env.messages()[0]["content"][1]["text"] == observation
    assert "You failed this trial because you are at an intersection" in observation
    assert env.images[0] is image and image.size == (1200, 1200)
    with pytest.raises(ValueError, match="style"):
        VirlVisualEnv(ROUTE, max_attempts=1, style="noir")


# ----------------------------------------------------------------------------------------- task and splits


@pytest.fixture(scope="module")
def task():
    return VirlVisualTask(synthetic_routes=300, eval_routes=20, validation_routes=20)


def test_the_splits_load_fixed_and_ood_visual_walks_the_unseen_city_at_dusk(task):
    assert task.splits == ("id", "rl-only", "ood-rule", "unseen-routes", "ood-visual", "val-id", "val-rl-only")
    assert task.image_prompts
    splits = task.default_splits  # rl-only needs held-out words (tests/tasks/test_virl_regime.py)
    assert splits == ("id", "ood-rule", "unseen-routes", "ood-visual")
    rows = {split: task.eval_episodes(split) for split in splits}
    assert all(rows[split] for split in splits) and rows == {s: task.eval_episodes(s) for s in splits}
    assert {row["style"] for split in ("id", "ood-rule", "unseen-routes") for row in rows[split]} == {"daylight"}
    assert {row["style"] for row in rows["ood-visual"]} == {"dusk"}
    assert all(row["rendering_version"] == 1 for split in splits for row in rows[split])
    assert [r["route_id"] for r in rows["ood-visual"]] == [r["route_id"] for r in rows["unseen-routes"]]
    train_ids = {route.route_id for route in task.route_splits()["train"]}
    assert not train_ids & {row["route_id"] for split in splits for row in rows[split]}
    # The same episode in both cities: the same prompts, other pixels.
    unseen, dusk = (task.make_env(rows[split][0], max_attempts=1000) for split in ("unseen-routes", "ood-visual"))
    assert unseen.reset()[0] == dusk.reset()[0]
    assert unseen.images[0].tobytes() != dusk.images[0].tobytes()
    for row in rows["id"][:5] + rows["ood-rule"][:3] + rows["ood-visual"][:5]:
        env = task.make_env(row, max_attempts=1000)
        assert len(walk(env)) == len(env.rail) and env.is_success
    with pytest.raises(ValueError, match="unknown split"):
        task.eval_episodes("ood-city")


def test_rows_carry_their_image_and_go_through_trls_image_messages(task):
    prompts = task.train_prompts(40, seed=0)
    assert prompts == task.train_prompts(40, seed=0)  # images compare by pixels
    for row in prompts:
        (message,) = row["prompt"]
        assert message["content"][0] == {"type": "image"} and row["images"][0].size == (128, 128)
        assert task.verify(row, row["demonstration"]).reward == 1.0
    example = Dataset.from_list(prompts)[3]
    messages = prepare_multimodal_messages(example["prompt"], images=example["images"])
    assert np.array_equal(pixels(messages[0]["content"][0]["image"]), pixels(prompts[3]["images"][0]))
    demos = task.demonstrations(30, seed=0)
    assert all(d["completion"][0]["role"] == "assistant" for d in demos)
    assert all(task.verify(d, d["completion"]).reward == 1.0 for d in demos)
    assert task.validation_prompts(5, seed=0)[0]["images"][0].size == (128, 128)


def test_config_sizes_and_refusals():
    assert VirlVisualConfig().image_size == (128, 128)
    assert VirlVisualConfig(prompt_form="original").image_size == (1200, 1200)
    assert VirlVisualConfig(image_size="256x256").image_size == (256, 256)
    with pytest.raises(ValueError, match="too small"):
        VirlVisualConfig(image_size="64x64")
    with pytest.raises(TypeError, match="VirlVisualConfig"):
        VirlVisualTask(VirlConfig())
    with pytest.raises(ValueError, match="ood-visual"):
        VirlVisualTask(routes=str(FILES / "routes_wrapped.json")).eval_episodes("ood-visual")


# ----------------------------------------------------------------------------------------- real street views


def fixture_route(tmp_path: Path, *, grid_places: tuple[str, ...] = ("start",), skip: str | None = None) -> Path:
    """The bare fixture route with a street view for every rail place: plain-coloured files we draw, a
    whole grid for ``grid_places`` and four views elsewhere (each view its own colour)."""
    record = json.loads((FILES / "route_bare.json").read_text())
    places = ["start", *(f"1.{j}" for j in range(1, 6)), "1", *(f"2.{j}" for j in range(1, 6)), "2"]
    (tmp_path / "views").mkdir(exist_ok=True)
    views = {}
    for p, place in enumerate(places):
        if place == skip:
            continue
        if place in grid_places:
            Image.new("RGB", (300, 200), (p, 200, 0)).save(tmp_path / "views" / f"{place}.png")
            views[place] = f"views/{place}.png"
            continue
        views[place] = {}
        for v, view in enumerate(VIEW_NAMES):
            Image.new("RGB", (64, 48), (p, 10 * v, 100)).save(tmp_path / "views" / f"{place}-{view}.png")
            views[place][view] = f"views/{place}-{view}.png"
    record["street_views"] = views
    path = tmp_path / "route_infos.json"
    path.write_text(json.dumps(record))
    return path


def test_a_route_with_street_views_shows_them_instead_of_drawing(tmp_path):
    (route,) = load_routes(fixture_route(tmp_path))
    check_street_views(route)
    env = VirlVisualEnv(route, max_attempts=100, drop_rate=0.0)
    seen = walk(env)
    assert env.is_success
    start = pixels(seen[0][1])
    assert (start == (0, 200, 0)).all()  # a whole grid, resized to the canvas
    layout = GridLayout(128, 128)
    for p, (_, image, _) in enumerate(seen[1:], start=1):
        array = pixels(image)
        for v, view in enumerate(VIEW_NAMES):
            left, top, right, bottom = layout.view_box(view)
            assert (array[top:bottom, left:right] == (p, 10 * v, 100)).all()
        assert (array[:, layout.view_width] == 0).all()  # the border between the views
    # The same route as the ood-visual city of a synthetic task: its files, not the dusk drawing.
    task = VirlVisualTask(synthetic_routes=100, eval_routes=5, validation_routes=5,
                          ood_visual_routes=str(tmp_path / "route_infos.json"))
    (row,) = task.eval_episodes("ood-visual")
    env = task.make_env(row, max_attempts=100)
    env.reset()
    assert (pixels(env.images[0]) == (0, 200, 0)).all()


def test_street_views_that_miss_a_place_or_a_file_are_refused(tmp_path):
    (route,) = load_routes(fixture_route(tmp_path, skip="1.3"))
    with pytest.raises(ValueError, match=r"none for the rail places \['1\.3'\]"):
        check_street_views(route)
    (route,) = load_routes(fixture_route(tmp_path))
    (tmp_path / "views" / "2-left.png").unlink()
    with pytest.raises(FileNotFoundError, match="2-left.png"):
        check_street_views(route)
    record = json.loads((FILES / "route_bare.json").read_text())
    record["street_views"] = {"start": {"front": "a.png"}}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(record))
    with pytest.raises(DataError, match=r"bad\.json: route 1: field 'street_views': place 'start'"):
        load_routes(bad)
