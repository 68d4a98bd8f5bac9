// The per-tensor sum of 1/φ'' behind a normalised step's mean (MATH.md §2):
// the lanes it is kept in (LaneSums), the order its terms are added in, which
// does not depend on the CPU capability or the number of threads, and the loop
// that adds up a block the step just wrote (add_inv_metric). Included by the
// CPU kernel (mirror_step_kernel.cpp), compiled once per CPU capability.
#pragma once

#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "cpu_kernel.h"
#include "mirrorflow/core/map_function.h"
#include "prefetch_ahead.h"
#include "vectorized_ops.h"

// The kernel's loops (below and in mirror_step_kernel.cpp) inline every call
// in them (the maps' functions and the vector primitives), whatever the
// compiler's inlining budget: an out-of-line call in a loop costs more than
// the arithmetic it does.
#if defined(__GNUC__) || defined(__clang__)
#define MF_FLATTEN __attribute__((flatten))
#else
#define MF_FLATTEN
#endif

namespace mirrorflow::cpu {
inline namespace CPU_CAPABILITY {
// Internal to the kernel's translation unit, like the kernel's own code, so
// that the compiler inlines and lays it out as one with the kernel's loops.
namespace {  // NOLINT(cert-dcl59-cpp,google-build-namespaces): included by one file

template <class T>
using Vec = at::vec::Vectorized<T>;

// Partial sums of the mean are kept in 8 double lanes, indexed by element.
constexpr int kLanes = 8;

// Running sums of 1/φ'' over one work item in kLanes double lanes, added a
// group of kGroup elements at a time, whatever the SIMD width, so that the sum
// does not depend on the CPU capability: double element i of the item goes to
// lane i mod kLanes; float elements are first added in float, four to a lane,
// within a group of 32 (core::sum_by_eights: two roundings more per value, at
// most 2⁻²³ of the sum), which quarters the widenings and double additions
// (normalised steps on VGG-16 5–10 % faster: docs/benchmarks.md). Each lane adds
// in item order. The lanes live in one or two double vectors
// (registers in the loops below, hence two named members rather than an array).
template <class T>
struct LaneSums {
  using V = Vec<T>;
  using D = Vec<double>;
  static constexpr int64_t kSize = V::size();
  static constexpr int64_t kWide = D::size();
  static constexpr bool kFloat = std::is_same_v<T, float>;
  static constexpr int64_t kGroup = kFloat ? core::kSumGroup : (kSize > kLanes ? kSize : kLanes);
  static constexpr int64_t kVectors = kGroup / kSize;  // per group
  static_assert(kLanes == kWide || kLanes == 2 * kWide, "8 lanes are one or two vectors");
  static_assert(kGroup % kSize == 0 && (!kFloat || kSize == 2 * kWide), "lanes tile the vectors");
  D low = D(0.0);   // lanes [0, kWide)
  D high = D(0.0);  // lanes [kWide, 2·kWide) when kLanes = 2·kWide

  // The values of one group, in kVectors vectors.
  void add_group(const V* v) {
    if constexpr (kFloat) {
      core::sum_by_eights(v, low, high);
    } else {
      for (int64_t j = 0; j < kVectors; ++j) {
        if (kLanes == kWide || (j * kSize) % kLanes < kWide) {
          low += v[j];
        } else {
          high += v[j];
        }
      }
    }
  }
  // kGroup/2 floats f[k] = t[k] + t[k+16], k < 16, of a group's terms t
  // (the power map's pairs, below): lane k gets f[k] + f[k+8].
  void add_pairs(const V* f) { core::sum_half_group(f, low, high); }
  double total() const {
    alignas(64) double lanes[2 * kWide];
    low.store(lanes);
    high.store(lanes + kWide);
    double sum = 0;
    for (int k = 0; k < kLanes; ++k) sum += lanes[k];
    return sum;
  }
};

// The power map's float sum (β > 0, L ≠ 2; core::PowerPotential): its terms
// are fractions n/r, and the sum adds those of elements k and k+16 of each
// group of 32 as one, (n₁r₂ + n₂r₁)/(r₁r₂) rounded as
// fma(n₁, r₂, n₂·r₁)/(r₁·r₂), one division for two terms, where n₁, r₁, n₂
// and r₂ all lie in [2⁻⁶⁰, 2⁶⁰] (so that no product leaves the normal range),
// and as n₁/r₁ + n₂/r₂ elsewhere; a last partial group is completed with
// n = 0, r = 1, which gives an element without a partner its n/r either way.
// Both are within a few ulp of the exact pair sum (docs/math.md). For L = 3
// (kCubic) n = √q with q ∈ [r/2, r], so r in range puts n and q in range
// (the fast √'s too), and only r is tested.
template <class Map>
constexpr bool kFractionSum = false;
template <bool C>
constexpr bool kFractionSum<core::PowerPotential<float, C>> = true;
constexpr float kPairLow = 0x1p-60f;
constexpr float kPairHigh = 0x1p60f;

// Two terms as one fraction, or as two where some value leaves the range.
template <class W>
MF_INLINE W pair_of_fractions(const W n1, const W r1, const W n2, const W r2) {
  using O = core::Ops<W>;
  const W lo(kPairLow);
  const W hi(kPairHigh);
  const W one = O::fma(n1, r2, n2 * r1) / (r1 * r2);
  const W fits = (lo <= n1) & (n1 <= hi) & (lo <= r1) & (r1 <= hi) & (lo <= n2) & (n2 <= hi) &
                 (lo <= r2) & (r2 <= hi);
  if (O::all(fits)) return one;
  return O::select(fits, one, W(n1 / r1 + n2 / r2));
}

// 1/φ''(x₁) + 1/φ''(x₂) by that rule.
template <class W, bool kCubic>
MF_INLINE W pair_of_inv_metrics(const core::PowerPotential<float, kCubic>& map, const W x1,
                                const W x2) {
  using O = core::Ops<W>;
  W q1;
  W r1;
  W q2;
  W r2;
  map.inv_metric_parts(x1, q1, r1);
  map.inv_metric_parts(x2, q2, r2);
  if constexpr (kCubic) {
    // r >= β² (or NaN), so only the upper end is tested where β² >= 2⁻⁶⁰.
    const W hi(kPairHigh);
    if (map.beta_sq >= kPairLow && O::every_le(r1, hi, r2, hi)) {
      return O::fma(O::sqrt_in_range(q1), r2, O::sqrt_in_range(q2) * r1) / (r1 * r2);
    }
  }
  return pair_of_fractions(map.inv_metric_numerator(q1), r1, map.inv_metric_numerator(q2), r2);
}

// Adds 1/φ''(x) of the group of LaneSums<T>::kGroup elements at x into `sums`,
// on vectors W; `pairs`: the power map's sum by fractions of two terms (above).
template <class W, class Map, class T>
MF_INLINE void add_group_at(const Map& map, const T* x, bool pairs, LaneSums<T>& sums) {
  using S = LaneSums<T>;
  constexpr int64_t kSize = W::size();
  constexpr int64_t kHalf = S::kVectors / 2;
  Vec<T> v[S::kVectors];
  if constexpr (kFractionSum<Map>) {
    if (pairs) {
      for (int64_t j = 0; j < kHalf; ++j) {
        v[j] = pair_of_inv_metrics(map, W(W::loadu(x + j * kSize)),
                                   W(W::loadu(x + (j + kHalf) * kSize)));
      }
      sums.add_pairs(v);
      return;
    }
  }
  (void)pairs;
  for (int64_t j = 0; j < S::kVectors; ++j) v[j] = map.inv_metric(W(W::loadu(x + j * kSize)));
  sums.add_group(v);
}

// Whether the power map's sum goes by pairs of fractions (kFractionSum).
template <class Map>
bool sums_pairs(const Map& map) {
  if constexpr (kFractionSum<Map>) {
    return map.inv_metric_is_fraction();
  } else {
    (void)map;
    return false;
  }
}

// Adds 1/φ''(x) of the last n < LaneSums<T>::kGroup elements of an item at x
// into `sums`, as one group completed with zeros (v + 0 = v) or, by pairs, with
// n = 0, r = 1.
template <class W, class Map, class T>
void add_partial_group(const Map& map, const T* x, int64_t n, bool pairs, LaneSums<T>& sums) {
  using S = LaneSums<T>;
  constexpr int64_t kSize = W::size();
  constexpr int64_t kHalf = S::kVectors / 2;
  Vec<T> v[S::kVectors];
  if (pairs) {
    if constexpr (kFractionSum<Map>) {
      alignas(64) T num[S::kGroup] = {};
      alignas(64) T den[S::kGroup];
      std::fill(den, den + S::kGroup, T(1));
      for (int64_t j = 0; j < n; j += kSize) {
        const int64_t m = std::min(kSize, n - j);
        W q;
        W r;
        map.inv_metric_parts(W(W::loadu(x + j, m)), q, r);
        map.inv_metric_numerator(q).store(num + j, m);
        r.store(den + j, m);
      }
      for (int64_t j = 0; j < kHalf; ++j) {
        const int64_t k = (j + kHalf) * kSize;
        v[j] = pair_of_fractions(Vec<T>::loadu(num + j * kSize), Vec<T>::loadu(den + j * kSize),
                                 Vec<T>::loadu(num + k), Vec<T>::loadu(den + k));
      }
      sums.add_pairs(v);
    }
    return;
  }
  alignas(64) T last[S::kGroup] = {};
  for (int64_t j = 0; j < n; j += kSize) {
    const int64_t m = std::min(kSize, n - j);
    map.inv_metric(W(W::loadu(x + j, m))).store(last + j, m);
  }
  for (int64_t j = 0; j < S::kVectors; ++j) v[j] = Vec<T>::loadu(last + j * kSize);
  sums.add_group(v);
}

// Adds 1/φ''(x) of n elements (the item's, in order) into `item_sums`, asking
// for one line of each stream of `ahead` per line of x.
//
// This loop reads only what the step just wrote, from L1, so without `ahead`
// the core requests no memory while it runs, and neither does the hardware
// prefetcher, which follows the core's misses: a normalised step then cost
// about its step loop plus this loop; with it, the memory keeps streaming.
template <class W, class Map, class T>
MF_FLATTEN void add_inv_metric(const Map map, const T* x, int64_t n, LaneSums<T>& item_sums,
                               const Ahead<T>& ahead = {}) {
  using S = LaneSums<T>;
  static_assert(W::size() == S::kSize, "a group is whole vectors");
  S sums = item_sums;
  const bool pairs = sums_pairs(map);
  auto group = [&](const T* at) { add_group_at<W>(map, at, pairs, sums); };
  int64_t i = 0;
  for (const int64_t asked = std::min(n, ahead.n); i + S::kGroup <= asked; i += S::kGroup) {
    ahead.template lines<S::kGroup>(i);
    group(x + i);
  }
  for (; i + S::kGroup <= n; i += S::kGroup) group(x + i);
  if (i < n) add_partial_group<W>(map, x + i, n - i, pairs, sums);
  item_sums = sums;
}

}  // namespace
}  // namespace CPU_CAPABILITY
}  // namespace mirrorflow::cpu
