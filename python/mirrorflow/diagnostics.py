"""Diagnostics of homogeneous networks trained by mirror descent (MATH.md §3).

Per-sample margins qᵢ are yᵢ·f(xᵢ) for binary outputs (labels ±1, outputs of
shape (n,) or (n, 1)) and f_{yᵢ}(xᵢ) − max_{j≠yᵢ} f_j(xᵢ) for multi-class
outputs of shape (n, k) with integer labels. Every margin below is computed
from these, so each works for binary and multi-class outputs alike.

Neurons of a layer are described by ``incoming`` weights of shape (m, d) (row j
feeds neuron j) and ``outgoing`` weights of shape (m,) or (k, m) (column j
leaves neuron j), the layout of ``torch.nn.Linear`` weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .maps import horizon_degree, map_eval

__all__ = [
    "active_neurons",
    "horizon_margin",
    "layer_balance",
    "layerwise_margin",
    "neuron_balance",
    "neuron_strength",
    "sample_margins",
    "soft_min_margin",
    "weight_histogram",
]


def sample_margins(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample margins qᵢ (MATH.md §3), in the dtype of ``outputs``.

    Binary: ``outputs`` of shape (n,) or (n, 1) and labels in {−1, +1}.
    Multi-class: ``outputs`` of shape (n, k), k ≥ 2, and integer class labels.
    """
    if outputs.numel() == 0:
        raise ValueError(
            f"sample_margins: outputs hold no sample (shape {tuple(outputs.shape)})")
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
    A layer of norm 0 gives ±inf (nan when the margin is 0), so that a training
    loop that logs the margin goes on.
    """
    if len(layers) == 0:
        raise ValueError("layerwise_margin: layers must not be empty")
    if not (isinstance(degree, (int, float)) and math.isfinite(degree) and degree > 0):
        raise ValueError(f"layerwise_margin: degree must be a finite number > 0, got {degree!r}")
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
    if bins < 1:
        raise ValueError(f"weight_histogram: bins must be >= 1, got {bins}")
    if value_range is not None:
        lo, hi = value_range
        floor = 0.0 if not log_scale else math.nextafter(0.0, 1.0)
        if not (math.isfinite(lo) and math.isfinite(hi) and floor <= lo < hi):
            rule = "0 < lo < hi" if log_scale else "0 <= lo < hi"
            raise ValueError(
                f"weight_histogram: value_range must be finite (lo, hi) with {rule}, "
                f"got {value_range!r}")
    mags = torch.cat([v.detach().reshape(-1).double().abs() for v in values]) if values else None
    if mags is None or mags.numel() == 0:
        raise ValueError("weight_histogram: values hold no element")
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
        if hi <= lo:  # every magnitude the same: one bin's width around it
            hi = lo + 1e-12
        counts = torch.histc(logs, bins=bins, min=lo, max=hi)
        edges = torch.logspace(lo, hi, bins + 1, dtype=torch.float64)
        return counts, edges
    lo, hi = (0.0, float(mags.max())) if value_range is None else value_range
    if hi <= lo:  # every magnitude 0
        hi = lo + 1e-12
    counts = torch.histc(mags, bins=bins, min=lo, max=hi)
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    return counts, edges


def soft_min_margin(outputs: torch.Tensor, labels: torch.Tensor) -> float:
    """The soft minimum −log Σᵢ exp(−qᵢ) of the margins (MATH.md §3).

    A smooth lower bound of minᵢ qᵢ: minᵢ qᵢ − log n ≤ soft ≤ minᵢ qᵢ.
    """
    q = sample_margins(outputs.detach().double(), labels)
    return float(-torch.logsumexp(-q, dim=0))


def horizon_margin(
    outputs: torch.Tensor,
    labels: torch.Tensor,
    params: Sequence[torch.Tensor],
    degree: float,
    homogeneity: int,
    soft: bool = False,
) -> float:
    """γ_L = minᵢ qᵢ / (Σⱼ|θⱼ|^L)^{D/L} (MATH.md §3), L = ``degree``, D = ``homogeneity``.

    ``params`` are all parameters of a network that is D-homogeneous in them
    (D bias-free layers with ReLU); γ_L is then unchanged when every parameter
    is multiplied by the same c > 0. With ``soft`` the numerator is the soft
    minimum of :func:`soft_min_margin` (not scale-invariant).
    """
    if not (isinstance(degree, (int, float)) and math.isfinite(degree) and degree > 0):
        raise ValueError(f"horizon_margin: degree must be a finite number > 0, got {degree!r}")
    if isinstance(homogeneity, bool) or not isinstance(homogeneity, int) or homogeneity < 1:
        raise ValueError(
            f"horizon_margin: homogeneity must be an integer >= 1, got {homogeneity!r}"
        )
    if len(params) == 0:
        raise ValueError("horizon_margin: params must not be empty")
    if soft:
        numerator = soft_min_margin(outputs, labels)
    else:
        numerator = float(sample_margins(outputs.detach().double(), labels).min())
    norm = _layer_norm(list(params), degree)  # (Σⱼ|θⱼ|^L)^{1/L}
    if not float(norm) > 0:
        raise ValueError("horizon_margin: every parameter is 0; the margin is undefined")
    return numerator / float(norm.pow(homogeneity))


def _balance_terms(t: torch.Tensor, mirror: str, beta: float, degree: float) -> torch.Tensor:
    horizon_degree(mirror, degree)  # checks the map's name
    return map_eval(t.detach().double(), mirror, "conj_of_grad", beta, degree)


def layer_balance(
    layers: Sequence[torch.Tensor | Sequence[torch.Tensor]],
    mirror: str,
    beta: float = 1.0,
    degree: float = 3.0,
) -> torch.Tensor:
    """Bₗ = Σ_{i∈l} φ*(∇φ(θᵢ)) per layer (MATH.md §3), float64 of shape (len(layers),).

    Mirror flow with the same map keeps Bₗ − Bₗ₊₁ constant for layers that are
    each 1-homogeneous; for ``euclidean`` Bₗ = ½‖θₗ‖².
    """
    if len(layers) == 0:
        raise ValueError("layer_balance: layers must not be empty")
    values = []
    for layer in layers:
        tensors = [layer] if isinstance(layer, torch.Tensor) else list(layer)
        values.append(sum(float(_balance_terms(t, mirror, beta, degree).sum()) for t in tensors))
    return torch.tensor(values, dtype=torch.float64)


def _neuron_layout(incoming: torch.Tensor, outgoing: torch.Tensor, name: str) -> torch.Tensor:
    """Checks the shapes; returns ``outgoing`` as (k, m)."""
    if incoming.dim() != 2:
        raise ValueError(f"{name}: incoming must have shape (m, d), got {tuple(incoming.shape)}")
    m = incoming.shape[0]
    out = outgoing[None, :] if outgoing.dim() == 1 else outgoing
    if out.dim() != 2 or out.shape[1] != m:
        raise ValueError(
            f"{name}: outgoing must have shape ({m},) or (k, {m}) for incoming of shape "
            f"{tuple(incoming.shape)}, got {tuple(outgoing.shape)}"
        )
    return out


def neuron_balance(
    incoming: torch.Tensor,
    outgoing: torch.Tensor,
    mirror: str,
    beta: float = 1.0,
    degree: float = 3.0,
) -> torch.Tensor:
    """Per-neuron balance Σᵢ φ*(∇φ(w_ji)) − Σₖ φ*(∇φ(a_kj)) (MATH.md §3), float64 (m,).

    Conserved by mirror flow with the same map for a ReLU neuron between a
    linear layer and the next (also with a constant factor such as 1/m in front).
    """
    out = _neuron_layout(incoming, outgoing, "neuron_balance")
    w_terms = _balance_terms(incoming, mirror, beta, degree).sum(dim=1)
    a_terms = _balance_terms(out, mirror, beta, degree).sum(dim=0)
    return w_terms - a_terms


def neuron_strength(incoming: torch.Tensor, outgoing: torch.Tensor) -> torch.Tensor:
    """‖out_j‖₂·‖in_j‖₂ per neuron j (|aⱼ|·‖wⱼ‖ for one output), float64 (m,)."""
    out = _neuron_layout(incoming, outgoing, "neuron_strength")
    return incoming.detach().double().norm(dim=1) * out.detach().double().norm(dim=0)


def active_neurons(incoming: torch.Tensor, outgoing: torch.Tensor, threshold: float = 0.05) -> int:
    """Number of neurons j with strength_j > τ·maxₖ strengthₖ, τ = ``threshold`` (MATH.md §3).

    The strength is :func:`neuron_strength`; a layer whose neurons are all 0 has none active.
    """
    if not (isinstance(threshold, (int, float)) and 0 <= threshold < 1):
        raise ValueError(f"active_neurons: threshold must be in [0, 1), got {threshold!r}")
    strength = neuron_strength(incoming, outgoing)
    top = strength.max() if strength.numel() else torch.zeros((), dtype=torch.float64)
    if not float(top) > 0:
        return 0
    return int((strength > threshold * top).sum())
