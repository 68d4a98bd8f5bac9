// The command line of vgg_train.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mirrorflow/optim.h"

namespace vgg_train {

struct TrainOptions {
  std::string dataset = "fashion-mnist";
  std::string data_dir;  // empty: the dataset's default folder
  int64_t train_limit = 0;  // 0: every sample
  int64_t test_limit = 0;
  double width = 1.0;
  std::vector<int64_t> head_hidden;
  /// MATH.md §5's default: the per-layer normalised metric update, no
  /// momentum, no weight decay.
  mirrorflow::MirrorDescentOptions optimizer =
      mirrorflow::MirrorDescentOptions(0.02).normalize(true).update("metric");
  int64_t batch_size = 128;
  int64_t epochs = 10;
  int64_t max_steps = 0;  // 0: no limit
  uint64_t seed = 0;
  int64_t threads = 0;  // 0: LibTorch's default
  bool augment = true;
  std::string device = "cpu";
  std::string csv = "runs/cpp_vgg/train_log.csv";
  std::string checkpoint;   // empty: none
  std::string save_params;  // empty: none
  bool progress = true;
  bool help = false;
};

/// Parses `--name value` / `--name=value` arguments and checks every value
/// (the optimizer's through MirrorDescentOptions::validated()). Throws
/// std::invalid_argument naming the option, the rule and the value.
TrainOptions parse_train_options(int argc, const char* const* argv);

/// The options text printed by --help.
std::string usage();

/// The settings that fix a run's trajectory (everything but epochs,
/// max-steps, threads, outputs): a resumed run must match its checkpoint's.
std::string trajectory_key(const TrainOptions& options);

}  // namespace vgg_train
