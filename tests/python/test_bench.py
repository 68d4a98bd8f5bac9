"""The step benchmark compares equal work and runs end to end.

The plain-PyTorch step of bench/plain_mirror_step.py must compute what
MirrorDescent computes, to rounding, for every map × update × normalize (and
with momentum), over several steps; the memory measurement must see a known
allocation; ``bench_step.py --quick`` must write its rows, JSON and markdown,
and resume without redoing rows; the Transformer set must hold the encoder's
parameters and run only when named; ``tune_prefetch.py`` must time every plan of
every step, name the best and restore the default plan. Nothing here asserts a
timing.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys

import pytest
import torch

import mirrorflow

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))

import bench_step  # noqa: E402
import parameter_sets as ps  # noqa: E402
import step_report  # noqa: E402
import step_timing  # noqa: E402
import tune_prefetch  # noqa: E402
from plain_mirror_step import PlainMirrorDescent, power_grad_conj  # noqa: E402

SHAPES = [(6, 5), (33,), (4, 3, 3, 3), (20000,)]
CONFIGS = [ps.StepConfig(m, u, n, mom) for m, u, n, mom in
           itertools.product(ps.MAPS, ps.UPDATES, (False, True), (False, True))
           if not mom or (u == "dual" and n)]


def _params(dtype: torch.dtype, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(s, generator=gen, dtype=torch.float64) * 0.5).to(dtype)
            for s in SHAPES]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.label.replace(" ", "-"))
def test_plain_step_equals_mirrorflow(config, dtype):
    ours = [p.clone() for p in _params(dtype, 0)]
    plain = [p.clone() for p in ours]
    kwargs = dict(config.options(), lr=0.05)
    opt = mirrorflow.MirrorDescent(ours, **kwargs)
    plain_opt = PlainMirrorDescent(plain, **kwargs)
    gen = torch.Generator().manual_seed(1)
    eps = torch.finfo(dtype).eps
    for _ in range(3):
        before = [p.clone() for p in ours]
        for a, b in zip(ours, plain):
            g = torch.randn(a.shape, generator=gen, dtype=torch.float64).to(dtype)
            a.grad, b.grad = g.clone(), g.clone()
        opt.step()
        plain_opt.step()
        for a, b, old in zip(ours, plain, before):
            scale = old.abs().max().item()
            moved = (a - old).abs().max().item()
            assert moved > 1e4 * eps * scale  # the step is far above the tolerance
            err = (a - b).abs().max().item()
            assert err <= 16 * eps * scale, (config.label, tuple(a.shape), err, moved)
        for a, b in zip(ours, plain):  # both continue from the same point
            b.copy_(a)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_power_grad_conj_inverts_the_gradient(dtype):
    beta, degree = 0.1, 3.0
    u = torch.linspace(-2, 2, 4001, dtype=dtype)
    y = u * (u * u + beta * beta) ** (degree / 2 - 1)
    start = (u * 1.3 + 0.01).abs()  # a warm start off the root
    got = power_grad_conj(y, start, beta, degree)
    eps = torch.finfo(dtype).eps
    assert torch.all((got - u).abs() <= 8 * eps * u.abs().clamp(min=beta))
    assert torch.equal(power_grad_conj(torch.zeros(3, dtype=dtype), start[:3], beta, degree),
                       torch.zeros(3, dtype=dtype))


def test_peak_extra_bytes_sees_a_known_allocation():
    n = 1 << 20

    def step():
        t = torch.ones(n, dtype=torch.uint8)  # 1 MiB, freed on return
        return int(t[0])

    peak = step_timing.peak_extra_bytes(step, "cpu")
    assert n <= peak < n + 4096
    x = torch.zeros(n)
    assert step_timing.peak_extra_bytes(lambda: x.add_(1), "cpu") < 4096


def test_quick_run_writes_rows_json_markdown_and_resumes(tmp_path):
    # One thread: a parallel region on a busy machine can wait a time slice for its
    # second thread, which would make this test slow but not more thorough.
    # --system-malloc leaves this process's malloc as it is (the fixed thresholds are
    # tested in a process of their own below).
    args = ["--device", "cpu", "--quick", "--rounds", "1", "--min-sample-ms", "0",
            "--threads", "1", "--system-malloc", "--out", str(tmp_path)]
    threads = torch.get_num_threads()
    try:
        assert bench_step.main(args) == 0
    finally:
        torch.set_num_threads(threads)
    stem = tmp_path / "bench_step_cpu"
    result = json.loads(stem.with_suffix(".json").read_text())
    configs = ps.step_configs()
    sets = ps.parameter_sets("cpu", quick=True)
    assert result["settings"]["malloc"] == "the C library's defaults"
    rows = result["rows"]
    assert {(r["set"], r["config"]) for r in rows} == {(s, c.label) for s in sets
                                                       for c in configs}
    for r in rows:
        ms = r["ms"]
        assert set(ms) >= {"mirrorflow", "plain", "sgd_foreach", "sgd_fused", "copy"}
        assert all(v > 0 for v in ms.values())
        assert r["x_sgd_foreach"] == pytest.approx(ms["mirrorflow"] / ms["sgd_foreach"])
        # one round: its own ratio is both quartiles (samples_ms keeps 4 decimals of a ms)
        (mine,), (sgd,) = r["samples_ms"]["mirrorflow"], r["samples_ms"]["sgd_foreach"]
        assert r["x_sgd_foreach_quartiles"] == pytest.approx([mine / sgd] * 2,
                                                             rel=1.1e-4 / min(mine, sgd))
        assert r["plain_speedup"] == pytest.approx(ms["plain"] / ms["mirrorflow"])
        moved = r["elements"] * (20 if r["momentum"] else 12)
        assert r["gbs"] == pytest.approx(moved / ms["mirrorflow"] / 1e6)
        # No allocation proportional to the model: far less than the largest tensor.
        largest = max(torch.Size(s).numel() for s in sets[r["set"]])
        assert r["peak_extra_bytes"]["mirrorflow"] < largest
        if r["map"] != "euclidean":  # the plain step allocates temporaries
            assert r["peak_extra_bytes"]["plain"] >= 4 * largest
    text = stem.with_suffix(".md").read_text()
    for r in rows:
        q1, q3 = r["x_sgd_foreach_quartiles"]
        assert (f"| {r['config']} | {r['ms']['mirrorflow']:.3f} | {r['x_sgd_foreach']:.2f} | "
                f"{q1:.2f}–{q3:.2f} |") in text
    assert "Targets:" in text
    lines = (tmp_path / "bench_step_cpu.rows.jsonl").read_text().splitlines()
    assert len(lines) == len(rows)
    try:
        assert bench_step.main(args + ["--resume"]) == 0  # nothing left to do
    finally:
        torch.set_num_threads(threads)
    assert (tmp_path / "bench_step_cpu.rows.jsonl").read_text().splitlines() == lines
    assert len(json.loads(stem.with_suffix(".json").read_text())["rows"]) == len(rows)


@pytest.mark.parametrize("divisor", [1, 16])
def test_transformer_set_holds_the_encoders_parameters(divisor):
    """6 layers of width d: attention in_proj 3d×d and 3d, out_proj d×d and d,
    feed-forward 4d×d, 4d, d×4d, d, two LayerNorms of d and d: 12d² + 13d each."""
    d = 512 // divisor
    shapes = ps.transformer_shapes(divisor)
    per_layer = [(3 * d, d), (3 * d,), (d, d), (d,), (4 * d, d), (4 * d,), (d, 4 * d), (d,),
                 (d,), (d,), (d,), (d,)]
    assert shapes == per_layer * 6
    assert ps.numel(shapes) == 6 * (12 * d * d + 13 * d)


def test_the_transformer_set_runs_only_when_named(tmp_path, capsys):
    assert "transformer" not in ps.parameter_sets("cpu")
    assert "transformer" in ps.parameter_sets("cpu", optional=True)
    args = ["--device", "cpu", "--quick", "--rounds", "1", "--min-sample-ms", "0",
            "--threads", "1", "--system-malloc", "--maps", "hyperbolic", "--no-momentum",
            "--sets", "transformer", "--out", str(tmp_path)]
    threads = torch.get_num_threads()
    try:
        assert bench_step.main(args) == 0
        assert bench_step.main(args[:-2] + ["transformers", "--out", str(tmp_path)]) == 2
    finally:
        torch.set_num_threads(threads)
    assert "--sets must name sets of ['vgg16', 'large', '500 small', 'transformer'], " \
           "got ['transformers']" in capsys.readouterr().err
    rows = json.loads((tmp_path / "bench_step_cpu.json").read_text())["rows"]
    assert [(r["set"], r["config"]) for r in rows] == [
        ("transformer", c.label) for c in ps.step_configs(["hyperbolic"]) if not c.momentum]
    assert {r["elements"] for r in rows} == {ps.numel(ps.transformer_shapes(16))}
    # The targets are on vgg16: none measured, and the markdown says so in one line.
    text = (tmp_path / "bench_step_cpu.md").read_text()
    count = len(step_report.targets([], "cpu"))
    assert "Targets:" not in text
    assert f"{count} of the {count} targets not measured (their rows were not run)." in text


def test_tune_prefetch_times_every_plan_and_restores_the_default(tmp_path):
    default = mirrorflow.build_info()["cpu_prefetch"]
    plans = ["default", "L1:4096:2048", "L2:0:0"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert tune_prefetch.main(["--quick", "--rounds", "2", "--min-sample-ms", "0",
                                   "--maps", "hyperbolic", "power", "--plans", *plans,
                                   "--out", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)
    assert mirrorflow.build_info()["cpu_prefetch"] == default
    result = json.loads((tmp_path / "tune_prefetch_cpu.json").read_text())
    # hyperbolic: both updates; power: the metric update (its dual needs --with-power-dual)
    labels = [c.label for c in ps.step_configs(["hyperbolic", "power"])
              if not c.momentum and not (c.map == "power" and c.update == "dual")]
    assert [r["config"] for r in result["rows"]] == labels
    for r in result["rows"]:
        assert set(r["ms"]) == set(plans) | {"sgd_foreach"}
        assert all(len(v) == 2 and min(v) > 0 for v in r["samples_ms"].values())
        for p in plans:
            assert r["x_sgd_foreach"][p] == pytest.approx(r["ms"][p] / r["ms"]["sgd_foreach"])
    geo = {p: math.prod(r["x_sgd_foreach"][p] for r in result["rows"]) for p in plans}
    assert result["best"] == min(geo, key=geo.get)
    text = (tmp_path / "tune_prefetch_cpu.md").read_text()
    assert f"**{result['best']}**" in text
    for label in labels:
        assert f"| {label} |" in text


@pytest.mark.parametrize("plan,message", [
    ("L3:64:64", 'into must be "L1" or "L2", got "L3"'),
    ("L1:96:64", "ahead_bytes must be a multiple of 64"),
    ("L1:64", "a plan is INTO:AHEAD:SUM_AHEAD or default, got 'L1:64'"),
    ("L1:x:64", "AHEAD and SUM_AHEAD must be integers, got 'L1:x:64'"),
])
def test_tune_prefetch_refuses_a_bad_plan_before_timing(tmp_path, capsys, plan, message):
    assert tune_prefetch.main(["--quick", "--plans", plan, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "tune_prefetch_cpu.json").exists()


def test_paired_ratio_quartiles_pair_samples_by_round():
    # ratios 1, 2, 3, 4, 5 (the rounds out of order): inclusive quartiles 2 and 4
    a = [6.0, 2.0, 12.0, 4.0, 20.0]
    b = [2.0, 2.0, 3.0, 2.0, 4.0]
    assert step_timing.paired_ratio_quartiles(a, b) == pytest.approx((2.0, 4.0))
    # the machine slowing fourfold between rounds moves neither quartile
    assert step_timing.paired_ratio_quartiles([1.5, 1.5, 6.0, 6.0], [1.0, 1.0, 4.0, 4.0]) \
        == pytest.approx((1.5, 1.5))
    assert step_timing.paired_ratio_quartiles([3.0], [2.0]) == (1.5, 1.5)
    assert step_timing.paired_ratio_quartiles([], []) is None
    # rounds that timed only the first method are left out
    assert step_timing.paired_ratio_quartiles([2.0, 4.0, 9.0], [1.0, 2.0]) == (2.0, 2.0)


_MALLOC_PROBE = """
import ctypes, sys
sys.path.insert(0, sys.argv[2])
import step_timing
libc = ctypes.CDLL("libc.so.6")
class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                               "usmblks", "fsmblks", "uordblks", "fordblks",
                                               "keepcost")]
