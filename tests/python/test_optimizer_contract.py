"""MirrorDescent's promises beyond one step's arithmetic: a refused step or load
changes nothing, edits of ``optimizer.state`` are honoured, a cached mean is
used only for the map it is a mean of, and gradients that are views sharing
memory are read as they are. Oracles: a fresh optimizer on the same values,
and torch.optim.SGD (which MirrorDescent equals bit for bit for euclidean)."""

from __future__ import annotations

import copy
import io
from collections import defaultdict

import pytest
import torch

import mirrorflow


def _params(seed=0, n=300):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=g, dtype=torch.float64).mul_(0.5).requires_grad_(),
            torch.randn(7, 5, generator=g, dtype=torch.float64).requires_grad_()]


def _grads(params, seed):
    g = torch.Generator().manual_seed(100 + seed)
    return [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]


def _set_grads(params, grads):
    for p, g in zip(params, grads):
        p.grad = g.clone()


def _fresh_step(values, grads, **options):
    """One step of a new optimizer from `values`: what a step must give when no
    cached mean may be reused."""
    params = [v.detach().clone().requires_grad_() for v in values]
    _set_grads(params, grads)
    mirrorflow.MirrorDescent(params, **options).step()
    return params


BASE = dict(lr=0.1, mirror="hyperbolic", beta=0.05, normalize=True)

POWER = dict(BASE, mirror="power", degree=3.0)


@pytest.mark.parametrize("options, change", [
    (BASE, dict(beta=0.5)), (BASE, dict(mirror="power", degree=3.0)),
    (BASE, dict(beta_scaling="fan_in")), (POWER, dict(degree=4.0)),
], ids=["beta", "mirror", "beta_scaling", "degree"])
def test_a_cached_mean_is_not_used_for_another_map(options, change):
    params = _params()
    opt = mirrorflow.MirrorDescent(params, **options)
    _set_grads(params, _grads(params, 0))
    opt.step()
    opt.param_groups[0].update(change)
    grads = _grads(params, 1)
    expected = _fresh_step(params, grads, **{**options, **change})
    _set_grads(params, grads)
    opt.step()
    for p, e in zip(params, expected):
        assert torch.equal(p, e)


@pytest.mark.parametrize("edit", ["clear", "del", "new buffer", "new entry", "replace state"])
def test_edits_of_the_state_are_honoured_as_by_sgd(edit):
    params = _params()
    twins = [p.detach().clone().requires_grad_() for p in params]
    opt = mirrorflow.MirrorDescent(params, lr=0.1, momentum=0.9)
    sgd = torch.optim.SGD(twins, lr=0.1, momentum=0.9)
    for step in range(4):
        grads = _grads(params, step)
        _set_grads(params, grads)
        _set_grads(twins, grads)
        opt.step()
        sgd.step()
        if step == 1:
            for o, ps in ((opt, params), (sgd, twins)):
                if edit == "clear":
                    o.state.clear()
                elif edit == "del":
                    del o.state[ps[0]]
                elif edit == "new buffer":
                    o.state[ps[1]]["momentum_buffer"] = torch.full_like(ps[1], 0.25)
                elif edit == "new entry":  # a buffer and no step count: used as it is
                    o.state[ps[0]] = {"momentum_buffer": torch.full_like(ps[0], 0.5)}
                else:
                    o.state = defaultdict(dict)
        for p, q in zip(params, twins):
            assert torch.equal(p, q), (edit, step)
    assert [p in opt.state for p in params] == [q in sgd.state for q in twins]


def _snapshot(opt, params):
    return ([p.detach().clone() for p in params],
            {id(p): {k: v.clone() for k, v in s.items()} for p, s in opt.state.items()},
            [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups])


def _assert_unchanged(opt, params, before):
    values, state, groups = _snapshot(opt, params)
    assert all(torch.equal(a, b) for a, b in zip(values, before[0]))
    assert state.keys() == before[1].keys()
    for key, entry in state.items():
        assert all(torch.equal(entry[k], before[1][key][k]) for k in entry)
    assert groups == before[2]


def _two_groups(**options):
    a, b = _params()
    opt = mirrorflow.MirrorDescent([{"params": [a]}, {"params": [b]}], lr=0.1, momentum=0.9,
                                   **options)
    _set_grads([a, b], _grads([a, b], 0))
    opt.step()
    _set_grads([a, b], _grads([a, b], 1))
    return opt, [a, b]


