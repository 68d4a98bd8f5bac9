"""``mirrorflow.MirrorDescent``: mirror descent as a ``torch.optim.Optimizer``."""

from __future__ import annotations

import numbers
import operator
import re
from collections.abc import Callable, Iterable
from typing import Any, Optional, Union

import torch
from torch.optim import Optimizer

from ._step_plan import GroupPlan, State, build_plan, map_key, metric_mean

__all__ = ["MirrorDescent"]

_STEP = torch.ops.mirrorflow.mirror_descent_step_.default
_CHECK = torch.ops.mirrorflow.check_step_arguments.default
_CHECK_CALLS = torch.ops.mirrorflow.check_step_calls.default

_FLOAT_OPTIONS = ("beta", "degree", "momentum", "dampening", "weight_decay")
_BOOL_OPTIONS = ("normalize", "nesterov", "maximize")
_STR_OPTIONS = ("mirror", "update", "beta_scaling")
_OPTIONS = ("lr",) + _FLOAT_OPTIONS + _BOOL_OPTIONS + _STR_OPTIONS


_OPTION_VALUES = operator.itemgetter(*_OPTIONS)
# The first tensor an operator's message names ("grads[3]"), to say which of the
# group's parameters it is.
_INDEXED = re.compile(r"\b(?:params|grads|momentum_buffers|steps|metric_means)\[(\d+)\]")


def _options_key(group: dict[str, Any]) -> tuple:
    """The group's hyperparameters as checked, a tensor lr by its identity (so
    that comparing keys never reads its value on its device)."""
    key = _OPTION_VALUES(group)
    if isinstance(key[0], torch.Tensor):
        return (("tensor", id(key[0])),) + key[1:]
    return key


def _with_context(error: Exception, context: str) -> Exception:
    """`error` with `context` appended to its message (as it is, when its type
    cannot be built from one message)."""
    try:
        extended = type(error)(f"{error}\n({context})")
    except Exception:  # noqa: BLE001 - an exception type with another constructor
        return error
    return extended.with_traceback(error.__traceback__)


def _check_group(group: dict[str, Any], read_tensor_lr: bool = True) -> None:
    """Checks one parameter group's hyperparameters; raises ValueError.

    ``read_tensor_lr=False`` (in ``step()``, which may be captured in a CUDA
    graph) checks a tensor lr's shape and dtype but not its value, whose read
    would synchronise with the device.

    The rules themselves live in C++ (``mirrorflow::make_step_options``), the
    one place the operator, this class and the C++ optimizer all use; here only
    the Python types are checked before handing the values over.
    """
    for name in _STR_OPTIONS:
        if not isinstance(group[name], str):
            raise ValueError(
                f"MirrorDescent: {name} must be a string, got {group[name]!r} "
                f"of type {type(group[name]).__name__}"
            )
    for name in _BOOL_OPTIONS:
        if not isinstance(group[name], bool):
            raise ValueError(
                f"MirrorDescent: {name} must be True or False, got {group[name]!r}"
            )
    for name in _FLOAT_OPTIONS:
        value = group[name]
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"MirrorDescent: {name} must be a real number, got {value!r}")
    lr = group["lr"]
    if isinstance(lr, torch.Tensor):
        if lr.numel() != 1 or not lr.is_floating_point():
            raise ValueError(
                "MirrorDescent: a tensor lr must hold one floating-point element, got "
                f"shape {tuple(lr.shape)} and dtype {lr.dtype}"
            )
        lr_value = float(lr.detach().reshape(()).cpu()) if read_tensor_lr else 0.0
    elif isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        raise ValueError(f"MirrorDescent: lr must be a real number or a tensor, got {lr!r}")
    else:
        lr_value = float(lr)
    torch.ops.mirrorflow.check_options(
        group["mirror"],
        float(group["beta"]),
        float(group["degree"]),
        group["update"],
        group["normalize"],
        group["beta_scaling"],
        lr_value,
        float(group["momentum"]),
        float(group["dampening"]),
        group["nesterov"],
        float(group["weight_decay"]),
        group["maximize"],
    )


