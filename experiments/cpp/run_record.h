// The run record of vgg_train: a JSON file next to the CSV log, written once
// the run has finished, with the settings that made it, what it did and where
// its final parameters are, so that experiments/vgg_cifar/report.py can put
// the run in its tables and figures (docs/cpp_training.md).
#pragma once

#include <cstdint>
#include <string>

#include "train_options.h"

namespace vgg_train {

/// The record's path: the CSV's, its extension replaced by `.run.json`.
std::string run_record_path(const std::string& csv);

/// Writes the record of a finished run (through replace_file, file_bytes.h):
/// the options, `data_dir` (the folder the data were read from), the epochs
/// and steps done, the CSV's file name and the --save-params file (relative to
/// the record's folder when inside it, else absolute; null without one).
void write_run_record(const TrainOptions& options, const std::string& data_dir,
                      int64_t epochs_done, int64_t steps);

}  // namespace vgg_train
