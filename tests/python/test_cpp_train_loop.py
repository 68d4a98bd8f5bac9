"""The C++ training loop experiments/cpp (program vgg_train) on small
real-format files written here: Fashion-MNIST IDX files (plain and gzipped)
and a cifar-10-batches-bin folder.

Oracles: the sample counts and shapes written; the closed-form parameter count
of VGG-16 at a width; a float64 PyTorch forward pass written from the layer
list (test loss); one step of the Python optimizer mirrorflow.MirrorDescent on
the full batch; lr = 0 changing nothing; the gzipped files reading as the plain
ones; resuming from a checkpoint equal to the uninterrupted run.

The program is found through $MIRRORFLOW_VGG_TRAIN_PROGRAM, else in the build
tree of `make test` (build/experiments/cpp/vgg_train); it is built with
-DMIRRORFLOW_BUILD_TESTS=ON or -DMIRRORFLOW_BUILD_TEST_PROGRAMS=ON.
"""

from __future__ import annotations

import csv
import gzip
import math
import os
import re
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mirrorflow

ROOT = Path(__file__).resolve().parents[2]
CFG = [64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0]
WIDTH = 1 / 16
FMNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def _program() -> str | None:
    path = os.environ.get("MIRRORFLOW_VGG_TRAIN_PROGRAM") or str(
        ROOT / "build" / "experiments" / "cpp" / "vgg_train")
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


pytestmark = pytest.mark.skipif(
    _program() is None, reason="vgg_train is not built (build/experiments/cpp/vgg_train; "
    "configure with -DMIRRORFLOW_BUILD_TESTS=ON, or set $MIRRORFLOW_VGG_TRAIN_PROGRAM)")


# ---- real-format files -----------------------------------------------------------------

