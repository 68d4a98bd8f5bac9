// The CPU mirror-descent kernel. Compiled once per CPU capability, with
// CPU_CAPABILITY set to DEFAULT, AVX2 or AVX512 (see CMakeLists.txt), like
// ATen's own kernels; mirror_step_dispatch.cpp picks one at run time.
//
// Work is a flat list of (tensor, chunk) items over every tensor of the call,
// run with at::parallel_for, so many small tensors cost one parallel region.
// Each item makes one pass over its elements: it updates them and, when the
// step is normalised, adds 1/φ''(θ⁺) into the chunk's partial sum, which the
// next step uses as its per-tensor mean (MATH.md §2) without a second pass.
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

// Elements converted at a time for float16/bfloat16 (three stack buffers).
constexpr int64_t kBlock = 1024;
// Partial sums of the mean are kept in 8 double lanes, indexed by element.
constexpr int kLanes = 8;
static_assert(kChunk % kBlock == 0 && kBlock % 64 == 0, "chunks hold whole blocks");

// Updates n contiguous compute-type elements in place, SIMD-wide (the power
// map's dual update too: its Newton solve runs lane-wise).
template <UpdateKind U, bool Momentum, class Map, class T>
void step_span(const Map& map, T* x, T* g, T* buf, int64_t n, const core::ElementStep<T>& s) {
  using V = Vec<T>;
  // Without momentum, unscaling, maximize or weight decay the step is the mirror
  // update alone; the full transform's runtime branches cost ~20 % on the CPU.
  const bool plain = !Momentum && !s.unscale && !s.transform.maximize &&
                     s.transform.weight_decay == T(0);
  for (int64_t i = 0; i < n; i += V::size()) {
    const int64_t m = std::min<int64_t>(V::size(), n - i);
    V xv = V::loadu(x + i, m);
    V gv = V::loadu(g + i, m);
    V bv;
    if constexpr (Momentum) bv = V::loadu(buf + i, m);
    if (plain) {
      xv = core::mirror_update<U>(map, xv, gv, V(s.scale));
    } else {
      core::step_element<U, Momentum>(map, xv, gv, bv, s);
    }
    xv.store(x + i, m);
    if (s.unscale) gv.store(g + i, m);
    if constexpr (Momentum) bv.store(buf + i, m);
  }
}

// Adds 1/φ''(x) of n elements into the lanes; element i goes to lane i mod 8
// (blocks start at multiples of 8), whatever the SIMD width, and each lane adds
// its elements in order. Whole groups of elements are added with the lanes in
// double vectors held in registers; the tail element by element.
template <class Map, class T>
void add_inv_metric(const Map& map, const T* x, int64_t n, double (&lanes)[kLanes]) {
  using V = Vec<T>;
  using D = Vec<double>;
  constexpr int64_t kSize = V::size();
  constexpr int64_t kWide = D::size();
  constexpr int64_t kGroup = kSize > kLanes ? kSize : kLanes;  // both powers of two
  static_assert(kGroup % kSize == 0 && kLanes % kWide == 0, "lanes tile the vectors");
  D acc[kLanes / kWide];
  for (int64_t k = 0; k < kLanes / kWide; ++k) acc[k] = D::loadu(lanes + k * kWide);
  alignas(64) T tmp[kGroup];
  alignas(64) double wide[kGroup];
  int64_t i = 0;
  for (; i + kGroup <= n; i += kGroup) {
    for (int64_t j = 0; j < kGroup; j += kSize) map.inv_metric(V::loadu(x + i + j)).store(tmp + j);
    for (int64_t j = 0; j < kGroup; ++j) wide[j] = static_cast<double>(tmp[j]);
    for (int64_t j = 0; j < kGroup / kWide; ++j) {
      acc[j % (kLanes / kWide)] += D::loadu(wide + j * kWide);
    }
  }
  for (int64_t k = 0; k < kLanes / kWide; ++k) acc[k].store(lanes + k * kWide);
  for (; i < n; i += kSize) {
    const int64_t m = std::min<int64_t>(kSize, n - i);
    map.inv_metric(V::loadu(x + i, m)).store(tmp);
    for (int64_t j = 0; j < m; ++j) lanes[(i + j) % kLanes] += static_cast<double>(tmp[j]);
  }
}

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

// One work item: elements [begin, end) of one tensor. Returns the item's
// partial sum of 1/φ'' (of θ when mean_only, else of θ⁺ if tracked).
template <MirrorKind K, UpdateKind U, bool Momentum, class scalar_t>
double run_item(const KernelConfig& config, const TensorTask& task, int64_t begin, int64_t end,
                bool mean_only) {
  using T = at::opmath_type<scalar_t>;
  const auto map = core::make_map<K, T>(task.beta, config.degree);
  const core::ElementStep<T> s{
      core::GradientTransform<T>{static_cast<T>(config.transform.weight_decay),
                                 static_cast<T>(config.transform.momentum),
                                 static_cast<T>(config.transform.one_minus_dampening),
                                 config.transform.nesterov, config.transform.maximize},
      static_cast<T>(task.scale), static_cast<T>(config.grad_scale), task.first_step,
      config.unscale};
  const bool unit = unit_inv_metric<K>(map);
  const bool want_sum = (mean_only || config.track_mean) && !unit;
  const int64_t count = end - begin;
  if (unit && mean_only) return static_cast<double>(count);
  double lanes[kLanes] = {};
  auto* param = static_cast<scalar_t*>(task.param) + begin;
  auto* grad = static_cast<scalar_t*>(task.grad) + begin;
  auto* buf = Momentum ? static_cast<scalar_t*>(task.momentum_buffer) + begin : nullptr;

  if constexpr (std::is_same_v<scalar_t, T>) {
    // float and double: straight on the tensors' memory, a block at a time so
    // that the sum reads values still in cache.
    for (int64_t b = 0; b < count; b += kBlock) {
      const int64_t n = std::min(kBlock, count - b);
      if (!mean_only) {
        step_span<U, Momentum>(map, param + b, grad + b, Momentum ? buf + b : nullptr, n, s);
      }
      if (want_sum) add_inv_metric(map, param + b, n, lanes);
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
        step_span<U, Momentum>(map, xs, gs, bs, n, s);
        at::vec::convert(xs, param + b, n);
        if (s.unscale) at::vec::convert(gs, grad + b, n);
        if constexpr (Momentum) at::vec::convert(bs, buf + b, n);
        // The mean must be that of the values stored, after rounding.
        if (want_sum) at::vec::convert(param + b, xs, n);
      }
      if (want_sum) add_inv_metric(map, xs, n, lanes);
    }
  }
  if (unit) return static_cast<double>(count);
  double sum = 0;
  for (double lane : lanes) sum += lane;
  return sum;
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
