"""DFT's token weight of the SFT loss on hand-made tensors, against values computed by hand."""

import pytest
import torch

from amft.algorithm import TOKEN_WEIGHTINGS, chord_phi, dft_weight, sft_loss, sft_token_weights

torch.set_num_threads(1)


def test_dft_weighted_nll_value_and_gradient():
    logps = torch.tensor([[0.5, 0.9]], dtype=torch.float64).log().requires_grad_(True)
    mask = torch.ones(1, 2)
    weights = dft_weight(logps)
    assert not weights.requires_grad
    # per token -p log p: 0.346574, 0.094825; their mean
    loss = sft_loss(logps, mask, token_weights=weights)
    assert loss.item() == pytest.approx(0.220699, abs=1e-6)
    loss.backward()
    # the weight is a constant: the plain NLL's -1/2 per token, scaled by p
    torch.testing.assert_close(logps.grad, -torch.tensor([[0.5, 0.9]], dtype=torch.float64) / 2)
    # CHORD's phi on the same tokens, for comparison
    assert sft_loss(logps, mask, token_weights=chord_phi(logps)).item() == pytest.approx(0.091385, abs=1e-6)


def test_dft_mean_runs_over_the_masked_tokens_only():
    logps = torch.tensor([[0.5, 0.9, 0.1]], dtype=torch.float64).log()
    loss = sft_loss(logps, torch.tensor([[1, 1, 0]]), token_weights=dft_weight(logps))
    assert loss.item() == pytest.approx(0.220699, abs=1e-6)


def test_token_weightings_by_name():
    logps = torch.tensor([[0.5, 0.9]]).log()
    assert set(TOKEN_WEIGHTINGS) == {"none", "chord-phi", "dft"}
    assert sft_token_weights("none", logps) is None
    torch.testing.assert_close(sft_token_weights("dft", logps), torch.tensor([[0.5, 0.9]]))
    torch.testing.assert_close(sft_token_weights("chord-phi", logps), torch.tensor([[0.25, 0.09]]))
    with pytest.raises(ValueError, match="token weighting"):
        sft_token_weights("otr", logps)
