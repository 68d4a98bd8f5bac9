// Interface between the CPU operator (mirror_step_cpu.cpp) and the kernel
// (mirror_step_kernel.cpp), which is compiled once per CPU capability
// (DEFAULT, AVX2, AVX512) and chosen at run time, as ATen does.
#pragma once

#include <c10/core/ScalarType.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "mirrorflow/core/mirror_kind.h"

namespace mirrorflow::cpu {

/// Elements per work item, and per partial sum of the per-tensor mean. Fixed,
/// so that the mean does not depend on the number of threads.
constexpr int64_t kChunk = 16384;

/// One parameter tensor, contiguous in memory (the operator makes it so).
struct TensorTask {
  void* param = nullptr;
  void* grad = nullptr;
  void* momentum_buffer = nullptr;  // null without momentum
  int64_t numel = 0;
  double beta = 0;          // the layer's β (after beta_scaling)
  double scale = 0;         // −η/ν: ν is 1 or the mean inverse metric
  bool first_step = false;  // momentum buffer not yet initialised
  double mean_out = 0;      // mean of 1/φ'' over the tensor (written by the kernel)
};

/// How the kernel asks the memory for the lines ahead of the elements it is
/// at (prefetch_ahead.h, `Ahead`): how far ahead of the update loop (in
/// steps without a normalising sum) and of the sum loop (in those with one),
/// and into L1 or L2. Which is faster depends on the processor
/// (docs/benchmarks.md).
struct PrefetchPlan {
  int64_t ahead_bytes = 8192;
  int64_t sum_ahead_bytes = 8192;
  bool into_l1 = false;
};

/// This processor's default plan, chosen once: into L1 on Intel CPUs, 4 KiB
/// ahead of the update loop and 2 KiB ahead of the sum loop; 8 KiB ahead of
/// either, into L2, on others (measured on AMD Zen 4).
PrefetchPlan default_prefetch_plan();

/// The plan the next step uses: the one set last by set_prefetch_plan, else
/// the default. Prefetches change when lines arrive, never a result.
PrefetchPlan prefetch_plan();

/// Sets the plan for this process (checked by the caller:
/// mirrorflow::set_cpu_prefetch); std::nullopt restores the default.
void set_prefetch_plan(const std::optional<PrefetchPlan>& plan);

/// What is the same for every tensor of one call.
struct KernelConfig {
  core::MirrorKind mirror = core::MirrorKind::Euclidean;
  core::UpdateKind update = core::UpdateKind::Metric;
  double degree = 2;
  bool has_momentum = false;
  bool track_mean = false;      // write the mean of 1/φ''(θ⁺) into mean_out
  core::GradientTransform<double> transform;
  bool unscale = false;         // divide gradients by grad_scale and write them back
  double grad_scale = 1;
  PrefetchPlan prefetch;
};

/// Updates all tasks in place; with `mean_only`, only computes mean_out of θ.
using RunTasksFn = void (*)(const KernelConfig&, c10::ScalarType, std::vector<TensorTask>&,
                            bool mean_only);

/// The kernel compiled for the best capability of this CPU.
RunTasksFn select_run_tasks();

}  // namespace mirrorflow::cpu
