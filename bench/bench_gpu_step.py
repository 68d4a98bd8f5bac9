#!/usr/bin/env python3
"""GPU step benchmark: mirrorflow.MirrorDescent against torch.optim.SGD.

The GPU-only part of the step benchmarks (the comparison with the plain-PyTorch
step and the peak memory are bench_step.py's, with ``--device cuda``). For each
parameter set of parameter_sets.py (VGG-16 for CIFAR-10, one tensor of 10⁸
elements, 500 small tensors) and each method (mirrorflow: every map × update,
normalize off and on; SGD fused=True and foreach=True), the median time of one
``optimizer.step()`` in float32 without momentum, timed with CUDA events over
batches of back-to-back steps after a warm-up, and the bandwidth it achieves
counting 12 bytes per element (read θ and g, write θ). The reference is a
device-to-device copy moving the same 12 bytes per element (6 read, 6
written). Steps replayed from a CUDA graph (no Python overhead) are timed
for the headline methods, and the kernel launches of one step are counted
for 10 and for 1000 tensors with the profiler.

    python bench/bench_gpu_step.py --out results/gpu      # writes JSON and markdown

Without a CUDA device it says so and exits with status 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import parameter_sets as ps  # noqa: E402
import step_timing  # noqa: E402

BYTES_PER_ELEMENT = 12  # float32, no momentum: read θ, g; write θ
HEADLINE = "mirrorflow hyperbolic metric normalized"  # the VGG-16 experiments' update


def methods() -> dict[str, ps.Factory]:
    """Method name -> a function making the optimizer for a parameter list: every
    mirrorflow step without momentum, SGD fused and foreach."""
    out = {f"mirrorflow {c.label}": ps.mirrorflow_factory(c)
           for c in ps.step_configs() if not c.momentum}
    out["SGD fused"] = ps.sgd_factory("fused", momentum=False)
    out["SGD foreach"] = ps.sgd_factory("foreach", momentum=False)
    return out


def make_params(shapes, seed: int = 0) -> list[torch.Tensor]:
    return ps.make_params(shapes, "cuda", seed=seed)


def median_ms(fn, warmup: int, reps: int, batch: int) -> float:
    """Median over `reps` batches of the time per call, from CUDA events."""
    for _ in range(warmup):
        fn()
    return 1e3 * step_timing.median(
        [step_timing.sample_seconds(fn, batch, "cuda") for _ in range(reps)])


def copy_time_ms(n_bytes: int, warmup: int, reps: int, batch: int) -> float:
    """A device-to-device copy of n_bytes (2·n_bytes of memory traffic)."""
    return median_ms(step_timing.copy_step(n_bytes, "cuda"), warmup, reps, batch)


def graph_of(step):
    """`step` captured in a CUDA graph (after a warm-up on a side stream)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph


GRAPHED = (HEADLINE, "mirrorflow euclidean metric", "SGD fused")


def measure(opt, n: int, copy_gbs: float, warmup: int, reps: int, batch: int,
            graph: bool) -> dict:
    ms = median_ms(opt.step, warmup, reps, batch)
    gbs = n * BYTES_PER_ELEMENT / ms / 1e6
    row = {"ms": ms, "gbs": gbs, "pct_copy": 100 * gbs / copy_gbs}
    if graph:
        try:
            replay = graph_of(opt.step).replay
            row["graph_ms"] = median_ms(replay, warmup, reps, batch)
        except Exception as error:  # noqa: BLE001 - report and go on
            row["graph_ms"] = None
            row["graph_error"] = f"{type(error).__name__}: {error}"[:200]
    return row


def count_launches(make_opt, n_tensors: int) -> dict[str, int]:
    params = make_params([(1000 + 10 * (i % 50),) for i in range(n_tensors)], seed=1)
    opt = make_opt(params)
    for _ in range(2):
        opt.step()
    torch.cuda.synchronize()
    acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=acts) as prof:
        opt.step()
        torch.cuda.synchronize()
    device = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    copies = sum("memcpy" in e.name.lower() for e in device)
    return {"kernels": len(device) - copies, "copies": copies}


def fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def markdown(result: dict) -> str:
    lines = [f"GPU step benchmark on {result['device']} (PyTorch {result['torch']}, "
             f"mirrorflow {result['mirrorflow']}); float32, no momentum, "
             f"{BYTES_PER_ELEMENT} B/element; median of CUDA-event timings. "
             f"Command: `{result['command']}`", ""]
    for set_name, copy in result["copy"].items():
        lines.append(f"**{set_name}** ({copy['elements']:,} elements in {copy['tensors']} "
                     f"tensors; copy of the same bytes: {copy['ms']:.4f} ms, "
                     f"{copy['gbs']:.0f} GB/s)")
        lines.append("")
        lines.append("| method | step ms | GB/s | % of copy | graph replay ms |")
        lines.append("|---|---:|---:|---:|---:|")
        for row in result["rows"]:
            if row["set"] != set_name:
                continue
            if "error" in row:
                lines.append(f"| {row['method']} | failed: {row['error']} | | | |")
                continue
            lines.append(f"| {row['method']} | {row['ms']:.4f} | {row['gbs']:.0f} | "
                         f"{row['pct_copy']:.0f} % | {fmt(row.get('graph_ms'), '.4f')} |")
        lines.append("")
    lines.append("Kernel launches of one step (profiler), 10 vs 1000 tensors:")
    lines.append("")
    for name, counts in result["launches"].items():
        lines.append(f"- {name}: {counts.get('10')} vs {counts.get('1000')}")
    lines.append("")
    acc = result["acceptance"]
    lines.append("Acceptance:")
    lines.append(f"- VGG-16 step time / SGD fused ({HEADLINE}): "
                 f"{fmt(acc['vgg16_ratio_vs_sgd_fused'], '.2f')} (target ≤ 1.2); euclidean "
                 f"metric: {fmt(acc['vgg16_ratio_euclidean'], '.2f')}; graph replay: "
                 f"{fmt(acc['vgg16_graph_ratio'], '.2f')}")
    lines.append(f"- % of copy bandwidth on 10⁸ elements ({HEADLINE}): "
                 f"{fmt(acc['pct_copy_1e8'], '.0f')} % (target ≥ 75 %); euclidean metric: "
                 f"{fmt(acc['pct_copy_1e8_euclidean'], '.0f')} %")
    lines.append(f"- launches, 10 vs 1000 tensors: {acc['launches']} (constant: "
                 f"{acc['launch_count_constant']})")
    return "\n".join(lines) + "\n"


