"""The mirror maps of MATH.md §1, evaluated by the C++ core.

Every map is separable, φ(θ) = Σᵢ φ(θᵢ). ``map_eval`` evaluates one of its
functions elementwise with the same code the optimizer's kernels use:

========================  =============================================
``function``              value at x
========================  =============================================
``"potential"``           φ(x)
``"grad"``                ∇φ(x)
``"grad_conj"``           ∇φ*(x) = (∇φ)⁻¹(x)
``"inv_metric"``          1/φ''(x), the inverse metric
``"conj_of_grad"``        φ*(∇φ(x)), the summand of the balance Bₗ (§3)
========================  =============================================
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

FUNCTIONS = ("potential", "grad", "grad_conj", "inv_metric", "conj_of_grad")


@dataclass(frozen=True)
class MapInfo:
    """What a map needs and which horizon it has."""

    name: str
    parameters: str
    potential: str
    horizon: str

    def degree(self, degree: float = 3.0) -> float:
        """The homogeneity degree L of the horizon function Σ|θ|^L."""
        return {"euclidean": 2.0, "hyperbolic": 1.0}.get(self.name, float(degree))


#: The maps, by name (the ``mirror=`` argument of :class:`mirrorflow.MirrorDescent`).
MAPS: dict[str, MapInfo] = {
    "euclidean": MapInfo("euclidean", "none", "x²/2", "L = 2, ‖θ‖₂²"),
    "hyperbolic": MapInfo(
        "hyperbolic", "beta > 0", "x·asinh(x/β) − √(x²+β²) + β", "L = 1, ‖θ‖₁"
    ),
    "power": MapInfo(
        "power",
        "degree L > 1, beta >= 0",
        "((x²+β²)^{L/2} − β^L)/L",
        "L = degree, ‖θ‖_L^L",
    ),
}


def horizon_degree(mirror: str, degree: float = 3.0) -> float:
    """The degree L whose margin γ_L the map maximises (MATH.md §3)."""
    if mirror not in MAPS:
        raise ValueError(
            f"mirror must be one of {sorted(MAPS)}, got {mirror!r}"
        )
    return MAPS[mirror].degree(degree)


def map_eval(
    x: torch.Tensor,
    mirror: str,
    function: str,
    beta: float = 1.0,
    degree: float = 3.0,
) -> torch.Tensor:
    """Evaluates ``function`` of the map ``mirror`` elementwise on ``x``.

    Example::

        >>> x = torch.tensor([0.0, 0.5, -2.0], dtype=torch.float64)
        >>> map_eval(x, "hyperbolic", "inv_metric", beta=0.1)   # √(x²+β²)
    """
    return torch.ops.mirrorflow.map_eval(x, mirror, float(beta), float(degree), function)
