// The per-tensor epilogue of a step (kernels 2 and 4 of step_launch.h): the
// mean of the inverse metric from the partial sums of the tensor's work items,
// and the momentum step counters. A separate launch from the step, so every
// block of the step has read `steps` and `metric_mean` before they change,
// and the partial sums are complete.
#include <c10/cuda/CUDAException.h>

#include "mirror_step_functor.cuh"

namespace mirrorflow::cuda {
namespace {

constexpr int kFinalizeThreads = 256;
constexpr int kWarpsPerBlock = kFinalizeThreads / 32;

/// Writes Σ partials / numel of tensor t into its metric_mean (one warp).
__device__ void write_mean(const TensorRecord& t, const double* partials, int lane) {
  const int64_t n_items = (t.numel + kChunk - 1) / kChunk;
  double sum = 0.0;
  for (int64_t j = lane; j < n_items; j += 32) sum += partials[t.first_item + j];
  sum = warp_sum(sum);
  if (lane == 0) *t.metric_mean = sum / static_cast<double>(t.numel);
}

/// One warp per tensor.
__global__ void __launch_bounds__(kFinalizeThreads)
    finalize_kernel(StepLaunch launch, FinalizeMode mode) {
  const bool after_step = mode == FinalizeMode::AfterStep;
  if (after_step && step_skipped(launch.scalars)) return;
  const int lane = threadIdx.x % 32;
  const int64_t warp = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (warp >= launch.n_tensors) return;
  const TensorRecord& t = launch.tensors[warp];
  const bool has_mean = launch.scalars.normalize && t.numel > 0;
  if (has_mean && (after_step || t.stale)) write_mean(t, launch.partials, lane);
  if (after_step && launch.momentum && lane == 0) *t.step += 1.0f;
}

}  // namespace

void launch_finalize(const StepLaunch& launch, FinalizeMode mode, cudaStream_t stream) {
  if (launch.n_tensors == 0) return;
  const auto blocks =
      static_cast<unsigned int>((launch.n_tensors + kWarpsPerBlock - 1) / kWarpsPerBlock);
  finalize_kernel<<<blocks, kFinalizeThreads, 0, stream>>>(launch, mode);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace mirrorflow::cuda
