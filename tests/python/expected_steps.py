"""Expected values shared by the Python and the C++ optimizer tests.

``tests/data/expected_steps.txt`` holds, for a set of configurations, a
starting tensor, three gradients and the parameters after each of the three
steps, as computed by the float64 reference (reference.py). The pytest suite
checks that the file is what the reference computes and that
``mirrorflow.MirrorDescent`` reproduces it; the GoogleTest suite checks
``mirrorflow::MirrorDescent`` against the same file.

Regenerate with:  .venv/bin/python tests/python/expected_steps.py
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from reference import Options, TensorState, reference_step

DATA_FILE = Path(__file__).resolve().parents[1] / "data" / "expected_steps.txt"
SHAPE = (3, 4)  # fan_in 4
STEPS = 3

CASES: dict[str, dict] = {
    "euclidean_plain": dict(mirror="euclidean"),
    "euclidean_nesterov": dict(mirror="euclidean", momentum=0.9, nesterov=True,
                               weight_decay=0.01),
    "hyperbolic_metric": dict(mirror="hyperbolic", beta=0.1),
    "hyperbolic_dual_momentum": dict(mirror="hyperbolic", beta=0.05, update="dual",
                                     momentum=0.8, dampening=0.2),
    "hyperbolic_metric_normalized_fanin": dict(mirror="hyperbolic", beta=0.3, normalize=True,
                                               beta_scaling="fan_in"),
    "hyperbolic_dual_normalized_maximize": dict(mirror="hyperbolic", beta=0.2, update="dual",
                                                normalize=True, maximize=True,
                                                weight_decay=0.05),
    "power3_metric": dict(mirror="power", degree=3.0, beta=0.1),
    "power3_dual": dict(mirror="power", degree=3.0, beta=0.1, update="dual"),
    "power3_dual_beta0": dict(mirror="power", degree=3.0, beta=0.0, update="dual"),
    "power1.5_dual_normalized": dict(mirror="power", degree=1.5, beta=0.2, update="dual",
                                     normalize=True, momentum=0.5),
    "power4_metric_fanin_momentum": dict(mirror="power", degree=4.0, beta=0.5,
                                         beta_scaling="fan_in", momentum=0.9),
    "power2_dual": dict(mirror="power", degree=2.0, beta=0.7, update="dual"),
}

OPTION_KEYS = ("mirror", "beta", "degree", "update", "normalize", "beta_scaling", "lr",
               "momentum", "dampening", "nesterov", "weight_decay", "maximize")


def case_options(config: dict) -> Options:
    return Options(lr=0.05, **config)


def case_inputs(index: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Deterministic inputs of case ``index`` (closed-form, no RNG)."""
    n = math.prod(SHAPE)
    k = torch.arange(n, dtype=torch.float64)
    theta = (0.6 * torch.sin(1.3 * k + 0.7 * index)).reshape(SHAPE)
    grads = [(torch.cos(0.9 * k * (s + 1) + 0.3 * index) + 0.1 * s).reshape(SHAPE)
             for s in range(STEPS)]
    return theta, grads


def reference_trajectory(opts: Options, theta: torch.Tensor,
                         grads: list[torch.Tensor]) -> list[torch.Tensor]:
    state = TensorState()
    out = []
    for g in grads:
        theta = reference_step(theta, g, state, opts)
        out.append(theta)
    return out


def _fmt(t: torch.Tensor) -> str:
    return " ".join(repr(float(v)) for v in t.reshape(-1).tolist())


def render() -> str:
    lines = ["# mirrorflow expected optimizer steps (float64 reference, tests/python/expected_steps.py)",
             f"# shape {SHAPE[0]} {SHAPE[1]}; per case: options, theta0, then grad/expected per step"]
    for index, (name, config) in enumerate(CASES.items()):
        opts = case_options(config)
        theta, grads = case_inputs(index)
        expected = reference_trajectory(opts, theta, grads)
        fields = []
        for key in OPTION_KEYS:
            value = getattr(opts, key)
            if isinstance(value, bool):
                value = int(value)
            fields.append(f"{key}={value}")
        lines.append(f"case {name} " + " ".join(fields))
        lines.append("theta0 " + _fmt(theta))
        for g, e in zip(grads, expected):
            lines.append("grad " + _fmt(g))
            lines.append("expected " + _fmt(e))
        lines.append("end")
    return "\n".join(lines) + "\n"


def parse(text: str) -> list[dict]:
    cases, current = [], None
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, rest = line.partition(" ")
        if head == "case":
            name, *fields = rest.split()
            current = {"name": name, "options": dict(f.split("=", 1) for f in fields),
                       "grads": [], "expected": []}
        elif head == "theta0":
            current["theta0"] = [float(v) for v in rest.split()]
        elif head == "grad":
            current["grads"].append([float(v) for v in rest.split()])
        elif head == "expected":
            current["expected"].append([float(v) for v in rest.split()])
        elif head == "end":
            cases.append(current)
    return cases


if __name__ == "__main__":
    DATA_FILE.parent.mkdir(parents=True, exist_ok=True)
    DATA_FILE.write_text(render())
    print(f"wrote {DATA_FILE}")
