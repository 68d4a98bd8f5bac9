// Ops<Vectorized<T>>: lets the math core (csrc/include/mirrorflow/core) run
// SIMD-wide on the CPU through ATen's Vectorized, which calls SLEEF for the
// transcendental functions. Included by each per-capability kernel build.
//
// hypot, expm1 and pow take a cheaper exact path in the lanes that allow it
// and SLEEF's in the others (SLEEF is called only when some lane needs it);
// either way the result is within about one ulp of the true value, as SLEEF's.
// √ is correctly rounded on either of its two paths (VectorOps::sqrt).
// Which path a lane takes depends on that lane alone, so an element's result
// does not depend on its neighbours in the vector.
//
// A call into SLEEF inside a loop makes the compiler keep the loop's values in
// memory rather than registers, even when the call never happens. So the hot
// loops run on `Deferred<T>`, a Vectorized<T> whose Ops never call SLEEF: a
// lane outside a fast path's range only counts a miss (fast_path_misses) and
// gets the fast value; the kernel then recomputes that block with
// Vectorized<T> (mirror_step_kernel.cpp). Where no lane misses, both give the
// same bits, since they compute the same fast values. Loops over maps that
// have no SLEEF fallback run on `Direct<T>`, which takes Deferred's √ and
// defers nothing.
#pragma once

#include <ATen/cpu/vec/vec.h>

#include <atomic>
#include <cstdint>
#include <type_traits>

#include "mirrorflow/core/math_ops.h"

namespace mirrorflow::core {

/// Lanes that met a deferred fast path outside its range, counted over all
/// threads (only ever compared before and after a block, by the same thread).
inline std::atomic<uint64_t> fast_path_misses{0};

/// Vectorized<T> on which the fast paths of Ops defer their fallback (above);
/// `FmaSqrt`: √ by VectorOps::sqrt_in_range's multiply and fma pipes (float on
/// AVX512) rather than the divider, the same bits either way. With `Defer`
/// false (`Direct`) the fast paths do not defer: a lane outside one takes the
/// slow path at once, as on Vectorized<T>; for the kernel's loops over maps
/// that have no SLEEF fallback, which then need no deferred blocks
/// (mirror_step_kernel.cpp).
template <class T, bool FmaSqrt = false, bool Defer = true>
struct Deferred : at::vec::Vectorized<T> {
  using Base = at::vec::Vectorized<T>;
  using Base::Base;
  Deferred() = default;
  Deferred(const Base& v) : Base(v) {}  // NOLINT(google-explicit-constructor): results of Base ops
};
template <class T, bool FmaSqrt = false>
using Direct = Deferred<T, FmaSqrt, false>;

/// r² of expm1's polynomial range |x| ≤ r (below).
template <class T>
constexpr T kExpm1RangeSquared = std::is_same_v<T, double> ? 0x1p-10 : 0x1p-8f;

/// The primitives on W = Vectorized<T> or Deferred<T, FmaSqrt>.
template <class W, class T, bool Defer, bool FmaSqrt = false>
struct VectorOps {
  using V = W;
  using scalar = T;
  using mask = V;

