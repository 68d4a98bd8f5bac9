"""The VGG-16 experiment end to end (experiments/vgg_cifar): sweep → train →
report on synthetic and real Fashion-MNIST data, a planted corrupt CIFAR-10
file, kill-and-resume against an uninterrupted run, and two gloo processes
against one. Every run is tiny (width 1/16, a few dozen to a few hundred images)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mirrorflow.data import FASHION_MNIST_DEFAULT_ROOT, DatasetError

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "vgg_cifar"
sys.path.insert(0, str(EXPERIMENT))

import report  # noqa: E402
import sweep  # noqa: E402
import train  # noqa: E402
from run_config import RunConfig, read_config  # noqa: E402

TINY = dict(width=1 / 16, batch_size=16, margin_samples=64, eval_batch_size=64, lr=0.02)
MAPS = [dict(mirror="euclidean"), dict(mirror="hyperbolic", beta=0.01),
        dict(mirror="power", degree=3.0, beta=0.01)]
REPORT_FILES = [f"{kind}.{ext}" for kind, ext in (
    ("accuracy", "md"), ("accuracy", "csv"), ("accuracy_all", "csv"), ("pruning", "png"),
    ("pruning", "csv"), ("histograms", "png"), ("histograms", "csv"), ("margin", "png"),
    ("margin", "csv"))]


def _rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _train_in_process(config: RunConfig, run_dir: Path) -> dict:
    threads = torch.get_num_threads()
    try:
        return train.train(config, run_dir, "cpu", threads=1, progress=False)
    finally:
        torch.set_num_threads(threads)


def _report_in_process(root: Path, out: Path, **kwargs) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many tiny ops: one thread is fastest on a busy machine
    try:
        report.report(root, out, **kwargs)
    finally:
        torch.set_num_threads(threads)


def _check_report(out: Path, dataset: str, runs: dict[str, list[Path]]) -> None:
    """Every table and figure exists, and their numbers are those of the runs'
    own logs: best accuracy = max over epochs of val_acc, accuracy at sparsity 0
    = the final epoch's val_acc (the same weights on the same split)."""
    for name in REPORT_FILES:
        path = out / f"{dataset}_{name}"
        assert path.is_file() and path.stat().st_size > 0, path
        if name.endswith(".png"):
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / f"{dataset}_accuracy.md").read_text()
    best = {r["map"]: r for r in _rows(out / f"{dataset}_accuracy.csv")}
    pruning = _rows(out / f"{dataset}_pruning.csv")
    assert sorted(best) == sorted(runs)
    for label, dirs in runs.items():
        assert f"| {label} |" in table
        logs = [_log(d) for d in dirs]
        expected = sum(max(r["val_acc"] for r in log) for log in logs) / len(logs)
        assert float(best[label]["best_val_acc_mean"]) == pytest.approx(expected, abs=1e-12)
        curve = {float(r["sparsity"]): float(r["val_acc_mean"]) for r in pruning if r["map"] == label}
        assert sorted(curve) == list(report.SPARSITIES)
        final = sum(log[-1]["val_acc"] for log in logs) / len(logs)
        assert curve[0.0] == pytest.approx(final, abs=1e-12)
    margins = _rows(out / f"{dataset}_margin.csv")
    assert {r["map"] for r in margins} == set(runs)


def test_sweep_and_report_on_synthetic_data(tmp_path):
    spec = {"out": str(tmp_path / "runs"),
            "common": dict(dataset="synthetic", limit_train=64, limit_test=32, epochs=2, **TINY),
            "maps": [{"mirror": "euclidean"}, {"mirror": "hyperbolic"},
                     {"mirror": "power", "degree": 3.0}],
            "betas": [0.01], "lrs": [0.02], "seeds": [0],
            "train_options": ["--threads", "1", "--no-progress"]}
    config_path = tmp_path / "sweep.json"
    config_path.write_text(json.dumps(spec))
    assert sweep.main([str(config_path), "--run", "--jobs", "2", "--gpus", "0"]) == 0
    out = tmp_path / "runs"
    dirs = sorted(p.name for p in out.iterdir())
    assert dirs == ["euclidean_lr0.02_s0", "hyperbolic_b0.01_lr0.02_s0", "power_L3_b0.01_lr0.02_s0"]
    assert all(len(_log(out / d)) == 2 for d in dirs)
    _report_in_process(out, tmp_path / "report")
    _check_report(tmp_path / "report", "synthetic",
                  dict(zip(["euclidean", "hyperbolic", "power (L=3)"], [[out / d] for d in dirs])))


