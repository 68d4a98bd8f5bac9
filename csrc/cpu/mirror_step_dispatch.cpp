// Chooses the CPU kernel build (DEFAULT, AVX2 or AVX512) for this processor,
// honouring ATEN_CPU_CAPABILITY like ATen's own kernels.
#include <ATen/Version.h>

#include <string>

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

}  // namespace mirrorflow::cpu
