#include "run_record.h"

#include <cstdio>
#include <filesystem>
#include <sstream>
#include <stdexcept>

#include "file_bytes.h"

namespace vgg_train {
namespace {

namespace fs = std::filesystem;

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned>(c));
          out += escaped;
        } else {
          out += c;  // UTF-8 bytes pass through: JSON text is UTF-8
        }
    }
  }
  return out + "\"";
}

// `path` relative to `folder` when it lies inside it, else absolute.
std::string relative_if_inside(const fs::path& path, const fs::path& folder) {
  const fs::path absolute = fs::absolute(path).lexically_normal();
  const fs::path relative = absolute.lexically_relative(fs::absolute(folder).lexically_normal());
  if (!relative.empty() && *relative.begin() != "..") return relative.string();
  return absolute.string();
}

}  // namespace

std::string run_record_path(const std::string& csv) {
  return fs::path(csv).replace_extension(".run.json").string();
}

void write_run_record(const TrainOptions& options, const std::string& data_dir,
                      int64_t epochs_done, int64_t steps) {
  const fs::path record(run_record_path(options.csv));
  const fs::path folder = record.has_parent_path() ? record.parent_path() : fs::path(".");
  const auto& o = options.optimizer;
  std::ostringstream json;
  json.precision(17);  // every double reads back as the same double
  json << "{\n \"program\": \"vgg_train\",\n"
       << " \"dataset\": " << json_string(options.dataset) << ",\n"
       << " \"data_dir\": " << json_string(fs::absolute(data_dir).lexically_normal().string())
       << ",\n \"train_limit\": " << options.train_limit
       << ",\n \"test_limit\": " << options.test_limit << ",\n \"width\": " << options.width
       << ",\n \"head_hidden\": [";
  for (std::size_t i = 0; i < options.head_hidden.size(); ++i) {
    json << (i ? ", " : "") << options.head_hidden[i];
  }
  json << "],\n \"augment\": " << (options.augment ? "true" : "false")
       << ",\n \"mirror\": " << json_string(o.mirror()) << ",\n \"beta\": " << o.beta()
       << ",\n \"degree\": " << o.degree()
       << ",\n \"beta_scaling\": " << json_string(o.beta_scaling())
       << ",\n \"update\": " << json_string(o.update())
       << ",\n \"normalize\": " << (o.normalize() ? "true" : "false") << ",\n \"lr\": " << o.lr()
       << ",\n \"batch_size\": " << options.batch_size << ",\n \"epochs\": " << options.epochs
       << ",\n \"max_steps\": " << options.max_steps << ",\n \"seed\": " << options.seed
       << ",\n \"device\": " << json_string(options.device) << ",\n \"threads\": "
       << options.threads << ",\n \"epochs_done\": " << epochs_done << ",\n \"steps\": " << steps
       << ",\n \"csv\": " << json_string(fs::path(options.csv).filename().string())
       << ",\n \"params\": "
       << (options.save_params.empty()
               ? std::string("null")
               : json_string(relative_if_inside(options.save_params, folder)))
       << "\n}\n";
  replace_file_with(record.string(), json.str(), "the run record of --csv");
}

}  // namespace vgg_train
