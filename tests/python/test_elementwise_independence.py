"""An element's step depends on that element alone (MATH.md: every potential is
separable), not on the values that share its SIMD vector: the CPU kernel's fast
exact paths for hypot, expm1 and pow are chosen lane by lane."""

from __future__ import annotations

import pytest
import torch

import mirrorflow

CASES = [
    ("hyperbolic", {"beta": 0.1}),
    ("power", {"beta": 0.1, "degree": 3.0}),
    ("power", {"beta": 0.1, "degree": 4.0}),
]


def _step(x: torch.Tensor, g: torch.Tensor, mirror: str, update: str, kw: dict) -> torch.Tensor:
    p = x.clone().requires_grad_()
    p.grad = g.clone()
    mirrorflow.MirrorDescent([p], lr=0.5, mirror=mirror, update=update, **kw).step()
    return p.detach()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("update", ["metric", "dual"])
@pytest.mark.parametrize("mirror,kw", CASES)
def test_step_of_an_element_ignores_its_vector_neighbours(mirror, kw, update, dtype):
    gen = torch.Generator().manual_seed(0)
    n = 1 << 16
    x = torch.randn(n, dtype=dtype, generator=gen)
    g = torch.randn(n, dtype=dtype, generator=gen) * 1e-2
    # Every 8th element is pushed out of the fast paths' ranges (huge |θ| and
    # |ηg|), so each SIMD vector (4 to 16 lanes) holds one such lane.
    x2, g2 = x.clone(), g.clone()
    x2[3::8] = 1e30 if dtype == torch.float32 else 1e200
    g2[3::8] = 50.0
    plain = _step(x, g, mirror, update, kw)
    mixed = _step(x2, g2, mirror, update, kw)
    keep = torch.ones(n, dtype=torch.bool)
    keep[3::8] = False
    differ = int((plain[keep] != mixed[keep]).sum())
    assert differ == 0, f"{differ} elements changed with their neighbours"
