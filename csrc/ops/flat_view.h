// The memory a kernel walks for one tensor of a step: the tensor itself when
// its elements are dense and laid out like the parameter's, else a contiguous
// copy written back after the step. Shared by the CPU and CUDA operators.
#pragma once

#include <ATen/core/Tensor.h>

namespace mirrorflow::detail {

struct FlatView {
  at::Tensor original;
  at::Tensor flat;
  bool copied = false;
  bool written = true;  // whether the step writes it (a gradient only when unscaled)
};

/// The parameter's own view: walked directly when non-overlapping and dense
/// (any strides, any storage offset), else a contiguous copy.
FlatView param_view(const at::Tensor& p);

/// A tensor walked in step with `layout` (the parameter's flat view): element
/// i of both must be the same logical element, so a tensor laid out otherwise
/// is copied into the layout's strides. `written`: whether the step writes it.
FlatView view_like(const at::Tensor& t, const at::Tensor& layout, bool written = true);

/// Copies a copied view's values back into the original tensor, when the step
/// wrote them (a view only read, e.g. an expanded gradient, is left alone).
void write_back(const FlatView& v);

}  // namespace mirrorflow::detail