  // Masks are vectors whose lanes are all ones (true) or all zeros (false).
  static V lt(const V& a, const V& b) { return a < b; }
  static V le(const V& a, const V& b) { return a <= b; }
  static V eq(const V& a, const V& b) { return a == b; }
  static V land(const V& a, const V& b) { return a & b; }
  static V lor(const V& a, const V& b) { return a | b; }
  static V lnot(const V& m) { return m == V(T(0)); }  // a true lane is a NaN pattern
  /// Whether a mask is true in every lane (AVX2: the lanes' sign bits).
  static bool all(const V& m) {
#if defined(CPU_CAPABILITY_AVX2)
    if constexpr (std::is_same_v<T, float>) {
      return _mm256_movemask_ps(m) == 0xff;
    } else {
      return _mm256_movemask_pd(m) == 0xf;
    }
#else
    return m.zero_mask() == 0;
#endif
  }
  /// Whether a ≤ b in every lane (false where either is NaN). On AVX512 one
  /// comparison into a mask register: `all(a <= b)` would first build the
  /// vector mask and then compare it with zero.
  static bool every_le(const V& a, const V& b) {
#if defined(CPU_CAPABILITY_AVX512)
    if constexpr (std::is_same_v<T, float>) {
      return _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ) == 0xffff;
    } else {
      return _mm512_cmp_pd_mask(a, b, _CMP_LE_OQ) == 0xff;
    }
#else
    return all(a <= b);
#endif
  }
  /// Whether a ≤ b and c ≤ d in every lane: on AVX512 the second comparison
  /// is masked by the first, and one mask register is tested.
  static bool every_le(const V& a, const V& b, const V& c, const V& d) {
#if defined(CPU_CAPABILITY_AVX512)
    if constexpr (std::is_same_v<T, float>) {
      const __mmask16 ab = _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ);
      return _mm512_mask_cmp_ps_mask(ab, c, d, _CMP_LE_OQ) == 0xffff;
    } else {
      const __mmask8 ab = _mm512_cmp_pd_mask(a, b, _CMP_LE_OQ);
      return _mm512_mask_cmp_pd_mask(ab, c, d, _CMP_LE_OQ) == 0xff;
    }
#else
    return all((a <= b) & (c <= d));
#endif
  }
  /// `fast` in the lanes of mask `use_fast`, `slow()` in the others; `slow` is
  /// evaluated only when some lane needs it.
  template <class Slow>
  static V with_fallback(const V& use_fast, const V& fast, Slow slow) {
    if (all(use_fast)) return fast;
    if constexpr (Defer) {
      fast_path_misses.fetch_add(1, std::memory_order_relaxed);
      return fast;
    } else {
      return V::blendv(slow(), fast, use_fast);
    }
  }

  /// with_fallback with the mask a <= b, tested as every_le first.
  template <class Slow>
  static V with_fallback_le(const V& a, const V& b, const V& fast, Slow slow) {
    if (every_le(a, b)) return fast;
    return with_fallback(a <= b, fast, slow);
  }

  // √ on the divider (vsqrtps) or, with FmaSqrt for float on AVX512, by
  // core::sqrt_from_rsqrt from vrsqrt14ps on the multiply and fma pipes: the
  // same bits where q ∈ [2⁻¹⁰⁰, 2¹²⁰] (math_ops.h). The kernel chooses per
  // loop (mirror_step_kernel.cpp): the divider is what the metric steps wait
  // for, the fma pipes what the dual steps do.
#if defined(CPU_CAPABILITY_AVX512)
  static constexpr bool kRsqrtSqrt = FmaSqrt && std::is_same_v<T, float>;
#else
  static constexpr bool kRsqrtSqrt = false;
#endif
  static constexpr T kRsqrtSqrtLow = T(0x1p-100);
  static constexpr T kRsqrtSqrtHigh = T(0x1p120);

  /// √q where every lane that matters has q in [2⁻¹⁰⁰, 2¹²⁰].
  static V sqrt_in_range(const V& q) {
#if defined(CPU_CAPABILITY_AVX512)
    if constexpr (kRsqrtSqrt) return sqrt_from_rsqrt(q, V(_mm512_rsqrt14_ps(q)));
#endif
    return q.sqrt();
  }

  /// √x, correctly rounded: sqrt_in_range where every lane of x is in its
  /// range, else (a zero, say) the divider for the whole vector.
  static V sqrt(const V& x) {
#if defined(CPU_CAPABILITY_AVX512)
    if constexpr (kRsqrtSqrt) {
      const __mmask16 low = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kRsqrtSqrtLow), _CMP_GE_OQ);
      if (_mm512_mask_cmp_ps_mask(low, x, _mm512_set1_ps(kRsqrtSqrtHigh), _CMP_LE_OQ) == 0xffff) {
        return sqrt_in_range(x);
      }
    }
