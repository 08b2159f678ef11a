// What a backing store requires of a block size and of direct-I/O buffers.
#pragma once

#include <cstdint>
#include <string>

namespace ringtgt::storage {

struct IoAlignment {
  // A block device's logical block size (BLKSSZGET); 0 for a file.
  std::uint32_t logical_block = 0;
  // statx(STATX_DIOALIGN), Linux >= 6.1: the offset/length and memory
  // alignment O_DIRECT needs; 0 when the kernel or file system does not say.
  std::uint32_t dio_offset = 0;
  std::uint32_t dio_memory = 0;
  bool dio_known = false;  // the kernel answered STATX_DIOALIGN
};

// Throws std::system_error naming path when the device cannot be asked.
IoAlignment probe_io_alignment(int fd, bool block_device, const std::string& path);

// Throws std::runtime_error naming path and both numbers when block_size is
// smaller than what the store needs: a block device's logical block size, or
// (with O_DIRECT) its direct-I/O offset alignment; or when O_DIRECT wants
// buffers aligned more than block_size (the buffer pools align to 4096 and
// the logical unit addresses buffers in whole blocks).
void check_block_size(const IoAlignment& a, std::uint32_t block_size, bool direct_io,
                      const std::string& path);

}  // namespace ringtgt::storage
