"""MirrorDescent as a torch.optim.Optimizer: SGD parity, the η² agreement of
the two updates, state_dict round trips, schedulers, closures, groups."""

from __future__ import annotations

import copy
import itertools
import pickle

import pytest
import torch

import mirrorflow
from reference import Options, TensorState, reference_step

SGD_OPTIONS = [
    dict(),
    dict(momentum=0.9),
    dict(momentum=0.9, dampening=0.3),
    dict(momentum=0.9, nesterov=True),
    dict(weight_decay=0.01),
    dict(momentum=0.5, weight_decay=0.1, maximize=True),
    dict(momentum=0.9, nesterov=True, weight_decay=0.05, maximize=True),
]


def _model_params(dtype, seed=0):
    torch.manual_seed(seed)
    base = torch.randn(9, 8, dtype=dtype)
    return [
        torch.randn(16, 3, 3, 3, dtype=dtype),
        torch.randn(33, dtype=dtype),
        base[::2, 1:],  # non-contiguous
        torch.randn(0, dtype=dtype),
        torch.randn(50000, dtype=dtype),
    ]


@pytest.mark.parametrize("options", SGD_OPTIONS, ids=lambda o: "-".join(o) or "plain")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "map_kwargs",
    [dict(mirror="euclidean"), dict(mirror="power", degree=2.0, beta=0.7)],
    ids=["euclidean", "power_L2"],
)
@pytest.mark.parametrize("update", ["metric", "dual"])
@pytest.mark.parametrize("normalize", [False, True])
def test_euclidean_is_bit_identical_to_sgd(options, dtype, map_kwargs, update, normalize):
    ours = [p.clone().requires_grad_() for p in _model_params(dtype)]
    theirs = [p.clone().requires_grad_() for p in _model_params(dtype)]
    opt = mirrorflow.MirrorDescent(ours, lr=0.05, update=update, normalize=normalize,
                                   **map_kwargs, **options)
    sgd = torch.optim.SGD(theirs, lr=0.05, **options)
    gen = torch.Generator().manual_seed(3)
    for _ in range(5):
        for a, b in zip(ours, theirs):
            g = torch.randn(a.shape, generator=gen, dtype=dtype)
            a.grad, b.grad = g.clone(), g.clone()
        opt.step()
        sgd.step()
        for a, b in zip(ours, theirs):
            assert torch.equal(a, b)
    for a, b in zip(ours, theirs):
        if "momentum" in options:
            assert torch.equal(opt.state[a]["momentum_buffer"], sgd.state[b]["momentum_buffer"])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_euclidean_tracks_sgd(dtype):
    """torch.optim.SGD rounds the learning rate and the momentum buffer to the
    parameter dtype within each step; MirrorDescent computes in float32 and
    rounds once, so the two agree to about one ulp of the dtype per step."""
    ours = [p.clone().requires_grad_() for p in _model_params(dtype)]
    theirs = [p.clone().requires_grad_() for p in _model_params(dtype)]
    opt = mirrorflow.MirrorDescent(ours, lr=0.05, momentum=0.9)
    sgd = torch.optim.SGD(theirs, lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        for a, b in zip(ours, theirs):
            g = torch.randn(a.shape, generator=gen).to(dtype)
            a.grad, b.grad = g.clone(), g.clone()
        opt.step()
        sgd.step()
    eps = torch.finfo(dtype).eps
    for a, b in zip(ours, theirs):
        scale = a.detach().double().abs() + 0.05 * 10
        assert bool(((a.double() - b.double()).abs() <= 4 * eps * scale).all())


ORDER_CASES = [
    (dict(mirror="hyperbolic", beta=0.1), False),
    (dict(mirror="hyperbolic", beta=0.1), True),
    (dict(mirror="power", degree=3.0, beta=0.1), False),
    (dict(mirror="power", degree=3.0, beta=0.1), True),
    (dict(mirror="power", degree=1.5, beta=0.2), False),
    (dict(mirror="power", degree=1.5, beta=0.2), True),
    (dict(mirror="power", degree=3.0, beta=0.0), False),  # cannot be normalised
]


@pytest.mark.parametrize(
    "map_kwargs,normalize", ORDER_CASES,
    ids=lambda c: "-".join(map(str, c.values())) if isinstance(c, dict) else f"norm={c}",
)
def test_dual_and_metric_agree_to_second_order(map_kwargs, normalize):
    """One step of each from the same θ: the gap shrinks like η²."""
    torch.manual_seed(0)
    theta0 = torch.randn(200, dtype=torch.float64) * 0.5
    theta0 = theta0 + 0.2 * torch.sign(theta0)  # away from 0, where β=0 maps are singular
    grad = torch.randn(200, dtype=torch.float64)
    metric_refused = map_kwargs["mirror"] == "power" and map_kwargs["beta"] == 0
    gaps = []
    for lr in [2e-3, 1e-3, 5e-4, 2.5e-4]:
        results = {}
        for update in ["metric", "dual"]:
            if update == "metric" and metric_refused:
                # MirrorDescent refuses this metric step (infinite metric at 0);
                # the reference computes it away from 0
                results[update] = reference_step(
                    theta0, grad, TensorState(), Options(lr=lr, update="metric", **map_kwargs)
                )
                continue
            p = theta0.clone().requires_grad_()
            p.grad = grad.clone()
            mirrorflow.MirrorDescent([p], lr=lr, update=update, normalize=normalize,
                                     **map_kwargs).step()
            results[update] = p.detach()
        gaps.append((results["dual"] - results["metric"]).abs().max().item())
    ratios = [a / b for a, b in zip(gaps, gaps[1:])]
    assert all(3.7 < r < 4.3 for r in ratios), (gaps, ratios)


# ---- state_dict, pickling, copies ----------------------------------------------


def _train(opt, params, steps, seed):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        opt.step()


CONFIGS = [
    dict(mirror="hyperbolic", beta=0.05, momentum=0.9, normalize=True),
    dict(mirror="power", degree=3.0, beta=0.1, update="dual", momentum=0.8, dampening=0.1,
         beta_scaling="fan_in"),
    dict(mirror="euclidean", momentum=0.9, nesterov=True, weight_decay=1e-3),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c["mirror"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_save_load_continue_equals_uninterrupted(config, dtype, tmp_path):
    params = [p.clone().requires_grad_() for p in _model_params(dtype)]
    opt = mirrorflow.MirrorDescent(params, lr=0.02, **config)
    _train(opt, params, 3, seed=1)
    torch.save({"params": [p.detach() for p in params], "opt": opt.state_dict()},
               tmp_path / "ckpt.pt")
    _train(opt, params, 4, seed=2)

    saved = torch.load(tmp_path / "ckpt.pt")
    resumed = [p.clone().requires_grad_() for p in saved["params"]]
    opt2 = mirrorflow.MirrorDescent(resumed, lr=0.5)  # hyperparameters come from the file
    opt2.load_state_dict(saved["opt"])
    for p in resumed:
        if "momentum" in config:
            assert opt2.state[p]["momentum_buffer"].dtype == dtype
            assert opt2.state[p]["step"].dtype == torch.float32
    _train(opt2, resumed, 4, seed=2)
    for a, b in zip(params, resumed):
        assert torch.equal(a, b)
    assert opt2.param_groups[0]["mirror"] == config["mirror"]


def test_deepcopy_and_pickle_continue_identically():
    params = [p.clone().requires_grad_() for p in _model_params(torch.float64)]
    opt = mirrorflow.MirrorDescent(params, lr=0.02, **CONFIGS[0])
    _train(opt, params, 2, seed=1)
    twin = copy.deepcopy(opt)
    twin_params = twin.param_groups[0]["params"]
    assert all(a is not b for a, b in zip(params, twin_params))
    restored = pickle.loads(pickle.dumps(opt))
    _train(opt, params, 3, seed=5)
    _train(twin, twin_params, 3, seed=5)
    _train(restored, restored.param_groups[0]["params"], 3, seed=5)
    for a, b, c in zip(params, twin_params, restored.param_groups[0]["params"]):
        assert torch.equal(a, b)
        assert torch.equal(a, c)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_a_zero_gradient_of_either_sign_leaves_theta_bit_for_bit(dtype):
    """MATH.md §2: the hyperbolic dual step returns θ exactly when g = 0. On the
    CPU's vector loops too (csrc/cpu/vectorized_ops.h), for g = +0 and g = −0
    (which maximize makes of +0), and for θ = ±0: compared as bit patterns.
    (The metric steps, like SGD's θ − η·g, turn θ = −0 into +0 when g = −0.)"""
    gen = torch.Generator().manual_seed(6)
    n = 4099  # whole vectors and a partial one
    x = torch.randn(n, generator=gen, dtype=dtype) * 0.3
    x[::7] = 0.0
    x[3::7] = -0.0
    g = torch.where(torch.rand(n, generator=gen) < 0.5, 0.0, -0.0).to(dtype)
    bits = torch.int32 if dtype == torch.float32 else torch.int64
    for maximize in (False, True):
        p = x.clone().requires_grad_()
        opt = mirrorflow.MirrorDescent([p], lr=0.5, mirror="hyperbolic", beta=0.1,
                                       update="dual", maximize=maximize)
        for _ in range(2):
            p.grad = g.clone()
            opt.step()
        assert torch.equal(p.detach().view(bits), x.view(bits)), maximize


# ---- the torch.optim.Optimizer protocol ----------------------------------------


def test_param_groups_each_with_their_own_geometry():
    torch.manual_seed(0)
    a = torch.randn(20, dtype=torch.float64, requires_grad=True)
    b = torch.randn(20, dtype=torch.float64, requires_grad=True)
    c = torch.randn(20, dtype=torch.float64, requires_grad=True)
    opt = mirrorflow.MirrorDescent(
        [
            {"params": [a], "mirror": "hyperbolic", "beta": 0.1},
            {"params": [b], "mirror": "power", "degree": 3.0, "beta": 0.2, "update": "dual"},
        ],
        lr=0.05,
    )
    opt.add_param_group({"params": [c], "lr": 0.1})  # default map: euclidean
    expected = []
    for t, o in [
        (a, Options(lr=0.05, mirror="hyperbolic", beta=0.1)),
        (b, Options(lr=0.05, mirror="power", degree=3.0, beta=0.2, update="dual")),
        (c, Options(lr=0.1)),
    ]:
        t.grad = torch.randn(20, dtype=torch.float64)
        expected.append(reference_step(t.detach(), t.grad, TensorState(), o))
    opt.step()
    for t, e in zip([a, b, c], expected):
        assert torch.allclose(t.detach(), e, rtol=1e-13, atol=1e-15)


def test_lr_scheduler_and_closure_and_zero_grad():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1, dtype=torch.float64)
    x = torch.randn(32, 4, dtype=torch.float64)
    y = torch.randn(32, 1, dtype=torch.float64)
    opt = mirrorflow.MirrorDescent(model.parameters(), lr=0.1, mirror="hyperbolic", beta=0.5)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    losses = []

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    for _ in range(6):
        losses.append(opt.step(closure).item())
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)
    assert losses[-1] < losses[0]
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_repr_names_the_hyperparameters():
    p = torch.zeros(3, requires_grad=True)
    text = repr(mirrorflow.MirrorDescent([p], lr=0.1, mirror="hyperbolic", beta=0.02))
    assert "MirrorDescent" in text and "hyperbolic" in text and "0.02" in text


def test_parameters_without_gradient_are_left_alone():
    a = torch.randn(5, requires_grad=True)
    b = torch.randn(5, requires_grad=True)
    before = b.detach().clone()
    opt = mirrorflow.MirrorDescent([a, b], lr=0.1, momentum=0.9)
    a.grad = torch.ones(5)
    opt.step()
    assert torch.equal(b, before) and b not in opt.state


def test_tensor_learning_rate_equals_float():
    torch.manual_seed(0)
    p = torch.randn(50, requires_grad=True)
    q = p.detach().clone().requires_grad_()
    g = torch.randn(50)
    p.grad, q.grad = g.clone(), g.clone()
    mirrorflow.MirrorDescent([p], lr=torch.tensor(0.125), mirror="hyperbolic", beta=0.1).step()
    mirrorflow.MirrorDescent([q], lr=0.125, mirror="hyperbolic", beta=0.1).step()
    assert torch.equal(p, q)


def test_grad_scaler_protocol_on_cpu():
    """GradScaler hands the optimizer grad_scale/found_inf: gradients are
    unscaled inside the step, and an overflow skips it entirely."""
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 1)
    ref = copy.deepcopy(model)
    opt = mirrorflow.MirrorDescent(model.parameters(), lr=0.1, momentum=0.9,
                                   mirror="hyperbolic", beta=0.3)
    ref_opt = mirrorflow.MirrorDescent(ref.parameters(), lr=0.1, momentum=0.9,
                                       mirror="hyperbolic", beta=0.3)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    x = torch.randn(16, 8)
    for step in range(3):
        opt.zero_grad()
        ref_opt.zero_grad()
        loss = model(x).square().mean()
        scaler.scale(loss).backward()
        if step == 1:  # an overflow: this step must change nothing
            next(model.parameters()).grad[0, 0] = float("inf")
            snapshot = [p.detach().clone() for p in model.parameters()]
            state = copy.deepcopy(opt.state_dict())
        scaler.step(opt)
        scaler.update()
        if step == 1:
            assert all(torch.equal(a, b) for a, b in zip(model.parameters(), snapshot))
            assert torch.equal(
                opt.state_dict()["state"][0]["momentum_buffer"], state["state"][0]["momentum_buffer"]
            )
            continue
        ref_loss = ref(x).square().mean()
        ref_loss.backward()
        ref_opt.step()
        for a, b in zip(model.parameters(), ref.parameters()):
            assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)
            assert torch.allclose(a.grad, b.grad, rtol=1e-6, atol=1e-7)  # written back unscaled


