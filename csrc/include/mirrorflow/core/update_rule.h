/// One element of one mirror-descent step (MATH.md §2): the gradient
/// transform shared with torch.optim.SGD, then the dual or metric update.
/// Every backend (CPU scalar, CPU SIMD, CUDA) calls these functions.
#pragma once

#include "mirrorflow/core/math_ops.h"

namespace mirrorflow::core {

/// `update="metric"`: θ⁺ = θ − η·M⁻¹(θ)⊙g; `update="dual"`: θ⁺ = ∇φ*(∇φ(θ) − η·g).
enum class UpdateKind { Metric = 0, Dual = 1 };

/// Hyperparameters of the gradient transform, already in the compute type.
template <class T>
struct GradientTransform {
  T weight_decay = T(0);
  T momentum = T(0);
  T one_minus_dampening = T(1);
  bool nesterov = false;
  bool maximize = false;
};

/// g ← −g if maximize; g ← g + λθ (MATH.md §2, order of operations).
template <class V, class T>
MF_INLINE V decayed_gradient(V g, V x, const GradientTransform<T>& o) {
  if (o.maximize) g = V(0) - g;
  if (o.weight_decay != T(0)) g = Ops<V>::fma(x, V(o.weight_decay), g);
  return g;
}

/// Momentum: b ← g on the first step, else b ← μb + (1−dampening)g; returns
/// g + μb with nesterov, else b. The roundings match torch.optim.SGD's
/// `buf.mul_(μ).add_(g, alpha=1−dampening)` and `g.add(buf, alpha=μ)`.
template <class V, class T>
MF_INLINE V momentum_gradient(V g, V& buf, bool first_step, const GradientTransform<T>& o) {
  using O = Ops<V>;
  buf = first_step ? g : O::fma(g, V(o.one_minus_dampening), buf * V(o.momentum));
  return o.nesterov ? O::fma(buf, V(o.momentum), g) : buf;
}

/// The mirror update of one element. `s` is −η/ν where ν is 1, or the
/// per-tensor mean of the inverse metric when normalising (MATH.md §2).
template <UpdateKind U, class Map, class V>
MF_INLINE V mirror_update(const Map& map, V x, V g, V s) {
  if constexpr (U == UpdateKind::Metric) {
    return Ops<V>::fma(map.inv_metric(x) * g, s, x);
  } else {
    return map.dual_step(x, g, s);
  }
}

}  // namespace mirrorflow::core
