#!/usr/bin/env python3
"""Step benchmark: mirrorflow.MirrorDescent against torch.optim.SGD and plain PyTorch.

For each parameter set (parameter_sets.py: VGG-16, one large tensor, 500 small
tensors; a Transformer encoder's parameters with ``--sets transformer``) and
each mirror step (every map × update × normalize × momentum), times one
``optimizer.step()`` of mirrorflow, of the plain-PyTorch per-tensor
implementation of the same step (plain_mirror_step.py), of
``torch.optim.SGD(foreach=True)`` and ``SGD(fused=True)`` with the same
momentum, and a copy moving as many bytes as the fused step (12 bytes per
float32 element: read θ, g, write θ; 20 with momentum) — interleaved in rounds,
median per call (step_timing.py). Reports the ratios to SGD and to the plain
step, GB/s and the share of the copy's bandwidth, and the peak extra memory of
one step.

    python bench/bench_step.py --device cpu           # the table of docs/benchmarks.md
    python bench/bench_step.py --device cpu --quick   # seconds: tiny sets, two rounds

Results go to OUT/bench_step_<device>.{json,md}; every finished row is
appended to OUT/bench_step_<device>.rows.jsonl at once, and ``--resume`` skips
the rows already there (same settings), so a killed run loses nothing.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from typing import Optional

import torch
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import parameter_sets as ps  # noqa: E402
import step_report  # noqa: E402
import step_timing  # noqa: E402

#: Rounds in which the plain step is timed (it is slow, and many times the noise).
PLAIN_ROUNDS = 3
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def machine(device: str) -> dict:
    """What the numbers were measured on."""
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "cpu": platform.processor() or "unknown"}
    try:  # the first processor's name, family, model and clock (machines sold under one name differ)
        fields: dict[str, str] = {}
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
        if "model name" in fields:
            details = [f"{k} {fields[k]}" for k in ("cpu family", "model") if k in fields]
            if "cpu MHz" in fields:
                details.append(f"{float(fields['cpu MHz']):.0f} MHz")
            info["cpu"] = fields["model name"] + (f" ({', '.join(details)})" if details else "")
    except (OSError, ValueError):
        pass
    import mirrorflow

    build = mirrorflow.build_info()
    info["mirrorflow"] = build["version"]
    info["cpu_capability"] = build["cpu_capability"]
    info["cpu_prefetch"] = build["cpu_prefetch"]
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def load_average() -> Optional[list[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def try_make(factory: ps.Factory, shapes, device: str, seed: int):
    """An optimizer over fresh parameters, or the error text if it cannot be made."""
    try:
        return factory(ps.make_params(shapes, device, seed=seed)), None
    except (RuntimeError, ValueError, TypeError) as error:
        return None, f"{type(error).__name__}: {error}"[:200]


class SetBench:
    """The SGD baselines and copies of one parameter set, reused by its rows."""

    def __init__(self, name: str, shapes, device: str) -> None:
        self.name, self.shapes, self.device = name, shapes, device
        self.elements = ps.numel(shapes)
        self.sgd: dict[tuple[str, bool], tuple] = {}
        self.sgd_peak: dict[tuple[str, bool], Optional[int]] = {}
        self.copies = {b: step_timing.copy_step(self.elements * b // 2, device) for b in (12, 20)}

    def baseline(self, kind: str, momentum: bool):
        key = (kind, momentum)
        if key not in self.sgd:
            opt, error = try_make(ps.sgd_factory(kind, momentum), self.shapes, self.device, 1)
            self.sgd[key] = (opt, error)
            if opt is not None:
                opt.step()  # creates the momentum buffers before memory is measured
                self.sgd_peak[key] = step_timing.peak_extra_bytes(opt.step, self.device)
        return self.sgd[key]


def bench_row(sb: SetBench, config: ps.StepConfig, rounds: int, min_sample_s: float) -> dict:
    mine, error = try_make(ps.mirrorflow_factory(config), sb.shapes, sb.device, 2)
    if mine is None:
        raise RuntimeError(f"mirrorflow {config.label}: {error}")
    plain, plain_error = try_make(ps.plain_factory(config), sb.shapes, sb.device, 3)
    fns = {"mirrorflow": mine.step}
    if plain is not None:
        fns["plain"] = plain.step
    errors = {"plain": plain_error} if plain_error else {}
    for kind in ("foreach", "fused"):
        opt, sgd_error = sb.baseline(kind, config.momentum)
        if opt is not None:
            fns[f"sgd_{kind}"] = opt.step
        else:
            errors[f"sgd_{kind}"] = sgd_error
    fns["copy"] = sb.copies[config.bytes_per_element]
    samples = step_timing.round_robin(fns, rounds, sb.device, min_sample_s,
                                      max_samples={"plain": min(rounds, PLAIN_ROUNDS)})
    ms = {name: 1e3 * step_timing.median(s) for name, s in samples.items()}
    peak = {"mirrorflow": step_timing.peak_extra_bytes(mine.step, sb.device)}
    if plain is not None:
        peak["plain"] = step_timing.peak_extra_bytes(plain.step, sb.device)
    for kind in ("foreach", "fused"):
        peak[f"sgd_{kind}"] = sb.sgd_peak.get((kind, config.momentum))

    def ratio(a: str, b: str) -> Optional[float]:
        return ms[a] / ms[b] if a in ms and b in ms else None

    moved = sb.elements * config.bytes_per_element
    gbs, copy_gbs = moved / ms["mirrorflow"] / 1e6, moved / ms["copy"] / 1e6
    return {"set": sb.name, "config": config.label, "map": config.map, "update": config.update,
            "normalize": config.normalize, "momentum": config.momentum,
            "elements": sb.elements, "tensors": len(sb.shapes),
            "bytes_per_element": config.bytes_per_element, "ms": ms,
            "samples_ms": {k: [round(1e3 * x, 4) for x in v] for k, v in samples.items()},
            "x_sgd_foreach": ratio("mirrorflow", "sgd_foreach"),
            "x_sgd_foreach_quartiles": step_timing.paired_ratio_quartiles(
                samples["mirrorflow"], samples.get("sgd_foreach", [])),
            "x_sgd_fused": ratio("mirrorflow", "sgd_fused"),
            "plain_speedup": ratio("plain", "mirrorflow"),
            "gbs": gbs, "copy_gbs": copy_gbs, "pct_copy": 100 * gbs / copy_gbs,
            "peak_extra_bytes": peak, "model_bytes": 4 * sb.elements, "errors": errors}


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output directory ({DEFAULT_OUT})")
    parser.add_argument("--quick", action="store_true", help="tiny sets and two rounds")
    parser.add_argument("--rounds", type=int,
                        help=f"samples per method (5; --quick: 2; the plain step: at most "
                             f"{PLAIN_ROUNDS})")
    parser.add_argument("--min-sample-ms", type=float, default=20.0,
                        help="back-to-back calls per sample until it lasts this long")
    parser.add_argument("--sets", nargs="+",
                        help="parameter sets to run: vgg16, large, '500 small' (the default: "
                             "all three), transformer (a Transformer encoder's parameters)")
    parser.add_argument("--maps", nargs="+", choices=list(ps.MAPS), help="maps (default: all)")
    parser.add_argument("--no-momentum", action="store_true", help="skip the momentum rows")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: as is)")
    parser.add_argument("--system-malloc", action="store_true",
                        help="keep glibc malloc's adaptive thresholds (default: fixed, so that "
                             "the plain step reuses freed memory; see bench/step_timing.py)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the rows of an earlier run with the same settings")
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 2 if args.quick else 5
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_step: no CUDA device (torch.cuda.is_available() is False); nothing to measure")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    malloc = None if args.system_malloc else step_timing.keep_freed_memory()
    sets = ps.parameter_sets(args.device, args.quick, optional=True)
    unknown = [s for s in args.sets or [] if s not in sets]
    if unknown:
        print(f"bench_step: --sets must name sets of {list(sets)}, got {unknown}", file=sys.stderr)
        return 2
    chosen = args.sets or [k for k in sets if k not in ps.OPTIONAL_SETS]
    sets = {k: v for k, v in sets.items() if k in chosen}
    configs = [c for c in ps.step_configs(args.maps) if not (args.no_momentum and c.momentum)]
    settings = {"device": args.device, "quick": args.quick, "rounds": args.rounds,
                "min_sample_ms": args.min_sample_ms, "threads": torch.get_num_threads(),
                "malloc": malloc or step_report.SYSTEM_MALLOC}
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"bench_step_{args.device}")
    rows = load_rows(stem + ".rows.jsonl", settings) if args.resume else []
    done = {(r["set"], r["config"]) for r in rows}
    result = {"command": " ".join(["python", "bench/bench_step.py"] + (argv or sys.argv[1:])),
              "settings": settings, "machine": machine(args.device),
              "load_before": load_average(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    t0 = time.time()
    todo = [(s, c) for s in sets for c in configs if (s, c.label) not in done]
    with open(stem + ".rows.jsonl", "a" if args.resume else "w") as rows_file, \
            tqdm(total=len(todo), desc="bench_step", unit="row", file=sys.stderr) as bar:
        for set_name, shapes in sets.items():
            sb = None
            for config in configs:
                if (set_name, config.label) in done:
                    continue
                sb = sb or SetBench(set_name, shapes, args.device)
                bar.set_postfix_str(f"{set_name}: {config.label}")
                row = bench_row(sb, config, args.rounds, args.min_sample_ms / 1e3)
                rows.append(row)
                rows_file.write(json.dumps({"settings": settings, **row}) + "\n")
                rows_file.flush()
                bar.update()
                if sb.elements >= 10**6:  # free the row's parameters before the next
                    gc.collect()
            del sb
            gc.collect()
            if args.device == "cuda":
                torch.cuda.empty_cache()
    result.update(rows=rows, load_after=load_average(), seconds=round(time.time() - t0, 1))
    result["targets"] = step_report.targets(rows, args.device)
    text = step_report.markdown(result)
    from mirrorflow._atomic_file import write_text_atomic

    write_text_atomic(stem + ".json", json.dumps(result, indent=1))
    write_text_atomic(stem + ".md", text)
    print(text)
    print(f"bench_step: results in {stem}.{{json,md}}")
    return 0


def load_rows(path: str, settings: dict) -> list[dict]:
    """The rows of an earlier run with the same settings (for --resume)."""
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut off by a kill
                    continue
                if row.pop("settings", None) == settings:
                    rows.append(row)
    return rows


if __name__ == "__main__":
    sys.exit(main())
