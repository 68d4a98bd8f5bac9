#include "vgg.h"

#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace vgg_train {

const std::vector<int64_t>& vgg16_config() {
  static const std::vector<int64_t> config = {64,  64,  0,   128, 128, 0,   256, 256, 256, 0,
                                              512, 512, 512, 0,   512, 512, 512, 0};
  return config;
}

int64_t scaled_width(int64_t c, double width) {
  // nearbyint in the default rounding mode rounds half to even, as Python's round.
  return std::max<int64_t>(1, static_cast<int64_t>(std::nearbyint(width * static_cast<double>(c))));
}

std::vector<int64_t> vgg16_channels(double width) {
  if (!(width > 0) || !std::isfinite(width)) {
    throw std::invalid_argument("--width must be a finite number > 0, got " +
                                std::to_string(width));
  }
  std::vector<int64_t> channels;
  for (int64_t c : vgg16_config()) {
    if (c > 0) {
      channels.push_back(scaled_width(c, width));
    }
  }
  return channels;
}

Vgg16Impl::Vgg16Impl(const VggOptions& options) {
  const std::vector<int64_t> channels = vgg16_channels(options.width);
  torch::nn::Sequential features;
  int64_t in = options.in_channels;
  std::size_t conv = 0;
  for (int64_t c : vgg16_config()) {
    if (c == 0) {
      features->push_back(torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(2).stride(2)));
      continue;
    }
    const int64_t out = channels[conv];
    // The one bias of the network (MATH.md §5): the rest stays homogeneous.
    features->push_back(torch::nn::Conv2d(
        torch::nn::Conv2dOptions(in, out, 3).padding(1).bias(conv == 0)));
    features->push_back(torch::nn::ReLU());
    in = out;
    ++conv;
  }
  torch::nn::Sequential classifier;
  for (int64_t hidden : options.head_hidden) {
    if (hidden < 1) {
      throw std::invalid_argument("--head-hidden widths must be >= 1, got " +
                                  std::to_string(hidden));
    }
    const int64_t out = scaled_width(hidden, options.width);
    classifier->push_back(torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false)));
    classifier->push_back(torch::nn::ReLU());
    in = out;
  }
  classifier->push_back(
      torch::nn::Linear(torch::nn::LinearOptions(in, options.classes).bias(false)));
  features_ = register_module("features", features);
  classifier_ = register_module("classifier", classifier);

  // He initialisation: N(0, 2/fan_in) for every weight, the bias zero.
  torch::NoGradGuard no_grad;
  for (auto& named : named_parameters()) {
    torch::Tensor& p = named.value();
    if (p.dim() >= 2) {
      torch::nn::init::kaiming_normal_(p, 0.0, torch::kFanIn, torch::kReLU);
    } else {
      p.zero_();
    }
  }
}

torch::Tensor Vgg16Impl::forward(const torch::Tensor& x) {
  return classifier_->forward(features_->forward(x).flatten(1));
}

int64_t parameter_count(const torch::nn::Module& module) {
  int64_t count = 0;
  for (const auto& p : module.parameters()) count += p.numel();
  return count;
}

}  // namespace vgg_train
