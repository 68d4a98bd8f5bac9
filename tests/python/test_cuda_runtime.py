"""The CUDA step at run time: GradScaler without host synchronisation, CUDA
graph capture and replay, the number of launches, the dispatcher's checks.
Skipped, with the reason, where torch.cuda.is_available() is False.
"""

from __future__ import annotations

import copy

import pytest
import torch

import mirrorflow

gpu = pytest.mark.skipif(not torch.cuda.is_available(),
                         reason="needs a CUDA device (torch.cuda.is_available() is False)")


# ---- GradScaler, graphs, synchronisation -----------------------------------------


@gpu
def test_grad_scaler_unscales_and_skips_on_the_device():
    torch.manual_seed(0)
    model = torch.nn.Linear(64, 8).cuda()
    ref = copy.deepcopy(model)
    kwargs = dict(lr=0.1, momentum=0.9, mirror="hyperbolic", beta=0.3, normalize=True)
    opt = mirrorflow.MirrorDescent(model.parameters(), **kwargs)
    ref_opt = mirrorflow.MirrorDescent(ref.parameters(), **kwargs)
    scaler = torch.amp.GradScaler("cuda", init_scale=1024.0)
    x = torch.randn(32, 64, device="cuda")
    for step in range(4):
        opt.zero_grad()
        ref_opt.zero_grad()
        scaler.scale(model(x).square().mean()).backward()
        if step in (0, 2):  # overflows, the first one before any step was taken
            model.weight.grad[0, 0] = float("inf")
            snapshot = [p.detach().clone() for p in model.parameters()]
        torch.cuda.set_sync_debug_mode("error")
        try:
            scaler.step(opt)  # unscale, check, skip: no host synchronisation
        finally:
            torch.cuda.set_sync_debug_mode("default")
        scaler.update()
        if step in (0, 2):
            assert all(torch.equal(a, b) for a, b in zip(model.parameters(), snapshot))
            continue
        ref(x).square().mean().backward()
        ref_opt.step()
        for a, b in zip(model.parameters(), ref.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6)
    # one skipped and two real steps: the buffer was initialised at the first real one
    assert all(opt.state[p]["step"].item() == 2 for p in model.parameters())


@gpu
def test_skipped_first_step_initialises_momentum_at_the_next_step():
    torch.manual_seed(0)
    p = torch.randn(1000, device="cuda", requires_grad=True)
    q = p.detach().clone().requires_grad_()
    kwargs = dict(lr=0.1, momentum=0.9, dampening=0.5, mirror="power", beta=0.1, degree=3.0,
                  normalize=True)
    opt = mirrorflow.MirrorDescent([p], **kwargs)
    ref = mirrorflow.MirrorDescent([q], **kwargs)
    p.grad = torch.full((1000,), float("inf"), device="cuda")
    opt.found_inf = torch.ones((), device="cuda")
    opt.grad_scale = torch.full((), 4.0, device="cuda")
    opt.step()  # skipped
    del opt.found_inf, opt.grad_scale
    assert opt.state[p]["step"].item() == 0
    g = torch.randn(1000, device="cuda")
    p.grad, q.grad = g.clone(), g.clone()
    opt.step()
    ref.step()
    assert torch.equal(p, q)
    assert torch.equal(opt.state[p]["momentum_buffer"], g)  # b ← g at the first real step


@gpu
def test_cuda_graph_replay_with_a_tensor_learning_rate():
    """A captured step, replayed with new gradients and learning rates, equals
    eager steps bit for bit (lr, steps, means and found_inf are read on the device)."""
    torch.manual_seed(0)
    shapes = [(64, 3, 3, 3), (64,), (10, 512), (70000,)]
    init = [torch.randn(s, device="cuda") * 0.3 for s in shapes]
    graph_params = [t.clone().requires_grad_() for t in init]
    eager_params = [t.clone().requires_grad_() for t in init]
    kwargs = dict(mirror="hyperbolic", beta=0.05, momentum=0.9, nesterov=True, normalize=True,
                  weight_decay=1e-3)
    lr = torch.tensor(0.05, device="cuda")
    opt = mirrorflow.MirrorDescent(graph_params, lr=lr, **kwargs)
    eager_lr = torch.tensor(0.05, device="cuda")
    eager = mirrorflow.MirrorDescent(eager_params, lr=eager_lr, **kwargs)
    static_grads = [torch.zeros_like(t) for t in init]
    for p, g in zip(graph_params, static_grads):
        p.grad = g
    gen = torch.Generator(device="cuda").manual_seed(5)

    def new_grads():
        return [torch.randn(s, device="cuda", generator=gen) for s in shapes]

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up: state created, means cached
        for _ in range(2):
            grads = new_grads()
            for g, s in zip(static_grads, grads):
                g.copy_(s)
            opt.step()
            for p, s in zip(eager_params, grads):
                p.grad = s.clone()
            eager.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        opt.step()
    for k, value in enumerate([0.05, 0.02, 0.1, 0.0]):
        grads = new_grads()
        for g, s in zip(static_grads, grads):
            g.copy_(s)
        lr.fill_(value)
        graph.replay()
        for p, s in zip(eager_params, grads):
            p.grad = s.clone()
        eager_lr.fill_(value)
        eager.step()
        for a, b in zip(graph_params, eager_params):
            assert torch.equal(a, b), k
    for a, b in zip(graph_params, eager_params):
        assert opt.state[a]["step"].item() == eager.state[b]["step"].item() == 6
        assert torch.equal(opt.state[a]["momentum_buffer"], eager.state[b]["momentum_buffer"])


