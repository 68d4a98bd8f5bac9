"""C++ ⇄ Python: the C++ optimizer mirrorflow::MirrorDescent (driven by the
program tests/programs/optimizer_trajectory.cpp) and the Python optimizer
reach the same parameters bit for bit, on the CPU and on CUDA.

The program is found through $MIRRORFLOW_TRAJECTORY_PROGRAM, else in the
build tree of `make test` (build/tests/programs/); it is built with
-DMIRRORFLOW_BUILD_TESTS=ON or -DMIRRORFLOW_BUILD_TEST_PROGRAMS=ON.
"""

from __future__ import annotations

import os
import subprocess

import pytest
import torch

import mirrorflow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHAPES = [(16, 3, 3, 3), (33,), (70001,), (0,), (5, 7)]  # as in optimizer_trajectory.cpp
DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16,
          "float16": torch.float16}
CONFIGS = {
    "hyperbolic-normalized-momentum": dict(lr=0.05, mirror="hyperbolic", beta=0.1,
                                           normalize=True, momentum=0.9),
    "power-dual-fan_in-nesterov": dict(lr=0.02, mirror="power", degree=3.0, beta=0.05,
                                       update="dual", beta_scaling="fan_in", momentum=0.8,
                                       nesterov=True, weight_decay=0.01),
    "euclidean-dampened-maximize": dict(lr=0.1, momentum=0.5, dampening=0.2, maximize=True),
}


def _program() -> str | None:
    path = os.environ.get("MIRRORFLOW_TRAJECTORY_PROGRAM") or os.path.join(
        ROOT, "build", "tests", "programs", "optimizer_trajectory")
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


def _formula(n: int, a: float, b: float, cosine: bool) -> torch.Tensor:
    x = torch.arange(n, dtype=torch.float64).mul(a).add(b)
    return x.cos() if cosine else x.sin().mul(0.5)


def _python_trajectory(device: str, dtype: torch.dtype, steps: int, options: dict):
    params = []
    for k, shape in enumerate(SHAPES):
        n = int(torch.Size(shape).numel())
        params.append(_formula(n, 0.37, 1.3 * k, False).reshape(shape).to(device, dtype)
                      .requires_grad_())
    opt = mirrorflow.MirrorDescent(params, **options)
    for t in range(steps):
        for k, p in enumerate(params):
            p.grad = _formula(p.numel(), 0.11, 0.7 * t + 0.5 * k, True).reshape(p.shape).to(
                device, dtype)
        opt.step()
    return [p.detach().cpu() for p in params]


def _cpp_trajectory(program: str, device: str, dtype_name: str, steps: int, options: dict,
                    out: str):
    args = [program, out, device, dtype_name, str(steps)]
    args += [f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in options.items()]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return torch.load(out)


DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() "
        "is False)")),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype_name", ["float64", "float32", "bfloat16"])
@pytest.mark.parametrize("config", CONFIGS)
def test_cpp_and_python_optimizers_agree_bit_for_bit(device, dtype_name, config, tmp_path):
    program = _program()
    if program is None:
        pytest.skip("optimizer_trajectory not built (configure with -DMIRRORFLOW_BUILD_TESTS=ON "
                    "or set MIRRORFLOW_TRAJECTORY_PROGRAM)")
    options = CONFIGS[config]
    cpp = _cpp_trajectory(program, device, dtype_name, 4, options, str(tmp_path / "cpp.pt"))
    python = _python_trajectory(device, DTYPES[dtype_name], 4, options)
    assert len(cpp) == len(python)
    for a, b in zip(cpp, python):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a, b)
    # and the optimizer did move the parameters
    assert not torch.equal(python[2], _formula(70001, 0.37, 2.6, False).to(DTYPES[dtype_name]))
