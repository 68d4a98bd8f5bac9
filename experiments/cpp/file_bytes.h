// Whole files: reads for the dataset readers (plain files, and gzip files,
// name ending in ".gz", through zlib when the build found it), and the one way
// vgg_train writes its outputs, whole or not at all.
#pragma once

#include <cstdint>
#include <functional>
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

/// Replaces the file at `path` whole or not at all: `write` fills a file beside
/// it, `path` + ".partial", which is then renamed over `path` (the folders
/// above it are created first). When `write` or the rename throws, the partial
/// file is removed and `path` keeps what it held.
void replace_file(const std::string& path, const std::function<void(const std::string&)>& write);

/// replace_file with `bytes` as the content; a failed write throws
/// std::runtime_error naming `option` and the file.
void replace_file_with(const std::string& path, const std::string& bytes,
                       const std::string& option);

/// Throws std::runtime_error naming `option` and `path` when no file can be
/// written there: `path` is a folder, a file stands where a folder above it
/// would be, or the nearest existing folder above it is not writable.
void check_output_path(const std::string& path, const std::string& option);

/// True when `a` and `b` name one file (compared as absolute, normalised paths,
/// links not followed).
bool same_file_name(const std::string& a, const std::string& b);

}  // namespace vgg_train