class MirrorDescent(Optimizer):
    r"""Mirror descent with a separable potential Φ(θ) = Σᵢ φ(θᵢ) (MATH.md §1-§2).

    With g the gradient of one parameter tensor θ (after ``maximize``, weight
    decay and momentum, in the order and with the roundings of
    ``torch.optim.SGD``), one step is

    * ``update="metric"``: θ⁺ = θ − η · M⁻¹(θ) ⊙ g with M⁻¹ = 1/φ'' (the inverse
      metric; this is the update used for the vision experiments);
    * ``update="dual"``: θ⁺ = ∇φ*(∇φ(θ) − η·g), exact mirror descent.

    Both discretise the mirror flow dθ/dt = −(∇²Φ(θ))⁻¹∇L(θ) and agree to O(η²).

    The maps (``mirror=``):

    * ``"euclidean"``: φ(x) = x²/2, plain gradient descent (L = 2);
    * ``"hyperbolic"``: φ(x) = x·asinh(x/β) − √(x²+β²) + β, β > 0; M⁻¹ = √(x²+β²),
      implicit bias towards the ℓ₁ horizon (sparse solutions, L = 1);
    * ``"power"``: φ(x) = ((x²+β²)^{L/2} − β^L)/L with L = ``degree`` > 1 and β ≥ 0;
      M⁻¹ = (x²+β²)^{2−L/2}/((L−1)x²+β²); ℓ_L horizon (dense solutions for L > 2).

    Args:
        params: parameters or parameter groups. Every group may use its own map,
            β, degree, update, ... ("one geometry per layer").
        lr: learning rate η ≥ 0 (a float, or a one-element tensor, e.g. for CUDA
            graph capture).
        mirror: ``"euclidean"``, ``"hyperbolic"`` or ``"power"``.
        beta: β of the hyperbolic (> 0) and power (≥ 0) maps. Small β relative to
            the weights' scale makes the implicit bias show early; large β makes
            the map look Euclidean near the origin.
        degree: L of the power map (> 1).
        update: ``"metric"`` or ``"dual"``. ``power`` with β = 0 and L > 2 has an
            infinite inverse metric at 0 and allows only ``"dual"``.
        normalize: divide the inverse metric of each tensor by its mean over that
            tensor, M⁻¹ₗ = (1/φ'')/meanₗ(1/φ''), so that the average element of every
            layer moves like SGD (for the dual update: learning rate η/meanₗ). The
            mean of the updated values is kept and reused at the next step, and
            recomputed when the parameter was changed outside the optimizer (its
            version counter moved: in-place ops, ``load_state_dict``, ...). Writes
            through ``p.data`` are not seen by the version counter; call
            ``invalidate_metric_means()`` after them.
        beta_scaling: ``"none"`` or ``"fan_in"`` (βₗ = β/√fan_in, fan_in =
            numel/size(0) for tensors of two or more dimensions, else 1).
        momentum, dampening, nesterov, weight_decay, maximize: as in
            ``torch.optim.SGD``; with ``mirror="euclidean"`` the optimizer equals
            ``torch.optim.SGD`` bit for bit in float32 and float64.

    Parameters are grouped by (device, dtype) and each group is updated by one call
    of ``torch.ops.mirrorflow.mirror_descent_step_``. float16 and bfloat16
    parameters are computed in float32 and rounded once. ``torch.amp.GradScaler``
    is supported without a host synchronisation: the step unscales the gradients
    and is skipped when they overflowed.

    Example::

        >>> opt = mirrorflow.MirrorDescent(model.parameters(), lr=0.1,
        ...                                mirror="hyperbolic", beta=0.01)
        >>> loss_fn(model(x), y).backward(); opt.step(); opt.zero_grad()
    """

    _step_supports_amp_scaling = True

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: Union[float, torch.Tensor] = 1e-3,
        mirror: str = "euclidean",
        beta: float = 1.0,
        degree: float = 3.0,
        update: str = "metric",
        normalize: bool = False,
        beta_scaling: str = "none",
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            mirror=mirror,
            beta=beta,
            degree=degree,
            update=update,
            normalize=normalize,
            beta_scaling=beta_scaling,
            momentum=momentum,
            dampening=dampening,
            nesterov=nesterov,
            weight_decay=weight_decay,
            maximize=maximize,
        )
        _check_group(defaults)
        self._plans: dict[int, GroupPlan] = {}  # id(group) -> what its steps reuse
        self._checked: dict[int, tuple] = {}  # id(group) -> its options as last checked
        super().__init__(params, defaults)
        self.state = State(self.state)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Adds a group after checking its hyperparameters (ValueError if invalid)."""
        merged = dict(self.defaults)
        merged.update({k: v for k, v in param_group.items() if k != "params"})
        _check_group(merged)
        super().add_param_group(param_group)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:  # a state of another optimizer or version
            for name, value in self.defaults.items():
                group.setdefault(name, value)
        self.state = State(self.state)
        self._plans = {}
        self._checked = {}

    def state_dict(self) -> dict[str, Any]:
        """As ``torch.optim.Optimizer.state_dict``, with plain dicts as entries
        (``torch.load(weights_only=True)`` reads it)."""
        state_dict = super().state_dict()
        state_dict["state"] = {k: dict(v) for k, v in state_dict["state"].items()}
        return state_dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As ``torch.optim.Optimizer.load_state_dict``, after checking the groups'
        hyperparameters (this optimizer's defaults fill in those a group lacks,
        e.g. in a state of ``torch.optim.SGD``) and the state's momentum buffers
        and step counts; raises ValueError and changes nothing when one is bad."""
        groups = []
        for i, group in enumerate(state_dict["param_groups"]):
            merged = {**self.defaults, **group}
            try:
                _check_group(merged)
            except ValueError as e:
                raise ValueError(f"load_state_dict: param group {i}: {e}") from None
            groups.append(merged)
        saved = [k for g in groups for k in g["params"]]
        current = [p for g in self.param_groups for p in g["params"]]
        params = dict(zip(saved, current))
        for key, entry in state_dict["state"].items():
            p = params.get(key)
            if p is None or not isinstance(entry, dict):
                continue  # left to torch's own checks
            buf = entry.get("momentum_buffer")
            if buf is not None and (not isinstance(buf, torch.Tensor) or buf.shape != p.shape):
                got = tuple(buf.shape) if isinstance(buf, torch.Tensor) else type(buf).__name__
                raise ValueError(
                    f"load_state_dict: the momentum_buffer of parameter {key} must be a tensor "
                    f"of the parameter's shape {tuple(p.shape)}, got {got}")
            step = entry.get("step")
            if step is not None and not (
                    (isinstance(step, torch.Tensor) and step.numel() == 1)
                    or (isinstance(step, numbers.Real) and not isinstance(step, bool))):
                raise ValueError(
                    f"load_state_dict: the step of parameter {key} must be a number or a "
                    f"one-element tensor, got {step!r}")
        super().load_state_dict({**state_dict, "param_groups": groups})

    def invalidate_metric_means(self) -> None:
        """Forgets the stored per-tensor means of the inverse metric (``normalize``);
        the next step recomputes them. Needed only after writes through ``.data``."""
        for plan in self._plans.values():
            plan.invalidate_means()

    def _metric_mean(self, p: torch.Tensor) -> Optional[torch.Tensor]:
        """The stored mean of 1/φ'' of parameter `p` (for tests and diagnostics)."""
        return metric_mean(self._plans, p)

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None) -> Optional[float]:
        """Performs one step; ``closure`` re-evaluates the model and returns the loss.

        Every group's hyperparameters, and the arguments of every call of the
        operator (one per group and (device, dtype)), are checked before any
        parameter changes: a refused step changes nothing."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if type(self.state) is not State:  # replaced by the user: count its edits too
            self.state = State(self.state)
        for i, group in enumerate(self.param_groups):
            key = _options_key(group)
            if self._checked.get(id(group)) != key:
                try:
                    _check_group(group, read_tensor_lr=False)
                except ValueError as e:
                    raise ValueError(f"param group {i}: {e}") from None
                self._checked[id(group)] = key
        grad_scale = getattr(self, "grad_scale", None)
        found_inf = getattr(self, "found_inf", None)
        calls = []
        plans = []
        for i, group in enumerate(self.param_groups):
            grads = [p.grad for p in group["params"]]
            plan = self._plan(group, grads)
            plans.append(plan)
            for bucket in plan.buckets:
                calls.append((i, bucket, self._arguments(group, grads, bucket, grad_scale,
                                                         found_inf)))
        if len(calls) > 1:
            self._check_calls(calls)
        for i, bucket, (args, kwargs) in calls:
            self._call(_STEP, i, bucket, args, kwargs)
            bucket.after_step()
        # The operator checks all of its arguments before it writes anything, so
        # new state is recorded only once it has returned.
        for plan in plans:
            plan.record(self.state)
        return loss

    def _plan(self, group: dict[str, Any], grads: list) -> GroupPlan:
        has_momentum = group["momentum"] != 0
        normalize = group["normalize"]
        means_map = map_key(group)
        plan = self._plans.get(id(group))
        if plan is None or not plan.matches(group, self.state, grads, has_momentum, normalize):
            keep = plan is not None and plan.means_map == means_map
            old_means = plan.cached_means() if keep else {}
            plan = build_plan(group, self.state, grads, has_momentum, normalize, old_means)
            self._plans[id(group)] = plan
        elif plan.means_map != means_map:  # means of another map: recomputed
            plan.invalidate_means()
            plan.means_map = means_map
        return plan

    @staticmethod
    def _arguments(group: dict[str, Any], grads: list, bucket: Any,
                   grad_scale: Optional[torch.Tensor],
                   found_inf: Optional[torch.Tensor]) -> tuple[tuple, dict[str, Any]]:
        """The operator's arguments for one bucket of the group."""
        lr = group["lr"]
        device = bucket.device
        lr_tensor = None
        if isinstance(lr, torch.Tensor):
            lr_tensor = lr if lr.device == device else lr.to(device, non_blocking=True)
        normalize = group["normalize"]
        args = (bucket.params, [grads[i] for i in bucket.indices], bucket.buffers,
                bucket.steps, bucket.means, bucket.valid_means() if normalize else [])
        kwargs = dict(
            mirror=group["mirror"],
            beta=float(group["beta"]),
            degree=float(group["degree"]),
            update=group["update"],
            normalize=normalize,
            beta_scaling=group["beta_scaling"],
            lr=0.0 if lr_tensor is not None else float(lr),
            momentum=float(group["momentum"]),
            dampening=float(group["dampening"]),
            nesterov=group["nesterov"],
            weight_decay=float(group["weight_decay"]),
            maximize=group["maximize"],
            lr_tensor=lr_tensor,
            grad_scale=_on(grad_scale, device),
            found_inf=_on(found_inf, device),
        )
        return args, kwargs

    @classmethod
    def _check_calls(cls, calls: list) -> None:
        """Checks the tensors of every call in one dispatch (the hyperparameters
        are checked already); on a refusal, call by call, for a message that
        names the group and the parameters. A bucket that has stepped had its
        state tensors checked then (they are its own, changed only in place), so
        only its parameters and this step's gradients and scalars are passed:
        the lists' conversion is most of the check's cost."""
        lists: tuple[list, ...] = ([], [], [], [], [])
        sizes, momentum, normalize, lrs, scales, infs = [], [], [], [], [], []
        for _, bucket, (args, kwargs) in calls:
            full = not bucket.checked
            for target, part in zip(lists, args if full else args[:2]):
                target += part
            sizes.append(len(bucket.params))
            momentum.append(full and kwargs["momentum"] != 0)
            normalize.append(full and kwargs["normalize"])
            lrs.append(kwargs["lr_tensor"])
            scales.append(kwargs["grad_scale"])
            infs.append(kwargs["found_inf"])
        try:
            _CHECK_CALLS(*lists, sizes, momentum, normalize, lrs, scales, infs)
        except (RuntimeError, ValueError):
            for i, bucket, (args, kwargs) in calls:
                cls._call(_CHECK, i, bucket, args, kwargs)
            raise

    @staticmethod
    def _call(op: Any, group_index: int, bucket: Any, args: tuple,
              kwargs: dict[str, Any]) -> None:
        try:
            op(*args, **kwargs)
        except (RuntimeError, ValueError) as e:
            where = (f"in param group {group_index}, among its parameters of dtype "
                     f"{bucket.dtype} on {bucket.device}")
            named = _INDEXED.search(str(e))
            if named and int(named.group(1)) < len(bucket.indices):
                k = int(named.group(1))
                where += f": [{k}] there is the group's parameter {bucket.indices[k]}"
            raise _with_context(e, where) from None


def _on(t: Optional[torch.Tensor], device: torch.device) -> Optional[torch.Tensor]:
    if t is None or t.device == device:
        return t
    return t.to(device, non_blocking=True)
