"""Image-classification data for the VGG-16 experiments (MATH.md §5), read from
local files in their official formats; nothing is ever downloaded.

* CIFAR-10 in either official layout: ``cifar-10-batches-py`` (pickled batches)
  or ``cifar-10-batches-bin`` (binary records);
* Fashion-MNIST from IDX files, gzipped or not (Debian's ``dataset-fashion-mnist``
  installs them in :data:`FASHION_MNIST_DEFAULT_ROOT`), zero-padded to 32×32;
* a synthetic CIFAR-shaped data set for smoke tests.

Images are kept as uint8 tensors of shape (n, C, 32, 32); :func:`augment` and
:func:`normalize` turn a batch into the network's float input with torch ops.
Files that are missing, truncated or of the wrong shape raise
:class:`DatasetError`, naming the files expected and how to get them.
"""

from __future__ import annotations

import gzip
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_DEFAULT_ROOT",
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DEFAULT_ROOT",
    "DatasetError",
    "ImageDataset",
    "augment",
    "load_cifar10",
    "load_dataset",
    "load_fashion_mnist",
    "normalize",
    "synthetic_dataset",
]

PathLike = Union[str, Path]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
FASHION_MNIST_CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat",
                         "sandal", "shirt", "sneaker", "bag", "ankle boot")
FASHION_MNIST_DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
#: Where CIFAR-10 is looked for when no folder is given, relative to the working
#: directory (``tar xzf cifar-10-*.tar.gz -C data/cifar10``); the C++ training
#: program (``vgg_train``) uses the same default.
CIFAR10_DEFAULT_ROOT = "data/cifar10"
DATASETS = ("cifar10", "fashion_mnist", "synthetic")

_CIFAR_PY_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
_CIFAR_BIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
_CIFAR_HOWTO = (
    "get them from https://www.cs.toronto.edu/~kriz/cifar.html "
    "(cifar-10-python.tar.gz or cifar-10-binary.tar.gz) and unpack with "
    "`tar xzf <archive> -C <root>`"
)
_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_FASHION_HOWTO = (
    "install them with `apt-get install dataset-fashion-mnist` (into "
    f"{FASHION_MNIST_DEFAULT_ROOT}) or copy the .gz files of "
    "https://github.com/zalandoresearch/fashion-mnist into the folder"
)
_IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
_IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension


class DatasetError(ValueError):
    """A data file is missing, truncated or not in the format expected."""


@dataclass
class ImageDataset:
    """Train and test images (uint8, (n, C, 32, 32)) and labels (int64, (n,)).

    ``flip`` says whether a horizontal flip is a valid augmentation: it is for
    CIFAR-10, not for Fashion-MNIST, whose items are all drawn in one orientation
    (shoes point left), so a flipped image never occurs at test time.
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: tuple[str, ...]
    flip: bool

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def channel_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and standard deviation of the training images in
        [0, 1] (float32), the constants of :func:`normalize`."""
        x = self.train_images.double().div_(255.0).transpose(0, 1).reshape(self.channels, -1)
        return x.mean(dim=1).float(), x.std(dim=1).clamp_min(1e-6).float()


def _check_limit(limit: Optional[int], what: str) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"{what} must be a positive integer or None, got {limit!r}")


def _limited(images: torch.Tensor, labels: torch.Tensor, limit: Optional[int], what: str):
    _check_limit(limit, what)
    if limit is None:
        return images, labels
    return images[:limit].clone(), labels[:limit].clone()


def _check_labels(labels: torch.Tensor, num_classes: int, path: Path) -> None:
    if labels.numel() and int(labels.max()) >= num_classes:
        raise DatasetError(
            f"{path}: labels must be in [0, {num_classes}), found {int(labels.max())}"
        )


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles the numpy arrays, lists and dicts of a CIFAR batch and nothing
    else, so that a planted file cannot run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")
        return super().find_class(module, name)


