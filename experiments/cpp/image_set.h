// The in-memory form every dataset reader returns.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

namespace vgg_train {

/// Images as read from disk (uint8, N×C×32×32, not normalised) and their
/// labels (int64, N, in [0, classes)).
struct ImageSet {
  at::Tensor images;
  at::Tensor labels;
  /// The files the samples came from, for the log.
  std::vector<std::string> files;

  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
};

/// A training and a test split of one dataset.
struct Dataset {
  std::string name;  // "cifar10" or "fashion-mnist"
  std::string dir;   // the folder the files were read from
  ImageSet train;
  ImageSet test;
  int64_t classes = 10;
  /// Random horizontal flips make sense for this data (CIFAR-10: yes).
  bool flip = false;
};

}  // namespace vgg_train
