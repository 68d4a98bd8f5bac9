"""Time rescaling: larger steps once the loss is small (MATH.md §4)."""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch.optim import Optimizer

__all__ = ["TimeRescaling"]


def _positive(name: str, value: Any, minimum: float, strict: bool) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > minimum if strict else value >= minimum)
    if not ok:
        rule = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise ValueError(f"TimeRescaling: {name} must be a finite number {rule}, got {value!r}")
    return float(value)


_STATE_KEYS = ("epsilon", "c_max", "base_lrs", "active", "factor", "rescaled_steps")


def _base_lr(group: dict[str, Any], index: int) -> float:
    lr = group["lr"]
    value = float(lr) if isinstance(lr, torch.Tensor) and lr.numel() == 1 else lr
    return _positive(f"the learning rate of param group {index}", value, 0.0, strict=False)


class TimeRescaling:
    r"""The learning-rate rule of MATH.md §4, for any ``torch.optim.Optimizer``.

    Every parameter group keeps its learning rate η₀ (the one it has when this
    object is made) until the data is classified and the loss is below
    ``epsilon`` (ε); from then on it uses ηₜ = η₀·min(c_max, ε/L(θₜ)). The late
    phase of training, whose limit the implicit-bias theory describes, is thus
    reached in far fewer steps. Report ε and c_max (:meth:`thresholds`) with
    results.

    Unlike ``torch.optim.lr_scheduler`` objects, :meth:`step` takes the loss at
    the current parameters and is called *before* ``optimizer.step()``, so that
    the step from θₜ uses ηₜ::

        rescaling = TimeRescaling(opt, epsilon=1e-3, c_max=1e4)
        for _ in range(steps):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            rescaling.step(loss.item(), classified=bool((margins > 0).all()))
            opt.step()

    :attr:`rescaled_steps` is Σₜ ηₜ/η₀, the elapsed time of the mirror flow in
    units of η₀ (plain steps before the switch count 1 each).
    """

    def __init__(self, optimizer: Optimizer, epsilon: float, c_max: float) -> None:
        if not isinstance(optimizer, Optimizer):
            raise ValueError(
                "TimeRescaling: optimizer must be a torch.optim.Optimizer, got "
                f"{type(optimizer).__name__}"
            )
        self.epsilon = _positive("epsilon", epsilon, 0.0, strict=True)
        self.c_max = _positive("c_max", c_max, 1.0, strict=False)
        self.optimizer = optimizer
        self.base_lrs = [_base_lr(g, i) for i, g in enumerate(optimizer.param_groups)]
        self.active = False
        self.factor = 1.0
        self.rescaled_steps = 0.0

    def thresholds(self) -> dict[str, float]:
        """ε and c_max, for reporting with results."""
        return {"epsilon": self.epsilon, "c_max": self.c_max}

    def step(self, loss: float, classified: bool) -> float:
        """Sets every group's learning rate for the step from the current θ; returns ηₜ/η₀.

        ``loss`` is L(θₜ) (a finite number ≥ 0), ``classified`` whether every
        training sample has a positive margin at θₜ.
        """
        if isinstance(loss, torch.Tensor):
            loss = float(loss)
        loss = _positive("loss", loss, 0.0, strict=False)
        if not isinstance(classified, bool):
            raise ValueError(f"TimeRescaling: classified must be True or False, got {classified!r}")
        if not self.active and classified and loss < self.epsilon:
            self.active = True
        if self.active:
            self.factor = self.c_max if loss == 0 else min(self.c_max, self.epsilon / loss)
        else:
            self.factor = 1.0
        groups = self.optimizer.param_groups
        # A group added to the optimizer since keeps the learning rate it came with as η₀.
        self.base_lrs += [_base_lr(g, i) for i, g in enumerate(groups) if i >= len(self.base_lrs)]
        for group, base in zip(groups, self.base_lrs):
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(base * self.factor)
            else:
                group["lr"] = base * self.factor
        self.rescaled_steps += self.factor
        return self.factor

    def state_dict(self) -> dict[str, Any]:
        """What :meth:`load_state_dict` needs to continue exactly (not the optimizer's state)."""
        return {
            "epsilon": self.epsilon,
            "c_max": self.c_max,
            "base_lrs": list(self.base_lrs),
            "active": self.active,
            "factor": self.factor,
            "rescaled_steps": self.rescaled_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a :meth:`state_dict`; checks all of it before changing anything
        (ValueError naming the entry)."""
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise ValueError(f"TimeRescaling: state lacks {', '.join(missing)}")
        base_lrs = list(state["base_lrs"])
        if len(base_lrs) != len(self.optimizer.param_groups):
            raise ValueError(
                f"TimeRescaling: state has {len(base_lrs)} base learning rates, the optimizer "
                f"{len(self.optimizer.param_groups)} parameter groups"
            )
        epsilon = _positive("epsilon", state["epsilon"], 0.0, strict=True)
        c_max = _positive("c_max", state["c_max"], 1.0, strict=False)
        base_lrs = [_positive(f"base_lrs[{i}]", b, 0.0, strict=False)
                    for i, b in enumerate(base_lrs)]
        if not isinstance(state["active"], bool):
            raise ValueError(f"TimeRescaling: active must be True or False, got {state['active']!r}")
        factor = _positive("factor", state["factor"], 0.0, strict=True)
        if factor > c_max:
            raise ValueError(f"TimeRescaling: factor must be <= c_max = {c_max:g}, got {factor!r}")
        rescaled_steps = _positive("rescaled_steps", state["rescaled_steps"], 0.0, strict=False)
        self.epsilon, self.c_max, self.base_lrs = epsilon, c_max, base_lrs
        self.active, self.factor, self.rescaled_steps = state["active"], factor, rescaled_steps
