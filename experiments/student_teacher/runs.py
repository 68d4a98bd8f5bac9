"""Runs a list of configurations, one JSON (and history CSV) per finished run; resumes."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from mirrorflow._atomic_file import write_atomic, write_text_atomic

from .problem import Problem
from .train import RunConfig, train

FINAL_COLUMNS = (
    "loss", "min_margin", "gamma1", "gamma2", "gamma3", "soft_gamma", "active", "balance_drift",
    "step", "time",
)


def _history_csv(record: dict[str, Any]) -> str:
    lines = [",".join(FINAL_COLUMNS)]
    for h in record["history"]:
        lines.append(",".join(
            "/".join(str(a) for a in h[c]) if c == "active" else repr(h[c]) for c in FINAL_COLUMNS
        ))
    return "\n".join(lines) + "\n"


def write_summary_csv(path: Path, records: list[dict[str, Any]]) -> None:
    """One row per finished run: its settings and final quantities."""
    if not records:
        return
    config_columns = list(records[0]["config"])

    def write(partial: Path) -> None:
        with partial.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(
                config_columns + ["epsilon", "c_max", "teacher_neurons"] + list(FINAL_COLUMNS)
            )
            for r in records:
                final, ts = r["final"], r["time_rescaling"]
                writer.writerow(
                    [r["config"][c] for c in config_columns]
                    + [ts["epsilon"], ts["c_max"], r["teacher_neurons"]]
                    + ["/".join(map(str, final[c])) if c == "active" else final[c]
                       for c in FINAL_COLUMNS]
                )

    write_atomic(path, write)


def run_all(configs: list[RunConfig], out: Path, desc: str) -> list[dict[str, Any]]:
    """Trains every configuration whose result is not yet in ``out/runs/``; returns all records.

    Each run is written as soon as it finishes (``runs/<key>.json`` and
    ``runs/<key>_history.csv``) and ``out/runs.csv`` is rewritten, so an
    interrupted call loses only the run in progress and a rerun skips the rest.
    """
    torch.set_num_threads(1)  # tiny networks: threads only add overhead
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    pending = [c for c in configs if not (runs_dir / f"{c.key()}.json").exists()]
    if len(pending) < len(configs):
        done = len(configs) - len(pending)
        print(f"{desc}: {done} of {len(configs)} runs already in {runs_dir}, skipped")
    problems: dict[RunConfig, Problem] = {}
    records: list[dict[str, Any]] = []
    with tqdm(total=sum(c.steps for c in pending), desc=desc, unit="step", smoothing=0.05) as bar:
        for config in configs:
            path = runs_dir / f"{config.key()}.json"
            if path.exists():
                records.append(json.loads(path.read_text()))
                continue
            bar.set_postfix_str(f"{config.mirror} β={config.beta:g} seed {config.seed}")
            problem_key = RunConfig(mirror="euclidean", beta=1.0, samples=config.samples,
                                    teacher_neurons=config.teacher_neurons, gap=config.gap,
                                    seed=config.seed)
            if problem_key not in problems:
                problems[problem_key] = config.problem()
            record = train(problems[problem_key], config, bar.update)
            write_text_atomic(runs_dir / f"{config.key()}_history.csv", _history_csv(record))
            write_text_atomic(path, json.dumps(record))
            records.append(record)
            write_summary_csv(out / "runs.csv", records)
    write_summary_csv(out / "runs.csv", records)
    return records
