// Self-describing blocks for ringtgt-bench --verify.
//
// Every logical block of a verified write carries, little endian:
//
//   offset  size  field
//        0     8  magic "RTGTBNC1"
//        8     8  LBA the block was written to
//       16     8  generation (unique per write command, increasing over a run)
//       24     4  session index of the writer
//       28     4  logical block size
//       32     4  CRC32C over bytes [0, 32) and [40, block size)
//       36     4  zero
//       40   ...  filler from a generator seeded by (LBA, generation)
//
// A block that was never written reads as all zeros; anything else that is not
// a well-formed block for its LBA is corruption.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ringtgt::bench {

inline constexpr std::size_t kHeaderBytes = 40;

std::uint32_t crc32c(std::uint32_t crc, const unsigned char* p, std::size_t n);

// Writes one self-describing block of block_size bytes at out.
void fill_block(unsigned char* out, std::uint32_t block_size, std::uint64_t lba, std::uint64_t gen,
                std::uint32_t session);

enum class BlockKind {
  kZero,         // all zeros
  kValid,        // well-formed, LBA matches; gen/session filled in
  kBadMagic,     // neither zeros nor one of our blocks
  kBadChecksum,  // our magic, but the CRC does not match (torn or corrupted)
  kBadSize,      // our block, written with another logical block size
  kMisplaced,    // well-formed block of another LBA
};

struct BlockInfo {
  BlockKind kind = BlockKind::kZero;
  std::uint64_t lba = 0;
  std::uint64_t gen = 0;
  std::uint32_t session = 0;
};

BlockInfo inspect_block(const unsigned char* p, std::uint32_t block_size, std::uint64_t lba);

const char* block_kind_name(BlockKind k);

}  // namespace ringtgt::bench
