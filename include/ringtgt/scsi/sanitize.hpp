// SANITIZE (SBC-4 r22, 5.30 and 4.33): the operation that erases a whole
// logical unit, and the state a logical unit is in while it runs or after it
// failed. Private to the scsi layer.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ringtgt/reactor/io_engine.hpp"

namespace ringtgt::scsi {

class LogicalUnit;
class Task;

namespace detail {

// Where a logical unit stands (LogicalUnit::sanitize_state_). Everything but
// idle turns away the commands SBC-4 4.33 names.
enum class SanitizeState : std::uint8_t {
  idle,
  running,
  // Found in the state file after a restart: runs again from the start as
  // soon as a reactor thread reaches the LU (its first command).
  resume_pending,
  failed,  // failure mode (SBC-4 4.33.4) until a sanitize succeeds or EXIT FAILURE MODE
};

// SANITIZE service actions (SBC-4 r22 table 101).
enum class SanitizeAction : std::uint8_t {
  overwrite = 0x01,
  block_erase = 0x02,
  crypto_erase = 0x03,
  exit_failure_mode = 0x1f,
};

// "overwrite", "block-erase": for log lines and the state file.
const char* action_name(SanitizeAction a);

// What a sanitize does, as it is kept in the state file while it runs, so
// that a restart can run it again or report that it failed.
struct SanitizeSpec {
  SanitizeAction action = SanitizeAction::overwrite;
  bool ause = false;    // EXIT FAILURE MODE may end a failure of this one
  bool invert = false;  // OVERWRITE: the pattern inverted between passes
  std::uint8_t passes = 1;
  std::vector<std::uint8_t> pattern;  // OVERWRITE's initialization pattern
  bool failed = false;

  std::string to_text() const;
  // False for a file this build did not write.
  static bool from_text(const std::string& text, SanitizeSpec& out);
};

// One sanitize in flight: a chain of backend operations over the whole LU,
// each issued by the completion of the one before, on the reactor thread that
// started it, so the reactor is never blocked for more than one chunk.
class SanitizeJob final : public reactor::IoOp {
 public:
  SanitizeJob(LogicalUnit& lu, SanitizeSpec spec, Task* waiter);
  ~SanitizeJob();
  SanitizeJob(const SanitizeJob&) = delete;
  SanitizeJob& operator=(const SanitizeJob&) = delete;

  void start();
  const SanitizeSpec& spec() const { return spec_; }
  void on_complete(int result) override;

 private:
  enum class Step : std::uint8_t { overwrite, pace, unmap, zero, flush };
  void issue();
  void fill_chunk();
  // With a sanitize rate: waits on a timerfd, read through the reactor's
  // ring, until the bytes written so far are due; false when nothing is to
  // wait for (no rate, ahead of time, or no reactor: unit tests).
  bool pace();
  void finish(bool ok, int result);

  LogicalUnit& lu_;
  // While it runs: the LU (when shared; not in unit tests), which a live
  // LUN removal must not destroy under an operation in flight.
  std::shared_ptr<LogicalUnit> keep_alive_;
  SanitizeSpec spec_;
  Task* waiter_;  // IMMED 0: the SANITIZE command, completed at the end
  Step step_ = Step::overwrite;
  std::uint8_t pass_ = 0;
  std::uint64_t offset_ = 0;
  std::uint64_t size_ = 0;
  std::uint64_t in_flight_ = 0;  // bytes of the write in flight
  std::uint8_t* chunk_ = nullptr;
  std::uint64_t chunk_bytes_ = 0;
  std::uint64_t written_ = 0;     // over all passes
  std::uint64_t started_ns_ = 0;  // monotonic
  int timer_fd_ = -1;
  std::uint64_t expirations_ = 0;  // what the timerfd read returns
};

// Bytes one backend write of an OVERWRITE covers.
inline constexpr std::uint64_t sanitize_chunk_bytes = 1u << 20;

}  // namespace detail
}  // namespace ringtgt::scsi
