"""One training configuration of the VGG-16 experiment (MATH.md §5) and the files
of its run folder, shared by train.py, sweep.py and report.py.

A run folder holds ``config.json`` (the :class:`RunConfig`), ``checkpoint.pt``
(the latest finished epoch: model, optimizer, random-number states, epoch,
metrics log), ``metrics.jsonl`` (one line per finished epoch) and, once the run
is over, ``done.json`` (a summary). Every file is written to a temporary name
and moved into place, so a killed run never leaves a half-written file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

import mirrorflow
from mirrorflow._atomic_file import write_text_atomic
from mirrorflow.data import DATASETS, ImageDataset, load_dataset
from mirrorflow.models import VGG16

CONFIG_FILE, CHECKPOINT_FILE, METRICS_FILE, DONE_FILE = (
    "config.json", "checkpoint.pt", "metrics.jsonl", "done.json")


@dataclass
class RunConfig:
    """Everything that determines a run's result (the device and the thread
    count are chosen at launch and are not part of it)."""

    dataset: str = "cifar10"
    data_root: Optional[str] = None
    limit_train: Optional[int] = None
    limit_test: Optional[int] = None
    mirror: str = "euclidean"
    beta: float = 1.0
    degree: float = 3.0
    beta_scaling: str = "none"
    update: str = "metric"
    normalize: bool = True
    lr: float = 0.1
    batch_size: int = 128
    epochs: int = 100
    seed: int = 0
    width: float = 1.0
    head: list[int] = field(default_factory=list)
    augment: bool = True
    bf16: bool = False
    margin_samples: int = 5000
    eval_batch_size: int = 500

    def validate(self) -> None:
        """The rules the optimizer and the model do not check themselves
        (ValueError naming the field, the rule and the value)."""
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        for name in ("epochs", "batch_size", "margin_samples", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    def run_name(self) -> str:
        """``<map>_b<β>_lr<η>_s<seed>`` (no β for ``euclidean``; ``power`` adds L)."""
        parts = [self.mirror]
        if self.mirror == "power":
            parts.append(f"L{self.degree:g}")
        if self.mirror != "euclidean":
            parts.append(f"b{self.beta:g}")
        parts += [f"lr{self.lr:g}", f"s{self.seed}"]
        return "_".join(parts)

    def map_label(self) -> str:
        """The map as the report names it: ``euclidean``, ``hyperbolic``, ``power (L=3)``."""
        return f"power (L={self.degree:g})" if self.mirror == "power" else self.mirror

    def to_args(self) -> list[str]:
        """The train.py options that reproduce this configuration."""
        args = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            flag = "--" + f.name.replace("_", "-")
            if isinstance(value, bool):
                args.append(flag if value else "--no-" + f.name.replace("_", "-"))
            elif isinstance(value, list):
                args += [flag, ",".join(str(v) for v in value)] if value else []
            elif value is not None:
                args += [flag, repr(value) if isinstance(value, float) else str(value)]
        return args

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RunConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"RunConfig: unknown keys {unknown}; known keys are {sorted(names)}")
        return cls(**values)


_HELP = {
    "dataset": "data set",
    "data_root": "folder of the data files (default: data/cifar10 for CIFAR-10, holding "
                 "cifar-10-batches-py/ or cifar-10-batches-bin/; "
                 "/usr/share/datasets/fashion-mnist for Fashion-MNIST)",
    "limit_train": "use only the first N training images (None: all)",
    "limit_test": "use only the first N test (validation) images (None: all)",
    "mirror": "mirror map", "beta": "β of the hyperbolic and power maps",
    "degree": "L of the power map", "beta_scaling": "per-layer β (MATH.md §2)",
    "update": "metric (θ − ηM⁻¹g) or dual (exact mirror descent)",
    "normalize": "per-layer normalised inverse metric (MATH.md §2)",
    "lr": "learning rate η", "batch_size": "global batch size", "epochs": "epochs",
    "seed": "seed of the initialisation, data order and augmentation",
    "width": "width multiplier of every layer",
    "head": "comma-separated hidden widths of the classifier ('' = one linear layer)",
    "augment": "random crop with 4-pixel padding (+ flip where the data set allows)",
    "bf16": "bfloat16 autocast for the forward pass",
    "margin_samples": "training images the layerwise margin is measured on",
    "eval_batch_size": "batch size of the evaluations",
}
_CHOICES = {"dataset": DATASETS, "mirror": tuple(mirrorflow.MAPS), "update": ("metric", "dual"),
            "beta_scaling": ("none", "fan_in")}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per :class:`RunConfig` field, with its default."""
    defaults = RunConfig()
    for f in dataclasses.fields(RunConfig):
        flag = "--" + f.name.replace("_", "-")
        value = getattr(defaults, f.name)
        if isinstance(value, bool):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=value, help=_HELP[f.name])
        elif isinstance(value, list):
            parser.add_argument(flag, dest=f.name, default="", help=_HELP[f.name])
        else:
            kind = {"float": float, "int": int, "str": str}.get(type(value).__name__, int)
            if f.name == "data_root":
                kind = str
            parser.add_argument(flag, dest=f.name, type=kind, default=value,
                                choices=_CHOICES.get(f.name), help=_HELP[f.name])


def config_from_args(args: argparse.Namespace) -> RunConfig:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)}
    head = values["head"]
    try:
        values["head"] = [int(h) for h in head.split(",") if h.strip()] if isinstance(head, str) else list(head)
    except ValueError:
        raise ValueError(f"--head must be comma-separated integers, got {head!r}") from None
    return RunConfig(**values)


def load_data(config: RunConfig) -> ImageDataset:
    return load_dataset(config.dataset, config.data_root, config.limit_train, config.limit_test,
                        seed=0)


def build_model(config: RunConfig, data: ImageDataset) -> VGG16:
    """The VGG-16 of the configuration, initialised from torch's generator seeded
    with the run's seed."""
    torch.manual_seed(config.seed)
    return VGG16(data.channels, data.num_classes, width=config.width, head=config.head)


def build_optimizer(config: RunConfig, model: torch.nn.Module) -> mirrorflow.MirrorDescent:
    """MirrorDescent without momentum or weight decay (MATH.md §5)."""
    return mirrorflow.MirrorDescent(
        model.parameters(), lr=config.lr, mirror=config.mirror, beta=config.beta,
        degree=config.degree, update=config.update, normalize=config.normalize,
        beta_scaling=config.beta_scaling)


def write_json(path: Path, value: Any) -> None:
    write_text_atomic(path, json.dumps(value, indent=1) + "\n")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))


def read_config(run_dir: Path) -> RunConfig:
    return RunConfig.from_dict(json.loads((run_dir / CONFIG_FILE).read_text()))


def check_or_write_config(run_dir: Path, config: RunConfig) -> None:
    """Writes ``config.json`` in a new run folder; in an existing one, refuses a
    different configuration (ValueError naming the keys that differ)."""
    path = run_dir / CONFIG_FILE
    if path.exists():
        stored = json.loads(path.read_text())
        current = dataclasses.asdict(config)
        differ = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
        if differ:
            raise ValueError(
                f"run folder {run_dir} holds another configuration (differs in "
                f"{', '.join(f'{k}: {stored.get(k)!r} != {current.get(k)!r}' for k in differ)}); "
                "choose another --out or --name")
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(path, dataclasses.asdict(config))


def is_done(run_dir: Path) -> bool:
    return (run_dir / DONE_FILE).is_file()
