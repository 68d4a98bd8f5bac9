"""Global magnitude pruning without fine-tuning (MATH.md §5): the fraction
``sparsity`` of all weights with the smallest |θ|, pooled over every tensor, is
set to zero. A network whose mass sits on few weights (the sparse implicit bias
of the ``hyperbolic`` map) should lose least accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import torch

__all__ = ["global_magnitude_masks", "prune_global_magnitude"]


def global_magnitude_masks(tensors: Sequence[torch.Tensor], sparsity: float) -> list[torch.Tensor]:
    """Boolean keep-masks: exactly ⌊sparsity·N⌋ of the N elements of ``tensors``
    (together), those of smallest magnitude, are False; ``sparsity`` is taken
    as the decimal it prints as (0.29 prunes 29 of 100 elements, where the
    binary float 0.28999… would give 28). Ties are broken by position (earlier
    tensor, then earlier element, pruned first)."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0 <= sparsity < 1:
        raise ValueError(f"global_magnitude_masks: sparsity must be in [0, 1), got {sparsity!r}")
    if len(tensors) == 0:
        raise ValueError("global_magnitude_masks: tensors must not be empty")
    flat = torch.cat([t.detach().reshape(-1).abs().double().cpu() for t in tensors])
    n_pruned = math.floor(Fraction(repr(float(sparsity))) * flat.numel())
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    if n_pruned:
        order = torch.sort(flat, stable=True).indices
        keep[order[:n_pruned]] = False
    masks, start = [], 0
    for t in tensors:
        masks.append(keep[start:start + t.numel()].reshape(t.shape).to(t.device))
        start += t.numel()
    return masks


@torch.no_grad()
def prune_global_magnitude(tensors: Sequence[torch.Tensor], sparsity: float) -> int:
    """Zeroes, in place, the ⌊sparsity·N⌋ smallest-magnitude elements of
    ``tensors`` taken together; returns how many were pruned. The masks are
    computed before anything is written, so bad arguments change nothing."""
    masks = global_magnitude_masks(tensors, sparsity)
    for t, mask in zip(tensors, masks):
        t.masked_fill_(~mask, 0)
    return int(sum(int((~m).sum()) for m in masks))
