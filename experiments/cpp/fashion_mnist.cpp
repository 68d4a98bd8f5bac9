#include "fashion_mnist.h"

#include <algorithm>
#include <sstream>
#include <stdexcept>

#include "file_bytes.h"
#include "idx_format.h"

namespace vgg_train {
namespace {

constexpr int64_t kSide = 28;
constexpr int64_t kPad = 2;

std::string how_to_get(const std::string& dir) {
  return "Fashion-MNIST is expected in " + dir +
         " as train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
         "t10k-labels-idx1-ubyte (each plain or .gz). Install Debian's package "
         "dataset-fashion-mnist (files in " + kFashionMnistDefaultDir +
         "), or download them from https://github.com/zalandoresearch/fashion-mnist, and pass "
         "the folder with --data-dir";
}

// The plain file when present, else the gzipped one.
std::string find_file(const std::string& dir, const std::string& name) {
  std::string plain = dir + "/" + name;
  if (file_exists(plain)) return plain;
  if (file_exists(plain + ".gz")) return plain + ".gz";
  throw std::runtime_error("missing file " + plain + " (or " + plain + ".gz). " + how_to_get(dir));
}

std::vector<std::uint8_t> read_checked(const std::string& path, int ndims,
                                       const std::string& dir, IdxHeader* header) {
  try {
    std::vector<std::uint8_t> bytes = read_file_bytes(path);
    *header = parse_idx(bytes, ndims, path);
    return bytes;
  } catch (const std::runtime_error& error) {
    throw std::runtime_error(std::string(error.what()) + ". " + how_to_get(dir));
  }
}

}  // namespace

ImageSet load_fashion_mnist(const std::string& dir, bool train, int64_t limit) {
  if (!directory_exists(dir)) {
    throw std::runtime_error("data folder " + dir + " does not exist. " + how_to_get(dir));
  }
  const std::string prefix = train ? "train" : "t10k";
  const std::string images_path = find_file(dir, prefix + "-images-idx3-ubyte");
  const std::string labels_path = find_file(dir, prefix + "-labels-idx1-ubyte");

  IdxHeader image_header;
  IdxHeader label_header;
  const std::vector<std::uint8_t> image_bytes = read_checked(images_path, 3, dir, &image_header);
  const std::vector<std::uint8_t> label_bytes = read_checked(labels_path, 1, dir, &label_header);
  const int64_t count = image_header.dims[0];
  if (image_header.dims[1] != kSide || image_header.dims[2] != kSide) {
    std::ostringstream message;
    message << images_path << " holds images of " << image_header.dims[1] << "×"
            << image_header.dims[2] << " pixels, Fashion-MNIST's are " << kSide << "×" << kSide
            << ". " << how_to_get(dir);
    throw std::runtime_error(message.str());
  }
  if (label_header.dims[0] != count) {
    std::ostringstream message;
    message << labels_path << " holds " << label_header.dims[0] << " labels but " << images_path
            << " holds " << count << " images. " << how_to_get(dir);
    throw std::runtime_error(message.str());
  }
  if (count == 0) throw std::runtime_error(images_path + " holds no images. " + how_to_get(dir));
  const int64_t n = limit > 0 && limit < count ? limit : count;

  ImageSet set;
  at::Tensor labels = at::empty({n}, at::kLong);
  auto* label_out = labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    const std::uint8_t label = label_bytes[label_header.data_offset + static_cast<std::size_t>(i)];
    if (label > 9) {
      std::ostringstream message;
      message << labels_path << ": label " << int(label) << " of sample " << i
              << " is not a class in [0, 9]. " << how_to_get(dir);
      throw std::runtime_error(message.str());
    }
    label_out[i] = label;
  }
  at::Tensor raw = at::empty({n, 1, kSide, kSide}, at::kByte);
  std::copy_n(image_bytes.data() + image_header.data_offset,
              static_cast<std::size_t>(n * kSide * kSide), raw.data_ptr<std::uint8_t>());
  set.images = at::constant_pad_nd(raw, {kPad, kPad, kPad, kPad}, 0).contiguous();
  set.labels = labels;
  set.files = {images_path, labels_path};
  return set;
}

}  // namespace vgg_train
