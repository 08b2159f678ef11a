#include "block_format.hpp"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace ringtgt::bench {
namespace {

constexpr unsigned char kMagic[8] = {'R', 'T', 'G', 'T', 'B', 'N', 'C', '1'};

// Reflected CRC32C (Castagnoli) polynomial.
constexpr std::uint32_t kPoly = 0x82F63B78u;

constexpr std::array<std::uint32_t, 256> make_table() {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; i++) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
    t[i] = c;
  }
  return t;
}

constexpr auto kTable = make_table();

std::uint32_t crc32c_sw(std::uint32_t crc, const unsigned char* p, std::size_t n) {
  crc = ~crc;
  for (std::size_t i = 0; i < n; i++) crc = kTable[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) std::uint32_t crc32c_hw(std::uint32_t crc, const unsigned char* p,
                                                          std::size_t n) {
  std::uint64_t c = ~crc;
  while (n >= 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    c = _mm_crc32_u64(c, w);
    p += 8;
    n -= 8;
  }
  std::uint32_t c32 = static_cast<std::uint32_t>(c);
  while (n > 0) {
    c32 = _mm_crc32_u8(c32, *p++);
    n--;
  }
  return ~c32;
}

bool have_hw() {
  static const bool hw = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2") != 0;
  }();
  return hw;
}
#endif

void put_u32(unsigned char* p, std::uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
void put_u64(unsigned char* p, std::uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
std::uint32_t get_u32(const unsigned char* p) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}
std::uint64_t get_u64(const unsigned char* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

std::uint32_t block_crc(const unsigned char* p, std::uint32_t block_size) {
  std::uint32_t c = crc32c(0, p, 32);
  return crc32c(c, p + kHeaderBytes, block_size - kHeaderBytes);
}

}  // namespace

std::uint32_t crc32c(std::uint32_t crc, const unsigned char* p, std::size_t n) {
#if defined(__x86_64__)
  if (have_hw()) return crc32c_hw(crc, p, n);
#endif
  return crc32c_sw(crc, p, n);
}

void fill_block(unsigned char* out, std::uint32_t block_size, std::uint64_t lba, std::uint64_t gen,
                std::uint32_t session) {
  std::memcpy(out, kMagic, 8);
  put_u64(out + 8, lba);
  put_u64(out + 16, gen);
  put_u32(out + 24, session);
  put_u32(out + 28, block_size);
  put_u32(out + 32, 0);
  put_u32(out + 36, 0);
  // Filler: a splitmix64 sequence seeded by (LBA, generation), so two writes of
  // the same LBA differ in every word.
  std::uint64_t s = lba * 0x9E3779B97F4A7C15ull ^ (gen + 0xD1B54A32D192ED03ull);
  for (std::uint32_t off = kHeaderBytes; off + 8 <= block_size; off += 8) {
    s += 0x9E3779B97F4A7C15ull;
    std::uint64_t z = s;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    std::memcpy(out + off, &z, 8);
  }
  put_u32(out + 32, block_crc(out, block_size));
}

BlockInfo inspect_block(const unsigned char* p, std::uint32_t block_size, std::uint64_t lba) {
  BlockInfo info;
  if (std::memcmp(p, kMagic, 8) != 0) {
    // Zero check: word-wise.
    for (std::uint32_t off = 0; off + 8 <= block_size; off += 8) {
      std::uint64_t w;
      std::memcpy(&w, p + off, 8);
      if (w != 0) {
        info.kind = BlockKind::kBadMagic;
        return info;
      }
    }
    info.kind = BlockKind::kZero;
    return info;
  }
  info.lba = get_u64(p + 8);
  info.gen = get_u64(p + 16);
  info.session = get_u32(p + 24);
  if (get_u32(p + 28) != block_size) {
    info.kind = BlockKind::kBadSize;
    return info;
  }
  if (get_u32(p + 32) != block_crc(p, block_size)) {
    info.kind = BlockKind::kBadChecksum;
    return info;
  }
  info.kind = info.lba == lba ? BlockKind::kValid : BlockKind::kMisplaced;
  return info;
}

const char* block_kind_name(BlockKind k) {
  switch (k) {
    case BlockKind::kZero:
      return "zeros";
    case BlockKind::kValid:
      return "valid";
    case BlockKind::kBadMagic:
      return "foreign data (no block magic)";
    case BlockKind::kBadChecksum:
      return "checksum mismatch";
    case BlockKind::kBadSize:
      return "written with another block size";
    case BlockKind::kMisplaced:
      return "block of another LBA";
  }
  return "?";
}

}  // namespace ringtgt::bench
