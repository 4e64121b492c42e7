"""Gradient inner products with None entries, and gradient assembly against autograd."""

import math

import pytest
import torch

from amft.algorithm import combine_gradients, gradient_cosine, gradient_dot, gradient_dots, gradient_norm_sq

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
    with pytest.raises(ValueError, match="lengths"):
        combine_gradients(A, B[:2], 0.5)


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.shared = torch.nn.Linear(3, 3)
        self.sft_head = torch.nn.Linear(3, 1)
        self.rl_head = torch.nn.Linear(3, 1)
        self.unused = torch.nn.Parameter(torch.ones(2))

    def losses(self, x):
        h = torch.tanh(self.shared(x))
        return (self.sft_head(h) ** 2).mean(), torch.sin(self.rl_head(h)).sum()


@pytest.mark.parametrize("mu", [0.0, 0.3, 1.0])
def test_combine_gradients_equals_backward_of_combined_loss(mu):
    torch.manual_seed(0)
    model = _Tiny()
    x = torch.randn(5, 3)
    names, params = zip(*model.named_parameters())
    l_sft, l_rl = model.losses(x)
    g_sft = torch.autograd.grad(l_sft, params, retain_graph=True, allow_unused=True)
    g_rl = torch.autograd.grad(l_rl, params, retain_graph=True, allow_unused=True)
    # each head is unused by the other loss, and "unused" by both
    assert {n for n, g in zip(names, g_sft) if g is None} == {"unused", "rl_head.weight", "rl_head.bias"}
    assert {n for n, g in zip(names, g_rl) if g is None} == {"unused", "sft_head.weight", "sft_head.bias"}
    g_sft_before = [None if g is None else g.clone() for g in g_sft]

    combined = combine_gradients(g_rl, g_sft, mu)
    expected = torch.autograd.grad((1 - mu) * l_rl + mu * l_sft, params, allow_unused=True)
    for name, got, want in zip(names, combined, expected):
        if name == "unused":
            assert got is None and want is None
        else:
            torch.testing.assert_close(got, want if want is not None else torch.zeros_like(got))
    for before, after in zip(g_sft_before, g_sft):  # inputs are left untouched
        assert (before is None and after is None) or torch.equal(before, after)
