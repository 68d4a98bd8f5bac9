"""mirrorflow.TimeRescaling (MATH.md §4) against hand-computed learning rates."""

from __future__ import annotations

import math
from re import escape as re_escape

import pytest
import torch

import mirrorflow


def _optimizer(lr=0.5, groups=1, mirror="euclidean"):
    params = [torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
              for _ in range(groups)]
    return mirrorflow.MirrorDescent(
        [{"params": [p], "lr": lr * (i + 1)} for i, p in enumerate(params)], lr=lr, mirror=mirror
    ), params


def test_keeps_base_lr_until_classified_and_below_epsilon():
    opt, _ = _optimizer(lr=0.5)
    r = mirrorflow.TimeRescaling(opt, epsilon=0.1, c_max=100.0)
    assert r.step(0.05, classified=False) == 1.0  # small loss, but not classified
    assert opt.param_groups[0]["lr"] == 0.5
    assert r.step(0.3, classified=True) == 1.0  # classified, loss above ε
    assert opt.param_groups[0]["lr"] == 0.5
    assert not r.active
    assert r.step(0.02, classified=True) == pytest.approx(5.0)  # ε/L = 0.1/0.02
    assert opt.param_groups[0]["lr"] == pytest.approx(2.5)
    assert r.active


def test_factor_is_capped_and_follows_the_loss_after_the_switch():
    opt, _ = _optimizer(lr=0.2)
    r = mirrorflow.TimeRescaling(opt, epsilon=1e-2, c_max=50.0)
    r.step(1e-3, classified=True)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.2 * 10)
    r.step(1e-6, classified=True)  # ε/L = 1e4 > c_max
    assert opt.param_groups[0]["lr"] == pytest.approx(0.2 * 50)
    r.step(0.0, classified=True)
    assert r.factor == 50.0
    # after the switch the rule is η₀·min(c_max, ε/L) whatever the loss does
    r.step(4e-2, classified=False)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.2 * 0.25)
    assert r.rescaled_steps == pytest.approx(10 + 50 + 50 + 0.25)


def test_every_group_scales_its_own_base_lr():
    opt, _ = _optimizer(lr=0.1, groups=3)
    r = mirrorflow.TimeRescaling(opt, epsilon=1.0, c_max=10.0)
    r.step(0.25, classified=True)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.4, 0.8, 1.2])


def test_tensor_lr_is_filled_in_place():
    p = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    lr = torch.tensor(0.5, dtype=torch.float64)
    opt = mirrorflow.MirrorDescent([p], lr=lr)
    r = mirrorflow.TimeRescaling(opt, epsilon=0.5, c_max=4.0)
    r.step(0.25, classified=True)
    assert opt.param_groups[0]["lr"] is lr
    assert float(lr) == pytest.approx(1.0)


def test_step_uses_the_rescaled_rate_in_mirror_descent():
    # Euclidean map: θ⁺ = θ − η₀·min(c_max, ε/L)·g, by hand.
    opt, (p,) = _optimizer(lr=0.5)
    r = mirrorflow.TimeRescaling(opt, epsilon=0.1, c_max=1e3)
    p.grad = torch.tensor([0.2, -0.4], dtype=torch.float64)
    r.step(0.04, classified=True)  # factor 2.5, lr 1.25
    opt.step()
    expected = torch.tensor([1.0 - 0.25, -2.0 + 0.5], dtype=torch.float64)
    torch.testing.assert_close(p.detach(), expected)
    # hyperbolic dual step: θ⁺ = β·sinh(asinh(θ/β) − η·g) with the rescaled η
    q = torch.nn.Parameter(torch.tensor([0.3], dtype=torch.float64))
    opt = mirrorflow.MirrorDescent([q], lr=0.1, mirror="hyperbolic", beta=0.5, update="dual")
    r = mirrorflow.TimeRescaling(opt, epsilon=1.0, c_max=3.0)
    q.grad = torch.tensor([0.7], dtype=torch.float64)
    r.step(0.1, classified=True)  # factor min(3, 10) = 3
    opt.step()
    expected = 0.5 * math.sinh(math.asinh(0.3 / 0.5) - 0.3 * 0.7)
    assert float(q.detach()) == pytest.approx(expected, rel=1e-12)


