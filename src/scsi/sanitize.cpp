// SANITIZE (SBC-4 r22, 5.30; the sanitize operation, 4.33): OVERWRITE, BLOCK
// ERASE and EXIT FAILURE MODE; CRYPTOGRAPHIC ERASE is not supported (there is
// no media encryption key to change): INVALID FIELD IN CDB.
//
// The operation runs in the background on the reactor thread of the command
// that started it, one backend operation at a time (1 MiB writes for
// OVERWRITE; one deallocation or zeroing of the whole medium for BLOCK
// ERASE). Meanwhile every command but INQUIRY, REPORT LUNS and REQUEST SENSE
// gets NOT READY, LOGICAL UNIT NOT READY, SANITIZE IN PROGRESS with a
// progress indication, as REQUEST SENSE reports it too (4.33.2). Task
// management and session loss do not stop it. It is kept in a small state
// file while it runs: after a restart the LU runs it again from the start
// (4.33.2: a sanitize interrupted by a power on is resumed), and a failed one
// leaves the LU in failure mode (MEDIUM ERROR, SANITIZE COMMAND FAILED)
// across restarts until a sanitize succeeds or, when the failed one had
// AUSE set, EXIT FAILURE MODE (4.33.4).
#include "ringtgt/scsi/sanitize.hpp"

#include <spdlog/spdlog.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "commands.hpp"
#include "ringtgt/common/atomic_file.hpp"
#include "ringtgt/metrics/counters.hpp"
#include "ringtgt/scsi/cdb.hpp"
#include "ringtgt/scsi/logical_unit.hpp"

namespace ringtgt::scsi {

namespace detail {

namespace {

constexpr std::string_view kMagic = "ringtgt-sanitize 1";

}  // namespace

const char* action_name(SanitizeAction a) {
  switch (a) {
    case SanitizeAction::overwrite:
      return "overwrite";
    case SanitizeAction::block_erase:
      return "block-erase";
    default:
      return "other";
  }
}

std::string SanitizeSpec::to_text() const {
  std::ostringstream out;
  out << kMagic << "\n"
      << "action " << action_name(action) << "\n"
      << "ause " << ause << "\ninvert " << invert << "\npasses " << unsigned{passes} << "\n"
      << "failed " << failed << "\npattern ";
  for (std::uint8_t b : pattern) out << fmt::format("{:02x}", b);
  out << "\n";
  return out.str();
}

bool SanitizeSpec::from_text(const std::string& text, SanitizeSpec& out) {
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line) || line != kMagic) return false;
  SanitizeSpec s;
  std::string key, value;
  while (in >> key) {
    if (!(in >> value)) value.clear();
    if (key == "action") {
      if (value == "overwrite") {
        s.action = SanitizeAction::overwrite;
      } else if (value == "block-erase") {
        s.action = SanitizeAction::block_erase;
      } else {
        return false;
      }
    } else if (key == "ause") {
      s.ause = value == "1";
    } else if (key == "invert") {
      s.invert = value == "1";
    } else if (key == "passes") {
      s.passes = static_cast<std::uint8_t>(std::clamp(std::atoi(value.c_str()), 1, 31));
    } else if (key == "failed") {
      s.failed = value == "1";
    } else if (key == "pattern") {
      if (value.size() % 2 != 0) return false;
      for (std::size_t i = 0; i < value.size(); i += 2) {
        s.pattern.push_back(
            static_cast<std::uint8_t>(std::strtoul(value.substr(i, 2).c_str(), nullptr, 16)));
      }
    }
  }
  if (s.action == SanitizeAction::overwrite && s.pattern.empty()) return false;
  out = std::move(s);
  return true;
}

SanitizeJob::SanitizeJob(LogicalUnit& lu, SanitizeSpec spec, Task* waiter)
    : lu_(lu), spec_(std::move(spec)), waiter_(waiter) {}

SanitizeJob::~SanitizeJob() {
  std::free(chunk_);
  if (timer_fd_ >= 0) ::close(timer_fd_);
}

