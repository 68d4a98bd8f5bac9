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

/// The scalars of one tensor's step, in the compute type T.
template <class T>
struct ElementStep {
  GradientTransform<T> transform;
  T scale;             // s = −η/ν (step_scale)
  T grad_scale;        // torch.amp.GradScaler's scale when `unscale`
  bool first_step;     // momentum buffer not yet initialised: b ← g
  bool unscale;
};

/// s = −η/ν, the factor of mirror_update: ν = 1, or with `normalize` the
/// tensor's mean of the inverse metric (MATH.md §2). A tensor whose inverse
/// metric is zero everywhere (mean 0) does not move. Computed in double.
MF_INLINE double step_scale(double lr, double mean_inv_metric, bool normalize) {
  if (!normalize) return -lr;
  return mean_inv_metric == 0 ? 0.0 : -lr / mean_inv_metric;
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

/// One element (or one SIMD vector of elements) of one step, in the order of
/// MATH.md §2: g ← g/grad_scale when unscaling (GradScaler), the gradient
/// transform, momentum, then the mirror update. `g` is left holding the
/// unscaled gradient, which the caller writes back when unscaling.
template <UpdateKind U, bool Momentum, class Map, class V, class T>
MF_INLINE void step_element(const Map& map, V& x, V& g, V& buf, const ElementStep<T>& s) {
  if (s.unscale) g = g / V(s.grad_scale);
  V ge = decayed_gradient(g, x, s.transform);
  if constexpr (Momentum) ge = momentum_gradient(ge, buf, s.first_step, s.transform);
  x = mirror_update<U>(map, x, ge, V(s.scale));
}

}  // namespace mirrorflow::core
