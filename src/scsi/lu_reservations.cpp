// LogicalUnit's shared per-nexus state: unit attentions, persistent
// reservations (PERSISTENT RESERVE IN/OUT) and their APTPL file, and how
// SPC-2 RESERVE/RELEASE meet them. The rules themselves live in
// persistent_reservations.cpp and unit_attention.cpp.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>

#include "commands.hpp"
#include "ringtgt/common/atomic_file.hpp"
#include "ringtgt/reactor/foreign_completions.hpp"
#include "ringtgt/scsi/cdb.hpp"
#include "ringtgt/scsi/logical_unit.hpp"

namespace ringtgt::scsi {

namespace {

constexpr std::uint8_t kInquiry = 0x12;
constexpr std::uint8_t kRequestSense = 0x03;
constexpr std::uint8_t kReportLuns = 0xa0;

// Commands a pending unit attention does not stop (SPC-4 5.14).
bool passes_unit_attention(std::uint8_t opcode) {
  return opcode == kInquiry || opcode == kReportLuns || opcode == kRequestSense;
}

void conflict(Task& task) {
  task.status = Status::reservation_conflict;
  task.complete();
}

}  // namespace

// --- unit attentions and the reservation standing of a nexus ---

bool LogicalUnit::nexus_state_blocks(Task& task) {
  if (const Nexus* n = task.nexus; n != nullptr) {
    const std::uint64_t now = state_generation_.load(std::memory_order_acquire);
    for (const Nexus::LuView& v : n->lu_views) {
      if (v.lu != this) continue;
      if (v.generation != now) break;
      // Nothing changed since this nexus last looked: no unit attention,
      // and its standing under the reservation is the one it saw.
      if (v.pr_type == 0) return false;
      const PrStanding s{static_cast<PrType>(v.pr_type), v.pr_registered, v.pr_holder};
      if (!pr_conflicts(pr_access_of(task.cdb), s)) return false;
      conflict(task);
      return true;
    }
  }
  return nexus_state_slow(task);
}

bool LogicalUnit::nexus_state_slow(Task& task) {
  const Nexus* n = task.nexus;
  const std::string port = n != nullptr ? initiator_port_name(*n) : std::string{};
  const std::uint8_t opcode = task.cdb[0];
  SenseCode ua{};
  bool have_ua = false;
  PrStanding standing;
  {
    std::lock_guard lock(state_mutex_);
    const std::uint64_t now = state_generation_.load(std::memory_order_relaxed);
    standing = reservations_.standing(port);
    if (n != nullptr) {
      Nexus::LuView* view = nullptr;
      for (auto& v : n->lu_views) {
        if (v.lu == this) view = &v;
      }
      if (view == nullptr) {
        view = &n->lu_views.emplace_back();
        view->lu = this;
        unit_attentions_.first_contact(port, params_.power_on_unit_attention);
      }
      if (!passes_unit_attention(opcode) || opcode == kRequestSense) {
        have_ua = unit_attentions_.pop(port, ua);
      }
      view->pr_type = static_cast<std::uint8_t>(standing.type);
      view->pr_registered = standing.registered;
      view->pr_holder = standing.holder;
      view->generation = unit_attentions_.pending(port) ? 0 : now;
    }
  }
  if (have_ua) {
    if (opcode == kRequestSense) {
      detail::request_sense(task, ua);
    } else {
      task.fail(ua);
      task.complete();
    }
    return true;
  }
  if (pr_conflicts(pr_access_of(task.cdb), standing)) {
    conflict(task);
    return true;
  }
  return false;
}

void LogicalUnit::post_unit_attention(std::uint8_t asc, std::uint8_t ascq, const Nexus* except) {
  const std::string skip = except != nullptr ? initiator_port_name(*except) : std::string{};
  std::lock_guard lock(state_mutex_);
  unit_attentions_.post_all(asc, ascq, skip);
  state_generation_.fetch_add(1, std::memory_order_release);
}

bool LogicalUnit::reservation_blocks(const Nexus* nexus, PrAccess access) {
  if (access == PrAccess::unrestricted) return false;
  const std::string port = nexus != nullptr ? initiator_port_name(*nexus) : std::string{};
  std::lock_guard lock(state_mutex_);
  // The SPC-2 holder is one I_T nexus (holds_reservation); every command
  // from any other conflicts, reads included.
  if (reserved_.load(std::memory_order_relaxed) && !holds_reservation(nexus)) return true;
  return pr_conflicts(access, reservations_.standing(port));
}

PersistentReservations LogicalUnit::persistent_reservations() {
  std::lock_guard lock(state_mutex_);
  return reservations_;
}

// --- SPC-2 RESERVE/RELEASE beside persistent reservations ---

std::optional<Status> LogicalUnit::spc2_meets_persistent(const Task& task) const {
  if (!reservations_.any()) return std::nullopt;
  const std::string port = task.nexus != nullptr ? initiator_port_name(*task.nexus) : std::string{};
  const PrStanding s = reservations_.standing(port);
  const bool shares = s.registered && (s.type == PrType::write_exclusive_registrants_only ||
                                       s.type == PrType::exclusive_access_registrants_only ||
                                       s.type == PrType::write_exclusive_all_registrants ||
                                       s.type == PrType::exclusive_access_all_registrants);
  // The holder (or a registrant sharing the reservation) gets GOOD and the
  // persistent reservation stays as it is; everyone else conflicts.
  return s.holder || shares ? Status::good : Status::reservation_conflict;
}

// --- PERSISTENT RESERVE IN / OUT ---

void LogicalUnit::persistent_reserve_in(Task& task) {
  const std::uint8_t action = task.cdb[1] & 0x1f;
  const std::uint16_t alloc = get_be16(&task.cdb[7]);
  task.transfer_length = alloc;
  std::optional<std::vector<std::uint8_t>> data;
  {
    std::lock_guard lock(state_mutex_);
    data = reservations_.in(action);
  }
  if (!data) {
    task.fail_cdb_field(1, 4);  // SERVICE ACTION
    return task.complete();
  }
  detail::finish_data_in(task, data->data(), data->size(), alloc);
}

namespace {

// Runs a function on the reactor thread that expected it, when
// ForeignCompletions hands it back: how a job of the state writer returns.
class OnHomeReactor final : public reactor::IoOp {
 public:
  explicit OnHomeReactor(std::function<void()> fn) : fn_(std::move(fn)) {}
  void on_complete(int) override {
    std::function<void()> fn = std::move(fn_);
    delete this;
    fn();
  }

