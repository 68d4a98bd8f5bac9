// Ops<Vectorized<T>>: lets the math core (csrc/include/mirrorflow/core) run
// SIMD-wide on the CPU through ATen's Vectorized, which calls SLEEF for the
// transcendental functions. Included by each per-capability kernel build.
//
// hypot, expm1 and pow take a cheaper exact path in the lanes that allow it
// and SLEEF's in the others (SLEEF is called only when some lane needs it);
// either way the result is within about one ulp of the true value, as SLEEF's.
// Which path a lane takes depends on that lane alone, so an element's result
// does not depend on its neighbours in the vector.
#pragma once

#include <ATen/cpu/vec/vec.h>

#include <type_traits>

#include "mirrorflow/core/math_ops.h"

namespace mirrorflow::core {

template <class T>
struct Ops<at::vec::Vectorized<T>> {
  using V = at::vec::Vectorized<T>;
  using scalar = T;
  using mask = V;

  // Masks are vectors whose lanes are all ones (true) or all zeros (false).
  static V lt(const V& a, const V& b) { return a < b; }
  static V le(const V& a, const V& b) { return a <= b; }
  static V eq(const V& a, const V& b) { return a == b; }
  static V land(const V& a, const V& b) { return a & b; }
  static V lor(const V& a, const V& b) { return a | b; }
  static V lnot(const V& m) { return m == V(T(0)); }  // a true lane is a NaN pattern
  /// Whether a mask is true in every lane.
  static bool all(const V& m) { return m.zero_mask() == 0; }
  /// `fast` in the lanes of mask `use_fast`, `slow()` in the others; `slow` is
  /// evaluated only when some lane needs it.
  template <class Slow>
  static V with_fallback(const V& use_fast, const V& fast, Slow slow) {
    if (all(use_fast)) return fast;
    return V::blendv(slow(), fast, use_fast);
  }

  static V sqrt(const V& x) { return x.sqrt(); }

  /// √(x²+y²) rounded three times (≤ 1.5 ulp) where max(|x|,|y|) lies in a
  /// range in which neither square can overflow nor lose bits to underflow
  /// (√(x·x) is then |x| exactly); SLEEF's hypot in the lanes outside it (also
  /// NaN and ±inf).
  static V hypot(const V& x, const V& y) {
    constexpr T kSmall = std::is_same_v<T, double> ? 0x1p-480 : 0x1p-50f;
    constexpr T kBig = std::is_same_v<T, double> ? 0x1p500 : 0x1p60f;
    const V m = at::vec::maximum(x.abs(), y.abs());
    const V fast = (m >= V(kSmall)) & (m <= V(kBig));
    return with_fallback(fast, fma(x, x, y * y).sqrt(), [&] { return x.hypot(y); });
  }

  /// expm1 by its Taylor polynomial in the lanes where |x| ≤ r (float: r = 1/16, up to
  /// x⁵/5!; double: r = 1/32, up to x⁸/8!; truncation error below 0.03 ulp,
  /// rounding error about half an ulp): mirror steps exponentiate η·g, which is
  /// small. SLEEF in the other lanes. Exactly 0 at 0.
  static V expm1(const V& x) {
    if constexpr (std::is_same_v<T, double>) {
      V p(1.0 / 40320);
      p = fma(p, x, V(1.0 / 5040));
      p = fma(p, x, V(1.0 / 720));
      p = fma(p, x, V(1.0 / 120));
      p = fma(p, x, V(1.0 / 24));
      p = fma(p, x, V(1.0 / 6));
      p = fma(p, x, V(0.5));
      return with_fallback(x.abs() <= V(0x1p-5), fma(p, x * x, x), [&] { return x.expm1(); });
    } else {
      V p(1.0f / 120);
      p = fma(p, x, V(1.0f / 24));
      p = fma(p, x, V(1.0f / 6));
      p = fma(p, x, V(0.5f));
      return with_fallback(x.abs() <= V(0x1p-4f), fma(p, x * x, x), [&] { return x.expm1(); });
    }
  }

  static V log1p(const V& x) { return x.log1p(); }

  /// xᵖ; √x (correctly rounded) in the lanes with p = 1/2 and x ≥ 0 (the power
  /// map's exponent for L = 3), SLEEF in the others.
  static V pow(const V& x, const V& p) {
    const V fast = (p == V(T(0.5))) & (x >= V(T(0)));
    return with_fallback(fast, (x + V(T(0))).sqrt(), [&] { return x.pow(p); });  // √(−0) = +0
  }

  static V abs(const V& x) { return x.abs(); }
  static V fma(const V& a, const V& b, const V& c) { return at::vec::fmadd(a, b, c); }
  static V select(const V& m, const V& if_true, const V& if_false) {
    return V::blendv(if_false, if_true, m);
  }
};

}  // namespace mirrorflow::core
