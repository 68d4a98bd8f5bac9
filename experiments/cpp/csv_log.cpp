#include "csv_log.h"

#include <filesystem>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace vgg_train {

const char* CsvLog::header() {
  return "epoch,steps,train_loss,train_accuracy,test_loss,test_accuracy,seconds";
}

CsvLog::CsvLog(const std::string& path, int64_t resume_epoch) : path_(path) {
  std::vector<std::string> kept;
  if (resume_epoch > 0) {
    std::ifstream old(path);
    std::string line;
    bool first = true;
    while (std::getline(old, line)) {
      if (first) {
        first = false;
        continue;
      }
      // Rows are "epoch,..."; anything else (a line cut by a kill) is dropped.
      std::istringstream fields(line);
      long long epoch = 0;
      char comma = 0;
      if (fields >> epoch >> comma && comma == ',' && epoch >= 1 && epoch <= resume_epoch) {
        kept.push_back(line);
      }
    }
  }
  const std::filesystem::path target(path);
  if (target.has_parent_path()) std::filesystem::create_directories(target.parent_path());
  file_.open(path, std::ios::trunc);
  if (!file_) throw std::runtime_error("--csv: cannot write " + path);
  file_ << header() << "\n";
  for (const auto& line : kept) file_ << line << "\n";
  file_.flush();
}

void CsvLog::append(const EpochRecord& r) {
  std::ostringstream row;
  row.precision(17);
  row << r.epoch << "," << r.steps << "," << r.train_loss << ",";
  row.precision(6);
  row << r.train_accuracy << ",";
  row.precision(17);
  row << r.test_loss << ",";
  row.precision(6);
  row << r.test_accuracy << "," << r.seconds;
  file_ << row.str() << "\n";
  file_.flush();
  if (!file_) throw std::runtime_error("--csv: cannot write " + path_);
}

}  // namespace vgg_train