void SanitizeJob::start() {
  keep_alive_ = lu_.weak_from_this().lock();
  const std::uint64_t bs = lu_.params().block_size;
  size_ = lu_.block_count() * bs;
  pass_ = 0;
  offset_ = 0;
  written_ = 0;
  started_ns_ = metrics::monotonic_ns();
  if (spec_.action == SanitizeAction::block_erase) {
    // A thin LU deallocates everything (reads then return zeroes); a fully
    // provisioned one zeroes it in place, or by writing zeroes where the
    // store cannot.
    step_ = lu_.params().thin_provisioned ? Step::unmap : Step::zero;
  } else {
    step_ = Step::overwrite;
  }
  if (size_ == 0) step_ = Step::flush;
  issue();
}

// One chunk of the pattern repeated block by block (SBC-4 5.30.2.2: a
// pattern shorter than a block is repeated to fill it), inverted on every
// other pass when INVERT is set.
void SanitizeJob::fill_chunk() {
  const std::uint64_t bs = lu_.params().block_size;
  if (chunk_ == nullptr) {
    chunk_bytes_ = std::min<std::uint64_t>(sanitize_chunk_bytes, std::max(size_, bs)) / bs * bs;
    chunk_ =
        static_cast<std::uint8_t*>(std::aligned_alloc(4096, (chunk_bytes_ + 4095) / 4096 * 4096));
    if (chunk_ == nullptr) return;
  }
  const bool inverted = spec_.invert && (pass_ % 2) == 1;
  const std::size_t n = spec_.pattern.size();
  for (std::uint64_t i = 0; i < chunk_bytes_; ++i) {
    const std::uint8_t b = spec_.pattern[(i % bs) % n];
    chunk_[i] = inverted ? static_cast<std::uint8_t>(~b) : b;
  }
}

bool SanitizeJob::pace() {
  const std::uint64_t rate = lu_.params().sanitize_bytes_per_second;
  reactor::IoEngine* engine = reactor::IoEngine::current();
  if (rate == 0 || engine == nullptr) return false;
  const std::uint64_t due_ns =
      started_ns_ +
      static_cast<std::uint64_t>(static_cast<double>(written_) * 1e9 / static_cast<double>(rate));
  const std::uint64_t now = metrics::monotonic_ns();
  if (due_ns <= now) return false;
  if (timer_fd_ < 0) timer_fd_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
  if (timer_fd_ < 0) return false;  // unpaced rather than not at all
  itimerspec at{};
  const std::uint64_t wait = due_ns - now;
  at.it_value.tv_sec = static_cast<time_t>(wait / 1000000000u);
  at.it_value.tv_nsec = static_cast<long>(wait % 1000000000u);
  if (::timerfd_settime(timer_fd_, 0, &at, nullptr) != 0) return false;
  step_ = Step::pace;
  engine->read(timer_fd_, &expirations_, sizeof expirations_, 0, this);
  return true;
}

void SanitizeJob::issue() {
  storage::Backend& backend = lu_.backend();
  switch (step_) {
    case Step::pace:  // not issued: pace() reads the timer itself
      return;
    case Step::overwrite: {
      if (offset_ == 0) fill_chunk();
      if (chunk_ == nullptr) return finish(false, -ENOMEM);
      in_flight_ = std::min(chunk_bytes_, size_ - offset_);
      return backend.write(chunk_, in_flight_, offset_, false, this);
    }
    case Step::unmap:
      return backend.unmap(0, size_, this);
    case Step::zero:
      return backend.write_zeroes(0, size_, false, this);
    case Step::flush:
      return backend.flush(this);
  }
}

