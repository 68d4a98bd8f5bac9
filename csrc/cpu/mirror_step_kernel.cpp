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
// prefetches the blocks the step comes to next. The sum, its lanes and its
// order are in inv_metric_sum.h, the prefetches in prefetch_ahead.h.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "cpu_kernel.h"
#include "inv_metric_sum.h"
#include "mirrorflow/core/map_function.h"
#include "mirrorflow/core/update_rule.h"
#include "prefetch_ahead.h"
#include "vectorized_ops.h"

namespace mirrorflow::cpu {
inline namespace CPU_CAPABILITY {
namespace {

using core::MirrorKind;
using core::UpdateKind;

// Elements converted at a time for float16/bfloat16 (three stack buffers).
constexpr int64_t kBlock = 1024;
static_assert(kChunk % kBlock == 0 && kBlock % 64 == 0, "chunks hold whole blocks");

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