def test_finished_runs_are_skipped(tmp_path, capsys):
    spec = {"out": str(tmp_path), "common": dict(dataset="synthetic", limit_train=32, epochs=1, **TINY),
            "maps": [{"mirror": "euclidean"}], "lrs": [0.02], "seeds": [0, 1]}
    config_path = tmp_path / "sweep.json"
    config_path.write_text(json.dumps(spec))
    configs = sweep.grid(spec)
    _train_in_process(configs[0], tmp_path / configs[0].run_name())
    assert sweep.main([str(config_path), "--list"]) == 0
    captured = capsys.readouterr()
    assert "2 runs, 1 finished, 1 to run" in captured.err
    commands = captured.out.strip().splitlines()
    assert len(commands) == 1 and "--seed 1" in commands[0] and "--seed 0" not in commands[0]


def test_sweep_grid_rules():
    spec = {"maps": [{"mirror": "euclidean"}, {"mirror": "hyperbolic", "betas": [0.1]}],
            "betas": [0.01, 0.02], "lrs": [0.1, 0.2], "seeds": [0, 1, 2]}
    configs = sweep.grid(spec)
    assert len(configs) == 2 * 3 + 1 * 2 * 3  # euclidean ignores β
    assert {c.beta for c in configs if c.mirror == "hyperbolic"} == {0.1}
    with pytest.raises(ValueError, match=r"unknown keys \['seed'\]"):
        sweep.grid({**spec, "seed": 1})
    with pytest.raises(ValueError, match=r"'lrs' must be a non-empty list, got \[\]"):
        sweep.grid({**spec, "lrs": []})
    with pytest.raises(ValueError, match=r"RunConfig: unknown keys \['momentum'\]"):
        sweep.grid({**spec, "maps": [{"mirror": "euclidean", "momentum": 0.9}]})
    config = RunConfig(**{**configs[-1].__dict__, "head": [32, 16], "bf16": True, "width": 1 / 3})
    assert train.config_from_args(train.parse_args(config.to_args())) == config


def test_bf16_autocast_trains_float32_parameters(tmp_path):
    config = RunConfig(dataset="synthetic", limit_train=32, limit_test=16, epochs=1, bf16=True,
                       head=[256], **TINY)
    summary = _train_in_process(config, tmp_path / "run")
    state = _final_state(tmp_path / "run")
    assert all(v.dtype == torch.float32 for v in state["model"].values())
    assert set(state["model"]) >= {"features.0.bias", "classifier.0.weight", "classifier.2.weight"}
    assert not summary["diverged"]
    # the same run in float32: bfloat16's 8-bit mantissa shows in the losses, a little
    _train_in_process(RunConfig(**{**config.__dict__, "bf16": False}), tmp_path / "fp32")
    bf16, fp32 = state["metrics"][0], _final_state(tmp_path / "fp32")["metrics"][0]
    for key in ("train_loss", "val_loss"):
        assert bf16[key] != fp32[key] and bf16[key] == pytest.approx(fp32[key], rel=0.05), key


def test_end_to_end_on_a_real_fashion_mnist_subset(tmp_path):
    """Three maps, and two β for hyperbolic: the table keeps the β whose best
    validation accuracy is higher (the first on a tie)."""
    if not (Path(FASHION_MNIST_DEFAULT_ROOT) / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST is not installed in {FASHION_MNIST_DEFAULT_ROOT} "
                    "(apt-get install dataset-fashion-mnist)")
    dirs: dict[str, list[Path]] = {}
    for fields in [*MAPS, dict(mirror="hyperbolic", beta=0.1)]:
        config = RunConfig(dataset="fashion_mnist", limit_train=64, limit_test=32, epochs=1,
                           **{**TINY, "lr": 0.05}, **fields)
        run_dir = tmp_path / "runs" / config.run_name()
        summary = _train_in_process(config, run_dir)
        assert summary["epochs_run"] == 1
        dirs.setdefault(config.map_label(), []).append(run_dir)
    _report_in_process(tmp_path / "runs", tmp_path / "report", log_scale=True)
    rows = _rows(tmp_path / "report" / "fashion_mnist_accuracy_all.csv")
    assert len(rows) == 4
    winners = {label: [max(candidates, key=lambda d: _log(d)[0]["val_acc"])]
               for label, candidates in dirs.items()}
    _check_report(tmp_path / "report", "fashion_mnist", winners)
    beta = next(r["beta"] for r in _rows(tmp_path / "report" / "fashion_mnist_accuracy.csv")
                if r["map"] == "hyperbolic")
    assert float(beta) == read_config(winners["hyperbolic"][0]).beta


