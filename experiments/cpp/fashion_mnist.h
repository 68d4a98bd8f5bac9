// Fashion-MNIST from its IDX files, padded to 32×32.
#pragma once

#include <cstdint>
#include <string>

#include "image_set.h"

namespace vgg_train {

/// Where Debian's package dataset-fashion-mnist installs the files.
inline constexpr const char* kFashionMnistDefaultDir = "/usr/share/datasets/fashion-mnist";

/// Reads the training (train-*) or test (t10k-*) split from `dir`: the images
/// file `<prefix>-images-idx3-ubyte` and the labels file
/// `<prefix>-labels-idx1-ubyte`, each plain or gzipped (`.gz`). The 28×28
/// images are padded with zeros to 1×32×32 (2 pixels each side). `limit` > 0
/// keeps the first `limit` samples. Missing, truncated or wrong-shaped files
/// throw std::runtime_error naming the file and saying how to get the data.
ImageSet load_fashion_mnist(const std::string& dir, bool train, int64_t limit);

}  // namespace vgg_train
