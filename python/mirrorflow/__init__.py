"""mirrorflow: mirror descent for deep learning, on PyTorch.

One mirror-descent step over many parameter tensors is a single operator,
``torch.ops.mirrorflow.mirror_descent_step_`` (C++ and CUDA kernels), used by
the optimizer :class:`mirrorflow.MirrorDescent`. The maps and formulas are those
of the project's MATH.md; see the README for an overview.
"""

from __future__ import annotations

import os as _os

import torch as _torch  # noqa: F401  (loads libtorch before the extension)

from . import _C  # registers the operators with the dispatcher
from .maps import MAPS, map_eval
from .optim import MirrorDescent
from .time_rescaling import TimeRescaling

__version__: str = _C.__version__

#: Prefix for CMake's ``find_package(mirrorflow)`` when the package was installed
#: with pip: ``-DCMAKE_PREFIX_PATH=$(python -c "import mirrorflow; print(mirrorflow.cmake_prefix_path)")``.
cmake_prefix_path: str = _os.path.join(_os.path.dirname(__file__), "lib", "cmake")


def cuda_built() -> bool:
    """Whether this build of mirrorflow contains the CUDA kernels."""
    return bool(_C.cuda_built())


def cuda_architectures() -> str:
    """CUDA architectures the kernels were compiled for, in CMake's syntax
    (e.g. ``"80-real;90"``: sm_80 machine code, sm_90 machine code and PTX);
    empty without CUDA kernels."""
    return str(_C.cuda_architectures())


def build_info() -> dict:
    """Version, the PyTorch it was built against, CUDA kernels, CPU capability and
    prefetch plan."""
    return {
        "version": __version__,
        "torch_built_against": _C.torch_version,
        "torch_running": _torch.__version__,
        "cuda_built": cuda_built(),
        "cuda_architectures": cuda_architectures(),
        "cuda_option": str(_C.cuda_option()),
        "cpu_capability": _C.cpu_capability(),
        "cpu_prefetch": _C.cpu_prefetch(),
    }


def set_cpu_prefetch(into: str, ahead_bytes: int, sum_ahead_bytes: int) -> None:
    """Sets how the CPU kernels prefetch in this process, for tuning on a
    processor whose default (``build_info()["cpu_prefetch"]``) was not measured
    (``bench/tune_prefetch.py`` times several plans side by side).

    Args:
        into: ``"L1"`` or ``"L2"``, the cache the lines are asked into.
        ahead_bytes: how far ahead of the update loop of steps without a
            normalising sum; a multiple of 64 from 0 (no prefetches) to 65536.
        sum_ahead_bytes: the same for the sum loop of normalised steps.

    Prefetches change when data arrives, never a result. Raises ``ValueError``
    on bad input and then changes nothing; :func:`reset_cpu_prefetch` restores
    the default."""
    _C.set_cpu_prefetch(into, ahead_bytes, sum_ahead_bytes)


def reset_cpu_prefetch() -> None:
    """Restores this processor's default prefetch plan (see :func:`set_cpu_prefetch`)."""
    _C.reset_cpu_prefetch()


__all__ = [
    "MAPS",
    "MirrorDescent",
    "TimeRescaling",
    "build_info",
    "cmake_prefix_path",
    "cuda_architectures",
    "cuda_built",
    "map_eval",
    "reset_cpu_prefetch",
    "set_cpu_prefetch",
]
