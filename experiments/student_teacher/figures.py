"""Figures of the student–teacher runs (matplotlib, Agg)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from mirrorflow import diagnostics  # noqa: E402

from .problem import DTYPE, Problem, network  # noqa: E402
from .table import group_by_map, map_label  # noqa: E402

COLORS = {"hyperbolic": "tab:red", "euclidean": "tab:blue", "power": "tab:green"}


def _params(record: dict[str, Any]) -> list[torch.Tensor]:
    return [torch.tensor(p, dtype=DTYPE) for p in record["params"]]


def _first_seed(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per map the run with the smallest seed (all maps share that seed's problem)."""
    seed = min(r["config"]["seed"] for r in records)
    return {map_label(r["config"]): r for r in records if r["config"]["seed"] == seed}


def _neuron_panel(ax, w: torch.Tensor, out: torch.Tensor, problem: Problem, title: str,
                  threshold: float) -> None:
    strength = diagnostics.neuron_strength(w, out)
    radius = strength / strength.max()
    direction = w / w.norm(dim=1, keepdim=True).clamp_min(1e-300)
    # a neuron of a deeper network feeds several units: no single sign to colour it by
    sign = out.sign() if out.dim() == 1 else torch.zeros(out.shape[1], dtype=DTYPE)
    t = torch.linspace(0, 2 * math.pi, 200)
    ax.plot(t.cos(), t.sin(), color="0.8", lw=0.8)
    ax.plot(threshold * t.cos(), threshold * t.sin(), color="0.6", lw=0.6, ls=":")
    ax.scatter(problem.x[:, 0] * 1.08, problem.x[:, 1] * 1.08, s=6,
               c=["tab:orange" if v > 0 else "tab:purple" for v in problem.y], alpha=0.6)
    for j in range(w.shape[0]):
        px, py = (direction[j] * radius[j]).tolist()
        color = "tab:red" if sign[j] > 0 else "tab:blue" if sign[j] < 0 else "0.25"
        ax.plot([0, px], [0, py], color=color, lw=1.2, alpha=0.8)
        ax.scatter([px], [py], s=10, color=color)
    active = int((strength > threshold * strength.max()).sum())
    ax.set_title(f"{title}\n{active} of {w.shape[0]} active", fontsize=9)
    ax.set_aspect("equal")
    ax.set_xlim(-1.2, 1.2)
    ax.set_ylim(-1.2, 1.2)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_neurons(records: list[dict[str, Any]], path: Path) -> Path:
    """First-layer neurons: direction wⱼ/‖wⱼ‖, length their strength relative to the largest
    (:func:`mirrorflow.diagnostics.neuron_strength`), teacher first; red: positive output weight
    (two layers), blue: negative; dotted circle: the threshold τ of the active count."""
    runs = _first_seed(records)
    first = next(iter(runs.values()))
    problem = _problem_of(first)
    fig, axes = plt.subplots(1, len(runs) + 1, figsize=(2.6 * (len(runs) + 1), 3.0))
    tau = first["config"]["threshold"]
    _neuron_panel(axes[0], problem.teacher[0], problem.teacher[1], problem, "teacher", tau)
    for ax, (label, r) in zip(axes[1:], runs.items()):
        p = _params(r)
        _neuron_panel(ax, p[0], p[1], problem, label, tau)
    colour = ("red: aⱼ > 0, blue: aⱼ < 0" if first["config"]["depth"] == 2
              else "length ∝ ‖wⱼ‖·‖V[:, j]‖")
    seed = first["config"]["seed"]
    fig.suptitle(f"first-layer neurons in the input plane, seed {seed} ({colour}; "
                 "inputs: orange +1, purple −1)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _problem_of(record: dict[str, Any]) -> Problem:
    from .train import RunConfig  # the record's own settings rebuild its data

    return RunConfig(**record["config"]).problem()


def plot_histograms(records: list[dict[str, Any]], path: Path) -> Path:
    """Weight-magnitude histograms per layer, |θ|/max|θ| of the layer on a log scale, all seeds."""
    groups = group_by_map(records)
    depth = records[0]["config"]["depth"]
    fig, axes = plt.subplots(1, depth, figsize=(3.4 * depth, 2.8))
    for layer, ax in enumerate(axes):
        for label, rs in groups.items():
            mags = [p.abs() / p.abs().max() for p in (_params(r)[layer] for r in rs)]
            counts, edges = diagnostics.weight_histogram(mags, bins=40, log_scale=True,
                                                         value_range=(1e-8, 1.0))
            ax.stairs(counts.numpy(), edges.numpy(), label=label,
                      color=COLORS[rs[0]["config"]["mirror"]], lw=1.4)
        ax.set_xscale("log")
        ax.set_xlabel("|θ| / max |θ| of the layer")
        ax.set_title(["first layer W", "second layer V", "output layer a"][layer]
                     if depth == 3 else ["first layer W", "output layer a"][layer], fontsize=9)
    axes[0].set_ylabel(f"count ({len(next(iter(groups.values())))} seeds)")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_decision_boundary(records: list[dict[str, Any]], path: Path) -> Path:
    """sign f(x) of each student in the input plane (fill), its boundary (black), the teacher's
    boundary (dashed) and the data."""
    runs = _first_seed(records)
    problem = _problem_of(next(iter(runs.values())))
    g = torch.linspace(-1.3, 1.3, 261, dtype=DTYPE)
    gx, gy = torch.meshgrid(g, g, indexing="xy")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
    teacher = network(problem.teacher, grid).reshape(gx.shape)
    fig, axes = plt.subplots(1, len(runs), figsize=(3.0 * len(runs), 3.0))
    for ax, (label, r) in zip(axes, runs.items()):
        f = network(_params(r), grid).reshape(gx.shape)
        ax.contourf(gx, gy, f.sign(), levels=[-2, 0, 2], colors=["#e8dcf2", "#fde3c8"])
        ax.contour(gx, gy, f, levels=[0], colors="k", linewidths=1.0)
        ax.contour(gx, gy, teacher, levels=[0], colors="0.4", linewidths=1.0, linestyles="--")
        ax.scatter(problem.x[:, 0], problem.x[:, 1], s=6,
                   c=["tab:orange" if v > 0 else "tab:purple" for v in problem.y])
        ax.set_title(label, fontsize=9)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("decision boundary (black), teacher (dashed)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_margins_over_time(records: list[dict[str, Any]], path: Path) -> Path:
    """γ₁, γ₂, γ₃ and the active neurons (first hidden layer) against the time Σₜ ηₜ of the
    mirror flow (time rescaling included), one line per run, coloured by map. Each γ_L is divided
    by the largest final γ_L among the maps on the same seed (each seed has its own data), so
    the map that wins column L ends at 1."""
    groups = group_by_map(records)
    best = {}
    for r in records:
        for L in (1, 2, 3):
            key = (r["config"]["seed"], L)
            best[key] = max(best.get(key, float("-inf")), r["final"][f"gamma{L}"])
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.0))
    for label, rs in groups.items():
        color = COLORS[rs[0]["config"]["mirror"]]
        for r in rs:
            hist = r["history"][1:]  # time 0 has no place on a log axis
            t = [h["time"] for h in hist]
            for ax, L in zip(axes[:3], (1, 2, 3)):
                # γ_L ≤ 0 until the data is classified: left out of the log axis
                top = best[(r["config"]["seed"], L)]
                pts = [(ti, h[f"gamma{L}"] / top) for ti, h in zip(t, hist) if h[f"gamma{L}"] > 0]
                ax.plot(*zip(*pts), color=color, lw=0.8, alpha=0.7,
                        label=label if r is rs[0] else None)
            axes[3].plot(t, [h["active"][0] for h in hist], color=color, lw=0.8,
                         alpha=0.7, label=label if r is rs[0] else None)
    for ax, L in zip(axes[:3], (1, 2, 3)):
        ax.set_title(f"γ{L} / best final γ{L} of the seed (where > 0)", fontsize=9)
        ax.set_yscale("log")
    axes[3].set_title("active neurons (first hidden layer)", fontsize=9)
    axes[3].axhline(records[0]["teacher_neurons"], color="0.5", ls=":", lw=1)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("time Σ ηₜ")
    axes[3].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