def test_state_dict_round_trip_continues_identically():
    opt, _ = _optimizer(lr=0.3)
    r = mirrorflow.TimeRescaling(opt, epsilon=0.1, c_max=20.0)
    for loss in (0.5, 0.05, 0.01):
        r.step(loss, classified=True)
    opt2, _ = _optimizer(lr=0.3)
    r2 = mirrorflow.TimeRescaling(opt2, epsilon=1.0, c_max=2.0)
    r2.load_state_dict(r.state_dict())
    for loss in (0.2, 0.001):
        assert r2.step(loss, classified=False) == r.step(loss, classified=False)
        assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert r2.rescaled_steps == r.rescaled_steps
    assert r2.thresholds() == {"epsilon": 0.1, "c_max": 20.0}


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"epsilon": 0.0, "c_max": 10.0}, "epsilon"),
        ({"epsilon": float("nan"), "c_max": 10.0}, "epsilon"),
        ({"epsilon": 0.1, "c_max": 0.5}, "c_max"),
        ({"epsilon": 0.1, "c_max": float("inf")}, "c_max"),
    ],
)
def test_bad_thresholds_are_rejected(kwargs, name):
    opt, _ = _optimizer()
    with pytest.raises(ValueError, match=name):
        mirrorflow.TimeRescaling(opt, **kwargs)


def test_bad_step_arguments_change_nothing():
    opt, _ = _optimizer(lr=0.5)
    r = mirrorflow.TimeRescaling(opt, epsilon=0.1, c_max=10.0)
    r.step(0.05, classified=True)
    before = (opt.param_groups[0]["lr"], r.rescaled_steps, r.factor)
    with pytest.raises(ValueError, match=r"loss must be a finite number >= 0, got -1"):
        r.step(-1.0, classified=True)
    with pytest.raises(ValueError, match="loss"):
        r.step(float("nan"), classified=True)
    with pytest.raises(ValueError, match="classified must be True or False"):
        r.step(0.01, classified=1)
    assert (opt.param_groups[0]["lr"], r.rescaled_steps, r.factor) == before
    with pytest.raises(ValueError, match="optimizer must be a torch.optim.Optimizer"):
        mirrorflow.TimeRescaling([torch.zeros(1)], epsilon=0.1, c_max=10.0)
    state = r.state_dict()
    state["base_lrs"] = [0.5, 0.5]
    with pytest.raises(ValueError, match="2 base learning rates"):
        r.load_state_dict(state)
    assert r.base_lrs == [0.5]


@pytest.mark.parametrize("damage, words", [
    (lambda s: s.pop("factor"), "state lacks factor"),
    (lambda s: s.update(factor=-3.0), "factor must be a finite number > 0"),
    (lambda s: s.update(factor=1e9), "factor must be <= c_max"),
    (lambda s: s.update(base_lrs=[float("nan")]), "base_lrs[0] must be a finite number >= 0"),
    (lambda s: s.update(rescaled_steps=-1.0), "rescaled_steps must be a finite number >= 0"),
    (lambda s: s.update(active="yes"), "active must be True or False"),
])
def test_a_bad_state_is_refused_naming_the_entry_and_changes_nothing(damage, words):
    opt, _ = _optimizer()
    rescaling = mirrorflow.TimeRescaling(opt, epsilon=1e-3, c_max=100.0)
    rescaling.step(1e-4, classified=True)
    before = rescaling.state_dict()
    state = dict(before, epsilon=0.5)  # valid, so that a partial load would show
    damage(state)
    with pytest.raises(ValueError, match=re_escape(words)):
        rescaling.load_state_dict(state)
    assert rescaling.state_dict() == before


def test_a_group_added_later_keeps_its_own_learning_rate_as_base():
    opt, _ = _optimizer(lr=0.5)
    rescaling = mirrorflow.TimeRescaling(opt, epsilon=1e-3, c_max=100.0)
    opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(2, dtype=torch.float64))],
                         "lr": 0.2})
    assert rescaling.step(1e-5, classified=True) == 100.0
    assert [g["lr"] for g in opt.param_groups] == [50.0, 20.0]


def test_a_learning_rate_that_is_not_a_number_is_refused_naming_the_group():
    opt, _ = _optimizer()
    opt.param_groups[0]["lr"] = float("nan")
    with pytest.raises(ValueError, match=r"learning rate of param group 0 must be a finite"):
        mirrorflow.TimeRescaling(opt, epsilon=1e-3, c_max=10.0)
