// iSCSI header and data digests: CRC32C (RFC 7143 §13.1, RFC 3720 Appendix B.4),
// computed with ISA-L's hardware-accelerated crc32_iscsi.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ringtgt::iscsi {

// CRC32C of one byte range: the finished digest value as a number
// (crc32c("123456789") == 0xE3069283).
std::uint32_t crc32c(const void* data, std::size_t len);

// A digest computed over several ranges, e.g. BHS then AHS, or data then its padding.
class Crc32c {
 public:
  void update(const void* p, std::size_t n);
  // Feeds `n` zero bytes (the pad of a data segment, see padded()).
  void update_zeros(std::size_t n);
  std::uint32_t value() const { return ~state_; }
  void reset() { state_ = 0xffffffff; }

 private:
  std::uint32_t state_ = 0xffffffff;
};

// The data digest of a data segment of `len` bytes: covers the data and its zero padding
// up to the 4-byte boundary.
std::uint32_t data_digest(const void* data, std::size_t len);

// Digests go on the wire least significant byte first: the digest of 32 zero bytes,
// 0x8A9136AA, is sent as aa 36 91 8a (RFC 3720 B.4).
inline void store_digest(std::uint8_t* p, std::uint32_t digest) {
  p[0] = static_cast<std::uint8_t>(digest);
  p[1] = static_cast<std::uint8_t>(digest >> 8);
  p[2] = static_cast<std::uint8_t>(digest >> 16);
  p[3] = static_cast<std::uint8_t>(digest >> 24);
}
inline std::uint32_t load_digest(const std::uint8_t* p) {
  return std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 | std::uint32_t{p[2]} << 16 |
         std::uint32_t{p[3]} << 24;
}

// Digest errors seen on received PDUs (RFC 7143 §7.8). A header digest error
// closes the connection; a data digest error is answered with a Reject
// (reason 0x02 "data digest error") and, for SCSI data (Data-Out, immediate
// data), closes the connection too, since ErrorRecoveryLevel 0 cannot
// recover a task. Each is logged with the peer and initiator name.
struct DigestErrorCounts {
  std::uint64_t header = 0;
  std::uint64_t data = 0;
};

}  // namespace ringtgt::iscsi
