"""Tables and figures over the finished VGG-16 runs of a folder (MATH.md §5).

    python experiments/vgg_cifar/report.py runs/vgg/fashion_cpu [--out DIR] [--log-scale]

For every data set found (file names start with it):

* ``<ds>_accuracy.md`` / ``.csv``: per map, the (β, lr) with the best mean over
  seeds of the best validation accuracy, as mean ± std (sample std over seeds);
  ``<ds>_accuracy_all.csv`` lists every (map, β, lr);
* ``<ds>_pruning.png`` / ``.csv``: validation accuracy after global magnitude
  pruning of the final weights (no fine-tuning; the first layer's bias is kept)
  at sparsities 0–99 %, per map (its winning β, lr; mean over seeds), each run
  on its own validation split and normalisation (its data folder and limits);
* ``<ds>_histograms.png`` / ``.csv``: first- and last-layer |θ| histograms per
  map (winning β, lr, first seed), bins equal in log10|θ| with ``--log-scale``;
* ``<ds>_margin.png`` / ``.csv``: the layerwise margin against epochs per map
  (of the runs that logged it; when none did, an earlier report's margin files
  are removed).

Runs of the C++ training loop (experiments/cpp, vgg_train with ``--save-params``)
under the folder are read from their run records (cpp_runs.py) and reported with
the others; their test split is the validation set, as in the Python pipeline,
and they log no margins.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from mirrorflow._atomic_file import write_atomic, write_text_atomic  # noqa: E402
from mirrorflow.diagnostics import weight_histogram  # noqa: E402
from mirrorflow.pruning import prune_global_magnitude  # noqa: E402

from cpp_runs import CppRun, find_cpp_runs  # noqa: E402
from evaluation import evaluate  # noqa: E402
from run_config import (CHECKPOINT_FILE, DONE_FILE, METRICS_FILE, RunConfig, build_model,  # noqa: E402
                        load_data, read_config)

SPARSITIES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99)


class Run:
    """A finished run: its configuration, summary and per-epoch log."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.config: RunConfig = read_config(folder)
        self.summary: dict[str, Any] = json.loads((folder / DONE_FILE).read_text())
        self.log = [json.loads(line) for line in (folder / METRICS_FILE).read_text().splitlines()]

    @property
    def label(self) -> str:
        """The map as the tables and figures name it."""
        return self.config.map_label()

    def final_state(self) -> dict[str, torch.Tensor]:
        """The model's state after the last epoch."""
        state = torch.load(self.folder / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
        return state["model"]


def find_runs(root: Path) -> list[Run | CppRun]:
    runs: list[Run | CppRun] = [Run(done.parent) for done in sorted(root.rglob(DONE_FILE))]
    runs += find_cpp_runs(root)
    if not runs:
        raise ValueError(f"report: no finished run (a folder with {DONE_FILE}, or a vgg_train "
                         f"run record *.run.json with its parameters) under {root}")
    return runs


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def accuracy_rows(runs: list[Run]) -> tuple[list[dict], dict[str, list[Run]]]:
    """Every (map, β, lr) with the mean/std over seeds of the best validation
    accuracy, and per map the runs (seeds) of its winning (β, lr)."""
    groups: dict[tuple, list[Run]] = defaultdict(list)
    for run in runs:
        c = run.config
        beta = None if c.mirror == "euclidean" else c.beta
        groups[(run.label, beta, c.lr)].append(run)
    rows = []
    for (label, beta, lr), members in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0, kv[0][2])):
        mean, std = _mean_std([r.summary["best_val_acc"] for r in members])
        rows.append({"map": label, "beta": beta, "lr": lr, "seeds": len(members),
                     "best_val_acc_mean": mean, "best_val_acc_std": std,
                     "diverged": sum(bool(r.summary["diverged"]) for r in members),
                     "_runs": sorted(members, key=lambda r: r.config.seed)})
    winners: dict[str, dict] = {}
    for row in rows:
        if row["map"] not in winners or row["best_val_acc_mean"] > winners[row["map"]]["best_val_acc_mean"]:
            winners[row["map"]] = row
    return rows, {label: row["_runs"] for label, row in winners.items()}


