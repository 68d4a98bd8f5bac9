"""Timing and memory measurement for the step benchmarks.

Timing is round-robin: every round times each method once (a sample of one or
more back-to-back calls), with the order rotated from round to round, so that
a change in the machine's load touches all methods alike; the result is the
median per call over rounds. On the CPU a sample is timed with
``time.perf_counter``; on CUDA with events, after a synchronisation.

Peak extra memory of a call is the highest net amount of tensor memory
allocated during it, above what was allocated before: on CUDA from the caching
allocator's peak statistics; on the CPU from the allocation and free events
of ``torch.profiler`` (``profile_memory=True``), added up in time order. Both
see tensor memory only (not small host-side bookkeeping such as C++ vectors).

On glibc, :func:`keep_freed_memory` fixes malloc's thresholds so that a step
that allocates temporaries (the plain-PyTorch step) reuses freed memory rather
than faulting fresh pages in: with glibc's adaptive defaults such a step's time
on VGG-16 varied tenfold between runs and steps (45-350 ms against 8-12 ms
with the fixed thresholds), so its ratios said more about the allocator's
history than about the step.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Optional

import torch


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
MMAP_THRESHOLD = 32 << 20  # glibc's largest (64-bit): a block below it comes from the heap
TRIM_THRESHOLD = 1 << 30  # the heap is given back to the system only above 1 GiB free


def keep_freed_memory() -> Optional[str]:
    """Fix glibc malloc's mmap and trim thresholds for this process (see the
    module's note); the description recorded with the results, which names a
    threshold glibc refused as left to glibc, or None where the C library is
    not glibc or refused both (nothing is changed)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt, version = libc.mallopt, libc.gnu_get_libc_version
    except (OSError, AttributeError):
        return None
    version.restype = ctypes.c_char_p
    # Both are tried: a refused one leaves glibc's own, and the record says so.
    mmap_fixed = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    trim_fixed = bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if not (mmap_fixed or trim_fixed):
        return None
    left = "glibc's (it refused the fixed one)"
    mmap = f"{MMAP_THRESHOLD >> 20} MiB" if mmap_fixed else left
    trim = f"{TRIM_THRESHOLD >> 30} GiB" if trim_fixed else left
    return f"glibc {version().decode()} malloc: mmap threshold {mmap}, trim threshold {trim}"


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def sample_seconds(fn: Callable[[], object], calls: int, device: str) -> float:
    """Seconds per call over `calls` back-to-back calls."""
    if device == "cuda":
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / calls
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def calls_per_sample(fn: Callable[[], object], device: str, min_sample_s: float,
                     max_calls: int = 1000) -> int:
    """Warms `fn` up (one call), times one call and picks how many calls make a
    sample of at least `min_sample_s`, so that timer noise does not dominate
    short steps."""
    fn()
    once = sample_seconds(fn, 1, device)
    return max(1, min(max_calls, int(min_sample_s / max(once, 1e-9)) + 1))


def round_robin(fns: dict[str, Callable[[], object]], rounds: int, device: str,
                min_sample_s: float, max_samples: Optional[dict[str, int]] = None,
                ) -> dict[str, list[float]]:
    """Per-call seconds of each function, one sample per round, interleaved;
    `max_samples` caps the samples of slow functions (they stop taking part in
    later rounds: their time is large against the noise anyway)."""
    calls = {name: calls_per_sample(fn, device, min_sample_s) for name, fn in fns.items()}
    cap = max_samples or {}
    names = list(fns)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            if len(samples[name]) < cap.get(name, rounds):
                samples[name].append(sample_seconds(fns[name], calls[name], device))
    return samples


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def paired_ratio_quartiles(a: list[float], b: list[float]) -> Optional[tuple[float, float]]:
    """The first and third quartiles of a[r] / b[r] over the rounds r that timed both
    (round_robin's samples are in round order): the middle half of the ratio as each
    round saw it, which a change of the machine's speed between rounds moves less than
    it moves either method's samples. None without a common round."""
    ratios = [x / y for x, y in zip(a, b)]
    if not ratios:
        return None
    if len(ratios) == 1:
        return ratios[0], ratios[0]
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return q1, q3


def peak_extra_bytes(fn: Callable[[], object], device: str) -> Optional[int]:
    """Peak tensor memory allocated during one call of `fn` beyond what existed
    before it (None where it cannot be measured)."""
    synchronize(device)
    if device == "cuda":
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return max(0, torch.cuda.max_memory_allocated() - before)
    try:
        from torch.profiler import ProfilerActivity, profile

        with warnings.catch_warnings():  # "clears events at the end of each cycle"
            warnings.simplefilter("ignore", UserWarning)
            with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                fn()
        events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"
                  and e.device_type() == torch.autograd.DeviceType.CPU]
    except (AttributeError, RuntimeError):  # profiler internals differ in this PyTorch
        return None
    net = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        net += e.nbytes()
        peak = max(peak, net)
    return peak


def copy_step(n_bytes: int, device: str) -> Callable[[], object]:
    """A copy of `n_bytes` into another buffer: 2·`n_bytes` of memory traffic,
    the bandwidth reference of a step that moves as many bytes."""
    src = torch.empty(n_bytes, dtype=torch.uint8, device=device).fill_(1)
    dst = torch.empty_like(src)
    return lambda: dst.copy_(src)
