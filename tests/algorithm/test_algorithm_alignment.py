"""Gradient inner products with None entries, and gradient assembly against autograd."""

import math

import pytest
import torch

from amft.algorithm import gradient_cosine, gradient_dot, gradient_dots, gradient_norm_sq

torch.set_num_threads(1)

A = [torch.tensor([1.0, 2.0]), None, torch.tensor([[3.0]])]
B = [torch.tensor([4.0, -1.0]), torch.tensor([5.0]), None]


def test_dot_and_norm_skip_none_entries():
    dot = gradient_dot(A, B)
    assert dot.dim() == 0 and dot.dtype == torch.float32
    assert dot.item() == 2.0  # only the first parameter is present in both
    assert gradient_norm_sq(A).item() == 14.0
    assert gradient_norm_sq(B).item() == 42.0
    torch.testing.assert_close(gradient_dots([(A, B), (A, A)]), torch.tensor([2.0, 14.0]))


def test_dot_accumulates_low_precision_in_float32():
    a = [torch.full((4096,), 1.0 / 64, dtype=torch.bfloat16)]
    assert gradient_dot(a, a).dtype == torch.float32
    assert gradient_dot(a, a).item() == pytest.approx(4096 / 64**2)


def test_cosine_values():
    assert gradient_cosine(A, B).item() == pytest.approx(2.0 / math.sqrt(14.0 * 42.0))
    same = [torch.tensor([1.0, -2.0]), None]
    doubled = [torch.tensor([2.0, -4.0]), torch.tensor([0.0])]
    assert gradient_cosine(same, doubled).item() == pytest.approx(1.0)
    assert gradient_cosine(same, [-doubled[0], None]).item() == pytest.approx(-1.0)
    assert gradient_cosine(same, [None, None]).item() == 0.0


def test_mismatched_gradients_are_rejected():
    with pytest.raises(ValueError, match="lengths"):
        gradient_dot(A, B[:2])
    with pytest.raises(ValueError, match="shapes"):
        gradient_dot([torch.ones(2)], [torch.ones(1)])


