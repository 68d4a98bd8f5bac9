"""The CUDA operator against the float64 reference and the CPU operator: every
configuration, many small tensors, misaligned views, huge tensors, map_eval.
Skipped, with the reason, where torch.cuda.is_available() is False.
"""

from __future__ import annotations

import os

import pytest
import torch

import mirrorflow
from reference import Options, TensorState, grad_phi, inv_metric, layer_beta, reference_step
from test_reference_parity import (
    CASES,
    DTYPES,
    MAPS,
    OPTIONS,
    _tolerance,
    check_against_reference,
    make_params,
)

gpu = pytest.mark.skipif(not torch.cuda.is_available(),
                         reason="needs a CUDA device (torch.cuda.is_available() is False)")


# ---- the case lists of the whole matrix (its tests are at the end of the file) -----


def _is_power_dual(case) -> bool:
    """The power map's dual update with β > 0, whose reference (bisection) is slow."""
    kw = MAPS[case.values[0]]
    return (case.values[1] == "dual" and kw["mirror"] == "power" and kw["beta"] > 0
            and kw["degree"] != 2)


# Against the float64 reference: every map × update × normalize × beta_scaling ×
# dtype and every option, except that the power map's dual update (whose reference
# solves by bisection, seconds per case) takes one option here, and all of them in
# the next test against the CPU operator. MIRRORFLOW_FULL_CUDA_MATRIX=1 runs all.
REFERENCE_CASES = [c for c in CASES if not _is_power_dual(c) or c.values[4] == "nesterov"
                   or os.environ.get("MIRRORFLOW_FULL_CUDA_MATRIX") == "1"]
POWER_DUAL_CASES = [c for c in CASES if _is_power_dual(c)]


# ---- the Euclidean step, bit for bit ------------------------------------------------


def _run_both(make_params, opts: dict, steps: int, seed: int = 0,
              offsets: dict[int, int] | None = None):
    """Runs MirrorDescent on the CPU and on CUDA from the same parameters and
    gradients; returns (cpu params, cuda params, cpu optimizer, cuda optimizer).
    `offsets` {i: k} makes parameter i the view [k:] of its tensor on each
    device (a copy of a view would be aligned again)."""
    cpu = [p.clone() for p in make_params()]
    dev = [p.to("cuda", copy=True) for p in cpu]
    for i, k in (offsets or {}).items():
        cpu[i], dev[i] = cpu[i][k:], dev[i][k:]
    for p in cpu + dev:
        p.requires_grad_()
    opt_cpu = mirrorflow.MirrorDescent(cpu, **opts)
    opt_dev = mirrorflow.MirrorDescent(dev, **opts)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for a, b in zip(cpu, dev):
            g = torch.randn(a.shape, generator=gen, dtype=torch.float64).to(a.dtype)
            a.grad, b.grad = g, g.to("cuda", copy=True)
        opt_cpu.step()
        opt_dev.step()
    return cpu, dev, opt_cpu, opt_dev


SGD_LIKE = [dict(), dict(momentum=0.9, nesterov=True, weight_decay=0.01),
            dict(momentum=0.8, dampening=0.3, maximize=True)]


