"""mirrorflow.diagnostics (MATH.md §3): hand-computed values, invariances, conservation laws."""

from __future__ import annotations

import math

import pytest
import torch

import mirrorflow
from mirrorflow import diagnostics

F64 = torch.float64


def _t(values):
    return torch.tensor(values, dtype=F64)


def _net(params, x):
    """A bias-free ReLU network, homogeneous of degree len(params) in its parameters."""
    h = x
    for w in params[:-1]:
        h = torch.relu(h @ w.T)
    return h @ params[-1].T


def test_horizon_margin_hand_computed():
    W, a = _t([[1.0, 0.0], [0.0, -2.0]]), _t([1.0, -1.0])
    outputs, labels = _t([1.0, -2.0]), _t([1.0, -1.0])  # margins 1 and 2
    assert diagnostics.horizon_margin(outputs, labels, [W, a], 1, 2) == pytest.approx(1 / 5**2)
    assert diagnostics.horizon_margin(outputs, labels, [W, a], 2, 2) == pytest.approx(1 / 7)
    gamma3 = diagnostics.horizon_margin(outputs, labels, [W, a], 3, 2)
    assert gamma3 == pytest.approx(11 ** (-2 / 3))
    assert diagnostics.horizon_margin(outputs, labels, [W, a], 2, 3) == pytest.approx(7 ** -1.5)
    # soft: −log(e^{−1} + e^{−2}) over the same horizon
    soft = -math.log(math.exp(-1) + math.exp(-2))
    soft_gamma = diagnostics.horizon_margin(outputs, labels, [W, a], 1, 2, soft=True)
    assert soft_gamma == pytest.approx(soft / 25)


def test_horizon_margin_multiclass_hand_computed():
    outputs = _t([[3.0, 1.0, 0.5], [0.0, 2.0, 2.5]])  # margins 3 − 1 = 2 and 2.5 − 2 = 0.5
    labels = torch.tensor([0, 2])
    p = [_t([[2.0]]), _t([[1.0, 1.0, 1.0]])]  # Σ|θ| = 5, Σθ² = 7
    assert diagnostics.horizon_margin(outputs, labels, p, 1, 2) == pytest.approx(0.5 / 25)
    assert diagnostics.horizon_margin(outputs, labels, p, 2, 2) == pytest.approx(0.5 / 7)
    assert diagnostics.soft_min_margin(outputs, labels) == pytest.approx(
        -math.log(math.exp(-2) + math.exp(-0.5))
    )


@pytest.mark.parametrize("depth", [2, 3])
@pytest.mark.parametrize("k", [1, 3])
def test_horizon_margin_is_scale_invariant(depth, k):
    g = torch.Generator().manual_seed(depth * 10 + k)
    x = torch.randn(40, 2, generator=g, dtype=F64)
    params = [torch.randn(6, 2, generator=g, dtype=F64)]
    params += [torch.randn(6, 6, generator=g, dtype=F64) for _ in range(depth - 2)]
    params += [torch.randn(k, 6, generator=g, dtype=F64)]
    out = _net(params, x)
    keep = out.abs().sum(1) > 0  # inputs that every ReLU of the first layer turns off have no label
    x, out = x[keep], out[keep]
    labels = out.argmax(1) if k > 1 else torch.sign(out[:, 0])
    for L in (1.0, 2.0, 3.0, 1.5):
        gamma = diagnostics.horizon_margin(out, labels, params, L, depth)
        assert gamma > 0
        for c in (0.01, 3.7, 1e3):
            scaled = [c * p for p in params]
            assert diagnostics.horizon_margin(_net(scaled, x), labels, scaled, L, depth) == (
                pytest.approx(gamma, rel=1e-10)
            )
        # with the wrong degree of homogeneity the ratio is not invariant: it scales like 1/c
        scaled = [3.7 * p for p in params]
        wrong = diagnostics.horizon_margin(out, labels, params, L, depth + 1)
        wrong_scaled = diagnostics.horizon_margin(_net(scaled, x), labels, scaled, L, depth + 1)
        assert wrong_scaled == pytest.approx(wrong / 3.7, rel=1e-10)