def _write_csv(path: Path, rows: list[dict]) -> None:
    keys = [k for k in rows[0] if not k.startswith("_")]

    def write(partial: Path) -> None:
        with open(partial, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    write_atomic(path, write)


def write_accuracy(rows: list[dict], winners: dict[str, list[Run]], prefix: Path) -> None:
    _write_csv(prefix.with_name(prefix.name + "_accuracy_all.csv"), rows)
    best = [r for r in rows if r["_runs"] is winners[r["map"]]]
    _write_csv(prefix.with_name(prefix.name + "_accuracy.csv"), best)
    lines = ["| map | best val. accuracy (%) | seeds | β | lr |", "|---|---|---|---|---|"]
    for r in best:
        beta = "–" if r["beta"] is None else f"{r['beta']:g}"
        lines.append(f"| {r['map']} | {100 * r['best_val_acc_mean']:.2f} ± "
                     f"{100 * r['best_val_acc_std']:.2f} | {r['seeds']} | {beta} | {r['lr']:g} |")
    write_text_atomic(prefix.with_name(prefix.name + "_accuracy.md"), "\n".join(lines) + "\n")


def _final_model(run: Run, data):
    model = build_model(run.config, data)
    model.load_state_dict(run.final_state())
    return model


class RunData:
    """Each run's own data: the split it was evaluated on and the statistics it
    was normalised with (they follow its data folder and limits), each loaded
    once however many runs share it."""

    def __init__(self) -> None:
        self._loaded: dict[tuple, tuple] = {}

    def _get(self, config: RunConfig) -> tuple:
        key = (config.dataset, config.data_root, config.limit_train, config.limit_test)
        if key not in self._loaded:
            data = load_data(config)
            self._loaded[key] = (data, data.channel_stats())
        return self._loaded[key]

    def data(self, config: RunConfig):
        return self._get(config)[0]

    def channel_stats(self, config: RunConfig) -> tuple:
        return self._get(config)[1]


def pruning_curves(winners: dict[str, list[Run]], run_data: RunData, eval_limit: Optional[int],
                   device: str = "cpu") -> list[dict]:
    """Validation accuracy after pruning the fraction s of all weights (the
    first layer's bias excepted), per map and sparsity, mean ± std over seeds;
    each run on its own validation split."""
    rows = []
    jobs = [(label, run) for label, runs in winners.items() for run in runs]
    accs: dict[tuple[str, float], list[float]] = defaultdict(list)
    for label, run in tqdm(jobs, desc="pruning", file=sys.stderr):
        data = run_data.data(run.config)
        mean, std = run_data.channel_stats(run.config)
        images, labels = data.test_images[:eval_limit], data.test_labels[:eval_limit]
        model = _final_model(run, data).to(device)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        for s in SPARSITIES:
            model.load_state_dict(state)
            prune_global_magnitude([m.weight for m in model.weight_layers()], s)
            acc = evaluate(model, images, labels, mean, std, run.config.eval_batch_size)["acc"]
            accs[(label, s)].append(acc)
    for (label, s), values in accs.items():
        m, sd = _mean_std(values)
        rows.append({"map": label, "sparsity": s, "val_acc_mean": m, "val_acc_std": sd,
                     "seeds": len(values)})
    return rows


def plot_pruning(rows: list[dict], path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for label in sorted({r["map"] for r in rows}):
        mine = [r for r in rows if r["map"] == label]
        xs = [100 * r["sparsity"] for r in mine]
        ys = [100 * r["val_acc_mean"] for r in mine]
        err = [100 * r["val_acc_std"] for r in mine]
        ax.errorbar(xs, ys, yerr=err, marker="o", ms=3, capsize=2, label=label)
    ax.set_xlabel("sparsity (% of weights pruned)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_histograms(winners: dict[str, list[Run]], run_data: RunData, path: Path,
                    log_scale: bool, title: str) -> list[dict]:
    models = {label: _final_model(runs[0], run_data.data(runs[0].config))
              for label, runs in winners.items()}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    rows = []
    for ax, which in zip(axes, ("first", "last")):
        tensors = {label: getattr(m, f"{which}_layer")().weight for label, m in models.items()}
        mags = torch.cat([t.detach().abs().reshape(-1) for t in tensors.values()])
        positive = mags[mags > 0]
        lo = float(positive.min()) if log_scale else 0.0
        value_range = (lo, float(mags.max()))
        for label, t in sorted(tensors.items()):
            counts, edges = weight_histogram(t, bins=60, log_scale=log_scale, value_range=value_range)
            frac = counts / t.numel()
            ax.stairs(frac.numpy(), edges.numpy(), label=label)
            rows += [{"map": label, "layer": which, "lo": float(a), "hi": float(b), "fraction": float(f)}
                     for a, b, f in zip(edges[:-1], edges[1:], frac)]
        if log_scale:
            ax.set_xscale("log")
        ax.set_xlabel("|θ|")
        ax.set_ylabel("fraction of the layer's weights")
        ax.set_title(f"{which} layer ({title})")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return rows


def plot_margin(winners: dict[str, list[Run]], path: Path, title: str) -> list[dict]:
    """The margin figure of the maps whose runs logged it (Python runs); none, and
    no figure, when no run did."""
    winners = {label: [r for r in runs if "layerwise_margin" in r.log[0]]
               for label, runs in winners.items()}
    labels = sorted(label for label, runs in winners.items() if runs)
    if not labels:
        return []
    fig, axes = plt.subplots(1, len(labels), figsize=(4 * len(labels), 3.4), squeeze=False)
    rows = []
    for ax, label in zip(axes[0], labels):
        for run in winners[label]:
            epochs = [r["epoch"] for r in run.log]
            margins = [r["layerwise_margin"] for r in run.log]
            ax.plot(epochs, margins, marker="o", ms=3, label=f"seed {run.config.seed}")
            rows += [{"map": label, "seed": run.config.seed, "epoch": e, "layerwise_margin": m,
                      "degree": r["margin_degree"]} for e, m, r in zip(epochs, margins, run.log)]
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_title(f"{label}, L = {winners[label][0].log[0]['margin_degree']:g}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("min q / Π‖θₗ‖_L")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"layerwise margin ({title})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return rows


def _title(dataset: str, configs: list[RunConfig]) -> str:
    """The figures' title: the dataset, and the winners' widths and epochs."""
    widths = sorted({c.width for c in configs})
    epochs = sorted({c.epochs for c in configs})
    width = ("width " if len(widths) == 1 else "widths ") + ", ".join(f"{w:g}" for w in widths)
    return f"{dataset}, {width}, {'/'.join(map(str, epochs))} epochs"


def report(root: Path, out: Path, log_scale: bool = False, eval_limit: Optional[int] = None,
           device: str = "cpu") -> list[Path]:
    """Writes every table and figure; returns the files written."""
    runs = find_runs(root)
    out.mkdir(parents=True, exist_ok=True)
    run_data = RunData()
    by_dataset: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_dataset[run.config.dataset].append(run)
    for dataset, members in sorted(by_dataset.items()):
        prefix = out / dataset
        rows, winners = accuracy_rows(members)
        write_accuracy(rows, winners, prefix)
        title = _title(dataset, [run.config for runs in winners.values() for run in runs])
        curves = pruning_curves(winners, run_data, eval_limit, device)
        _write_csv(prefix.with_name(f"{dataset}_pruning.csv"), curves)
        plot_pruning(curves, prefix.with_name(f"{dataset}_pruning.png"), title)
        hist = plot_histograms(winners, run_data,
                               prefix.with_name(f"{dataset}_histograms.png"), log_scale, title)
        _write_csv(prefix.with_name(f"{dataset}_histograms.csv"), hist)
        margin = plot_margin(winners, prefix.with_name(f"{dataset}_margin.png"), title)
        if margin:
            _write_csv(prefix.with_name(f"{dataset}_margin.csv"), margin)
        else:  # no run logged margins: an earlier report's margin files would mislead
            for ext in ("png", "csv"):
                prefix.with_name(f"{dataset}_margin.{ext}").unlink(missing_ok=True)
        print((prefix.with_name(f"{dataset}_accuracy.md")).read_text(), end="")
    return sorted(out.iterdir())


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="folder holding the run folders")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default ROOT/report)")
    parser.add_argument("--log-scale", action="store_true", help="log-spaced histogram bins")
    parser.add_argument("--eval-limit", type=int, default=None,
                        help="validation images used for the pruning curves (default: all)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="device of the pruned-network evaluations")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        report(args.root, args.out or args.root / "report", args.log_scale, args.eval_limit,
               args.device)
    except ValueError as e:
        sys.exit(f"report.py: error: {e}")


if __name__ == "__main__":
    main()
