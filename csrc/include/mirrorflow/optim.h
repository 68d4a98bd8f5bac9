/// mirrorflow::MirrorDescent, a torch::optim::Optimizer (MATH.md §2).
///
///   auto opt = mirrorflow::MirrorDescent(model->parameters(),
///       mirrorflow::MirrorDescentOptions(0.1).mirror("hyperbolic").beta(0.01));
///
/// Parameters are grouped by (device, dtype) and each group is updated by one
/// call of the operator mirrorflow::mirror_descent_step_ (ops.h); the
/// optimizer itself holds no update math.
#pragma once

#include <torch/optim/optimizer.h>
#include <torch/optim/serialize.h>
#include <torch/serialize/archive.h>

#include <string>
#include <vector>

#include "mirrorflow/ops.h"

namespace mirrorflow {

/// Hyperparameters, builder style like torch::optim::SGDOptions. See the
/// Python class mirrorflow.MirrorDescent for their meaning.
struct MirrorDescentOptions
    : public torch::optim::OptimizerCloneableOptions<MirrorDescentOptions> {
  /// The default learning rate is the Python class's, 1e-3.
  MirrorDescentOptions(double lr = 1e-3);  // NOLINT(google-explicit-constructor)
  TORCH_ARG(double, lr);
  /// "euclidean", "hyperbolic" or "power".
  TORCH_ARG(std::string, mirror) = "euclidean";
  /// β of the hyperbolic and power maps.
  TORCH_ARG(double, beta) = 1.0;
  /// L of the power map.
  TORCH_ARG(double, degree) = 3.0;
  /// "metric" (θ − ηM⁻¹g) or "dual" (∇φ*(∇φ(θ) − ηg)).
  TORCH_ARG(std::string, update) = "metric";
  /// Divide the inverse metric by its mean over each tensor.
  TORCH_ARG(bool, normalize) = false;
  /// "none" or "fan_in" (βₗ = β/√fan_in).
  TORCH_ARG(std::string, beta_scaling) = "none";
  TORCH_ARG(double, momentum) = 0;
  TORCH_ARG(double, dampening) = 0;
  TORCH_ARG(bool, nesterov) = false;
  TORCH_ARG(double, weight_decay) = 0;
  TORCH_ARG(bool, maximize) = false;

 public:
  /// The options checked and parsed (throws c10::ValueError when invalid).
  StepOptions validated() const;

  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
  friend bool operator==(const MirrorDescentOptions& lhs, const MirrorDescentOptions& rhs);
  double get_lr() const override;
  void set_lr(const double lr) override;
};

/// Per-parameter state. `momentum_buffer` (the parameter's dtype) and `step`
/// (float32, counts the steps taken with momentum) are saved; the cached mean
/// of the inverse metric is not (it is recomputed after a load). The mean is
/// reused while the parameter's version counter and the map it was computed
/// for (`metric_mean_map`: mirror, β, degree, beta_scaling) are unchanged.
struct MirrorDescentParamState
    : public torch::optim::OptimizerCloneableParamState<MirrorDescentParamState> {
  TORCH_ARG(torch::Tensor, momentum_buffer);
  TORCH_ARG(torch::Tensor, step);
  TORCH_ARG(torch::Tensor, metric_mean);
  TORCH_ARG(int64_t, metric_mean_version) = -1;
  TORCH_ARG(std::string, metric_mean_map);

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
  friend bool operator==(const MirrorDescentParamState& lhs, const MirrorDescentParamState& rhs);
};

class MirrorDescent : public torch::optim::Optimizer {
 public:
  explicit MirrorDescent(const std::vector<torch::optim::OptimizerParamGroup>& param_groups,
                         MirrorDescentOptions defaults);
  explicit MirrorDescent(std::vector<torch::Tensor> params, MirrorDescentOptions defaults);

  /// One step of every group. Every group's options and every call's
  /// arguments are checked before any parameter changes, so a refused step
  /// (c10::ValueError for options, c10::Error for tensors) changes nothing.
  torch::Tensor step(LossClosure closure = nullptr) override;

  /// Checks the group's options (when given) before adding it. (Called through
  /// a torch::optim::Optimizer reference, whose add_param_group is not virtual,
  /// the group is added unchecked; step() then refuses it.)
  void add_param_group(const torch::optim::OptimizerParamGroup& param_group);

  /// Forgets the stored per-tensor means of the inverse metric (normalize);
  /// the next step recomputes them. Needed only after writes the version
  /// counter does not see: through `p.data()` or `p.set_data()`.
  void invalidate_metric_means();

  void save(torch::serialize::OutputArchive& archive) const override;
  /// Loads options and state; options that fail MirrorDescentOptions::validated()
  /// are refused (c10::ValueError) and the optimizer is left as it was.
  void load(torch::serialize::InputArchive& archive) override;

 private:
  template <typename Self, typename Archive>
  static void serialize(Self& self, Archive& archive) {
    _TORCH_OPTIM_SERIALIZE_WITH_TEMPLATE_ARG(MirrorDescent);
  }
};

}  // namespace mirrorflow
