// Per-channel normalisation and the standard random crop / flip, on batches
// of uint8 images N×C×H×W, with torch ops.
#pragma once

#include <ATen/ATen.h>

namespace vgg_train {

/// Mean and standard deviation of each channel over a set of uint8 images,
/// in units of the [0, 1] scale (float64 accumulation, Bessel-corrected std),
/// as mirrorflow.data.ImageDataset.channel_stats computes them.
struct ChannelStats {
  at::Tensor mean;  // float32, C
  at::Tensor std;   // float32, C; at least 1e-6 so constant channels stay finite
};

ChannelStats channel_stats(const at::Tensor& images);

/// (images/255 − mean)/std per channel, as float32.
at::Tensor normalize(const at::Tensor& images, const ChannelStats& stats);

/// Pads each image of a uint8 batch with `padding` zeros (black) on every
/// side, then keeps
/// a window of the original size at an offset drawn uniformly from
/// [0, 2·padding]² by `generator`; when `flip`, mirrors it left–right with
/// probability 1/2. The draws are made for every image in order, whatever
/// the flags, so a run's random stream does not depend on them. As
/// mirrorflow.data.augment does it, before the normalisation.
at::Tensor random_crop_flip(const at::Tensor& batch, int64_t padding, bool flip,
                            at::Generator& generator);

}  // namespace vgg_train