#endif
    return x.sqrt();
  }

  /// sqrt(x) for x known to be >= `floor` (or NaN), a loop invariant: where
  /// floor is inside sqrt_in_range's range, only the upper end is tested.
  static V sqrt_above(const V& x, T floor) {
    if (kRsqrtSqrt && floor >= kRsqrtSqrtLow) {
      return every_le(x, V(kRsqrtSqrtHigh)) ? sqrt_in_range(x) : V(x.sqrt());
    }
    return sqrt(x);
  }

  /// √(x²+y²) rounded three times (≤ 1.5 ulp) where y·y is far from underflow
  /// and q = fma(x, x, y·y) from overflow (the fma squares x exactly; in
  /// float, that is sqrt_in_range's range for q); SLEEF's hypot in the lanes
  /// outside (also NaN and ±inf). The maps pass a constant
  /// y (β), so the test of y·y is loop-invariant: one comparison per vector.
  static V hypot(const V& x, const V& y) {
    constexpr T kLow = std::is_same_v<T, double> ? 0x1p-960 : kRsqrtSqrtLow;
    constexpr T kHigh = std::is_same_v<T, double> ? 0x1p1000 : kRsqrtSqrtHigh;
    const V y2 = y * y;
    const V q = fma(x, x, y2);
    if (every_le(V(kLow), y2) && every_le(q, V(kHigh))) return sqrt_in_range(q);
    const V fast = (y2 >= V(kLow)) & (q <= V(kHigh));
    return with_fallback(fast, sqrt_in_range(q), [&] { return x.hypot(y); });
  }

  /// expm1 by its Taylor polynomial in the lanes where |x| ≤ r (float: r = 1/16, up to
  /// x⁵/5!; double: r = 1/32, up to x⁸/8!; truncation error below 0.03 ulp,
  /// rounding error about half an ulp): mirror steps exponentiate η·g, which is
  /// small. SLEEF in the other lanes. Exactly 0 at 0. The test is x·x ≤ r²
  /// (r² is a power of two, so this is |x| ≤ r exactly, and false for NaN).
  static V expm1(const V& x) {
    const V x2 = x * x;
    V even;
    V odd;
    expm1_parts(x2, even, odd);
    const V fast = fma(fma(x, odd, even), x2, x);
    if (every_le(x2, V(kExpm1RangeSquared<T>))) return fast;
    return with_fallback(x2 <= V(kExpm1RangeSquared<T>), fast, [&] { return x.expm1(); });
  }

  /// The even and odd parts of that polynomial, of x² = `x2`:
  /// expm1(x) = x + x²·(E(x²) + x·O(x²)) and sinh x = x + x²·(x·O(x²)).
  static void expm1_parts(const V& x2, V& even, V& odd) {
    if constexpr (std::is_same_v<T, double>) {
      even = fma(fma(fma(V(1.0 / 40320), x2, V(1.0 / 720)), x2, V(1.0 / 24)), x2, V(0.5));
      odd = fma(fma(V(1.0 / 5040), x2, V(1.0 / 120)), x2, V(1.0 / 6));
    } else {
      even = fma(V(1.0f / 24), x2, V(0.5f));
      odd = fma(V(1.0f / 120), x2, V(1.0f / 6));
    }
  }

  /// Ops<float>::decay_and_sinh (math_ops.h) SIMD-wide: in the lanes where
  /// |z| ≤ r (as expm1 above), from one evaluation of the polynomial's parts,
  /// decay = w + z²·(E + w·O) with w = −sign(x)·z, and sinh z = z + z²·(z·O);
  /// SLEEF's expm1 in the others. In the fast lanes the sign bit of x picks w,
  /// so x = −0 takes expm1(z) where x < 0 would take expm1(−z); the step is the
  /// same either way (x·e + x is ±0 and c·sinh z decides). Adding +0 makes
  /// sinh(±0) = +0, as the scalar (expm1(z) − expm1(−z))/2 is, so that a zero
  /// gradient of either sign leaves x as it is, −0 included. Compared with
  /// selecting between expm1(z) and expm1(−z), this saves a multiplication, a
  /// comparison and a blend per vector: the dual step's loop is bound by the
  /// multiply and fma pipes (docs/benchmarks.md).
  static void decay_and_sinh(const V& z, const V& x, V& decay, V& sinh_z) {
    const V x2 = z * z;
    V even;
    V odd;
    expm1_parts(x2, even, odd);
    const V sign(T(-0.0));
    const V w = (z ^ sign) ^ (x & sign);
    decay = fma(fma(w, odd, even), x2, w);
    sinh_z = fma(x2, z * odd, z) + V(T(0));
    if (every_le(x2, V(kExpm1RangeSquared<T>))) return;  // one test for both
    const V fast = x2 <= V(kExpm1RangeSquared<T>);
    // SLEEF's expm1(z) and expm1(−z), computed once: both calls below take the
    // same mask, so the second runs its fallback exactly when the first did.
    V pos;
    V neg;
    decay = with_fallback(fast, decay, [&] {
      pos = z.expm1();
      neg = (V(T(0)) - z).expm1();
      return select(lt(x, V(T(0))), pos, neg);
    });
    sinh_z = with_fallback(fast, sinh_z, [&] { return V(T(0.5)) * (pos - neg); });
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
  static V fnma(const V& a, const V& b, const V& c) { return at::vec::fnmadd(a, b, c); }
  static V select(const V& m, const V& if_true, const V& if_false) {
    return V::blendv(if_false, if_true, m);
  }
};

template <class T>
struct Ops<at::vec::Vectorized<T>> : VectorOps<at::vec::Vectorized<T>, T, false> {};

/// Floats per group of sum_by_eights: four vectors of 8 (two of 16 on AVX512).
/// Eight to a lane (64) measured no faster, with one rounding more.
constexpr int64_t kSumGroup = 32;

