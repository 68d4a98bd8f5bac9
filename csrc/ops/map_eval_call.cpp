#include "map_eval_call.h"

#include <c10/util/Exception.h>

#include <string>

namespace mirrorflow::detail {

MapEvalCall make_map_eval_call(const at::Tensor& x, c10::string_view mirror, double beta,
                               double degree, c10::string_view function) {
  // The map's own rules (β, degree) are the optimizer's; the update-specific
  // ones do not apply to evaluating a function, hence update='dual'.
  const StepOptions o = make_step_options(std::string(mirror), beta, degree, "dual", false,
                                          "none", 0.0, 0.0, 0.0, false, 0.0, false);
  const std::string fn(function);
  const int index = core::index_of(fn, core::kMapFunctionNames);
  TORCH_CHECK_VALUE(index >= 0,
                    "map_eval: function must be one of 'potential', 'grad', 'grad_conj', "
                    "'inv_metric', 'conj_of_grad', got '",
                    fn, "'");
  TORCH_CHECK(at::isFloatingType(x.scalar_type()),
              "map_eval: x must have a real floating-point dtype, got ", x.scalar_type());
  TORCH_CHECK(x.layout() == c10::kStrided, "map_eval: x must be dense, got layout ", x.layout());
  return MapEvalCall{o.mirror, o.beta, o.degree, static_cast<core::MapFunction>(index)};
}

}  // namespace mirrorflow::detail
