"""Bad input: every invalid hyperparameter is refused at construction and at
add_param_group with a ValueError naming the argument, the rule and the value;
bad tensors are refused by the operator; nothing is modified by a failure."""

from __future__ import annotations

import copy

import pytest
import torch

import mirrorflow

BAD_HYPERPARAMETERS = [
    (dict(lr=-0.1), "lr", "-0.1"),
    (dict(lr=float("nan")), "lr", "nan"),
    (dict(lr=float("inf")), "lr", "inf"),
    (dict(mirror="hyperbolic", beta=0.0), "beta", "0"),
    (dict(mirror="hyperbolic", beta=-1.0), "beta", "-1"),
    (dict(mirror="power", degree=1.0), "degree", "1"),
    (dict(mirror="power", degree=0.5), "degree", "0.5"),
    (dict(mirror="power", beta=-0.5), "beta", "-0.5"),
    (dict(mirror="power", degree=3.0, beta=0.0, update="metric"), "beta=0", "3"),
    (dict(mirror="power", degree=3.0, beta=0.0, update="dual", normalize=True), "normalize", "3"),
    (dict(mirror="cosine"), "mirror", "'cosine'"),
    (dict(mirror="Hyperbolic"), "mirror", "'Hyperbolic'"),
    (dict(update="natural"), "update", "'natural'"),
    (dict(beta_scaling="fan_out"), "beta_scaling", "'fan_out'"),
    (dict(momentum=-0.9), "momentum", "-0.9"),
    (dict(weight_decay=-1e-4), "weight_decay", "-0.0001"),
    (dict(dampening=1.5), "dampening", "1.5"),
    (dict(nesterov=True), "nesterov", "momentum=0"),
    (dict(nesterov=True, momentum=0.9, dampening=0.1), "nesterov", "dampening=0.1"),
    (dict(mirror=3), "mirror", "3"),
    (dict(normalize="yes"), "normalize", "'yes'"),
    (dict(beta="small"), "beta", "'small'"),
    (dict(lr=torch.tensor([0.1, 0.2])), "lr", "shape"),
]


@pytest.mark.parametrize("kwargs,arg,value", BAD_HYPERPARAMETERS,
                         ids=[f"{a}={v}" for _, a, v in BAD_HYPERPARAMETERS])
def test_bad_hyperparameter_is_refused_at_construction(kwargs, arg, value):
    p = torch.randn(4, requires_grad=True)
    before = p.detach().clone()
    with pytest.raises(ValueError) as info:
        mirrorflow.MirrorDescent([p], **kwargs)
    message = str(info.value)
    assert arg in message and value in message, message
    assert "must" in message or "requires" in message or "needs" in message, message
    assert torch.equal(p, before)


@pytest.mark.parametrize("kwargs,arg,value", BAD_HYPERPARAMETERS,
                         ids=[f"{a}={v}" for _, a, v in BAD_HYPERPARAMETERS])
def test_bad_hyperparameter_is_refused_by_add_param_group(kwargs, arg, value):
    p = torch.randn(4, requires_grad=True)
    q = torch.randn(4, requires_grad=True)
    opt = mirrorflow.MirrorDescent([p], lr=0.1)
    groups_before = copy.deepcopy(opt.param_groups)
    with pytest.raises(ValueError) as info:
        opt.add_param_group({"params": [q], **kwargs})
    assert arg in str(info.value) and value in str(info.value)
    assert len(opt.param_groups) == 1
    assert opt.param_groups[0]["lr"] == groups_before[0]["lr"]


def test_hyperparameter_broken_after_construction_fails_the_step_cleanly():
    p = torch.randn(6, requires_grad=True)
    opt = mirrorflow.MirrorDescent([p], lr=0.1, momentum=0.9)
    p.grad = torch.ones(6)
    opt.param_groups[0]["beta"] = -1.0  # harmless for euclidean
    opt.param_groups[0]["mirror"] = "hyperbolic"  # now invalid
    before = p.detach().clone()
    with pytest.raises(ValueError, match="beta must be > 0"):
        opt.step()
    assert torch.equal(p, before) and len(opt.state) == 0


