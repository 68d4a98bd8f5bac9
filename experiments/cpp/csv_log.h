// The per-epoch CSV log, one row written and flushed per epoch.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>

namespace vgg_train {

struct EpochRecord {
  int64_t epoch = 0;
  int64_t steps = 0;
  double train_loss = 0;
  double train_accuracy = 0;
  double test_loss = 0;
  double test_accuracy = 0;
  double seconds = 0;
};

class CsvLog {
 public:
  /// Opens `path` (creating its folder). With `resume_epoch` = 0 the file is
  /// started afresh; otherwise the rows of epochs 1…`resume_epoch` already in
  /// it are kept (later ones, written after the checkpoint, are dropped). The
  /// header and kept rows replace the file whole (replace_file, file_bytes.h).
  CsvLog(const std::string& path, int64_t resume_epoch);

  void append(const EpochRecord& record);

  static const char* header();

 private:
  std::string path_;
  std::ofstream file_;
};

}  // namespace vgg_train