@gpu
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("options", SGD_LIKE, ids=["plain", "nesterov", "dampened"])
@pytest.mark.parametrize("normalize", [False, True])
def test_euclidean_is_bit_identical_to_the_cpu_operator(dtype, options, normalize):
    """Only IEEE operations (fma, ·, /) enter the Euclidean step, so both
    backends round alike: vector path, scalar fallback for a misaligned view,
    chunk tails. (ATen's DEFAULT CPU build rounds a·b + c twice: no fma there.)"""
    if mirrorflow.build_info()["cpu_capability"] == "DEFAULT":
        pytest.skip("the CPU operator's DEFAULT build has no fused multiply-add")

    def params():
        gen = torch.Generator().manual_seed(0)
        return [torch.randn(65536 * 2 + 13, generator=gen).to(dtype),
                torch.randn(70000 + 3, generator=gen).to(dtype),
                torch.randn(7, 5, generator=gen).to(dtype).t(), torch.randn((), generator=gen)
                .to(dtype)]

    cpu, dev, opt_cpu, opt_dev = _run_both(
        params, dict(lr=0.05, normalize=normalize, **options), steps=3, offsets={1: 3})
    assert dev[1].data_ptr() % 16 != 0  # the misaligned view reaches the GPU as one
    for a, b in zip(cpu, dev):
        assert torch.equal(a, b.cpu())
        if "momentum" in options:
            assert torch.equal(opt_cpu.state[a]["momentum_buffer"],
                               opt_dev.state[b]["momentum_buffer"].cpu())


# ---- shapes and memory layouts --------------------------------------------------


@gpu
def test_many_small_tensors_and_a_multi_chunk_one():
    def params():
        gen = torch.Generator().manual_seed(1)
        sizes = torch.randint(1, 300, (1000,), generator=gen).tolist()
        small = [torch.randn(n, generator=gen) * 0.5 for n in sizes]
        return small + [torch.randn(3 * 65536 + 17, generator=gen) * 0.5]

    opts = dict(lr=0.05, mirror="hyperbolic", beta=0.1, normalize=True, momentum=0.9,
                weight_decay=0.01)
    cpu, dev, opt_cpu, opt_dev = _run_both(params, opts, steps=3)
    for a, b in zip(cpu, dev):
        torch.testing.assert_close(b.cpu(), a, rtol=2e-6, atol=1e-7)
        assert opt_dev.state[b]["step"].item() == 3
    for a, b in zip(cpu, dev):
        mean_cpu = opt_cpu._metric_mean(a)
        mean_dev = opt_dev._metric_mean(b)
        torch.testing.assert_close(mean_dev.cpu(), mean_cpu, rtol=1e-6, atol=0)


@gpu
@pytest.mark.parametrize("dtype,offset", [(torch.float32, 1), (torch.float32, 2),
                                          (torch.float32, 3), (torch.float64, 1),
                                          (torch.float16, 5), (torch.bfloat16, 3)])
def test_misaligned_views_take_the_scalar_path(dtype, offset):
    """Storage offsets that are not a multiple of 16 bytes, for the parameter,
    the gradient or both, in a multi-chunk tensor: same result as the CPU."""
    n = 65536 + 4099
    gen = torch.Generator().manual_seed(2)
    base_cpu = (torch.randn(n + 16, generator=gen) * 0.5).to(dtype)
    gbase_cpu = torch.randn(n + 16, generator=gen).to(dtype)
    base_dev, gbase_dev = base_cpu.cuda(), gbase_cpu.cuda()
    aligned_cpu = (torch.randn(n, generator=gen) * 0.5).to(dtype)
    aligned_dev = aligned_cpu.cuda()
    layouts = [  # (param, grad) on each device
        (lambda b, a: b[offset:offset + n], lambda g: g[:n]),              # param misaligned
        (lambda b, a: a, lambda g: g[offset:offset + n]),                  # grad misaligned
        (lambda b, a: b[offset:offset + n], lambda g: g[offset + 1:offset + 1 + n]),  # both
    ]
    for make_p, make_g in layouts:
        results, befores = [], []
        for base, gbase, aligned in ((base_cpu, gbase_cpu, aligned_cpu),
                                     (base_dev, gbase_dev, aligned_dev)):
            base, aligned = base.clone(), aligned.clone()
            p = make_p(base, aligned)
            g = make_g(gbase)
            outside = base.clone()
            mask = torch.ones(n + 16, dtype=torch.bool, device=base.device)
            if p.data_ptr() != aligned.data_ptr():
                mask[offset:offset + n] = False
            befores.append(p.to("cpu", torch.float64, copy=True))
            torch.ops.mirrorflow.mirror_descent_step_(
                [p], [g], [torch.zeros_like(p)], [torch.zeros((), device=p.device)],
                [torch.zeros((), dtype=torch.float64, device=p.device)], [False],
                mirror="hyperbolic", beta=0.2, degree=3.0, update="metric", normalize=True,
                beta_scaling="none", lr=0.05, momentum=0.9, dampening=0.0, nesterov=False,
                weight_decay=0.0, maximize=False)
            assert torch.equal(base[mask], outside[mask])  # nothing outside the view
            results.append(p.double().cpu())
        # Each backend is within _tolerance of the exact step: together within twice it.
        tol = 2 * _tolerance(dtype, befores[0], results[0])
        assert bool(((results[1] - results[0]).abs() <= tol).all())


