// A checkpoint of a training run, written after every epoch so a killed run
// resumes where its last finished epoch left it: the model, the optimizer,
// the data-order/augmentation generator, the epoch and step counts, and the
// settings that fix the trajectory.
#pragma once

#include <ATen/core/Generator.h>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <cstdint>
#include <string>

namespace vgg_train {

struct TrainingProgress {
  int64_t epoch = 0;  // finished epochs
  int64_t steps = 0;  // optimizer steps taken
};

/// Writes the checkpoint through replace_file (file_bytes.h), so `path` always
/// holds a whole checkpoint.
void save_checkpoint(const std::string& path, const std::string& key, torch::nn::Module& model,
                     torch::optim::Optimizer& optimizer, const at::Generator& generator,
                     const TrainingProgress& progress);

/// Loads `path` into the arguments when it exists (returns false when it does
/// not). Throws std::runtime_error naming the file when it cannot be read or
/// was written by a run with other settings (`key`).
bool load_checkpoint(const std::string& path, const std::string& key, torch::nn::Module& model,
                     torch::optim::Optimizer& optimizer, at::Generator& generator,
                     TrainingProgress* progress);

}  // namespace vgg_train
