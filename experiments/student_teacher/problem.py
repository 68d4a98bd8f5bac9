"""The student–teacher problem of MATH.md §5: data, teacher, students.

Inputs lie on the unit circle in ℝ²; labels are the signs of a bias-free ReLU
teacher. Students are bias-free ReLU networks in the mean-field
parameterisation, D-homogeneous in their parameters (D = depth):

* two layers:   f(x) = (1/m) Σⱼ aⱼ relu(wⱼ·x),  parameters [W (m, 2), a (m,)];
* three layers: f(x) = (1/m) Σₖ aₖ relu(Σⱼ Vₖⱼ relu(wⱼ·x)),  [W, V (m, m), a], with
  V initialised at 1/√m the scale of W and a, so that every layer's gradient is
  O(1/m) and one learning rate m·η suits all three.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

DTYPE = torch.float64


def network(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Outputs (n,) of the mean-field ReLU network with weights ``params`` on inputs (n, 2)."""
    h = torch.relu(x @ params[0].T)
    for weight in params[1:-1]:
        h = torch.relu(h @ weight.T)
    return h @ params[-1] / params[-1].shape[0]


@dataclass
class Problem:
    """A fixed data set and its teacher."""

    x: torch.Tensor  # (n, 2) on the unit circle
    y: torch.Tensor  # (n,) in {−1, +1}
    teacher: list[torch.Tensor]  # [W (k, 2), a (k,)], unit-norm neurons

    @property
    def teacher_neurons(self) -> int:
        return self.teacher[0].shape[0]


def make_teacher(neurons: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A two-layer teacher: k unit vectors at random angles at least 2π/(3k) apart, output
    weights alternating +1, −1 in angular order."""
    k = neurons
    while True:
        angles = torch.sort(torch.rand(k, generator=generator, dtype=DTYPE) * 2 * math.pi).values
        gaps = torch.diff(torch.cat([angles, angles[:1] + 2 * math.pi]))
        if k == 1 or float(gaps.min()) > 2 * math.pi / (3 * k):
            break
    w = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    a = torch.tensor([1.0 if j % 2 == 0 else -1.0 for j in range(k)], dtype=DTYPE)
    return [w, a]


def make_problem(samples: int, teacher_neurons: int, gap: float, seed: int) -> Problem:
    """``samples`` inputs uniform on the unit circle whose teacher output has |f| ≥ ``gap``·max|f|
    (points too close to the teacher's decision boundary are redrawn), labelled sign(teacher)."""
    if samples < 2 or teacher_neurons < 2 or not 0 <= gap < 1:
        raise ValueError(
            "make_problem: need samples >= 2, teacher_neurons >= 2 (one neuron labels every "
            f"input alike) and gap in [0, 1), got {samples}, {teacher_neurons}, {gap}"
        )
    g = torch.Generator().manual_seed(seed)
    for _ in range(100):
        teacher = make_teacher(teacher_neurons, g)
        grid = torch.linspace(0, 2 * math.pi, 2049, dtype=DTYPE)
        peak = float(network(teacher, torch.stack([grid.cos(), grid.sin()], 1)).abs().max())
        kept: list[torch.Tensor] = []
        labels: list[torch.Tensor] = []
        for _ in range(100):
            t = torch.rand(4 * samples, generator=g, dtype=DTYPE) * 2 * math.pi
            x = torch.stack([torch.cos(t), torch.sin(t)], dim=1)
            f = network(teacher, x)
            # f = 0 where every teacher neuron is off: such inputs have no label
            keep = (f.abs() >= gap * peak) & (f != 0)
            kept.append(x[keep])
            labels.append(torch.sign(f[keep]))
            if sum(len(k) for k in kept) >= samples:
                break
        x, y = torch.cat(kept)[:samples], torch.cat(labels)[:samples]
        if len(y) == samples and bool((y > 0).any()) and bool((y < 0).any()):
            return Problem(x=x, y=y, teacher=teacher)
    raise ValueError(
        f"make_problem: no teacher with both labels and {samples} inputs outside the gap "
        f"{gap} found in 100 draws (seed {seed}); lower the gap"
    )


def init_student(depth: int, width: int, scale: float, seed: int) -> list[torch.Tensor]:
    """Mean-field initialisation: W and a i.i.d. N(0, scale²), V i.i.d. N(0, scale²/m);
    float64 leaf tensors."""
    if depth not in (2, 3):
        raise ValueError(f"init_student: depth must be 2 or 3, got {depth}")
    if width < 1 or not scale > 0:
        raise ValueError(f"init_student: need width >= 1 and scale > 0, got {width}, {scale}")
    g = torch.Generator().manual_seed(seed)
    shapes = [(width, 2)] + [(width, width)] * (depth - 2) + [(width,)]
    params = []
    for i, s in enumerate(shapes):
        std = scale / math.sqrt(width) if 0 < i < depth - 1 else scale
        params.append((std * torch.randn(s, generator=g, dtype=DTYPE)).requires_grad_(True))
    return params
