"""What :class:`mirrorflow.MirrorDescent` keeps between steps for one parameter
group: its parameters sorted by (device, dtype) and their state tensors, in the
lists the operator takes. A step then builds no per-parameter lookups, only
the gradient lists and the validity of the cached means (their parameter's
version counter), which keeps the host's share of a GPU step small.

A plan is rebuilt when the group's parameters, which of them have a gradient,
their device or dtype, ``momentum != 0`` or ``normalize`` change, when the
optimizer's ``state`` is replaced (``load_state_dict``) or edited by its user
(an entry deleted, cleared or given another tensor: :class:`State` counts
those edits), and is dropped by ``__setstate__``. State tensors are updated in
place by the operator, so the plan and ``optimizer.state`` share them. Its
cached means are dropped when the map they are means of (mirror, β, degree,
beta_scaling) changes.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Optional

import torch

# Edits made by users to any optimizer's state (not by the plans, which write
# through dict's own methods): a plan built before the last edit is rebuilt.
_edits = [0]


def _edited() -> None:
    _edits[0] += 1


class _CountsEdits:
    """The removals of a dict, each counted as an edit."""

    def __delitem__(self, key) -> None:
        _edited()
        super().__delitem__(key)

    def clear(self) -> None:
        _edited()
        super().clear()

    def pop(self, *args):
        _edited()
        return super().pop(*args)

    def popitem(self):
        _edited()
        return super().popitem()


class StateEntry(_CountsEdits, dict):
    """One parameter's state, a dict that counts the edits made to it."""

    def __setitem__(self, key, value) -> None:
        _edited()
        super().__setitem__(key, value)

    def __ior__(self, other):
        _edited()
        return super().__ior__(other)

    def setdefault(self, key, default=None):
        if key not in self:
            _edited()
        return super().setdefault(key, default)

    def update(self, *args, **kwargs) -> None:
        _edited()
        super().update(*args, **kwargs)


class State(_CountsEdits, defaultdict):
    """``optimizer.state``: a ``defaultdict(dict)`` whose entries are
    :class:`StateEntry` and whose edits are counted, like theirs."""

    def __init__(self, items: Any = ()) -> None:
        super().__init__(StateEntry)
        for key, value in dict(items).items():
            dict.__setitem__(self, key, StateEntry(value))

    def __reduce__(self):
        return (type(self), (), None, None, iter(self.items()))

    def __missing__(self, key):
        entry = StateEntry()  # an empty entry changes nothing a plan holds
        dict.__setitem__(self, key, entry)
        return entry

    def __setitem__(self, key, value) -> None:
        _edited()
        super().__setitem__(key, value if isinstance(value, StateEntry) else StateEntry(value))

    def __ior__(self, other):
        self.update(other)
        return self

    def setdefault(self, key, default=None):
        if key not in self:
            self[key] = {} if default is None else default
        return self[key]

    def update(self, *args, **kwargs) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value


def map_key(group: dict[str, Any]) -> tuple:
    """What a cached mean of 1/φ'' is the mean of, besides the values."""
    return (group["mirror"], float(group["beta"]), float(group["degree"]), group["beta_scaling"])


class Bucket:
    """The parameters of one (device, dtype) and their state, in operator order."""

    __slots__ = ("device", "dtype", "indices", "params", "buffers", "steps", "means",
                 "versions", "checked")

    def __init__(self, device: torch.device, dtype: torch.dtype) -> None:
        self.device = device
        self.dtype = dtype
        self.indices: list[int] = []  # positions in the group's params
        self.params: list[torch.Tensor] = []
        self.buffers: list[torch.Tensor] = []  # momentum buffers (momentum != 0)
        self.steps: list[torch.Tensor] = []  # float32 step counters (momentum != 0)
        self.means: list[torch.Tensor] = []  # float64 means of 1/φ'' (normalize)
        self.versions: list[int] = []  # the parameter version each mean belongs to
        self.checked = False  # whether a step checked (and used) its state tensors

    def valid_means(self) -> list[bool]:
        return [v == p._version for p, v in zip(self.params, self.versions)]

    def after_step(self) -> None:
        self.checked = True
        if self.means:
            self.versions = [p._version for p in self.params]


class GroupPlan:
    __slots__ = ("group", "state", "params", "has_grad", "has_momentum", "normalize",
                 "buckets", "recorded", "edits", "means_map")

    def matches(self, group: dict[str, Any], state: Any, grads: list, has_momentum: bool,
                normalize: bool) -> bool:
        params = group["params"]
        return (self.group is group and self.state is state and self.edits == _edits[0]
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
                    # dict's own __setitem__: the plan's writes are not user edits
                    dict.__setitem__(entry, "momentum_buffer", buf)
                    dict.__setitem__(entry, "step", step)
        self.recorded = True

    def cached_means(self) -> dict[int, tuple[torch.Tensor, int, torch.dtype]]:
        """Each parameter's mean, the version it belongs to and the dtype of the
        values it is the mean of."""
        return {id(p): (m, v, b.dtype) for b in self.buckets
                for p, m, v in zip(b.params, b.means, b.versions)}

    def invalidate_means(self) -> None:
        for bucket in self.buckets:
            bucket.versions = [-1] * len(bucket.versions)


def build_plan(group: dict[str, Any], state: Any, grads: list, has_momentum: bool,
               normalize: bool,
               old_means: dict[int, tuple[torch.Tensor, int, torch.dtype]]) -> GroupPlan:
    """The plan of `group`; existing state is reused, missing state created."""
    plan = GroupPlan()
    plan.group = group
    plan.state = state
    plan.params = list(group["params"])
    plan.has_grad = [g is not None for g in grads]
    plan.has_momentum = has_momentum
    plan.normalize = normalize
    plan.recorded = False
    plan.edits = _edits[0]
    plan.means_map = map_key(group)
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
            if step is None:  # a buffer without a count (SGD's state) is used as it is
                step = torch.full((), 0.0 if "momentum_buffer" not in entry else 1.0,
                                  dtype=torch.float32, device=p.device)
            elif not isinstance(step, torch.Tensor):  # a number (load_state_dict checked it)
                step = torch.tensor(float(step), dtype=torch.float32, device=p.device)
            elif step.device != p.device or step.dtype != torch.float32:
                step = step.to(device=p.device, dtype=torch.float32)
            bucket.steps.append(step)
        if normalize:
            # (a parameter given another dtype or device through .data, which moves
            # no version counter, keeps no mean)
            mean, version, dtype = old_means.get(id(p), (None, -1, None))
            if mean is None or mean.device != p.device or dtype != p.dtype:
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