# ---- launches ---------------------------------------------------------------------


def _count_kernels(n_tensors: int) -> tuple[int, int]:
    """Kernels and host-to-device copies of one normalised momentum step over
    n_tensors tensors whose means are stale (the longest launch sequence)."""
    gen = torch.Generator(device="cuda").manual_seed(0)
    params = [torch.randn(100 + (i % 7) * 1000, device="cuda", generator=gen)
              for i in range(n_tensors)]
    args = ([*params], [torch.randn_like(p) for p in params],
            [torch.zeros_like(p) for p in params],
            [torch.zeros((), device="cuda") for _ in params],
            [torch.zeros((), dtype=torch.float64, device="cuda") for _ in params],
            [False] * n_tensors)
    kwargs = dict(mirror="hyperbolic", beta=0.1, degree=3.0, update="metric", normalize=True,
                  beta_scaling="fan_in", lr=0.05, momentum=0.9, dampening=0.0, nesterov=False,
                  weight_decay=0.0, maximize=False)
    torch.ops.mirrorflow.mirror_descent_step_(*args, **kwargs)  # warm-up
    torch.cuda.synchronize()
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as prof:
        torch.ops.mirrorflow.mirror_descent_step_(*args, **kwargs)
        torch.cuda.synchronize()
    device_events = [e for e in prof.events()
                     if e.device_type == torch.autograd.DeviceType.CUDA]
    copies = [e for e in device_events if "memcpy" in e.name.lower()]
    kernels = [e for e in device_events if "memcpy" not in e.name.lower()
               and "memset" not in e.name.lower()]
    return len(kernels), len(copies)


@gpu
def test_launch_count_does_not_grow_with_the_number_of_tensors():
    few = _count_kernels(10)
    many = _count_kernels(1000)
    assert few == many, (few, many)
    # stale means, finalize, step, finalize; one upload of the records
    assert few[0] == 4 and few[1] <= 1, few


# ---- the dispatcher's view ----------------------------------------------------------


@gpu
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_opcheck_on_cuda(normalize, momentum):
    """Schema (what the op mutates), fake tensors, torch.compile's dispatch."""
    torch.manual_seed(0)
    params = [torch.randn(5, 3, device="cuda"), torch.randn(40000, device="cuda")]
    args = (params, [torch.randn_like(p) for p in params],
            [torch.zeros_like(p) for p in params] if momentum else [],
            [torch.zeros((), device="cuda") for _ in params] if momentum else [],
            [torch.zeros((), dtype=torch.float64, device="cuda") for _ in params]
            if normalize else [],
            [False for _ in params] if normalize else [])
    kwargs = dict(mirror="power", beta=0.1, degree=3.0, update="dual", normalize=normalize,
                  beta_scaling="fan_in", lr=0.05, momentum=momentum, dampening=0.0,
                  nesterov=False, weight_decay=0.01, maximize=False,
                  lr_tensor=torch.tensor(0.05, device="cuda"),
                  grad_scale=torch.tensor(2.0, device="cuda"),
                  found_inf=torch.tensor(0.0, device="cuda"))
    torch.library.opcheck(torch.ops.mirrorflow.mirror_descent_step_.default, args, kwargs)
    x = torch.randn(100, device="cuda")
    torch.library.opcheck(torch.ops.mirrorflow.map_eval.default, (x, "hyperbolic", 0.1, 1.0,
                                                                  "inv_metric"))
