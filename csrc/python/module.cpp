// mirrorflow._C: loading it loads libmirrorflow, which registers the
// operators with the dispatcher; the module itself reports how the library
// was built and sets the CPU kernels' prefetch plan. No math lives here.
#include <ATen/Version.h>
#include <pybind11/pybind11.h>

#include <string>

#include "mirrorflow/ops.h"


PYBIND11_MODULE(_C, m) {
  m.doc() = "Build information and the CPU prefetch plan of the mirrorflow extension.";
  m.attr("__version__") = MIRRORFLOW_VERSION;
  m.attr("torch_version") = MIRRORFLOW_TORCH_VERSION;
  m.def("cuda_built", &mirrorflow::cuda_built,
        "Whether this build contains the CUDA kernels.");
  m.def("cuda_architectures", &mirrorflow::cuda_architectures,
        "The CUDA architectures the kernels were compiled for, e.g. '80-real;90'.");
  m.def("cuda_option", &mirrorflow::cuda_option,
        "The build's MIRRORFLOW_CUDA setting: AUTO, ON or OFF.");
  m.def("cpu_prefetch", &mirrorflow::cpu_prefetch,
        "How the CPU kernels prefetch on this processor: into L1 or L2, how far ahead.");
  m.def("set_cpu_prefetch", &mirrorflow::set_cpu_prefetch, pybind11::arg("into"),
        pybind11::arg("ahead_bytes"), pybind11::arg("sum_ahead_bytes"),
        "Sets how the CPU kernels prefetch in this process (mirrorflow.set_cpu_prefetch).");
  m.def("reset_cpu_prefetch", &mirrorflow::reset_cpu_prefetch,
        "Restores this processor's default prefetch plan.");
  m.def("cpu_capability", &at::get_cpu_capability,
        "The CPU capability that picks the kernel build: DEFAULT, AVX2 or AVX512\n"
        "(the environment variable ATEN_CPU_CAPABILITY can lower it).");
}