def _read_cifar_py(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    import numpy as np

    try:
        with open(path, "rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError) as e:
        raise DatasetError(f"{path}: not a readable CIFAR-10 python batch ({e}); {_CIFAR_HOWTO}") from e
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DatasetError(f"{path}: a CIFAR-10 python batch is a dict with b'data' and b'labels'")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] == 0:
        raise DatasetError(
            f"{path}: b'data' must be uint8 of shape (n, 3072), got {data.dtype} {data.shape}"
        )
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(
            f"{path}: b'labels' must hold {data.shape[0]} integers, got {labels.dtype} {labels.shape}"
        )
    images = torch.from_numpy(data.copy()).reshape(-1, 3, 32, 32)
    targets = torch.from_numpy(labels.astype(np.int64))
    _check_labels(targets, 10, path)
    return images, targets


def _read_cifar_bin(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    raw = path.read_bytes()
    record = 1 + 3072
    if len(raw) == 0 or len(raw) % record:
        raise DatasetError(
            f"{path}: a CIFAR-10 binary batch holds records of {record} bytes (label + 3×32×32), "
            f"got {len(raw)} bytes (truncated?); {_CIFAR_HOWTO}"
        )
    rows = torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(-1, record)
    targets = rows[:, 0].long()
    _check_labels(targets, 10, path)
    return rows[:, 1:].reshape(-1, 3, 32, 32).clone(), targets


def load_cifar10(
    root: PathLike, limit_train: Optional[int] = None, limit_test: Optional[int] = None
) -> ImageDataset:
    """CIFAR-10 from ``root``: a folder holding ``cifar-10-batches-py`` or
    ``cifar-10-batches-bin``, or one of those folders itself. ``limit_*`` keep
    the first images of each split."""
    root = Path(root)
    layouts = []
    for folder in (root / "cifar-10-batches-py", root / "cifar-10-batches-bin", root):
        if (folder / "data_batch_1").is_file():
            layouts.append((folder, _CIFAR_PY_FILES, _read_cifar_py))
        if (folder / "data_batch_1.bin").is_file():
            layouts.append((folder, _CIFAR_BIN_FILES, _read_cifar_bin))
    if not layouts:
        raise DatasetError(
            f"CIFAR-10 not found under {root}: expected {root}/cifar-10-batches-py/"
            f"{{{','.join(_CIFAR_PY_FILES)}}} or {root}/cifar-10-batches-bin/"
            f"{{{','.join(_CIFAR_BIN_FILES)}}}; {_CIFAR_HOWTO}"
        )
    folder, names, read = layouts[0]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DatasetError(f"CIFAR-10 in {folder}: missing {', '.join(missing)}; {_CIFAR_HOWTO}")
    parts = [read(folder / n) for n in names]
    train_images = torch.cat([p[0] for p in parts[:-1]])
    train_labels = torch.cat([p[1] for p in parts[:-1]])
    train_images, train_labels = _limited(train_images, train_labels, limit_train, "limit_train")
    test_images, test_labels = _limited(*parts[-1], limit_test, "limit_test")
    return ImageDataset("cifar10", train_images, train_labels, test_images, test_labels,
                        CIFAR10_CLASSES, flip=True)


def _read_idx(path: Path, magic: int) -> torch.Tensor:
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DatasetError(f"{path}: not a readable gzip file ({e}); {_FASHION_HOWTO}") from e
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header or int.from_bytes(raw[:4], "big") != magic:
        found = raw[:4].hex() if len(raw) >= 4 else f"{len(raw)} bytes"
        raise DatasetError(
            f"{path}: not an IDX file of {ndim} dimension(s) of unsigned bytes "
            f"(magic {magic:08x}, found {found}); {_FASHION_HOWTO}"
        )
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + torch.Size(shape).numel()
    if len(raw) != expected:
        raise DatasetError(
            f"{path}: header says shape {tuple(shape)} ({expected} bytes), file has {len(raw)} "
            f"bytes (truncated?); {_FASHION_HOWTO}"
        )
    return torch.frombuffer(bytearray(raw[header:]), dtype=torch.uint8).reshape(shape)


def _fashion_file(root: Path, name: str) -> Path:
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    names = ", ".join(f"{a}[.gz], {b}[.gz]" for a, b in _FASHION_FILES.values())
    raise DatasetError(f"Fashion-MNIST in {root}: missing {name}[.gz] (expected {names}); "
                       f"{_FASHION_HOWTO}")


def _read_fashion_split(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    image_path = _fashion_file(root, _FASHION_FILES[split][0])
    label_path = _fashion_file(root, _FASHION_FILES[split][1])
    images = _read_idx(image_path, _IDX_IMAGES_MAGIC)
    labels = _read_idx(label_path, _IDX_LABELS_MAGIC).long()
    if tuple(images.shape[1:]) != (28, 28) or images.shape[0] == 0:
        raise DatasetError(f"{image_path}: Fashion-MNIST images are 28×28, got shape "
                           f"{tuple(images.shape)}")
    if labels.shape[0] != images.shape[0]:
        raise DatasetError(f"{label_path}: {labels.shape[0]} labels for {images.shape[0]} "
                           f"images in {image_path}")
    _check_labels(labels, 10, label_path)
    return torch.nn.functional.pad(images, (2, 2, 2, 2))[:, None], labels


def load_fashion_mnist(
    root: PathLike = FASHION_MNIST_DEFAULT_ROOT,
    limit_train: Optional[int] = None,
    limit_test: Optional[int] = None,
) -> ImageDataset:
    """Fashion-MNIST from the four IDX files in ``root`` (each ``name`` or
    ``name.gz``), padded with zeros to 1×32×32."""
    root = Path(root)
    train = _limited(*_read_fashion_split(root, "train"), limit_train, "limit_train")
    test = _limited(*_read_fashion_split(root, "test"), limit_test, "limit_test")
    return ImageDataset("fashion_mnist", *train, *test, FASHION_MNIST_CLASSES, flip=False)


def synthetic_dataset(
    n_train: int = 512, n_test: int = 256, channels: int = 3, num_classes: int = 10,
    seed: int = 0,
) -> ImageDataset:
    """A learnable CIFAR-shaped data set: each class is a fixed smooth random
    pattern, each image that pattern, randomly shifted, plus noise (uint8)."""
    for name, value in (("n_train", n_train), ("n_test", n_test), ("channels", channels),
                        ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"synthetic_dataset: {name} must be a positive integer, got {value!r}")
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(num_classes, channels, 4, 4, generator=gen)
    patterns = torch.nn.functional.interpolate(coarse, size=(40, 40), mode="bilinear",
                                               align_corners=False)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(num_classes, (n,), generator=gen)
        dx, dy = torch.randint(9, (2, n), generator=gen)
        rows = (dy[:, None] + torch.arange(32))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(32))[:, None, None, :]
        base = patterns[labels][torch.arange(n)[:, None, None, None],
                                torch.arange(channels)[None, :, None, None], rows, cols]
        noisy = base + 0.15 * torch.randn(n, channels, 32, 32, generator=gen)
        return (noisy.clamp(0, 1) * 255).round().to(torch.uint8), labels

    train, test = draw(n_train), draw(n_test)
    classes = tuple(f"class_{i}" for i in range(num_classes))
    return ImageDataset("synthetic", *train, *test, classes, flip=True)


def load_dataset(
    name: str, root: Optional[PathLike] = None, limit_train: Optional[int] = None,
    limit_test: Optional[int] = None, seed: int = 0,
) -> ImageDataset:
    """One of :data:`DATASETS` by name (``root`` as for its loader, by default
    :data:`CIFAR10_DEFAULT_ROOT` or :data:`FASHION_MNIST_DEFAULT_ROOT`; the
    synthetic set is drawn with ``seed`` and has ``limit_*`` images, 512/256 by
    default)."""
    if name == "cifar10":
        return load_cifar10(CIFAR10_DEFAULT_ROOT if root is None else root, limit_train, limit_test)
    if name == "fashion_mnist":
        return load_fashion_mnist(root or FASHION_MNIST_DEFAULT_ROOT, limit_train, limit_test)
    if name == "synthetic":
        _check_limit(limit_train, "limit_train")
        _check_limit(limit_test, "limit_test")
        return synthetic_dataset(512 if limit_train is None else limit_train,
                                 256 if limit_test is None else limit_test, seed=seed)
    raise ValueError(f"load_dataset: name must be one of {DATASETS}, got {name!r}")


def augment(
    images: torch.Tensor, generator: torch.Generator, padding: int = 4, flip: bool = True
) -> torch.Tensor:
    """The standard augmentation of a uint8 batch (n, C, H, W): a random H×W crop
    of the image zero-padded by ``padding`` pixels, then (with ``flip``) a
    horizontal flip with probability ½. Returns floats in [0, 1]. The random
    numbers come from ``generator`` only, so a run is reproducible and resumable."""
    if images.dim() != 4:
        raise ValueError(f"augment: images must have shape (n, C, H, W), got {tuple(images.shape)}")
    if images.dtype != torch.uint8:
        raise ValueError(f"augment: images must be uint8 (0-255), got {images.dtype}")
    if padding < 0:
        raise ValueError(f"augment: padding must be >= 0, got {padding}")
    n, c, h, w = images.shape
    x = images.float().div_(255.0)
    offsets = torch.randint(2 * padding + 1, (2, n), generator=generator, device=generator.device)
    flips = torch.rand(n, generator=generator, device=generator.device) < 0.5
    offsets, flips = offsets.to(x.device), flips.to(x.device)
    if padding:
        padded = torch.nn.functional.pad(x, (padding,) * 4)
        rows = (offsets[0][:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (offsets[1][:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        x = padded[torch.arange(n, device=x.device)[:, None, None, None],
                   torch.arange(c, device=x.device)[None, :, None, None], rows, cols]
    if flip:
        x = torch.where(flips[:, None, None, None], x.flip(3), x)
    return x


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(x − mean_c)/std_c per channel c of a float batch (n, C, H, W)."""
    if x.dim() != 4 or mean.shape != (x.shape[1],) or std.shape != (x.shape[1],):
        raise ValueError(
            f"normalize: x must be (n, C, H, W) with mean and std of shape (C,), got "
            f"{tuple(x.shape)}, {tuple(mean.shape)}, {tuple(std.shape)}"
        )
    mean, std = mean.to(x.device, x.dtype), std.to(x.device, x.dtype)
    return (x - mean[:, None, None]) / std[:, None, None]
