#include "ringtgt/iscsi/digest.hpp"

#include <isa-l/crc.h>

#include <atomic>
#include <climits>

namespace ringtgt::iscsi {

void Crc32c::update(const void* p, std::size_t n) {
  // crc32_iscsi neither pre- nor post-inverts, so the running state chains across calls.
  auto* bytes = static_cast<unsigned char*>(const_cast<void*>(p));
  while (n > 0) {
    int chunk = n > INT_MAX ? INT_MAX : static_cast<int>(n);
    state_ = crc32_iscsi(bytes, chunk, state_);
    bytes += chunk;
    n -= static_cast<std::size_t>(chunk);
  }
}

void Crc32c::update_zeros(std::size_t n) {
  static const unsigned char zeros[64] = {};
  while (n > 0) {
    std::size_t chunk = n < sizeof zeros ? n : sizeof zeros;
    update(zeros, chunk);
    n -= chunk;
  }
}

std::uint32_t crc32c(const void* data, std::size_t len) {
  Crc32c c;
  c.update(data, len);
  return c.value();
}

std::uint32_t data_digest(const void* data, std::size_t len) {
  Crc32c c;
  c.update(data, len);
  c.update_zeros((4 - len % 4) % 4);
  return c.value();
}

}  // namespace ringtgt::iscsi