def test_a_bad_gradient_in_a_later_group_refuses_the_whole_step():
    opt, params = _two_groups()
    params[1].grad = params[1].grad.to_sparse()
    before = _snapshot(opt, params)
    with pytest.raises(RuntimeError, match=r"grads\[0\] is sparse[\s\S]*in param group 1"):
        opt.step()
    _assert_unchanged(opt, params, before)


def test_a_bad_option_set_on_a_later_group_refuses_the_whole_step():
    opt, params = _two_groups()
    opt.param_groups[1].update(mirror="hyperbolic", beta=0.0)
    before = _snapshot(opt, params)
    with pytest.raises(ValueError, match=r"param group 1: .*beta must be > 0"):
        opt.step()
    _assert_unchanged(opt, params, before)
    opt.param_groups[1].update(beta=0.1, lr="0.1")  # a type the constructor refuses
    before = _snapshot(opt, params)
    with pytest.raises(ValueError, match=r"param group 1: .*lr must be a real number"):
        opt.step()
    _assert_unchanged(opt, params, before)


def test_a_bad_dtype_in_one_group_refuses_the_step_naming_the_parameter():
    a = torch.randn(4, dtype=torch.float64, requires_grad=True)
    c = torch.randn(3, dtype=torch.complex128, requires_grad=True)
    opt = mirrorflow.MirrorDescent([a, c], lr=0.1, momentum=0.9)
    a.grad, c.grad = torch.ones_like(a), torch.ones_like(c)
    before = _snapshot(opt, [a, c])
    with pytest.raises(RuntimeError, match=r"params\[0\] is complex[\s\S]*param group 0, "
                       r"among its parameters of dtype torch.complex128 on cpu: \[0\] there "
                       r"is the group.s parameter 1"):
        opt.step()
    _assert_unchanged(opt, [a, c], before)


def test_load_state_dict_refuses_bad_options_and_state_and_changes_nothing():
    opt, params = _two_groups()
    good = opt.state_dict()
    before = _snapshot(opt, params)
    bad_group = {**good, "param_groups": [good["param_groups"][0],
                                          {**good["param_groups"][1], "mirror": "cosine"}]}
    with pytest.raises(ValueError, match=r"param group 1: .*mirror must be one of"):
        opt.load_state_dict(bad_group)
    wrong_shape = {**good, "state": {0: {**good["state"][0],
                                         "momentum_buffer": torch.zeros(3)}, 1: good["state"][1]}}
    with pytest.raises(ValueError, match=r"momentum_buffer of parameter 0 must be a tensor of "
                       r"the parameter's shape \(300,\), got \(3,\)"):
        opt.load_state_dict(wrong_shape)
    bad_step = {**good, "state": {0: {**good["state"][0], "step": "one"}, 1: good["state"][1]}}
    with pytest.raises(ValueError, match=r"step of parameter 0 must be a number"):
        opt.load_state_dict(bad_step)
    _assert_unchanged(opt, params, before)


def test_a_state_of_sgd_loads_and_continues_as_sgd():
    params = _params()
    twins = [p.detach().clone().requires_grad_() for p in params]
    sgd = torch.optim.SGD(twins, lr=0.1, momentum=0.9)
    for step in range(2):
        _set_grads(twins, _grads(twins, step))
        sgd.step()
    for p, q in zip(params, twins):
        p.data.copy_(q)
    opt = mirrorflow.MirrorDescent(params, lr=0.5)
    # (a copy, as from a file: SGD's own buffers must not be shared)
    opt.load_state_dict(copy.deepcopy(sgd.state_dict()))  # no mirror, ...: the defaults
    assert opt.param_groups[0]["mirror"] == "euclidean" and opt.param_groups[0]["lr"] == 0.1
    # (SGD keeps no step count: its buffers are used as they are, not set to the gradient)
    for step in range(2, 4):
        grads = _grads(params, step)
        _set_grads(params, grads)
        _set_grads(twins, grads)
        opt.step()
        sgd.step()
        for p, q in zip(params, twins):
            assert torch.equal(p, q)


def test_the_state_dict_is_read_by_torch_load_weights_only():
    opt, params = _two_groups()
    opt.step()
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    assert all(type(entry) is dict for entry in loaded["state"].values())
    assert torch.equal(loaded["state"][0]["momentum_buffer"],
                       opt.state[params[0]]["momentum_buffer"])


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("options", [dict(), dict(mirror="hyperbolic", beta=0.1,
                                                   normalize=True, momentum=0.9)])