@pytest.mark.parametrize("n", [1, 2, 17, 500])
def test_soft_margin_within_log_n_of_the_hard_one(n):
    g = torch.Generator().manual_seed(n)
    q = torch.randn(n, generator=g, dtype=F64) * 3
    labels = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0).to(F64)
    outputs = q * labels
    soft = diagnostics.soft_min_margin(outputs, labels)
    hard = float(q.min())
    assert hard - math.log(n) - 1e-12 <= soft <= hard + 1e-12
    # equal margins attain the lower end exactly
    equal = diagnostics.soft_min_margin(torch.full((n,), 2.0, dtype=F64), torch.ones(n, dtype=F64))
    assert equal == pytest.approx(2.0 - math.log(n))


def test_layer_balance_hand_computed():
    W, a = _t([[3.0, -4.0]]), _t([2.0])
    torch.testing.assert_close(diagnostics.layer_balance([W, a], "euclidean"), _t([12.5, 2.0]))
    beta = 0.5
    h = lambda v: math.sqrt(v * v + beta * beta) - beta  # noqa: E731
    torch.testing.assert_close(
        diagnostics.layer_balance([[W], [a]], "hyperbolic", beta=beta), _t([h(3) + h(-4), h(2)])
    )
    # power, β = 0: φ*(∇φ(x)) = (L−1)/L·|x|^L
    torch.testing.assert_close(
        diagnostics.layer_balance([W, a], "power", beta=0.0, degree=3.0),
        _t([2 / 3 * (27 + 64), 2 / 3 * 8]),
    )


def test_neuron_balance_and_strength_hand_computed():
    W = _t([[3.0, 4.0], [1.0, 0.0]])
    a = _t([2.0, -0.5])
    torch.testing.assert_close(
        diagnostics.neuron_balance(W, a, "euclidean"), _t([12.5 - 2.0, 0.5 - 0.125])
    )
    torch.testing.assert_close(diagnostics.neuron_strength(W, a), _t([10.0, 0.5]))
    # summed over the neurons: the layer balance B₁ − B₂
    for mirror in ("euclidean", "hyperbolic", "power"):
        B = diagnostics.layer_balance([W, a], mirror, beta=0.2)
        total = diagnostics.neuron_balance(W, a, mirror, beta=0.2).sum()
        assert float(total) == pytest.approx(float(B[0] - B[1]), rel=1e-12)
    A = _t([[2.0, -0.5], [0.0, 1.0]])  # two outputs: column j leaves neuron j
    torch.testing.assert_close(
        diagnostics.neuron_balance(W, A, "euclidean"), _t([12.5 - 2.0, 0.5 - 0.625])
    )
    torch.testing.assert_close(diagnostics.neuron_strength(W, A), _t([10.0, math.sqrt(1.25)]))


def test_active_neurons_hand_computed_and_rescaling_invariant():
    W = _t([[1.0, 0.0], [0.0, 0.04], [0.06, 0.0], [0.0, 0.0]])
    a = _t([1.0, -1.0, 1.0, 5.0])  # strengths 1, 0.04, 0.06, 0
    assert diagnostics.active_neurons(W, a) == 2
    assert diagnostics.active_neurons(W, a, threshold=0.01) == 3
    assert diagnostics.active_neurons(W, a, threshold=0.0) == 3
    c = _t([5.0, 0.1, 2.0, 1.0])  # wⱼ → cⱼwⱼ, aⱼ → aⱼ/cⱼ leaves the network and the count unchanged
    assert diagnostics.active_neurons(W * c[:, None], a / c) == 2
    assert diagnostics.active_neurons(torch.zeros(3, 2, dtype=F64), torch.ones(3, dtype=F64)) == 0


def test_bad_arguments_are_rejected():
    out, y, p = _t([1.0]), _t([1.0]), [_t([1.0])]
    with pytest.raises(ValueError, match="degree must be a finite number > 0, got 0"):
        diagnostics.horizon_margin(out, y, p, 0, 2)
    with pytest.raises(ValueError, match="homogeneity must be an integer >= 1, got 0"):
        diagnostics.horizon_margin(out, y, p, 2, 0)
    with pytest.raises(ValueError, match="every parameter is 0"):
        diagnostics.horizon_margin(out, y, [_t([0.0])], 2, 1)
    with pytest.raises(ValueError, match="threshold must be in \\[0, 1\\), got 1.5"):
        diagnostics.active_neurons(_t([[1.0]]), _t([1.0]), threshold=1.5)
    with pytest.raises(ValueError, match=r"outgoing must have shape \(2,\) or \(k, 2\)"):
        diagnostics.neuron_balance(_t([[1.0], [2.0]]), _t([1.0, 2.0, 3.0]), "euclidean")
    with pytest.raises(ValueError, match="mirror must be one of"):
        diagnostics.layer_balance([_t([1.0])], "cosh")


