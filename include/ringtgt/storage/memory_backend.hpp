// A backend in RAM: for unit tests of the layers above, and for the demo.
#pragma once

#include <vector>

#include "ringtgt/storage/backend.hpp"
#include "ringtgt/storage/durability_log.hpp"

namespace ringtgt::storage {

// Completes every operation synchronously. An injected error makes the
// operations that touch a byte range fail with that errno (tests of the
// MEDIUM ERROR path).
class MemoryBackend final : public Backend {
 public:
  explicit MemoryBackend(std::uint64_t size_bytes,
                         WriteAckPolicy policy = WriteAckPolicy::writethrough);

  std::uint64_t size_bytes() const override { return data_.size(); }
  WriteAckPolicy ack_policy() const override { return policy_; }
  void read(void* buf, std::size_t len, std::uint64_t offset, IoOp* op) override;
  void write(const void* buf, std::size_t len, std::uint64_t offset, bool fua, IoOp* op) override;
  void flush(IoOp* op) override;
  bool can_unmap() const override { return unmap_supported_; }
  void unmap(std::uint64_t offset, std::uint64_t len, IoOp* op, bool more_follow = false) override;
  void write_zeroes(std::uint64_t offset, std::uint64_t len, bool fua, IoOp* op) override;
  Extent extent_at(std::uint64_t offset, std::uint64_t max_len) override;
  std::string describe() const override { return "memory"; }

  // Tests of a store that cannot deallocate.
  void set_unmap_supported(bool on) { unmap_supported_ = on; }
  unsigned unmap_count() const { return unmaps_; }
  // Unmaps that were to be durable on completion (not more_follow).
  unsigned final_unmap_count() const { return final_unmaps_; }
  unsigned write_zeroes_count() const { return zeroings_; }
  // Mapping is tracked in units of kMapUnit bytes; a fresh backend is all
  // deallocated (it reads zeroes), a write maps what it touches, and an
  // unmap deallocates the units it covers whole (and zeroes the rest).
  static constexpr std::uint64_t kMapUnit = 512;

  void inject_error(std::uint64_t offset, std::uint64_t len, int err);
  // The recording seam (tests): every write, zeroing and flush from now on,
  // hashed per block_size. RAM has no cache, so a write is durable when the
  // policy or FUA asks for it, and otherwise once a flush follows it.
  void set_durability_log(DurabilityLog* log, std::uint32_t block_size);
  std::uint8_t* data() { return data_.data(); }
  unsigned flush_count() const { return flushes_; }
  unsigned fua_write_count() const { return fua_writes_; }

 private:
  bool failing(std::uint64_t offset, std::uint64_t len) const;
  void record_write(const void* data, std::uint64_t offset, std::uint64_t len, bool durable,
                    IoOp* op);
  void set_mapped(std::uint64_t offset, std::uint64_t len, bool mapped);
  bool in_bounds(std::uint64_t offset, std::uint64_t len) const {
    return offset <= data_.size() && len <= data_.size() - offset;
  }

  std::vector<std::uint8_t> data_;
  WriteAckPolicy policy_;
  std::uint64_t err_offset_ = 0, err_len_ = 0;
  int err_ = 0;
  unsigned flushes_ = 0, fua_writes_ = 0;
  std::vector<bool> mapped_;  // one per kMapUnit
  bool unmap_supported_ = true;
  unsigned unmaps_ = 0, final_unmaps_ = 0, zeroings_ = 0;
  DurabilityLog* log_ = nullptr;
  std::uint32_t store_ = 0, block_size_ = 0;
};

}  // namespace ringtgt::storage
