#include "flat_view.h"

#include <ATen/ATen.h>

namespace mirrorflow::detail {

FlatView param_view(const at::Tensor& p) {
  if (p.is_non_overlapping_and_dense()) return FlatView{p, p, false};
  return FlatView{p, p.contiguous(), true};
}

FlatView view_like(const at::Tensor& t, const at::Tensor& layout) {
  if (t.is_non_overlapping_and_dense() && t.strides() == layout.strides()) {
    return FlatView{t, t, false};
  }
  at::Tensor flat = at::empty_like(layout);
  flat.copy_(t);
  return FlatView{t, flat, true};
}

void write_back(const FlatView& v) {
  if (v.copied) v.original.copy_(v.flat);
}

}  // namespace mirrorflow::detail
