"""Compares the three maps on the student–teacher problem (MATH.md §5): table and figures.

    python experiments/student_teacher/compare.py --depth 2 --seeds 5
    python experiments/student_teacher/compare.py --depth 3 --seeds 5

Writes under --out (default results/student_teacher/<two|three>_layer): runs/<key>.json and
runs/<key>_history.csv per run (as each finishes; a rerun skips finished runs), runs.csv,
table.md and figures/*.png; prints the table and the figure paths.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from student_teacher import figures  # noqa: E402
from student_teacher.runs import run_all  # noqa: E402
from student_teacher.table import markdown_table  # noqa: E402
from student_teacher.train import LOSSES, RunConfig  # noqa: E402

MAPS = ("hyperbolic", "euclidean", "power")

#: Defaults per depth: width, steps, η per map (the optimizer gets m·η), tuned so that the late
#: phase is reached in the given steps with ε = 1e-2, c_max = 1e4 (docs/results_student_teacher.md).
DEFAULTS: dict[int, dict[str, Any]] = {
    2: {"width": 50, "steps": 6000, "lr": {"hyperbolic": 0.1, "euclidean": 1.0, "power": 3.0}},
    3: {"width": 30, "steps": 6000, "lr": {"hyperbolic": 0.1, "euclidean": 0.1, "power": 0.3}},
}
DEFAULT_BETA = {"hyperbolic": 0.01, "euclidean": 1.0, "power": 0.01}


def _per_map(values: Optional[list[str]], name: str) -> dict[str, float]:
    """Parses ``MAP=VALUE`` pairs."""
    result: dict[str, float] = {}
    for item in values or []:
        mirror, sep, value = item.partition("=")
        if not sep or mirror not in MAPS:
            raise SystemExit(f"--{name}: expected MAP=VALUE with MAP in {MAPS}, got {item!r}")
        result[mirror] = float(value)
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options shared by compare.py and beta_sweep.py."""
    parser.add_argument("--depth", type=int, choices=(2, 3), default=2)
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1")
    parser.add_argument("--steps", type=int, help="default: 6000")
    parser.add_argument("--width", type=int, help="student neurons per hidden layer")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--teacher-neurons", type=int, default=4)
    parser.add_argument("--gap", type=float, default=0.1)
    parser.add_argument("--init-scale", type=float, default=1.0)
    parser.add_argument("--degree", type=float, default=3.0, help="L of the power map")
    parser.add_argument("--lr", nargs="+", metavar="MAP=ETA", help="η per map")
    parser.add_argument("--loss", choices=sorted(LOSSES), default="exponential")
    parser.add_argument("--update", choices=("dual", "metric"), default="dual")
    parser.add_argument("--epsilon", type=float, default=1e-2, help="time rescaling ε")
    parser.add_argument("--c-max", type=float, default=1e4, help="time rescaling c_max")
    parser.add_argument("--threshold", type=float, default=0.05, help="τ of the active neurons")
    parser.add_argument("--records", type=int, default=60, help="tracked points per run")


def config_for(args: argparse.Namespace, mirror: str, beta: float, seed: int) -> RunConfig:
    defaults = DEFAULTS[args.depth]
    lr = {**defaults["lr"], **_per_map(args.lr, "lr")}[mirror]
    return RunConfig(
        mirror=mirror, beta=beta, degree=args.degree, samples=args.samples,
        teacher_neurons=args.teacher_neurons, gap=args.gap, depth=args.depth,
        width=defaults["width"] if args.width is None else args.width, init_scale=args.init_scale, lr=lr,
        steps=defaults["steps"] if args.steps is None else args.steps, loss=args.loss, epsilon=args.epsilon,
        c_max=args.c_max, update=args.update, threshold=args.threshold, records=args.records,
        seed=seed,
    )


def main(argv: Optional[list[str]] = None) -> list[Path]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    add_arguments(parser)
    parser.add_argument("--maps", nargs="+", choices=MAPS, default=list(MAPS))
    parser.add_argument("--beta", nargs="+", metavar="MAP=BETA", help="β per map (default 0.01)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    out = args.out or Path("results/student_teacher") / f"{['two', 'three'][args.depth - 2]}_layer"
    betas = {**DEFAULT_BETA, **_per_map(args.beta, "beta")}
    configs = [config_for(args, m, betas[m], s) for s in range(args.seeds) for m in args.maps]
    records = run_all(configs, out, desc=f"{args.depth}-layer comparison")
    table = markdown_table(records)
    (out / "table.md").write_text(table)
    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    paths = [
        figures.plot_neurons(records, fig_dir / "neurons.png"),
        figures.plot_histograms(records, fig_dir / "histograms.png"),
        figures.plot_margins_over_time(records, fig_dir / "margins_over_time.png"),
    ]
    if args.depth == 3:
        paths.append(figures.plot_decision_boundary(records, fig_dir / "decision_boundary.png"))
    print()
    print(table)
    print(f"results: {out / 'runs.csv'}, {out / 'table.md'}")
    for p in paths:
        print(f"figure: {p}")
    return paths


if __name__ == "__main__":
    main()
