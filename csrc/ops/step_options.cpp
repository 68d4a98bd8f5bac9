// The single home of the hyperparameter rules (MATH.md §1-§2).
#include <c10/util/Exception.h>

#include <cmath>
#include <string>

#include "mirrorflow/ops.h"

namespace mirrorflow {
namespace {

template <std::size_t N>
std::string quoted_list(const std::string_view (&names)[N]) {
  std::string out;
  for (std::size_t i = 0; i < N; ++i) {
    if (i) out += ", ";
    out += "'" + std::string(names[i]) + "'";
  }
  return out;
}

template <std::size_t N>
int parse_name(const std::string& arg, const std::string& value,
               const std::string_view (&names)[N]) {
  const int index = core::index_of(value, names);
  TORCH_CHECK_VALUE(index >= 0, "MirrorDescent: ", arg, " must be one of ", quoted_list(names),
                    ", got '", value, "'");
  return index;
}

}  // namespace

std::string mirror_name(core::MirrorKind kind) {
  return std::string(core::kMirrorNames[static_cast<int>(kind)]);
}
std::string update_name(core::UpdateKind kind) {
  return std::string(core::kUpdateNames[static_cast<int>(kind)]);
}
std::string beta_scaling_name(core::BetaScaling kind) {
  return std::string(core::kBetaScalingNames[static_cast<int>(kind)]);
}

StepOptions make_step_options(const std::string& mirror, double beta, double degree,
                              const std::string& update, bool normalize,
                              const std::string& beta_scaling, double lr, double momentum,
                              double dampening, bool nesterov, double weight_decay,
                              bool maximize) {
  StepOptions o;
  o.mirror = static_cast<core::MirrorKind>(parse_name("mirror", mirror, core::kMirrorNames));
  o.update = static_cast<core::UpdateKind>(parse_name("update", update, core::kUpdateNames));
  o.beta_scaling = static_cast<core::BetaScaling>(
      parse_name("beta_scaling", beta_scaling, core::kBetaScalingNames));

  // Written as !(x >= 0) so that NaN is refused too.
  TORCH_CHECK_VALUE(lr >= 0 && std::isfinite(lr),
                    "MirrorDescent: lr must be a finite number >= 0, got ", lr);
  TORCH_CHECK_VALUE(momentum >= 0 && std::isfinite(momentum),
                    "MirrorDescent: momentum must be a finite number >= 0, got ", momentum);
  TORCH_CHECK_VALUE(dampening >= 0 && dampening <= 1,
                    "MirrorDescent: dampening must be in [0, 1], got ", dampening);
  TORCH_CHECK_VALUE(weight_decay >= 0 && std::isfinite(weight_decay),
                    "MirrorDescent: weight_decay must be a finite number >= 0, got ",
                    weight_decay);
  TORCH_CHECK_VALUE(!nesterov || (momentum > 0 && dampening == 0),
                    "MirrorDescent: nesterov=True requires momentum > 0 and dampening = 0, got "
                    "momentum=",
                    momentum, " and dampening=", dampening);

  switch (o.mirror) {
    case core::MirrorKind::Euclidean:
      break;  // β and degree do not enter the Euclidean map
    case core::MirrorKind::Hyperbolic:
      TORCH_CHECK_VALUE(beta > 0 && std::isfinite(beta),
                        "MirrorDescent: beta must be > 0 (and finite) for mirror='hyperbolic', "
                        "got ",
                        beta);
      break;
    case core::MirrorKind::Power:
      TORCH_CHECK_VALUE(degree > 1 && std::isfinite(degree),
                        "MirrorDescent: degree must be > 1 (and finite) for mirror='power', got ",
                        degree);
      TORCH_CHECK_VALUE(beta >= 0 && std::isfinite(beta),
                        "MirrorDescent: beta must be >= 0 (and finite) for mirror='power', got ",
                        beta);
      TORCH_CHECK_VALUE(
          !(beta == 0 && degree > 2 && o.update == core::UpdateKind::Metric),
          "MirrorDescent: mirror='power' with beta=0 and degree > 2 has an infinite inverse "
          "metric at 0, so update='metric' needs beta > 0 (or use update='dual'), got beta=0 "
          "and degree=",
          degree);
      TORCH_CHECK_VALUE(
          !(beta == 0 && degree > 2 && normalize),
          "MirrorDescent: normalize=True divides by the mean inverse metric, which is infinite "
          "at 0 for mirror='power' with beta=0 and degree > 2; it needs beta > 0, got beta=0 "
          "and degree=",
          degree);
      break;
  }
  o.beta = beta;
  o.degree = degree;
  o.normalize = normalize;
  o.lr = lr;
  o.momentum = momentum;
  o.dampening = dampening;
  o.nesterov = nesterov;
  o.weight_decay = weight_decay;
  o.maximize = maximize;
  return o;
}

}  // namespace mirrorflow
