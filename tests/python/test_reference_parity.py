"""MirrorDescent against the float64 reference, over every map × update ×
option × dtype, with non-contiguous, zero-size, 0-dim and multi-chunk tensors.

Each step is checked from the same state: the reference is fed the
optimizer's current parameters and momentum buffers (as float64) and the
optimizer's result must equal the reference's up to the rounding of the
parameter dtype. For the power map's dual step, which is ill-conditioned where
∇φ(θ) − ηg crosses zero, the bound also admits ∇φ*(y ± δ), δ the rounding
error of y (a backward-error check).
"""

from __future__ import annotations

import itertools

import pytest
import torch

import mirrorflow
from reference import (
    Options,
    TensorState,
    grad_conj,
    grad_phi,
    inv_metric,
    layer_beta,
    reference_step,
)

MAPS = {
    "euclidean": dict(mirror="euclidean"),
    "hyperbolic_b0.5": dict(mirror="hyperbolic", beta=0.5),
    "hyperbolic_b0.05": dict(mirror="hyperbolic", beta=0.05),
    "power_L3_b0.1": dict(mirror="power", degree=3.0, beta=0.1),
    "power_L1.5_b0.3": dict(mirror="power", degree=1.5, beta=0.3),
    "power_L2_b0.2": dict(mirror="power", degree=2.0, beta=0.2),
    "power_L3_b0": dict(mirror="power", degree=3.0, beta=0.0),
    "power_L1.5_b0": dict(mirror="power", degree=1.5, beta=0.0),
}
OPTIONS = {
    "plain": dict(),
    "momentum": dict(momentum=0.9),
    "dampened_decayed": dict(momentum=0.8, dampening=0.25, weight_decay=0.01),
    "nesterov": dict(momentum=0.9, nesterov=True, weight_decay=0.05),
    "maximize": dict(maximize=True, weight_decay=0.02, momentum=0.5),
}
DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def _valid(map_kw: dict, update: str, normalize: bool) -> bool:
    if map_kw["mirror"] == "power" and map_kw["beta"] == 0 and map_kw["degree"] > 2:
        return update == "dual" and not normalize
    return True


CASES = [
    pytest.param(m, u, n, s, o, d, id=f"{m}-{u}-{'norm' if n else 'raw'}-{s}-{o}-{d}")
    for m, u, n, s, o, d in itertools.product(
        MAPS, ["metric", "dual"], [False, True], ["none", "fan_in"], OPTIONS, DTYPES
    )
    if _valid(MAPS[m], u, n)
]


