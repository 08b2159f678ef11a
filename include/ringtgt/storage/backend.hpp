// The block interface a logical unit executes against.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "ringtgt/metrics/mirror_counters.hpp"
#include "ringtgt/metrics/store_counters.hpp"
#include "ringtgt/reactor/io_engine.hpp"
#include "ringtgt/storage/write_ack_policy.hpp"

namespace ringtgt::storage {

using reactor::IoOp;

// Asynchronous block store. Offsets and lengths are in bytes; the logical unit
// keeps them aligned to its block size. Completions run on the calling thread
// (maybe before the call returns) with bytes moved or -errno. A backend is
// shared by the connections of every reactor that serves its LUN, so it keeps
// no per-I/O state of its own.
class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::uint64_t size_bytes() const = 0;
  virtual WriteAckPolicy ack_policy() const = 0;
  bool write_cache_enabled() const { return ack_policy() == WriteAckPolicy::writeback; }

  virtual void read(void* buf, std::size_t len, std::uint64_t offset, IoOp* op) = 0;
  // fua: durable before completion whatever the policy.
  virtual void write(const void* buf, std::size_t len, std::uint64_t offset, bool fua,
                     IoOp* op) = 0;
  // Makes every completed write durable.
  virtual void flush(IoOp* op) = 0;

  // --- logical block provisioning ---
  // Whether unmap works on this store (probed when it is opened): what a
  // thin-provisioned LUN needs, and what LBPME reports.
  virtual bool can_unmap() const { return false; }
  // Deallocates [offset, offset + len): later reads of it return zeroes.
  // Completes with 0 or -errno. Under writethrough this deallocation, and
  // any earlier ones, are durable before it completes, unless more_follow:
  // the caller's next unmap (of the same command) will make them durable
  // with its own, so a list of ranges costs one sync.
  virtual void unmap(std::uint64_t offset, std::uint64_t len, IoOp* op, bool more_follow = false);
  // Makes [offset, offset + len) read as zeroes and keeps it allocated,
  // without moving the zeroes through memory. Completes with 0 or -errno;
  // -EOPNOTSUPP when the store cannot (the caller then writes zeroes).
  // Durable before completion under writethrough or with fua.
  virtual void write_zeroes(std::uint64_t offset, std::uint64_t len, bool fua, IoOp* op);
  // The provisioning state at offset: whether it is mapped, and for how many
  // bytes (at most max_len) that state lasts. Synchronous (lseek on a file:
  // metadata only, and GET LBA STATUS is rare); a store that cannot tell
  // reports everything mapped.
  struct Extent {
    bool mapped;
    std::uint64_t length;
  };
  virtual Extent extent_at(std::uint64_t offset, std::uint64_t max_len) {
    (void)offset;
    return {true, max_len};
  }
  // --- COMPARE AND WRITE done by the store ---
  // Whether the store compares and writes atomically by itself, against every
  // client of it (a second gateway too), not only under this LU's range lock.
  virtual bool can_compare_and_write() const { return false; }
  // Writes data over [offset, offset + len) if it holds compare. Completes with
  // len, -EILSEQ with *mismatch_offset set to the byte offset in the store of
  // the first difference, -EOPNOTSUPP when the store cannot do this request
  // (the caller then compares and writes itself), or -errno.
  virtual void compare_and_write(const void* compare, const void* data, std::size_t len,
                                 std::uint64_t offset, bool fua, std::uint64_t* mismatch_offset,
                                 IoOp* op);

  // Makes the store at least bytes long (a file grows sparse; a block device is sized
  // again after the volume was extended). Control plane only; throws std::runtime_error
  // saying why it cannot.
  virtual void grow_to(std::uint64_t bytes);

  // --- a store reached over the network (a remote copy) ---
  // Whether it is connected now; a local store always is.
  virtual bool connected() const { return true; }
  // How many times it has connected so far (each reconnect counts one); 0
  // for a local store. A mirror resyncs a copy whose store connected again.
  virtual std::uint64_t connections() const { return 0; }

  // What a remote copy's last login found out about its LUN (copy list);
  // nothing for a local store.
  struct RemoteLink {
    std::uint64_t max_transfer_bytes = 0;  // the largest command it takes; 0: no limit stated
    std::string unmaps_as;  // how an unmap reaches it: "UNMAP", ...; "" before a login
  };
  virtual std::optional<RemoteLink> remote_link() const { return std::nullopt; }

  // A remote store's own latency and availability (/metrics); nullptr for a
  // local one.
  virtual std::shared_ptr<const metrics::StoreCounters> store_counters() const { return nullptr; }
  // A mirrored LUN's copies, read repairs and quorum losses (/metrics);
  // nullptr for a LUN without copies.
  virtual std::shared_ptr<const metrics::MirrorCounters> mirror_counters() const { return nullptr; }

  // For log lines and errors: the file, device or "memory".
  virtual std::string describe() const = 0;

  // For ringtgtctl lun list: "ready", or why the store does not serve now.
  virtual std::string state() const { return "ready"; }
};

}  // namespace ringtgt::storage