def _step_with_bad_tensor(make_bad):
    good = torch.randn(8, requires_grad=True)
    good.grad = torch.randn(8)
    bad_param, bad_grad = make_bad()
    params = [good, bad_param]
    opt = mirrorflow.MirrorDescent(params, lr=0.1, momentum=0.9, mirror="hyperbolic", beta=0.1,
                                   normalize=True)
    before = [p.detach().clone() for p in params]
    grads_before = [None if p.grad is None else p.grad.clone() for p in params]
    with pytest.raises((RuntimeError, NotImplementedError)) as info:
        opt.step()
    for p, b, g in zip(params, before, grads_before):
        assert torch.equal(p.detach(), b)
        if g is not None and not p.grad.is_sparse:
            assert torch.equal(p.grad, g)
    assert len(opt.state) == 0
    return str(info.value)


def test_sparse_gradient_is_refused_and_nothing_changes():
    def make():
        p = torch.randn(8, requires_grad=True)
        p.grad = torch.randn(8).to_sparse()
        return p, p.grad

    message = _step_with_bad_tensor(make)
    assert "sparse" in message and "grads[1]" in message


def test_complex_parameter_is_refused():
    p = torch.randn(4, dtype=torch.complex64, requires_grad=True)
    p.grad = torch.randn(4, dtype=torch.complex64)
    with pytest.raises(RuntimeError, match=r"params\[0\] is complex"):
        mirrorflow.MirrorDescent([p], lr=0.1).step()


def test_integer_parameter_is_refused_by_the_operator():
    p = torch.arange(4)
    with pytest.raises(RuntimeError, match="floating-point dtype"):
        _call_op([p], [p.clone()])


def _call_op(params, grads, **overrides):
    kwargs = dict(mirror="euclidean", beta=1.0, degree=3.0, update="metric", normalize=False,
                  beta_scaling="none", lr=0.1, momentum=0.0, dampening=0.0, nesterov=False,
                  weight_decay=0.0, maximize=False)
    lists = dict(bufs=[], steps=[], means=[], valid=[])
    for key in list(overrides):
        if key in lists:
            lists[key] = overrides.pop(key)
    kwargs.update(overrides)
    torch.ops.mirrorflow.mirror_descent_step_(
        params, grads, lists["bufs"], lists["steps"], lists["means"], lists["valid"], **kwargs
    )


def test_mixed_devices_within_a_call_are_refused():
    cpu = torch.randn(4)
    meta = torch.empty(4, device="meta")
    with pytest.raises(RuntimeError, match="one device"):
        _call_op([cpu, meta], [torch.randn(4), torch.empty(4, device="meta")])


@pytest.mark.parametrize(
    "grads,pattern",
    [
        (lambda: [torch.randn(5)], r"grads\[0\] has shape"),
        (lambda: [torch.randn(4, dtype=torch.float64)], r"grads\[0\] has dtype"),
        (lambda: [], "1 params but 0 grads"),
    ],
)
def test_operator_checks_gradients(grads, pattern):
    p = torch.randn(4)
    before = p.clone()
    with pytest.raises(RuntimeError, match=pattern):
        _call_op([p], grads())
    assert torch.equal(p, before)


def test_operator_checks_state_lists():
    p = torch.randn(4)
    g = torch.randn(4)
    with pytest.raises(RuntimeError, match="momentum_buffers must hold 1"):
        _call_op([p], [g], momentum=0.9)
    with pytest.raises(RuntimeError, match=r"steps\[0\] must have dtype Float"):
        _call_op([p], [g], momentum=0.9, bufs=[torch.zeros(4)],
                 steps=[torch.zeros((), dtype=torch.float64)])
    with pytest.raises(RuntimeError, match="metric_means must hold 1"):
        _call_op([p], [g], normalize=True)
    with pytest.raises(RuntimeError, match="metric_means_valid must hold 1"):
        _call_op([p], [g], normalize=True, means=[torch.zeros((), dtype=torch.float64)])
    with pytest.raises(RuntimeError, match="found_inf must hold exactly one element"):
        _call_op([p], [g], found_inf=torch.zeros(2))
    with pytest.raises(ValueError, match="lr must be a finite number >= 0, got -1"):
        _call_op([p], [g], lr=-1.0)


def test_map_eval_refuses_unknown_function_and_bad_map():
    x = torch.randn(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="function must be one of"):
        mirrorflow.map_eval(x, "hyperbolic", "hessian", beta=0.1)
    with pytest.raises(ValueError, match="beta must be > 0"):
        mirrorflow.map_eval(x, "hyperbolic", "grad", beta=0.0)