def test_grad_scaler_skipping_the_first_step_initialises_momentum_later():
    torch.manual_seed(0)
    p = torch.randn(10, requires_grad=True)
    q = p.detach().clone().requires_grad_()
    opt = mirrorflow.MirrorDescent([p], lr=0.1, momentum=0.9, dampening=0.5)
    ref = mirrorflow.MirrorDescent([q], lr=0.1, momentum=0.9, dampening=0.5)
    p.grad = torch.full((10,), float("inf"))
    opt.found_inf = torch.ones((), dtype=torch.float32)
    opt.step()  # skipped
    del opt.found_inf
    assert opt.state[p]["step"].item() == 0
    g = torch.randn(10)
    p.grad, q.grad = g.clone(), g.clone()
    opt.step()
    ref.step()
    assert torch.equal(p, q)
    assert torch.equal(opt.state[p]["momentum_buffer"], g)  # b ← g on the first real step


def test_grad_scaler_skipping_the_first_normalized_step_leaves_a_valid_mean():
    """The skipped step still computes the stale mean (of the unchanged
    parameters), which the optimizer then keeps as valid."""
    torch.manual_seed(0)
    p = torch.randn(10, requires_grad=True)
    q = p.detach().clone().requires_grad_()
    kwargs = dict(lr=0.1, mirror="hyperbolic", beta=0.1, normalize=True)
    opt = mirrorflow.MirrorDescent([p], **kwargs)
    ref = mirrorflow.MirrorDescent([q], **kwargs)
    p.grad = torch.full((10,), float("inf"))
    opt.found_inf = torch.ones((), dtype=torch.float32)
    opt.grad_scale = torch.ones((), dtype=torch.float32)
    opt.step()  # skipped
    del opt.found_inf, opt.grad_scale
    g = torch.randn(10)
    p.grad, q.grad = g.clone(), g.clone()
    opt.step()
    ref.step()
    assert torch.equal(p, q)
