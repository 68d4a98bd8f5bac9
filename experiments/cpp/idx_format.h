// The IDX format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/):
// two zero bytes, a type byte (0x08: unsigned byte), the number of dimensions,
// the dimensions as big-endian 32-bit integers, then the data in C order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vgg_train {

/// The header of an IDX file of unsigned bytes.
struct IdxHeader {
  std::vector<int64_t> dims;
  std::size_t data_offset = 0;
};

/// Parses and checks the header of `bytes` (read from `path`): the magic
/// number must be 0x0000 08 `expected_ndims` and the file must hold exactly
/// the bytes its dimensions declare. Throws std::runtime_error naming `path`.
IdxHeader parse_idx(const std::vector<std::uint8_t>& bytes, int expected_ndims,
                    const std::string& path);

}  // namespace vgg_train
