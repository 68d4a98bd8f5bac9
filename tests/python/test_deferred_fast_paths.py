"""The CPU kernel runs its loops on fast exact paths first and recomputes a
block in which some element leaves their ranges (csrc/cpu/vectorized_ops.h).
An element's step must not depend on whether that happened to its block: the
same elements give the same bits, parameters, unscaled gradients and momentum
buffers alike, whether the element that left the range shares their block or
sits in a tensor of its own."""

from __future__ import annotations

import pytest
import torch

import mirrorflow

N = 3 * 16384 + 77  # three work items and a partial group at the end
OUTLIERS = [20003, N - 2]  # inside the second item, and in the last partial group

CASES = [
    ("hyperbolic", "metric", {"beta": 0.1}),
    ("hyperbolic", "dual", {"beta": 0.1}),
    ("power", "metric", {"beta": 0.1, "degree": 3.0}),
    ("power", "dual", {"beta": 0.1, "degree": 3.0}),
]


def _data(dtype):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(N, dtype=dtype, generator=gen)
    grads = [torch.randn(N, dtype=dtype, generator=gen) * 1e-2 for _ in range(2)]
    big = 1e30 if dtype == torch.float32 else 1e200
    for i in OUTLIERS:
        x[i] = big  # hypot and the power map's terms leave their fast ranges
        for g in grads:
            g[i] = 50.0  # |η·g| leaves expm1's polynomial range
    return x, grads


def _pieces(t: torch.Tensor) -> list[torch.Tensor]:
    """The tensor cut so that each outlier is a tensor of its own."""
    cuts = [0]
    for i in OUTLIERS:
        cuts += [i, i + 1]
    cuts.append(N)
    return [t[a:b].clone() for a, b in zip(cuts, cuts[1:]) if b > a]


def _train(xs, grad_lists, mirror, update, kw):
    params = [x.clone().requires_grad_() for x in xs]
    opt = mirrorflow.MirrorDescent(params, lr=0.5, mirror=mirror, update=update, momentum=0.9,
                                   weight_decay=0.01, **kw)
    for grads in grad_lists:
        for p, g in zip(params, grads):
            p.grad = g * 4.0  # scaled as by torch.amp.GradScaler, unscaled in the step
        opt.grad_scale = torch.tensor(4.0)
        opt.step()
    del opt.grad_scale
    buffers = [opt.state[p]["momentum_buffer"] for p in params]
    return (torch.cat([p.detach() for p in params]), torch.cat([p.grad for p in params]),
            torch.cat(buffers))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mirror,update,kw", CASES)
def test_a_block_recomputed_gives_the_bits_of_its_elements_alone(mirror, update, kw, dtype):
    x, grads = _data(dtype)
    whole = _train([x], [[g] for g in grads], mirror, update, kw)
    split = _train(_pieces(x), [_pieces(g) for g in grads], mirror, update, kw)
    for name, a, b in zip(("parameters", "unscaled gradients", "momentum buffers"), whole, split):
        differ = int((a != b).sum() - (a.isnan() & b.isnan()).sum())
        assert differ == 0, f"{differ} {name} differ"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mirror,update,kw", [
    ("hyperbolic", "metric", {"beta": 0.1}),
    ("hyperbolic", "dual", {"beta": 0.1}),
    ("power", "metric", {"beta": 0.1, "degree": 4.0}),  # its pow has no fast path: every block
])
def test_normalising_mean_tracked_through_a_recomputed_block(mirror, update, kw, dtype):
    """The mean of 1/φ''(θ⁺) added up while writing θ⁺ (a block of which was
    recomputed) equals the mean computed afresh from θ⁺, bit for bit."""
    x, grads = _data(dtype)  # 1/φ'' of the outliers is finite, hypot's fast path misses there
    p = x.clone().requires_grad_()
    q = x.clone().requires_grad_()
    opts = dict(lr=1e-3, mirror=mirror, update=update, normalize=True, **kw)
    tracked = mirrorflow.MirrorDescent([p], **opts)
    for g in grads:
        g = g.clone()
        g[OUTLIERS] = 1e-2
        p.grad, q.grad = g.clone(), g.clone()
        tracked.step()
        mirrorflow.MirrorDescent([q], **opts).step()  # computes the mean afresh
        assert torch.equal(p, q)
    # A skipped step (found_inf) computes the mean of the unchanged θ afresh.
    fresh = mirrorflow.MirrorDescent([q], **opts)
    fresh.found_inf = torch.tensor(1.0)
    fresh.step()
    assert torch.equal(q, p)
    assert torch.equal(tracked._metric_mean(p), fresh._metric_mean(q))
    # and both are the mean of 1/φ'' element by element (in another order of addition:
    # the kernel adds float32 terms four at a time in float32 first, at most 2⁻²³ of
    # the sum; test_normalizing_mean.py checks that order bit for bit). map_eval evaluates
    # the scalar formulas with fused multiply-adds; so does the kernel with
    # AVX2/AVX512, but ATen's DEFAULT build rounds a·b + c twice (as torch's own
    # DEFAULT kernels do), which moves float32 terms by an ulp or so.
    terms = mirrorflow.map_eval(p.detach(), mirror, "inv_metric", beta=kw["beta"],
                                degree=kw.get("degree", 3.0))
    expected = terms.double().mean()
    fused = mirrorflow.build_info()["cpu_capability"] != "DEFAULT" or dtype == torch.float64
    bound = 1e-12 if dtype == torch.float64 else 2.0**-23
    if not fused:
        bound += 4 * torch.finfo(dtype).eps
    assert abs(tracked._metric_mean(p).item() / expected.item() - 1) < bound
