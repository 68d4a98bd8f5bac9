// Arguments of mirrorflow::map_eval, parsed and checked once for every backend.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include "mirrorflow/core/map_function.h"
#include "mirrorflow/ops.h"

namespace mirrorflow::detail {

struct MapEvalCall {
  core::MirrorKind mirror;
  double beta;
  double degree;
  core::MapFunction function;
};

MapEvalCall make_map_eval_call(const at::Tensor& x, c10::string_view mirror, double beta,
                               double degree, c10::string_view function);

}  // namespace mirrorflow::detail
