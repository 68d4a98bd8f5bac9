"""mirrorflow.data: every format read from small files written here in the
official layout, every bad file refused with the files expected and how to get
them, augmentation and normalisation against direct computations."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from mirrorflow.data import (CIFAR10_DEFAULT_ROOT, FASHION_MNIST_DEFAULT_ROOT, DatasetError,
                             augment, load_cifar10, load_dataset, load_fashion_mnist, normalize,
                             synthetic_dataset)

CIFAR_PY = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def _cifar_content(n_per_batch: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
             rng.integers(0, 10, n_per_batch).tolist()) for _ in CIFAR_PY]


def _write_cifar_py(folder: Path, content) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (data, labels) in zip(CIFAR_PY, content):
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data}, f,
                        protocol=2)
    return folder


def _write_cifar_bin(folder: Path, content) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (data, labels) in zip(CIFAR_PY, content):
        records = np.concatenate([np.array(labels, np.uint8)[:, None], data], axis=1)
        (folder / f"{name}.bin").write_bytes(records.tobytes())
    return folder


def _expected_images(data: np.ndarray) -> torch.Tensor:
    """Pixel (c, i, j) of a CIFAR row is byte c·1024 + i·32 + j (the official layout)."""
    out = torch.empty(data.shape[0], 3, 32, 32, dtype=torch.uint8)
    for c in range(3):
        for i in range(32):
            out[:, c, i, :] = torch.from_numpy(data[:, c * 1024 + i * 32: c * 1024 + i * 32 + 32])
    return out


@pytest.mark.parametrize("layout", ["py", "bin"])
def test_cifar10_reads_both_official_layouts(tmp_path, layout):
    content = _cifar_content()
    writer = _write_cifar_py if layout == "py" else _write_cifar_bin
    writer(tmp_path / f"cifar-10-batches-{layout}", content)
    ds = load_cifar10(tmp_path)
    train = np.concatenate([d for d, _ in content[:5]])
    assert ds.train_images.dtype == torch.uint8 and ds.train_images.shape == (15, 3, 32, 32)
    assert torch.equal(ds.train_images, _expected_images(train))
    assert ds.train_labels.tolist() == sum((lab for _, lab in content[:5]), [])
    assert torch.equal(ds.test_images, _expected_images(content[5][0]))
    assert ds.test_labels.tolist() == content[5][1]
    assert ds.flip and ds.channels == 3 and ds.num_classes == 10
    # the batches folder itself is accepted as root, and limits keep the first images
    limited = load_cifar10(tmp_path / f"cifar-10-batches-{layout}", limit_train=4, limit_test=2)
    assert torch.equal(limited.train_images, ds.train_images[:4])
    assert torch.equal(limited.test_labels, ds.test_labels[:2])


def test_cifar10_missing_folder_names_both_layouts_and_the_source(tmp_path):
    with pytest.raises(DatasetError) as e:
        load_cifar10(tmp_path)
    msg = str(e.value)
    assert "cifar-10-batches-py" in msg and "cifar-10-batches-bin" in msg
    assert "test_batch" in msg and "cs.toronto.edu" in msg


def test_load_dataset_reads_cifar10_from_the_default_folder_of_the_working_directory(
        tmp_path, monkeypatch):
    content = _cifar_content()
    _write_cifar_bin(tmp_path / "data" / "cifar10" / "cifar-10-batches-bin", content)
    monkeypatch.chdir(tmp_path)
    assert CIFAR10_DEFAULT_ROOT == "data/cifar10"
    ds = load_dataset("cifar10")
    assert torch.equal(ds.train_images, _expected_images(np.concatenate([d for d, _ in content[:5]])))
    assert ds.test_labels.tolist() == content[5][1]
    (tmp_path / "data" / "cifar10" / "cifar-10-batches-bin" / "test_batch.bin").unlink()
    with pytest.raises(DatasetError, match="test_batch.bin"):
        load_dataset("cifar10")
    monkeypatch.chdir(tmp_path / "data")
    with pytest.raises(DatasetError, match="CIFAR-10 not found under data/cifar10"):
        load_dataset("cifar10")


def test_cifar10_missing_batch_is_named(tmp_path):
    folder = _write_cifar_bin(tmp_path / "cifar-10-batches-bin", _cifar_content())
    (folder / "test_batch.bin").unlink()
    with pytest.raises(DatasetError, match=r"missing test_batch\.bin.*tar xzf"):
        load_cifar10(tmp_path)


def test_cifar10_truncated_binary_batch_is_refused(tmp_path):
    folder = _write_cifar_bin(tmp_path / "cifar-10-batches-bin", _cifar_content())
    path = folder / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match=r"data_batch_3\.bin.*3073 bytes.*truncated"):
        load_cifar10(tmp_path)


@pytest.mark.parametrize("damage", ["truncated", "wrong_shape", "bad_label", "not_a_dict"])
def test_cifar10_bad_python_batch_is_refused(tmp_path, damage):
    folder = _write_cifar_py(tmp_path / "cifar-10-batches-py", _cifar_content())
    path = folder / "data_batch_2"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
        pattern = "not a readable CIFAR-10 python batch"
    else:
        data = np.zeros((3, 3072), np.uint8)
        batch = {b"data": data, b"labels": [0, 1, 2]}
        if damage == "wrong_shape":
            batch[b"data"] = np.zeros((3, 32, 32, 3), np.uint8)
            pattern = r"shape \(n, 3072\), got uint8 \(3, 32, 32, 3\)"
        elif damage == "bad_label":
            batch[b"labels"] = [0, 10, 2]
            pattern = r"labels must be in \[0, 10\), found 10"
        else:
            batch = [data]
            pattern = "dict with b'data'"
        path.write_bytes(pickle.dumps(batch))
    with pytest.raises(DatasetError, match=pattern) as e:
        load_cifar10(tmp_path)
    assert "data_batch_2" in str(e.value)


def test_cifar10_pickle_cannot_run_code(tmp_path):
    folder = _write_cifar_py(tmp_path / "cifar-10-batches-py", _cifar_content())
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(DatasetError, match="posix.system is not allowed|os.system is not allowed"):
        load_cifar10(tmp_path)
    assert not marker.exists()


def _idx(magic: int, array: np.ndarray) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_fashion(folder: Path, n_train=5, n_test=3, gz=True, seed=1):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        arrays[split] = (images, labels)
        for kind, magic, arr in (("images-idx3", 0x803, images), ("labels-idx1", 0x801, labels)):
            raw = _idx(magic, arr)
            name = f"{split}-{kind}-ubyte"
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
            else:
                (folder / name).write_bytes(raw)
    return arrays


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "plain"])
def test_fashion_mnist_reads_idx_and_pads_to_32(tmp_path, gz):
    arrays = _write_fashion(tmp_path, gz=gz)
    ds = load_fashion_mnist(tmp_path)
    assert ds.train_images.shape == (5, 1, 32, 32) and ds.test_images.shape == (3, 1, 32, 32)
    assert torch.equal(ds.train_images[:, 0, 2:30, 2:30], torch.from_numpy(arrays["train"][0]))
    border = ds.train_images.clone()
    border[:, :, 2:30, 2:30] = 0
    assert int(border.abs().sum()) == 0
    assert ds.train_labels.tolist() == arrays["train"][1].tolist()
    assert ds.test_labels.tolist() == arrays["t10k"][1].tolist()
    assert not ds.flip and ds.channels == 1


@pytest.mark.parametrize("damage", ["missing", "magic", "truncated", "shape", "count"])
def test_fashion_mnist_bad_files_are_refused(tmp_path, damage):
    _write_fashion(tmp_path, gz=False)
    images = tmp_path / "train-images-idx3-ubyte"
    if damage == "missing":
        (tmp_path / "t10k-labels-idx1-ubyte").unlink()
        pattern = r"missing t10k-labels-idx1-ubyte\[\.gz\].*apt-get install dataset-fashion-mnist"
    elif damage == "magic":
        images.write_bytes(b"\x00\x00\x08\x01" + images.read_bytes()[4:])
        pattern = r"train-images-idx3-ubyte: not an IDX file .*found 00000801"
    elif damage == "truncated":
        images.write_bytes(images.read_bytes()[:-1])
        pattern = r"train-images-idx3-ubyte: header says shape \(5, 28, 28\).*truncated"
    elif damage == "shape":
        images.write_bytes(_idx(0x803, np.zeros((5, 27, 28))))
        pattern = r"images are 28×28, got shape \(5, 27, 28\)"
    else:
        (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx(0x801, np.zeros(4)))
        pattern = r"4 labels for 5 images"
    with pytest.raises(DatasetError, match=pattern):
        load_fashion_mnist(tmp_path)


def test_fashion_mnist_corrupt_gzip_is_refused(tmp_path):
    _write_fashion(tmp_path, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte.gz: not a readable gzip file"):
        load_fashion_mnist(tmp_path)


def test_real_fashion_mnist_subset_matches_an_independent_reader():
    root = Path(FASHION_MNIST_DEFAULT_ROOT)
    if not (root / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST is not installed in {root} (apt-get install dataset-fashion-mnist)")
    ds = load_fashion_mnist(root, limit_train=50, limit_test=20)
    with gzip.open(root / "train-images-idx3-ubyte.gz") as f:
        raw = np.frombuffer(f.read(16 + 50 * 784), np.uint8)
    with gzip.open(root / "t10k-labels-idx1-ubyte.gz") as f:
        test_labels = np.frombuffer(f.read(8 + 20), np.uint8)[8:]
    assert ds.train_images.shape == (50, 1, 32, 32) and ds.test_images.shape == (20, 1, 32, 32)
    assert np.array_equal(ds.train_images[:, 0, 2:30, 2:30].numpy(), raw[16:].reshape(50, 28, 28))
    assert ds.test_labels.tolist() == test_labels.tolist()


def test_synthetic_dataset_is_seeded_and_cifar_shaped():
    a, b, c = synthetic_dataset(20, 10, seed=3), synthetic_dataset(20, 10, seed=3), synthetic_dataset(20, 10, seed=4)
    assert a.train_images.shape == (20, 3, 32, 32) and a.train_images.dtype == torch.uint8
    assert a.test_images.shape == (10, 3, 32, 32) and a.num_classes == 10
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_labels, b.test_labels)
    assert not torch.equal(a.train_images, c.train_images)
    with pytest.raises(ValueError, match="n_train must be a positive integer, got 0"):
        synthetic_dataset(0)
    with pytest.raises(ValueError, match="name must be one of .*got 'mnist'"):
        load_dataset("mnist")


def test_augment_is_a_crop_of_the_zero_padded_image_or_its_mirror():
    images = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = augment(images, torch.Generator().manual_seed(1), padding=2, flip=True)
    padded = torch.nn.functional.pad(images.float() / 255, (2, 2, 2, 2))
    flipped, offsets = 0, set()
    for k in range(images.shape[0]):
        crops = {(i, j): padded[k, :, i:i + 8, j:j + 8] for i in range(5) for j in range(5)}
        plain = [o for o, c in crops.items() if torch.equal(out[k], c)]
        mirrored = [o for o, c in crops.items() if torch.equal(out[k], c.flip(2))]
        assert plain or mirrored
        flipped += bool(mirrored and not plain)
        offsets.update(plain or mirrored)
    assert 5 <= flipped <= 35  # each image flipped with probability ½
    assert len(offsets) >= 10  # of the 25 possible crops, drawn uniformly
    again = augment(images, torch.Generator().manual_seed(1), padding=2, flip=True)
    assert torch.equal(out, again)
    assert torch.equal(augment(images, torch.Generator(), padding=0, flip=False), images.float() / 255)
    with pytest.raises(ValueError, match="padding must be >= 0, got -1"):
        augment(images, torch.Generator(), padding=-1)


def test_normalize_and_channel_stats():
    ds = synthetic_dataset(30, 5, seed=0)
    mean, std = ds.channel_stats()
    pixels = ds.train_images.numpy().astype(np.float64) / 255
    assert np.allclose(mean.numpy(), pixels.mean(axis=(0, 2, 3)), rtol=1e-6)
    assert np.allclose(std.numpy(), pixels.std(axis=(0, 2, 3), ddof=1), rtol=1e-5)
    x = ds.train_images.float() / 255
    y = normalize(x, mean, std)
    assert torch.allclose(y[:, 1], (x[:, 1] - mean[1]) / std[1])
    with pytest.raises(ValueError, match=r"mean and std of shape \(C,\)"):
        normalize(x, mean[:2], std[:2])


@pytest.mark.parametrize("limits, words", [
    (dict(limit_train=0), "limit_train must be a positive integer or None, got 0"),
    (dict(limit_test=-3), "limit_test must be a positive integer or None, got -3"),
])
def test_the_synthetic_set_refuses_the_limits_the_others_refuse(limits, words):
    with pytest.raises(ValueError, match=words):
        load_dataset("synthetic", **limits)
    assert load_dataset("synthetic", limit_train=5, limit_test=3).train_images.shape[0] == 5


def test_augment_refuses_images_that_are_not_uint8():
    images = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"images must be uint8 \(0-255\), got torch.float32"):
        augment(images, torch.Generator().manual_seed(0))
