// Chooses the CPU kernel build (DEFAULT, AVX2 or AVX512) for this processor,
// honouring ATEN_CPU_CAPABILITY like ATen's own kernels, and its prefetch plan.
#include <ATen/Version.h>

#include <mutex>
#include <optional>
#include <string>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "cpu_kernel.h"

namespace mirrorflow::cpu {

#define MIRRORFLOW_DECLARE_RUN_TASKS(CAP)                                                  \
  namespace CAP {                                                                           \
  void run_tasks(const KernelConfig&, c10::ScalarType, std::vector<TensorTask>&, bool);    \
  }
MIRRORFLOW_DECLARE_RUN_TASKS(DEFAULT)
#ifdef MIRRORFLOW_CPU_AVX2
MIRRORFLOW_DECLARE_RUN_TASKS(AVX2)
#endif
#ifdef MIRRORFLOW_CPU_AVX512
MIRRORFLOW_DECLARE_RUN_TASKS(AVX512)
#endif
#undef MIRRORFLOW_DECLARE_RUN_TASKS

RunTasksFn select_run_tasks() {
  static const RunTasksFn chosen = [] {
    // "DEFAULT", "AVX2", "AVX512", ... as torch.backends.cpu.get_cpu_capability().
    [[maybe_unused]] const std::string capability = at::get_cpu_capability();
#ifdef MIRRORFLOW_CPU_AVX512
    if (capability == "AVX512") return &AVX512::run_tasks;
#endif
#ifdef MIRRORFLOW_CPU_AVX2
    if (capability == "AVX2" || capability == "AVX512") return &AVX2::run_tasks;
#endif
    return &DEFAULT::run_tasks;
  }();
  return chosen;
}

PrefetchPlan default_prefetch_plan() {
  static const PrefetchPlan plan = [] {
    PrefetchPlan p;
#if defined(__x86_64__) || defined(__i386__)
    unsigned eax = 0;
    unsigned ebx = 0;
    unsigned ecx = 0;
    unsigned edx = 0;
    // The vendor string is EBX, EDX, ECX of leaf 0: "Genu", "ineI", "ntel".
    if (__get_cpuid(0, &eax, &ebx, &ecx, &edx) != 0 && ebx == 0x756e6547 && edx == 0x49656e69 &&
        ecx == 0x6c65746e) {
      p.ahead_bytes = 4096;
      p.sum_ahead_bytes = 2048;
      p.into_l1 = true;
    }
#endif
    return p;
  }();
  return plan;
}

namespace {

// The plan set by set_prefetch_plan, if any; read once per optimizer step.
std::mutex plan_mutex;
std::optional<PrefetchPlan> chosen_plan;

}  // namespace

PrefetchPlan prefetch_plan() {
  const std::lock_guard<std::mutex> lock(plan_mutex);
  return chosen_plan ? *chosen_plan : default_prefetch_plan();
}

void set_prefetch_plan(const std::optional<PrefetchPlan>& plan) {
  const std::lock_guard<std::mutex> lock(plan_mutex);
  chosen_plan = plan;
}

}  // namespace mirrorflow::cpu
