"""The shared expected-values file: it is what the float64 reference computes,
and the Python optimizer reproduces it (the C++ suite checks the same file)."""

from __future__ import annotations

import pytest
import torch

import mirrorflow
from expected_steps import CASES, DATA_FILE, SHAPE, parse, render

FILE_CASES = parse(DATA_FILE.read_text())


def test_file_is_the_reference_output():
    # Compared as numbers: sin/cos of the inputs may differ in the last bit
    # between CPUs, the reference steps must not differ beyond rounding.
    fresh = parse(render())
    assert [c["name"] for c in FILE_CASES] == [c["name"] for c in fresh] == list(CASES), (
        "tests/data/expected_steps.txt is stale: run tests/python/expected_steps.py"
    )
    for stored, computed in zip(FILE_CASES, fresh):
        assert stored["options"] == computed["options"]
        for key in ("grads", "expected"):
            for a, b in zip(stored[key], computed[key]):
                assert torch.allclose(torch.tensor(a), torch.tensor(b), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("case", FILE_CASES, ids=[c["name"] for c in FILE_CASES])
def test_python_optimizer_reproduces_expected_steps(case):
    o = case["options"]
    p = torch.tensor(case["theta0"], dtype=torch.float64).reshape(SHAPE).requires_grad_()
    opt = mirrorflow.MirrorDescent(
        [p], lr=float(o["lr"]), mirror=o["mirror"], beta=float(o["beta"]),
        degree=float(o["degree"]), update=o["update"], normalize=o["normalize"] == "1",
        beta_scaling=o["beta_scaling"], momentum=float(o["momentum"]),
        dampening=float(o["dampening"]), nesterov=o["nesterov"] == "1",
        weight_decay=float(o["weight_decay"]), maximize=o["maximize"] == "1")
    for grad, expected in zip(case["grads"], case["expected"]):
        p.grad = torch.tensor(grad, dtype=torch.float64).reshape(SHAPE)
        opt.step()
        want = torch.tensor(expected, dtype=torch.float64).reshape(SHAPE)
        assert torch.allclose(p.detach(), want, rtol=1e-12, atol=1e-14)
