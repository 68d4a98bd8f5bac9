#!/usr/bin/env python3
"""Prefetch tuning: the CPU step under several prefetch plans, side by side.

How far ahead the CPU kernels ask the memory for lines, and into which cache,
is chosen per processor vendor (``mirrorflow.build_info()["cpu_prefetch"]``,
docs/benchmarks.md). On a processor those defaults were not measured on, this
times each step under each plan (``mirrorflow.set_cpu_prefetch``) in one
process: for one step at a time, every plan and ``torch.optim.SGD(foreach=True)``
take turns, round after round (step_timing.round_robin), so the plans are
compared over the same stretch of the machine's time. It reports the median
step time per plan and its ratio to SGD, and the plan with the smallest
geometric mean of those ratios.

    python bench/tune_prefetch.py                       # VGG-16, the default grid
    python bench/tune_prefetch.py --plans L1:4096:2048 L2:8192:8192 --rounds 20

A plan is INTO:AHEAD:SUM_AHEAD (``set_cpu_prefetch(into, ahead_bytes,
sum_ahead_bytes)``); "default" is the processor's default. Results go to
OUT/tune_prefetch_cpu.{json,md}, rewritten after every step, so a killed run
keeps the steps it finished. The default plan is restored at the end.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import time
from typing import Optional

import torch
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_step  # noqa: E402
import parameter_sets as ps  # noqa: E402
import step_timing  # noqa: E402

import mirrorflow  # noqa: E402
from mirrorflow._atomic_file import write_text_atomic  # noqa: E402

DEFAULT_PLANS = ("default", "L1:4096:2048", "L1:4096:4096", "L2:8192:8192", "L2:4096:2048",
                 "L2:16384:16384", "L1:0:0")


def parse_plan(text: str) -> Optional[tuple[str, int, int]]:
    """"INTO:AHEAD:SUM_AHEAD" -> (into, ahead_bytes, sum_ahead_bytes); "default" -> None.
    Checked by mirrorflow.set_cpu_prefetch itself (ValueError names the rule)."""
    if text == "default":
        return None
    parts = text.split(":")
    if len(parts) != 3:
        raise ValueError(f"--plans: a plan is INTO:AHEAD:SUM_AHEAD or default, got {text!r}")
    try:
        into, ahead, sum_ahead = parts[0], int(parts[1]), int(parts[2])
    except ValueError:
        raise ValueError(f"--plans: AHEAD and SUM_AHEAD must be integers, got {text!r}") from None
    mirrorflow.set_cpu_prefetch(into, ahead, sum_ahead)  # raises on a bad plan
    mirrorflow.reset_cpu_prefetch()
    return into, ahead, sum_ahead


def use_plan(plan: Optional[tuple[str, int, int]]) -> None:
    if plan is None:
        mirrorflow.reset_cpu_prefetch()
    else:
        mirrorflow.set_cpu_prefetch(*plan)


def tune_step(config: ps.StepConfig, shapes, plans: dict, rounds: int,
              min_sample_s: float) -> dict:
    """One step under every plan, interleaved with SGD foreach."""
    opt = ps.mirrorflow_factory(config)(ps.make_params(shapes, "cpu", seed=2))
    sgd = ps.sgd_factory("foreach", config.momentum)(ps.make_params(shapes, "cpu", seed=1))

    def under(plan):
        def step():
            use_plan(plan)
            opt.step()
        return step

    fns = {name: under(plan) for name, plan in plans.items()}
    fns["sgd_foreach"] = sgd.step
    try:
        samples = step_timing.round_robin(fns, rounds, "cpu", min_sample_s)
    finally:
        mirrorflow.reset_cpu_prefetch()
    ms = {name: 1e3 * step_timing.median(s) for name, s in samples.items()}
    return {"config": config.label, "ms": ms,
            "x_sgd_foreach": {name: ms[name] / ms["sgd_foreach"] for name in plans},
            "samples_ms": {k: [round(1e3 * x, 4) for x in v] for k, v in samples.items()}}


def best_plan(rows: list[dict], plans: list[str]) -> Optional[tuple[str, float]]:
    """The plan with the smallest geometric mean ratio to SGD over the rows."""
    if not rows:
        return None
    scores = {p: math.exp(sum(math.log(r["x_sgd_foreach"][p]) for r in rows) / len(rows))
              for p in plans}
    name = min(scores, key=scores.get)
    return name, scores[name]


def markdown(result: dict) -> str:
    plans = result["plans"]
    m = result["machine"]
    lines = [f"Prefetch tuning on {m['cpu']}, CPU capability {m['cpu_capability']}, "
             f"default plan: {m['cpu_prefetch']}; PyTorch {m['torch']}, "
             f"{m['torch_threads']} threads; set {result['set']}, {result['rounds']} "
             f"interleaved rounds per step, median.", "",
             f"Command: `{result['command']}` ({result.get('seconds', '?')} s, started "
             f"{result['started']})", "",
             "Step time as a multiple of torch.optim.SGD(foreach=True) under each plan "
             "(INTO:AHEAD:SUM_AHEAD bytes); the smallest of each row in bold.", "",
             "| step | " + " | ".join(plans) + " | SGD ms |",
             "|---|" + "---:|" * (len(plans) + 1)]
    for row in result["rows"]:
        ratios = row["x_sgd_foreach"]
        low = min(ratios.values())
        cells = [f"**{ratios[p]:.2f}**" if ratios[p] == low else f"{ratios[p]:.2f}"
                 for p in plans]
        lines.append(f"| {row['config']} | " + " | ".join(cells)
                     + f" | {row['ms']['sgd_foreach']:.3f} |")
    best = best_plan(result["rows"], plans)
    if best:
        lines += ["", f"Smallest geometric mean over these steps: **{best[0]}** ({best[1]:.3f}× "
                  "SGD). Timings drift by tens of per cent on shared machines: rerun before "
                  "trusting a difference of a few per cent."]
    if len(result["rows"]) < result["steps_planned"]:
        lines += ["", f"Unfinished: {len(result['rows'])} of {result['steps_planned']} steps."]
    return "\n".join(lines) + "\n"


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=bench_step.DEFAULT_OUT,
                        help=f"output directory ({bench_step.DEFAULT_OUT})")
    parser.add_argument("--set", default="vgg16", help="parameter set (vgg16, large, 500 small)")
    parser.add_argument("--quick", action="store_true", help="the quick (tiny) parameter sets")
    parser.add_argument("--plans", nargs="+", default=list(DEFAULT_PLANS),
                        help="INTO:AHEAD:SUM_AHEAD or default (default: %(default)s)")
    parser.add_argument("--maps", nargs="+", choices=list(ps.MAPS), help="maps (default: all)")
    parser.add_argument("--momentum", action="store_true", help="the momentum rows too")
    parser.add_argument("--with-power-dual", action="store_true",
                        help="the power map's dual step too (bound by its Newton solve)")
    parser.add_argument("--rounds", type=int, default=10, help="samples per plan and step (10)")
    parser.add_argument("--min-sample-ms", type=float, default=20.0,
                        help="back-to-back calls per sample until it lasts this long")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    if len(set(args.plans)) != len(args.plans):
        parser.error(f"--plans must not repeat a plan, got {args.plans}")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    try:
        plans = {text: parse_plan(text) for text in args.plans}
    except ValueError as error:
        print(f"tune_prefetch: {error}", file=sys.stderr)
        return 2
    sets = ps.parameter_sets("cpu", args.quick)
    if args.set not in sets:
        print(f"tune_prefetch: --set must be one of {list(sets)}, got {args.set!r}",
              file=sys.stderr)
        return 2
    configs = [c for c in ps.step_configs(args.maps)
               if (args.momentum or not c.momentum)
               and (args.with_power_dual or not (c.map == "power" and c.update == "dual"))]
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, "tune_prefetch_cpu")
    result = {"command": " ".join(["python", "bench/tune_prefetch.py"] + (argv or sys.argv[1:])),
              "machine": bench_step.machine("cpu"), "set": args.set, "rounds": args.rounds,
              "min_sample_ms": args.min_sample_ms, "plans": list(plans),
              "steps_planned": len(configs), "rows": [],
              "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    t0 = time.time()

    def write() -> str:
        result["seconds"] = round(time.time() - t0, 1)
        best = best_plan(result["rows"], list(plans))
        result["best"] = best[0] if best else None
        text = markdown(result)
        write_text_atomic(stem + ".json", json.dumps(result, indent=1))
        write_text_atomic(stem + ".md", text)
        return text

    for config in tqdm(configs, desc="tune_prefetch", unit="step", file=sys.stderr):
        result["rows"].append(tune_step(config, sets[args.set], plans, args.rounds,
                                        args.min_sample_ms / 1e3))
        write()
        gc.collect()
    print(write())
    print(f"tune_prefetch: results in {stem}.{{json,md}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
