"""Evaluation of a VGG-16 on a split: loss, accuracy and the layerwise margin
minᵢ qᵢ / Πₗ ‖θₗ‖_L (MATH.md §3), optionally on one shard of a distributed run."""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F

from mirrorflow.data import normalize
from mirrorflow.diagnostics import layerwise_margin
from mirrorflow.models import VGG16


@torch.no_grad()
def evaluate(
    model: VGG16,
    images: torch.Tensor,
    labels: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    batch_size: int = 500,
    bf16: bool = False,
    margin_degree: Optional[float] = None,
    rank: int = 0,
    world: int = 1,
) -> dict[str, float]:
    """Mean cross-entropy ``loss``, ``acc`` (fraction correct) and, with
    ``margin_degree`` L, the layerwise ``margin`` over uint8 ``images`` (no
    augmentation). With ``world`` > 1 every rank takes the samples rank::world
    and the results are reduced over the process group."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    indices = torch.arange(rank, images.shape[0], world)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.float64, device=device)
    outputs = []
    for start in range(0, indices.numel(), batch_size):
        idx = indices[start:start + batch_size]
        x = normalize(images[idx].to(device).float().div_(255.0), mean, std)
        y = labels[idx].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        out = out.float()
        loss_sum += F.cross_entropy(out, y, reduction="sum").double()
        correct += (out.argmax(1) == y).sum().double()
        if margin_degree is not None:
            outputs.append((out, y))
    margin = torch.full((), math.inf, dtype=torch.float64, device=device)
    if margin_degree is not None and outputs:
        margin.fill_(layerwise_margin(torch.cat([o for o, _ in outputs]),
                                      torch.cat([y for _, y in outputs]),
                                      model.layer_parameters(), degree=margin_degree))
    if world > 1:
        sums = torch.stack([loss_sum, correct])
        dist.all_reduce(sums)
        dist.all_reduce(margin, op=dist.ReduceOp.MIN)
        loss_sum, correct = sums[0], sums[1]
    model.train(was_training)
    n = images.shape[0]
    result = {"loss": float(loss_sum) / n, "acc": float(correct) / n}
    if margin_degree is not None:
        result["margin"] = float(margin)
    return result
