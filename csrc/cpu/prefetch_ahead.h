// How the CPU kernel (mirror_step_kernel.cpp) asks the memory for the lines
// ahead of the elements it is at: `Ahead`, and `ahead_of` from the processor's
// PrefetchPlan (cpu_kernel.h). Compiled once per CPU capability with the kernel.
#pragma once

#include <cstdint>

#include "cpu_kernel.h"

namespace mirrorflow::cpu {
inline namespace CPU_CAPABILITY {
// Internal to the kernel's translation unit, like the kernel's own code, so
// that the compiler inlines and lays it out as one with the kernel's loops.
namespace {  // NOLINT(cert-dcl59-cpp,google-build-namespaces): included by one file

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

}  // namespace
}  // namespace CPU_CAPABILITY
}  // namespace mirrorflow::cpu
