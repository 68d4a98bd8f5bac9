// Tensor checks of the mirror-descent operator: one place for every backend.
#include "step_call.h"

#include <ATen/MemoryOverlap.h>
#include <c10/util/Exception.h>

#include <ostream>
#include <string>

namespace mirrorflow::detail {
namespace {

constexpr const char* kOp = "mirror_descent_step_: ";
constexpr std::size_t kNoIndex = static_cast<std::size_t>(-1);

// A tensor's name in the messages ("grads[3]"), written out only when a check
// fails: the checks run for every tensor of every call, and building the
// strings each time cost more than the checks.
struct Name {
  const char* list;
  std::size_t index = kNoIndex;
  const char* note = "";
};

std::ostream& operator<<(std::ostream& out, const Name& name) {
  out << name.list;
  if (name.index != kNoIndex) out << "[" << name.index << "]";
  return out << name.note;
}

void check_scalar_tensor(const at::Tensor& t, const Name& name, const at::Device& device,
                         std::optional<at::ScalarType> dtype) {
  TORCH_CHECK(t.defined(), kOp, name, " is undefined");
  TORCH_CHECK(t.numel() == 1, kOp, name, " must hold exactly one element, got ", t.numel());
  TORCH_CHECK(t.device() == device, kOp, name, " must be on the parameters' device ", device,
              ", got ", t.device());
  if (dtype) {
    TORCH_CHECK(t.scalar_type() == *dtype, kOp, name, " must have dtype ", *dtype, ", got ",
                t.scalar_type());
  } else {
    TORCH_CHECK(at::isFloatingType(t.scalar_type()), kOp, name,
                " must have a floating dtype, got ", t.scalar_type());
  }
}

void check_like_param(const at::Tensor& t, const at::Tensor& p, const Name& name) {
  const Name param{"params", name.index};
  TORCH_CHECK(t.defined(), kOp, name, " is undefined");
  TORCH_CHECK(t.layout() == c10::kStrided, kOp, name, " is sparse (layout ", t.layout(),
              "); MirrorDescent supports dense gradients only");
  TORCH_CHECK(t.device() == p.device(), kOp, name, " is on ", t.device(), " but ", param,
              " is on ", p.device());
  TORCH_CHECK(t.scalar_type() == p.scalar_type(), kOp, name, " has dtype ", t.scalar_type(),
              " but ", param, " has dtype ", p.scalar_type());
  TORCH_CHECK(t.sizes() == p.sizes(), kOp, name, " has shape ", t.sizes(), " but ", param,
              " has shape ", p.sizes());
}

// A tensor the step writes must not have elements sharing memory.
void check_writable(const at::Tensor& t, const Name& name) {
  TORCH_CHECK(at::has_internal_overlap(t) != at::MemOverlap::Yes, kOp, name,
              " has elements that share memory (a view made by expand or as_strided, strides ",
              t.strides(), "); the step writes every element, so it needs a tensor whose "
              "elements have memory of their own (.clone())");
}

}  // namespace

void bump_versions(const StepCall& call) {
  auto bump = [](const std::vector<at::Tensor>& tensors) {
    for (const auto& t : tensors) {
      if (t.defined()) t.unsafeGetTensorImpl()->bump_version();
    }
  };
  bump(call.params);
  if (call.grad_scale) bump(call.grads);
  bump(call.momentum_buffers);
  bump(call.steps);
  bump(call.metric_means);
}

double layer_beta(const StepOptions& options, const at::Tensor& p) {
  return core::layer_beta(options.beta, options.beta_scaling, p.numel(), p.dim(),
                          p.dim() > 0 ? p.size(0) : 1);
}

void check_step_tensors(at::TensorList params, at::TensorList grads,
                        at::TensorList momentum_buffers, at::TensorList steps,
                        at::TensorList metric_means, std::size_t n_valid, bool has_momentum,
                        bool normalize, const std::optional<at::Tensor>& lr_tensor,
                        const std::optional<at::Tensor>& grad_scale,
                        const std::optional<at::Tensor>& found_inf) {
  const std::size_t n = params.size();
  TORCH_CHECK(grads.size() == n, kOp, "got ", n, " params but ", grads.size(), " grads");
  const std::size_t n_state = has_momentum ? n : 0;
  TORCH_CHECK(momentum_buffers.size() == n_state, kOp, "momentum_buffers must hold ", n_state,
              " tensors (one per parameter when momentum != 0, else none), got ",
              momentum_buffers.size());
  TORCH_CHECK(steps.size() == n_state, kOp, "steps must hold ", n_state,
              " tensors (one per parameter when momentum != 0, else none), got ", steps.size());
  const std::size_t n_means = normalize ? n : 0;
  TORCH_CHECK(metric_means.size() == n_means, kOp, "metric_means must hold ", n_means,
              " tensors (one per parameter when normalize=True, else none), got ",
              metric_means.size());
  TORCH_CHECK(n_valid == n_means, kOp, "metric_means_valid must hold ", n_means,
              " flags, got ", n_valid);
  if (n == 0) return;
  const at::Device device = params[0].device();
  for (std::size_t i = 0; i < n; ++i) {
    const at::Tensor& p = params[i];
    const Name param{"params", i};
    TORCH_CHECK(p.defined(), kOp, param, " is undefined");
    TORCH_CHECK(p.device() == device, kOp,
                "all tensors of one call must be on one device: params[0] is on ", device,
                " but ", param, " is on ", p.device());
    TORCH_CHECK(!p.is_complex(), kOp, param, " is complex (", p.scalar_type(),
                "); MirrorDescent supports real floating-point parameters only");
    TORCH_CHECK(at::isFloatingType(p.scalar_type()), kOp, param,
                " must have a floating-point dtype, got ", p.scalar_type());
    TORCH_CHECK(p.layout() == c10::kStrided, kOp, param, " is sparse (layout ", p.layout(),
                "); MirrorDescent supports dense parameters only");
    check_writable(p, param);
    check_like_param(grads[i], p, Name{"grads", i});
    if (grad_scale) check_writable(grads[i], Name{"grads", i, " (unscaled in place)"});
    if (has_momentum) {
      check_like_param(momentum_buffers[i], p, Name{"momentum_buffers", i});
      check_writable(momentum_buffers[i], Name{"momentum_buffers", i});
      check_scalar_tensor(steps[i], Name{"steps", i}, device, at::kFloat);
    }
    if (normalize) {
      check_scalar_tensor(metric_means[i], Name{"metric_means", i}, device, at::kDouble);
    }
  }
  if (lr_tensor) check_scalar_tensor(*lr_tensor, Name{"lr_tensor"}, device, std::nullopt);
  if (grad_scale) check_scalar_tensor(*grad_scale, Name{"grad_scale"}, device, at::kFloat);
  if (found_inf) check_scalar_tensor(*found_inf, Name{"found_inf"}, device, at::kFloat);
}

StepCall make_step_call(at::TensorList params, at::TensorList grads,
                        at::TensorList momentum_buffers, at::TensorList steps,
                        at::TensorList metric_means, const std::vector<bool>& metric_means_valid,
                        c10::string_view mirror, double beta, double degree,
                        c10::string_view update, bool normalize, c10::string_view beta_scaling,
                        double lr, double momentum, double dampening, bool nesterov,
                        double weight_decay, bool maximize,
                        const std::optional<at::Tensor>& lr_tensor,
                        const std::optional<at::Tensor>& grad_scale,
                        const std::optional<at::Tensor>& found_inf) {
  StepCall call;
  call.options = make_step_options(std::string(mirror), beta, degree, std::string(update),
                                   normalize, std::string(beta_scaling), lr, momentum,
                                   dampening, nesterov, weight_decay, maximize);
  check_step_tensors(params, grads, momentum_buffers, steps, metric_means,
                     metric_means_valid.size(), momentum != 0, normalize, lr_tensor, grad_scale,
                     found_inf);
  call.params.assign(params.begin(), params.end());
  call.grads.assign(grads.begin(), grads.end());
  call.momentum_buffers.assign(momentum_buffers.begin(), momentum_buffers.end());
  call.steps.assign(steps.begin(), steps.end());
  call.metric_means.assign(metric_means.begin(), metric_means.end());
  call.metric_means_valid = metric_means_valid;
  call.lr_tensor = lr_tensor;
  call.grad_scale = grad_scale;
  call.found_inf = found_inf;
  return call;
}

}  // namespace mirrorflow::detail
