"""Diagnostics of homogeneous networks trained by mirror descent (MATH.md §3).

Per-sample margins qᵢ are yᵢ·f(xᵢ) for binary outputs (labels ±1, outputs of
shape (n,) or (n, 1)) and f_{yᵢ}(xᵢ) − max_{j≠yᵢ} f_j(xᵢ) for multi-class
outputs of shape (n, k) with integer labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "layerwise_margin",
    "sample_margins",
    "weight_histogram",
]


def sample_margins(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample margins qᵢ (MATH.md §3), in the dtype of ``outputs``.

    Binary: ``outputs`` of shape (n,) or (n, 1) and labels in {−1, +1}.
    Multi-class: ``outputs`` of shape (n, k), k ≥ 2, and integer class labels.
    """
    if outputs.dim() == 2 and outputs.shape[1] == 1:
        outputs = outputs[:, 0]
    if outputs.dim() == 1:
        if labels.shape != outputs.shape:
            raise ValueError(
                f"sample_margins: binary labels must have shape {tuple(outputs.shape)}, "
                f"got {tuple(labels.shape)}"
            )
        if not bool(((labels == 1) | (labels == -1)).all()):
            raise ValueError("sample_margins: binary labels must be -1 or +1")
        return labels.to(outputs.dtype) * outputs
    if outputs.dim() != 2:
        raise ValueError(
            f"sample_margins: outputs must have shape (n,), (n, 1) or (n, k), got {tuple(outputs.shape)}"
        )
    n, k = outputs.shape
    if labels.shape != (n,) or labels.is_floating_point():
        raise ValueError(
            f"sample_margins: multi-class labels must be integers of shape ({n},), "
            f"got {labels.dtype} of shape {tuple(labels.shape)}"
        )
    labels = labels.long()
    if bool(((labels < 0) | (labels >= k)).any()):
        raise ValueError(f"sample_margins: labels must be in [0, {k}), got {labels.min()}..{labels.max()}")
    true = outputs.gather(1, labels[:, None])[:, 0]
    others = outputs.scatter(1, labels[:, None], float("-inf"))
    return true - others.max(dim=1).values


def _layer_norm(tensors: Sequence[torch.Tensor], degree: float) -> torch.Tensor:
    flat = torch.cat([t.detach().reshape(-1).double() for t in tensors])
    return flat.abs().pow(degree).sum().pow(1.0 / degree)


def layerwise_margin(
    outputs: torch.Tensor,
    labels: torch.Tensor,
    layers: Sequence[Sequence[torch.Tensor]],
    degree: float = 2.0,
) -> float:
    """minᵢ qᵢ / Πₗ ‖θₗ‖_L (MATH.md §3), as used for VGG-16.

    ``layers`` lists the parameter tensors of each layer; a layer with a bias
    (the first layer of the VGG-16 model) lists both, and they count together.
    """
    if len(layers) == 0:
        raise ValueError("layerwise_margin: layers must not be empty")
    if not degree > 0:
        raise ValueError(f"layerwise_margin: degree must be > 0, got {degree}")
    q = sample_margins(outputs.detach().double(), labels)
    denominator = torch.ones((), dtype=torch.float64)
    for tensors in layers:
        denominator = denominator * _layer_norm(list(tensors), degree)
    return float(q.min() / denominator)


def weight_histogram(
    values: torch.Tensor | Sequence[torch.Tensor],
    bins: int = 100,
    log_scale: bool = False,
    value_range: tuple[float, float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Histogram of weight magnitudes |θ|: returns (counts, bin edges).

    With ``log_scale`` the bins are equal in log10|θ| (exact zeros are left out
    and their number is not counted); ``value_range`` is then in |θ| too.
    """
    if isinstance(values, torch.Tensor):
        values = [values]
    mags = torch.cat([v.detach().reshape(-1).double().abs() for v in values])
    if bins < 1:
        raise ValueError(f"weight_histogram: bins must be >= 1, got {bins}")
    if log_scale:
        mags = mags[mags > 0]
        if mags.numel() == 0:
            raise ValueError("weight_histogram: every weight is 0; nothing to place on a log scale")
        logs = mags.log10()
        lo, hi = (
            (float(logs.min()), float(logs.max()))
            if value_range is None
            else (float(torch.tensor(value_range[0]).log10()), float(torch.tensor(value_range[1]).log10()))
        )
        if hi <= lo:
            hi = lo + 1e-12
        counts = torch.histc(logs, bins=bins, min=lo, max=hi)
        edges = torch.logspace(lo, hi, bins + 1, dtype=torch.float64)
        return counts, edges
    lo, hi = (0.0, float(mags.max())) if value_range is None else value_range
    if hi <= lo:
        hi = lo + 1e-12
    counts = torch.histc(mags, bins=bins, min=lo, max=hi)
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    return counts, edges
