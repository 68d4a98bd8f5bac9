"""Trains one VGG-16 configuration with mirror descent (MATH.md §5).

    python experiments/vgg_cifar/train.py --dataset cifar10 --data-root data/cifar10 \
        --mirror hyperbolic --beta 0.01 --lr 0.1 --epochs 100 --seed 0
    torchrun --nproc_per_node=4 experiments/vgg_cifar/train.py ...   # several GPUs

Each epoch logs train loss/accuracy (on the augmented batches), validation
loss/accuracy (the test split) and the layerwise margin (MATH.md §3, on the
first ``--margin-samples`` training images, L = the map's horizon degree), and
writes a checkpoint. Run again after a kill, it resumes from the last
checkpoint and ends with exactly the result of an uninterrupted run (on the
CPU; on GPUs with ``--deterministic``). ``--batch-size`` is the global batch:
under torchrun every process takes its share of each batch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from mirrorflow._atomic_file import write_atomic
from mirrorflow.data import augment, normalize
from mirrorflow.maps import horizon_degree

from evaluation import evaluate
from run_config import (CHECKPOINT_FILE, DONE_FILE, METRICS_FILE, RunConfig, add_config_arguments,
                        build_model, build_optimizer, check_or_write_config, config_from_args,
                        is_done, load_data, write_json, write_jsonl)


def _setup_distributed(device: str) -> tuple[int, int, torch.device]:
    """(rank, world size, this process's device); a process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, torch.device(device)
    use_cuda = device.startswith("cuda")
    dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return dist.get_rank(), world, torch.device("cuda", local)
    return dist.get_rank(), world, torch.device(device)


def _rng_states(data_gen: torch.Generator) -> dict[str, torch.Tensor]:
    states = {"torch": torch.get_rng_state(), "data": data_gen.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def _set_rng_states(states: dict[str, torch.Tensor], data_gen: torch.Generator) -> None:
    torch.set_rng_state(states["torch"])
    data_gen.set_state(states["data"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])


def train(
    config: RunConfig, run_dir: Path, device: str = "cpu", threads: int = 0,
    deterministic: bool = False, progress: bool = True,
) -> dict:
    """Trains (or resumes, or skips when finished) the run in ``run_dir``;
    returns the summary written to ``done.json``."""
    config.validate()
    rank, world, dev = _setup_distributed(device)
    if threads:
        torch.set_num_threads(threads)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    if config.batch_size % world:
        raise ValueError(f"batch_size must be divisible by the number of processes ({world}), "
                         f"got {config.batch_size}")
    if is_done(run_dir):
        check_or_write_config(run_dir, config)
        summary = json.loads((run_dir / DONE_FILE).read_text())
        if rank == 0:
            print(f"{run_dir}: finished already ({summary['epochs_run']} epochs)", file=sys.stderr)
        return summary
    data = load_data(config)
    mean, std = data.channel_stats()
    n_train = data.train_images.shape[0]
    if config.batch_size > n_train:
        raise ValueError(f"batch_size must be <= the number of training images ({n_train}), "
                         f"got {config.batch_size}")
    train_images, train_labels = data.train_images.to(dev), data.train_labels.to(dev)
    model = build_model(config, data).to(dev)
    optimizer = build_optimizer(config, model)
    # Written only now that the data, the model and the optimizer's options
    # are known to be good, so that a bad configuration leaves no folder behind.
    if rank == 0:
        check_or_write_config(run_dir, config)
    if world > 1:
        dist.barrier()
    data_gen = torch.Generator().manual_seed(config.seed)
    log: list[dict] = []
    checkpoint_path = run_dir / CHECKPOINT_FILE
    if checkpoint_path.is_file():
        state = torch.load(checkpoint_path, map_location=dev, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        _set_rng_states(state["rng"], data_gen)
        log = state["metrics"]
        if rank == 0:
            print(f"{run_dir}: resuming after epoch {state['epoch']}", file=sys.stderr)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    degree = horizon_degree(config.mirror, config.degree)
    local = config.batch_size // world
    steps = n_train // config.batch_size  # the last incomplete batch is dropped
    mean_dev, std_dev = mean.to(dev), std.to(dev)
    diverged = False
    for epoch in range(len(log), config.epochs):
        started = time.time()
        order = torch.randperm(n_train, generator=data_gen)
        sums = torch.zeros(3, dtype=torch.float64, device=dev)  # loss, correct, count
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{config.epochs}",
                   disable=rank != 0 or not progress, leave=False, file=sys.stderr)
        for step in bar:
            idx = order[step * config.batch_size:(step + 1) * config.batch_size].to(dev)
            batch = train_images[idx]
            # The whole global batch is augmented on every rank (same generator,
            # same numbers), so that N processes see exactly the batch one would.
            x = (augment(batch, data_gen, flip=data.flip) if config.augment
                 else batch.float().div_(255.0))
            x = normalize(x[rank * local:(rank + 1) * local], mean_dev, std_dev)
            y = train_labels[idx][rank * local:(rank + 1) * local]
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=config.bf16):
                out = net(x)
            loss = F.cross_entropy(out.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sums += torch.stack([loss.detach().double() * local,
                                 (out.argmax(1) == y).sum().double(),
                                 torch.tensor(float(local), dtype=torch.float64, device=dev)])
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss.detach().item():.3f}")
        if world > 1:
            dist.all_reduce(sums)
        val = evaluate(model, data.test_images, data.test_labels, mean, std,
                       config.eval_batch_size, config.bf16, rank=rank, world=world)
        probe = min(config.margin_samples, n_train)
        margin = evaluate(model, data.train_images[:probe], data.train_labels[:probe], mean, std,
                          config.eval_batch_size, config.bf16, margin_degree=degree,
                          rank=rank, world=world)["margin"]
        record = {"epoch": epoch + 1, "train_loss": float(sums[0] / sums[2]),
                  "train_acc": float(sums[1] / sums[2]), "val_loss": val["loss"],
                  "val_acc": val["acc"], "layerwise_margin": margin, "margin_degree": degree,
                  "seconds": time.time() - started}
        log.append(record)
        if rank == 0:
            state = {"epoch": epoch + 1, "config": dataclasses.asdict(config),
                     "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "rng": _rng_states(data_gen), "metrics": log}
            write_atomic(checkpoint_path, lambda p: torch.save(state, p))
            write_jsonl(run_dir / METRICS_FILE, log)
            tqdm.write(f"epoch {epoch + 1}: " + ", ".join(
                f"{k} {v:.4g}" for k, v in record.items() if k not in ("epoch", "margin_degree")),
                file=sys.stderr)
        if world > 1:
            dist.barrier()
        if not math.isfinite(record["train_loss"]):
            diverged = True
            break
    summary = {"epochs_run": len(log), "diverged": diverged,
               "best_val_acc": max(r["val_acc"] for r in log),
               "final_val_acc": log[-1]["val_acc"], "final_margin": log[-1]["layerwise_margin"]}
    if rank == 0:
        write_json(run_dir / DONE_FILE, summary)
    if world > 1:
        dist.barrier()
    return summary


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--out", default="runs/vgg", help="folder of the run folders")
    parser.add_argument("--name", default=None, help="run folder name (default: from the config)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--deterministic", action="store_true",
                        help="deterministic algorithms (needed for bit-exact resume on GPUs)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    try:
        config = config_from_args(args)
        run_dir = Path(args.out) / (args.name or config.run_name())
        train(config, run_dir, args.device, args.threads, args.deterministic, not args.no_progress)
    except ValueError as e:  # bad options or data files (DatasetError): the message says it all
        sys.exit(f"train.py: error: {e}")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
