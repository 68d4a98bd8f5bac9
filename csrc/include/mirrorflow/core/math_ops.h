/// Scalar math primitives used by the mirror maps (MATH.md §1-§2).
///
/// The maps are written once as templates over a value type `V` and reach
/// every primitive through `Ops<V>`. This header specialises `Ops` for the
/// scalar types `float` and `double` on the host and on CUDA devices; the CPU
/// kernels add a specialisation for ATen's `Vectorized<T>` so that the very
/// same map code runs SIMD-wide. No Torch include: this builds with any C++17
/// compiler.
#pragma once

#include <cmath>
#include <limits>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define MF_HD __host__ __device__
#else
#define MF_HD
#endif
#define MF_INLINE MF_HD inline

namespace mirrorflow::core {

/// Primitive operations on a value type. Specialised per type.
template <class V>
struct Ops;

template <>
struct Ops<float> {
  using scalar = float;
  using mask = bool;
  MF_INLINE static float sqrt(float x) { return ::sqrtf(x); }
  /// √x for x known to be >= `floor` (or NaN): the vector Ops use the bound.
  MF_INLINE static float sqrt_above(float x, float) { return ::sqrtf(x); }
  MF_INLINE static float hypot(float x, float y) { return ::hypotf(x, y); }
  MF_INLINE static float expm1(float x) { return ::expm1f(x); }
  /// The hyperbolic dual step's exponentials (hyperbolic_entropy.h):
  /// `decay` = expm1(−z) where x ≥ 0 and expm1(z) where x < 0, and
  /// `sinh_z` = (expm1(z) − expm1(−z))/2.
  MF_INLINE static void decay_and_sinh(float z, float x, float& decay, float& sinh_z) {
    const float pos = ::expm1f(z);
    const float neg = ::expm1f(-z);
    decay = x < 0 ? pos : neg;
    sinh_z = float(0.5) * (pos - neg);
  }
  MF_INLINE static float log1p(float x) { return ::log1pf(x); }
  MF_INLINE static float pow(float x, float p) { return ::powf(x, p); }
  MF_INLINE static float abs(float x) { return ::fabsf(x); }
  MF_INLINE static float fma(float a, float b, float c) { return ::fmaf(a, b, c); }
  /// c − a·b, rounded once.
  MF_INLINE static float fnma(float a, float b, float c) { return ::fmaf(-a, b, c); }
  MF_INLINE static float asinh(float x) { return ::asinhf(x); }
  MF_INLINE static float sinh(float x) { return ::sinhf(x); }
  MF_INLINE static bool lt(float a, float b) { return a < b; }
  MF_INLINE static bool eq(float a, float b) { return a == b; }
  MF_INLINE static bool le(float a, float b) { return a <= b; }
  MF_INLINE static bool land(bool a, bool b) { return a && b; }
  MF_INLINE static bool lor(bool a, bool b) { return a || b; }
  MF_INLINE static bool lnot(bool a) { return !a; }
  MF_INLINE static bool all(bool a) { return a; }
  MF_INLINE static float select(bool m, float if_true, float if_false) {
    return m ? if_true : if_false;
  }
  /// `fast` where `use_fast`, else `slow()` (evaluated only then).
  template <class Slow>
  MF_INLINE static float with_fallback(bool use_fast, float fast, Slow slow) {
    return use_fast ? fast : slow();
  }
  /// `fast` where a <= b, else `slow()` (evaluated only then).
  template <class Slow>
  MF_INLINE static float with_fallback_le(float a, float b, float fast, Slow slow) {
    return a <= b ? fast : slow();
  }
};

template <>
struct Ops<double> {
  using scalar = double;
  using mask = bool;
  MF_INLINE static double sqrt(double x) { return ::sqrt(x); }
  /// √x for x known to be >= `floor` (or NaN): the vector Ops use the bound.
  MF_INLINE static double sqrt_above(double x, double) { return ::sqrt(x); }
  MF_INLINE static double hypot(double x, double y) { return ::hypot(x, y); }
  MF_INLINE static double expm1(double x) { return ::expm1(x); }
  /// The hyperbolic dual step's exponentials (hyperbolic_entropy.h):
  /// `decay` = expm1(−z) where x ≥ 0 and expm1(z) where x < 0, and
  /// `sinh_z` = (expm1(z) − expm1(−z))/2.
  MF_INLINE static void decay_and_sinh(double z, double x, double& decay, double& sinh_z) {
    const double pos = ::expm1(z);
    const double neg = ::expm1(-z);
    decay = x < 0 ? pos : neg;
    sinh_z = double(0.5) * (pos - neg);
  }
  MF_INLINE static double log1p(double x) { return ::log1p(x); }
  MF_INLINE static double pow(double x, double p) { return ::pow(x, p); }
  MF_INLINE static double abs(double x) { return ::fabs(x); }
  MF_INLINE static double fma(double a, double b, double c) { return ::fma(a, b, c); }
  /// c − a·b, rounded once.
  MF_INLINE static double fnma(double a, double b, double c) { return ::fma(-a, b, c); }
  MF_INLINE static double asinh(double x) { return ::asinh(x); }
  MF_INLINE static double sinh(double x) { return ::sinh(x); }
  MF_INLINE static bool lt(double a, double b) { return a < b; }
  MF_INLINE static bool eq(double a, double b) { return a == b; }
  MF_INLINE static bool le(double a, double b) { return a <= b; }
  MF_INLINE static bool land(bool a, bool b) { return a && b; }
  MF_INLINE static bool lor(bool a, bool b) { return a || b; }
  MF_INLINE static bool lnot(bool a) { return !a; }
  MF_INLINE static bool all(bool a) { return a; }
  MF_INLINE static double select(bool m, double if_true, double if_false) {
    return m ? if_true : if_false;
  }
  /// `fast` where `use_fast`, else `slow()` (evaluated only then).
  template <class Slow>
  MF_INLINE static double with_fallback(bool use_fast, double fast, Slow slow) {
    return use_fast ? fast : slow();
  }
  /// `fast` where a <= b, else `slow()` (evaluated only then).
  template <class Slow>
  MF_INLINE static double with_fallback_le(double a, double b, double fast, Slow slow) {
    return a <= b ? fast : slow();
  }
};

/// `sign(s) * magnitude` for a magnitude >= 0 (0 keeps the sign of `s`).
template <class V>
MF_INLINE V with_sign_of(V s, V magnitude) {
  using O = Ops<V>;
  return O::select(O::lt(s, V(0)), V(0) - magnitude, magnitude);
}

/// √a from y0 ≈ 1/√a, by one Newton step on g ≈ √a and h ≈ 1/(2√a) taken
/// together, then g corrected by the remainder a − g² (exact in an fma).
/// In float, for every y0 within a relative 2⁻¹⁴ of 1/√a (what AVX512's
/// vrsqrt14ps guarantees) and every a in [2⁻¹⁰⁰, 2¹²⁰], the result is √a
/// correctly rounded, the bits of sqrtf(a): tests/cpp/test_sqrt_from_rsqrt.cpp
/// checks every a in [1, 4) with every such y0, and every operation below
/// scales exactly by powers of 4 within that range. The CPU kernel takes √ so
/// on AVX512, on the multiply and fma pipes, where the divider is busy
/// (csrc/cpu/vectorized_ops.h).
template <class V>
MF_INLINE V sqrt_from_rsqrt(V a, V y0) {
  using O = Ops<V>;
  using T = typename O::scalar;
  V g = a * y0;
  V h = y0 * V(T(0.5));
  const V r = O::fnma(g, h, V(T(0.5)));
  g = O::fma(g, r, g);
  h = O::fma(h, r, h);
  return O::fma(O::fnma(g, g, a), h, g);
}

/// Machine epsilon of a scalar type, usable in device code.
template <class T>
MF_INLINE constexpr T epsilon_of() {
  return std::numeric_limits<T>::epsilon();
}

}  // namespace mirrorflow::core
