// CIFAR-10 in its binary layout (cifar-10-batches-bin).
#pragma once

#include <cstdint>
#include <string>

#include "image_set.h"

namespace vgg_train {

/// The folder `--data-dir` defaults to for CIFAR-10, relative to the working
/// directory: the Python pipeline's default too (mirrorflow.data.CIFAR10_DEFAULT_ROOT).
inline constexpr const char* kCifar10DefaultDir = "data/cifar10";

/// Reads the training split (data_batch_1.bin … data_batch_5.bin, in that
/// order) or the test split (test_batch.bin) from `dir`, or from
/// `dir`/cifar-10-batches-bin when `dir` holds that folder. Each file is a
/// sequence of records of 3073 bytes: the label (0–9), then the 32×32 image as
/// 1024 red, 1024 green and 1024 blue bytes, rows in order (C×H×W). `limit` >
/// 0 keeps the first `limit` samples (later files are then not read). Missing
/// or truncated files, bad labels and the Python pickle layout
/// (cifar-10-batches-py, not read here) throw std::runtime_error naming the
/// files and saying how to get the data.
ImageSet load_cifar10_binary(const std::string& dir, bool train, int64_t limit);

/// The folder the files are read from: `dir`, or `dir`/cifar-10-batches-bin.
std::string cifar10_binary_dir(const std::string& dir);

}  // namespace vgg_train