def test_runs_with_their_own_data_limits_are_pruned_on_their_own_split(tmp_path):
    """Two maps trained on different subsets of one dataset: each run's curve at
    sparsity 0 is its own final validation accuracy, on its own split and with
    its own normalisation, whichever run the report reads first."""
    if not (Path(FASHION_MNIST_DEFAULT_ROOT) / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST is not installed in {FASHION_MNIST_DEFAULT_ROOT} "
                    "(apt-get install dataset-fashion-mnist)")
    dirs = {}
    for fields, limits in ((MAPS[0], dict(limit_train=64, limit_test=32)),
                           (MAPS[1], dict(limit_train=160, limit_test=80))):
        config = RunConfig(dataset="fashion_mnist", epochs=1, **limits, **{**TINY, "lr": 0.05},
                           **fields)
        run_dir = tmp_path / "runs" / config.run_name()
        _train_in_process(config, run_dir)
        dirs[config.map_label()] = [run_dir]
    _report_in_process(tmp_path / "runs", tmp_path / "report")
    _check_report(tmp_path / "report", "fashion_mnist", dirs)


def test_a_corrupt_cifar_file_stops_the_run_before_anything_is_written(tmp_path):
    folder = tmp_path / "cifar" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        (folder / name).write_bytes(bytes(3073 * 2))
    (folder / "data_batch_4.bin").write_bytes(bytes(3073 + 5))
    config = RunConfig(dataset="cifar10", data_root=str(tmp_path / "cifar"), epochs=1, **TINY)
    run_dir = tmp_path / "runs" / config.run_name()
    with pytest.raises(DatasetError, match=r"data_batch_4\.bin.*truncated"):
        _train_in_process(config, run_dir)
    assert not run_dir.exists()


def test_a_run_folder_refuses_another_configuration(tmp_path):
    config = RunConfig(dataset="synthetic", limit_train=32, limit_test=16, epochs=1, **TINY)
    _train_in_process(config, tmp_path / "run")
    other = RunConfig(**{**config.__dict__, "epochs": 2})
    with pytest.raises(ValueError, match="holds another configuration .*epochs: 1 != 2"):
        _train_in_process(other, tmp_path / "run")


def _command(config: RunConfig, out: Path, name: str) -> list[str]:
    return [sys.executable, str(EXPERIMENT / "train.py"), *config.to_args(), "--out", str(out),
            "--name", name, "--threads", "1", "--no-progress", "--device", "cpu"]


def _final_state(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)


def _without_times(log: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in log]


def test_kill_and_resume_equals_the_uninterrupted_run(tmp_path):
    config = RunConfig(dataset="synthetic", limit_train=192, limit_test=32, epochs=3,
                       mirror="hyperbolic", beta=0.01, **TINY)
    _train_in_process(config, tmp_path / "whole")
    proc = subprocess.Popen(_command(config, tmp_path, "killed"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.time() + 120
    while not (metrics.is_file() and metrics.read_text().strip()):
        assert proc.poll() is None and time.time() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.005)
    alive = proc.poll() is None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert alive and proc.returncode == -signal.SIGKILL
    killed_at = _final_state(tmp_path / "killed")["epoch"]
    assert 1 <= killed_at < config.epochs and not (tmp_path / "killed" / "done.json").exists()
    resumed = subprocess.run(_command(config, tmp_path, "killed"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after epoch {killed_at}" in resumed.stderr
    whole, again = _final_state(tmp_path / "whole"), _final_state(tmp_path / "killed")
    assert again["epoch"] == whole["epoch"] == config.epochs
    for key, value in whole["model"].items():
        assert torch.equal(value, again["model"][key]), key
    assert _without_times(again["metrics"]) == _without_times(whole["metrics"])
    assert torch.equal(again["rng"]["data"], whole["rng"]["data"])


def test_two_gloo_processes_match_one(tmp_path):
    """Two processes average two half-batch gradients, one process takes the
    full-batch gradient: equal up to rounding. The step size is kept small because
    the normalised hyperbolic update of this 4-channel network amplifies rounding
    differences quickly at larger steps (at lr = 0.02 the two runs part by 10 %
    within 8 steps; at 0.005 they agree to 1e-6)."""
    config = RunConfig(dataset="synthetic", limit_train=64, limit_test=32, epochs=2,
                       mirror="hyperbolic", beta=0.01, **{**TINY, "lr": 0.005})
    _train_in_process(config, tmp_path / "one")
    command = _command(config, tmp_path, "two")
    command[1:1] = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = _final_state(tmp_path / "one"), _final_state(tmp_path / "two")
    initial = train.build_model(config, train.load_data(config)).state_dict()
    for key, value in one["model"].items():
        scale = float(value.abs().max())
        assert float((value - initial[key]).abs().max()) > 1e-3 * scale, key  # it trained
        torch.testing.assert_close(two["model"][key], value, rtol=0, atol=1e-4 * scale)
    for a, b in zip(one["metrics"], two["metrics"]):
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "layerwise_margin"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
