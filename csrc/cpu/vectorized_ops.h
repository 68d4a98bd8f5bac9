// Ops<Vectorized<T>>: lets the math core (csrc/include/mirrorflow/core) run
// SIMD-wide on the CPU through ATen's Vectorized, which calls SLEEF for the
// transcendental functions. Included by each per-capability kernel build.
#pragma once

#include <ATen/cpu/vec/vec.h>

#include "mirrorflow/core/math_ops.h"

namespace mirrorflow::core {

template <class T>
struct Ops<at::vec::Vectorized<T>> {
  using V = at::vec::Vectorized<T>;
  using scalar = T;
  using mask = V;
  static V sqrt(const V& x) { return x.sqrt(); }
  static V hypot(const V& x, const V& y) { return x.hypot(y); }
  static V expm1(const V& x) { return x.expm1(); }
  static V log1p(const V& x) { return x.log1p(); }
  static V pow(const V& x, const V& p) { return x.pow(p); }
  static V abs(const V& x) { return x.abs(); }
  static V fma(const V& a, const V& b, const V& c) { return at::vec::fmadd(a, b, c); }
  static V lt(const V& a, const V& b) { return a < b; }
  static V eq(const V& a, const V& b) { return a == b; }
  static V select(const V& m, const V& if_true, const V& if_false) {
    return V::blendv(if_false, if_true, m);
  }
};

}  // namespace mirrorflow::core
