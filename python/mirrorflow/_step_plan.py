"""What :class:`mirrorflow.MirrorDescent` keeps between steps for one parameter
group: its parameters sorted by (device, dtype) and their state tensors, in the
lists the operator takes. A step then builds no per-parameter lookups, only
the gradient lists and the validity of the cached means (their parameter's
version counter), which keeps the host's share of a GPU step small.

A plan is rebuilt when the group's parameters, which of them have a gradient,
their device or dtype, ``momentum != 0`` or ``normalize`` change, when the
optimizer's ``state`` is replaced (``load_state_dict``), and is dropped by
``__setstate__``. State tensors are updated in place by the operator, so the
plan and ``optimizer.state`` share them.
"""

from __future__ import annotations

from typing import Any, Optional

import torch


class Bucket:
    """The parameters of one (device, dtype) and their state, in operator order."""

    __slots__ = ("device", "dtype", "indices", "params", "buffers", "steps", "means",
                 "versions")

    def __init__(self, device: torch.device, dtype: torch.dtype) -> None:
        self.device = device
        self.dtype = dtype
        self.indices: list[int] = []  # positions in the group's params
        self.params: list[torch.Tensor] = []
        self.buffers: list[torch.Tensor] = []  # momentum buffers (momentum != 0)
        self.steps: list[torch.Tensor] = []  # float32 step counters (momentum != 0)
        self.means: list[torch.Tensor] = []  # float64 means of 1/φ'' (normalize)
        self.versions: list[int] = []  # the parameter version each mean belongs to

    def valid_means(self) -> list[bool]:
        return [v == p._version for p, v in zip(self.params, self.versions)]

    def after_step(self) -> None:
        if self.means:
            self.versions = [p._version for p in self.params]


class GroupPlan:
    __slots__ = ("group", "state", "params", "has_grad", "has_momentum", "normalize",
                 "buckets", "recorded")

    def matches(self, group: dict[str, Any], state: Any, grads: list, has_momentum: bool,
                normalize: bool) -> bool:
        params = group["params"]
        return (self.group is group and self.state is state
                and self.has_momentum == has_momentum and self.normalize == normalize
                and len(self.params) == len(params)
                and all(a is b for a, b in zip(self.params, params))
                and self.has_grad == [g is not None for g in grads]
                and all(b.params[0].device == b.device and b.params[0].dtype == b.dtype
                        for b in self.buckets))

    def record(self, state: Any) -> None:
        """Puts the state tensors a first step created into ``optimizer.state``."""
        if self.has_momentum and not self.recorded:
            for bucket in self.buckets:
                for p, buf, step in zip(bucket.params, bucket.buffers, bucket.steps):
                    entry = state[p]
                    entry["momentum_buffer"] = buf
                    entry["step"] = step
        self.recorded = True

    def cached_means(self) -> dict[int, tuple[torch.Tensor, int]]:
        return {id(p): (m, v) for b in self.buckets
                for p, m, v in zip(b.params, b.means, b.versions)}

    def invalidate_means(self) -> None:
        for bucket in self.buckets:
            bucket.versions = [-1] * len(bucket.versions)


def build_plan(group: dict[str, Any], state: Any, grads: list, has_momentum: bool,
               normalize: bool, old_means: dict[int, tuple[torch.Tensor, int]]) -> GroupPlan:
    """The plan of `group`; existing state is reused, missing state created."""
    plan = GroupPlan()
    plan.group = group
    plan.state = state
    plan.params = list(group["params"])
    plan.has_grad = [g is not None for g in grads]
    plan.has_momentum = has_momentum
    plan.normalize = normalize
    plan.recorded = False
    by_key: dict[tuple[torch.device, torch.dtype], Bucket] = {}
    for i, (p, g) in enumerate(zip(plan.params, grads)):
        if g is None:
            continue
        bucket = by_key.setdefault((p.device, p.dtype), Bucket(p.device, p.dtype))
        bucket.indices.append(i)
        bucket.params.append(p)
        entry = state[p] if p in state else {}
        if has_momentum:
            buf = entry.get("momentum_buffer")
            if buf is None:
                buf = torch.zeros_like(p, memory_format=torch.preserve_format)
            bucket.buffers.append(buf)
            step = entry.get("step")
            if step is None:
                step = torch.zeros((), dtype=torch.float32, device=p.device)
            elif step.device != p.device or step.dtype != torch.float32:
                step = step.to(device=p.device, dtype=torch.float32)
            bucket.steps.append(step)
        if normalize:
            mean, version = old_means.get(id(p), (None, -1))
            if mean is None or mean.device != p.device:
                mean, version = torch.zeros((), dtype=torch.float64, device=p.device), -1
            bucket.means.append(mean)
            bucket.versions.append(version)
    plan.buckets = list(by_key.values())
    return plan


def metric_mean(plans: dict[int, GroupPlan], p: torch.Tensor) -> Optional[torch.Tensor]:
    """The cached mean of 1/φ'' of `p` (None when there is none)."""
    for plan in plans.values():
        for bucket in plan.buckets:
            for q, mean in zip(bucket.params, bucket.means):
                if q is p:
                    return mean
    return None
