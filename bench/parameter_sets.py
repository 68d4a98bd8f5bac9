"""What the step benchmarks time: the parameter sets and the optimizers.

Shared by ``bench_step.py`` (CPU and CUDA, against SGD and plain PyTorch) and
``bench_gpu_step.py`` (CUDA extras: graph replay, launch counts).

Parameter sets (float32): VGG-16 as in the CIFAR-10 experiments, one large
tensor (2·10⁷ elements on the CPU, 10⁸ on a GPU) and 500 small tensors; and,
when asked for by name, the parameters of a Transformer encoder. The
methods: ``mirrorflow.MirrorDescent`` for every map × update × normalize ×
momentum (MATH.md §1-§2), ``torch.optim.SGD`` with ``foreach=True`` and
``fused=True``, and ``PlainMirrorDescent`` (plain_mirror_step.py), the same
mirror step written per tensor in plain PyTorch.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

import torch

from plain_mirror_step import PlainMirrorDescent

LR = 1e-3
MOMENTUM = 0.9
#: The maps as benchmarked: β = 0.1 (the weights are ~N(0, 0.1²)), L = 3.
MAPS: dict[str, dict] = {
    "euclidean": dict(mirror="euclidean"),
    "hyperbolic": dict(mirror="hyperbolic", beta=0.1),
    "power": dict(mirror="power", degree=3.0, beta=0.1),
}
UPDATES = ("metric", "dual")


def vgg16_shapes(width_divisor: int = 1) -> list[tuple[int, ...]]:
    """VGG-16 for CIFAR-10 as in the experiments: 13 bias-free 3×3 convolutions,
    a 64-element bias on the first, a bias-free 512→10 linear head (14 710 464
    parameters). `width_divisor` narrows every layer (for quick runs)."""
    channels = [c // width_divisor for c in
                (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)]
    shapes, c_in = [], 3
    for c_out in channels:
        shapes.append((c_out, c_in, 3, 3))
        c_in = c_out
    return shapes[:1] + [(channels[0],)] + shapes[1:] + [(10, channels[-1])]


def small_shapes(count: int = 500) -> list[tuple[int, ...]]:
    """`count` one-dimensional tensors of 1000 to 4999 elements (~3000 on average)."""
    return [(1000 + (37 * i) % 4000,) for i in range(count)]


def transformer_shapes(width_divisor: int = 1) -> list[tuple[int, ...]]:
    """The parameters of a real model with tensors of many sizes:
    ``torch.nn.TransformerEncoder`` of 6 ``TransformerEncoderLayer`` of width
    512, 8 heads and a 2048-wide feed-forward block (the base model of
    "Attention Is All You Need"), built on the meta device: 72 tensors, from the
    512-element biases and LayerNorm weights to 2048×512 matrices, 18 914 304
    parameters. `width_divisor` narrows the width (for quick runs)."""
    width = 512 // width_divisor
    layer = torch.nn.TransformerEncoderLayer(d_model=width, nhead=8, dim_feedforward=4 * width,
                                             device="meta")
    encoder = torch.nn.TransformerEncoder(layer, num_layers=6, enable_nested_tensor=False)
    return [tuple(p.shape) for p in encoder.parameters()]


#: The sets a run times only when asked for by name (``--sets``).
OPTIONAL_SETS = ("transformer",)


def parameter_sets(device: str, quick: bool = False,
                   optional: bool = False) -> dict[str, list[tuple[int, ...]]]:
    """Set name -> shapes: the sets a run times by default, and with `optional`
    also OPTIONAL_SETS. `quick`: a few hundred thousand elements in all."""
    if quick:
        sets = {"vgg16": vgg16_shapes(16), "large": [(10**5,)], "500 small": small_shapes(50)}
    else:
        large = 10**8 if device == "cuda" else 2 * 10**7
        sets = {"vgg16": vgg16_shapes(), "large": [(large,)], "500 small": small_shapes()}
    if optional:
        sets["transformer"] = transformer_shapes(16 if quick else 1)
    return sets


def numel(shapes: list[tuple[int, ...]]) -> int:
    return sum(int(torch.Size(s).numel()) for s in shapes)


def make_params(shapes: list[tuple[int, ...]], device: str, dtype: torch.dtype = torch.float32,
                seed: int = 0) -> list[torch.Tensor]:
    """Parameters ~N(0, 0.1²) with gradients ~N(0, 0.01²), reproducible per seed."""
    gen = torch.Generator(device=device).manual_seed(seed)
    params = []
    for shape in shapes:
        p = (torch.randn(shape, device=device, dtype=dtype, generator=gen) * 0.1)
        p.requires_grad_()
        p.grad = torch.randn(shape, device=device, dtype=dtype, generator=gen) * 0.01
        params.append(p)
    return params


@dataclass(frozen=True)
class StepConfig:
    """One mirror step: a map of MAPS, an update, normalize, momentum on or off."""

    map: str
    update: str
    normalize: bool
    momentum: bool

    @property
    def label(self) -> str:
        return (f"{self.map} {self.update}" + (" normalized" if self.normalize else "")
                + (" momentum" if self.momentum else ""))

    def options(self) -> dict:
        """Keyword arguments shared by MirrorDescent and PlainMirrorDescent."""
        return dict(lr=LR, update=self.update, normalize=self.normalize,
                    momentum=MOMENTUM if self.momentum else 0.0, **MAPS[self.map])

    @property
    def bytes_per_element(self) -> int:
        """Memory traffic of a fused float32 step: read θ, g (and b), write θ (and b)."""
        return 20 if self.momentum else 12


def step_configs(maps: Optional[list[str]] = None) -> list[StepConfig]:
    """Every map × update × normalize × momentum (momentum off first)."""
    return [StepConfig(m, u, n, mom) for mom, m, u, n in
            itertools.product((False, True), maps or list(MAPS), UPDATES, (False, True))]


Factory = Callable[[list[torch.Tensor]], torch.optim.Optimizer]


def mirrorflow_factory(config: StepConfig) -> Factory:
    import mirrorflow

    return lambda params: mirrorflow.MirrorDescent(params, **config.options())


def plain_factory(config: StepConfig) -> Factory:
    return lambda params: PlainMirrorDescent(params, **config.options())


def sgd_factory(kind: str, momentum: bool) -> Factory:
    """`kind` is "foreach" or "fused"."""
    mu = MOMENTUM if momentum else 0.0
    return lambda params: torch.optim.SGD(params, lr=LR, momentum=mu, **{kind: True})
