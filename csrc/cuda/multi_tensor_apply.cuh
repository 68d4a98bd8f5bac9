// Multi-tensor apply on the device: one thread block per work item (a chunk
// of one tensor, step_launch.h), 128-bit vectorised loads and stores where the
// tensor's memory is aligned, a per-element fallback where it is not, and a
// deterministic block reduction for the per-(tensor, chunk) partial sums.
//
// Unlike ATen's MultiTensorApply.cuh, the tensor and work lists live in device
// memory (uploaded once per call) rather than in the kernel's arguments, so a
// call over any number of tensors is one launch per kernel.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>
#include <utility>

#include "step_launch.h"

namespace mirrorflow::cuda {

/// The type an element is computed in: float for float16/bfloat16 (MATH.md
/// §2, precision), the element type otherwise.
template <class scalar_t>
struct ComputeTypeOf {
  using type = scalar_t;
};
template <>
struct ComputeTypeOf<c10::Half> {
  using type = float;
};
template <>
struct ComputeTypeOf<c10::BFloat16> {
  using type = float;
};
template <class scalar_t>
using compute_t = typename ComputeTypeOf<scalar_t>::type;

/// Calls f(scalar_t{}) with the element type of `dtype`.
template <class F>
void dispatch_dtype(DType dtype, F&& f) {
  switch (dtype) {
    case DType::Float64:
      f(double{});
      return;
    case DType::Float32:
      f(float{});
      return;
    case DType::BFloat16:
      f(c10::BFloat16{});
      return;
    case DType::Float16:
      f(c10::Half{});
      return;
  }
}

/// kVectorBytes of elements, loaded and stored as one 128-bit access.
template <class scalar_t>
struct alignas(kVectorBytes) Pack {
  static constexpr int kSize = kVectorBytes / static_cast<int>(sizeof(scalar_t));
  scalar_t v[kSize];
};

/// `p`, known to the compiler to point to global memory (as tensor memory
/// always does), so that it emits global rather than generic loads and stores
/// for pointers read from the device-side records.
template <class T>
__device__ __forceinline__ T* global_ptr(T* p) {
  __builtin_assume(__isGlobal(p));
  return p;
}

template <class scalar_t>
__device__ __forceinline__ Pack<scalar_t> load_pack(const scalar_t* p, int64_t pack_index) {
  return reinterpret_cast<const Pack<scalar_t>*>(p)[pack_index];
}

template <class scalar_t>
__device__ __forceinline__ void store_pack(scalar_t* p, int64_t pack_index,
                                           const Pack<scalar_t>& pack) {
  reinterpret_cast<Pack<scalar_t>*>(p)[pack_index] = pack;
}

/// The elements of one work item: tensor record, first element, count.
struct ChunkView {
  const TensorRecord* tensor;
  int64_t begin;  // 64-bit: tensors may hold more than 2^31 elements
  int count;      // at most kChunk
  int64_t partial_index;
};

__device__ __forceinline__ ChunkView chunk_of(const TensorRecord* tensors, WorkItem item) {
  const TensorRecord* t = tensors + item.tensor;
  const int64_t begin = static_cast<int64_t>(item.chunk) * kChunk;
  const int64_t left = t->numel - begin;
  const int count = static_cast<int>(left < kChunk ? left : kChunk);
  return ChunkView{t, begin, count, t->first_item + item.chunk};
}

/// Sum of `value` over the warp, the same order on every call (xor butterfly).
__device__ __forceinline__ double warp_sum(double value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  }
  return value;
}

/// Sum of `value` over the block; the result is valid in thread 0. Every
/// thread of the block must call it. Deterministic for a given block size.
__device__ __forceinline__ double block_sum(double value) {
  __shared__ double warp_sums[32];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  value = warp_sum(value);
  if (lane == 0) warp_sums[warp] = value;
  __syncthreads();
  const int n_warps = (blockDim.x + 31) / 32;
  if (warp == 0) {
    value = lane < n_warps ? warp_sums[lane] : 0.0;
    value = warp_sum(value);
  }
  return value;
}

/// Calls f(i) for every element index i in [0, count) of a chunk, spread over
/// the block: as packs of Pack<scalar_t>::kSize elements (f_pack(pack_index))
/// when `vectorized`, and one element at a time for the rest.
template <class scalar_t, class PackFn, class ElementFn>
__device__ __forceinline__ void for_each_in_chunk(int count, bool vectorized, PackFn&& f_pack,
                                                  ElementFn&& f_element) {
  constexpr int kPack = Pack<scalar_t>::kSize;
  int scalar_begin = 0;
  if (vectorized) {
    const int n_packs = count / kPack;
    for (int i = threadIdx.x; i < n_packs; i += blockDim.x) f_pack(i);
    scalar_begin = n_packs * kPack;
  }
  for (int i = scalar_begin + static_cast<int>(threadIdx.x); i < count; i += blockDim.x) {
    f_element(i);
  }
}

}  // namespace mirrorflow::cuda
