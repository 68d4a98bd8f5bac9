/// The operators of mirrorflow (MATH.md §2), callable from C++.
///
/// They are registered with the PyTorch dispatcher under the namespace
/// `mirrorflow` (see csrc/ops/registration.cpp), so Python
/// (`torch.ops.mirrorflow.*`), C++ and torch.compile all reach the same
/// kernels. The optimizers in optim.h are thin users of these.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <optional>
#include <string>
#include <vector>

#include "mirrorflow/core/mirror_kind.h"

namespace mirrorflow {

/// Hyperparameters of one mirror-descent step, validated.
struct StepOptions {
  core::MirrorKind mirror = core::MirrorKind::Euclidean;
  double beta = 1.0;
  double degree = 3.0;
  core::UpdateKind update = core::UpdateKind::Metric;
  bool normalize = false;
  core::BetaScaling beta_scaling = core::BetaScaling::None;
  double lr = 0.0;
  double momentum = 0.0;
  double dampening = 0.0;
  bool nesterov = false;
  double weight_decay = 0.0;
  bool maximize = false;
};

/// Checks every hyperparameter and returns them parsed. This is the one
/// place where the rules live; it throws c10::ValueError (ValueError in
/// Python) naming the argument, the rule and the value.
StepOptions make_step_options(const std::string& mirror, double beta, double degree,
                              const std::string& update, bool normalize,
                              const std::string& beta_scaling, double lr, double momentum,
                              double dampening, bool nesterov, double weight_decay,
                              bool maximize);

/// One step over many tensors: `torch.ops.mirrorflow.mirror_descent_step_`.
///
/// - `momentum_buffers` and `steps` are empty when momentum is 0; otherwise one
///   per parameter: the buffer has the parameter's dtype, `steps[i]` is a
///   0-dim float32 tensor on the parameter's device counting the steps taken
///   (the buffer is initialised to the gradient when it is 0).
/// - `metric_means` is empty unless `normalize`; otherwise one 0-dim float64
///   tensor per parameter holding the mean of the inverse metric over that
///   parameter. When `metric_means_valid[i]` is true the stored mean is used
///   (it must be the mean of the parameter's current values), otherwise it is
///   recomputed first; either way, after the step it holds the mean of the new
///   values, so the next step can skip the extra pass.
/// - `lr_tensor` (one element, on the parameters' device) overrides `lr`.
/// - `grad_scale`/`found_inf` (float32, one element) are torch.amp.GradScaler's:
///   gradients are divided by `grad_scale` (and written back unscaled) and
///   nothing at all changes when `found_inf` is nonzero.
void mirror_descent_step_(at::TensorList params, at::TensorList grads,
                          at::TensorList momentum_buffers, at::TensorList steps,
                          at::TensorList metric_means,
                          const std::vector<bool>& metric_means_valid,
                          const StepOptions& options,
                          const std::optional<at::Tensor>& lr_tensor = std::nullopt,
                          const std::optional<at::Tensor>& grad_scale = std::nullopt,
                          const std::optional<at::Tensor>& found_inf = std::nullopt);

/// The checks of mirror_descent_step_ without the step
/// (`torch.ops.mirrorflow.check_step_arguments`): throws what the step would
/// throw for these arguments, and changes nothing. An optimizer whose step
/// makes several calls (several groups, devices or dtypes) checks them all
/// first, so that a refused step changes nothing. (The operator
/// `torch.ops.mirrorflow.check_step_calls` checks the tensors of several
/// calls in one dispatch: the lists of the calls one after the other, with
/// each call's size, momentum and normalize flags and optional lr_tensor,
/// grad_scale and found_inf; hyperparameters are not checked there.)
void check_step_arguments(at::TensorList params, at::TensorList grads,
                          at::TensorList momentum_buffers, at::TensorList steps,
                          at::TensorList metric_means,
                          const std::vector<bool>& metric_means_valid,
                          const StepOptions& options,
                          const std::optional<at::Tensor>& lr_tensor = std::nullopt,
                          const std::optional<at::Tensor>& grad_scale = std::nullopt,
                          const std::optional<at::Tensor>& found_inf = std::nullopt);

/// Evaluates one function of a mirror map elementwise (MATH.md §1):
/// `function` is one of "potential", "grad", "grad_conj", "inv_metric",
/// "conj_of_grad". Returns a new tensor of the same dtype.
at::Tensor map_eval(const at::Tensor& x, const std::string& mirror, double beta, double degree,
                    const std::string& function);

/// Human-readable names, e.g. "hyperbolic".
std::string mirror_name(core::MirrorKind kind);
std::string update_name(core::UpdateKind kind);
std::string beta_scaling_name(core::BetaScaling kind);

/// Whether this build contains the CUDA kernels, and for which architectures
/// (CMake's CUDA_ARCHITECTURES syntax, e.g. "80-real;90"; empty without them).
bool cuda_built();
std::string cuda_architectures();
/// The build's MIRRORFLOW_CUDA setting ("AUTO", "ON" or "OFF"): with AUTO the
/// kernels are built exactly when nvcc and a CUDA-enabled PyTorch were found.
std::string cuda_option();

/// How the CPU kernels prefetch, e.g. "L1, 4096 bytes ahead (2048 of a
/// normalising sum)", the default on Intel: docs/benchmarks.md.
std::string cpu_prefetch();

/// Sets how the CPU kernels prefetch in this process, for tuning on a
/// processor the defaults were not measured on (bench/tune_prefetch.py):
/// `into` "L1" or "L2"; how many bytes ahead of the update loop (steps without
/// a normalising sum) and of the sum loop (steps with one), each a multiple of
/// 64 from 0 (no prefetches) to 65536. Prefetches never change a result. On
/// bad input throws and changes nothing.
void set_cpu_prefetch(const std::string& into, int64_t ahead_bytes, int64_t sum_ahead_bytes);

/// Restores this processor's default prefetch plan.
void reset_cpu_prefetch();

}  // namespace mirrorflow
