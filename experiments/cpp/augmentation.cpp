#include "augmentation.h"

#include <vector>

namespace vgg_train {

ChannelStats channel_stats(const at::Tensor& images) {
  const at::Tensor x = images.to(at::kDouble).div(255.0).transpose(0, 1).reshape(
      {images.size(1), -1});
  ChannelStats stats;
  stats.mean = x.mean(1).to(at::kFloat);
  stats.std = x.std(1, /*unbiased=*/true).clamp_min(1e-6).to(at::kFloat);
  return stats;
}

at::Tensor normalize(const at::Tensor& images, const ChannelStats& stats) {
  const at::Tensor mean = stats.mean.to(images.device()).view({1, -1, 1, 1});
  const at::Tensor std = stats.std.to(images.device()).view({1, -1, 1, 1});
  return images.to(at::kFloat).div(255.0).sub(mean).div(std);
}

at::Tensor random_crop_flip(const at::Tensor& batch, int64_t padding, bool flip,
                            at::Generator& generator) {
  const int64_t n = batch.size(0);
  const int64_t h = batch.size(2);
  const int64_t w = batch.size(3);
  // Draw on the CPU so that CPU and CUDA runs see the same crops.
  const at::Tensor offsets =
      at::randint(2 * padding + 1, {n, 2}, generator, at::TensorOptions().dtype(at::kLong));
  const at::Tensor flips = at::randint(2, {n}, generator, at::TensorOptions().dtype(at::kLong));
  const at::Tensor padded = at::constant_pad_nd(batch, {padding, padding, padding, padding}, 0);
  const auto* offset = offsets.data_ptr<int64_t>();
  const auto* flipped = flips.data_ptr<int64_t>();
  std::vector<at::Tensor> out;
  out.reserve(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    at::Tensor image = padded[i].narrow(1, offset[2 * i], h).narrow(2, offset[2 * i + 1], w);
    if (flip && flipped[i] != 0) image = image.flip({2});
    out.push_back(image);
  }
  return at::stack(out);
}

}  // namespace vgg_train
