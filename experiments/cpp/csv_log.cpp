#include "csv_log.h"

#include <sstream>
#include <stdexcept>
#include <vector>

#include "file_bytes.h"

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
  // The header and the kept rows replace the file whole; rows are appended after.
  std::string start = std::string(header()) + "\n";
  for (const auto& line : kept) start += line + "\n";
  replace_file_with(path, start, "--csv");
  file_.open(path, std::ios::app);
  if (!file_) throw std::runtime_error("--csv: cannot write " + path);
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
