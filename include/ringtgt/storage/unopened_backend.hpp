// The stand-in for a store that could not be opened at start (an RBD image
// missing or too small), while it is retried in the background: the LUN keeps
// its number and identity, and its LogicalUnit (LunParams::becoming_ready)
// answers NOT READY before any command reaches this backend.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "ringtgt/metrics/store_counters.hpp"
#include "ringtgt/storage/backend.hpp"

namespace ringtgt::storage {

class UnopenedBackend final : public Backend {
 public:
  // spec: the store as the config names it ("rbd:POOL/IMAGE"); why: the
  // error of the first attempt. counters: the store's series on /metrics,
  // handed on to the store once it opens.
  UnopenedBackend(std::string spec, WriteAckPolicy policy, std::string why,
                  std::shared_ptr<metrics::StoreCounters> counters);

  std::uint64_t size_bytes() const override { return 0; }
  WriteAckPolicy ack_policy() const override { return policy_; }
  // Never reached through a LU that is becoming ready; answered as a store
  // that is away (NOT READY) should anything call them.
  void read(void* buf, std::size_t len, std::uint64_t offset, IoOp* op) override;
  void write(const void* buf, std::size_t len, std::uint64_t offset, bool fua, IoOp* op) override;
  void flush(IoOp* op) override;
  // An RBD image can deallocate: the LUN is thin from the start, as it will
  // be once open.
  bool can_unmap() const override { return true; }
  void unmap(std::uint64_t offset, std::uint64_t len, IoOp* op, bool more_follow) override;
  std::string describe() const override { return spec_; }
  std::string state() const override;
  std::shared_ptr<const metrics::StoreCounters> store_counters() const override {
    return counters_;
  }

  // The retry's latest failure (any thread).
  void set_reason(std::string why);

 private:
  std::string spec_;
  WriteAckPolicy policy_;
  mutable std::mutex mu_;
  std::string why_;
  std::shared_ptr<metrics::StoreCounters> counters_;
};

}  // namespace ringtgt::storage
