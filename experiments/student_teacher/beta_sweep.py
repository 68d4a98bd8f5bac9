"""How β delays the implicit bias (MATH.md §1 notes, §5): margin and active neurons against β
and training time, for the hyperbolic and power maps.

    python experiments/student_teacher/beta_sweep.py --betas 0.01 0.1 1 10 --seeds 3

Writes under --out (default results/student_teacher/beta_sweep_<two|three>_layer): runs/ (one
JSON and history CSV per finished run; a rerun skips them), runs.csv, beta_table.md and
figures/beta_sweep_time.png, figures/beta_sweep_final.png; prints the table and figure paths.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mirrorflow.maps import horizon_degree  # noqa: E402
from student_teacher.compare import add_arguments, config_for  # noqa: E402
from student_teacher.runs import run_all  # noqa: E402
from student_teacher.table import map_label  # noqa: E402


def _own(r: dict[str, Any]) -> str:
    return f"gamma{horizon_degree(r['config']['mirror'], r['config']['degree']):g}"


def _target(r: dict[str, Any]) -> Callable[[int], bool]:
    """The sparse (hyperbolic: at most teacher + 1 active) or dense (power: at least 90 % of the
    width active) end state whose arrival time the table reports."""
    if r["config"]["mirror"] == "hyperbolic":
        return lambda active: active <= r["teacher_neurons"] + 1
    return lambda active: active >= 0.9 * r["config"]["width"]


def first_time(r: dict[str, Any]) -> Optional[float]:
    """Earliest tracked time from which the run stays in its target state; None if never."""
    ok = _target(r)
    t = None
    for h in r["history"]:
        if ok(h["active"][0]):
            t = h["time"] if t is None else t
        else:
            t = None
    return t


def _stats(values: list[float]) -> str:
    v = torch.tensor(values, dtype=torch.float64)
    return f"{float(v.mean()):.3g} ± {float(v.std()) if len(values) > 1 else 0.0:.2g}"


def beta_table(records: list[dict[str, Any]]) -> str:
    groups: dict[tuple[str, float], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(map_label(r["config"]), r["config"]["beta"])].append(r)
    lines = [
        "| map | β | own γ_L (final) | active neurons (final) "
        "| time to the sparse/dense state (median) |",
        "|---|---|---|---|---|",
    ]
    for (label, beta), rs in sorted(groups.items()):
        times = sorted(t for t in map(first_time, rs) if t is not None)
        reached = (
            f"{times[len(times) // 2]:.3g} ({len(times)}/{len(rs)} seeds)"
            if times else f"not reached (0/{len(rs)})"
        )
        lines.append(
            f"| {label} | {beta:g} | {_stats([r['final'][_own(r)] for r in rs])} | "
            f"{_stats([float(r['final']['active'][0]) for r in rs])} | {reached} |"
        )
    c, ts = records[0]["config"], records[0]["time_rescaling"]
    lines += ["", f"{c['depth']} layers, m = {c['width']}, teacher {records[0]['teacher_neurons']} "
              f"neurons, {c['steps']} steps, time rescaling ε = {ts['epsilon']:g}, "
              f"c_max = {ts['c_max']:g}, τ = {c['threshold']:g}; sparse: ≤ teacher + 1 active, "
              "dense: ≥ 90 % of m active."]
    return "\n".join(lines) + "\n"


def plot_over_time(records: list[dict[str, Any]], maps: list[str], path: Path) -> Path:
    betas = sorted({r["config"]["beta"] for r in records})
    cmap = plt.get_cmap("viridis")
    fig, axes = plt.subplots(2, len(maps), figsize=(4.2 * len(maps), 6.0), squeeze=False)
    for col, mirror in enumerate(maps):
        for r in (r for r in records if r["config"]["mirror"] == mirror):
            color = cmap(betas.index(r["config"]["beta"]) / max(1, len(betas) - 1))
            hist = r["history"][1:]
            label = f"β = {r['config']['beta']:g}" if r["config"]["seed"] == 0 else None
            axes[0, col].plot([h["time"] for h in hist], [h["active"][0] for h in hist],
                              color=color, lw=0.9, label=label)
            pts = [(h["time"], h[_own(r)]) for h in hist if h[_own(r)] > 0]
            if pts:
                axes[1, col].plot(*zip(*pts), color=color, lw=0.9, label=label)
        name = map_label({"mirror": mirror, "degree": records[0]["config"]["degree"]})
        axes[0, col].set_title(f"{name}: active neurons", fontsize=9)
        axes[1, col].set_title(f"{name}: own γ_L (where > 0)", fontsize=9)
        axes[0, col].axhline(records[0]["teacher_neurons"], color="0.5", ls=":", lw=1)
        axes[1, col].set_yscale("log")
        for ax in axes[:, col]:
            ax.set_xscale("log")
            ax.set_xlabel("time Σ ηₜ")
        axes[0, col].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_final(records: list[dict[str, Any]], maps: list[str], path: Path) -> Path:
    """Final active neurons and own γ_L against β; γ_L relative to the smallest β of the same
    seed, so that maps of different L share one axis."""
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.0))
    for mirror in maps:
        rs = [r for r in records if r["config"]["mirror"] == mirror]
        betas = sorted({r["config"]["beta"] for r in rs})
        base = {
            r["config"]["seed"]: r["final"][_own(r)] for r in rs if r["config"]["beta"] == betas[0]
        }
        name = map_label(rs[0]["config"])
        values = (lambda r: r["final"]["active"][0],
                  lambda r: r["final"][_own(r)] / base[r["config"]["seed"]])
        for ax, value in zip(axes, values):
            v = [torch.tensor([float(value(r)) for r in rs if r["config"]["beta"] == b])
                 for b in betas]
            ax.errorbar(betas, [float(x.mean()) for x in v],
                        yerr=[float(x.std()) if len(x) > 1 else 0.0 for x in v],
                        marker="o", capsize=3, label=name)
    axes[0].axhline(records[0]["teacher_neurons"], color="0.5", ls=":", lw=1, label="teacher")
    axes[0].set_ylabel("active neurons (final)")
    axes[1].set_ylabel("own γ_L (final) / at the smallest β")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("β")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: Optional[list[str]] = None) -> list[Path]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    add_arguments(parser)
    parser.set_defaults(seeds=3)
    parser.add_argument("--maps", nargs="+", choices=("hyperbolic", "power"),
                        default=["hyperbolic", "power"])
    parser.add_argument("--betas", nargs="+", type=float, default=[0.01, 0.1, 1.0, 10.0])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    name = f"beta_sweep_{['two', 'three'][args.depth - 2]}_layer"
    out = args.out or Path("results/student_teacher") / name
    configs = [config_for(args, m, b, s)
               for m in args.maps for b in args.betas for s in range(args.seeds)]
    records = run_all(configs, out, desc="β sweep")
    table = beta_table(records)
    (out / "beta_table.md").write_text(table)
    (out / "figures").mkdir(exist_ok=True)
    paths = [plot_over_time(records, args.maps, out / "figures" / "beta_sweep_time.png"),
             plot_final(records, args.maps, out / "figures" / "beta_sweep_final.png")]
    print()
    print(table)
    for p in paths:
        print(f"figure: {p}")
    return paths


if __name__ == "__main__":
    main()
