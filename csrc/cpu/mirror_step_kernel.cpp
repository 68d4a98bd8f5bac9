// The CPU mirror-descent kernel. Compiled once per CPU capability, with
// CPU_CAPABILITY set to DEFAULT, AVX2 or AVX512 (see CMakeLists.txt), like
// ATen's own kernels; mirror_step_dispatch.cpp picks one at run time.
//
// Work is a flat list of (tensor, chunk) items over every tensor of the call,
// run with at::parallel_for, so many small tensors cost one parallel region.
// Each item makes one pass over its elements in memory: it updates them and,
// when the step is normalised, adds 1/φ''(θ⁺) of each block just written (from
// L1) into the chunk's partial sum, which the next step uses as its per-tensor
// mean (MATH.md §2) without a second pass over the tensor; that loop also
// prefetches the blocks the step comes to next.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "cpu_kernel.h"
#include "mirrorflow/core/map_function.h"
#include "mirrorflow/core/update_rule.h"
#include "vectorized_ops.h"

namespace mirrorflow::cpu {
inline namespace CPU_CAPABILITY {
namespace {

using core::MirrorKind;
using core::UpdateKind;
template <class T>
using Vec = at::vec::Vectorized<T>;

// The loops below inline every call in them (the maps' functions and the
// vector primitives), whatever the compiler's inlining budget: an out-of-line
// call in a loop costs more than the arithmetic it does.
#if defined(__GNUC__) || defined(__clang__)
#define MF_FLATTEN __attribute__((flatten))
#else
#define MF_FLATTEN
#endif

// Elements converted at a time for float16/bfloat16 (three stack buffers).
constexpr int64_t kBlock = 1024;
// Partial sums of the mean are kept in 8 double lanes, indexed by element.
constexpr int kLanes = 8;
static_assert(kChunk % kBlock == 0 && kBlock % 64 == 0, "chunks hold whole blocks");

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

// Where a deferred pass keeps the inputs it overwrites (g only when unscaling).
template <class T>
struct Kept {
  T* x = nullptr;
  T* g = nullptr;
  T* b = nullptr;
  /// Where element k of the block on is kept.
  Kept from(int64_t k) const {
    return {x ? x + k : nullptr, g ? g + k : nullptr, b ? b + k : nullptr};
  }
};

constexpr int64_t kLineBytes = 64;

// Lines of θ, g and the momentum buffer b (unless null) that a step asks the
// memory for ahead of the elements it is at: elements [0, n) from x, g and b,
// n not past the tensor's end, for reading, into L1 or L2 (KernelConfig's
// PrefetchPlan). Both loops ask for them: the update loop when the step has no
// sum, else its sum (add_inv_metric, or the sum of update_then_sum), which
// reads only what the update just wrote. Without them the hardware
// prefetchers, which follow the core's own misses, let the memory idle while
// the core computes. On VGG-16
// (docs/benchmarks.md): in the update loop on an Intel Xeon (AVX512), 8 KiB
// ahead into L2, the hyperbolic dual step 1.86× → 1.0–1.09× SGD's time, the
// power metric 1.27× → 1.04–1.10×, the hyperbolic metric 1.21× → 0.91–0.96×;
// on Zen 4, in the sum loop, into L2 rather than L1, normalised steps 8–34 %
// less time without momentum and 15–46 % with it (8 to 32 KiB ahead alike, 4
// KiB a little worse); on the Intel Xeon, 4 KiB ahead into L1 rather than 8
// KiB into L2, the normalised power metric step 1.33× → 1.13× SGD's time, the
// normalised hyperbolic metric 1.12× → 0.97×, the normalised hyperbolic dual
// 1.17× → 1.08×, the other steps 3–5 % faster too; then 2 KiB rather than 4
// ahead of the sum loop, normalised power metric 1.25× → 1.07×, hyperbolic
// metric 1.07× → 0.96×, hyperbolic dual 1.04× → 0.98× (the update loop's 4
// KiB as fast as 2 or 3 KiB there).
template <class T>
struct Ahead {
  T* x = nullptr;
  T* g = nullptr;
  T* b = nullptr;
  int64_t n = 0;
  bool into_l1 = false;
  void line(int64_t i) const {
    if (into_l1) {
      __builtin_prefetch(x + i, 0, 3);
      __builtin_prefetch(g + i, 0, 3);
      if (b) __builtin_prefetch(b + i, 0, 3);
    } else {
      __builtin_prefetch(x + i, 0, 2);
      __builtin_prefetch(g + i, 0, 2);
      if (b) __builtin_prefetch(b + i, 0, 2);
    }
  }
  // The lines of elements [i, i + Count), Count whole lines.
  template <int64_t Count>
  void lines(int64_t i) const {
    constexpr int64_t kLine = kLineBytes / static_cast<int64_t>(sizeof(T));
    static_assert(Count % kLine == 0, "whole lines");
    for (int64_t k = 0; k < Count; k += kLine) line(i + k);
  }
};

// `Ahead` of elements [at, at + ahead) of a tensor whose streams start at x, g
// and b (b may be null) and have `to_end` elements from there on, `ahead` the
// plan's distance for the update loop or, with `sum`, for the sum loop; none
// when that distance is 0 or those elements are past the end.
template <class T>
Ahead<T> ahead_of(const PrefetchPlan& plan, bool sum, T* x, T* g, T* b, int64_t at,
                  int64_t to_end) {
  const int64_t ahead =
      (sum ? plan.sum_ahead_bytes : plan.ahead_bytes) / static_cast<int64_t>(sizeof(T));
  if (ahead == 0 || at + ahead >= to_end) return {};
  return {x + at + ahead, g + at + ahead, b ? b + at + ahead : nullptr, to_end - (at + ahead),
          plan.into_l1};
}

// Updates the m ≤ W::size() compute-type elements at i in place, on vectors W
// (Vec<T>, or Deferred<T>: see vectorized_ops.h), the power map's dual update
// too (its Newton solve runs lane-wise), first storing into `kept` the inputs
// it overwrites when W defers. `Plain`: no momentum, unscaling, maximize or
// weight decay, so the step is the mirror update alone (the full transform's
// runtime branches cost ~20 % on the CPU). The map and the scalars come by
// value: held in registers, not reloaded after every store to x.
template <UpdateKind U, bool Momentum, bool Plain, class W, class Map, class T>
MF_INLINE void update_at(const Map& map, T* x, T* g, T* buf, int64_t i, int64_t m,
                         const core::ElementStep<T>& s, const W& scale, const Kept<T>& kept) {
  W xv = W::loadu(x + i, m);
  W gv = W::loadu(g + i, m);
  W bv;
  if constexpr (Momentum) bv = W::loadu(buf + i, m);
  if constexpr (core::kIsDeferred<W>) {
    xv.store(kept.x + i, m);
    if constexpr (!Plain) {
      if (kept.g) gv.store(kept.g + i, m);
    }
    if constexpr (Momentum) bv.store(kept.b + i, m);
  }
  if constexpr (Plain) {
    xv = core::mirror_update<U>(map, xv, gv, scale);
  } else {
    core::step_element<U, Momentum>(map, xv, gv, bv, s);
  }
  xv.store(x + i, m);
  if constexpr (!Plain) {
    if (s.unscale) gv.store(g + i, m);
  }
  if constexpr (Momentum) bv.store(buf + i, m);
}

// Updates n contiguous elements (update_at), asking for one line of each
// stream of `ahead` per line of x.
template <UpdateKind U, bool Momentum, bool Plain, class W, class Map, class T>
MF_FLATTEN void step_span(const Map map, T* x, T* g, T* buf, int64_t n,
                          const core::ElementStep<T> s, const Kept<T>& kept,
                          const Ahead<T>& ahead) {
  constexpr int64_t kSize = W::size();
  constexpr int64_t kLine = kLineBytes / static_cast<int64_t>(sizeof(T));
  static_assert(kLine % kSize == 0, "a line is whole vectors");
  const W scale(s.scale);
  auto one = [&](int64_t i, int64_t m) {
    update_at<U, Momentum, Plain, W>(map, x, g, buf, i, m, s, scale, kept);
  };
  int64_t i = 0;
  for (const int64_t lines = std::min(n, ahead.n); i + kLine <= lines; i += kLine) {
    ahead.line(i);
    for (int64_t j = 0; j < kLine; j += kSize) one(i + j, kSize);
  }
  for (; i + kSize <= n; i += kSize) one(i, kSize);
  if (i < n) one(i, n - i);
}

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

// Elements by which the sum of a normalised step trails its update in
// update_then_sum: it reads them back from L1.
constexpr int64_t kSumLag = 128;

// Updates n elements (update_at) and adds their 1/φ''(θ⁺) into `item_sums` in
// one loop, the sum kSumLag elements behind the update, asking for one line of
// each stream of `ahead` per line the sum reads: the same operations, and the
// same sum, as step_span over the block followed by add_inv_metric, but the
// core interleaves the update's dependency chains with the sum's, which do not
// depend on each other, and keeps the divider (the update's √ of the
// hyperbolic map) and the multiply and fma pipes (the sum's √) busy at once.
// In cache on the Zen 5 machine (ns per 8 floats, docs/benchmarks.md): the
// normalised hyperbolic metric step 2.1–2.8 → 1.6, hyperbolic dual 2.6–3.1 →
// 2.1–2.7; on VGG-16, in three alternate runs, the hyperbolic dual normalised
// 1.13–1.30× → 1.06–1.16× SGD's time. The power map's metric step, whose
// update takes √ on the fma pipes too (kFmaSqrtStep), keeps its loops apart
// (kFusedSum): so in one loop, it was 10–20 % slower on VGG-16 on that machine.
template <UpdateKind U, bool Momentum, bool Plain, class W, class WS, class Map, class T>
MF_FLATTEN void update_then_sum(const Map map, T* x, T* g, T* buf, int64_t n,
                                const core::ElementStep<T> s, const Kept<T>& kept,
                                LaneSums<T>& item_sums, const Ahead<T>& ahead) {
  using S = LaneSums<T>;
  constexpr int64_t kSize = W::size();
  constexpr int64_t kLag = kSumLag / S::kGroup;  // in groups
  static_assert(kSumLag % S::kGroup == 0 && kSize == S::kSize,
                "the lag is whole groups, a group whole vectors");
  const W scale(s.scale);
  S sums = item_sums;
  const bool pairs = sums_pairs(map);
  auto sum = [&](int64_t i) {
    if (i + S::kGroup <= ahead.n) ahead.template lines<S::kGroup>(i);
    add_group_at<WS>(map, x + i, pairs, sums);
  };
  const int64_t groups = n / S::kGroup;
  for (int64_t k = 0; k < groups; ++k) {
    for (int64_t j = 0; j < S::kGroup; j += kSize) {
      update_at<U, Momentum, Plain, W>(map, x, g, buf, k * S::kGroup + j, kSize, s, scale, kept);
    }
    if (k >= kLag) sum((k - kLag) * S::kGroup);
  }
  for (int64_t k = std::max<int64_t>(0, groups - kLag); k < groups; ++k) sum(k * S::kGroup);
  const int64_t done = groups * S::kGroup;
  for (int64_t i = done; i < n; i += kSize) {
    update_at<U, Momentum, Plain, W>(map, x, g, buf, i, std::min(kSize, n - i), s, scale, kept);
  }
  if (done < n) add_partial_group<WS>(map, x + done, n - done, pairs, sums);
  item_sums = sums;
}

// Names a vector type in a generic lambda's argument.
template <class W>
struct VectorType {
  using type = W;
};

// Elements per block of a deferred pass: a block's saved inputs stay in L1.
constexpr int64_t kDeferBlock = 512;
static_assert(kChunk % kDeferBlock == 0 && kDeferBlock % 64 == 0, "whole groups per block");
// Elements the power map's normalised metric step updates before it adds up
// their 1/φ'' (and asks for the lines ahead; the other steps: update_then_sum):
// on the Intel machine, in one process on VGG-16, 256
// took the normalised hyperbolic metric step 1.44× → 1.33× SGD's time and the
// hyperbolic dual 1.65× → 1.49× against 512, the power metric step unchanged;
// 128 was as fast as 256 or 1–6 % faster in three runs (docs/benchmarks.md).
// The sum's order does not depend on it.
constexpr int64_t kSumBlock = 128;
static_assert(kDeferBlock % kSumBlock == 0 && kSumBlock % core::kSumGroup == 0,
              "whole sum blocks per deferred block, whole groups per sum block");

// Runs a pass over [0, count) in blocks: `deferred(b, n)` (on Deferred<T>,
// keeping the inputs it overwrites), after `save(b, n)` (what else it changes);
// a block in which some fast path missed is put back by `restore(b, n)` and
// recomputed by `exact(b, n)` (on Vec<T>), and so is the rest of the item,
// whose values evidently leave the fast ranges. Either way every element gets
// the bits `exact` gives it. float16/bfloat16 blocks take `exact` directly.
template <class Save, class Restore, class Fast, class Exact>
void deferred_blocks(int64_t count, Save save, Restore restore, Fast deferred, Exact exact) {
  int64_t b = 0;
  for (; b < count; b += kDeferBlock) {
    const int64_t n = std::min(kDeferBlock, count - b);
    save(b, n);
    const uint64_t misses = core::fast_path_misses.load(std::memory_order_relaxed);
    deferred(b, n);
    if (core::fast_path_misses.load(std::memory_order_relaxed) != misses) {
      restore(b, n);
      break;
    }
  }
  if (b < count) exact(b, count - b);
}

// Where the fast loops take √ (core::Deferred; float on AVX512): by
// multiplications and fmas (VectorOps::sqrt_in_range) in every sum loop and in
// the update loop of the power map's metric step, the one that also divides,
// which leaves the divider to the divisions; on the divider in the other
// update loops, whose one √ per element it keeps up with while the dual steps'
// polynomials and Newton solve keep the fma pipes busy. In cache on the Intel
// machine (ns per 8 floats, docs/benchmarks.md): the power metric step 3.86 →
// 2.45, normalised 7.5 → 4.9; the normalised hyperbolic metric step 4.35 →
// 3.6 (4.0 with the update's √ on the fma pipes too); the power dual step's
// update loop 25 → 28 with them. On the Zen 5 machine the normalised power
// metric step with its update's √ on the divider and its sum in the update's
// loop was faster in cache (3.1–4.5 → 2.4–3.0) but slower on VGG-16 (1.01–1.12×
// → 1.12–1.21× SGD's time, in one process).
template <MirrorKind K, UpdateKind U>
constexpr bool kFmaSqrtStep = K == MirrorKind::Power && U == UpdateKind::Metric;
// Steps whose sum runs in the update's loop (update_then_sum): those whose
// update takes √ on the divider, which that loop keeps busy together with the
// fma pipes (the sum's √).
template <MirrorKind K, UpdateKind U>
constexpr bool kFusedSum = !kFmaSqrtStep<K, U>;
template <class W>
struct SumVectorOf {
  using type = W;
};
template <class T, bool F, bool D>
struct SumVectorOf<core::Deferred<T, F, D>> {
  using type = core::Deferred<T, true, D>;
};
// The vectors of a sum loop in a pass on W.
template <class W>
using SumVector = typename SumVectorOf<W>::type;

// Maps whose functions on vectors call no SLEEF fallback (vectorized_ops.h):
// the power map with L = 3 and β > 0, whose √ are exact on either path and
// whose other operations are arithmetic. Their steps need no deferred blocks:
// they run on core::Direct (Deferred's choice of √, nothing kept to recompute
// a block from: one store less per vector).
template <class Map>
constexpr bool kNoSlowPaths = false;
template <class T>
constexpr bool kNoSlowPaths<core::PowerPotential<T, true>> = true;

// Maps whose inverse metric is 1 everywhere (euclidean; power with L = 2): the
// sum of 1/φ'' over an item is its element count, exactly, with no pass.
template <MirrorKind K, class Map>
bool unit_inv_metric(const Map& map) {
  if constexpr (K == MirrorKind::Euclidean) {
    return true;
  } else if constexpr (K == MirrorKind::Power) {
    return map.is_quadratic();
  } else {
    return false;
  }
}

// One work item: elements [begin, end) of one tensor, on its map of kind K.
// Returns the item's partial sum of 1/φ'' (of θ when mean_only, else of θ⁺
// if tracked).
template <MirrorKind K, UpdateKind U, bool Momentum, class scalar_t, class Map>
double run_item_on(const Map map, const KernelConfig& config, const TensorTask& task,
                   int64_t begin, int64_t end, bool mean_only) {
  using T = at::opmath_type<scalar_t>;
  const core::ElementStep<T> s{
      core::GradientTransform<T>{static_cast<T>(config.transform.weight_decay),
                                 static_cast<T>(config.transform.momentum),
                                 static_cast<T>(config.transform.one_minus_dampening),
                                 config.transform.nesterov, config.transform.maximize},
      static_cast<T>(task.scale), static_cast<T>(config.grad_scale), task.first_step,
      config.unscale};
  const bool unit = unit_inv_metric<K>(map);
  const bool want_sum = (mean_only || config.track_mean) && !unit;
  const bool plain = !Momentum && !s.unscale && !s.transform.maximize &&
                     s.transform.weight_decay == T(0);
  const int64_t count = end - begin;
  const int64_t to_tensor_end = task.numel - begin;  // elements from param, grad, buf on
  if (unit && mean_only) return static_cast<double>(count);
  LaneSums<T> sums;
  auto* param = static_cast<scalar_t*>(task.param) + begin;
  auto* grad = static_cast<scalar_t*>(task.grad) + begin;
  auto* buf = Momentum ? static_cast<scalar_t*>(task.momentum_buffer) + begin : nullptr;
  // Calls run(Plain) with Plain = std::bool_constant<whether the step is
  // plain>: the loop of this step, chosen once per item.
  auto by_kind = [&](auto run) {
    if constexpr (Momentum) {
      run(std::false_type{});
    } else if (plain) {
      run(std::true_type{});
    } else {
      run(std::false_type{});
    }
  };
  Kept<T> kept;
  // `kept_at`: where x is in its deferred block.
  auto span = [&](auto w, T* x, T* g, T* b, int64_t n, const Ahead<T>& ahead = {},
                  int64_t kept_at = 0) {
    using W = typename decltype(w)::type;
    by_kind([&](auto p) {
      step_span<U, Momentum, decltype(p)::value, W>(map, x, g, b, n, s, kept.from(kept_at), ahead);
    });
  };
  using Exact = VectorType<Vec<T>>;
  using Fast = VectorType<core::Deferred<T, kFmaSqrtStep<K, U>>>;
  using Direct = VectorType<core::Direct<T, kFmaSqrtStep<K, U>>>;

  if constexpr (std::is_same_v<scalar_t, T>) {
    // float and double: straight on the tensors' memory, in one pass, with the
    // deferred fast paths; `kept` holds a block's inputs until it is checked.
    LaneSums<T> kept_sums;
    alignas(64) T kept_x[kDeferBlock];
    alignas(64) T kept_g[kDeferBlock];
    alignas(64) T kept_b[kDeferBlock];
    const bool keep_g = !mean_only && s.unscale;
    kept = Kept<T>{kept_x, keep_g ? kept_g : nullptr, kept_b};
    // The deferred pass itself stores the inputs it overwrites into `kept`.
    auto save = [&](int64_t, int64_t) { kept_sums = sums; };
    auto restore = [&](int64_t b, int64_t n) {
      sums = kept_sums;
      if (mean_only) return;
      std::copy(kept_x, kept_x + n, param + b);
      if (keep_g) std::copy(kept_g, kept_g + n, grad + b);
      if constexpr (Momentum) std::copy(kept_b, kept_b + n, buf + b);
    };
    // A normalised step sums 1/φ''(θ⁺) of the elements just written, while
    // they are in L1: kSumLag elements behind the update in the same loop
    // (update_then_sum), or, for the power map's metric step, in a second loop
    // over each kSumBlock elements. Summing each vector right after updating
    // it makes too long a chain of dependent operations per vector for the
    // core to overlap consecutive vectors (measured: up to 1.3× slower in cache).
    auto pass = [&](auto w) {
      return [&, w](int64_t begin, int64_t n) {
        using W = typename decltype(w)::type;
        using WS = SumVector<W>;
        if (mean_only) {
          add_inv_metric<WS>(map, param + begin, n, sums);
          return;
        }
        if (!want_sum) {  // the Euclidean step among others: one loop, no blocks
          // The Euclidean step keeps up with the hardware prefetchers by itself
          // (no gain measured on VGG-16), and in cache its loop is bound by
          // loads, which prefetches add to (0.75 → 0.99 ns per 8 floats).
          span(w, param + begin, grad + begin, Momentum ? buf + begin : nullptr, n,
               unit ? Ahead<T>{}
                    : ahead_of(config.prefetch, false, param, grad, buf, begin, to_tensor_end));
          return;
        }
        if constexpr (kFusedSum<K, U>) {
          const Ahead<T> ahead =
              ahead_of(config.prefetch, true, param, grad, buf, begin, to_tensor_end);
          by_kind([&](auto p) {
            update_then_sum<U, Momentum, decltype(p)::value, W, WS>(
                map, param + begin, grad + begin, Momentum ? buf + begin : nullptr, n, s,
                kept.from(0), sums, ahead);
          });
          return;
        }
        for (int64_t b = begin; b < begin + n; b += kSumBlock) {
          const int64_t m = std::min(kSumBlock, begin + n - b);
          span(w, param + b, grad + b, Momentum ? buf + b : nullptr, m, {}, b - begin);
          add_inv_metric<WS>(map, param + b, m, sums,
                             ahead_of(config.prefetch, true, param, grad, buf, b, to_tensor_end));
        }
      };
    };
    if (unit) {
      pass(Exact{})(0, count);  // x + s·g: no fast path to defer
    } else if constexpr (kNoSlowPaths<Map>) {
      pass(Direct{})(0, count);  // nothing to defer: no inputs kept, no blocks
    } else {
      deferred_blocks(count, save, restore, pass(Fast{}), pass(Exact{}));
    }
  } else {
    // float16 and bfloat16: convert a block to float, compute, round once.
    alignas(64) T xs[kBlock];
    alignas(64) T gs[kBlock];
    alignas(64) T bs[kBlock];
    for (int64_t b = 0; b < count; b += kBlock) {
      const int64_t n = std::min(kBlock, count - b);
      at::vec::convert(param + b, xs, n);
      if (!mean_only) {
        at::vec::convert(grad + b, gs, n);
        if constexpr (Momentum) at::vec::convert(buf + b, bs, n);
        span(Exact{}, xs, gs, bs, n);
        at::vec::convert(xs, param + b, n);
        if (s.unscale) at::vec::convert(gs, grad + b, n);
        if constexpr (Momentum) at::vec::convert(bs, buf + b, n);
        // The mean must be that of the values stored, after rounding.
        if (want_sum) at::vec::convert(param + b, xs, n);
      }
      if (want_sum) add_inv_metric<Vec<T>>(map, xs, n, sums);
    }
  }
  if (unit) return static_cast<double>(count);
  return sums.total();
}

// run_item_on with the tensor's map; the power map's metric update with L = 3
// and β > 0 on PowerPotential<T, true>, whose loops then test neither (6–12 %
// less time per element in cache). Its dual update, whose time goes to the
// Newton solve, keeps the general map rather than double that code.
template <MirrorKind K, UpdateKind U, bool Momentum, class scalar_t>
double run_item(const KernelConfig& config, const TensorTask& task, int64_t begin, int64_t end,
                bool mean_only) {
  using T = at::opmath_type<scalar_t>;
  const auto map = core::make_map<K, T>(task.beta, config.degree);
  if constexpr (K == MirrorKind::Power && U == UpdateKind::Metric) {
    if (map.sqrt_powers && map.beta > T(0)) {
      return run_item_on<K, U, Momentum, scalar_t>(core::PowerPotential<T, true>{map.L, map.beta},
                                                  config, task, begin, end, mean_only);
    }
  }
  return run_item_on<K, U, Momentum, scalar_t>(map, config, task, begin, end, mean_only);
}

struct WorkItem {
  std::size_t task;
  int64_t begin;
  int64_t end;
};

template <MirrorKind K, UpdateKind U, bool Momentum, class scalar_t>
void run_all(const KernelConfig& config, std::vector<TensorTask>& tasks, bool mean_only) {
  std::vector<WorkItem> items;
  int64_t total = 0;
  for (std::size_t t = 0; t < tasks.size(); ++t) {
    for (int64_t b = 0; b < tasks[t].numel; b += kChunk) {
      items.push_back({t, b, std::min(tasks[t].numel, b + kChunk)});
    }
    total += tasks[t].numel;
  }
  std::vector<double> partial(items.size(), 0.0);
  auto body = [&](int64_t first, int64_t last) {
    for (int64_t i = first; i < last; ++i) {
      const WorkItem& item = items[i];
      partial[i] = run_item<K, U, Momentum, scalar_t>(config, tasks[item.task], item.begin,
                                                      item.end, mean_only);
    }
  };
  const auto n_items = static_cast<int64_t>(items.size());
  if (total < 2 * kChunk) {
    body(0, n_items);  // too little work to be worth waking the thread pool
  } else {
    at::parallel_for(0, n_items, 1, body);
  }
  if (mean_only || config.track_mean) {
    // Reduce the partial sums per tensor, in item order: deterministic.
    for (auto& task : tasks) task.mean_out = 0;
    for (std::size_t i = 0; i < items.size(); ++i) tasks[items[i].task].mean_out += partial[i];
    for (auto& task : tasks) {
      if (task.numel > 0) task.mean_out /= static_cast<double>(task.numel);
    }
  }
}

template <class scalar_t>
void run_typed(const KernelConfig& config, std::vector<TensorTask>& tasks, bool mean_only) {
  auto with_update = [&](auto mirror_tag) {
    constexpr MirrorKind K = decltype(mirror_tag)::value;
    const bool momentum = config.has_momentum && !mean_only;
    if (config.update == UpdateKind::Metric) {
      if (momentum) {
        run_all<K, UpdateKind::Metric, true, scalar_t>(config, tasks, mean_only);
      } else {
        run_all<K, UpdateKind::Metric, false, scalar_t>(config, tasks, mean_only);
      }
    } else {
      if (momentum) {
        run_all<K, UpdateKind::Dual, true, scalar_t>(config, tasks, mean_only);
      } else {
        run_all<K, UpdateKind::Dual, false, scalar_t>(config, tasks, mean_only);
      }
    }
  };
  switch (config.mirror) {
    case MirrorKind::Euclidean:
      with_update(std::integral_constant<MirrorKind, MirrorKind::Euclidean>{});
      break;
    case MirrorKind::Hyperbolic:
      with_update(std::integral_constant<MirrorKind, MirrorKind::Hyperbolic>{});
      break;
    case MirrorKind::Power:
      with_update(std::integral_constant<MirrorKind, MirrorKind::Power>{});
      break;
  }
}

}  // namespace

void run_tasks(const KernelConfig& config, c10::ScalarType dtype, std::vector<TensorTask>& tasks,
               bool mean_only) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "mirror_descent_step_cpu",
                                  [&] { run_typed<scalar_t>(config, tasks, mean_only); });
}

}  // namespace CPU_CAPABILITY
}  // namespace mirrorflow::cpu
