#include "cifar10_binary.h"

#include <algorithm>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "file_bytes.h"

namespace vgg_train {
namespace {

constexpr int64_t kChannels = 3;
constexpr int64_t kSide = 32;
constexpr std::size_t kImageBytes = kChannels * kSide * kSide;
constexpr std::size_t kRecordBytes = 1 + kImageBytes;

std::string how_to_get(const std::string& dir) {
  return "CIFAR-10 is expected in " + dir +
         " in its binary layout: data_batch_1.bin … data_batch_5.bin and test_batch.bin "
         "(records of 1 label byte + 3072 image bytes). Download the binary version, "
         "cifar-10-binary.tar.gz, from https://www.cs.toronto.edu/~kriz/cifar.html, unpack it "
         "(tar xzf cifar-10-binary.tar.gz gives cifar-10-batches-bin/) and pass that folder, or "
         "the one holding it, with --data-dir";
}

// The Python layout: cifar-10-batches-py/, or a folder with data_batch_1 (no suffix).
bool looks_like_python_layout(const std::string& dir) {
  return directory_exists(dir + "/cifar-10-batches-py") || file_exists(dir + "/data_batch_1") ||
         file_exists(dir + "/batches.meta");
}

std::vector<std::string> split_files(const std::string& dir, bool train) {
  if (!train) return {dir + "/test_batch.bin"};
  std::vector<std::string> files;
  for (int i = 1; i <= 5; ++i) files.push_back(dir + "/data_batch_" + std::to_string(i) + ".bin");
  return files;
}

}  // namespace

std::string cifar10_binary_dir(const std::string& dir) {
  const std::string nested = dir + "/cifar-10-batches-bin";
  return directory_exists(nested) ? nested : dir;
}

ImageSet load_cifar10_binary(const std::string& given_dir, bool train, int64_t limit) {
  const std::string dir = cifar10_binary_dir(given_dir);
  if (!directory_exists(dir)) {
    throw std::runtime_error("data folder " + dir + " does not exist. " + how_to_get(dir));
  }
  const std::vector<std::string> files = split_files(dir, train);
  std::vector<std::string> missing;
  for (const auto& file : files) {
    if (!file_exists(file)) missing.push_back(file);
  }
  if (!missing.empty()) {
    std::string message = "missing file";
    message += missing.size() > 1 ? "s " : " ";
    for (std::size_t i = 0; i < missing.size(); ++i) message += (i ? ", " : "") + missing[i];
    if (looks_like_python_layout(dir)) {
      message += ". " + dir +
                 " looks like the Python version (cifar-10-batches-py, pickled batches), which "
                 "this C++ program does not read; the Python pipeline (mirrorflow.data) does";
    }
    throw std::runtime_error(message + ". " + how_to_get(dir));
  }

  std::vector<std::uint8_t> labels;
  std::vector<std::uint8_t> images;
  std::vector<std::string> used;
  for (const auto& file : files) {
    if (limit > 0 && static_cast<int64_t>(labels.size()) >= limit) break;
    std::vector<std::uint8_t> bytes;
    try {
      bytes = read_file_bytes(file);
    } catch (const std::runtime_error& error) {
      throw std::runtime_error(std::string(error.what()) + ". " + how_to_get(dir));
    }
    if (bytes.empty() || bytes.size() % kRecordBytes != 0) {
      std::ostringstream message;
      message << file << " is truncated or not a CIFAR-10 binary batch: " << bytes.size()
              << " bytes is not a positive multiple of the record size " << kRecordBytes
              << " (a full batch has 10000 records, " << 10000 * kRecordBytes << " bytes). "
              << how_to_get(dir);
      throw std::runtime_error(message.str());
    }
    used.push_back(file);
    const std::size_t records = bytes.size() / kRecordBytes;
    for (std::size_t r = 0; r < records; ++r) {
      if (limit > 0 && static_cast<int64_t>(labels.size()) >= limit) break;
      const std::uint8_t* record = bytes.data() + r * kRecordBytes;
      if (record[0] > 9) {
        std::ostringstream message;
        message << file << ": label " << int(record[0]) << " of record " << r
                << " is not a class in [0, 9]; the file is corrupt or not a CIFAR-10 binary "
                   "batch (CIFAR-100's binary layout has two label bytes). "
                << how_to_get(dir);
        throw std::runtime_error(message.str());
      }
      labels.push_back(record[0]);
      images.insert(images.end(), record + 1, record + kRecordBytes);
    }
  }

  const auto n = static_cast<int64_t>(labels.size());
  ImageSet set;
  set.images = at::empty({n, kChannels, kSide, kSide}, at::kByte);
  std::copy(images.begin(), images.end(), set.images.data_ptr<std::uint8_t>());
  set.labels = at::empty({n}, at::kLong);
  std::copy(labels.begin(), labels.end(), set.labels.data_ptr<int64_t>());
  set.files = used;
  return set;
}

}  // namespace vgg_train
