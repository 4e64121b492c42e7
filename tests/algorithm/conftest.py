import pytest
import torch


@pytest.fixture
def surrogate_inputs():
    """Two sequences whose ratios exercise both clips, with an absurd old log-prob at the padding."""
    # seq 0 (A = +1): rho 1.5 (clipped high), 0.5, 1.0; seq 1 (A = -1): rho 0.5 (clipped low), 1.5, padding.
    ratios = torch.tensor([[1.5, 0.5, 1.0], [0.5, 1.5, 1.0]], dtype=torch.float64)
    logps = ratios.log().requires_grad_(True)
    # The padding position gets an absurd old log-prob: exp(logp - old) would overflow.
    old = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, -1e30]], dtype=torch.float64)
    advantages = torch.tensor([1.0, -1.0], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    return logps, old, advantages, mask