libc.mallinfo2.restype = Mallinfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
print(step_timing.keep_freed_memory() if sys.argv[1] == "fixed" else "defaults")
before = libc.mallinfo2()
block = libc.malloc(9 << 20)  # VGG-16's largest tensor in float32 is 9 MiB
during = libc.mallinfo2()
libc.free(block)
after = libc.mallinfo2()
print(during.hblks - before.hblks, after.arena >= during.arena >= 9 << 20)
"""


@pytest.mark.parametrize("mode", ["fixed", "defaults"])
def test_keep_freed_memory_serves_a_large_block_from_the_heap_and_keeps_it(mode):
    bench = os.path.join(os.path.dirname(__file__), "..", "..", "bench")
    done = subprocess.run([sys.executable, "-c", _MALLOC_PROBE, mode, bench],
                          capture_output=True, text=True, timeout=60)
    if "mallinfo2" in done.stderr:
        pytest.skip("the C library is not glibc >= 2.33 (no mallinfo2 to observe malloc with)")
    assert done.returncode == 0, done.stderr
    described, observed = done.stdout.splitlines()
    if mode == "fixed":
        # glibc itself reports where the block came from: the heap (no mmap'd block),
        # which still holds it after free (nothing trimmed back to the system)
        assert described.startswith("glibc ") and "mmap threshold 32 MiB" in described
        assert observed == "0 True"
    else:  # glibc's default threshold (128 KiB) maps a 9 MiB block of its own
        assert observed.split()[0] == "1"


class _FakeLibc:
    """A C library whose mallopt refuses the parameters in `refuses` (glibc 2.36 accepts
    any value, so a refusal cannot be provoked from the real one)."""

    def __init__(self, refuses):
        self.refuses, self.calls = set(refuses), []
        self.gnu_get_libc_version = lambda: b"2.99"

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return 0 if param in self.refuses else 1


@pytest.mark.parametrize("refuses, mmap, trim", [
    ({-3}, "glibc's (it refused the fixed one)", "1 GiB"),
    ({-1}, "32 MiB", "glibc's (it refused the fixed one)"),
    (set(), "32 MiB", "1 GiB"),
])
def test_keep_freed_memory_describes_what_glibc_accepted(monkeypatch, refuses, mmap, trim):
    fake = _FakeLibc(refuses)
    monkeypatch.setattr(step_timing.ctypes, "CDLL", lambda name: fake)
    described = step_timing.keep_freed_memory()
    # both thresholds are asked for (M_MMAP_THRESHOLD = -3, M_TRIM_THRESHOLD = -1), each
    # reported as set or as left to glibc
    assert fake.calls == [(-3, 32 << 20), (-1, 1 << 30)]
    assert described == f"glibc 2.99 malloc: mmap threshold {mmap}, trim threshold {trim}"


def test_keep_freed_memory_is_none_when_glibc_refuses_both(monkeypatch):
    monkeypatch.setattr(step_timing.ctypes, "CDLL", lambda name: _FakeLibc({-1, -3}))
    assert step_timing.keep_freed_memory() is None