void SanitizeJob::on_complete(int result) {
  switch (step_) {
    case Step::overwrite: {
      if (result < 0 || static_cast<std::uint64_t>(result) != in_flight_) {
        return finish(false, result < 0 ? result : -EIO);
      }
      offset_ += in_flight_;
      written_ += in_flight_;
      const std::uint64_t done = pass_ * size_ + offset_;
      const std::uint64_t total = std::uint64_t{spec_.passes} * size_;
      lu_.set_sanitize_progress(static_cast<std::uint16_t>(
          std::min<std::uint64_t>(0xffff, done / std::max<std::uint64_t>(1, total / 65536))));
      if (offset_ == size_) {
        offset_ = 0;
        if (++pass_ == spec_.passes) step_ = Step::flush;
      }
      if (step_ == Step::overwrite && pace()) return;
      return issue();
    }
    case Step::pace:  // the timer expired (or its read failed: go on unpaced)
      step_ = Step::overwrite;
      return issue();
    case Step::zero:
      if (result == -EOPNOTSUPP) {  // the store cannot zero in place: write zeroes
        spec_.pattern.assign(1, 0);
        step_ = Step::overwrite;
        return issue();
      }
      [[fallthrough]];
    case Step::unmap:
      if (result < 0) return finish(false, result);
      step_ = Step::flush;
      return issue();
    case Step::flush:
      return finish(result >= 0, result);
  }
}

// The last thing the job does: dropping keep may destroy the LU and with it
// this job, so its callers return at once.
void SanitizeJob::finish(bool ok, int result) {
  const std::shared_ptr<LogicalUnit> keep = std::move(keep_alive_);
  std::free(chunk_);
  chunk_ = nullptr;
  if (ok) {
    spdlog::info("{}: SANITIZE {} done", lu_.params().device_name, action_name(spec_.action));
  } else {
    spdlog::error("{}: SANITIZE {} failed ({}): the LU is in sanitize failure mode",
                  lu_.params().device_name, action_name(spec_.action), std::strerror(-result));
  }
  Task* waiter = waiter_;
  waiter_ = nullptr;
  lu_.sanitize_done(ok);  // may start nothing: the job stays until the next sanitize
  if (waiter != nullptr) {
    if (ok) {
      waiter->status = Status::good;
    } else {
      waiter->fail(sense::sanitize_failed);
    }
    waiter->complete();
  }
}

}  // namespace detail

using detail::SanitizeAction;
using detail::SanitizeSpec;
using detail::SanitizeState;

namespace {

SanitizeState state_of(const std::atomic<std::uint8_t>& s) {
  return static_cast<SanitizeState>(s.load(std::memory_order_acquire));
}

void reject(Task& task, SenseCode code) {
  task.fail(code);
  task.complete();
}

// Commands a sanitize in progress lets through (SBC-4 r22 4.33.2); in failure
// mode SANITIZE too (4.33.4).
bool passes_sanitize(std::uint8_t opcode, SanitizeState state) {
  if (opcode == 0x12 || opcode == 0xa0 || opcode == 0x03)
    return true;  // INQUIRY, REPORT LUNS, REQUEST SENSE
  return state == SanitizeState::failed && opcode == detail::kSanitizeOpcode;
}

}  // namespace

bool LogicalUnit::sanitizing() const {
  const SanitizeState s = state_of(sanitize_state_);
  return s == SanitizeState::running || s == SanitizeState::resume_pending;
}

bool LogicalUnit::sanitize_blocks(Task& task) {
  SanitizeState s = state_of(sanitize_state_);
  if (s == SanitizeState::resume_pending) {
    // The first command after a restart brings the sanitize onto a reactor
    // thread: this one's.
    std::unique_lock lock(sanitize_mutex_);
    if (state_of(sanitize_state_) == SanitizeState::resume_pending && sanitize_job_) {
      sanitize_state_.store(static_cast<std::uint8_t>(SanitizeState::running),
                            std::memory_order_release);
      spdlog::warn("{}: SANITIZE {} interrupted by a restart: running it again",
                   params_.device_name, detail::action_name(sanitize_job_->spec().action));
      lock.unlock();
      sanitize_job_->start();
    }
    s = state_of(sanitize_state_);
  }
  if (s == SanitizeState::idle || passes_sanitize(task.cdb[0], s)) return false;
  if (s == SanitizeState::failed) {
    reject(task, sense::sanitize_failed);
  } else {
    task.fail_with_progress(sense::sanitize_in_progress, sanitize_progress());
    task.complete();
  }
  return true;
}

