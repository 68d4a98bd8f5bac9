// What one thread block does with one chunk in the mirror-descent step and in
// the stale-means pass. The math is core::step_element and the map's
// inv_metric (csrc/include/mirrorflow/core, MATH.md §1-§2).
//
// Slot layout of a work item's tensor (TensorRecord):
//   param            read, written (θ → θ⁺)
//   grad             read; written back unscaled when grad_scale is given
//   momentum_buffer  read, written (Momentum only)
//   step             read: 0 means the buffer is initialised to the gradient
//   metric_mean      read: ν of s = −η/ν (normalize)
// and, per work item, partials[first_item + chunk] written with
// Σ 1/φ''(θ⁺) over the chunk (normalize).
#pragma once

#include "mirrorflow/core/map_function.h"
#include "mirrorflow/core/update_rule.h"
#include "multi_tensor_apply.cuh"

namespace mirrorflow::cuda {

/// The learning rate: lr_tensor read on the device, else the host value.
__device__ __forceinline__ double read_lr(const StepScalars& s) {
  if (s.lr_tensor == nullptr) return s.lr;
  switch (s.lr_dtype) {
    case DType::Float64:
      return *static_cast<const double*>(s.lr_tensor);
    case DType::Float32:
      return *static_cast<const float*>(s.lr_tensor);
    case DType::BFloat16:
      return static_cast<float>(*static_cast<const c10::BFloat16*>(s.lr_tensor));
    case DType::Float16:
      return static_cast<float>(*static_cast<const c10::Half*>(s.lr_tensor));
  }
  return s.lr;
}

/// Whether GradScaler found an overflow: the step changes nothing.
__device__ __forceinline__ bool step_skipped(const StepScalars& s) {
  return s.found_inf != nullptr && *s.found_inf != 0.0f;
}

/// Updates the chunk in place and returns this thread's share of
/// Σ 1/φ''(θ⁺) (of the values as stored), or 0 without normalize.
template <core::MirrorKind K, core::UpdateKind U, bool Momentum, class scalar_t>
__device__ __forceinline__ double step_chunk(const ChunkView& c, const StepScalars& s) {
  using T = compute_t<scalar_t>;
  const TensorRecord& t = *c.tensor;
  const auto map = core::make_map<K, T>(t.beta, s.degree);
  const double mean = s.normalize ? *t.metric_mean : 1.0;
  core::ElementStep<T> e;
  e.transform.weight_decay = static_cast<T>(s.weight_decay);
  e.transform.momentum = static_cast<T>(s.momentum);
  e.transform.one_minus_dampening = static_cast<T>(s.one_minus_dampening);
  e.transform.nesterov = s.nesterov;
  e.transform.maximize = s.maximize;
  e.scale = static_cast<T>(core::step_scale(read_lr(s), mean, s.normalize));
  e.unscale = s.grad_scale != nullptr;
  e.grad_scale = e.unscale ? static_cast<T>(*s.grad_scale) : T(1);
  e.first_step = Momentum && *t.step == 0.0f;

  scalar_t* __restrict__ x = global_ptr(static_cast<scalar_t*>(t.param) + c.begin);
  scalar_t* __restrict__ g = global_ptr(static_cast<scalar_t*>(t.grad) + c.begin);
  scalar_t* __restrict__ b =
      Momentum ? global_ptr(static_cast<scalar_t*>(t.momentum_buffer) + c.begin) : nullptr;
  const bool track = s.normalize;
  double sum = 0.0;

  // One element: compute, round once to the element type, and count the
  // inverse metric of the value as stored (the mean the next step uses).
  auto update = [&](scalar_t& xs, scalar_t& gs, scalar_t& bs) {
    T xv = static_cast<T>(xs);
    T gv = static_cast<T>(gs);
    T bv = Momentum ? static_cast<T>(bs) : T(0);
    core::step_element<U, Momentum>(map, xv, gv, bv, e);
    xs = static_cast<scalar_t>(xv);
    gs = static_cast<scalar_t>(gv);
    if (Momentum) bs = static_cast<scalar_t>(bv);
    if (track) sum += static_cast<double>(map.inv_metric(static_cast<T>(xs)));
  };

  for_each_in_chunk<scalar_t>(
      c.count, t.vectorized != 0,
      [&](int i) {
        Pack<scalar_t> xp = load_pack(x, i);
        Pack<scalar_t> gp = load_pack(g, i);
        Pack<scalar_t> bp;
        if (Momentum) bp = load_pack(b, i);
#pragma unroll
        for (int j = 0; j < Pack<scalar_t>::kSize; ++j) update(xp.v[j], gp.v[j], bp.v[j]);
        store_pack(x, i, xp);
        if (e.unscale) store_pack(g, i, gp);
        if (Momentum) store_pack(b, i, bp);
      },
      [&](int i) {
        scalar_t xs = x[i];
        scalar_t gs = g[i];
        scalar_t bs = Momentum ? b[i] : scalar_t(0);
        update(xs, gs, bs);
        x[i] = xs;
        if (e.unscale) g[i] = gs;
        if (Momentum) b[i] = bs;
      });
  return sum;
}

/// This thread's share of Σ 1/φ''(θ) over the chunk (the stale-means pass).
template <core::MirrorKind K, class scalar_t>
__device__ __forceinline__ double inv_metric_chunk(const ChunkView& c, const StepScalars& s) {
  using T = compute_t<scalar_t>;
  const TensorRecord& t = *c.tensor;
  const auto map = core::make_map<K, T>(t.beta, s.degree);
  const scalar_t* __restrict__ x = global_ptr(static_cast<const scalar_t*>(t.param) + c.begin);
  double sum = 0.0;
  for_each_in_chunk<scalar_t>(
      c.count, t.vectorized != 0,
      [&](int i) {
        const Pack<scalar_t> xp = load_pack(x, i);
#pragma unroll
        for (int j = 0; j < Pack<scalar_t>::kSize; ++j) {
          sum += static_cast<double>(map.inv_metric(static_cast<T>(xp.v[j])));
        }
      },
      [&](int i) { sum += static_cast<double>(map.inv_metric(static_cast<T>(x[i]))); });
  return sum;
}

}  // namespace mirrorflow::cuda
