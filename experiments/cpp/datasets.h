// The datasets the training loop knows, by name.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "image_set.h"

namespace vgg_train {

/// "cifar10" and "fashion-mnist".
const std::vector<std::string>& dataset_names();

/// The folder read when --data-dir is not given.
std::string default_data_dir(const std::string& name);

/// Reads both splits of dataset `name` from `dir` (the default folder when
/// empty); `train_limit`/`test_limit` > 0 keep the first samples of each.
Dataset load_dataset(const std::string& name, const std::string& dir, int64_t train_limit,
                     int64_t test_limit);

}  // namespace vgg_train
