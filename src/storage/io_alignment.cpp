#include "ringtgt/storage/io_alignment.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <cerrno>
#include <stdexcept>
#include <system_error>

#include "ringtgt/reactor/buffer_pool.hpp"

namespace ringtgt::storage {

IoAlignment probe_io_alignment(int fd, bool block_device, const std::string& path) {
  IoAlignment a;
  if (block_device) {
    int logical = 0;
    if (::ioctl(fd, BLKSSZGET, &logical) != 0) {
      throw std::system_error(errno, std::generic_category(),
                              "cannot read the logical block size of " + path);
    }
    a.logical_block = static_cast<std::uint32_t>(logical);
  }
#ifdef STATX_DIOALIGN
  struct statx sx {};
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 && (sx.stx_mask & STATX_DIOALIGN)) {
    a.dio_known = true;
    a.dio_offset = sx.stx_dio_offset_align;
    a.dio_memory = sx.stx_dio_mem_align;
  }
#endif
  return a;
}

namespace {
[[noreturn]] void refuse(const std::string& why) {
  throw std::runtime_error(why);
}
}  // namespace

void check_block_size(const IoAlignment& a, std::uint32_t block_size, bool direct_io,
                      const std::string& path) {
  const std::string bs = std::to_string(block_size);
  if (a.logical_block != 0 && block_size < a.logical_block) {
    refuse("block_size " + bs + " is smaller than the logical block size " +
           std::to_string(a.logical_block) + " of " + path +
           "; set block_size = " + std::to_string(a.logical_block));
  }
  if (!direct_io || !a.dio_known) return;
  if (a.dio_offset == 0) {
    refuse(path + " does not support direct I/O (O_DIRECT); set direct_io = false");
  }
  if (block_size < a.dio_offset) {
    refuse("block_size " + bs + " is smaller than the direct-I/O alignment " +
           std::to_string(a.dio_offset) + " of " + path +
           "; set block_size = " + std::to_string(a.dio_offset) + " or direct_io = false");
  }
  if (a.dio_memory > block_size || a.dio_memory > reactor::BufferPool::kAlignment) {
    refuse(path + " needs direct-I/O buffers aligned to " + std::to_string(a.dio_memory) +
           " bytes, more than block_size " + bs +
           " (or the 4096 of the buffer pools) gives; "
           "set direct_io = false");
  }
}

}  // namespace ringtgt::storage
