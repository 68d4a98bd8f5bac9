/// Names of the maps, updates and β scalings, and the per-layer β rule
/// (MATH.md §1-§2). Shared by the operators, the optimizers and the tests.
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>

#include "mirrorflow/core/update_rule.h"

namespace mirrorflow::core {

enum class MirrorKind { Euclidean = 0, Hyperbolic = 1, Power = 2 };
enum class BetaScaling { None = 0, FanIn = 1 };

inline constexpr std::string_view kMirrorNames[] = {"euclidean", "hyperbolic", "power"};
inline constexpr std::string_view kUpdateNames[] = {"metric", "dual"};
inline constexpr std::string_view kBetaScalingNames[] = {"none", "fan_in"};

/// Index of `name` in `names`, or -1.
template <std::size_t N>
constexpr int index_of(std::string_view name, const std::string_view (&names)[N]) {
  for (std::size_t i = 0; i < N; ++i) {
    if (names[i] == name) return static_cast<int>(i);
  }
  return -1;
}

/// fan_in of a tensor: numel/size(0) with two or more dimensions, else 1.
inline double fan_in(int64_t numel, int64_t dim, int64_t size0) {
  if (dim < 2 || size0 <= 0) return 1.0;
  return static_cast<double>(numel / size0);
}

/// βₗ = β/√fan_in for `fan_in` scaling, else β.
inline double layer_beta(double beta, BetaScaling scaling, int64_t numel, int64_t dim,
                         int64_t size0) {
  if (scaling == BetaScaling::None) return beta;
  return beta / std::sqrt(fan_in(numel, dim, size0));
}

}  // namespace mirrorflow::core
