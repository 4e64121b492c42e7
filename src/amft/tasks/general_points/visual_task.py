"""GP-VL: GeneralPoints with the cards shown in an image (see docs/design.md, 'The image variant (GP-VL)')."""

from __future__ import annotations

import random
from typing import Any, Mapping, Sequence

from PIL import Image

from amft.tasks.base import Verification

from .cards import Rule, rank_symbol
from .config import GeneralPointsVisualConfig
from .prompts import image_messages, render_prompt
from .rendering import draw_suits, render_cards
from .task import GeneralPointsEnv, GeneralPointsTask
from .verifier import recognition_accuracy, verify_visual_text

__all__ = ["GeneralPointsVisualTask", "GeneralPointsVisualEnv"]


class GeneralPointsVisualTask(GeneralPointsTask):
    """GP-VL: the four cards are drawn in an image; the answer states the cards it sees, then the formula.

    Rows are those of GP-L (see :class:`GeneralPointsTask`) with:

    * ``prompt``: one user message, an image placeholder then the text (the cards are not in the text):
      ``[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": ...}]}]``
    * ``suits``: one suit per card, ``S``/``C`` (black) or ``H``/``D`` (red, the ``ood-visual`` split)
    * ``images``: ``[image]``, the RGB card image (``config.image_size``), the column TRL fills the
      placeholder from; evaluation episodes draw theirs anew on every call
    * demonstrations' ``completion``: one assistant message

    The reward checks the stated cards first: wrong cards score -1.5 and the formula is not read; right
    ones are scored as in GP-L (:func:`~amft.tasks.general_points.verifier.verify_visual_text`). Training
    rows, demonstrations and validation rows deal black suits; the deals and their value rules are
    drawn exactly as in GP-L.
    """

    name = "gp-vl"
    #: same as ``eval_sets.VISUAL_SPLITS``
    test_splits: tuple[str, ...] = ("id", "rl-only", "ood-rule", "ood-visual")
    validation_splits: tuple[str, ...] = ()
    splits: tuple[str, ...] = test_splits
    config_class = GeneralPointsVisualConfig
    config: GeneralPointsVisualConfig
    image_prompts = True

    def image(self, row: Mapping[str, Any]) -> Image.Image:
        """The card image of a row (from its ``ranks`` and ``suits``)."""
        return render_cards(row["ranks"], row["suits"], self.config.image_size)

    def _prompt(self, cards: list[str], rule: Rule) -> Any:
        return image_messages(render_prompt(self.config.template, None, rule, self.config.target))

    def _sample(self, n: int, rng: random.Random, accept: frozenset, exclude: frozenset = frozenset()) -> list[dict]:
        rows = super()._sample(n, rng, accept, exclude)
        for row in rows:
            row["suits"] = draw_suits(rng, "black")
            row["images"] = [self.image(row)]
        return rows

    def _episode_row(self, split: str, episode: Mapping[str, Any]) -> dict[str, Any]:
        return {**super()._episode_row(split, episode), "suits": list(episode["suits"])}

    def _stored_episodes(self, split: str) -> list[dict[str, Any]]:
        from .eval_sets import generate_visual_split, load_visual_eval_set

        return self._committed_or_generated(split, load_visual_eval_set, generate_visual_split)

    def eval_episodes(self, split: str) -> list[dict]:
        """The fixed episodes of ``split``, each with its image drawn anew (the cache holds no images)."""
        return [{**row, "images": [self.image(row)]} for row in self._episodes(split)]

    def _check(self, row: Mapping[str, Any], text: str) -> Verification:
        values, target = self._deal(row)
        return verify_visual_text(text, self._true_cards(row), values, target, self._styles)

    @staticmethod
    def _true_cards(row: Mapping[str, Any]) -> list[str]:
        cards, ranks = row.get("cards"), row.get("ranks")
        if isinstance(cards, (list, tuple)) and len(cards) == 4:
            return [str(c) for c in cards]
        if isinstance(ranks, (list, tuple)) and len(ranks) == 4:
            return [rank_symbol(int(r)) for r in ranks]
        raise ValueError("a GP-VL row needs the true cards to check the answer's: a 'cards' column (or 'ranks'); "
                         f"got keys {sorted(row)}")

    def eval_metrics(self, verifications: Sequence[Verification | None]) -> dict[str, float]:
        """Card recognition accuracy of the answers (see :func:`~amft.tasks.general_points.verifier.recognition_accuracy`)."""
        return {"recognition_accuracy": recognition_accuracy(verifications)}

    def make_env(self, row: Mapping[str, Any], *, max_attempts: int) -> "GeneralPointsVisualEnv":
        return GeneralPointsVisualEnv(self, row, max_attempts=max_attempts)


class GeneralPointsVisualEnv(GeneralPointsEnv):
    """GP-L's revision environment on an image: the observation is the conversation's text, ``images`` the
    images it shows (the row's card image), and :meth:`messages` the conversation with the image first."""

    def __init__(self, task: GeneralPointsVisualTask, row: Mapping[str, Any], *, max_attempts: int):
        super().__init__(task, row, max_attempts=max_attempts)
        images = self.row.get("images")
        self.images: list[Image.Image] = list(images) if images else [task.image(self.row)]

    def messages(self) -> list[dict[str, Any]]:
        first, *rest = super().messages()
        return [*image_messages(first["content"]), *rest]
