// INQUIRY: standard data and the vital product data pages (SPC-4 6.6, 7.8;
// SBC-3 6.5).
#include <algorithm>
#include <cstring>
#include <string_view>

#include "commands.hpp"
#include "ringtgt/scsi/cdb.hpp"

namespace ringtgt::scsi::detail {

namespace {

constexpr std::uint8_t kPageSupported = 0x00;
constexpr std::uint8_t kPageSerial = 0x80;
constexpr std::uint8_t kPageDeviceId = 0x83;
constexpr std::uint8_t kPageThirdPartyCopy = 0x8f;
constexpr std::uint8_t kPageBlockLimits = 0xb0;
constexpr std::uint8_t kPageBlockCharacteristics = 0xb1;
constexpr std::uint8_t kPageProvisioning = 0xb2;

// In ascending order (SPC-4 7.8.16).
constexpr std::uint8_t kSupportedPages[] = {
    kPageSupported,      kPageSerial,      kPageDeviceId,
    kPageThirdPartyCopy, kPageBlockLimits, kPageBlockCharacteristics,
    kPageProvisioning,
};

// Version descriptors: SAM-5, iSCSI, SPC-4, SBC-3 (no version claimed).
constexpr std::uint16_t kVersionDescriptors[] = {0x00a0, 0x0960, 0x0460, 0x04c0};

constexpr std::size_t kStandardLength = 96;
// Serial numbers longer than this are cut so every page fits one designator
// (whose length is one byte) and the stack buffer below.
constexpr std::size_t kMaxSerial = 200;

// SPC requires printable ASCII in identification fields; configuration
// strings are not trusted to be.
char printable(char ch) {
  return ch >= 0x20 && ch <= 0x7e ? ch : '_';
}

// Copies s into a field of width bytes, left-aligned and space-padded.
void put_padded(std::uint8_t* out, std::size_t width, std::string_view s) {
  std::memset(out, ' ', width);
  const std::size_t n = std::min(width, s.size());
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::uint8_t>(printable(s[i]));
}

// Copies up to max bytes of s; returns how many were copied.
std::size_t put_string(std::uint8_t* out, std::size_t max, std::string_view s) {
  const std::size_t n = std::min(max, s.size());
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::uint8_t>(printable(s[i]));
  return n;
}

std::size_t standard_data(const LunParams& params, std::uint8_t peripheral, std::uint8_t* out) {
  std::memset(out, 0, kStandardLength);
  out[0] = peripheral;
  out[2] = 0x06;                 // SPC-4
  out[3] = 0x10 | 0x02;          // HiSup, response data format 2
  out[4] = kStandardLength - 5;  // additional length
  out[7] = 0x02;                 // CmdQue
  // 3PC: a present LU is its own copy manager (EXTENDED COPY).
  if (peripheral == peripheral_disk) out[5] = 0x08;
  put_padded(&out[8], 8, params.vendor);
  put_padded(&out[16], 16, params.product);
  put_padded(&out[32], 4, params.revision);
  for (std::size_t i = 0; i < std::size(kVersionDescriptors); ++i) {
    put_be16(&out[58 + 2 * i], kVersionDescriptors[i]);
  }
  return kStandardLength;
}

// Each page builder writes the whole page (header included) and returns its
// length; out has room for 512 bytes.
std::size_t page_supported(std::uint8_t* out) {
  std::memcpy(&out[4], kSupportedPages, sizeof kSupportedPages);
  put_be16(&out[2], sizeof kSupportedPages);
  return 4 + sizeof kSupportedPages;
}

std::size_t page_serial(const LunParams& params, std::uint8_t* out) {
  const std::size_t n = put_string(&out[4], kMaxSerial, params.serial);
  put_be16(&out[2], static_cast<std::uint16_t>(n));
  return 4 + n;
}

std::size_t page_device_id(const LunParams& params, std::uint8_t* out) {
  std::size_t pos = 4;
  // NAA IEEE Registered (NAA 6), binary, associated with the logical unit.
  out[pos + 0] = 0x01;  // protocol identifier 0, code set binary
  out[pos + 1] = 0x03;  // PIV 0, association LU, designator type NAA
  out[pos + 3] = 8;
  put_be64(&out[pos + 4], naa_designator(params));
  pos += 4 + 8;
  // T10 vendor ID based: an 8-byte vendor identification then the serial.
  out[pos + 0] = 0x02;  // code set ASCII
  out[pos + 1] = 0x01;  // association LU, designator type T10 vendor ID
  std::memcpy(&out[pos + 4], "RINGTGT ", 8);
  const std::size_t n = 8 + put_string(&out[pos + 12], kMaxSerial, params.serial);
  out[pos + 3] = static_cast<std::uint8_t>(n);
  pos += 4 + n;
  put_be16(&out[2], static_cast<std::uint16_t>(pos - 4));
  return pos;
}

std::size_t page_block_limits(const LunParams& params, std::uint8_t* out) {
  const std::uint32_t bs = params.block_size;
  put_be16(&out[2], 0x3c);
  // OPTIMAL TRANSFER LENGTH GRANULARITY: a physical block, at least 4 KiB
  // (the page and file-system block under a file-backed LU).
  const std::uint32_t granule = std::max<std::uint32_t>(4096, params.physical_block_size());
  put_be16(&out[6], static_cast<std::uint16_t>(std::max<std::uint32_t>(1, granule / bs)));
  put_be32(&out[8], params.max_transfer_blocks());
  put_be32(&out[12], std::max<std::uint32_t>(
                         1, std::min(optimal_transfer_bytes, params.max_transfer_bytes) / bs));
  out[5] = max_compare_and_write_blocks;
  // WSNZ 0 and MAXIMUM WRITE SAME LENGTH 0: WRITE SAME takes any length,
  // zero blocks meaning to the end of the medium. UNMAP limits only where
  // UNMAP works (a thin LU); zero otherwise.
  if (params.thin_provisioned) {
    put_be32(&out[20], max_unmap_lba_count);
    put_be32(&out[24], max_unmap_descriptors);
    put_be32(&out[28], std::max(optimal_unmap_granularity(bs), granule / bs));
    out[32] = 0x80;  // UGAVALID, UNMAP GRANULARITY ALIGNMENT 0
  }
  // WRITE ATOMIC(16) (SBC-4 r22 6.6.4): up to max_atomic_transfer_blocks,
  // at any LBA and of any length (ATOMIC ALIGNMENT and ATOMIC TRANSFER
  // LENGTH GRANULARITY 0); with an ATOMIC BOUNDARY the same limits, since the
  // whole transfer is atomic, which any boundary inside it is too.
  const std::uint32_t atomic_blocks = max_atomic_transfer_blocks(bs);
  put_be32(&out[44], atomic_blocks);
  put_be32(&out[56], atomic_blocks);
  put_be32(&out[60], atomic_blocks);
  return 4 + 0x3c;
}

std::size_t page_block_characteristics(const LunParams& params, std::uint8_t* out) {
  put_be16(&out[2], 0x3c);
  put_be16(&out[4], 0x0001);  // medium rotation rate: non-rotating medium
  // WABEREQ 01b where SANITIZE BLOCK ERASE is offered: a read after it
  // returns GOOD (zeroes) (SBC-4 r22 6.6.2); WACEREQ 0, no CRYPTOGRAPHIC ERASE.
  if (params.allow_sanitize) out[7] = 0x40;
  return 4 + 0x3c;
}

std::size_t page_provisioning(const LunParams& params, std::uint8_t* out) {
  put_be16(&out[2], 0x0004);
  // Fully provisioned: no UNMAP or WRITE SAME unmapping, provisioning type
  // not reported; all zero. Thin: UNMAP (LBPU), WRITE SAME(16) and (10) with
  // UNMAP (LBPWS, LBPWS10), unmapped blocks read as zeroes (LBPRZ 001b; see
  // reports_lbprz), no
  // anchored state (ANC_SUP 0), PROVISIONING TYPE 010b.
  if (params.thin_provisioned) {
    out[5] = 0x80 | 0x40 | 0x20 | (reports_lbprz(params) ? 0x04 : 0x00);
    out[6] = 0x02;
  }
  return 4 + 4;
}

}  // namespace

void inquiry(const LogicalUnit* lu, Task& task) {
  const auto& c = task.cdb;
  const bool evpd = c[1] & 0x01;
  const bool cmddt = c[1] & 0x02;
  const std::uint8_t page = c[2];
  const std::uint32_t alloc = get_be16(&c[3]);
  task.transfer_length = alloc;
  if (cmddt || (!evpd && page != 0)) {
    task.fail(sense::invalid_field_in_cdb);
    return task.complete();
  }

  std::uint8_t out[512] = {};
  static const LunParams absent_params{};
  if (!evpd) {
    const auto& params = lu != nullptr ? lu->params() : absent_params;
    const std::size_t n = standard_data(params, lu ? peripheral_disk : peripheral_absent, out);
    return finish_data_in(task, out, n, alloc);
  }
  if (lu == nullptr) {
    task.fail(sense::lun_not_supported);
    return task.complete();
  }

  const LunParams& params = lu->params();
  out[0] = peripheral_disk;
  out[1] = page;
  std::size_t n;
  switch (page) {
    case kPageSupported:
      n = page_supported(out);
      break;
    case kPageSerial:
      n = page_serial(params, out);
      break;
    case kPageDeviceId:
      n = page_device_id(params, out);
      break;
    case kPageBlockLimits:
      n = page_block_limits(params, out);
      break;
    case kPageBlockCharacteristics:
      n = page_block_characteristics(params, out);
      break;
    case kPageProvisioning:
      n = page_provisioning(params, out);
      break;
    case kPageThirdPartyCopy:
      n = third_party_copy_page(params, out);
      break;
    default:
      task.fail(sense::invalid_field_in_cdb);
      return task.complete();
  }
  finish_data_in(task, out, n, alloc);
}

}  // namespace ringtgt::scsi::detail
