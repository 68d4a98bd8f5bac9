// One call of the mirror-descent operator, as the backends see it, and the
// checks every backend runs before touching anything.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <optional>
#include <vector>

#include "mirrorflow/ops.h"

namespace mirrorflow::detail {

struct StepCall {
  StepOptions options;
  std::vector<at::Tensor> params;
  std::vector<at::Tensor> grads;
  std::vector<at::Tensor> momentum_buffers;  // empty without momentum
  std::vector<at::Tensor> steps;             // empty without momentum
  std::vector<at::Tensor> metric_means;      // empty unless normalize
  std::vector<bool> metric_means_valid;
  std::optional<at::Tensor> lr_tensor;
  std::optional<at::Tensor> grad_scale;
  std::optional<at::Tensor> found_inf;
};

/// Parses and validates the operator's arguments (hyperparameters through
/// make_step_options, then every tensor). Throws before anything is modified.
StepCall make_step_call(at::TensorList params, at::TensorList grads,
                        at::TensorList momentum_buffers, at::TensorList steps,
                        at::TensorList metric_means, const std::vector<bool>& metric_means_valid,
                        c10::string_view mirror, double beta, double degree,
                        c10::string_view update, bool normalize, c10::string_view beta_scaling,
                        double lr, double momentum, double dampening, bool nesterov,
                        double weight_decay, bool maximize,
                        const std::optional<at::Tensor>& lr_tensor,
                        const std::optional<at::Tensor>& grad_scale,
                        const std::optional<at::Tensor>& found_inf);

/// The tensor checks of make_step_call (every list's length, then every
/// tensor), for a call with or without momentum and normalize; `n_valid`: the
/// length of metric_means_valid.
void check_step_tensors(at::TensorList params, at::TensorList grads,
                        at::TensorList momentum_buffers, at::TensorList steps,
                        at::TensorList metric_means, std::size_t n_valid, bool has_momentum,
                        bool normalize, const std::optional<at::Tensor>& lr_tensor,
                        const std::optional<at::Tensor>& grad_scale,
                        const std::optional<at::Tensor>& found_inf);

/// Bumps the version counters of the tensors a completed step wrote, as
/// PyTorch's in-place ops do (autograd's checks and the optimizers' cache of
/// the mean inverse metric rely on them).
void bump_versions(const StepCall& call);

/// βₗ for parameter tensor `p` (MATH.md §2, beta_scaling).
double layer_beta(const StepOptions& options, const at::Tensor& p);

}  // namespace mirrorflow::detail
