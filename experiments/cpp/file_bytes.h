// Whole-file reads for the dataset readers: plain files, and gzip files
// (name ending in ".gz") through zlib when the build found it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vgg_train {

/// True when this build reads ".gz" files (CMake found ZLIB).
bool gzip_supported();

/// The bytes of `path`, decompressed when the name ends in ".gz". Throws
/// std::runtime_error naming the file when it cannot be opened or read, when a
/// gzip stream is corrupt or cut short, or when ".gz" is not supported.
std::vector<std::uint8_t> read_file_bytes(const std::string& path);

/// True when a regular file (or a link to one) exists at `path`.
bool file_exists(const std::string& path);

/// True when a directory exists at `path`.
bool directory_exists(const std::string& path);

}  // namespace vgg_train
