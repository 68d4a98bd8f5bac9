"""The mirror step as a user would write it without mirrorflow: a loop over the
parameter tensors, plain PyTorch operations, in the parameters' dtype, one
formula for every map through the map's functions (θ − η·M⁻¹(θ)⊙g, and
∇φ*(∇φ(θ) − ηg) with MATH.md's stable form for the hyperbolic map). For the
euclidean map the specialised baseline is torch.optim.SGD itself.

It computes what ``mirrorflow.MirrorDescent`` computes (MATH.md §1-§2: the
gradient transform of ``torch.optim.SGD``, the metric or dual update,
per-tensor normalisation), so that the benchmark compares equal work; a test
checks that both agree to rounding. It is the baseline the fused kernels are
measured against, not a reference for correctness (that is tests/reference.py).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.optim import Optimizer


def inv_metric(x: torch.Tensor, mirror: str, beta: float, degree: float) -> torch.Tensor:
    """1/φ''(x) (MATH.md §1)."""
    if mirror == "euclidean":
        return torch.ones_like(x)
    if mirror == "hyperbolic":
        return torch.sqrt(x * x + beta * beta)
    x2 = x * x
    return (x2 + beta * beta) ** (2 - degree / 2) / ((degree - 1) * x2 + beta * beta)


def grad_phi(x: torch.Tensor, mirror: str, beta: float, degree: float) -> torch.Tensor:
    """∇φ(x) of the euclidean and power maps (MATH.md §1)."""
    if mirror == "euclidean":
        return x.clone()
    return x * (x * x + beta * beta) ** (degree / 2 - 1)


def power_grad_conj(y: torch.Tensor, start: torch.Tensor, beta: float,
                    degree: float) -> torch.Tensor:
    """∇φ*(y) of the power map with β > 0: Newton's method on
    u·(u²+β²)^{(L−2)/2} = |y| from u = `start`, bisecting where a step would
    leave the bracket [0, max(β, (2|y|)^{1/(L−1)})]; an element is done once its
    Newton step changes it by at most 2ε relatively (MATH.md §2)."""
    a = y.abs()
    b2 = beta * beta
    tol = 2 * torch.finfo(y.dtype).eps
    lo = torch.zeros_like(a)
    hi = torch.clamp((2 * a) ** (1 / (degree - 1)), min=beta)
    u = torch.where((start > lo) & (start < hi), start, hi / 2)
    done = ~(a > 0)
    for _ in range(100):
        s = u * u + b2
        p = s ** (degree / 2 - 1)
        f = u * p - a
        lo = torch.where(f < 0, u, lo)
        hi = torch.where(f > 0, u, hi)
        new = u - f / (p * ((degree - 1) * u * u + b2) / s)
        converged = (new - u).abs() <= tol * u
        new = torch.where(converged | ((new > lo) & (new < hi)), new, (lo + hi) / 2)
        u = torch.where(done | (f == 0), u, new)
        done |= converged | (f == 0)
        if bool(done.all()):
            break
    return torch.where(a > 0, torch.copysign(u, y), y)


class PlainMirrorDescent(Optimizer):
    """Mirror descent (MATH.md §2) in plain PyTorch, one tensor at a time.

    Takes the options of ``mirrorflow.MirrorDescent`` that the benchmark uses:
    lr, mirror, beta, degree, update, normalize, momentum (no dampening,
    Nesterov, weight decay or β scaling).
    """

    def __init__(self, params: Any, lr: float, mirror: str = "euclidean", beta: float = 1.0,
                 degree: float = 3.0, update: str = "metric", normalize: bool = False,
                 momentum: float = 0.0) -> None:
        if mirror not in ("euclidean", "hyperbolic", "power"):
            raise ValueError(f"PlainMirrorDescent: mirror must be euclidean, hyperbolic or "
                             f"power, got {mirror!r}")
        if update not in ("metric", "dual"):
            raise ValueError(f"PlainMirrorDescent: update must be metric or dual, got {update!r}")
        if mirror == "power" and not (degree > 1 and beta > 0):
            raise ValueError(f"PlainMirrorDescent: power needs degree > 1 and beta > 0, got "
                             f"degree={degree}, beta={beta}")
        super().__init__(params, dict(lr=lr, mirror=mirror, beta=beta, degree=degree,
                                      update=update, normalize=normalize, momentum=momentum))

    @torch.no_grad()
    def step(self, closure: None = None) -> None:
        for group in self.param_groups:
            mirror, beta, degree = group["mirror"], group["beta"], group["degree"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["momentum"] != 0:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = g.clone()
                    else:
                        state["momentum_buffer"].mul_(group["momentum"]).add_(g)
                    g = state["momentum_buffer"]
                lr = group["lr"]
                if group["normalize"]:
                    mean = inv_metric(p, mirror, beta, degree).double().mean().item()
                    lr = 0.0 if mean == 0 else lr / mean
                if group["update"] == "metric":
                    p.sub_(lr * inv_metric(p, mirror, beta, degree) * g)
                elif mirror == "hyperbolic":
                    z = lr * g
                    p.copy_(p * torch.cosh(z) - torch.sqrt(p * p + beta * beta) * torch.sinh(z))
                else:
                    y = grad_phi(p, mirror, beta, degree) - lr * g
                    p.copy_(y if mirror == "euclidean" else
                            power_grad_conj(y, p.abs(), beta, degree))
