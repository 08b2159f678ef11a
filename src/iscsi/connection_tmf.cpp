// Task management (RFC 7143 §11.5, SAM-5 §7): ABORT TASK, ABORT TASK SET, CLEAR TASK SET,
// resets, and aborts that come from other nexuses. A response goes out only once the
// tasks it ended are out of the SCSI layer.
#include <spdlog/spdlog.h>

#include "iscsi_task.hpp"
#include "lun_field.hpp"
#include "ringtgt/iscsi/connection.hpp"

namespace ringtgt::iscsi {

void Connection::task_management(const Bhs& bhs) {
  if (!check_cmd_sn(bhs)) return;
  auto fn = static_cast<TmfFunction>(bhs.flags() & 0x7f);
  TmfResponse response = TmfResponse::complete;
  std::uint64_t lun = lun_of(bhs);
  std::vector<IscsiTask*> executing;  // aborted here, still in the SCSI layer
  // The task sets that abort, and which of their tasks.
  std::vector<std::shared_ptr<scsi::LogicalUnit>> lus;
  std::function<bool(const scsi::Task&)> aborted = [](const scsi::Task&) { return true; };
  switch (fn) {
    case TmfFunction::abort_task: {
      IscsiTask* t = tasks_.find(bhs.ref_task_tag());
      if (t && t->state != IscsiTask::State::responding) {
        if (t->state == IscsiTask::State::executing && !t->only_waiting()) executing.push_back(t);
        abort_task(*t);
      } else if (!t) {
        std::uint32_t ref = bhs.u32(32);
        bool in_window =
            sn_lt(ref, bhs.cmd_sn()) && !sn_lt(ref, bhs.cmd_sn() - settings_.queue_depth);
        response = in_window ? TmfResponse::complete : TmfResponse::task_does_not_exist;
        // RFC 7143 §11.5.1 (b): the initiator aborted a command it never sent
        // (libiscsi does, for one still in its send queue). Its CmdSN counts as
        // received, or every later command would wait behind the gap.
        if (in_window) window_.count_as_received(ref, settings_.queue_depth);
      }
      break;
    }
    case TmfFunction::abort_task_set:
    case TmfFunction::clear_task_set:
    case TmfFunction::logical_unit_reset: {
      scsi::LunMap& luns = lun_map();
      if (!luns.find(lun) || !luns.visible(lun, &nexus_)) {
        response = TmfResponse::lun_does_not_exist;
        break;
      }
      // ABORT TASK SET ends this nexus's tasks only; the task set is shared
      // (TST 000b), so CLEAR TASK SET and a reset end every nexus's.
      lus.push_back(luns.find(lun));
      if (fn == TmfFunction::abort_task_set)
        aborted = [me = &nexus_](const scsi::Task& t) { return t.nexus == me; };
      if (fn == TmfFunction::logical_unit_reset) lus.back()->reset();
      break;
    }
    case TmfFunction::target_warm_reset:
    case TmfFunction::target_cold_reset: {
      // This session's tasks of every LUN (some may be in no task set), and
      // every other nexus's in the task sets of the target's LUs.
      executing = abort_tasks_of(std::nullopt, nullptr).executing;
      scsi::LunMap& luns = lun_map();
      for (std::uint64_t l : luns.luns()) lus.push_back(luns.find(l));
      aborted = [me = &nexus_](const scsi::Task& t) { return t.nexus != me; };
      luns.reset_all();
      break;
    }
    case TmfFunction::task_reassign:
      response = TmfResponse::reassignment_not_supported;
      break;
    default:
      response = TmfResponse::not_supported;
      break;
  }
  spdlog::info(
      "task management {} from {} ({}): response {}{}", static_cast<unsigned>(fn),
      params_.initiator_name, peer_, static_cast<unsigned>(response),
      executing.empty() && lus.empty()
          ? ""
          : fmt::format(
                " once the aborted tasks of {} task set(s){} are out of the "
                "backend",
                lus.size(),
                executing.empty() ? "" : fmt::format(" and {} of this session", executing.size())));
  answer_tmf_when_gone(bhs.itt(), response, std::move(executing), std::move(lus), aborted);
}

void Connection::answer_tmf_when_gone(std::uint32_t itt, TmfResponse response,
                                      std::vector<IscsiTask*> executing,
                                      std::vector<std::shared_ptr<scsi::LogicalUnit>> lus,
                                      const std::function<bool(const scsi::Task&)>& aborted) {
  if (executing.empty() && lus.empty()) return send_tmf_response(itt, response);
  // One part for this function, so that a task set done at once cannot
  // answer before the others were asked.
  auto parts_left = std::make_shared<std::size_t>(1 + lus.size() + (executing.empty() ? 0 : 1));
  auto part_done = [this, alive = std::weak_ptr<bool>(alive_), parts_left, itt, response] {
    if (!alive.expired() && --*parts_left == 0) send_tmf_response(itt, response);
  };
  if (!executing.empty()) abort_waits_.push_back({std::move(executing), part_done});
  for (const auto& lu : lus) lu->abort_task_set(aborted, nullptr, part_done);
  part_done();
}

void Connection::send_tmf_response(std::uint32_t itt, TmfResponse response) {
  if (shut_down_) return;  // nobody to answer
  OutPdu* pdu = new_pdu(Opcode::task_mgmt_response, 0x80);
  pdu->bhs.bytes[2] = static_cast<std::uint8_t>(response);
  pdu->bhs.set_itt(itt);
  queue(pdu, true);
}

void Connection::abort_task(IscsiTask& t) {
  t.aborted = true;
  // Data-Out already on the wire for it is dropped without a Reject.
  tasks_.remember_ended(t.itt);
  // Not yet running: it ends here. Running: it ends, silently, when the
  // SCSI layer gives it back (the backend may already have the data).
  if (t.state == IscsiTask::State::receiving) {
    // A data segment being received into its buffer (an abort from another
    // session can come between a Data-Out's header and its data): the
    // buffer is let go once that segment is in (on_data).
    if (rx_.task == &t) return;
    release_task(t);
  }
}

Connection::Aborted Connection::abort_tasks_of(std::optional<std::uint64_t> lun,
                                               const scsi::Task* keep) {
  Aborted aborted;
  for (IscsiTask* t = tasks_.first(); t;) {
    IscsiTask* next = t->next;
    if ((!lun || t->lun == *lun) && t != keep && t->state != IscsiTask::State::responding) {
      ++aborted.count;
      // A PREEMPT AND ABORT of this session waiting for its own aborts is
      // not waited for: those may be waiting for this one.
      if (t->state == IscsiTask::State::executing && !t->only_waiting()) {
        aborted.executing.push_back(t);
      }
      abort_task(*t);
    }
    t = next;
  }
  return aborted;
}

bool Connection::task_aborted(scsi::Task& task) {
  auto& t = static_cast<IscsiTask&>(task);
  if (t.state == IscsiTask::State::responding || t.state == IscsiTask::State::idle) return false;
  // A PREEMPT AND ABORT of this session waiting for its own aborts is not
  // waited for: those may be waiting for this one.
  bool in_backend = t.state == IscsiTask::State::executing && !t.only_waiting();
  spdlog::info("{} ({}): task {:#x} for LUN {} aborted by its logical unit, {}", peer_,
               params_.initiator_name, t.itt, t.lun,
               in_backend ? "waited for in the backend" : "not in the backend");
  abort_task(t);
  return in_backend;
}

void Connection::abort_wait_over(IscsiTask& t) {
  if (abort_waits_.empty()) return;
  std::vector<std::function<void()>> over;
  for (auto it = abort_waits_.begin(); it != abort_waits_.end();) {
    std::erase(it->tasks, &t);
    if (it->tasks.empty()) {
      over.push_back(std::move(it->done));
      it = abort_waits_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& done : over) done();
}

}  // namespace ringtgt::iscsi
