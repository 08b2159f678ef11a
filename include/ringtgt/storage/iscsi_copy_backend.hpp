// A LUN of another iSCSI target as a copy of a mirrored LUN: ringtgt is the
// initiator, through libiscsi's asynchronous API (docs/replication.md,
// "Remote copies").
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "ringtgt/storage/backend.hpp"

namespace ringtgt::storage {

struct IscsiCopyBackendOptions {
  std::string label;      // "copy NAME of target T LUN n", for log lines and errors
  std::string portal;     // "HOST:PORT" or "[V6]:PORT"
  std::string target;     // the remote target's name
  std::uint32_t lun = 0;  // the remote LUN
  std::string url;        // what describe() says
  std::string initiator;  // the InitiatorName ringtgt logs in with
  std::string chap_user;  // empty: no CHAP
  std::string chap_secret;
  // What the remote LUN must match: the same block size, at least this size
  // (the primary's); a mismatch is refused with an error naming the copy.
  std::uint32_t block_size = 512;
  std::uint64_t min_size = 0;
  WriteAckPolicy policy = WriteAckPolicy::writethrough;  // the primary's, reported as ours
  // A command (or a login) the remote target does not answer within this
  // fails, and the connection is dropped and made again.
  unsigned command_timeout_ms = 10000;
  // How long the constructor waits for the first connection before it lets
  // the LUN start with the copy still connecting.
  unsigned first_connect_wait_ms = 3000;
  // Reconnect attempts: the first after backoff_min_ms, doubling to backoff_max_ms.
  unsigned backoff_min_ms = 200;
  unsigned backoff_max_ms = 5000;
};

// One initiator thread owns the libiscsi context (a context is
// single-threaded, and the backend is shared by every reactor): it polls the
// context's socket and an eventfd that wakes it for new requests, and runs
// the context's event loop. Reactors queue requests to it under a mutex;
// each completion is handed back to the reactor that started the I/O through
// its ForeignCompletions, so the IoOp contract holds.
//
// - Writes are WRITE(16) with FUA: the remote target holds them durably
//   before they complete, whatever its cache setting; reads are READ(16),
//   flush SYNCHRONIZE CACHE(16). An unmap or zeroing goes as UNMAP (or
//   WRITE SAME(16) with UNMAP) where the remote LUN's deallocated blocks
//   read as zeroes (LBPRZ), else as WRITE SAME(16) of a zero block, else
//   (a target that refuses WRITE SAME) as writes of zeroes; then one
//   SYNCHRONIZE CACHE(16). So it always works (can_unmap), and a mirrored
//   LUN with a remote copy can be thin provisioned.
// - The login is three steps of our own (TCP connect, iSCSI login, TEST UNIT
//   READY until the unit attentions of a new nexus are consumed), not
//   iscsi_full_connect_async, whose state leaks when the context is
//   destroyed mid-login (libiscsi 1.19). libiscsi's auto-reconnect is off.
// - While not connected every I/O completes at once with -ENOTCONN. A lost
//   connection, or a command unanswered within command_timeout_ms, fails
//   the commands in flight; so does a NOP-Out ping (sent after 5 s without
//   a command) unanswered within command_timeout_ms; the thread reconnects in the background with
//   backoff, logging once per change of state, not per attempt.
// - At each connect READ CAPACITY(16) is checked against block_size and
//   min_size. At construction a mismatch throws; later (the remote LUN was
//   swapped) it is logged and the copy stays disconnected.
class IscsiCopyBackend final : public Backend {
 public:
  // Starts the initiator thread and waits up to first_connect_wait_ms for
  // it to connect. Throws std::runtime_error when the remote LUN answered
  // with the wrong block size or too small a capacity; an unreachable target
  // is not an error (the copy starts connecting).
  explicit IscsiCopyBackend(IscsiCopyBackendOptions options);
  ~IscsiCopyBackend() override;
  IscsiCopyBackend(const IscsiCopyBackend&) = delete;
  IscsiCopyBackend& operator=(const IscsiCopyBackend&) = delete;

  // The remote LUN's capacity once it has been read; min_size before.
  std::uint64_t size_bytes() const override;
  WriteAckPolicy ack_policy() const override { return options_.policy; }
  void read(void* buf, std::size_t len, std::uint64_t offset, IoOp* op) override;
  void write(const void* buf, std::size_t len, std::uint64_t offset, bool fua, IoOp* op) override;
  void flush(IoOp* op) override;
  bool can_unmap() const override { return true; }
  void unmap(std::uint64_t offset, std::uint64_t len, IoOp* op, bool more_follow) override;
  void write_zeroes(std::uint64_t offset, std::uint64_t len, bool fua, IoOp* op) override;
  std::string describe() const override { return options_.url; }
  std::string state() const override { return connected() ? "ready" : "connecting"; }
  bool connected() const override;
  std::uint64_t connections() const override;
  std::optional<RemoteLink> remote_link() const override;

 private:
  enum class Kind : std::uint8_t { read, write, flush, unmap, zeroes };
  struct Request;
  class Initiator;
  // Queues one operation to the initiator thread, or completes it at once
  // with -ENOTCONN while the copy is not connected.
  void submit(Kind kind, void* buf, std::size_t len, std::uint64_t offset, IoOp* op,
              bool more_follow = false);

  IscsiCopyBackendOptions options_;
  std::unique_ptr<Initiator> initiator_;
};

}  // namespace ringtgt::storage
