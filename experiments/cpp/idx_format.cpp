#include "idx_format.h"

#include <sstream>
#include <stdexcept>

namespace vgg_train {

IdxHeader parse_idx(const std::vector<std::uint8_t>& bytes, int expected_ndims,
                    const std::string& path) {
  const std::size_t header_size = 4 + 4 * static_cast<std::size_t>(expected_ndims);
  if (bytes.size() < header_size) {
    std::ostringstream message;
    message << path << " is truncated: " << bytes.size() << " bytes, an IDX header with "
            << expected_ndims << " dimension(s) alone needs " << header_size;
    throw std::runtime_error(message.str());
  }
  if (bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 || bytes[3] != expected_ndims) {
    std::ostringstream message;
    message << path << " is not an IDX file of unsigned bytes with " << expected_ndims
            << " dimension(s): magic number 0x" << std::hex;
    for (int i = 0; i < 4; ++i) message << (bytes[i] < 16 ? "0" : "") << int(bytes[i]);
    message << ", expected 0x000008" << (expected_ndims < 16 ? "0" : "") << expected_ndims;
    throw std::runtime_error(message.str());
  }
  IdxHeader header;
  std::size_t expected_size = 1;
  for (int d = 0; d < expected_ndims; ++d) {
    const std::size_t at = 4 + 4 * static_cast<std::size_t>(d);
    const uint32_t dim = (uint32_t(bytes[at]) << 24) | (uint32_t(bytes[at + 1]) << 16) |
                         (uint32_t(bytes[at + 2]) << 8) | uint32_t(bytes[at + 3]);
    header.dims.push_back(static_cast<int64_t>(dim));
    expected_size *= dim;
  }
  expected_size += header_size;
  if (bytes.size() != expected_size) {
    std::ostringstream message;
    message << path << (bytes.size() < expected_size ? " is truncated" : " has trailing data")
            << ": " << bytes.size() << " bytes, its header declares " << expected_size;
    throw std::runtime_error(message.str());
  }
  header.data_offset = header_size;
  return header;
}

}  // namespace vgg_train
