#include "verify_state.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace ringtgt::bench {

namespace {
struct StateHeader {
  char magic[8];
  std::uint32_t version;
  std::uint32_t block_size;
  std::uint64_t first_lba;
  std::uint64_t nblocks;
  std::uint32_t next_gen;
  std::uint32_t pad;
};
constexpr char kStateMagic[8] = {'R', 'T', 'G', 'T', 'V', 'S', 'T', '1'};
}  // namespace

std::string read_verify_state(const std::string& path, VerifyState& out) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return path + ": " + std::strerror(errno);
  StateHeader h{};
  std::string why;
  if (std::fread(&h, sizeof h, 1, f) != 1 || std::memcmp(h.magic, kStateMagic, 8) != 0 ||
      h.version != 1) {
    why = path + " is not a ringtgt-bench state file";
  } else {
    out.block_size = h.block_size;
    out.first_lba = h.first_lba;
    out.next_gen = h.next_gen;
    out.table.assign(h.nblocks, BlockState{});
    if (std::fread(out.table.data(), sizeof(BlockState), out.table.size(), f) != out.table.size())
      why = path + " is truncated";
  }
  std::fclose(f);
  return why;
}

std::string write_verify_state(const std::string& path, const VerifyState& s) {
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return tmp + ": " + std::strerror(errno);
  StateHeader h{};
  std::memcpy(h.magic, kStateMagic, 8);
  h.version = 1;
  h.block_size = s.block_size;
  h.first_lba = s.first_lba;
  h.nblocks = s.table.size();
  h.next_gen = s.next_gen;
  bool ok = std::fwrite(&h, sizeof h, 1, f) == 1 &&
            std::fwrite(s.table.data(), sizeof(BlockState), s.table.size(), f) == s.table.size();
  ok = (std::fclose(f) == 0) && ok;
  if (ok && std::rename(tmp.c_str(), path.c_str()) != 0) ok = false;
  return ok ? std::string() : "cannot write " + path + ": " + std::strerror(errno);
}

}  // namespace ringtgt::bench
