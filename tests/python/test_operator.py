"""The operators as the dispatcher and torch.compile see them, and map_eval."""

from __future__ import annotations

import os
import re

import pytest
import torch

import mirrorflow
import reference


def _step_args(normalize: bool, momentum: float, dtype=torch.float32):
    torch.manual_seed(0)
    params = [torch.randn(5, 3, dtype=dtype), torch.randn(7, dtype=dtype)]
    grads = [torch.randn_like(p) for p in params]
    bufs = [torch.zeros_like(p) for p in params] if momentum else []
    steps = [torch.zeros((), dtype=torch.float32) for _ in params] if momentum else []
    means = [torch.zeros((), dtype=torch.float64) for _ in params] if normalize else []
    valid = [False for _ in params] if normalize else []
    kwargs = dict(mirror="hyperbolic", beta=0.1, degree=3.0, update="dual", normalize=normalize,
                  beta_scaling="fan_in", lr=0.05, momentum=momentum, dampening=0.0,
                  nesterov=False, weight_decay=0.01, maximize=False)
    return (params, grads, bufs, steps, means, valid), kwargs


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_opcheck_mirror_descent_step(normalize, momentum):
    args, kwargs = _step_args(normalize, momentum)
    torch.library.opcheck(torch.ops.mirrorflow.mirror_descent_step_.default, args, kwargs)


def test_opcheck_map_eval():
    x = torch.randn(6, dtype=torch.float64)
    torch.library.opcheck(torch.ops.mirrorflow.map_eval.default, (x, "power", 0.1, 3.0, "grad"))


def test_step_inside_torch_compile_matches_eager():
    args, kwargs = _step_args(False, 0.9)
    args2 = tuple([t.clone() for t in a] if isinstance(a, list) and a and
                  isinstance(a[0], torch.Tensor) else list(a) for a in args)

    def step(params, grads, bufs, steps, means, valid):
        torch.ops.mirrorflow.mirror_descent_step_(params, grads, bufs, steps, means, valid,
                                                  **kwargs)

    step(*args)
    torch.compile(step, backend="aot_eager", fullgraph=True)(*args2)
    for a, b in zip(args[0], args2[0]):
        assert torch.equal(a, b)


@pytest.mark.parametrize("function", mirrorflow.maps.FUNCTIONS)
@pytest.mark.parametrize(
    "mirror,beta,degree",
    [("euclidean", 1.0, 2.0), ("hyperbolic", 0.3, 1.0), ("power", 0.2, 3.0),
     ("power", 0.0, 1.5), ("power", 0.4, 2.0)],
)
def test_map_eval_matches_reference(function, mirror, beta, degree):
    x = torch.linspace(-3, 3, 101, dtype=torch.float64)
    got = mirrorflow.map_eval(x, mirror, function, beta=beta, degree=degree)
    if function == "potential":
        if mirror == "hyperbolic":
            want = x * torch.asinh(x / beta) - torch.sqrt(x * x + beta * beta) + beta
        elif mirror == "euclidean" or degree == 2:
            want = x * x / 2
        else:
            want = ((x * x + beta * beta) ** (degree / 2) - beta**degree) / degree
    else:
        oracle = {"grad": reference.grad_phi, "grad_conj": reference.grad_conj,
                  "inv_metric": reference.inv_metric, "conj_of_grad": reference.conj_of_grad}
        want = oracle[function](x, mirror, beta, degree)
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-13)
    assert got.dtype == x.dtype and got.shape == x.shape


def test_map_eval_in_low_precision_computes_in_float32():
    x = torch.linspace(-2, 2, 33)
    for dtype in (torch.bfloat16, torch.float16):
        got = mirrorflow.map_eval(x.to(dtype), "hyperbolic", "inv_metric", beta=0.1)
        want = torch.sqrt(x.to(dtype).double() ** 2 + 0.01).to(dtype)
        assert got.dtype == dtype
        assert torch.allclose(got.double(), want.double(), rtol=torch.finfo(dtype).eps)


def test_build_info():
    info = mirrorflow.build_info()
    assert info["version"] == mirrorflow.__version__
    assert info["cpu_capability"] in {"DEFAULT", "AVX2", "AVX512"}
    # the prefetch plan follows the processor's vendor (csrc/cpu/cpu_kernel.h)
    vendor = ""
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            vendor = next((line.split(":")[1].strip() for line in f
                           if line.startswith("vendor_id")), "")
    if vendor:
        want = ("L1, 4096 bytes ahead (2048" if vendor == "GenuineIntel"
                else "L2, 8192 bytes ahead (8192")
        assert info["cpu_prefetch"] == want + " of a normalising sum)"
    assert isinstance(info["cuda_built"], bool)


# Plans that prefetch nothing, from the line ahead, from the default distances and
# from far ahead, into either cache: a prefetch changes when a line arrives, never a value.
PREFETCH_PLANS = [("L1", 0, 0), ("L1", 64, 64), ("L2", 64, 0), ("L1", 4096, 2048),
                  ("L2", 8192, 8192), ("L1", 65536, 65536), ("L2", 0, 65536)]