@gpu
def test_huge_tensors_use_64_bit_indices():
    """A float32 tensor of more than 2³¹ bytes and a bfloat16 one of more than
    2³¹ elements (the latter when the GPU has the memory): the elements at both
    ends, the per-tensor mean, and the chunks beyond 2³¹."""
    free, _ = torch.cuda.mem_get_info()
    sizes = [(torch.float32, 2**29 + 4099)]
    if free > 24 * 2**30:
        sizes.append((torch.bfloat16, 2**31 + 4099))
    for dtype, n in sizes:
        torch.manual_seed(3)
        p = (torch.randn(n, device="cuda") * 0.5).to(dtype)
        g = torch.randn(n, device="cuda").to(dtype)
        picks = torch.cat([torch.arange(0, 5000), torch.arange(n - 70000, n),
                           torch.randint(0, n, (5000,))]).cuda()
        before = p[picks].double().cpu()
        grads = g[picks].cpu()
        beta = 0.1
        mean_before = sum(inv_metric(c.double(), "hyperbolic", beta, 3.0).sum().item()
                          for c in p.split(2**26)) / n
        means = [torch.zeros((), dtype=torch.float64, device="cuda")]
        torch.ops.mirrorflow.mirror_descent_step_(
            [p], [g], [], [], means, [False], mirror="hyperbolic", beta=beta, degree=3.0,
            update="metric", normalize=True, beta_scaling="none", lr=0.05, momentum=0.0,
            dampening=0.0, nesterov=False, weight_decay=0.0, maximize=False)
        expected = reference_step(before, grads, TensorState(), Options(
            lr=0.05 / mean_before, mirror="hyperbolic", beta=beta))
        got = p[picks].double().cpu()
        tol = _tolerance(dtype, before, expected) + _tolerance(
            dtype, torch.zeros_like(before),
            0.05 / mean_before * inv_metric(before, "hyperbolic", beta, 3.0) * grads.abs())
        assert bool(((got - expected).abs() <= tol).all()), dtype
        mean_after = sum(inv_metric(c.double(), "hyperbolic", beta, 3.0).sum().item()
                         for c in p.split(2**26)) / n
        # the kernel sums 1/φ'' in float32 per element (a few ulps each), in double overall
        assert means[0].item() == pytest.approx(mean_after, rel=1e-6)
        del p, g
        torch.cuda.empty_cache()


# ---- map_eval ---------------------------------------------------------------------


@gpu
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("mirror,beta,degree", [("euclidean", 1.0, 2.0), ("hyperbolic", 0.3, 1.0),
                                                ("power", 0.2, 3.0), ("power", 0.0, 1.5)])