def acceptance(result: dict) -> dict:
    def value(set_name, method, key):
        for r in result["rows"]:
            if r["set"] == set_name and r["method"] == method:
                return r.get(key)
        return None

    def ratio(a, b):
        return None if a is None or b is None else a / b

    launches = result["launches"]
    mine, sgd = launches.get(HEADLINE, {}), launches.get("SGD fused", {})
    return {
        "vgg16_ratio_vs_sgd_fused": ratio(value("vgg16", HEADLINE, "ms"),
                                          value("vgg16", "SGD fused", "ms")),
        "vgg16_ratio_euclidean": ratio(value("vgg16", "mirrorflow euclidean metric", "ms"),
                                       value("vgg16", "SGD fused", "ms")),
        "vgg16_graph_ratio": ratio(value("vgg16", HEADLINE, "graph_ms"),
                                   value("vgg16", "SGD fused", "graph_ms")),
        "pct_copy_1e8": value("large", HEADLINE, "pct_copy"),
        "pct_copy_1e8_euclidean": value("large", "mirrorflow euclidean metric",
                                        "pct_copy"),
        "launches": f"mirrorflow {mine.get('10')} vs {mine.get('1000')}; "
                    f"SGD fused {sgd.get('10')} vs {sgd.get('1000')}",
        "launch_count_constant": bool(mine) and mine.get("10") == mine.get("1000"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT"),
                        help="directory for bench_gpu_step.json and .md (default: $OUT)")
    parser.add_argument("--quick", action="store_true", help="tiny sets, fewer reps")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        reason = "no CUDA device (torch.cuda.is_available() is False); nothing to measure"
        print(f"bench_gpu_step: {reason}")
        if args.out:
            os.makedirs(args.out, exist_ok=True)
            with open(os.path.join(args.out, "bench_gpu_step.json"), "w") as f:
                json.dump({"skipped": reason}, f)
        return 0
    import mirrorflow

    if not mirrorflow.cuda_built():
        print("bench_gpu_step: this mirrorflow build has no CUDA kernels (cuda_built() is "
              "False)", file=sys.stderr)
        return 1
    t0 = time.time()
    rows_file = None
    if args.out:  # every finished measurement is kept, whatever happens later
        os.makedirs(args.out, exist_ok=True)
        rows_file = open(os.path.join(args.out, "bench_gpu_step.rows.jsonl"), "w")
    warmup, reps, batch = (3, 3, 5) if args.quick else (5, 7, 10)
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
              "mirrorflow": mirrorflow.__version__, "command": " ".join(sys.argv),
              "rows": [], "copy": {}, "launches": {}}
    for set_name, shapes in ps.parameter_sets("cuda", args.quick).items():
        n = ps.numel(shapes)
        copy_ms = copy_time_ms(n * BYTES_PER_ELEMENT // 2, warmup, reps, batch)
        copy_gbs = n * BYTES_PER_ELEMENT / copy_ms / 1e6
        result["copy"][set_name] = {"elements": n, "tensors": len(shapes), "ms": copy_ms,
                                    "gbs": copy_gbs}
        for method, make_opt in methods().items():
            row = {"set": set_name, "method": method}
            try:
                row.update(measure(make_opt(make_params(shapes)), n, copy_gbs, warmup, reps,
                                   batch, graph=method in GRAPHED))
                print(f"{set_name:>10} | {method:<42} | {row['ms']:8.4f} ms | "
                      f"{row['gbs']:6.0f} GB/s | {row['pct_copy']:4.0f} % of copy", flush=True)
            except Exception as error:  # noqa: BLE001 - one failure must not lose the rest
                row["error"] = f"{type(error).__name__}: {error}"[:300]
                print(f"{set_name:>10} | {method:<42} | FAILED {row['error']}", flush=True)
            result["rows"].append(row)
            if rows_file:
                rows_file.write(json.dumps(row) + "\n")
                rows_file.flush()
        torch.cuda.empty_cache()
    for name in (HEADLINE, "SGD fused"):
        make_opt = methods()[name]
        for k in (10, 1000):
            try:
                result["launches"].setdefault(name, {})[str(k)] = count_launches(make_opt, k)
            except Exception as error:  # noqa: BLE001
                result["launches"].setdefault(name, {})[str(k)] = f"failed: {error}"[:200]
    result["acceptance"] = acceptance(result)
    result["seconds"] = time.time() - t0
    text = markdown(result)
    print()
    print(text)
    if args.out:
        rows_file.close()
        from mirrorflow._atomic_file import write_text_atomic

        write_text_atomic(os.path.join(args.out, "bench_gpu_step.json"),
                          json.dumps(result, indent=1))
        write_text_atomic(os.path.join(args.out, "bench_gpu_step.md"), text)
        print(f"bench_gpu_step: results in {args.out}/bench_gpu_step.{{json,md}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
