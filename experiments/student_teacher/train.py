"""One student–teacher run: mirror descent with time rescaling, tracked diagnostics."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

import torch

import mirrorflow
from mirrorflow import diagnostics
from mirrorflow.maps import horizon_degree

from .problem import Problem, init_student, make_problem, network

DEGREES = (1.0, 2.0, 3.0)  # the margins γ₁, γ₂, γ₃ tracked in every run


LOSSES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "exponential": lambda q: torch.exp(-q).mean(),
    "logistic": lambda q: torch.nn.functional.softplus(-q).mean(),
}


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one run (its JSON record repeats it)."""

    mirror: str
    beta: float
    degree: float = 3.0  # L of `power`
    samples: int = 64
    teacher_neurons: int = 4
    gap: float = 0.1  # inputs with |teacher| < gap·max|teacher| are redrawn
    depth: int = 2
    width: int = 50
    init_scale: float = 1.0
    lr: float = 0.05  # η; the optimizer gets m·η (mean-field time)
    steps: int = 4000
    loss: str = "exponential"
    epsilon: float = 1e-2  # time rescaling: switch when the loss is below ε (MATH.md §4)
    c_max: float = 1e4  # time rescaling: at most c_max·η
    update: str = "dual"
    threshold: float = 0.05  # τ of the active-neuron count
    records: int = 60
    seed: int = 0  # of the data, the teacher and the student's initialisation

    def __post_init__(self) -> None:
        horizon_degree(self.mirror, self.degree)  # ValueError for an unknown map
        rules = [
            ("depth", self.depth in (2, 3), "2 or 3"),
            ("width", self.width >= 1, ">= 1"),
            ("steps", self.steps >= 1, ">= 1"),
            ("records", self.records >= 2, ">= 2"),
            ("lr", self.lr > 0, "> 0"),
            ("init_scale", self.init_scale > 0, "> 0"),
            ("loss", self.loss in LOSSES, f"one of {sorted(LOSSES)}"),
            ("update", self.update in ("dual", "metric"), "'dual' or 'metric'"),
            ("threshold", 0 <= self.threshold < 1, "in [0, 1)"),
        ]
        for name, ok, rule in rules:
            if not ok:
                raise ValueError(f"RunConfig: {name} must be {rule}, got {getattr(self, name)!r}")

    def key(self) -> str:
        """A file-name-safe identifier: the main settings and a hash of all of them."""
        digest = hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:8]
        parts = [f"d{self.depth}", self.mirror, f"beta{self.beta:g}"]
        if self.mirror == "power":
            parts.append(f"L{self.degree:g}")
        parts += [f"s{self.seed}", digest]
        return "_".join(parts)

    def problem(self) -> Problem:
        return make_problem(self.samples, self.teacher_neurons, self.gap, self.seed)

    @property
    def own_degree(self) -> float:
        return horizon_degree(self.mirror, self.degree)


def neuron_layers(params: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(incoming, outgoing) weights of every hidden layer."""
    return [(params[i], params[i + 1]) for i in range(len(params) - 1)]


def measure(problem: Problem, params: list[torch.Tensor], config: RunConfig) -> dict[str, Any]:
    """The tracked quantities at the current parameters (MATH.md §3)."""
    with torch.no_grad():
        out = network(params, problem.x)
    q = diagnostics.sample_margins(out, problem.y)
    depth = len(params)
    record: dict[str, Any] = {
        "loss": float(LOSSES[config.loss](q)),
        "min_margin": float(q.min()),
    }
    for L in DEGREES:
        record[f"gamma{L:g}"] = diagnostics.horizon_margin(out, problem.y, params, L, depth)
    record["soft_gamma"] = diagnostics.horizon_margin(
        out, problem.y, params, config.own_degree, depth, soft=True
    )
    record["active"] = [
        diagnostics.active_neurons(w, a, config.threshold) for w, a in neuron_layers(params)
    ]
    record["neuron_balance"] = [
        diagnostics.neuron_balance(w, a, config.mirror, config.beta, config.degree).tolist()
        for w, a in neuron_layers(params)
    ]
    return record


def _record_steps(steps: int, records: int) -> list[int]:
    """Roughly log-spaced steps (the late phase is slow; time rescaling makes it reachable)."""
    grid = {0, steps}
    logs = torch.linspace(0, math.log(steps), records).tolist()
    grid.update(int(round(math.exp(t))) for t in logs)
    return sorted(s for s in grid if 0 <= s <= steps)


def train(
    problem: Problem, config: RunConfig, progress: Optional[Callable[[int], None]] = None
) -> dict[str, Any]:
    """Trains one student; returns the run's record (config, thresholds, history, final)."""
    params = init_student(config.depth, config.width, config.init_scale, config.seed)
    opt = mirrorflow.MirrorDescent(
        params, lr=config.lr * config.width, mirror=config.mirror, beta=config.beta,
        degree=config.degree, update=config.update,
    )
    rescaling = mirrorflow.TimeRescaling(opt, epsilon=config.epsilon, c_max=config.c_max)
    loss_fn = LOSSES[config.loss]
    when = set(_record_steps(config.steps, config.records))
    initial_balance = None
    history: list[dict[str, Any]] = []
    for step in range(config.steps + 1):
        if step in when:
            rec = measure(problem, params, config)
            balance = rec.pop("neuron_balance")
            if initial_balance is None:
                initial_balance = balance
            rec["balance_drift"] = max(
                max(abs(b - b0) for b, b0 in zip(layer, layer0))
                for layer, layer0 in zip(balance, initial_balance)
            )
            rec["step"] = step
            rec["time"] = config.lr * rescaling.rescaled_steps
            history.append(rec)
            if not math.isfinite(rec["loss"]):
                break
        if step == config.steps:
            break
        opt.zero_grad(set_to_none=False)
        q = problem.y * network(params, problem.x)
        loss = loss_fn(q)
        loss.backward()
        rescaling.step(float(loss.detach()), bool((q > 0).all()))
        opt.step()
        if progress is not None and (step + 1) % 100 == 0:
            progress(100)
    if progress is not None:
        progress(config.steps % 100)
    return {
        "config": asdict(config),
        "time_rescaling": rescaling.thresholds(),
        "teacher_neurons": problem.teacher_neurons,
        "history": history,
        "final": history[-1],
        "params": [p.detach().tolist() for p in params],
    }
