/// Run-time choice of a map and of one of its functions (MATH.md §1), for
/// code that is not specialised per map at compile time (map_eval, tests).
#pragma once

#include <string_view>

#include "mirrorflow/core/euclidean.h"
#include "mirrorflow/core/hyperbolic_entropy.h"
#include "mirrorflow/core/mirror_kind.h"
#include "mirrorflow/core/power_potential.h"

namespace mirrorflow::core {

/// φ, ∇φ, ∇φ*, 1/φ'' and φ*∘∇φ.
enum class MapFunction { Potential = 0, Grad = 1, GradConj = 2, InvMetric = 3, ConjOfGrad = 4 };

inline constexpr std::string_view kMapFunctionNames[] = {"potential", "grad", "grad_conj",
                                                         "inv_metric", "conj_of_grad"};

template <class Map, class V>
MF_INLINE V apply_map_function(const Map& map, MapFunction fn, V x) {
  switch (fn) {
    case MapFunction::Potential:
      return map.potential(x);
    case MapFunction::Grad:
      return map.grad(x);
    case MapFunction::GradConj:
      return map.grad_conj(x);
    case MapFunction::InvMetric:
      return map.inv_metric(x);
    case MapFunction::ConjOfGrad:
      return map.conj_of_grad(x);
  }
  return x;
}

/// The map object of kind K in compute type T.
template <MirrorKind K, class T>
MF_INLINE auto make_map(double beta, double degree) {
  if constexpr (K == MirrorKind::Euclidean) {
    return Euclidean<T>{};
  } else if constexpr (K == MirrorKind::Hyperbolic) {
    return HyperbolicEntropy<T>{static_cast<T>(beta)};
  } else {
    return PowerPotential<T>{static_cast<T>(degree), static_cast<T>(beta)};
  }
}

/// Calls f(map) with the map object of `kind` in compute type T.
template <class T, class F>
void visit_map(MirrorKind kind, double beta, double degree, F&& f) {
  switch (kind) {
    case MirrorKind::Euclidean:
      f(make_map<MirrorKind::Euclidean, T>(beta, degree));
      return;
    case MirrorKind::Hyperbolic:
      f(make_map<MirrorKind::Hyperbolic, T>(beta, degree));
      return;
    case MirrorKind::Power:
      f(make_map<MirrorKind::Power, T>(beta, degree));
      return;
  }
}

}  // namespace mirrorflow::core