void LogicalUnit::request_sense(Task& task) {
  switch (state_of(sanitize_state_)) {
    case SanitizeState::running:
    case SanitizeState::resume_pending:
      return detail::request_sense(task, sense::sanitize_in_progress, sanitize_progress());
    case SanitizeState::failed:
      return detail::request_sense(task, sense::sanitize_failed);
    case SanitizeState::idle:
      break;
  }
  detail::request_sense(task, params_.becoming_ready ? sense::becoming_ready : sense::no_sense);
}

void LogicalUnit::sanitize_refused(const Task& task) {
  spdlog::warn(
      "{}: SANITIZE from {} refused (INVALID COMMAND OPERATION CODE): "
      "allow_sanitize is not set for this LUN",
      params_.device_name, task.nexus != nullptr ? task.nexus->initiator_name : "?");
}

// SANITIZE (SBC-4 r22 5.30.1, table 100): IMMED (byte 1 bit 7), AUSE (bit 5),
// SERVICE ACTION (bits 4-0), PARAMETER LIST LENGTH (bytes 7-8).
void LogicalUnit::sanitize(Task& task) {
  const auto& c = task.cdb;
  const bool immed = c[1] & 0x80;
  const bool ause = c[1] & 0x20;
  const auto action = static_cast<SanitizeAction>(c[1] & 0x1f);
  const std::uint32_t plen = get_be16(&c[7]);
  task.transfer_length = plen;
  const std::uint32_t bs = params_.block_size;

  // Reserved: byte 1 bit 6, bytes 2-6.
  if (c[1] & 0x40) return task.fail_cdb_field(1, 6), task.complete();
  for (std::uint16_t b = 2; b <= 6; ++b) {
    if (c[b] != 0) return task.fail_cdb_field(b), task.complete();
  }

  SanitizeSpec spec;
  spec.action = action;
  spec.ause = ause;
  switch (action) {
    case SanitizeAction::overwrite: {
      // The parameter list: a 4-byte header and an initialization pattern
      // of 1..block size bytes (5.30.2.2).
      if (plen < 5 || plen > bs + 4) return task.fail_cdb_field(7), task.complete();
      const std::uint32_t room = task.buffer != nullptr ? task.buffer_len : 0;
      if (room < plen) return reject(task, sense::parameter_list_length_error);
      const std::uint8_t* p = task.buffer;
      const std::uint16_t pattern_len = get_be16(&p[2]);
      spec.invert = p[0] & 0x80;
      spec.passes = p[0] & 0x1f;
      const bool test = (p[0] & 0x60) != 0;
      if (spec.passes == 0 || test || pattern_len == 0 || pattern_len > bs ||
          pattern_len + 4u > plen) {
        return reject(task, sense::invalid_field_in_parameter_list);
      }
      spec.pattern.assign(p + 4, p + 4 + pattern_len);
      break;
    }
    case SanitizeAction::block_erase:
    case SanitizeAction::exit_failure_mode:
      if (plen != 0) return task.fail_cdb_field(7), task.complete();
      break;
    default:  // CRYPTOGRAPHIC ERASE and the reserved service actions
      return task.fail_cdb_field(1, 4), task.complete();
  }
  if (write_protected()) return reject(task, write_protected_sense());

  if (action == SanitizeAction::exit_failure_mode) {
    std::lock_guard lock(sanitize_mutex_);
    if (state_of(sanitize_state_) == SanitizeState::failed) {
      // Only a failure of a sanitize with AUSE set may be left this way
      // (4.33.4); otherwise another sanitize has to succeed.
      if (!failed_sanitize_.ause) return task.fail_cdb_field(1, 5), task.complete();
      clear_sanitize_state();
      sanitize_state_.store(static_cast<std::uint8_t>(SanitizeState::idle),
                            std::memory_order_release);
      spdlog::info("{}: SANITIZE failure mode left (EXIT FAILURE MODE)", params_.device_name);
    }
    task.status = Status::good;
    return task.complete();
  }
  start_sanitize(std::move(spec), task, immed);
}

