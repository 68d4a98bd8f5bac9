/// The Euclidean potential φ(x) = x²/2 (MATH.md §1): plain gradient descent.
#pragma once

#include "mirrorflow/core/math_ops.h"

namespace mirrorflow::core {

/// φ(x) = x²/2, ∇φ = ∇φ* = identity, inverse metric 1, degree L = 2.
template <class T>
struct Euclidean {
  using scalar = T;
  /// Homogeneity degree L of the horizon function Σ|θ|^L.
  MF_INLINE T degree() const { return T(2); }

  template <class V>
  MF_INLINE V potential(V x) const { return V(0.5) * x * x; }
  template <class V>
  MF_INLINE V grad(V x) const { return x; }
  template <class V>
  MF_INLINE V grad_conj(V y) const { return y; }
  /// 1/φ''(x).
  template <class V>
  MF_INLINE V inv_metric(V) const { return V(1); }
  /// φ*(∇φ(x)) = x²/2.
  template <class V>
  MF_INLINE V conj_of_grad(V x) const { return V(0.5) * x * x; }
  /// ∇φ*(∇φ(x) + s·g) = x + s·g, fused so that it rounds once, exactly as
  /// torch.optim.SGD's `param.add_(grad, alpha=-lr)` does.
  template <class V>
  MF_INLINE V dual_step(V x, V g, V s) const { return Ops<V>::fma(g, s, x); }
};

}  // namespace mirrorflow::core