def _idx_bytes(array: np.ndarray, magic_ndim: int | None = None) -> bytes:
    ndim = array.ndim if magic_ndim is None else magic_ndim
    header = bytes([0, 0, 0x08, ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)


def make_fashion_mnist(folder: Path, n_train: int, n_test: int, gz: bool = False,
                       seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, array in arrays.items():
        _write(folder / (name + (".gz" if gz else "")), _idx_bytes(array))
    pad = lambda a: np.pad(a, ((0, 0), (2, 2), (2, 2)))[:, None]  # noqa: E731
    return {"train": (pad(arrays["train-images-idx3-ubyte"]), arrays["train-labels-idx1-ubyte"]),
            "test": (pad(arrays["t10k-images-idx3-ubyte"]), arrays["t10k-labels-idx1-ubyte"])}


def make_cifar10(folder: Path, per_batch: int, n_test: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for name in names:
        n = n_test if name == "test_batch.bin" else per_batch
        images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        records = np.concatenate([labels[:, None], images.reshape(n, -1)], axis=1)
        (folder / name).write_bytes(records.astype(np.uint8).tobytes())
        out[name] = (images, labels)
    train = [out[f"data_batch_{i}.bin"] for i in range(1, 6)]
    return {"train": (np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train])),
            "test": out["test_batch.bin"]}


# ---- running the program -------------------------------------------------------------

def run(tmp_path: Path, data_dir: Path, *args: str, dataset: str = "fashion-mnist",
        csv_name: str = "log.csv") -> subprocess.CompletedProcess:
    command = [_program(), "--dataset", dataset, "--data-dir", str(data_dir),
               "--width", str(WIDTH), "--threads", "1", "--csv", str(tmp_path / csv_name),
               *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def run_ok(*a, **k) -> subprocess.CompletedProcess:
    done = run(*a, **k)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def epochs_of(stdout: str) -> list[dict]:
    rows = []
    for m in re.finditer(r"^epoch (\d+)/\d+ steps (\d+) train_loss (\S+) train_acc (\S+) "
                         r"test_loss (\S+) test_acc (\S+)$", stdout, re.M):
        rows.append(dict(epoch=int(m[1]), steps=int(m[2]), train_loss=m[3], train_acc=m[4],
                         test_loss=m[5], test_acc=m[6]))
    return rows


def load_params(path: Path) -> dict[str, torch.Tensor]:
    return dict(torch.load(path, weights_only=True))


def channels(width: float) -> list[int]:
    return [max(1, round(c * width)) for c in CFG if c]


def closed_form_count(width: float, in_channels: int, classes: int = 10) -> int:
    c = channels(width)
    convs = sum(9 * a * b for a, b in zip([in_channels] + c[:-1], c))
    return convs + c[0] + c[-1] * classes  # one bias; 32×32 pooled five times is 1×1


def forward(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """VGG-16 from the layer list: conv 3×3 (pad 1) + ReLU, max-pool 2×2 at each 0."""
    convs = sorted((k for k in params if k.startswith("features.") and k.endswith("weight")),
                   key=lambda k: int(k.split(".")[1]))
    bias = [k for k in params if params[k].dim() == 1]
    assert len(convs) == 13 and len(bias) == 1 and bias[0] == convs[0][:-6] + "bias"
    h, i = x, 0
    for c in CFG:
        if c == 0:
            h = F.max_pool2d(h, 2)
            continue
        h = F.relu(F.conv2d(h, params[convs[i]], params[bias[0]] if i == 0 else None, padding=1))
        i += 1
    (head,) = [k for k in params if k.startswith("classifier.")]
    return h.flatten(1) @ params[head].t()


def normalised(images: np.ndarray, train_images: np.ndarray) -> torch.Tensor:
    """Per-channel (x/255 − mean)/std with the training images' statistics
    (Bessel-corrected std)."""
    t = torch.from_numpy(train_images).double() / 255
    mean = t.mean(dim=(0, 2, 3), keepdim=True)
    std = t.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return (torch.from_numpy(images).double() / 255 - mean) / std


# ---- reading the formats ----------------------------------------------------------------

def test_fashion_mnist_reads_exactly_the_samples_written(tmp_path):
    make_fashion_mnist(tmp_path / "fm", n_train=11, n_test=7)
    done = run_ok(tmp_path, tmp_path / "fm", "--epochs", "2", "--batch-size", "4")
    assert "train samples 11, test samples 7" in done.stdout
    rows = epochs_of(done.stdout)
    assert [r["steps"] for r in rows] == [3, 6]  # ceil(11/4) steps per epoch
    with open(tmp_path / "log.csv") as f:
        logged = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in logged] == [1, 2]
    assert [float(r["test_loss"]) for r in logged] == [float(r["test_loss"]) for r in rows]
    limited = run_ok(tmp_path, tmp_path / "fm", "--epochs", "1", "--train-limit", "5",
                     "--test-limit", "2", "--batch-size", "5")
    assert "train samples 5, test samples 2" in limited.stdout
    assert epochs_of(limited.stdout)[0]["steps"] == 1


def test_gzipped_files_give_the_run_of_the_plain_ones(tmp_path):
    make_fashion_mnist(tmp_path / "plain", 9, 5, gz=False, seed=3)
    make_fashion_mnist(tmp_path / "gz", 9, 5, gz=True, seed=3)
    args = ("--epochs", "2", "--batch-size", "4", "--lr", "0.05", "--seed", "2")
    a = epochs_of(run_ok(tmp_path, tmp_path / "plain", *args).stdout)
    b = epochs_of(run_ok(tmp_path, tmp_path / "gz", *args).stdout)
    assert len(a) == 2 and a == b


def test_cifar10_reads_every_batch_file_and_the_nested_folder(tmp_path):
    make_cifar10(tmp_path / "c" / "cifar-10-batches-bin", per_batch=3, n_test=4)
    done = run_ok(tmp_path, tmp_path / "c", "--epochs", "1", "--batch-size", "8",
                  dataset="cifar10")
    assert "train samples 15, test samples 4" in done.stdout
    assert "cifar-10-batches-bin" in done.stdout
    limited = run_ok(tmp_path, tmp_path / "c", "--epochs", "1", "--train-limit", "7",
                     dataset="cifar10")
    assert "train samples 7, test samples 4" in limited.stdout


def test_cifar10_default_folder_is_data_cifar10_of_the_working_directory_as_in_python(tmp_path):
    data = make_cifar10(tmp_path / "data" / "cifar10" / "cifar-10-batches-bin", per_batch=2,
                        n_test=3)
    command = [_program(), "--dataset", "cifar10", "--width", str(WIDTH), "--threads", "1",
               "--epochs", "1", "--lr", "0", "--csv", str(tmp_path / "log.csv")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "train samples 10, test samples 3" in done.stdout
    # the Python loader reads the same images from its default folder of the same directory
    from mirrorflow.data import CIFAR10_DEFAULT_ROOT, load_cifar10
    python = load_cifar10(tmp_path / CIFAR10_DEFAULT_ROOT)
    assert torch.equal(python.train_images, torch.from_numpy(data["train"][0]))
    assert torch.equal(python.test_images, torch.from_numpy(data["test"][0]))
    assert python.test_labels.tolist() == data["test"][1].tolist()
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    refused = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=empty)
    assert refused.returncode != 0 and "data/cifar10" in refused.stderr


# ---- the model --------------------------------------------------------------------------

@pytest.mark.parametrize("dataset", ["fashion-mnist", "cifar10"])
def test_parameters_and_initial_test_loss_match_the_closed_form_and_a_float64_forward(
        tmp_path, dataset):
    if dataset == "cifar10":
        data, in_channels = make_cifar10(tmp_path / "d", 2, 6), 3
    else:
        data, in_channels = make_fashion_mnist(tmp_path / "d", 10, 6), 1
    done = run_ok(tmp_path, tmp_path / "d", "--epochs", "1", "--lr", "0", "--save-params",
                  str(tmp_path / "p.pt"), dataset=dataset)
    count = int(re.search(r"parameters (\d+)", done.stdout)[1])
    assert count == closed_form_count(WIDTH, in_channels)
    params = load_params(tmp_path / "p.pt")
    assert sum(p.numel() for p in params.values()) == count
    (bias,) = [p for p in params.values() if p.dim() == 1]
    assert torch.equal(bias, torch.zeros_like(bias))
    # He initialisation: std sqrt(2/fan_in) (about 1 % sampling error at these sizes).
    for p in params.values():
        if p.numel() >= 4000:
            fan_in = p[0].numel()
            assert abs(p.std().item() / math.sqrt(2 / fan_in) - 1) < 0.05
    test_images, test_labels = data["test"]
    logits = forward({k: v.double() for k, v in params.items()},
                     normalised(test_images, data["train"][0]))
    expected = F.cross_entropy(logits, torch.from_numpy(test_labels).long()).item()
    assert float(epochs_of(done.stdout)[0]["test_loss"]) == pytest.approx(expected, rel=1e-5)


def test_head_hidden_layers_are_scaled_and_match_the_python_model(tmp_path):
    make_fashion_mnist(tmp_path / "d", 4, 2)
    done = run_ok(tmp_path, tmp_path / "d", "--epochs", "0", "--head-hidden", "120,40",
                  "--save-params", str(tmp_path / "p.pt"))
    last = channels(WIDTH)[-1]
    hidden = [round(120 * WIDTH), round(40 * WIDTH)]  # 7.5 -> 8, 2.5 -> 2: half to even
    assert hidden == [8, 2]
    expected = (closed_form_count(WIDTH, 1) - last * 10 + last * hidden[0]
                + hidden[0] * hidden[1] + hidden[1] * 10)
    assert int(re.search(r"parameters (\d+)", done.stdout)[1]) == expected
    from mirrorflow.models import VGG16
    python = VGG16(in_channels=1, num_classes=10, width=WIDTH, head=(120, 40))
    cpp = load_params(tmp_path / "p.pt")
    assert {k: tuple(v.shape) for k, v in cpp.items()} == {
        k: tuple(v.shape) for k, v in python.named_parameters()}


# ---- training -----------------------------------------------------------------------------

def test_lr_zero_changes_neither_parameters_nor_losses(tmp_path):
    make_fashion_mnist(tmp_path / "d", 10, 5)
    run_ok(tmp_path, tmp_path / "d", "--epochs", "0", "--save-params", str(tmp_path / "a.pt"))
    done = run_ok(tmp_path, tmp_path / "d", "--epochs", "3", "--lr", "0", "--batch-size", "4",
                  "--augment", "false", "--save-params", str(tmp_path / "b.pt"))
    rows = epochs_of(done.stdout)
    assert len(rows) == 3 and len({r["test_loss"] for r in rows}) == 1
    train = [float(r["train_loss"]) for r in rows]  # batches differ only in order
    assert max(train) - min(train) <= 1e-6 * abs(train[0])
    a, b = load_params(tmp_path / "a.pt"), load_params(tmp_path / "b.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("options", [
    dict(mirror="hyperbolic", beta="0.5", normalize="true", update="metric"),
    dict(mirror="power", beta="0.1", degree="3", normalize="false", update="dual",
         beta_scaling="fan_in"),
], ids=["hyperbolic-metric-normalized", "power-dual-fan_in"])
def test_one_full_batch_step_equals_the_python_optimizer(tmp_path, options):
    data = make_fashion_mnist(tmp_path / "d", 8, 2, seed=5)
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    run_ok(tmp_path, tmp_path / "d", "--epochs", "0", "--seed", "4",
           "--save-params", str(tmp_path / "init.pt"))
    run_ok(tmp_path, tmp_path / "d", "--epochs", "1", "--max-steps", "1", "--seed", "4",
           "--batch-size", "8", "--augment", "false", "--lr", "0.1", *flags,
           "--save-params", str(tmp_path / "step.pt"))
    params = {k: v.clone().requires_grad_() for k, v in load_params(tmp_path / "init.pt").items()}
    images, labels = data["train"]
    x = normalised(images, images).float()
    loss = F.cross_entropy(forward(params, x), torch.from_numpy(labels).long())
    loss.backward()
    python_options = {k: (v == "true" if k == "normalize" else
                          float(v) if k in ("beta", "degree") else v) for k, v in options.items()}
    mirrorflow.MirrorDescent(list(params.values()), lr=0.1, **python_options).step()
    initial, stepped = load_params(tmp_path / "init.pt"), load_params(tmp_path / "step.pt")
    # The two programs' float32 gradients differ by rounding, and the power map's dual step
    # near 0 multiplies g by about 1/βₗ (βₗ = 0.1/√fan_in): measured with AVX2 and AVX512
    # kernels, the steps agree to within 5·10⁻⁶ of each tensor's largest step (elementwise
    # tolerances of 10⁻⁶ failed on AVX512), so allow 3·10⁻⁵ of it. A wrong option (lr, β,
    # its scaling, the update, normalisation) moves them by far more.
    for k, p in params.items():
        step_cpp, step_python = stepped[k] - initial[k], p.detach() - initial[k]
        largest = step_python.abs().max().item()
        assert step_cpp.abs().max().item() > 0 or k.endswith("bias")
        torch.testing.assert_close(step_cpp, step_python, rtol=0, atol=3e-5 * largest)


def test_resuming_from_a_checkpoint_equals_the_uninterrupted_run(tmp_path):
    make_fashion_mnist(tmp_path / "d", 10, 4)
    args = ("--batch-size", "4", "--lr", "0.05", "--mirror", "hyperbolic", "--beta", "0.3")
    whole = run_ok(tmp_path, tmp_path / "d", "--epochs", "2", *args,
                   "--save-params", str(tmp_path / "whole.pt"), csv_name="whole.csv")
    ckpt = str(tmp_path / "ck" / "run.ckpt")
    first = run_ok(tmp_path, tmp_path / "d", "--epochs", "1", "--checkpoint", ckpt, *args)
    assert os.path.isfile(ckpt) and not os.path.exists(ckpt + ".partial")
    with open(tmp_path / "log.csv", "a") as f:  # a row after the checkpoint, a cut line
        f.write("2,5,9.5,0.1,9.5,0.1,1.0\n2,5,9.\n")
    second = run_ok(tmp_path, tmp_path / "d", "--epochs", "2", "--checkpoint", ckpt, *args,
                    "--save-params", str(tmp_path / "resumed.pt"))
    assert "resumed from" in second.stdout and "after epoch 1" in second.stdout
    assert epochs_of(first.stdout) + epochs_of(second.stdout) == epochs_of(whole.stdout)
    a, b = load_params(tmp_path / "whole.pt"), load_params(tmp_path / "resumed.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    with open(tmp_path / "log.csv") as f, open(tmp_path / "whole.csv") as g:
        resumed, uninterrupted = list(csv.DictReader(f)), list(csv.DictReader(g))
    assert [r["epoch"] for r in resumed] == ["1", "2"]
    assert [r["test_loss"] for r in resumed] == [r["test_loss"] for r in uninterrupted]
    other = run(tmp_path, tmp_path / "d", "--epochs", "3", "--checkpoint", ckpt,
                "--batch-size", "5", "--lr", "0.05", "--mirror", "hyperbolic", "--beta", "0.3")
    assert other.returncode == 1 and ckpt in other.stderr and "batch_size=5" in other.stderr


# ---- bad input ----------------------------------------------------------------------------

def _truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


FMNIST_DAMAGE = {
    "missing": ("t10k-labels-idx1-ubyte", lambda p: p.unlink(), "missing file"),
    "truncated": ("train-images-idx3-ubyte", lambda p: _truncate(p, 16 + 28 * 28 * 3 - 5),
                  "truncated"),
    "wrong-shape": ("train-images-idx3-ubyte",
                    lambda p: p.write_bytes(_idx_bytes(np.zeros((4, 27, 28), np.uint8))),
                    "27×28"),
    "wrong-magic": ("train-labels-idx1-ubyte",
                    lambda p: p.write_bytes(_idx_bytes(np.zeros((4, 1, 1), np.uint8))),
                    "magic number 0x00000803"),
    "count-mismatch": ("t10k-labels-idx1-ubyte",
                       lambda p: p.write_bytes(_idx_bytes(np.zeros(3, np.uint8))), "3 labels"),
    "bad-label": ("train-labels-idx1-ubyte",
                  lambda p: p.write_bytes(_idx_bytes(np.full(4, 12, np.uint8))), "label 12"),
}


@pytest.mark.parametrize("damage", FMNIST_DAMAGE)
def test_damaged_fashion_mnist_files_are_refused_naming_the_file(tmp_path, damage):
    name, spoil, words = FMNIST_DAMAGE[damage]
    make_fashion_mnist(tmp_path / "d", 4, 4)
    spoil(tmp_path / "d" / name)
    done = run(tmp_path, tmp_path / "d", "--epochs", "1")
    assert done.returncode == 1, done.stdout
    assert str(tmp_path / "d" / name) in done.stderr and words in done.stderr, done.stderr
    assert "dataset-fashion-mnist" in done.stderr
    assert not (tmp_path / "log.csv").exists()


@pytest.mark.parametrize("damage", ["truncated", "not-gzip"])
def test_damaged_gzip_files_are_refused_naming_the_file(tmp_path, damage):
    make_fashion_mnist(tmp_path / "d", 4, 4, gz=True)
    path = tmp_path / "d" / "train-images-idx3-ubyte.gz"
    if damage == "truncated":
        _truncate(path, len(path.read_bytes()) // 2)
    else:
        path.write_bytes(gzip.decompress(path.read_bytes()))
    done = run(tmp_path, tmp_path / "d", "--epochs", "1")
    assert done.returncode == 1 and str(path) in done.stderr, done.stderr
    assert ("corrupt or truncated" if damage == "truncated" else "not gzip") in done.stderr


CIFAR_DAMAGE = {
    "missing": ("test_batch.bin", lambda p: p.unlink(), "missing file"),
    "truncated": ("data_batch_3.bin", lambda p: _truncate(p, 3073 * 2 + 100), "truncated"),
    "bad-label": ("data_batch_1.bin",
                  lambda p: p.write_bytes(bytes([10]) + p.read_bytes()[1:]), "label 10"),
}


@pytest.mark.parametrize("damage", CIFAR_DAMAGE)
def test_damaged_cifar10_files_are_refused_naming_the_file(tmp_path, damage):
    name, spoil, words = CIFAR_DAMAGE[damage]
    make_cifar10(tmp_path / "c", 3, 2)
    spoil(tmp_path / "c" / name)
    done = run(tmp_path, tmp_path / "c", "--epochs", "1", dataset="cifar10")
    assert done.returncode == 1, done.stdout
    assert str(tmp_path / "c" / name) in done.stderr and words in done.stderr, done.stderr
    assert "cifar-10-binary.tar.gz" in done.stderr
    assert not (tmp_path / "log.csv").exists()


def test_the_python_cifar10_layout_is_refused_with_the_reason(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in ["batches.meta", "data_batch_1", "test_batch"]:
        (folder / name).write_bytes(b"\x80\x02}q\x00.")
    done = run(tmp_path, folder, "--epochs", "1", dataset="cifar10")
    assert done.returncode == 1
    assert str(folder / "data_batch_1.bin") in done.stderr
    assert "cifar-10-batches-py" in done.stderr and "does not read" in done.stderr


@pytest.mark.parametrize("args, words", [
    (["--mirror", "hyperbolic", "--beta", "-1"], "beta must be > 0"),
    (["--mirror", "hyperbolic", "--beta", "x"], "--beta expects a number, got 'x'"),
    (["--width", "0"], "--width must be a finite number > 0, got 0"),
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--dataset", "mnist"], "--dataset must be one of cifar10, fashion-mnist, got 'mnist'"),
    (["--momentum", "0.9"], "unknown option --momentum"),
    (["--device", "gpu"], "--device must be cpu, cuda or cuda:N, got 'gpu'"),
])
def test_bad_options_are_refused_before_anything_is_written(tmp_path, args, words):
    make_fashion_mnist(tmp_path / "d", 4, 4)
    done = run(tmp_path, tmp_path / "d", *args)
    assert done.returncode == 2 and words in done.stderr, done.stderr
    assert not (tmp_path / "log.csv").exists()


@pytest.mark.parametrize("output, words", [
    ("save-params-under-a-file", "--save-params {d}/blocker/p.pt: {d}/blocker is a file"),
    ("csv-is-a-folder", "--csv {d}/folder: is a folder"),
    ("checkpoint-is-save-params", "--save-params and --checkpoint name the same file"),
    ("save-params-under-a-dangling-link",
     "--save-params {d}/dangling/p.pt: {d}/dangling is a link to nothing"),
])
def test_unwritable_outputs_are_refused_before_the_data_are_read(tmp_path, output, words):
    (tmp_path / "blocker").write_text("a file, not a folder")
    (tmp_path / "folder").mkdir()
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    args = {
        "save-params-under-a-file": ["--save-params", str(tmp_path / "blocker" / "p.pt")],
        "csv-is-a-folder": ["--csv", str(tmp_path / "folder")],
        "checkpoint-is-save-params": ["--checkpoint", str(tmp_path / "same.pt"),
                                      "--save-params", str(tmp_path / "same.pt")],
        "save-params-under-a-dangling-link": ["--save-params",
                                              str(tmp_path / "dangling" / "p.pt")],
    }[output]
    # No data at all: the outputs are checked first, so the data folder is never looked at.
    done = run(tmp_path, tmp_path / "no-data", "--epochs", "1", *args)
    assert done.returncode == 1 and words.format(d=tmp_path) in done.stderr, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "dangling", "folder"]


def test_a_failed_params_write_leaves_the_previous_file_and_writes_no_record(tmp_path):
    make_fashion_mnist(tmp_path / "d", 4, 4)
    params = tmp_path / "p.pt"
    done = run_ok(tmp_path, tmp_path / "d", "--epochs", "1", "--save-params", str(params))
    before = params.read_bytes()
    assert "p.pt" in (tmp_path / "log.run.json").read_text()
    assert not list(tmp_path.rglob("*.partial"))
    (tmp_path / "log.run.json").unlink()
    (tmp_path / "p.pt.partial").mkdir()  # the partial file cannot be opened: the write fails
    done = run(tmp_path, tmp_path / "d", "--epochs", "1", "--lr", "0.5",
               "--save-params", str(params))
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"--save-params: cannot write {params}.partial" in done.stderr, done.stderr
    assert params.read_bytes() == before
    assert not (tmp_path / "log.run.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message when there is no GPU")
def test_cuda_without_a_gpu_is_refused_before_anything_is_written(tmp_path):
    make_fashion_mnist(tmp_path / "d", 4, 4)
    done = run(tmp_path, tmp_path / "d", "--device", "cuda", "--epochs", "1")
    assert done.returncode == 1 and "--device cuda: no CUDA device" in done.stderr, done.stderr
    assert not (tmp_path / "log.csv").exists()
