"""Finished runs of the C++ training loop (experiments/cpp, program vgg_train;
docs/cpp_training.md) as report.py reads them.

vgg_train writes, once a run has finished, a run record ``<log>.run.json`` next
to its CSV log ``<log>.csv``: its options, the folder it read the data from,
the epochs and steps done and, with ``--save-params``, the file of its final
parameters. A :class:`CppRun` holds what report.py needs of such a run: its
configuration as a :class:`RunConfig` (the same VGG-16, data and optimizer as
the Python pipeline's), the summary (best test accuracy) and the per-epoch log
from the CSV, and the final parameters. The C++ program logs no margins, so its
runs have none in the margin figure.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

import torch

from run_config import RunConfig

RECORD_SUFFIX = ".run.json"
#: vgg_train's data set names and the Python pipeline's.
_DATASETS = {"fashion-mnist": "fashion_mnist", "cifar10": "cifar10"}


class NoParameters(ValueError):
    """A finished run without --save-params: nothing to prune or plot."""


class CppRun:
    """A finished vgg_train run, from its run record (ValueError, naming the
    file, when the record, its CSV or its parameters are missing or damaged)."""

    def __init__(self, record_path: Path) -> None:
        self.folder = record_path.parent
        try:
            record: dict[str, Any] = json.loads(record_path.read_text())
            dataset = _DATASETS[record["dataset"]]
            self.config = RunConfig(
                dataset=dataset, data_root=record["data_dir"],
                limit_train=record["train_limit"] or None, limit_test=record["test_limit"] or None,
                mirror=record["mirror"], beta=record["beta"], degree=record["degree"],
                beta_scaling=record["beta_scaling"], update=record["update"],
                normalize=record["normalize"], lr=record["lr"], batch_size=record["batch_size"],
                epochs=record["epochs"], seed=record["seed"], width=record["width"],
                head=list(record["head_hidden"]), augment=record["augment"],
                eval_batch_size=record["batch_size"])
            params = record["params"]
            csv_name = record["csv"]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{record_path}: not a vgg_train run record ({e!r})") from None
        if params is None:
            raise NoParameters(f"{record_path}: the run saved no parameters (run vgg_train "
                               f"with --save-params FILE to report on it)")
        self.params_path = self.folder / params
        if not self.params_path.is_file():
            raise ValueError(f"{record_path}: its parameters {self.params_path} are missing")
        self.log = _read_log(self.folder / csv_name)
        accuracies = [row["val_acc"] for row in self.log]
        self.summary = {"best_val_acc": max(accuracies),
                        "diverged": not all(math.isfinite(row["train_loss"]) for row in self.log)}

    @property
    def label(self) -> str:
        """The map as the tables and figures name it, marked as a C++ run (so
        that a folder of both kinds keeps them apart)."""
        return f"{self.config.map_label()} [C++]"

    def final_state(self) -> dict[str, torch.Tensor]:
        """The final parameters by name (the names of the Python VGG16)."""
        return dict(torch.load(self.params_path, map_location="cpu", weights_only=True))


def _read_log(path: Path) -> list[dict[str, float]]:
    """The CSV's epochs as report.py's log rows (test accuracy as ``val_acc``)."""
    try:
        with open(path, newline="") as f:
            rows = [{"epoch": int(r["epoch"]), "steps": int(r["steps"]),
                     "train_loss": float(r["train_loss"]), "train_acc": float(r["train_accuracy"]),
                     "val_loss": float(r["test_loss"]), "val_acc": float(r["test_accuracy"])}
                    for r in csv.DictReader(f)]
    except (OSError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: not a vgg_train CSV log ({e!r})") from None
    if not rows:
        raise ValueError(f"{path}: the CSV log has no epoch")
    return rows


def find_cpp_runs(root: Path) -> list[CppRun]:
    """The runs of every run record under `root`, in path order; a run that
    saved no parameters is left out, with a line on stderr saying so."""
    runs = []
    for path in sorted(root.rglob("*" + RECORD_SUFFIX)):
        try:
            runs.append(CppRun(path))
        except NoParameters as e:
            print(f"report: left out {e}", file=sys.stderr)
    return runs
