// The CUDA implementation of mirrorflow::mirror_descent_step_ and
// mirrorflow::map_eval (registered for the CUDA dispatch key).
//
// Host code only: it checks the call with make_step_call (the checks every
// backend shares), writes one record per tensor and one per work item,
// uploads them with one asynchronous copy per (device, dtype) group, and
// launches the kernels of step_launch.h on the current stream. Scalars that
// live in tensors (lr_tensor, grad_scale, found_inf, steps, metric_means) are
// read by the kernels, so nothing here waits for the device and a step can be
// captured in a CUDA graph.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <vector>

#include "ops/flat_view.h"
#include "ops/map_eval_call.h"
#include "ops/step_call.h"
#include "step_launch.h"

namespace mirrorflow::cuda {
namespace {

using detail::FlatView;

bool has_kernel_dtype(at::ScalarType t) {
  return t == at::kDouble || t == at::kFloat || t == at::kBFloat16 || t == at::kHalf;
}

DType dtype_of(at::ScalarType t) {
  switch (t) {
    case at::kDouble:
      return DType::Float64;
    case at::kFloat:
      return DType::Float32;
    case at::kBFloat16:
      return DType::BFloat16;
    default:
      return DType::Float16;
  }
}

bool aligned(const void* p) {
  return reinterpret_cast<std::uintptr_t>(p) % kVectorBytes == 0;
}

bool capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  C10_CUDA_CHECK(cudaStreamIsCapturing(stream, &status));
  return status != cudaStreamCaptureStatusNone;
}

// Pinned host memory for the records of a call that is being captured into a
// CUDA graph: every replay copies from it again, so it is never freed (tens
// of bytes per tensor, once per capture). Allocated outside PyTorch's caching
// host allocator, whose event bookkeeping is not meant for capture, in the
// relaxed capture mode that allows the allocation.
void* pinned_for_replays(std::size_t bytes) {
  const c10::cuda::CUDAStreamCaptureModeGuard relaxed(cudaStreamCaptureModeRelaxed);
  void* host = nullptr;
  C10_CUDA_CHECK(cudaHostAlloc(&host, bytes, cudaHostAllocDefault));
  return host;
}

// The records of one (device, dtype) group, built on the host.
struct GroupPlan {
  at::ScalarType dtype;
  std::vector<TensorRecord> tensors;
  std::vector<WorkItem> items;
  std::vector<WorkItem> stale_items;
};

template <class Record>
std::size_t bytes_of(const std::vector<Record>& v) {
  return v.size() * sizeof(Record);
}

// Builds the records of the tensors `indices` of the call; the flat views it
// makes (copies of tensors the kernels cannot walk directly) go to `views`.
GroupPlan plan_group(const detail::StepCall& call, at::ScalarType dtype,
                     const std::vector<std::size_t>& indices, std::vector<FlatView>& views) {
  const StepOptions& o = call.options;
  const bool has_momentum = o.momentum != 0;
  GroupPlan plan{dtype, {}, {}, {}};
  for (std::size_t k = 0; k < indices.size(); ++k) {
    const std::size_t i = indices[k];
    const at::Tensor& p = call.params[i];
    TensorRecord r{};
    r.numel = p.numel();
    r.beta = detail::layer_beta(o, p);
    r.first_item = static_cast<int64_t>(plan.items.size());
    if (has_momentum) r.step = call.steps[i].data_ptr<float>();
    if (o.normalize) {
      r.metric_mean = call.metric_means[i].data_ptr<double>();
      r.stale = call.metric_means_valid[i] ? 0 : 1;
    }
    if (r.numel > 0) {
      FlatView pv = detail::param_view(p);
      const at::Tensor layout = pv.flat;
      FlatView gv = detail::view_like(call.grads[i], layout, call.grad_scale.has_value());
      r.param = pv.flat.data_ptr();
      r.grad = gv.flat.data_ptr();
      bool vectorized = aligned(r.param) && aligned(r.grad);
      views.push_back(std::move(pv));
      views.push_back(std::move(gv));
      if (has_momentum) {
        FlatView bv = detail::view_like(call.momentum_buffers[i], layout);
        r.momentum_buffer = bv.flat.data_ptr();
        vectorized = vectorized && aligned(r.momentum_buffer);
        views.push_back(std::move(bv));
      }
      r.vectorized = vectorized ? 1 : 0;
      const int64_t chunks = (r.numel + kChunk - 1) / kChunk;
      for (int64_t c = 0; c < chunks; ++c) {
        const WorkItem item{static_cast<int32_t>(k), static_cast<int32_t>(c)};
        plan.items.push_back(item);
        if (r.stale) plan.stale_items.push_back(item);
      }
    }
    plan.tensors.push_back(r);
  }
  // One block per work item: the grid's x dimension holds up to 2^31 − 1.
  TORCH_CHECK(plan.items.size() < static_cast<std::size_t>(std::numeric_limits<int32_t>::max()),
              "mirror_descent_step_: ", plan.items.size(), " chunks of ", kChunk,
              " elements in one call exceed the CUDA grid; split the parameters into groups");
  return plan;
}

template <class Record>
std::uint8_t* append(std::uint8_t* out, const std::vector<Record>& records) {
  if (!records.empty()) std::memcpy(out, records.data(), bytes_of(records));
  return out + bytes_of(records);
}

void write_records(const GroupPlan& plan, void* out) {
  auto* bytes = static_cast<std::uint8_t*>(out);
  bytes = append(bytes, plan.tensors);
  bytes = append(bytes, plan.items);
  append(bytes, plan.stale_items);
}

// Uploads the plan's records to `device` with one asynchronous copy from
// pinned memory into a new device buffer, which also holds `extra_bytes`
// after them (the partial sums). The caller keeps the buffer alive until the
// launches are enqueued; the caching allocator orders its reuse after them.
at::Tensor upload(const GroupPlan& plan, std::size_t extra_bytes, const at::Device& device,
                  cudaStream_t stream) {
  const std::size_t total =
      bytes_of(plan.tensors) + bytes_of(plan.items) + bytes_of(plan.stale_items);
  at::Tensor buffer = at::empty({static_cast<int64_t>(total + extra_bytes)},
                                at::TensorOptions().dtype(at::kByte).device(device));
  if (capturing(stream)) {
    void* host = pinned_for_replays(total);
    write_records(plan, host);
    C10_CUDA_CHECK(cudaMemcpyAsync(buffer.data_ptr(), host, total, cudaMemcpyHostToDevice,
                                   stream));
  } else {
    at::Tensor staging = at::empty({static_cast<int64_t>(total)},
                                   at::TensorOptions().dtype(at::kByte).pinned_memory(true));
    write_records(plan, staging.data_ptr());
    // non_blocking: the host allocator keeps the staging block until the copy is done
    buffer.narrow(0, 0, static_cast<int64_t>(total)).copy_(staging, /*non_blocking=*/true);
  }
  return buffer;
}

template <class F>
void with_map(core::MirrorKind mirror, F&& f) {
  switch (mirror) {
    case core::MirrorKind::Euclidean:
      f(std::integral_constant<core::MirrorKind, core::MirrorKind::Euclidean>{});
      return;
    case core::MirrorKind::Hyperbolic:
      f(std::integral_constant<core::MirrorKind, core::MirrorKind::Hyperbolic>{});
      return;
    case core::MirrorKind::Power:
      f(std::integral_constant<core::MirrorKind, core::MirrorKind::Power>{});
      return;
  }
}

// Enqueues the kernels of one group (step_launch.h: at most four launches).
void launch_group(const detail::StepCall& call, const GroupPlan& plan, const StepScalars& scalars,
                  const at::Device& device, cudaStream_t stream) {
  const StepOptions& o = call.options;
  const bool has_momentum = o.momentum != 0;
  if (plan.items.empty() && !has_momentum) return;
  const std::size_t records_bytes =
      bytes_of(plan.tensors) + bytes_of(plan.items) + bytes_of(plan.stale_items);
  const std::size_t partial_bytes = o.normalize ? plan.items.size() * sizeof(double) : 0;
  const at::Tensor records = upload(plan, partial_bytes, device, stream);
  auto* base = static_cast<std::uint8_t*>(records.data_ptr());
  StepLaunch launch{};
  launch.mirror = o.mirror;
  launch.update = o.update;
  launch.momentum = has_momentum;
  launch.dtype = dtype_of(plan.dtype);
  launch.tensors = reinterpret_cast<const TensorRecord*>(base);
  launch.n_tensors = static_cast<int32_t>(plan.tensors.size());
  launch.items = reinterpret_cast<const WorkItem*>(base + bytes_of(plan.tensors));
  launch.n_items = static_cast<int64_t>(plan.items.size());
  launch.stale_items = reinterpret_cast<const WorkItem*>(base + bytes_of(plan.tensors) +
                                                         bytes_of(plan.items));
  launch.n_stale_items = static_cast<int64_t>(plan.stale_items.size());
  // Records are 8-byte multiples, so the partial sums after them are aligned.
  launch.partials = partial_bytes > 0 ? reinterpret_cast<double*>(base + records_bytes) : nullptr;
  launch.scalars = scalars;

  with_map(o.mirror, [&](auto map_tag) {
    constexpr core::MirrorKind K = decltype(map_tag)::value;
    if (launch.n_stale_items > 0) {
      launch_stale_means<K>(launch, stream);
      launch_finalize(launch, FinalizeMode::StaleMeans, stream);
    }
    launch_mirror_step<K>(launch, stream);
  });
  if (o.normalize || has_momentum) launch_finalize(launch, FinalizeMode::AfterStep, stream);
}

void mirror_descent_step_cuda(at::TensorList params, at::TensorList grads,
                              at::TensorList momentum_buffers, at::TensorList steps,
                              at::TensorList metric_means, c10::List<bool> metric_means_valid,
                              c10::string_view mirror, double beta, double degree,
                              c10::string_view update, bool normalize,
                              c10::string_view beta_scaling, double lr, double momentum,
                              double dampening, bool nesterov, double weight_decay,
                              bool maximize, const std::optional<at::Tensor>& lr_tensor,
                              const std::optional<at::Tensor>& grad_scale,
                              const std::optional<at::Tensor>& found_inf) {
  std::vector<bool> valid(metric_means_valid.begin(), metric_means_valid.end());
  const detail::StepCall call = detail::make_step_call(
      params, grads, momentum_buffers, steps, metric_means, valid, mirror, beta, degree, update,
      normalize, beta_scaling, lr, momentum, dampening, nesterov, weight_decay, maximize,
      lr_tensor, grad_scale, found_inf);
  if (call.params.empty()) return;
  for (std::size_t i = 0; i < call.params.size(); ++i) {
    TORCH_CHECK(has_kernel_dtype(call.params[i].scalar_type()), "mirror_descent_step_: params[",
                i, "] has dtype ", call.params[i].scalar_type(),
                "; the CUDA kernels support float64, float32, bfloat16 and float16");
  }
  const at::Device device = call.params[0].device();
  const c10::cuda::CUDAGuard guard(device);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream(device.index()).stream();
  const StepOptions& o = call.options;

  StepScalars scalars{};
  scalars.lr = o.lr;
  at::Tensor lr_on_device;  // lr_tensor, in a dtype the kernels read
  if (call.lr_tensor) {
    lr_on_device = has_kernel_dtype(call.lr_tensor->scalar_type())
                       ? *call.lr_tensor
                       : call.lr_tensor->to(at::kDouble);
    scalars.lr_tensor = lr_on_device.data_ptr();
    scalars.lr_dtype = dtype_of(lr_on_device.scalar_type());
  }
  scalars.grad_scale = call.grad_scale ? call.grad_scale->data_ptr<float>() : nullptr;
  scalars.found_inf = call.found_inf ? call.found_inf->data_ptr<float>() : nullptr;
  scalars.weight_decay = o.weight_decay;
  scalars.momentum = o.momentum;
  scalars.one_minus_dampening = 1.0 - o.dampening;
  scalars.degree = o.degree;
  scalars.nesterov = o.nesterov;
  scalars.maximize = o.maximize;
  scalars.normalize = o.normalize;

  // Everything is planned (and checked) before the first launch.
  std::map<at::ScalarType, std::vector<std::size_t>> by_dtype;
  for (std::size_t i = 0; i < call.params.size(); ++i) {
    by_dtype[call.params[i].scalar_type()].push_back(i);
  }
  std::vector<FlatView> views;
  std::vector<GroupPlan> plans;
  for (const auto& [dtype, indices] : by_dtype) {
    plans.push_back(plan_group(call, dtype, indices, views));
  }
  for (const GroupPlan& plan : plans) launch_group(call, plan, scalars, device, stream);
  for (const FlatView& v : views) detail::write_back(v);
  detail::bump_versions(call);
}

at::Tensor map_eval_cuda(const at::Tensor& x, c10::string_view mirror, double beta,
                         double degree, c10::string_view function) {
  const detail::MapEvalCall call = detail::make_map_eval_call(x, mirror, beta, degree, function);
  TORCH_CHECK(has_kernel_dtype(x.scalar_type()), "map_eval: x has dtype ", x.scalar_type(),
              "; the CUDA kernels support float64, float32, bfloat16 and float16");
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor in = x.contiguous();
  at::Tensor out = at::empty_like(in);
  launch_map_eval(in.data_ptr(), out.data_ptr(), in.numel(), dtype_of(in.scalar_type()),
                  call.mirror, call.beta, call.degree, static_cast<int>(call.function),
                  at::cuda::getCurrentCUDAStream(x.device().index()).stream());
  return out;
}

}  // namespace
}  // namespace mirrorflow::cuda

TORCH_LIBRARY_IMPL(mirrorflow, CUDA, m) {
  m.impl("mirror_descent_step_", &mirrorflow::cuda::mirror_descent_step_cuda);
  m.impl("map_eval", &mirrorflow::cuda::map_eval_cuda);
}