def _train_two_layer(mirror: str, beta: float, lr: float, time: float):
    """Mean-field two-layer ReLU network, exponential loss, MirrorDescent (dual) for
    `time`/lr steps; returns (initial, final) parameters."""
    g = torch.Generator().manual_seed(0)
    t = torch.rand(30, generator=g, dtype=F64) * 2 * math.pi
    x = torch.stack([t.cos(), t.sin()], 1)
    y = torch.sign(torch.sin(2 * t) + 0.3)
    m = 8
    W = torch.randn(m, 2, generator=g, dtype=F64).requires_grad_()
    a = torch.randn(m, generator=g, dtype=F64).requires_grad_()
    start = (W.detach().clone(), a.detach().clone())
    opt = mirrorflow.MirrorDescent([W, a], lr=lr * m, mirror=mirror, beta=beta, update="dual")
    for _ in range(round(time / lr)):
        opt.zero_grad()
        torch.exp(-y * (torch.relu(x @ W.T) @ a) / m).mean().backward()
        opt.step()
    return start, (W.detach(), a.detach())


@pytest.mark.parametrize("mirror, beta", [("euclidean", 1.0), ("hyperbolic", 0.3), ("power", 0.3)])
def test_neuron_balance_drift_shrinks_like_the_step(mirror, beta):
    drifts = []
    for lr in (0.04, 0.02):
        (W0, a0), (W1, a1) = _train_two_layer(mirror, beta, lr, time=4.0)
        change = (diagnostics.neuron_balance(W1, a1, mirror, beta)
                  - diagnostics.neuron_balance(W0, a0, mirror, beta)).abs().max()
        drifts.append(float(change))
    assert drifts[1] > 0
    assert 1.6 < drifts[0] / drifts[1] < 2.4  # O(η): halving η halves the drift
    # under the hyperbolic map the Euclidean balance ½‖wⱼ‖² − ½aⱼ² is not conserved
    if mirror == "hyperbolic":
        euclid = (diagnostics.neuron_balance(W1, a1, "euclidean")
                  - diagnostics.neuron_balance(W0, a0, "euclidean")).abs().max()
        assert float(euclid) > 20 * drifts[1]


def test_more_bad_arguments_are_refused_naming_them():
    w = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    outputs, labels = torch.tensor([1.0, -2.0]), torch.tensor([1.0, -1.0])
    with pytest.raises(ValueError, match=r"layerwise_margin: degree must be a finite number > 0, "
                                         r"got inf"):
        diagnostics.layerwise_margin(outputs, labels, [[w]], degree=float("inf"))
    for margin in (lambda o, l: diagnostics.layerwise_margin(o, l, [[w]]),
                   lambda o, l: diagnostics.horizon_margin(o, l, [w], degree=2.0, homogeneity=1)):
        with pytest.raises(ValueError, match=r"outputs hold no sample \(shape \(0,\)\)"):
            margin(torch.empty(0), torch.empty(0))
    for value_range in ((1.0, 0.0), (0.0, float("nan")), (-1.0, 1.0)):
        with pytest.raises(ValueError, match=r"value_range must be finite \(lo, hi\) with "
                                             r"0 <= lo < hi"):
            diagnostics.weight_histogram(w, value_range=value_range)
    with pytest.raises(ValueError, match=r"0 < lo < hi"):
        diagnostics.weight_histogram(w, log_scale=True, value_range=(0.0, 1.0))
    with pytest.raises(ValueError, match=r"values hold no element"):
        diagnostics.weight_histogram(torch.empty(0))


def test_a_layer_of_norm_zero_gives_an_infinite_layerwise_margin():
    outputs, labels = torch.tensor([1.0, -2.0]), torch.tensor([1.0, -1.0])
    layers = [[torch.ones(2, dtype=torch.float64)], [torch.zeros(3, dtype=torch.float64)]]
    assert diagnostics.layerwise_margin(outputs, labels, layers) == math.inf
