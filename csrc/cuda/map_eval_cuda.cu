// map_eval on the device: one function of a mirror map, elementwise
// (MATH.md §1), with the core's map code. float16/bfloat16 compute in float32.
#include <c10/cuda/CUDAException.h>

#include <algorithm>

#include "mirrorflow/core/map_function.h"
#include "multi_tensor_apply.cuh"

namespace mirrorflow::cuda {
namespace {

constexpr int kEvalThreads = 256;

template <core::MirrorKind K, class scalar_t>
__global__ void __launch_bounds__(kEvalThreads)
    map_eval_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ out, int64_t n,
                    double beta, double degree, core::MapFunction function) {
  using T = compute_t<scalar_t>;
  const auto map = core::make_map<K, T>(beta, degree);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    out[i] = static_cast<scalar_t>(
        core::apply_map_function(map, function, static_cast<T>(x[i])));
  }
}

template <core::MirrorKind K>
void launch_for_map(const void* x, void* out, int64_t n, DType dtype, double beta, double degree,
                    core::MapFunction function, cudaStream_t stream) {
  dispatch_dtype(dtype, [&](auto zero) {
    using scalar_t = decltype(zero);
    // Enough blocks to fill any current GPU; the loop covers the rest.
    const int64_t wanted = (n + kEvalThreads - 1) / kEvalThreads;
    const auto blocks = static_cast<unsigned int>(std::min<int64_t>(wanted, 65536));
    map_eval_kernel<K, scalar_t><<<blocks, kEvalThreads, 0, stream>>>(
        static_cast<const scalar_t*>(x), static_cast<scalar_t*>(out), n, beta, degree,
        function);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace

void launch_map_eval(const void* x, void* out, int64_t n, DType dtype, core::MirrorKind mirror,
                     double beta, double degree, int function, cudaStream_t stream) {
  if (n == 0) return;
  const auto fn = static_cast<core::MapFunction>(function);
  switch (mirror) {
    case core::MirrorKind::Euclidean:
      launch_for_map<core::MirrorKind::Euclidean>(x, out, n, dtype, beta, degree, fn, stream);
      return;
    case core::MirrorKind::Hyperbolic:
      launch_for_map<core::MirrorKind::Hyperbolic>(x, out, n, dtype, beta, degree, fn, stream);
      return;
    case core::MirrorKind::Power:
      launch_for_map<core::MirrorKind::Power>(x, out, n, dtype, beta, degree, fn, stream);
      return;
  }
}

}  // namespace mirrorflow::cuda
