"""The per-tensor mean of 1/φ'' that normalised steps divide by (MATH.md §2):
kept from the step that wrote θ⁺ and equal to a fresh computation, added up in
its documented order (checked bit for bit against an oracle in exact
arithmetic), recomputed when the parameter is changed outside the optimizer."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

import mirrorflow


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mirror,update,kw", [
    ("hyperbolic", "metric", {"beta": 0.05}),
    ("hyperbolic", "dual", {"beta": 0.05}),
    ("power", "metric", {"beta": 0.1, "degree": 3.0}),
    ("power", "metric", {"beta": 0.1, "degree": 4.0}),
    ("power", "dual", {"beta": 0.1, "degree": 3.0}),
])
def test_mean_kept_from_a_step_equals_the_mean_recomputed(mirror, update, kw, dtype):
    """docs/math.md: the mean of 1/φ''(θ⁺) added up while writing θ⁺ equals the
    one a fresh optimizer (or one resumed from a state_dict) computes from θ⁺,
    bit for bit, so that a resumed run continues with the same bits."""
    gen = torch.Generator().manual_seed(4)
    n = 3 * 16384 + 77  # several work items and a partial group
    p = torch.randn(n, generator=gen, dtype=dtype).requires_grad_()
    opts = dict(lr=0.05, mirror=mirror, update=update, normalize=True, **kw)
    kept = mirrorflow.MirrorDescent([p], **opts)
    for _ in range(2):
        p.grad = torch.randn(n, generator=gen, dtype=dtype)
        kept.step()
    q = p.detach().clone().requires_grad_()
    q.grad = torch.zeros_like(q)
    fresh = mirrorflow.MirrorDescent([q], **opts)
    fresh.found_inf = torch.tensor(1.0)  # a skipped step: computes the mean of θ, moves nothing
    fresh.step()
    assert torch.equal(q, p)
    assert torch.equal(kept._metric_mean(p), fresh._metric_mean(q))



def _mean_in_kernel_order(terms, fused: bool = True) -> float:
    """The mean of 1/φ'' as the CPU kernel adds it up (csrc/cpu/inv_metric_sum.h,
    LaneSums): per work item of 16 384 elements, 8 double lanes; float32 terms are
    first added in float32, ((t[k] + t[k+8]) + (t[k+16] + t[k+24])) per group of 32,
    float64 terms go to lane i mod 8; a last partial group is completed with zeros;
    the lanes, then the items, are added in order. For the power map in float32,
    `terms` is the pair (n, r) of its fractions n/r, added as _power_groups says
    (`fused`: with its one fused multiply-add, which ATen's DEFAULT build rounds
    twice)."""
    fractions = isinstance(terms, tuple)
    dtype = np.float32 if fractions else terms.dtype
    size = terms[0].size if fractions else terms.size
    group = 32 if dtype == np.float32 else 8
    total = 0.0
    for start in range(0, size, 16384):
        if fractions:
            item = (a[start:start + 16384] for a in terms)
            rows = _power_groups(*item, fused=fused).astype(np.float64)
        else:
            item = terms[start:start + 16384]
            padded = np.zeros(-(-item.size // group) * group, terms.dtype)
            padded[:item.size] = item
            if terms.dtype == np.float32:
                g = padded.reshape(-1, 4, 8)
                rows = ((g[:, 0] + g[:, 1]) + (g[:, 2] + g[:, 3])).astype(np.float64)
            else:
                rows = padded.reshape(-1, 8)
        lanes = np.zeros(8)
        for row in rows:
            lanes = lanes + row
        item_sum = 0.0
        for lane in lanes:
            item_sum += lane
        total += item_sum
    return total / size


def _power_groups(n: np.ndarray, r: np.ndarray, fused: bool = True) -> np.ndarray:
    """The power map's float32 sums per group of 32 (csrc/cpu/inv_metric_sum.h,
    pair_of_fractions), 8 per group: the terms n/r of elements k and k+16 as one
    fraction, fma(n₁, r₂, n₂·r₁)/(r₁·r₂), where n₁, r₁, n₂ and r₂ all lie in
    [2⁻⁶⁰, 2⁶⁰], else as n₁/r₁ + n₂/r₂; a partial group completed with n = 0,
    r = 1; then f[k] + f[k+8]. Each operation rounded once (the fma by exact
    rationals)."""
    size = -(-n.size // 32) * 32
    num = np.zeros(size, np.float32)
    den = np.ones(size, np.float32)
    num[:n.size], den[:r.size] = n, r
    n1, n2 = num.reshape(-1, 2, 16).transpose(1, 0, 2)
    r1, r2 = den.reshape(-1, 2, 16).transpose(1, 0, 2)
    low, high = np.float32(2.0**-60), np.float32(2.0**60)
    fits = np.logical_and.reduce([(low <= v) & (v <= high) for v in (n1, r1, n2, r2)])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        p = n2 * r1
        if fused:  # only where the pair fits: elsewhere unused, and maybe not finite
            top = np.array([_float32_of(Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c)))
                            if ok else np.float32(0)
                            for a, b, c, ok in zip(n1.ravel(), r2.ravel(), p.ravel(), fits.ravel())],
                           dtype=np.float32).reshape(n1.shape)
        else:
            top = n1 * r2 + p
        f = np.where(fits, top / (r1 * r2), n1 / r1 + n2 / r2)
    return f[:, :8] + f[:, 8:]


def _power_fractions(x: np.ndarray, beta: float, degree: float):
    """n = (x²+β²)^{2−L/2} and r = fma(L−1, x², β²) of float32 x for L = 3 (n the
    correctly rounded √) and L = 4 (n = 1), each operation rounded once."""
    b = np.float32(beta)
    b2 = b * b
    x2 = x * x
    if degree == 3.0:
        return np.sqrt(x2 + b2), np.float32(2) * x2 + b2  # 2x² is exact
    assert degree == 4.0
    r = np.array([_float32_of(3 * Fraction(float(v)) + Fraction(float(b2))) for v in x2],
                 dtype=np.float32)
    return np.ones_like(x), r


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mirror,kw", [
    ("hyperbolic", {"beta": 0.1}),
    ("power", {"beta": 0.1, "degree": 3.0}),
    ("power", {"beta": 0.1, "degree": 4.0}),
])
def test_the_mean_is_added_up_in_its_documented_order(mirror, kw, dtype):
    """The kernel's mean of 1/φ''(θ), against the same sum written out in NumPy over
    independently computed terms: the same bits where the terms are (AVX2/AVX512,
    whose fused multiply-adds the terms below reproduce)."""
    gen = torch.Generator().manual_seed(2)
    p = torch.randn(3 * 16384 + 77, generator=gen, dtype=dtype).requires_grad_()
    p.grad = torch.zeros_like(p)
    opt = mirrorflow.MirrorDescent([p], lr=1e-3, mirror=mirror, normalize=True, **kw)
    opt.found_inf = torch.tensor(1.0)  # computes the mean of θ and moves nothing
    opt.step()
    x = p.detach().numpy()
    if mirror == "hyperbolic" and dtype == torch.float32:
        # the kernel's √(fma(x, x, β²)) in float32
        terms = _terms_by_hand(mirror, x, kw["beta"], fused=True)
    elif mirror == "power" and dtype == torch.float32:
        terms = _power_fractions(x, kw["beta"], kw["degree"])
    else:
        terms = mirrorflow.map_eval(p.detach(), mirror, "inv_metric", beta=kw["beta"],
                                    degree=kw.get("degree", 3.0)).numpy()
    expected = _mean_in_kernel_order(terms)
    got = opt._metric_mean(p).item()
    if mirrorflow.build_info()["cpu_capability"] == "DEFAULT" and dtype == torch.float32:
        # ATen's DEFAULT build rounds a·b + c twice, which moves terms by an ulp or so
        assert abs(got / expected - 1) < 4 * torch.finfo(dtype).eps
    else:
        assert got == expected


def _float32_of(value: Fraction) -> np.float32:
    """A positive rational rounded once to float32 (to nearest, ties to even;
    normal range)."""
    e = value.numerator.bit_length() - value.denominator.bit_length()
    if Fraction(2) ** e > value:
        e -= 1  # now 2**e <= value < 2**(e + 1)
    unit = Fraction(2) ** (e - 23)
    return np.float32(float(round(value / unit) * unit))  # round() of a Fraction: half to even


def _terms_by_hand(mirror: str, x: np.ndarray, beta: float, fused: bool) -> np.ndarray:
    """1/φ'' of float32 x as the CPU kernel's formulas round it, each operation
    rounded once: hyperbolic √(fma(x, x, β²)) (its fma by exact rationals;
    rounded twice, x·x then + β², where ATen's DEFAULT build does not fuse),
    power with L = 3 √(x² + β²)/(2x² + β²) (2x² is exact: fused or not)."""
    b = np.float32(beta)
    b2 = b * b
    if mirror == "hyperbolic" and not fused:
        return np.sqrt(x * x + b2)
    if mirror == "hyperbolic":
        q = np.array([_float32_of(Fraction(float(v)) ** 2 + Fraction(float(b2))) for v in x],
                     dtype=np.float32)
        return np.sqrt(q)
    x2 = x * x
    return np.sqrt(x2 + b2) / (np.float32(2) * x2 + b2)


@pytest.mark.parametrize("mirror,beta,low,top", [
    ("hyperbolic", 0.1, -60.0, 59.5),
    ("hyperbolic", 2.0**-50, -60.0, 59.5),  # β² = 2⁻¹⁰⁰, the low end of the fast √'s range
    ("power", 0.1, -60.0, 62.0),  # x² + β² beyond 2¹²⁰ for |x| > 2⁶⁰: √ on the divider there
    ("power", 2.0**-60, -56.0, -44.0),  # x² + β² on both sides of 2⁻¹⁰⁰
])
def test_float32_square_roots_are_correctly_rounded_across_the_range(mirror, beta, low, top):
    """csrc/cpu/vectorized_ops.h: on AVX512 the kernel's float32 loops take √ by
    multiplications and fmas from vrsqrt14ps (math_ops.h, sqrt_from_rsqrt) where
    the argument is in [2⁻¹⁰⁰, 2¹²⁰], on the divider elsewhere; either way the
    bits of a correctly rounded √. Over θ whose magnitudes cover the binades
    [2^low, 2^top) evenly, with zeros: the mean of 1/φ''(θ) (the sum loop) against the
    terms rounded by hand in NumPy and added in the kernel's order, and a metric
    step with η = 1 (the update loop), θ⁺ = θ − 1/φ''(θ)·g rounded once each."""
    gen = np.random.default_rng(11)
    n = 3 * 16384 + 77
    exponent = gen.uniform(low, top, n)
    x = (np.sign(gen.standard_normal(n)) * np.exp2(exponent)).astype(np.float32)
    x[::97] = 0.0
    kw = dict(mirror=mirror, beta=beta, degree=3.0)
    fused = mirrorflow.build_info()["cpu_capability"] != "DEFAULT"
    terms = _terms_by_hand(mirror, x, beta, fused)
    assert np.isfinite(terms).all()

    p = torch.from_numpy(x.copy()).requires_grad_()
    p.grad = torch.zeros_like(p)
    opt = mirrorflow.MirrorDescent([p], lr=1.0, normalize=True, **kw)
    opt.found_inf = torch.tensor(1.0)  # computes the mean of θ and moves nothing
    opt.step()
    addends = _power_fractions(x, beta, 3.0) if mirror == "power" else terms
    assert opt._metric_mean(p).item() == _mean_in_kernel_order(addends, fused)

    g = (gen.standard_normal(n) * 1e-2).astype(np.float32)
    q = torch.from_numpy(x.copy()).requires_grad_()
    q.grad = torch.from_numpy(g.copy())
    mirrorflow.MirrorDescent([q], lr=1.0, update="metric", **kw).step()
    expected = x - terms * g
    bits = q.detach().numpy().view(np.int32)
    differ = np.flatnonzero(bits != expected.view(np.int32))
    assert differ.size == 0, (differ[:5], x[differ[:5]])


def test_metric_mean_cache_follows_changes_outside_the_optimizer():
    """The normalised step reuses the mean it computed while writing θ⁺; an
    in-place change of the parameter must make it recompute."""
    torch.manual_seed(0)
    p = torch.randn(300, dtype=torch.float64).requires_grad_()
    q = p.detach().clone().requires_grad_()
    kwargs = dict(lr=0.1, mirror="hyperbolic", beta=0.05, normalize=True)
    cached = mirrorflow.MirrorDescent([p], **kwargs)
    for step in range(4):
        g = torch.randn(300, dtype=torch.float64)
        p.grad = g.clone()
        q.grad = g.clone()
        cached.step()
        mirrorflow.MirrorDescent([q], **kwargs).step()  # always computes the mean afresh
        assert torch.allclose(p, q, rtol=1e-13, atol=0)
        if step == 1:
            with torch.no_grad():
                p.mul_(3.0)
                q.mul_(3.0)


def test_version_counter_moves_with_each_step():
    p = torch.randn(10, requires_grad=True)
    opt = mirrorflow.MirrorDescent([p], lr=0.1)
    p.grad = torch.ones(10)
    before = p._version
    opt.step()
    assert p._version > before