@pytest.mark.parametrize("function", mirrorflow.maps.FUNCTIONS)
def test_map_eval_on_cuda_matches_cpu(dtype, mirror, beta, degree, function):
    x = torch.linspace(-3, 3, 1001, dtype=torch.float64).to(dtype)[1::2]  # a strided input
    want = mirrorflow.map_eval(x, mirror, function, beta=beta, degree=degree)
    got = mirrorflow.map_eval(x.cuda(), mirror, function, beta=beta, degree=degree)
    assert got.dtype == dtype and got.device.type == "cuda" and got.shape == x.shape
    eps = torch.finfo(torch.float32 if dtype != torch.float64 else dtype).eps
    rtol = 64 * eps + (torch.finfo(dtype).eps if dtype in (torch.float16, torch.bfloat16)
                       else 0)
    # conj_of_grad = x·∇φ − φ cancels: its error is relative to the size of its terms
    atol = 64 * eps * float(want.double().abs().max())
    torch.testing.assert_close(got.cpu().double(), want.double(), rtol=rtol, atol=atol)


# ---- the whole matrix (last: the longest part of a GPU run) ------------------------


@gpu
@pytest.mark.parametrize("map_name,update,normalize,scaling,option,dtype_name", REFERENCE_CASES)
def test_matches_float64_reference_on_cuda(map_name, update, normalize, scaling, option,
                                           dtype_name):
    check_against_reference(map_name, update, normalize, scaling, option, dtype_name, "cuda")


@gpu
@pytest.mark.parametrize("map_name,update,normalize,scaling,option,dtype_name",
                         POWER_DUAL_CASES)
def test_power_dual_matches_the_cpu_operator(map_name, update, normalize, scaling, option,
                                             dtype_name):
    """Each step from the same state on both backends. Both solve ∇φ(θ⁺) = y by
    the core's Newton iteration; with rounding errors δy of y their results may
    differ by |δy|/φ''(θ⁺), so the bound adds ε·(1/φ'')·(|∇φ(θ)| + |∇φ(θ⁺)|). The
    gradient transform has IEEE operations only: the buffers agree bit for bit."""
    dtype = DTYPES[dtype_name]
    opts = dict(lr=0.05, update=update, normalize=normalize, beta_scaling=scaling,
                **MAPS[map_name], **OPTIONS[option])
    cpu, _ = make_params(dtype)
    dev = [p.to("cuda", copy=True) for p in cpu]
    opt_cpu = mirrorflow.MirrorDescent(cpu, **opts)
    opt_dev = mirrorflow.MirrorDescent(dev, **opts)
    eps = torch.finfo(torch.float64 if dtype == torch.float64 else torch.float32).eps
    gen = torch.Generator().manual_seed(1)
    for step in range(3):
        with torch.no_grad():  # the same state on both
            for a, b in zip(cpu, dev):
                b.copy_(a)
                if a in opt_cpu.state and "momentum_buffer" in opt_cpu.state[a]:
                    opt_dev.state[b]["momentum_buffer"].copy_(opt_cpu.state[a]["momentum_buffer"])
        for a, b in zip(cpu, dev):
            a.grad = torch.randn(a.shape, generator=gen, dtype=torch.float64).to(dtype)
            b.grad = a.grad.to("cuda", copy=True)
        before = [a.to(torch.float64, copy=True) for a in cpu]
        opt_cpu.step()
        opt_dev.step()
        for i, (a, b, t) in enumerate(zip(cpu, dev, before)):
            want, got = a.double(), b.double().cpu()
            beta_l = layer_beta(Options(**opts), tuple(t.shape))
            curvature = torch.maximum(inv_metric(want, "power", beta_l, opts["degree"]),
                                      inv_metric(got, "power", beta_l, opts["degree"]))
            slack = 64 * eps * curvature * (grad_phi(t, "power", beta_l, opts["degree"]).abs()
                                            + grad_phi(want, "power", beta_l, opts["degree"])
                                            .abs())
            tol = 2 * _tolerance(dtype, t, want) + slack
            assert bool(((got - want).abs() <= tol).all()), (step, i)
            if "momentum" in opts:
                assert torch.equal(opt_dev.state[b]["momentum_buffer"].cpu(),
                                   opt_cpu.state[a]["momentum_buffer"])
