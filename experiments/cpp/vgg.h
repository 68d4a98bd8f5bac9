// VGG-16 for 32×32 inputs as MATH.md §5 specifies it for the mirror-descent
// experiments: 13 convolutions 3×3 (padding 1) with ReLU, max-pooling 2×2
// after each block, no batch norm, a bias only in the first convolution,
// He initialisation, and a bias-free classifier head (one linear layer by
// default).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>

#include <cstdint>
#include <vector>

namespace vgg_train {

/// The standard configuration "D": channel counts, 0 for a max-pool.
const std::vector<int64_t>& vgg16_config();

struct VggOptions {
  int64_t in_channels = 3;
  int64_t classes = 10;
  /// Width multiplier: each convolution of c channels (and each hidden layer of
  /// the head of h units) gets max(1, round(width·c)), rounding half to even
  /// as Python's round() and mirrorflow.models.VGG16 do.
  double width = 1.0;
  /// Widths of the hidden layers of the head (bias-free, ReLU) before the
  /// multiplier; empty: one linear layer from the last block's features to the
  /// classes.
  std::vector<int64_t> head_hidden;
};

/// max(1, round(width·c)), the rounding of VGG16 (half to even).
int64_t scaled_width(int64_t c, double width);

/// The convolutions' output channels after the width multiplier.
std::vector<int64_t> vgg16_channels(double width);

class Vgg16Impl : public torch::nn::Module {
 public:
  explicit Vgg16Impl(const VggOptions& options);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Sequential features_{nullptr};
  torch::nn::Sequential classifier_{nullptr};
};
TORCH_MODULE(Vgg16);

/// Number of scalar parameters of `module`.
int64_t parameter_count(const torch::nn::Module& module);

}  // namespace vgg_train
