#include "file_bytes.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>

#ifdef VGG_TRAIN_WITH_ZLIB
#include <zlib.h>
#endif

namespace vgg_train {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::vector<std::uint8_t> read_plain(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw std::runtime_error("cannot open " + path);
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(file)),
                                  std::istreambuf_iterator<char>());
  if (file.bad()) throw std::runtime_error("cannot read " + path);
  return bytes;
}

#ifdef VGG_TRAIN_WITH_ZLIB
std::vector<std::uint8_t> read_gzip(const std::string& path) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) throw std::runtime_error("cannot open " + path);
  std::vector<std::uint8_t> bytes;
  std::vector<std::uint8_t> chunk(1 << 20);
  int got = 0;
  while ((got = gzread(file, chunk.data(), static_cast<unsigned>(chunk.size()))) > 0) {
    bytes.insert(bytes.end(), chunk.begin(), chunk.begin() + got);
  }
  // zlib reads a file without a gzip header as it is; a ".gz" name promises one.
  const bool not_gzip = gzdirect(file) == 1 && !bytes.empty();
  int code = Z_OK;
  const char* message = gzerror(file, &code);
  // gzread reports a stream cut short only through gzerror (Z_BUF_ERROR).
  const std::string reason = (got < 0 || (code != Z_OK && code != Z_STREAM_END))
                                 ? std::string(message != nullptr ? message : "zlib error")
                                 : std::string();
  gzclose(file);
  if (not_gzip) throw std::runtime_error(path + " is not gzip-compressed (no gzip header)");
  if (!reason.empty()) {
    throw std::runtime_error(path + " is not a valid gzip file (" + reason +
                             "): the file is corrupt or truncated");
  }
  return bytes;
}
#endif

}  // namespace

bool gzip_supported() {
#ifdef VGG_TRAIN_WITH_ZLIB
  return true;
#else
  return false;
#endif
}

std::vector<std::uint8_t> read_file_bytes(const std::string& path) {
  if (!ends_with(path, ".gz")) return read_plain(path);
#ifdef VGG_TRAIN_WITH_ZLIB
  return read_gzip(path);
#else
  throw std::runtime_error("cannot read " + path +
                           ": this build has no zlib (CMake did not find ZLIB), so .gz files "
                           "are refused; decompress it (gunzip -k " + path +
                           ") or rebuild with zlib installed");
#endif
}

bool file_exists(const std::string& path) {
  std::error_code error;
  return std::filesystem::is_regular_file(path, error);
}

bool directory_exists(const std::string& path) {
  std::error_code error;
  return std::filesystem::is_directory(path, error);
}

void replace_file(const std::string& path,
                  const std::function<void(const std::string&)>& write) {
  const std::filesystem::path target(path);
  if (target.has_parent_path()) std::filesystem::create_directories(target.parent_path());
  const std::string partial = path + ".partial";
  try {
    write(partial);
    std::filesystem::rename(partial, target);
  } catch (...) {
    std::error_code ignored;
    std::filesystem::remove(partial, ignored);
    throw;
  }
}

void replace_file_with(const std::string& path, const std::string& bytes,
                       const std::string& option) {
  replace_file(path, [&](const std::string& partial) {
    std::ofstream file(partial, std::ios::binary | std::ios::trunc);
    file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    file.flush();
    if (!file) throw std::runtime_error(option + ": cannot write " + partial);
  });
}

void check_output_path(const std::string& path, const std::string& option) {
  namespace fs = std::filesystem;
  std::error_code error;
  const fs::path target = fs::absolute(fs::path(path), error);
  if (error || !target.has_filename()) {
    throw std::runtime_error(option + " " + path + ": not a file name");
  }
  if (fs::is_directory(target, error)) {
    throw std::runtime_error(option + " " + path + ": is a folder; give a file name");
  }
  fs::path above = target.parent_path();
  // The nearest entry above that exists, a link counted as it stands (a link to
  // nothing cannot be made a folder either).
  while (!fs::exists(fs::symlink_status(above, error))) above = above.parent_path();
  if (fs::is_symlink(fs::symlink_status(above, error)) && !fs::exists(above, error)) {
    throw std::runtime_error(option + " " + path + ": " + above.string() +
                             " is a link to nothing, so no folder can be made there");
  }
  if (!fs::is_directory(above, error)) {
    throw std::runtime_error(option + " " + path + ": " + above.string() +
                             " is a file, so no folder can be made there");
  }
  if (access(above.c_str(), W_OK | X_OK) != 0) {
    throw std::runtime_error(option + " " + path + ": the folder " + above.string() +
                             " is not writable");
  }
}

bool same_file_name(const std::string& a, const std::string& b) {
  namespace fs = std::filesystem;
  return fs::absolute(a).lexically_normal() == fs::absolute(b).lexically_normal();
}

}  // namespace vgg_train
