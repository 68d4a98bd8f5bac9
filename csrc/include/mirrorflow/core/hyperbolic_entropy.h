/// The hyperbolic entropy potential (MATH.md §1), degree L = 1.
#pragma once

#include "mirrorflow/core/math_ops.h"

namespace mirrorflow::core {

/// φ(x) = x·asinh(x/β) − √(x²+β²) + β with β > 0.
/// ∇φ(x) = asinh(x/β), ∇φ*(y) = β·sinh(y), 1/φ''(x) = √(x²+β²).
template <class T>
struct HyperbolicEntropy {
  using scalar = T;
  T beta;

  MF_INLINE T degree() const { return T(1); }

  /// φ(x), with √(x²+β²) − β written as x²/(√(x²+β²)+β) to avoid cancellation.
  template <class V>
  MF_INLINE V potential(V x) const {
    using O = Ops<V>;
    const V b(beta);
    const V r = O::hypot(x, b);
    return x * O::asinh(x / b) - x * x / (r + b);
  }
  template <class V>
  MF_INLINE V grad(V x) const {
    return Ops<V>::asinh(x / V(beta));
  }
  template <class V>
  MF_INLINE V grad_conj(V y) const {
    return V(beta) * Ops<V>::sinh(y);
  }
  /// 1/φ''(x) = √(x²+β²), computed as hypot(x, β) so that tiny β cannot underflow.
  template <class V>
  MF_INLINE V inv_metric(V x) const {
    return Ops<V>::hypot(x, V(beta));
  }
  /// φ*(∇φ(x)) = √(x²+β²) − β = x²/(√(x²+β²)+β).
  template <class V>
  MF_INLINE V conj_of_grad(V x) const {
    const V b(beta);
    return x * x / (Ops<V>::hypot(x, b) + b);
  }
  /// ∇φ*(∇φ(x) + s·g) with z = −s·g (= η·g).
  ///
  /// MATH.md §2 gives the stable form x·cosh z − √(x²+β²)·sinh z. Its two
  /// terms still cancel when |z| is large, so it is rewritten, exactly, as
  ///   x·e^{−sign(x)·z} − c·sinh z,   c = √(x²+β²) − |x| = β²/(√(x²+β²)+|x|),
  /// with e^{∓z} = 1 + expm1(∓z) and sinh z (Ops::decay_and_sinh: from two
  /// expm1 on the GPU, from one polynomial on the CPU), evaluated as
  /// fnma(c, sinh z, fma(x, expm1(∓z), x)). For g = 0 (either sign) the
  /// exponentials are +0, so the result is x bit for bit.
  ///
  /// c is the quotient in general; where z² ≤ 2⁻⁸ (|z| ≤ 1/16; in float the
  /// CPU's polynomial expm1 has the same range, 1/32 in double) it is the
  /// difference h − |x| (h = hypot(x, β)), which saves a division. That
  /// difference can lose relative accuracy (when |x| ≫ β), but only to an
  /// absolute error of about an ulp of h, and c enters the result multiplied by
  /// |sinh z| ≤ 0.063: at most about 0.15 ulp of θ⁺ (|x| ≥ β), and no more than
  /// the quotient's own rounding of c contributes where |x| < β.
  template <class V>
  MF_INLINE V dual_step(V x, V g, V s) const {
    using O = Ops<V>;
    const V b(beta);
    const V z = (V(0) - s) * g;  // = −(s·g) exactly; −s is loop-invariant
    V em_decay;  // expm1(∓z)
    V sinh_z;
    O::decay_and_sinh(z, x, em_decay, sinh_z);
    const V ax = O::abs(x);
    const V h = O::hypot(x, b);
    // x = ±inf gives NaN (inf − inf); the quotient gave NaN too for z = 0 and
    // for one sign of z (fma(x, expm1(∓z), x) = inf·(−t) + inf), ±inf for the other.
    const V c = O::with_fallback_le(z * z, V(T(0x1p-8)), h - ax,
                                    [&] { return b * (b / (h + ax)); });
    return O::fnma(c, sinh_z, O::fma(x, em_decay, x));
  }
};

}  // namespace mirrorflow::core