def make_params(
    dtype: torch.dtype, seed: int = 0, device: str = "cpu"
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Tensors of every shape class; returns them and the base of the strided view."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.5):
        return (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(device, dtype)

    base = rnd(10, 9)
    params = [
        rnd(6, 3, 3, 3),  # conv weight, fan_in 27
        rnd(17),  # 1-D
        base[1:8, ::2],  # non-contiguous view into a larger tensor
        rnd(5, 7).t(),  # transposed
        rnd(0, 4),  # zero-size
        rnd(),  # 0-dim
        rnd(40000, scale=0.3),  # several chunks: the parallel path
    ]
    return params, base


def _tolerance(
    dtype: torch.dtype, before: torch.Tensor, expected: torch.Tensor
) -> torch.Tensor:
    compute_eps = torch.finfo(torch.float64 if dtype == torch.float64 else torch.float32).eps
    delta = (expected - before).abs()
    tol = 16 * compute_eps * (before.abs() + expected.abs() + delta)
    if dtype in (torch.bfloat16, torch.float16):
        tol = tol + torch.finfo(dtype).eps * expected.abs() + torch.finfo(dtype).tiny
    return tol + 1e-300


def _power_dual_slack(
    before: torch.Tensor, g_eff: torch.Tensor, lr: float, beta: float, degree: float,
    dtype: torch.dtype,
) -> torch.Tensor:
    eps = torch.finfo(torch.float64 if dtype == torch.float64 else torch.float32).eps
    gx = grad_phi(before, "power", beta, degree)
    y = gx - lr * g_eff
    d = 8 * eps * (gx.abs() + (lr * g_eff).abs()) + 1e-300
    lo = grad_conj(y - d, "power", beta, degree)
    hi = grad_conj(y + d, "power", beta, degree)
    return (hi - lo).abs()


@pytest.mark.parametrize("map_name,update,normalize,scaling,option,dtype_name", CASES)
def test_matches_float64_reference(map_name, update, normalize, scaling, option, dtype_name):
    check_against_reference(map_name, update, normalize, scaling, option, dtype_name, "cpu")


def check_against_reference(
    map_name: str, update: str, normalize: bool, scaling: str, option: str, dtype_name: str,
    device: str,
) -> None:
    """Three steps of MirrorDescent on `device`, each against the float64
    reference (on the CPU) from the optimizer's own state."""
    dtype = DTYPES[dtype_name]
    opts = Options(lr=0.05, update=update, normalize=normalize, beta_scaling=scaling,
                   **MAPS[map_name], **OPTIONS[option])
    params, base = make_params(dtype, device=device)
    base_before = base.clone()
    view_mask = torch.ones_like(base, dtype=torch.bool)
    view_mask[1:8, ::2] = False
    opt = mirrorflow.MirrorDescent(params, **opts.as_kwargs())
    gen = torch.Generator().manual_seed(1)
    for step in range(3):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(device, dtype)
        before = [p.detach().to("cpu", torch.float64, copy=True) for p in params]
        grads = [p.grad.cpu() for p in params]
        expected, expected_bufs, effective, prev_bufs = [], [], [], []
        for p, b, g in zip(params, before, grads):
            buf = opt.state[p].get("momentum_buffer") if p in opt.state else None
            prev_bufs.append(None if buf is None else buf.to("cpu", torch.float64, copy=True))
            st = TensorState(None if buf is None else buf.to("cpu", torch.float64, copy=True))
            expected.append(reference_step(b, g, st, opts))
            expected_bufs.append(st.momentum_buffer)
            effective.append(_effective_gradient(b, g, st, opts))
        opt.step()
        for i, (p, b, e, g) in enumerate(zip(params, before, expected, grads)):
            got = p.detach().double().cpu()
            beta_l = layer_beta(opts, tuple(b.shape))
            lr = opts.lr
            if normalize and b.numel():
                mean = inv_metric(b, opts.mirror, beta_l, opts.degree).mean().item()
                lr = 0.0 if mean == 0 else lr / mean
            # The effective gradient g (+ λθ, + momentum) may cancel: its rounding
            # error is relative to the size of its terms, not to its value.
            g_terms = g.double().abs() + opts.weight_decay * b.abs()
            if opts.momentum:
                g_terms = g_terms + (1 + opts.momentum) * expected_bufs[i].abs()
                if prev_bufs[i] is not None:
                    g_terms = g_terms + opts.momentum * prev_bufs[i].abs()
            step_terms = lr * inv_metric(b, opts.mirror, beta_l, opts.degree) * g_terms
            tol = _tolerance(dtype, b, e) + _tolerance(dtype, torch.zeros_like(b), step_terms)
            if opts.mirror == "power" and update == "dual" and opts.degree != 2:
                tol = tol + _power_dual_slack(b, effective[i], lr, beta_l, opts.degree, dtype)
            err = (got - e).abs()
            assert bool((err <= tol).all()), (
                f"step {step}, tensor {i}: max error {err.max().item():.3g}, "
                f"tolerance there {tol.flatten()[err.argmax()].item():.3g}"
            )
            if opts.momentum:
                bt = opt.state[p]["momentum_buffer"].cpu()
                assert bt.dtype == dtype
                eb = expected_bufs[i]
                # b = μb + (1−d)g may cancel: bound by the size of its terms.
                scale = eb.abs() + g.double().abs() + (opts.weight_decay * b).abs()
                if prev_bufs[i] is not None:
                    scale = scale + prev_bufs[i].abs()
                err_b = (bt.double() - eb).abs()
                tol_b = _tolerance(dtype, torch.zeros_like(eb), scale)
                assert bool((err_b <= tol_b).all()), f"step {step}, buffer {i}"
        # the strided view wrote through to its base and nowhere else
        assert torch.equal(base[view_mask], base_before[view_mask])


def _effective_gradient(theta, grad, state: TensorState, opts: Options) -> torch.Tensor:
    """The gradient after maximize, weight decay and momentum (for the slack)."""
    g = grad.double()
    if opts.maximize:
        g = -g
    if opts.weight_decay:
        g = g + opts.weight_decay * theta
    if opts.momentum:
        buf = state.momentum_buffer
        g = g + opts.momentum * buf if opts.nesterov else buf
    return g


def test_zero_size_and_scalar_parameters_alone():
    p0 = torch.zeros(0, 3, requires_grad=True)
    p1 = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    opt = mirrorflow.MirrorDescent([p0, p1], lr=0.1, mirror="hyperbolic", beta=0.1,
                                   normalize=True, momentum=0.9)
    p0.grad = torch.zeros(0, 3)
    p1.grad = torch.tensor(2.0, dtype=torch.float64)
    opt.step()
    expected = 0.7 - 0.1 * 1.0 * 2.0  # normalised: a one-element mean is the value itself
    assert p1.item() == pytest.approx(expected, rel=1e-15)
    assert p0.shape == (0, 3)


def test_gradient_with_other_strides_than_parameter():
    p = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    q = p.detach().clone().requires_grad_()
    g = torch.randn(5, 6, dtype=torch.float64).t()  # same shape, transposed strides
    p.grad = g
    q.grad = g.contiguous()
    for t in (p, q):
        mirrorflow.MirrorDescent([t], lr=0.1, mirror="hyperbolic", beta=0.2).step()
    assert torch.equal(p, q)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("beta", [1e-3, 0.05, 0.5, 3.0])
def test_hyperbolic_dual_step_is_accurate_in_ulps(beta, dtype):
    """The CPU kernel's hyperbolic dual step where |ηg| ≤ 1/16 (its polynomial
    exponentials, csrc/cpu/vectorized_ops.h) against β·sinh(asinh(θ/β) − ηg) in
    extended precision, in ulps of max(|θ⁺|, c·|ηg|) with c = √(θ²+β²) − |θ|
    (θ⁺ itself can be 0 by cancellation, which no formula escapes): the bounds
    of the scalar path's test (tests/cpp/test_maps.cpp), worst 4.5, mean 0.4."""
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(11)
    n = 100_000
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    sign = lambda: np.where(rng.random(n) < 0.5, -1.0, 1.0)  # noqa: E731
    x = (beta * 10.0 ** rng.uniform(-4, 4, n) * sign()).astype(np_dtype)
    z = (0.0625 * 10.0 ** rng.uniform(-3, 0, n) * sign()).astype(np_dtype)
    p = torch.from_numpy(x.copy()).requires_grad_()
    opt = mirrorflow.MirrorDescent([p], lr=1.0, mirror="hyperbolic", beta=beta, update="dual")
    p.grad = torch.from_numpy(z.copy())
    opt.step()
    got = p.detach().numpy().astype(np.longdouble)
    X, Z = x.astype(np.longdouble), z.astype(np.longdouble)
    B = np.longdouble(np_dtype(beta))
    want = B * np.sinh(np.arcsinh(X / B) - Z)
    c = B * B / (np.sqrt(X * X + B * B) + np.abs(X))
    scale = np.maximum(np.abs(want), c * np.abs(Z)).astype(np_dtype)
    err = np.abs(got - want) / np.spacing(scale).astype(np.longdouble)
    assert float(err.max()) <= 4.5 and float(err.mean()) <= 0.4, (float(err.max()), float(err.mean()))
