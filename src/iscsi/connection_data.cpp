// Data transfer: SCSI commands in, their data (immediate, unsolicited Data-Out, Data-Out
// asked for by R2T) into the command's buffer, execution by the SCSI layer, and the
// Data-In and SCSI Response that carry the outcome back (RFC 7143 §11.2-11.8).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "iscsi_task.hpp"
#include "lun_field.hpp"
#include "ringtgt/iscsi/connection.hpp"

namespace ringtgt::iscsi {

// ---------------------------------------------------------------- commands

std::optional<DataPlan> Connection::command_header(const Bhs& bhs) {
  std::uint32_t dsl = bhs.data_segment_length();
  if (!check_cmd_sn(bhs)) return DataPlan{};
  IscsiTask* t = tasks_.acquire();
  if (t == nullptr) return command_without_task(bhs);
  t->itt = bhs.itt();
  t->cmd_sn = bhs.cmd_sn();
  t->edtl = bhs.edtl();
  t->reading = bhs.flags() & 0x40;
  t->writing = bhs.flags() & 0x20;
  std::memcpy(t->cdb.data(), bhs.cdb(), 16);
  t->lun = lun_of(bhs);
  t->unsolicited_done = bhs.final_bit();
  // The task is in its logical unit's task set from now on (SAM-5), so that
  // an abort reaches it while its Data-Out is still coming.
  t->nexus = &nexus_;
  t->owner = this;
  if (target_) lun_map().enter_task_set(*t);

  if (auto code = command_refusal(*t, bhs)) {
    t->state = IscsiTask::State::executing;
    fail_task(*t, *code);
    return DataPlan{};
  }
  if (const char* why = command_violation(*t, bhs)) {
    reject(bhs, RejectReason::protocol_error, why);
    release_task(*t);
    closing_ = true;
    return std::nullopt;
  }
  if (!take_buffer(*t)) return DataPlan{};
  if (params_.initial_r2t) t->unsolicited_done = true;
  if (dsl > 0) {
    rx_.task = t;
    rx_.offset = 0;
    return DataPlan{t->buf, dsl, 0};
  }
  data_received(*t);
  return DataPlan{};
}

std::optional<DataPlan> Connection::command_without_task(const Bhs& bhs) {
  metrics::count_refused_command(metrics::RefusalCause::task_slots, host_.counters());
  OutPdu* pdu = new_pdu(Opcode::scsi_response, 0x80);
  pdu->bhs.bytes[3] = static_cast<std::uint8_t>(scsi::Status::task_set_full);
  pdu->bhs.set_itt(bhs.itt());
  queue(pdu, true);
  return DataPlan{};
}

std::optional<scsi::SenseCode> Connection::command_refusal(IscsiTask& t, const Bhs& bhs) {
  if (bhs.total_ahs_length() != 0) {
    // An extended CDB or a bidirectional read length (RFC 7143 §11.2.1.2): no
    // command we offer takes either. The command has taken its CmdSN, so it
    // ends with a status like any command we cannot run; a Reject alone would
    // leave the initiator waiting for one. Its Data-Out is dropped silently.
    spdlog::warn("{} ({}): command ITT {:#x} with {} bytes of AHS: CHECK CONDITION", peer_,
                 params_.initiator_name, t.itt, bhs.total_ahs_length());
    tasks_.remember_ended(t.itt);
    return scsi::sense::invalid_field_in_cdb;
  }
  if (t.reading && t.writing) return scsi::sense::invalid_field_in_cdb;
  if (t.edtl > settings_.max_transfer_length) return scsi::sense::invalid_field_in_cdb;
  return std::nullopt;
}

const char* Connection::command_violation(const IscsiTask& t, const Bhs& bhs) const {
  std::uint32_t dsl = bhs.data_segment_length();
  if (dsl > 0) {
    std::uint32_t first_burst = std::min(params_.first_burst_length, t.edtl);
    if (!t.writing || !params_.immediate_data || dsl > first_burst)
      return "immediate data not allowed here";
  }
  if (!t.writing && !bhs.final_bit()) return "F bit clear on a command without Data-Out";
  return nullptr;
}

bool Connection::take_buffer(IscsiTask& t) {
  if (!(t.writing || t.reading) || t.edtl == 0) return true;
  IoBuffer lent = host_.acquire_buffer(t.edtl);
  t.buf = lent.data;
  t.buf_size = lent.size;
  if (t.buf == nullptr) {
    refuse_for_memory(t);
    return false;
  }
  if (t.reading) out_.hold(t.buf_size);  // held until its Data-In is sent
  return true;
}

void Connection::refuse_for_memory(IscsiTask& t) {
  // Over limits.max_buffer_memory (or out of memory): a status initiators
  // retry after a while (Linux and QEMU both do), never a failed command.
  // TASK SET FULL when the session has other commands whose completion
  // frees memory, BUSY when it has none (SAM-5 5.3).
  t.buf_size = 0;
  scsi::Status st = tasks_.in_use() > 1 ? scsi::Status::task_set_full : scsi::Status::busy;
  metrics::count_refused_command(metrics::RefusalCause::buffer_memory, host_.counters());
  auto level = ++busy_commands_ <= kWarningsLogged ? spdlog::level::warn : spdlog::level::debug;
  spdlog::log(level,
              "{} ({}): no buffer memory for a {}-byte command (limits.max_buffer_memory); "
              "answered {}",
              peer_, params_.initiator_name, t.edtl,
              st == scsi::Status::busy ? "BUSY" : "TASK SET FULL");
  // Data-Out already on its way for it is dropped without a Reject.
  tasks_.remember_ended(t.itt);
  t.state = IscsiTask::State::executing;
  t.owner = this;
  t.status = st;
  task_complete(t);
}

// ---------------------------------------------------------------- Data-Out, R2T

std::optional<DataPlan> Connection::data_out_header(const Bhs& bhs) {
  std::uint32_t dsl = bhs.data_segment_length();
  IscsiTask* t = tasks_.find(bhs.itt());
  if (t == nullptr || t->state != IscsiTask::State::receiving || !t->writing) {
    // A late Data-Out for a task that was aborted is normal; anything else is not.
    bool aborted = t ? t->aborted : tasks_.recently_ended(bhs.itt());
    if (!aborted)
      reject(bhs, RejectReason::invalid_pdu_field, "Data-Out for no task awaiting data");
    return DataPlan{};
  }
  std::uint32_t off = bhs.buffer_offset();
  if (off > t->edtl || dsl > t->edtl - off) {
    reject(bhs, RejectReason::protocol_error, "Data-Out beyond the expected transfer length");
    closing_ = true;
    return std::nullopt;
  }
  if (const char* why = data_out_sequence_error(*t, bhs)) {
    reject(bhs, RejectReason::protocol_error, why);
    closing_ = true;
    return std::nullopt;
  }
  rx_.task = t;
  rx_.offset = off;
  return DataPlan{t->buf + off, dsl, 0};
}

const char* Connection::data_out_sequence_error(IscsiTask& t, const Bhs& bhs) {
  std::uint32_t dsl = bhs.data_segment_length();
  std::uint32_t off = bhs.buffer_offset();
  if (bhs.ttt() == kReservedTag) {
    std::uint32_t limit = std::min(params_.first_burst_length, t.edtl);
    if (t.unsolicited_done || off + dsl > limit) return "unsolicited Data-Out not allowed here";
    if (bhs.data_sn() != t.unsolicited_data_sn++) data_sn_error(t, bhs);
    return nullptr;
  }
  for (auto& slot : t.r2ts) {
    if (slot.busy && slot.ttt == bhs.ttt()) {
      bool ok = off >= slot.offset && off + dsl <= slot.offset + slot.len;
      if (!ok) break;
      if (bhs.data_sn() != slot.next_data_sn++) data_sn_error(t, bhs);
      return nullptr;
    }
  }
  return "Data-Out outside its R2T";
}

void Connection::scsi_data_complete() {
  if (!rx_.task) return;
  IscsiTask& t = *rx_.task;
  rx_.task = nullptr;
  if (t.aborted) {
    // Aborted while this segment was arriving into its buffer.
    release_task(t);
    return;
  }
  const Bhs& bhs = rx_.bhs;
  std::uint32_t dsl = bhs.data_segment_length();
  t.received += dsl;
  if (bhs.opcode() == Opcode::data_out && bhs.ttt() != kReservedTag) {
    for (auto& slot : t.r2ts) {
      if (!slot.busy || slot.ttt != bhs.ttt()) continue;
      slot.received += dsl;
      if (slot.received < slot.len && !bhs.final_bit()) continue;
      if (slot.received < slot.len) {
        reject(bhs, RejectReason::protocol_error, "Data-Out sequence ended early");
        closing_ = true;
        return;
      }
      slot.busy = false;
      --t.r2t_outstanding;
    }
  } else if (bhs.opcode() == Opcode::data_out && bhs.final_bit()) {
    t.unsolicited_done = true;
  }
  data_received(t);
}

void Connection::data_received(IscsiTask& t) {
  if (t.state != IscsiTask::State::receiving) return;
  if (t.received >= t.edtl || !t.writing) {
    if (t.data_failed) {
      // Later Data-Out of it (a repeated offset can make the count look
      // complete early) is dropped without a Reject.
      tasks_.remember_ended(t.itt);
      t.state = IscsiTask::State::executing;
      return fail_task(t, scsi::sense::protocol_service_crc_error);
    }
    execute(t);
    return;
  }
  if (!t.unsolicited_done) return;
  if (t.r2t_next_offset < t.received && t.r2t_outstanding == 0 && t.r2t_sn == 0)
    t.r2t_next_offset = t.received;
  send_r2ts(t);
}

void Connection::send_r2ts(IscsiTask& t) {
  for (auto& slot : t.r2ts) {
    if (t.r2t_next_offset >= t.edtl) break;
    if (slot.busy) continue;
    std::uint32_t len = std::min(params_.max_burst_length, t.edtl - t.r2t_next_offset);
    std::uint32_t ttt = new_ttt();
    slot = {ttt, t.r2t_next_offset, len, 0, 0, true};
    ++t.r2t_outstanding;
    OutPdu* pdu = new_pdu(Opcode::r2t, 0x80);
    pdu->bhs.set_lun_field(lun_field_of(t.lun));
    pdu->bhs.set_itt(t.itt);
    pdu->bhs.set_ttt(ttt);
    pdu->bhs.set_data_sn(t.r2t_sn++);
    pdu->bhs.set_buffer_offset(t.r2t_next_offset);
    pdu->bhs.set_desired_length(len);
    queue(pdu, false);
    t.r2t_next_offset += len;
  }
}

void Connection::data_sn_error(IscsiTask& t, const Bhs& bhs) {
  // RFC 7143 §7.12: a DataSN out of order means an earlier Data-Out was lost
  // (an implied digest error), handled as §7.8 says for a data PDU. No
  // Reject: the PDU itself is sound, and initiators end a command they see
  // rejected, so the CHECK CONDITION that follows would match nothing.
  if (!t.data_failed) {
    spdlog::warn(
        "{} ({}): Data-Out for ITT {:#x} with DataSN {} out of order; the command "
        "will end with CHECK CONDITION",
        peer_, params_.initiator_name, t.itt, bhs.data_sn());
  }
  t.data_failed = true;
}

bool Connection::data_out_stalled(Clock::time_point now) const {
  // A peer that answers pings but never sends the data of its WRITEs would
  // hold their buffers for ever (RFC 7143 leaves the time-out to the target;
  // at ErrorRecoveryLevel 0 the connection goes). While receive is paused
  // the data may be waiting unread in the socket: not the peer's stall.
  if (settings_.nop_timeout.count() == 0 || should_pause_receive()) return false;
  if (now - last_data_progress_ <= settings_.nop_timeout) return false;
  for (const IscsiTask* t = tasks_.first(); t; t = t->next)
    if (t->state == IscsiTask::State::receiving) return true;
  return false;
}

// ---------------------------------------------------------------- execution

void Connection::refresh_luns() {
  // Commands executing now keep running on the maps they started on, and
  // those in a logical unit's task set run on that LU (LunMap::execute).
  for (IscsiTask* t = tasks_.first(); t; t = t->next) {
    if ((t->state == IscsiTask::State::executing || t->task_set_lu) && !t->on_retired_luns) {
      t->on_retired_luns = true;
      ++luns_.tasks_on_retired;
    }
  }
  if (luns_.current && luns_.tasks_on_retired > 0)
    luns_.retired.push_back(std::move(luns_.current));
  luns_.version = target_->luns_version();
  luns_.current = target_->luns();
}

scsi::LunMap& Connection::lun_map() {
  if (target_->luns_version() != luns_.version || !luns_.current) refresh_luns();
  return *luns_.current;
}

void Connection::execute(IscsiTask& t) {
  scsi::LunMap& luns = lun_map();
  t.state = IscsiTask::State::executing;
  t.buffer = t.buf;
  t.buffer_len = t.writing ? std::min(t.received, t.edtl) : (t.reading ? t.edtl : 0);
  t.expected_length = t.edtl;
  t.direction = t.writing   ? scsi::DataDirection::to_device
                : t.reading ? scsi::DataDirection::from_device
                            : scsi::DataDirection::none;
  t.nexus = &nexus_;
  t.owner = this;
  luns.execute(t);
}

void Connection::fail_task(IscsiTask& t, scsi::SenseCode code) {
  t.owner = this;
  t.fail(code);
  task_complete(t);
}

void Connection::task_complete(scsi::Task& task) {
  auto& t = static_cast<IscsiTask&>(task);
  // Tests: the moment GOOD is committed to go out, before it is queued.
  if (t.durability_promise != scsi::DurabilityPromise::none) {
    scsi::record_command_done(t, !(shut_down_ || t.aborted) && t.status == scsi::Status::good);
  }
  if (shut_down_ || t.aborted) {
    abort_wait_over(t);
    release_task(t);
    maybe_finish_logout();
    return;
  }
  tasks_.responding(t);
  respond(t);
  if (t.pdus_pending == 0) release_task(t);
  maybe_finish_logout();
}

void Connection::release_task(IscsiTask& t) {
  if (t.task_set_lu) t.task_set_lu->leave_task_set(t);  // before its map may go
  if (t.buf) {
    if (t.reading) out_.let_go(t.buf_size);
    host_.release_buffer({t.buf, t.buf_size});
    t.buf = nullptr;
    t.buf_size = 0;
  }
  if (t.on_retired_luns) {
    t.on_retired_luns = false;
    if (--luns_.tasks_on_retired == 0) luns_.retired.clear();
  }
  tasks_.release(t);
  // Checked when output is next taken: this can run inside the network
  // layer's handling of a send, which must not be asked to send again.
  window_.task_released();
}

// ---------------------------------------------------------------- Data-In, response

void Connection::respond(IscsiTask& t) {
  bool good = t.status == scsi::Status::good;
  std::uint32_t to_send = 0;
  if (t.reading && good) to_send = std::min(t.data_in_length, t.edtl);
  if (to_send == 0) return send_scsi_response(t);
  send_data_in(t, to_send);
}

void Connection::send_data_in(IscsiTask& t, std::uint32_t to_send) {
  std::uint32_t max_seg =
      std::max<std::uint32_t>(512, params_.initiator_max_recv_data_segment_length);
  std::uint32_t burst = std::max<std::uint32_t>(512, params_.max_burst_length);
  std::uint32_t off = 0, in_burst = 0;
  while (off < to_send) {
    std::uint32_t len = std::min({max_seg, to_send - off, burst - in_burst});
    bool last = off + len == to_send;
    in_burst += len;
    bool end_of_burst = last || in_burst == burst;
    if (in_burst == burst) in_burst = 0;
    OutPdu* pdu = new_pdu(Opcode::data_in, end_of_burst ? 0x80 : 0);
    pdu->bhs.set_lun_field(lun_field_of(t.lun));
    pdu->bhs.set_itt(t.itt);
    pdu->bhs.set_ttt(kReservedTag);
    pdu->bhs.set_data_sn(t.data_sn++);
    pdu->bhs.set_buffer_offset(off);
    set_data(*pdu, t.buf + off, len);
    pdu->task = &t;
    ++t.pdus_pending;
    if (last) {
      // Status rides in the last Data-In when the command succeeded.
      std::uint8_t flags = 0x80 | 0x01;
      std::uint32_t residual = 0;
      if (t.transfer_length > t.edtl) {
        flags |= 0x04;
        residual = t.transfer_length - t.edtl;
      } else if (to_send < t.edtl) {
        flags |= 0x02;
        residual = t.edtl - to_send;
      }
      pdu->bhs.set_flags(flags);
      pdu->bhs.bytes[3] = static_cast<std::uint8_t>(t.status);
      pdu->bhs.set_residual(residual);
      queue(pdu, true);
    } else {
      queue(pdu, false);
    }
    off += len;
  }
}

void Connection::send_scsi_response(IscsiTask& t) {
  OutPdu* pdu = new_pdu(Opcode::scsi_response, 0x80);
  pdu->bhs.set_itt(t.itt);
  pdu->bhs.bytes[2] = 0;  // command completed at target
  pdu->bhs.bytes[3] = static_cast<std::uint8_t>(t.status);
  if (t.status == scsi::Status::good) {
    std::uint32_t moved = t.reading ? std::min(t.data_in_length, t.edtl) : t.transfer_length;
    if (t.transfer_length > t.edtl) {
      pdu->bhs.set_flags(0x80 | 0x04);
      pdu->bhs.set_residual(t.transfer_length - t.edtl);
    } else if (moved < t.edtl) {
      pdu->bhs.set_flags(0x80 | 0x02);
      pdu->bhs.set_residual(t.edtl - moved);
    }
  }
  if (t.sense_len > 0) {
    pdu->owned.resize(2 + t.sense_len);
    put_be16(pdu->owned.data(), t.sense_len);
    std::memcpy(pdu->owned.data() + 2, t.sense.data(), t.sense_len);
    set_data(*pdu, pdu->owned.data(), static_cast<std::uint32_t>(pdu->owned.size()));
  }
  pdu->bhs.set_data_sn(t.data_sn);  // ExpDataSN
  pdu->task = &t;
  ++t.pdus_pending;
  queue(pdu, true);
}

}  // namespace ringtgt::iscsi
