#include "file_bytes.h"

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

}  // namespace vgg_train
