"""A grid of VGG-16 runs, maps × β × lr × seeds, from a JSON config file.

    python experiments/vgg_cifar/sweep.py experiments/vgg_cifar/configs/fashion_cpu.json --run
    python experiments/vgg_cifar/sweep.py CONFIG --list > commands.txt   # for a scheduler

The config file::

    {"out": "runs/vgg/fashion_cpu",              # folder of the run folders
     "common": {"dataset": "fashion_mnist", ...}, # RunConfig fields shared by every run
     "maps": [{"mirror": "euclidean"},            # RunConfig fields per map, and
              {"mirror": "hyperbolic", "betas": [0.001, 0.01]}],  # optional own betas/lrs
     "betas": [0.01, 0.1], "lrs": [0.05, 0.1], "seeds": [0, 1],
     "train_options": ["--threads", "1"]}         # launch options of train.py

``euclidean`` ignores β and runs once per (lr, seed). Finished runs (with a
``done.json``) are skipped and unfinished ones resume from their checkpoint,
so a killed sweep continues where it stopped. ``--run`` uses one GPU per run,
as many at once as there are GPUs (``--gpus``), else runs ``--jobs`` CPU runs
at a time; each run's output goes to ``<run folder>/train.log``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import queue
import shlex
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Optional

from tqdm import tqdm

from run_config import RunConfig, is_done

TRAIN = Path(__file__).with_name("train.py")
_SWEEP_KEYS = {"out", "common", "maps", "betas", "lrs", "seeds", "train_options"}


def grid(spec: dict[str, Any]) -> list[RunConfig]:
    """The run configurations of a sweep specification (ValueError naming the
    key when the file is malformed)."""
    unknown = sorted(set(spec) - _SWEEP_KEYS)
    if unknown:
        raise ValueError(f"sweep config: unknown keys {unknown}; known keys are {sorted(_SWEEP_KEYS)}")
    for key in ("maps", "lrs", "seeds"):
        if not isinstance(spec.get(key), list) or not spec[key]:
            raise ValueError(f"sweep config: {key!r} must be a non-empty list, got {spec.get(key)!r}")
    configs = []
    for entry in spec["maps"]:
        entry = dict(entry)
        betas = entry.pop("betas", spec.get("betas", [RunConfig.beta]))
        lrs = entry.pop("lrs", spec["lrs"])
        fields = {**spec.get("common", {}), **entry}
        if fields.get("mirror", RunConfig.mirror) == "euclidean":
            betas = [fields.get("beta", RunConfig.beta)]
        for beta, lr, seed in itertools.product(betas, lrs, spec["seeds"]):
            configs.append(RunConfig.from_dict({**fields, "beta": float(beta), "lr": float(lr),
                                                "seed": int(seed)}))
    names = [c.run_name() for c in configs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"sweep config: runs {duplicates} appear twice (same map, β, lr, seed)")
    return configs


def command(config: RunConfig, out: Path, python: str, options: list[str]) -> list[str]:
    return [python, str(TRAIN), *config.to_args(), "--out", str(out), *options]


def run_all(jobs: list[tuple[RunConfig, list[str]]], out: Path, slots: list[Optional[int]]) -> list[str]:
    """Runs the commands, one per slot at a time (a slot is a GPU index or None
    for a CPU run); returns the names of the runs that failed."""
    todo: "queue.Queue[tuple[RunConfig, list[str]]]" = queue.Queue()
    for job in jobs:
        todo.put(job)
    failed: list[str] = []
    bar = tqdm(total=len(jobs), desc="runs", file=sys.stderr)
    lock = threading.Lock()

    def worker(gpu: Optional[int]) -> None:
        env = dict(os.environ)
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(gpu)
        while True:
            try:
                config, cmd = todo.get_nowait()
            except queue.Empty:
                return
            run_dir = out / config.run_name()
            run_dir.mkdir(parents=True, exist_ok=True)
            with open(run_dir / "train.log", "a") as log:
                code = subprocess.call(cmd, stdout=log, stderr=log, env=env)
            with lock:
                if code != 0:
                    failed.append(config.run_name())
                    tqdm.write(f"{config.run_name()} failed (exit {code}); see {run_dir}/train.log",
                               file=sys.stderr)
                bar.update(1)

    threads = [threading.Thread(target=worker, args=(slot,)) for slot in slots]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bar.close()
    return failed


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, help="sweep config (JSON)")
    parser.add_argument("--out", type=Path, default=None, help="overrides the config's 'out'")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--list", action="store_true", help="print one command per unfinished run")
    mode.add_argument("--run", action="store_true", help="run the unfinished runs here")
    parser.add_argument("--gpus", type=int, default=None, help="GPUs to use (default: all visible)")
    parser.add_argument("--jobs", type=int, default=1, help="CPU runs at a time when no GPU is used")
    parser.add_argument("--python", default=sys.executable, help="interpreter for train.py")
    args = parser.parse_args(argv)
    try:
        spec = json.loads(args.config.read_text())
    except (OSError, json.JSONDecodeError) as e:
        parser.error(f"cannot read the sweep config {args.config}: {e}")
    try:
        configs = grid(spec)
    except ValueError as e:
        parser.error(f"{args.config}: {e}")
    out = args.out or Path(spec.get("out", "runs/vgg"))
    options = [str(o) for o in spec.get("train_options", [])]
    pending = [c for c in configs if not is_done(out / c.run_name())]
    print(f"{len(configs)} runs, {len(configs) - len(pending)} finished, {len(pending)} to run",
          file=sys.stderr)
    jobs = [(c, command(c, out, args.python, options)) for c in pending]
    if args.list:
        for _, cmd in jobs:
            print(shlex.join(cmd))
        return 0
    gpus = _gpu_count() if args.gpus is None else args.gpus
    slots: list[Optional[int]] = list(range(gpus)) if gpus else [None] * max(1, args.jobs)
    failed = run_all(jobs, out, slots)
    if failed:
        print(f"{len(failed)} runs failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
