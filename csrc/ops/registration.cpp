// The operator schemas (written once) and the backend-independent kernels:
// Meta (shapes only, for torch.compile and opcheck) and the option check.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "map_eval_call.h"
#include "step_call.h"

namespace mirrorflow {
namespace {

void mirror_descent_step_meta(at::TensorList params, at::TensorList grads,
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
  detail::make_step_call(params, grads, momentum_buffers, steps, metric_means, valid, mirror,
                         beta, degree, update, normalize, beta_scaling, lr, momentum, dampening,
                         nesterov, weight_decay, maximize, lr_tensor, grad_scale, found_inf);
}

at::Tensor map_eval_meta(const at::Tensor& x, c10::string_view mirror, double beta,
                         double degree, c10::string_view function) {
  detail::make_map_eval_call(x, mirror, beta, degree, function);
  return at::empty_like(x);
}

void check_options(c10::string_view mirror, double beta, double degree, c10::string_view update,
                   bool normalize, c10::string_view beta_scaling, double lr, double momentum,
                   double dampening, bool nesterov, double weight_decay, bool maximize) {
  make_step_options(std::string(mirror), beta, degree, std::string(update), normalize,
                    std::string(beta_scaling), lr, momentum, dampening, nesterov, weight_decay,
                    maximize);
}

}  // namespace

void mirror_descent_step_(at::TensorList params, at::TensorList grads,
                          at::TensorList momentum_buffers, at::TensorList steps,
                          at::TensorList metric_means,
                          const std::vector<bool>& metric_means_valid,
                          const StepOptions& o, const std::optional<at::Tensor>& lr_tensor,
                          const std::optional<at::Tensor>& grad_scale,
                          const std::optional<at::Tensor>& found_inf) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mirrorflow::mirror_descent_step_", "")
                       .typed<void(at::TensorList, at::TensorList, at::TensorList,
                                   at::TensorList, at::TensorList, c10::List<bool>,
                                   c10::string_view, double, double, c10::string_view, bool,
                                   c10::string_view, double, double, double, bool, double, bool,
                                   const std::optional<at::Tensor>&,
                                   const std::optional<at::Tensor>&,
                                   const std::optional<at::Tensor>&)>();
  c10::List<bool> valid;
  for (bool v : metric_means_valid) valid.push_back(v);
  const std::string mirror = mirror_name(o.mirror);
  const std::string update = update_name(o.update);
  const std::string scaling = beta_scaling_name(o.beta_scaling);
  op.call(params, grads, momentum_buffers, steps, metric_means, valid, mirror, o.beta, o.degree,
          update, o.normalize, scaling, o.lr, o.momentum, o.dampening, o.nesterov,
          o.weight_decay, o.maximize, lr_tensor, grad_scale, found_inf);
}

at::Tensor map_eval(const at::Tensor& x, const std::string& mirror, double beta, double degree,
                    const std::string& function) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mirrorflow::map_eval", "")
                       .typed<at::Tensor(const at::Tensor&, c10::string_view, double, double,
                                         c10::string_view)>();
  return op.call(x, mirror, beta, degree, function);
}

bool cuda_built() {
#ifdef MIRRORFLOW_WITH_CUDA
  return true;
#else
  return false;
#endif
}

std::string cuda_architectures() {
#ifdef MIRRORFLOW_CUDA_ARCHITECTURES
  return MIRRORFLOW_CUDA_ARCHITECTURES;
#else
  return "";
#endif
}

}  // namespace mirrorflow

TORCH_LIBRARY(mirrorflow, m) {
  m.def(
      "mirror_descent_step_(Tensor(a!)[] params, Tensor(b!)[] grads, "
      "Tensor(c!)[] momentum_buffers, Tensor(d!)[] steps, Tensor(e!)[] metric_means, "
      "bool[] metric_means_valid, *, str mirror, float beta, float degree, str update, "
      "bool normalize, str beta_scaling, float lr, float momentum, float dampening, "
      "bool nesterov, float weight_decay, bool maximize, Tensor? lr_tensor=None, "
      "Tensor? grad_scale=None, Tensor? found_inf=None) -> ()");
  m.def(
      "map_eval(Tensor x, str mirror, float beta, float degree, str function) -> Tensor");
  m.def(
      "check_options(str mirror, float beta, float degree, str update, bool normalize, "
      "str beta_scaling, float lr, float momentum, float dampening, bool nesterov, "
      "float weight_decay, bool maximize) -> ()",
      &mirrorflow::check_options);
}

TORCH_LIBRARY_IMPL(mirrorflow, Meta, m) {
  m.impl("mirror_descent_step_", &mirrorflow::mirror_descent_step_meta);
  m.impl("map_eval", &mirrorflow::map_eval_meta);
}

// A sparse tensor among the arguments sends the call here; the checks then
// refuse it with a message naming the tensor (rather than the dispatcher's
// "could not run with arguments from the SparseCPU backend").
TORCH_LIBRARY_IMPL(mirrorflow, SparseCPU, m) {
  m.impl("mirror_descent_step_", &mirrorflow::mirror_descent_step_meta);
}
TORCH_LIBRARY_IMPL(mirrorflow, SparseCUDA, m) {
  m.impl("mirror_descent_step_", &mirrorflow::mirror_descent_step_meta);
}