 private:
  std::function<void()> fn_;
};

}  // namespace

void LogicalUnit::persistent_reserve_out(Task& task) {
  const std::uint32_t len = get_be32(&task.cdb[5]);
  task.transfer_length = len;
  const std::size_t have = task.buffer != nullptr ? std::min<std::size_t>(task.buffer_len, len) : 0;
  if (have < len) {
    task.fail(sense::parameter_list_length_error);
    return task.complete();
  }
  std::string port = task.nexus != nullptr ? initiator_port_name(*task.nexus) : std::string{};
  reactor::IoEngine* engine = reactor::IoEngine::current();
  reactor::ForeignCompletions* home = engine != nullptr ? engine->foreign_completions() : nullptr;
  if (params_.pr_state_path.empty() || home == nullptr) {
    const PrOutcome o = decide_reserve_out(task, port, have);
    return finish_reserve_out(task, port, o);
  }
  // With APTPL the change is durable before it takes effect: fsyncs that
  // must not stall the reactor's other connections. So every PERSISTENT
  // RESERVE OUT of a LU with a state file is decided on its state writer, one
  // after another, and this reactor finishes the command.
  home->expect();
  state_writer_.post([this, &task, port = std::move(port), have, home] {
    PrOutcome o = decide_reserve_out(task, port, have);
    home->complete(new OnHomeReactor([this, &task, port, o = std::move(o)] {
                     finish_reserve_out(task, port, o);
                   }),
                   0);
  });
}

PrOutcome LogicalUnit::decide_reserve_out(const Task& task, const std::string& port,
                                          std::size_t have) {
  PersistentReservations next;
  PrOutcome o;
  {
    std::lock_guard lock(state_mutex_);
    next = reservations_;
    o = next.out(port, task.cdb.data(), task.buffer, have);
    if (!o.changed) return o;
    if (params_.pr_state_path.empty() || (!next.aptpl() && !reservations_.aptpl())) {
      apply_reservations(std::move(next), o);
      return o;
    }
  }
  // Written without state_mutex_, which every reactor takes: only PERSISTENT
  // RESERVE OUT changes reservations_, and with a state file they all run on
  // state_writer_, one at a time (on the calling thread only where no reactor
  // runs, as in unit tests), so nothing changes it meanwhile.
  if (!store_reservations(next)) {
    o = PrOutcome{};
    o.status = Status::check_condition;
    o.sense = sense::internal_target_failure;
    return o;
  }
  std::lock_guard lock(state_mutex_);
  apply_reservations(std::move(next), o);
  return o;
}

void LogicalUnit::apply_reservations(PersistentReservations next, const PrOutcome& o) {
  reservations_ = std::move(next);
  for (const auto& ua : o.unit_attentions) {
    unit_attentions_.post(ua.initiator_port, ua.asc, ua.ascq);
  }
  state_generation_.fetch_add(1, std::memory_order_release);
}

void LogicalUnit::finish_reserve_out(Task& task, const std::string& port, const PrOutcome& o) {
  if (o.status == Status::check_condition) {
    if (o.cdb_field >= 0) {
      task.fail_cdb_field(static_cast<std::uint16_t>(o.cdb_field));
    } else {
      task.fail(o.sense);
    }
  } else {
    task.status = o.status;
  }
  if (!o.abort_tasks_of.empty()) return abort_preempted(task, port, o.abort_tasks_of);
  task.complete();
}

void LogicalUnit::abort_preempted(Task& task, const std::string& by,
                                  const std::vector<std::string>& nexuses) {
  std::vector<InitiatorPort> ports;
  std::string names;
  for (const auto& n : nexuses) {
    names += (names.empty() ? "" : ", ") + n;
    if (auto p = parse_initiator_port_name(n)) {
      ports.push_back(std::move(*p));
    } else {
      spdlog::error("{}: PREEMPT AND ABORT: cannot find the sessions of {}: not a port name",
                    params_.device_name, n);
    }
  }
  spdlog::info("{}: PREEMPT AND ABORT by {}: aborting the tasks of {}", params_.device_name, by,
               names);
  // As ABORT TASK SET would in each preempted nexus, with no status for any
  // task (the control mode page's TAS is 0). GOOD only once none of those
  // tasks can still write: a fencing node must not see a stale write of the
  // node it fenced land after this.
  auto preempted = [ports = std::move(ports)](const Task& t) {
    if (t.nexus == nullptr) return false;
    auto port = parse_initiator_port_name(initiator_port_name(*t.nexus));
    return port && std::find(ports.begin(), ports.end(), *port) != ports.end();
  };
  task.awaiting_aborts = true;
  abort_task_set(std::move(preempted), &task, [&task] { task.complete(); });
}

bool LogicalUnit::store_reservations(const PersistentReservations& next) {
  if (params_.pr_state_path.empty()) return true;
  const std::filesystem::path path = params_.pr_state_path;
  if (next.aptpl()) {
    std::error_code ec;
    std::filesystem::create_directories(path.parent_path(), ec);  // a failure shows below
    try {
      // 0600: the file names the initiators holding registrations.
      common::write_file_atomically(path, next.serialize(), 0600);
    } catch (const std::runtime_error& e) {
      spdlog::error("{}: cannot store persistent reservations (APTPL): {}", params_.device_name,
                    e.what());
      return false;
    }
    return true;
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    spdlog::error("{}: cannot remove {} (APTPL turned off): {}", params_.device_name, path.string(),
                  std::strerror(errno));
    return false;
  }
  common::fsync_dir(path.parent_path());
  return true;
}

void LogicalUnit::load_reservations() {
  if (params_.pr_state_path.empty()) return;
  std::ifstream in(params_.pr_state_path, std::ios::binary);
  if (!in) return;  // none stored
  std::ostringstream text;
  text << in.rdbuf();
  std::string error;
  auto pr = PersistentReservations::parse(text.str(), error);
  if (!pr) {
    spdlog::error("{}: ignoring persistent reservation file {}: {}; starting without reservations",
                  params_.device_name, params_.pr_state_path, error);
    return;
  }
  reservations_ = std::move(*pr);
  spdlog::info("{}: {} persistent reservation registration(s) restored from {} (APTPL)",
               params_.device_name, reservations_.registrations().size(), params_.pr_state_path);
}

}  // namespace ringtgt::scsi
