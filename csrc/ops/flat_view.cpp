#include "flat_view.h"

#include <ATen/ATen.h>

namespace mirrorflow::detail {

FlatView param_view(const at::Tensor& p) {
  if (p.is_non_overlapping_and_dense()) return FlatView{p, p, false};
  return FlatView{p, p.contiguous(), true};
}

FlatView view_like(const at::Tensor& t, const at::Tensor& layout, bool written) {
  if (t.is_non_overlapping_and_dense() && t.strides() == layout.strides()) {
    return FlatView{t, t, false, written};
  }
  at::Tensor flat = at::empty_like(layout);
  flat.copy_(t);
  return FlatView{t, flat, true, written};
}

void write_back(const FlatView& v) {
  if (v.copied && v.written) v.original.copy_(v.flat);
}

}  // namespace mirrorflow::detail
