// The counters every layer bumps and the Prometheus collector reads.
//
// Header-only and free of dependencies, so that reactor/, scsi/, iscsi/ and
// net/ can count without linking the collector (src/metrics, which sits
// beside the daemon and is the only part that knows prometheus-cpp).
//
// Per-I/O counters are per reactor thread: each LUN has one LunCounters block
// per worker (LunStats), written only by that worker with relaxed loads and
// stores (no locked instruction, no cache line shared between writers) and
// read by the scraper, which sums the blocks. Rare events (logins, Rejects,
// digest errors, sessions) go to process-wide atomics.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace ringtgt::metrics {

// A counter with one writer thread and any number of readers.
class LocalCounter {
 public:
  void add(std::uint64_t n = 1) {
    value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  std::uint64_t get() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

// ---------------------------------------------------------------- per LUN

// What a SCSI command does, by its operation code.
enum class OpKind : std::uint8_t { read, write, flush, unmap, other };
inline constexpr std::size_t kOpKinds = 5;

constexpr const char* to_string(OpKind k) {
  switch (k) {
    case OpKind::read:
      return "read";
    case OpKind::write:
      return "write";
    case OpKind::flush:
      return "flush";
    case OpKind::unmap:
      return "unmap";
    case OpKind::other:
      return "other";
  }
  return "other";
}

constexpr OpKind op_kind(std::uint8_t opcode) {
  switch (opcode) {
    case 0x08:  // READ(6)
    case 0x28:  // READ(10)
    case 0xa8:  // READ(12)
    case 0x88:  // READ(16)
      return OpKind::read;
    case 0x0a:  // WRITE(6)
    case 0x2a:  // WRITE(10)
    case 0xaa:  // WRITE(12)
    case 0x8a:  // WRITE(16)
    case 0x2e:  // WRITE AND VERIFY(10)
    case 0x8e:  // WRITE AND VERIFY(16)
    case 0x89:  // COMPARE AND WRITE
    case 0x41:  // WRITE SAME(10)
    case 0x93:  // WRITE SAME(16)
      return OpKind::write;
    case 0x35:  // SYNCHRONIZE CACHE(10)
    case 0x91:  // SYNCHRONIZE CACHE(16)
      return OpKind::flush;
    case 0x42:  // UNMAP
      return OpKind::unmap;
    default:
      return OpKind::other;
  }
}

// Latency histogram: upper bounds 10 us .. 1 s in a 1-2-5 series (log-spaced,
// readable "le" labels), then +Inf.
inline constexpr std::array<std::uint64_t, 16> kLatencyBoundsNs = {
    10'000,      20'000,      50'000,      100'000,      200'000,    500'000,
    1'000'000,   2'000'000,   5'000'000,   10'000'000,   20'000'000, 50'000'000,
    100'000'000, 200'000'000, 500'000'000, 1'000'000'000};
inline constexpr std::size_t kLatencyBuckets = kLatencyBoundsNs.size() + 1;  // + overflow

// Index of the bucket ns falls in: the first bound >= ns (Prometheus "le"),
// kLatencyBoundsNs.size() above the last bound.
constexpr std::size_t latency_bucket(std::uint64_t ns) {
  std::size_t lo = 0, hi = kLatencyBoundsNs.size();
  while (lo < hi) {
    std::size_t mid = (lo + hi) / 2;
    if (kLatencyBoundsNs[mid] < ns)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

// Why a command did not end GOOD: its sense key (CHECK CONDITION), or its status.
inline constexpr std::size_t kSenseKeys = 16;
enum class StatusReason : std::uint8_t {
  busy = kSenseKeys,
  reservation_conflict,
  task_set_full,
  aca_active,
  task_aborted,
  other_status,
};
inline constexpr std::size_t kErrorReasons = kSenseKeys + 6;

constexpr const char* error_reason_name(std::size_t i) {
  constexpr const char* names[kErrorReasons] = {
      "no_sense",       "recovered_error",      "not_ready",      "medium_error",
      "hardware_error", "illegal_request",      "unit_attention", "data_protect",
      "blank_check",    "vendor_specific",      "copy_aborted",   "aborted_command",
      "sense_key_0c",   "volume_overflow",      "miscompare",     "completed",
      "busy",           "reservation_conflict", "task_set_full",  "aca_active",
      "task_aborted",   "other_status"};
  return i < kErrorReasons ? names[i] : "other_status";
}

// The error reason of a SCSI status byte and (for CHECK CONDITION) sense key;
// kErrorReasons for GOOD and CONDITION MET.
constexpr std::size_t error_reason(std::uint8_t status, std::uint8_t sense_key) {
  switch (status) {
    case 0x00:
    case 0x04:
      return kErrorReasons;
    case 0x02:
      return sense_key & 0x0f;
    case 0x08:
      return static_cast<std::size_t>(StatusReason::busy);
    case 0x18:
      return static_cast<std::size_t>(StatusReason::reservation_conflict);
    case 0x28:
      return static_cast<std::size_t>(StatusReason::task_set_full);
    case 0x30:
      return static_cast<std::size_t>(StatusReason::aca_active);
    case 0x40:
      return static_cast<std::size_t>(StatusReason::task_aborted);
    default:
      return static_cast<std::size_t>(StatusReason::other_status);
  }
}

// One worker's counts for one LUN. Cache-line aligned so two workers' blocks
// never share a line.
struct alignas(64) LunCounters {
  struct PerKind {
    LocalCounter bytes;           // Data-In / Data-Out bytes of commands that succeeded
    LocalCounter latency_sum_ns;  // every completed command
    std::array<LocalCounter, kLatencyBuckets> buckets;  // not cumulative; sum = operations
  };
  std::array<PerKind, kOpKinds> kinds;
  std::array<LocalCounter, kErrorReasons> errors;
  LocalCounter started;  // in flight = started - finished
  LocalCounter finished;

  void record(OpKind kind, std::uint64_t latency_ns, std::uint64_t bytes, std::size_t reason) {
    PerKind& k = kinds[static_cast<std::size_t>(kind)];
    k.buckets[latency_bucket(latency_ns)].add();
    k.latency_sum_ns.add(latency_ns);
    if (bytes) k.bytes.add(bytes);
    if (reason < kErrorReasons) errors[reason].add();
    finished.add();
  }
};

// Reactor threads say which slot of a LunStats is theirs (their worker index);
// other threads have none and do not count.
inline constexpr unsigned kNoSlot = ~0u;
inline thread_local unsigned t_thread_slot = kNoSlot;
inline void set_thread_slot(unsigned slot) {
  t_thread_slot = slot;
}
inline unsigned thread_slot() {
  return t_thread_slot;
}

inline std::uint64_t monotonic_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

// The counters of one LUN: one block per worker, allocated once.
class LunStats {
 public:
  explicit LunStats(unsigned workers)
      : slots_(workers), blocks_(std::make_unique<LunCounters[]>(workers)) {}
  unsigned slots() const { return slots_; }
  const LunCounters& slot(unsigned i) const { return blocks_[i]; }
  LunCounters& slot(unsigned i) { return blocks_[i]; }
  // The calling worker's block, or null on a thread that has no slot.
  LunCounters* local() {
    unsigned s = thread_slot();
    return s < slots_ ? &blocks_[s] : nullptr;
  }

 private:
  unsigned slots_;
  std::unique_ptr<LunCounters[]> blocks_;
};

// ---------------------------------------------------------------- per worker

// Written by the reactor thread that owns it, read by the scraper and the
// systemd watchdog.
struct alignas(64) WorkerCounters {
  LocalCounter busy_ns;    // time the loop spent not waiting for completions
  LocalCounter heartbeat;  // bumped on every tick (about 4 per second)
};

// ---------------------------------------------------------------- rare events

// Sessions and connections of one target: changed at login and logout only.
struct TargetCounters {
  std::atomic<std::int64_t> sessions{0};
  std::atomic<std::int64_t> connections{0};
};

enum class LoginFailureReason : std::uint8_t {
  auth,
  authorization,
  bad_request,
  limit,
  negotiation,
  other
};
inline constexpr std::size_t kLoginFailureReasons = 6;
constexpr const char* to_string(LoginFailureReason r) {
  switch (r) {
    case LoginFailureReason::auth:
      return "auth";
    case LoginFailureReason::authorization:
      return "authorization";
    case LoginFailureReason::bad_request:
      return "bad_request";
    case LoginFailureReason::limit:  // [limits] max_sessions / max_sessions_per_initiator
      return "limit";
    case LoginFailureReason::negotiation:  // a key the initiator insists on, e.g. a digest
      return "negotiation";
    case LoginFailureReason::other:
      return "other";
  }
  return "other";
}

enum class DigestKind : std::uint8_t { header, data };

// Why a command was answered BUSY or TASK SET FULL before it reached a LUN
// (so it is not in that LUN's error counts): no room under
// limits.max_buffer_memory, or every task slot of the connection taken.
enum class RefusalCause : std::uint8_t { buffer_memory, task_slots };
inline constexpr std::size_t kRefusalCauses = 2;
constexpr const char* to_string(RefusalCause c) {
  return c == RefusalCause::buffer_memory ? "buffer_memory" : "task_slots";
}

// Process-wide counters of events that are rare by nature (a login, a
// protocol error), so one shared atomic each is fine.
struct GlobalCounters {
  std::atomic<std::uint64_t> login_attempts{0};  // logins that succeeded or were refused
  std::array<std::atomic<std::uint64_t>, kLoginFailureReasons> login_failures{};
  std::atomic<std::uint64_t> rejects{0};  // Reject PDUs sent
  std::array<std::atomic<std::uint64_t>, 2> digest_errors{};
  std::array<std::atomic<std::uint64_t>, kRefusalCauses> refused_commands{};
  std::atomic<std::int64_t> discovery_sessions{0};
  // Connections that stopped receiving: their peer left limits.max_session_output
  // of responses unread (ringtgt_receive_pauses_total).
  std::atomic<std::uint64_t> receive_pauses{0};
};

inline GlobalCounters& global() {
  static GlobalCounters g;
  return g;
}

// ---------------------------------------------------------------- injected faults

// What a LUN under [testing] fault_injection was made to suffer, by kind:
// ringtgt_lun_faults_injected_total{fault}. Test-only, so one shared atomic
// per kind is fine.
enum class FaultKind : std::uint8_t { eio, enospc, short_transfer, flush_failure, delay };
inline constexpr std::size_t kFaultKinds = 5;
constexpr const char* to_string(FaultKind k) {
  switch (k) {
    case FaultKind::eio:
      return "eio";
    case FaultKind::enospc:
      return "enospc";
    case FaultKind::short_transfer:
      return "short";
    case FaultKind::flush_failure:
      return "flush";
    case FaultKind::delay:
      return "delay";
  }
  return "eio";
}

struct FaultCounters {
  std::array<std::atomic<std::uint64_t>, kFaultKinds> injected{};
  void count(FaultKind k) {
    injected[static_cast<std::size_t>(k)].fetch_add(1, std::memory_order_relaxed);
  }
  std::uint64_t get(FaultKind k) const {
    return injected[static_cast<std::size_t>(k)].load(std::memory_order_relaxed);
  }
};

// --- the counting API for code outside src/metrics ---

// A header (kind header) or data (kind data) digest did not match: exported as
// ringtgt_digest_errors_total{kind="header"|"data"}. Any thread. These three take the
// counters to bump so the protocol engine can count into the ones its host gives it (a
// unit test's own, or global()).
inline void count_digest_error(DigestKind kind, GlobalCounters& g = global()) {
  g.digest_errors[static_cast<std::size_t>(kind)].fetch_add(1, std::memory_order_relaxed);
}
// A Reject PDU was sent: ringtgt_pdu_rejects_total.
inline void count_reject(GlobalCounters& g = global()) {
  g.rejects.fetch_add(1, std::memory_order_relaxed);
}
// A command was answered BUSY / TASK SET FULL before reaching its LUN:
// ringtgt_commands_refused_total{cause}. Any thread; rare (the initiator backs off).
inline void count_refused_command(RefusalCause cause, GlobalCounters& g = global()) {
  g.refused_commands[static_cast<std::size_t>(cause)].fetch_add(1, std::memory_order_relaxed);
}
// A login ended: ringtgt_login_attempts_total, and ringtgt_login_failures_total{reason}.
inline void count_login_success() {
  global().login_attempts.fetch_add(1, std::memory_order_relaxed);
}
inline void count_login_failure(LoginFailureReason why) {
  global().login_attempts.fetch_add(1, std::memory_order_relaxed);
  global().login_failures[static_cast<std::size_t>(why)].fetch_add(1, std::memory_order_relaxed);
}

}  // namespace ringtgt::metrics
