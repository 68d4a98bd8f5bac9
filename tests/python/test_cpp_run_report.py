"""report.py over runs of the C++ training loop (experiments/cpp, vgg_train):
the run record vgg_train writes when a run finishes, and the tables and figures
made from it, on small real-format Fashion-MNIST files written here.

Oracles: the command line (the record's settings); the CSV log (the best test
accuracy); the C++ program's own evaluation of its final parameters (the
report's accuracy at sparsity 0, computed in Python, must equal the last
epoch's test accuracy).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import torch

# pytestmark: skipped, like test_cpp_train_loop.py, when vgg_train is not built.
from test_cpp_train_loop import WIDTH, make_fashion_mnist, pytestmark, run, run_ok  # noqa: F401

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "vgg_cifar"
sys.path.insert(0, str(EXPERIMENT))

import report  # noqa: E402
import train  # noqa: E402
from cpp_runs import CppRun  # noqa: E402
from run_config import RunConfig  # noqa: E402

COMMON = ["--train-limit", "96", "--test-limit", "40", "--epochs", "2", "--batch-size", "32",
          "--progress", "false", "--lr", "0.05"]


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _report(root: Path, out: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report.report(root, out)
    finally:
        torch.set_num_threads(threads)


def _cpp_run(tmp_path: Path, data: Path, name: str, *args: str) -> None:
    run_ok(tmp_path, data, *COMMON, *args, "--save-params", str(tmp_path / f"{name}.pt"),
           csv_name=f"{name}.csv")


def test_the_run_record_holds_the_command_line(tmp_path):
    data = tmp_path / "data"
    make_fashion_mnist(data, 96, 40)
    _cpp_run(tmp_path, data, "hyp", "--mirror", "hyperbolic", "--beta", "0.1",
             "--beta-scaling", "fan_in", "--seed", "3", "--head-hidden", "24,8")
    record = json.loads((tmp_path / "hyp.run.json").read_text())
    assert record == {
        "program": "vgg_train", "dataset": "fashion-mnist", "data_dir": str(data.resolve()),
        "train_limit": 96, "test_limit": 40, "width": WIDTH, "head_hidden": [24, 8],
        "augment": True, "mirror": "hyperbolic", "beta": 0.1, "degree": 3.0,
        "beta_scaling": "fan_in", "update": "metric", "normalize": True, "lr": 0.05,
        "batch_size": 32, "epochs": 2, "max_steps": 0, "seed": 3, "device": "cpu",
        "threads": 1, "epochs_done": 2, "steps": 6, "csv": "hyp.csv", "params": "hyp.pt"}
    config = CppRun(tmp_path / "hyp.run.json").config
    assert (config.dataset, config.limit_train, config.head, config.beta_scaling) == (
        "fashion_mnist", 96, [24, 8], "fan_in")


def test_report_tables_cpp_runs_and_keeps_them_apart_from_python_runs(tmp_path, capsys):
    data = tmp_path / "data"
    make_fashion_mnist(data, 96, 40)
    cpp = tmp_path / "runs" / "cpp"
    cpp.mkdir(parents=True)
    _cpp_run(cpp, data, "hyperbolic", "--mirror", "hyperbolic", "--beta", "0.1")
    _cpp_run(cpp, data, "power", "--mirror", "power", "--beta", "0.1")
    run_ok(cpp, data, *COMMON, csv_name="unsaved.csv")  # no --save-params: left out
    config = RunConfig(dataset="fashion_mnist", data_root=str(data), limit_train=96,
                       limit_test=40, mirror="hyperbolic", beta=0.1, lr=0.05, batch_size=32,
                       epochs=2, width=WIDTH, margin_samples=32, eval_batch_size=40)
    threads = torch.get_num_threads()
    try:
        train.train(config, tmp_path / "runs" / "python", "cpu", threads=1, progress=False)
    finally:
        torch.set_num_threads(threads)

    out = tmp_path / "report"
    _report(tmp_path / "runs", out)
    assert "left out " + str(cpp / "unsaved.run.json") in capsys.readouterr().err
    best = {r["map"]: r for r in _rows(out / "fashion_mnist_accuracy_all.csv")}
    assert sorted(best) == ["hyperbolic", "hyperbolic [C++]", "power (L=3) [C++]"]
    pruned = {(r["map"], float(r["sparsity"])): float(r["val_acc_mean"])
              for r in _rows(out / "fashion_mnist_pruning.csv")}
    for name, label in (("hyperbolic", "hyperbolic [C++]"), ("power", "power (L=3) [C++]")):
        log = _rows(cpp / f"{name}.csv")
        assert float(best[label]["best_val_acc_mean"]) == max(
            float(r["test_accuracy"]) for r in log)
        # Python's evaluation of the saved parameters is the C++ program's own (to one
        # of the 40 test images: the two normalise the images in their own float order).
        assert pruned[(label, 0.0)] == pytest.approx(float(log[-1]["test_accuracy"]),
                                                     abs=1 / 40 + 1e-9)
    histograms = {r["map"] for r in _rows(out / "fashion_mnist_histograms.csv")}
    assert histograms == set(best)
    margins = {r["map"] for r in _rows(out / "fashion_mnist_margin.csv")}
    assert margins == {"hyperbolic"}  # the C++ program logs no margins


def test_a_cpp_run_whose_parameters_are_gone_is_refused_naming_the_file(tmp_path):
    data = tmp_path / "data"
    make_fashion_mnist(data, 96, 40)
    _cpp_run(tmp_path, data, "gone")
    (tmp_path / "gone.pt").unlink()
    with pytest.raises(ValueError, match=r"gone\.run\.json: its parameters .*gone\.pt are missing"):
        report.find_runs(tmp_path)
    (tmp_path / "gone.run.json").write_text("{\"program\": \"vgg_train\"")
    with pytest.raises(ValueError, match=r"gone\.run\.json: not a vgg_train run record"):
        report.find_runs(tmp_path)


def test_a_failed_run_writes_no_record(tmp_path):
    data = tmp_path / "data"
    make_fashion_mnist(data, 96, 40)
    done = run(tmp_path, data, *COMMON, "--lr", "1e30",  # the last --lr given counts
               csv_name="diverged.csv")
    assert done.returncode == 1 and "diverged" in done.stderr
    assert not (tmp_path / "diverged.run.json").exists()


def test_a_report_of_runs_without_margins_removes_an_earlier_margin_figure(tmp_path):
    data = tmp_path / "data"
    make_fashion_mnist(data, 96, 40)
    runs = tmp_path / "runs"
    runs.mkdir()
    _cpp_run(runs, data, "euclidean")
    out = tmp_path / "report"
    out.mkdir()
    for ext in ("png", "csv"):  # as left by a report of a folder that held Python runs
        (out / f"fashion_mnist_margin.{ext}").write_text("stale")
    _report(runs, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"fashion_mnist_{kind}" for kind in (
            "accuracy.md", "accuracy.csv", "accuracy_all.csv", "pruning.png", "pruning.csv",
            "histograms.png", "histograms.csv"))