// Keeps spec in the state file, then runs it. With IMMED the command ends
// (GOOD) once the sanitize has started; otherwise when it ends (SBC-4 r22
// 5.30.1).
void LogicalUnit::start_sanitize(SanitizeSpec spec, Task& task, bool immed) {
  std::unique_lock lock(sanitize_mutex_);
  if (sanitizing()) {  // another thread started one meanwhile
    lock.unlock();
    task.fail_with_progress(sense::sanitize_in_progress, sanitize_progress());
    return task.complete();
  }
  if (!store_sanitize_state(spec)) {
    lock.unlock();
    return reject(task, sense::internal_target_failure);
  }
  spdlog::warn("{}: SANITIZE {} started ({} pass(es))", params_.device_name,
               detail::action_name(spec.action),
               spec.action == SanitizeAction::overwrite ? spec.passes : 1);
  sanitize_progress_.store(0, std::memory_order_relaxed);
  sanitize_state_.store(static_cast<std::uint8_t>(SanitizeState::running),
                        std::memory_order_release);
  sanitize_job_ =
      std::make_unique<detail::SanitizeJob>(*this, std::move(spec), immed ? nullptr : &task);
  task.waits_for_background_operation = !immed;
  lock.unlock();
  if (immed) {
    task.status = Status::good;
    task.complete();
  }
  sanitize_job_->start();
}

void LogicalUnit::sanitize_done(bool ok) {
  std::lock_guard lock(sanitize_mutex_);
  if (ok) {
    clear_sanitize_state();
    sanitize_state_.store(static_cast<std::uint8_t>(SanitizeState::idle),
                          std::memory_order_release);
    return;
  }
  failed_sanitize_ = sanitize_job_->spec();
  failed_sanitize_.failed = true;
  store_sanitize_state(failed_sanitize_);
  sanitize_state_.store(static_cast<std::uint8_t>(SanitizeState::failed),
                        std::memory_order_release);
}

// The state file, written like the APTPL file (common/atomic_file): small,
// and written once per sanitize, so the reactor waits for its fsync.
bool LogicalUnit::store_sanitize_state(const SanitizeSpec& spec) {
  if (params_.sanitize_state_path.empty()) return true;
  try {
    common::write_file_atomically(params_.sanitize_state_path, spec.to_text(), 0600);
    return true;
  } catch (const std::exception& e) {
    spdlog::error("{}: SANITIZE not started: cannot keep its state: {}", params_.device_name,
                  e.what());
    return false;
  }
}

void LogicalUnit::clear_sanitize_state() {
  if (params_.sanitize_state_path.empty()) return;
  const std::filesystem::path path = params_.sanitize_state_path;
  std::error_code ec;
  if (std::filesystem::remove(path, ec)) common::fsync_dir(path.parent_path());
  if (ec) {
    spdlog::error("{}: cannot remove {}: {}", params_.device_name, path.string(), ec.message());
  }
}

void LogicalUnit::load_sanitize_state() {
  if (params_.sanitize_state_path.empty()) return;
  std::ifstream in(params_.sanitize_state_path, std::ios::binary);
  if (!in) return;
  std::ostringstream text;
  text << in.rdbuf();
  SanitizeSpec spec;
  if (!SanitizeSpec::from_text(text.str(), spec)) {
    // Unreadable: the LU may hold half-erased data, which failure mode says.
    spdlog::error("{}: {} is not a sanitize state file; the LU is in sanitize failure mode",
                  params_.device_name, params_.sanitize_state_path);
    spec.failed = true;
  }
  if (spec.failed) {
    failed_sanitize_ = spec;
    sanitize_state_.store(static_cast<std::uint8_t>(SanitizeState::failed));
    spdlog::warn("{}: a SANITIZE failed before the restart: sanitize failure mode",
                 params_.device_name);
    return;
  }
  sanitize_job_ = std::make_unique<detail::SanitizeJob>(*this, std::move(spec), nullptr);
  sanitize_state_.store(static_cast<std::uint8_t>(SanitizeState::resume_pending));
  spdlog::warn(
      "{}: a SANITIZE was in progress before the restart: it runs again from the start "
      "on the LU's first command",
      params_.device_name);
}

}  // namespace ringtgt::scsi