#if defined(CPU_CAPABILITY_AVX512)
/// w[k] + w[k+8], k < 8, of 16 floats.
inline __m256 add_halves(const __m512 w) {
  const __m256 upper = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(w), 1));
  return _mm256_add_ps(_mm512_castps512_ps256(w), upper);
}
#endif

/// Adds to the 8 double lanes (`low`, then `high` when a double vector holds
/// fewer than 8) the sums (x[k] + x[k+8]) + (x[k+16] + x[k+24]), k < 8, of the
/// kSumGroup floats x in `v`, rounded to float and then widened exactly: the
/// same float additions in the same order on every capability (DEFAULT in plain
/// C++ through memory).
inline void sum_by_eights(const at::vec::Vectorized<float>* v, at::vec::Vectorized<double>& low,
                          at::vec::Vectorized<double>& high) {
  using F = at::vec::Vectorized<float>;
  using D = at::vec::Vectorized<double>;
  static_assert(kSumGroup % F::size() == 0 && 8 % D::size() == 0 && D::size() >= 4,
                "whole vectors; 8 lanes in one or two double vectors");
#if defined(CPU_CAPABILITY_AVX512)
  // v[0] = x[0..16), v[1] = x[16..32): the halves of each, added, are
  // x[k] + x[k+8] and x[k+16] + x[k+24].
  low += D(_mm512_cvtps_pd(_mm256_add_ps(add_halves(v[0]), add_halves(v[1]))));
  (void)high;  // one double vector holds the 8 lanes
#elif defined(CPU_CAPABILITY_AVX2)
  const __m256 sum = (v[0] + v[1]) + (v[2] + v[3]);
  low += D(_mm256_cvtps_pd(_mm256_castps256_ps128(sum)));
  high += D(_mm256_cvtps_pd(_mm256_extractf128_ps(sum, 1)));
#else
  alignas(64) float x[kSumGroup];
  for (int64_t j = 0; j < kSumGroup / F::size(); ++j) v[j].store(x + j * F::size());
  alignas(64) double wide[8];
  for (int k = 0; k < 8; ++k) {
    const float sum = (x[k] + x[k + 8]) + (x[k + 16] + x[k + 24]);
    wide[k] = static_cast<double>(sum);
  }
  low += D::loadu(wide);
  if constexpr (D::size() < 8) high += D::loadu(wide + D::size());
#endif
}

/// Adds to the 8 double lanes the sums f[k] + f[k+8], k < 8, of the
/// kSumGroup/2 floats f in `v`, rounded to float and then widened exactly (the
/// power map's sum, whose group of 32 terms the kernel first adds as 16
/// fractions of two: inv_metric_sum.h); like sum_by_eights, the same on
/// every capability.
inline void sum_half_group(const at::vec::Vectorized<float>* v, at::vec::Vectorized<double>& low,
                           at::vec::Vectorized<double>& high) {
  using F = at::vec::Vectorized<float>;
  using D = at::vec::Vectorized<double>;
  static_assert(kSumGroup / 2 % F::size() == 0, "whole vectors");
#if defined(CPU_CAPABILITY_AVX512)
  low += D(_mm512_cvtps_pd(add_halves(v[0])));
  (void)high;
#elif defined(CPU_CAPABILITY_AVX2)
  const __m256 sum = v[0] + v[1];
  low += D(_mm256_cvtps_pd(_mm256_castps256_ps128(sum)));
  high += D(_mm256_cvtps_pd(_mm256_extractf128_ps(sum, 1)));
#else
  alignas(64) float f[kSumGroup / 2];
  for (int64_t j = 0; j < kSumGroup / 2 / F::size(); ++j) v[j].store(f + j * F::size());
  alignas(64) double wide[8];
  for (int k = 0; k < 8; ++k) wide[k] = static_cast<double>(f[k] + f[k + 8]);
  low += D::loadu(wide);
  if constexpr (D::size() < 8) high += D::loadu(wide + D::size());
#endif
}

template <class T, bool FmaSqrt, bool Defer>
struct Ops<Deferred<T, FmaSqrt, Defer>>
    : VectorOps<Deferred<T, FmaSqrt, Defer>, T, Defer, FmaSqrt> {};

/// Whether W is a Deferred<T, ·> that defers (not a Direct<T, ·>).
template <class W>
constexpr bool kIsDeferred = false;
template <class T, bool FmaSqrt, bool Defer>
constexpr bool kIsDeferred<Deferred<T, FmaSqrt, Defer>> = Defer;

}  // namespace mirrorflow::core
