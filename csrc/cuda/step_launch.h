// The interface between the CUDA operator (mirror_step_cuda.cpp, host code)
// and the kernels (*.cu): the records the operator uploads to the device once
// per call, and the launchers. No Torch include, so the kernel files compile
// without ATen's headers.
//
// One step of one (device, dtype) group is at most four kernel launches,
// whatever the number of tensors (docs/cuda.md):
//   1. stale means  (normalize, only when a tensor's stored mean is stale):
//      partial sums of 1/φ''(θ) per work item of the stale tensors;
//   2. finalize     (StaleMeans): metric_mean ← Σ partials / numel;
//   3. step         : the update of every element, and (normalize) partial
//      sums of 1/φ''(θ⁺) per work item;
//   4. finalize     (AfterStep, normalize or momentum): metric_mean of θ⁺,
//      steps += 1; nothing when found_inf is nonzero.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "mirrorflow/core/mirror_kind.h"

namespace mirrorflow::cuda {

/// Elements per work item (one thread block each) and per partial sum. A
/// multiple of every vector width, so that chunks of an aligned tensor start
/// aligned.
constexpr int64_t kChunk = 32768;
/// Threads per block of the step and stale-means kernels.
constexpr int kBlockThreads = 512;
/// Bytes per vectorised load and store.
constexpr int kVectorBytes = 16;

enum class DType : int32_t { Float64 = 0, Float32 = 1, BFloat16 = 2, Float16 = 3 };

/// One parameter tensor of a step (device memory). Every pointer is to the
/// memory the kernel walks: dense, element i of param/grad/buffer the same
/// logical element.
struct TensorRecord {
  void* param;
  void* grad;
  void* momentum_buffer;  // null without momentum
  float* step;            // steps[i] (0-dim float32); null without momentum
  double* metric_mean;    // metric_means[i] (0-dim float64); null unless normalize
  int64_t numel;
  int64_t first_item;     // index of its chunk 0 in the step's work list and partial sums
  double beta;            // the layer's β (after beta_scaling)
  int32_t vectorized;     // param, grad (and buffer) are all kVectorBytes-aligned
  int32_t stale;          // normalize: its metric_mean is recomputed before the step
};

// Host and device read the same bytes (one upload per call).
static_assert(sizeof(TensorRecord) == 72, "TensorRecord layout");

/// One thread block's work: elements [chunk·kChunk, min(numel, (chunk+1)·kChunk))
/// of tensor `tensor`. Its partial sum goes to partials[first_item + chunk].
struct WorkItem {
  int32_t tensor;
  int32_t chunk;
};
static_assert(sizeof(WorkItem) == 8, "WorkItem layout");

/// The scalars of a step. lr is read from lr_tensor on the device when given,
/// so that a captured CUDA graph follows its changes.
struct StepScalars {
  double lr;
  const void* lr_tensor;    // null: use lr
  DType lr_dtype;
  const float* grad_scale;  // null: gradients are not scaled
  const float* found_inf;   // null: the step is never skipped
  double weight_decay;
  double momentum;
  double one_minus_dampening;
  double degree;            // L of the power map
  bool nesterov;
  bool maximize;
  bool normalize;
};

/// One launch sequence: everything the kernels read, in device memory.
struct StepLaunch {
  core::MirrorKind mirror;
  core::UpdateKind update;
  bool momentum;
  DType dtype;
  const TensorRecord* tensors;
  int32_t n_tensors;
  const WorkItem* items;        // the step's work list, tensor by tensor
  int64_t n_items;
  const WorkItem* stale_items;  // the work items of the stale tensors
  int64_t n_stale_items;
  double* partials;             // n_items partial sums (normalize), else null
  StepScalars scalars;
};

/// Kernel 1 (partial sums of 1/φ''(θ) over stale_items), for map K.
template <core::MirrorKind K>
void launch_stale_means(const StepLaunch& launch, cudaStream_t stream);

/// Kernel 3 (the step over items), for map K.
template <core::MirrorKind K>
void launch_mirror_step(const StepLaunch& launch, cudaStream_t stream);

enum class FinalizeMode { StaleMeans, AfterStep };

/// Kernels 2 and 4: the per-tensor epilogue.
void launch_finalize(const StepLaunch& launch, FinalizeMode mode, cudaStream_t stream);

/// map_eval on the device: out[i] = function(x[i]) for n contiguous elements.
void launch_map_eval(const void* x, void* out, int64_t n, DType dtype, core::MirrorKind mirror,
                     double beta, double degree, int function, cudaStream_t stream);

}  // namespace mirrorflow::cuda
