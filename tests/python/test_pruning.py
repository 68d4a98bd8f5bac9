"""mirrorflow.pruning: global magnitude pruning against a sort written here."""

from __future__ import annotations

import pytest
import torch

from mirrorflow.pruning import global_magnitude_masks, prune_global_magnitude


def _tensors(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 3, 3, 3, generator=gen) * 0.1, torch.randn(50, generator=gen),
            torch.randn(7, 11, generator=gen) * 10]


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.5, 0.9, 0.99])
def test_the_smallest_fraction_of_all_weights_is_zeroed(sparsity):
    tensors = _tensors()
    original = [t.clone() for t in tensors]
    n_total = sum(t.numel() for t in tensors)
    pruned = prune_global_magnitude(tensors, sparsity)
    assert pruned == int(sparsity * n_total)
    flat_before = torch.cat([t.reshape(-1) for t in original])
    flat_after = torch.cat([t.reshape(-1) for t in tensors])
    threshold_index = torch.sort(flat_before.abs()).indices[:pruned]
    expected = flat_before.clone()
    expected[threshold_index] = 0
    assert torch.equal(flat_after, expected)
    assert int((flat_after == 0).sum()) == pruned
    # pooled, not per tensor: the small-scale first tensor loses most
    if 0 < sparsity < 0.9:
        frac = [float((t == 0).float().mean()) for t in tensors]
        assert frac[0] > sparsity > frac[2]


def test_ties_are_broken_by_position():
    tensors = [torch.tensor([1.0, -1.0, 2.0]), torch.tensor([1.0, 3.0])]
    masks = global_magnitude_masks(tensors, 0.4)  # prunes 2 of 5
    assert masks[0].tolist() == [False, False, True] and masks[1].tolist() == [True, True]


@pytest.mark.parametrize("sparsity", [1.0, -0.1, True, "0.5"])
def test_bad_sparsity_is_refused_and_changes_nothing(sparsity):
    tensors = _tensors()
    original = [t.clone() for t in tensors]
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\), got"):
        prune_global_magnitude(tensors, sparsity)
    assert all(torch.equal(a, b) for a, b in zip(tensors, original))


@pytest.mark.parametrize("sparsity, n, pruned", [(0.29, 100, 29), (0.57, 100, 57),
                                                 (0.1, 30, 3), (1 / 3, 9, 2)])
def test_the_count_is_the_floor_of_the_decimal_sparsity(sparsity, n, pruned):
    # 0.29 * 100 is 28.999999999999996 in binary floating point
    masks = global_magnitude_masks([torch.arange(1.0, n + 1)], sparsity)
    assert int((~masks[0]).sum()) == pruned
