"""The test oracle: mirror descent per tensor in float64, plain PyTorch.

Written from MATH.md alone and deliberately slow and obvious: closed forms
where MATH.md gives them, the §2 form θ·cosh(ηg) − √(θ²+β²)·sinh(ηg) for the
hyperbolic dual step, and bisection (not Newton) for the power map's ∇φ*. It
shares no code with the package.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


@dataclass
class Options:
    lr: float = 0.1
    mirror: str = "euclidean"
    beta: float = 1.0
    degree: float = 3.0
    update: str = "metric"
    normalize: bool = False
    beta_scaling: str = "none"
    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    maximize: bool = False

    def as_kwargs(self) -> dict:
        return dict(self.__dict__)


def layer_beta(opts: Options, shape: tuple[int, ...]) -> float:
    if opts.beta_scaling == "none":
        return opts.beta
    numel = math.prod(shape)
    fan_in = numel // shape[0] if len(shape) >= 2 and shape[0] > 0 else 1
    return opts.beta / math.sqrt(max(fan_in, 1))


def inv_metric(x: torch.Tensor, mirror: str, beta: float, degree: float) -> torch.Tensor:
    """1/φ''(x) (MATH.md §1)."""
    if mirror == "euclidean" or (mirror == "power" and degree == 2):
        return torch.ones_like(x)
    if mirror == "hyperbolic":
        return torch.sqrt(x * x + beta * beta)
    L = degree
    if beta == 0:
        return x.abs() ** (2 - L) / (L - 1)
    return (x * x + beta * beta) ** (2 - L / 2) / ((L - 1) * x * x + beta * beta)


def grad_phi(x: torch.Tensor, mirror: str, beta: float, degree: float) -> torch.Tensor:
    """∇φ(x)."""
    if mirror == "euclidean" or (mirror == "power" and degree == 2):
        return x.clone()
    if mirror == "hyperbolic":
        return torch.asinh(x / beta)
    L = degree
    if beta == 0:
        return torch.sign(x) * x.abs() ** (L - 1)
    return x * (x * x + beta * beta) ** (L / 2 - 1)


def grad_conj(y: torch.Tensor, mirror: str, beta: float, degree: float) -> torch.Tensor:
    """∇φ*(y) = (∇φ)⁻¹(y); bisection for the power map with β > 0."""
    if mirror == "euclidean" or (mirror == "power" and degree == 2):
        return y.clone()
    if mirror == "hyperbolic":
        return beta * torch.sinh(y)
    L = degree
    a = y.abs()
    if beta == 0:
        return torch.sign(y) * a ** (1 / (L - 1))
    lo = torch.zeros_like(a)
    hi = torch.maximum((2 * a) ** (1 / (L - 1)), torch.full_like(a, beta))
    for _ in range(2000):  # until the bracket stops shrinking: [lo, hi] is then ≤ 1 ulp wide
        mid = (lo + hi) / 2
        too_big = mid * (mid * mid + beta * beta) ** ((L - 2) / 2) > a
        new_hi = torch.where(too_big, mid, hi)
        new_lo = torch.where(too_big, lo, mid)
        if torch.equal(new_hi, hi) and torch.equal(new_lo, lo):
            break
        lo, hi = new_lo, new_hi
    return torch.sign(y) * (lo + hi) / 2


def conj_of_grad(x: torch.Tensor, mirror: str, beta: float, degree: float) -> torch.Tensor:
    """φ*(∇φ(x)) (the summand of the balance Bₗ)."""
    if mirror == "euclidean" or (mirror == "power" and degree == 2):
        return x * x / 2
    if mirror == "hyperbolic":
        return torch.sqrt(x * x + beta * beta) - beta
    L = degree
    phi = ((x * x + beta * beta) ** (L / 2) - beta**L) / L
    return x * grad_phi(x, mirror, beta, degree) - phi


def mirror_step(
    theta: torch.Tensor, g: torch.Tensor, lr: float, mirror: str, beta: float, degree: float,
    update: str,
) -> torch.Tensor:
    """One update with effective gradient g and learning rate lr (MATH.md §2)."""
    if update == "metric":
        return theta - lr * inv_metric(theta, mirror, beta, degree) * g
    z = lr * g
    if mirror == "euclidean" or (mirror == "power" and degree == 2):
        return theta - z
    if mirror == "hyperbolic":
        return theta * torch.cosh(z) - torch.sqrt(theta * theta + beta * beta) * torch.sinh(z)
    return grad_conj(grad_phi(theta, mirror, beta, degree) - z, mirror, beta, degree)


@dataclass
class TensorState:
    momentum_buffer: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)


def reference_step(
    theta: torch.Tensor, grad: torch.Tensor, state: TensorState, opts: Options
) -> torch.Tensor:
    """One step of one parameter tensor, in float64; updates ``state``."""
    theta = theta.double()
    g = grad.double()
    if opts.maximize:
        g = -g
    if opts.weight_decay != 0:
        g = g + opts.weight_decay * theta
    if opts.momentum != 0:
        if state.momentum_buffer is None:
            buf = g.clone()
        else:
            buf = opts.momentum * state.momentum_buffer.double() + (1 - opts.dampening) * g
        state.momentum_buffer = buf
        g = g + opts.momentum * buf if opts.nesterov else buf
    beta = layer_beta(opts, tuple(theta.shape))
    lr = opts.lr
    if opts.normalize and theta.numel() > 0:
        mean = inv_metric(theta, opts.mirror, beta, opts.degree).mean().item()
        lr = 0.0 if mean == 0 else lr / mean
    return mirror_step(theta, g, lr, opts.mirror, beta, opts.degree, opts.update)