def test_a_gradient_whose_elements_share_memory_is_read_as_it_is(options, device):
    p = torch.randn(6, 5, dtype=torch.float64, device=device, requires_grad=True)
    q = p.detach().clone().requires_grad_()
    opt = mirrorflow.MirrorDescent([p], lr=0.1, **options)
    twin = mirrorflow.MirrorDescent([q], lr=0.1, **options)
    for step in range(2):
        g = torch.randn(1, 5, dtype=torch.float64, device=device)
        p.grad = g.expand(6, 5)  # 30 elements over 5 values: stride 0
        q.grad = g.expand(6, 5).clone()
        opt.step()
        twin.step()
        assert torch.equal(p, q)
    assert torch.equal(opt.state[p]["momentum_buffer"], twin.state[q]["momentum_buffer"]) \
        if "momentum" in options else not opt.state


@pytest.mark.parametrize("device", DEVICES)
def test_a_parameter_whose_elements_share_memory_is_refused_before_anything_changes(device):
    base = torch.randn(1, 5, dtype=torch.float64, device=device)
    p = base.expand(6, 5)
    a = torch.randn(4, dtype=torch.float64, device=device)
    opt = mirrorflow.MirrorDescent([a, p], lr=0.1)
    a.grad, p.grad = torch.ones_like(a), torch.ones(6, 5, dtype=torch.float64, device=device)
    before = base.clone(), a.clone()
    with pytest.raises(RuntimeError, match=r"params\[1\] has elements that share memory"):
        opt.step()
    assert torch.equal(base, before[0]) and torch.equal(a, before[1])


@pytest.mark.parametrize("device", DEVICES)
def test_a_gradient_sharing_memory_is_refused_when_the_step_unscales_it_in_place(device):
    """GradScaler's protocol: with grad_scale the step writes the unscaled
    gradients back, so there they must have their own memory."""
    p = torch.randn(6, 5, dtype=torch.float64, device=device, requires_grad=True)
    p.grad = torch.randn(1, 5, dtype=torch.float64, device=device).expand(6, 5)
    opt = mirrorflow.MirrorDescent([p], lr=0.1)
    opt.grad_scale = torch.full((), 4.0, device=device)
    opt.found_inf = torch.zeros((), device=device)
    before = p.detach().clone()
    with pytest.raises(RuntimeError, match=r"grads\[0\] \(unscaled in place\) has elements "
                                           r"that share memory"):
        opt.step()
    assert torch.equal(p, before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_bad_gradient_on_one_device_refuses_the_step_on_the_other():
    a = torch.randn(4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, device="cuda", requires_grad=True)
    opt = mirrorflow.MirrorDescent([a, b], lr=0.1, momentum=0.9)
    a.grad = torch.ones_like(a)
    b.grad = torch.ones(4, dtype=torch.float64, device="cuda").to_sparse()
    before = a.detach().clone()
    with pytest.raises(RuntimeError, match=r"grads\[0\] is sparse[\s\S]*on cuda"):
        opt.step()
    assert torch.equal(a, before) and not opt.state


def test_a_parameter_given_another_dtype_through_data_keeps_no_mean():
    """model.to(dtype) replaces p.data, which moves no version counter."""
    p = (torch.randn(200, dtype=torch.float64) * 0.5).requires_grad_()
    opt = mirrorflow.MirrorDescent([p], **BASE)
    p.grad = torch.randn(200, dtype=torch.float64)
    opt.step()
    p.data = (p.data * 3).float()  # as a checkpoint of another dtype loaded through .data
    grad = torch.randn(200)
    expected = _fresh_step([p], [grad], **BASE)[0]
    p.grad = grad.clone()
    opt.step()
    assert torch.equal(p, expected)


def test_a_new_tensor_lr_is_checked_without_reading_its_value():
    p = torch.randn(5, dtype=torch.float64, requires_grad=True)
    opt = mirrorflow.MirrorDescent([p], lr=torch.tensor(0.1, dtype=torch.float64))
    reads = []
    original = torch.Tensor.__bool__
    try:
        torch.Tensor.__bool__ = lambda t: reads.append(t) or original(t)
        for step in range(3):
            opt.param_groups[0]["lr"] = torch.tensor(0.1 / (step + 1), dtype=torch.float64)
            p.grad = torch.ones_like(p)
            opt.step()
    finally:
        torch.Tensor.__bool__ = original
    assert not reads
    opt.param_groups[0]["lr"] = torch.tensor([1.0, 2.0])
    before = p.detach().clone()
    with pytest.raises(ValueError, match=r"param group 0: .*a tensor lr must hold one "
                                         r"floating-point element, got shape \(2,\)"):
        opt.step()
    assert torch.equal(p, before)