def _steps_under(plan, mirror: str, update: str, normalize: bool, momentum: float):
    """Three optimizer steps on tensors long enough to prefetch in (several work
    items, a partial last line); parameters after each step, and the parameters'
    float64 reference after the first."""
    gen = torch.Generator().manual_seed(5)
    shapes = [(100_003,), (257, 64), (7,)]
    params = [(torch.randn(s, generator=gen) * 0.1).requires_grad_() for s in shapes]
    kwargs = dict(mirror=mirror, beta=0.1, update=update, normalize=normalize, lr=0.02,
                  momentum=momentum)
    if mirror == "power":
        kwargs["degree"] = 3.0
    opt = mirrorflow.MirrorDescent(params, **kwargs)
    if plan is None:
        mirrorflow.reset_cpu_prefetch()
    else:
        mirrorflow.set_cpu_prefetch(*plan)
    try:
        history, first_reference = [], None
        for k in range(3):
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen) * 0.1
            if k == 0:
                opts = reference.Options(**kwargs)
                first_reference = [reference.reference_step(p.detach(), p.grad,
                                                            reference.TensorState(), opts)
                                   for p in params]
            opt.step()
            history.append([p.detach().clone() for p in params])
    finally:
        mirrorflow.reset_cpu_prefetch()
    return history, first_reference


@pytest.mark.parametrize("mirror,update", [("hyperbolic", "metric"), ("hyperbolic", "dual"),
                                           ("power", "metric"), ("power", "dual")])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_prefetch_plans_give_the_same_bits(mirror, update, normalize, momentum):
    want, first_reference = _steps_under(None, mirror, update, normalize, momentum)
    eps = torch.finfo(torch.float32).eps
    for got, ref in zip(want[0], first_reference):  # the default plan's step is the step
        err = (got.double() - ref).abs().max().item()
        assert err <= 32 * eps * ref.abs().max().item(), (tuple(got.shape), err)
    for plan in PREFETCH_PLANS:
        got, _ = _steps_under(plan, mirror, update, normalize, momentum)
        for k, (a, b) in enumerate(zip(got, want)):
            for x, y in zip(a, b):
                assert torch.equal(x, y), (plan, k, tuple(x.shape))


def test_set_cpu_prefetch_reports_and_resets():
    default = mirrorflow.build_info()["cpu_prefetch"]
    try:
        mirrorflow.set_cpu_prefetch("L1", 1024, 512)
        assert mirrorflow.build_info()["cpu_prefetch"] == "L1, 1024 bytes ahead (512 of a normalising sum)"
        mirrorflow.set_cpu_prefetch(into="L2", ahead_bytes=0, sum_ahead_bytes=65536)
        assert mirrorflow.build_info()["cpu_prefetch"] == "L2, 0 bytes ahead (65536 of a normalising sum)"
    finally:
        mirrorflow.reset_cpu_prefetch()
    assert mirrorflow.build_info()["cpu_prefetch"] == default


@pytest.mark.parametrize("args,message", [
    (("L3", 64, 64), 'into must be "L1" or "L2", got "L3"'),
    (("l1", 64, 64), 'into must be "L1" or "L2", got "l1"'),
    (("L1", 100, 64), "ahead_bytes must be a multiple of 64 from 0 to 65536, got 100"),
    (("L1", -64, 64), "ahead_bytes must be a multiple of 64 from 0 to 65536, got -64"),
    (("L2", 64, 65600), "sum_ahead_bytes must be a multiple of 64 from 0 to 65536, got 65600"),
    (("L2", 64, 32), "sum_ahead_bytes must be a multiple of 64 from 0 to 65536, got 32"),
])
def test_set_cpu_prefetch_refuses_bad_plans_and_keeps_the_plan(args, message):
    try:
        mirrorflow.set_cpu_prefetch("L1", 2048, 1024)
        before = mirrorflow.build_info()["cpu_prefetch"]
        with pytest.raises(ValueError, match=re.escape("set_cpu_prefetch: " + message)):
            mirrorflow.set_cpu_prefetch(*args)
        assert mirrorflow.build_info()["cpu_prefetch"] == before
    finally:
        mirrorflow.reset_cpu_prefetch()


def test_map_eval_refuses_an_input_that_requires_grad_and_works_without_grad():
    w = torch.tensor([0.5, -1.0], dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"map_eval: x requires grad, but map_eval has no "
                                           r"derivative"):
        mirrorflow.map_eval(w, "hyperbolic", "potential", beta=0.1)
    with torch.no_grad():
        under_no_grad = mirrorflow.map_eval(w, "hyperbolic", "potential", beta=0.1)
    detached = mirrorflow.map_eval(w.detach(), "hyperbolic", "potential", beta=0.1)
    assert torch.equal(under_no_grad, detached) and not detached.requires_grad


def test_check_step_calls_checks_each_call_as_the_step_would_and_changes_nothing():
    check = torch.ops.mirrorflow.check_step_calls.default
    a, b = torch.randn(3, dtype=torch.float64), torch.randn(2, 2, dtype=torch.float64)
    buf, step = torch.zeros(2, 2, dtype=torch.float64), torch.zeros(())
    mean = torch.zeros((), dtype=torch.float64)
    before = [t.clone() for t in (a, b, buf, step, mean)]
    # call 0: a without momentum or normalize; call 1: b with both
    good = ([a, b], [torch.ones(3, dtype=torch.float64), torch.ones(2, 2, dtype=torch.float64)],
            [buf], [step], [mean], [1, 1], [False, True], [False, True], [None, None],
            [None, None], [None, None])
    check(*good)
    assert all(torch.equal(x, y) for x, y in zip((a, b, buf, step, mean), before))
    bad_grad = list(good)
    bad_grad[1] = [good[1][0], torch.ones(4, dtype=torch.float64)]
    with pytest.raises(RuntimeError, match=r"grads\[0\] has shape \[4\] but params\[0\] has "
                                           r"shape \[2, 2\][\s\S]*in call 1 of check_step_calls"):
        check(*bad_grad)
    short = list(good)
    short[2] = []
    with pytest.raises(RuntimeError, match=r"state lists are shorter"):
        check(*short)
    with pytest.raises(RuntimeError, match=r"one entry per call"):
        check(*good[:6], [False], *good[7:])
