// The step and stale-means kernels of one map, and their launchers
// (step_launch.h). Included once per map by mirror_step_<map>.cu, which
// instantiates the launchers, so that the maps compile in parallel.
#pragma once

#include <c10/cuda/CUDAException.h>

#include "mirror_step_functor.cuh"

namespace mirrorflow::cuda {

/// Kernel 3: one block per work item of launch.items.
template <core::MirrorKind K, core::UpdateKind U, bool Momentum, class scalar_t>
__global__ void __launch_bounds__(kBlockThreads) mirror_step_kernel(StepLaunch launch) {
  // Uniform over the grid: a skipped step writes nothing, not even partials.
  if (step_skipped(launch.scalars)) return;
  const ChunkView c = chunk_of(launch.tensors, launch.items[blockIdx.x]);
  const double sum = step_chunk<K, U, Momentum, scalar_t>(c, launch.scalars);
  if (launch.scalars.normalize) {
    const double total = block_sum(sum);
    if (threadIdx.x == 0) launch.partials[c.partial_index] = total;
  }
}

/// Kernel 1: one block per work item of launch.stale_items.
template <core::MirrorKind K, class scalar_t>
__global__ void __launch_bounds__(kBlockThreads) stale_means_kernel(StepLaunch launch) {
  const ChunkView c = chunk_of(launch.tensors, launch.stale_items[blockIdx.x]);
  const double total = block_sum(inv_metric_chunk<K, scalar_t>(c, launch.scalars));
  if (threadIdx.x == 0) launch.partials[c.partial_index] = total;
}

template <core::MirrorKind K, core::UpdateKind U, bool Momentum, class scalar_t>
void launch_step_kernel(const StepLaunch& launch, cudaStream_t stream) {
  const auto blocks = static_cast<unsigned int>(launch.n_items);
  mirror_step_kernel<K, U, Momentum, scalar_t><<<blocks, kBlockThreads, 0, stream>>>(launch);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <core::MirrorKind K>
void launch_mirror_step(const StepLaunch& launch, cudaStream_t stream) {
  if (launch.n_items == 0) return;
  using core::UpdateKind;
  dispatch_dtype(launch.dtype, [&](auto zero) {
    using scalar_t = decltype(zero);
    // Euclidean: the metric and dual updates are the same operation,
    // fma(g, s, θ), so one kernel serves both.
    const bool dual = K != core::MirrorKind::Euclidean && launch.update == UpdateKind::Dual;
    constexpr UpdateKind kDual =
        K == core::MirrorKind::Euclidean ? UpdateKind::Metric : UpdateKind::Dual;
    if (dual) {
      if (launch.momentum) {
        launch_step_kernel<K, kDual, true, scalar_t>(launch, stream);
      } else {
        launch_step_kernel<K, kDual, false, scalar_t>(launch, stream);
      }
    } else {
      if (launch.momentum) {
        launch_step_kernel<K, UpdateKind::Metric, true, scalar_t>(launch, stream);
      } else {
        launch_step_kernel<K, UpdateKind::Metric, false, scalar_t>(launch, stream);
      }
    }
  });
}

template <core::MirrorKind K>
void launch_stale_means(const StepLaunch& launch, cudaStream_t stream) {
  if (launch.n_stale_items == 0) return;
  dispatch_dtype(launch.dtype, [&](auto zero) {
    using scalar_t = decltype(zero);
    const auto blocks = static_cast<unsigned int>(launch.n_stale_items);
    stale_means_kernel<K, scalar_t><<<blocks, kBlockThreads, 0, stream>>>(launch);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace mirrorflow::cuda

/// Instantiates the launchers of map K (in one .cu file per map).
#define MIRRORFLOW_INSTANTIATE_MAP_KERNELS(K)                                          \
  template void mirrorflow::cuda::launch_mirror_step<K>(const mirrorflow::cuda::StepLaunch&, \
                                                        cudaStream_t);                     \
  template void mirrorflow::cuda::launch_stale_means<K>(const mirrorflow::cuda::StepLaunch&, \
                                                        cudaStream_t)
