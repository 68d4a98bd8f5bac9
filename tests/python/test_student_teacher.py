"""The student–teacher experiment (experiments/student_teacher, MATH.md §5) at small scale."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "experiments"))

from student_teacher import runs as runs_module  # noqa: E402
from student_teacher.problem import init_student, make_problem, network  # noqa: E402
from student_teacher.table import markdown_table, own_degree_wins  # noqa: E402
from student_teacher.train import RunConfig, train  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks: extra threads only add overhead (and compete on a shared machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_problem_inputs_on_the_circle_labelled_by_the_teacher():
    p = make_problem(samples=50, teacher_neurons=3, gap=0.2, seed=4)
    torch.testing.assert_close(p.x.norm(dim=1), torch.ones(50, dtype=torch.float64))
    f = network(p.teacher, p.x)
    assert torch.equal(p.y, torch.sign(f))
    t = torch.linspace(0, 2 * math.pi, 4001, dtype=torch.float64)
    peak = network(p.teacher, torch.stack([t.cos(), t.sin()], 1)).abs().max()
    assert bool((f.abs() >= 0.2 * peak * (1 - 1e-3)).all())
    assert p.teacher_neurons == 3
    # without a gap, inputs where every teacher neuron is off (f = 0, no label) are still left out
    p0 = make_problem(samples=200, teacher_neurons=2, gap=0.0, seed=3)
    assert bool((p0.y.abs() == 1).all()) and len(p0.y) == 200
    with pytest.raises(ValueError, match="teacher_neurons >= 2"):
        make_problem(samples=10, teacher_neurons=1, gap=0.1, seed=0)


@pytest.mark.parametrize("depth", [2, 3])
def test_student_is_homogeneous_of_degree_depth(depth):
    params = init_student(depth, width=7, scale=1.0, seed=1)
    x = make_problem(20, 2, 0.0, seed=0).x
    with torch.no_grad():
        f = network(params, x)
        torch.testing.assert_close(network([2.5 * p for p in params], x), 2.5**depth * f)
    # mean-field: f is the average over the last layer's neurons, (1/m)·Σ aⱼ hⱼ
    with torch.no_grad():
        doubled = [p.clone() for p in params]
        doubled[-1] = torch.cat([params[-1], params[-1]])
        doubled[-2] = torch.cat([params[-2], params[-2]])
        torch.testing.assert_close(network(doubled, x), f)


def test_hyperbolic_sparser_than_euclidean_sparser_than_power():
    problem = make_problem(samples=32, teacher_neurons=3, gap=0.1, seed=0)
    lrs = {"hyperbolic": 0.1, "euclidean": 1.0, "power": 3.0}
    finals = {}
    for mirror, beta in (("hyperbolic", 0.01), ("euclidean", 1.0), ("power", 0.01)):
        cfg = RunConfig(mirror=mirror, beta=beta, width=24, steps=2500, lr=lrs[mirror],
                        samples=32, teacher_neurons=3, records=8, seed=0)
        finals[mirror] = train(problem, cfg)["final"]
    active = {m: f["active"][0] for m, f in finals.items()}
    assert active["hyperbolic"] < active["euclidean"] < active["power"], active
    assert active["hyperbolic"] <= 6
    assert all(f["min_margin"] > 0 for f in finals.values())
    for mirror, L in (("hyperbolic", 1), ("euclidean", 2), ("power", 3)):
        best = max(finals, key=lambda m: finals[m][f"gamma{L}"])
        assert best == mirror, (L, {m: f[f"gamma{L}"] for m, f in finals.items()})


def test_logistic_loss_trains_and_bad_settings_are_rejected():
    problem = make_problem(samples=24, teacher_neurons=2, gap=0.1, seed=1)
    cfg = RunConfig(mirror="euclidean", beta=1.0, loss="logistic", width=10, steps=300, lr=1.0,
                    samples=24, teacher_neurons=2, records=5)
    record = train(problem, cfg)
    first, last = record["history"][0], record["final"]
    assert last["min_margin"] > 0 and last["loss"] < 0.01 * first["loss"]
    # the recorded loss is the mean of log(1 + e^{−qᵢ}) at the final weights
    params = [torch.tensor(p, dtype=torch.float64) for p in record["params"]]
    q = (problem.y * network(params, problem.x)).tolist()
    assert last["loss"] == pytest.approx(sum(math.log1p(math.exp(-v)) for v in q) / len(q))
    for kwargs, name in (({"loss": "hinge"}, "loss"), ({"depth": 4}, "depth"),
                         ({"threshold": 1.0}, "threshold"), ({"update": "exact"}, "update")):
        with pytest.raises(ValueError, match=f"RunConfig: {name} must be"):
            RunConfig(mirror="euclidean", beta=1.0, **kwargs)
    with pytest.raises(ValueError, match="mirror must be one of"):
        RunConfig(mirror="sgd", beta=1.0)


def _record(mirror, seed, g1, g2, g3, active):
    config = RunConfig(mirror=mirror, beta=0.01 if mirror != "euclidean" else 1.0, seed=seed)
    final = {"gamma1": g1, "gamma2": g2, "gamma3": g3, "active": [active]}
    return {"config": dict(config.__dict__), "final": final, "teacher_neurons": 4,
            "time_rescaling": {"epsilon": 0.01, "c_max": 10.0}}


def test_table_means_stds_and_wins_by_hand():
    records = [
        _record("hyperbolic", 0, 3e-5, 4e-4, 1e-3, 4),
        _record("euclidean", 0, 1e-5, 5e-4, 2e-3, 30),
        _record("hyperbolic", 1, 5e-5, 6e-4, 2e-3, 6),
        _record("euclidean", 1, 6e-5, 5e-4, 1e-3, 34),
    ]
    wins = own_degree_wins(records)
    # seed 0: each map wins its own column; seed 1: euclidean the larger γ₁, hyperbolic γ₂
    assert wins == {"hyperbolic": (1, 2), "euclidean": (1, 2)}
    table = markdown_table(records)
    rows = {line.split("|")[1].strip(): line
            for line in table.splitlines() if line.startswith("| ")}
    # hyperbolic γ₁: mean 4e-5, std √2·1e-5 (n − 1 in the denominator); column in units of 1e-5
    assert "| 4 ± 1.4 |" in rows["hyperbolic"]
    assert "| 5.0 ± 1.4 | 1/2 seeds |" in rows["hyperbolic"]
    assert "| 32.0 ± 2.8 | 1/2 seeds |" in rows["euclidean"]
    assert "(×10^-5)" in rows["map"] and "(×10^-4)" in rows["map"]
    assert "ε = 0.01, c_max = 10" in table


def test_run_all_writes_each_run_and_resumes(tmp_path, monkeypatch):
    configs = [RunConfig(mirror=m, beta=0.05, width=6, steps=30, records=4, samples=16, seed=s)
               for s in (0, 1) for m in ("hyperbolic", "euclidean")]
    records = runs_module.run_all(configs, tmp_path, desc="test")
    files = sorted((tmp_path / "runs").glob("*.json"))
    assert len(files) == 4
    assert json.loads(files[0].read_text())["config"] in [r["config"] for r in records]
    assert (tmp_path / "runs.csv").read_text().count("\n") == 5
    assert not list(tmp_path.rglob("*.partial*"))

    def fail(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(runs_module, "train", fail)
    again = runs_module.run_all(configs, tmp_path, desc="test")
    assert [r["final"] for r in again] == [r["final"] for r in records]
