"""The margin table of MATH.md §5: one row per map, one column per L, mean ± std over seeds."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import torch

from mirrorflow.maps import horizon_degree

DEGREES = (1, 2, 3)


def map_label(config: dict[str, Any]) -> str:
    """``hyperbolic``, ``euclidean`` or ``power L=3`` (the row name)."""
    return f"power L={config['degree']:g}" if config["mirror"] == "power" else config["mirror"]


def group_by_map(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[map_label(r["config"])].append(r)
    return dict(groups)


def own_degree_wins(records: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """Per map: on how many seeds it has the largest γ_L for its own L among the maps run on that
    seed, and on how many seeds it was compared."""
    by_seed: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_seed[r["config"]["seed"]].append(r)
    wins: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for runs in by_seed.values():
        for r in runs:
            L = horizon_degree(r["config"]["mirror"], r["config"]["degree"])
            column = f"gamma{L:g}"
            best = max(other["final"][column] for other in runs)
            w = wins[map_label(r["config"])]
            w[0] += int(r["final"][column] == best)
            w[1] += 1
    return {k: (v[0], v[1]) for k, v in wins.items()}


def _mean_std(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(values) > 1 else 0.0


def markdown_table(records: list[dict[str, Any]]) -> str:
    """The table (markdown) with the settings that produced it underneath."""
    groups = group_by_map(records)
    wins = own_degree_wins(records)
    exps = {}
    for L in DEGREES:
        top = max(abs(_mean_std([r["final"][f"gamma{L}"] for r in rs])[0])
                  for rs in groups.values())
        exps[L] = math.floor(math.log10(top)) if top > 0 else 0
    depth = records[0]["config"]["depth"]
    layers = " / ".join(f"layer {i + 1}" for i in range(depth - 1))
    header = ["map", "β"] + [f"γ{L} (×10^{exps[L]})" for L in DEGREES]
    header += [f"active neurons ({layers})" if depth > 2 else "active neurons", "own-L γ largest"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, rs in groups.items():
        euclidean = rs[0]["config"]["mirror"] == "euclidean"
        cells = [label, "–" if euclidean else f"{rs[0]['config']['beta']:g}"]
        for L in DEGREES:
            mean, std = _mean_std([r["final"][f"gamma{L}"] for r in rs])
            cells.append(f"{mean / 10 ** exps[L]:.3g} ± {std / 10 ** exps[L]:.2g}")
        active = []
        for i in range(depth - 1):
            mean, std = _mean_std([float(r["final"]["active"][i]) for r in rs])
            active.append(f"{mean:.1f} ± {std:.1f}")
        cells.append(" / ".join(active))
        w, n = wins[label]
        cells.append(f"{w}/{n} seeds")
        lines.append("| " + " | ".join(cells) + " |")
    c = records[0]["config"]
    ts = records[0]["time_rescaling"]
    lrs = ", ".join(f"{label} {rs[0]['config']['lr']:g}" for label, rs in groups.items())
    lines.append("")
    lines.append(
        f"{len(groups[next(iter(groups))])} seeds (data, teacher with {c['teacher_neurons']} "
        f"neurons and initialisation per seed); {depth} layers, width m = {c['width']}, "
        f"n = {c['samples']} inputs, {c['loss']} loss, update \"{c['update']}\", "
        f"{c['steps']} steps, η: {lrs} (optimizer lr m·η); init scale {c['init_scale']:g}; "
        f"time rescaling ε = {ts['epsilon']:g}, c_max = {ts['c_max']:g}; "
        f"active: strength > τ·max, τ = {c['threshold']:g}."
    )
    return "\n".join(lines) + "\n"
