// The connection's life and the receive path: each received PDU goes to the concept it
// belongs to (connection_login.cpp, connection_data.cpp, connection_tmf.cpp,
// connection_text.cpp); what they answer is queued by connection_output.cpp.
#include "ringtgt/iscsi/connection.hpp"

#include <spdlog/spdlog.h>

#include "iscsi_task.hpp"
#include "ringtgt/iscsi/digest.hpp"

namespace ringtgt::iscsi {

Connection::Connection(ConnectionHost& host, ConnectionSettings settings, std::string peer,
                       Clock::time_point now)
    : host_(host),
      settings_(std::move(settings)),
      peer_(std::move(peer)),
      login_{.negotiator = LoginNegotiator(settings_.limits, settings_.target_alias_default,
                                           settings_.portal_group_tag),
             .deadline = now + settings_.login_timeout} {
  keep_alive_.last_rx = now;
  login_.negotiator.set_auth_lookup([this](SessionType type, std::string_view target) {
    return host_.auth_policy(type, target);
  });
}

Connection::~Connection() {
  for (auto& t : tasks_.all()) {
    if (t->buf) host_.release_buffer({t->buf, t->buf_size});
  }
  // Only an idle connection is destroyed, so no abort is still waiting; if
  // one were, its PREEMPT AND ABORT must not wait forever.
  for (auto& w : abort_waits_) w.done();
}

// ---------------------------------------------------------------- receiving

std::uint32_t Connection::header_extra(const std::uint8_t* bhs) const {
  return bhs[4] * 4u + (digest_header_ ? kDigestSize : 0);
}

std::optional<DataPlan> Connection::on_header(const std::uint8_t* header, std::uint32_t len,
                                              Clock::time_point now) {
  rx_.bhs = Bhs(header);
  keep_alive_.last_rx = now;
  rx_.task = nullptr;
  rx_.ignored = false;
  rx_.dropped = false;
  if (!header_digest_ok(header, len)) return std::nullopt;
  if (phase_ == Phase::login) return login_header(rx_.bhs);
  if (phase_ == Phase::logged_out) return std::nullopt;
  return full_feature_header(now);
}

bool Connection::header_digest_ok(const std::uint8_t* header, std::uint32_t len) {
  if (!digest_header_) return true;
  Crc32c crc;
  crc.update(header, len - kDigestSize);
  if (crc.value() == load_digest(header + len - kDigestSize)) return true;
  // Its length fields cannot be trusted, so the next PDU cannot be found:
  // the connection goes (RFC 7143 §7.8; there are no markers).
  ++digest_errors_.header;
  metrics::count_digest_error(metrics::DigestKind::header, host_.counters());
  spdlog::warn("{} ({}): header digest error (opcode byte {:#x}); closing the connection", peer_,
               params_.initiator_name, header[0]);
  closing_ = true;
  return false;
}

std::optional<DataPlan> Connection::full_feature_header(Clock::time_point now) {
  const Bhs& bhs = rx_.bhs;
  std::uint32_t dsl = bhs.data_segment_length();
  if (dsl > params_.target_max_recv_data_segment_length) {
    reject(bhs, RejectReason::protocol_error, "data segment longer than MaxRecvDataSegmentLength");
    closing_ = true;
    return std::nullopt;
  }
  bool discovery = params_.session_type == SessionType::discovery;
  std::optional<DataPlan> plan;
  switch (bhs.opcode()) {
    case Opcode::scsi_command:
      if (discovery) {
        reject(bhs, RejectReason::protocol_error, "SCSI command in a discovery session");
        closing_ = true;
        return std::nullopt;
      }
      last_data_progress_ = now;
      plan = command_header(bhs);
      break;
    case Opcode::data_out:
      last_data_progress_ = now;
      plan = data_out_header(bhs);
      break;
    case Opcode::nop_out:
      plan = nop_out_header(bhs);
      break;
    case Opcode::text_request:
      plan = text_header(bhs);
      break;
    case Opcode::logout_request:
      plan = DataPlan{};
      break;
    case Opcode::task_mgmt_request:
      if (discovery) {
        reject(bhs, RejectReason::protocol_error, "task management in a discovery session");
        closing_ = true;
        return std::nullopt;
      }
      plan = DataPlan{};
      break;
    case Opcode::snack_request:
      reject(bhs, RejectReason::command_not_supported, "SNACK (ErrorRecoveryLevel is 0)");
      plan = DataPlan{};
      break;
    case Opcode::login_request:
      reject(bhs, RejectReason::protocol_error, "login request in full feature phase");
      closing_ = true;
      return std::nullopt;
    default:
      reject(bhs, RejectReason::protocol_error, "unknown opcode");
      closing_ = true;
      return std::nullopt;
  }
  if (!plan) return plan;
  rx_.dropped = plan->dest == nullptr;  // the segment is read into scratch and dropped
  plan->len = dsl;
  plan->trailer_len = padded(dsl) - dsl + (digest_data_ && dsl > 0 ? kDigestSize : 0);
  return plan;
}

void Connection::on_data(const std::uint8_t* trailer, std::uint32_t trailer_len) {
  if (rx_.ignored && phase_ != Phase::login) return;  // out of window, rejected or dropped
  if (!data_digest_ok(trailer, trailer_len)) return;
  if (phase_ == Phase::login) return login_data_complete();
  if (phase_ == Phase::logged_out) return;
  segment_complete();
}

bool Connection::data_digest_ok(const std::uint8_t* trailer, std::uint32_t trailer_len) {
  std::uint32_t dsl = rx_.bhs.data_segment_length();
  if (!digest_data_ || dsl == 0 || phase_ == Phase::login || rx_.dropped) return true;
  const std::uint8_t* data = rx_.task ? rx_.task->buf + rx_.offset : rx_.segment.data();
  if (data == nullptr) return true;
  Crc32c crc;
  crc.update(data, dsl);
  crc.update(trailer, padded(dsl) - dsl);
  if (crc.value() == load_digest(trailer + trailer_len - kDigestSize)) return true;
  data_digest_error();
  // A Data-Out still counts (its task fails once its sequence ends); the rest is gone.
  return rx_.task != nullptr;
}

void Connection::data_digest_error() {
  // RFC 7143 §7.8: Reject with "data digest error" and discard the PDU.
  // A Data-Out: its task ends with CHECK CONDITION, PROTOCOL SERVICE
  // CRC ERROR once the rest of its data is in (option b; a recovery
  // R2T would need ErrorRecoveryLevel 1), and the connection stays.
  // Immediate data in a SCSI Command: the command itself is lost, a
  // hole in the CmdSN order that only ErrorRecoveryLevel 1 could fill,
  // so the connection goes and the initiator recovers the session. A
  // non-data PDU (NOP-Out, Text) needs nothing more.
  const Bhs& bhs = rx_.bhs;
  ++digest_errors_.data;
  metrics::count_digest_error(metrics::DigestKind::data, host_.counters());
  const bool data_out = rx_.task != nullptr && bhs.opcode() == Opcode::data_out;
  const bool command = rx_.task != nullptr && !data_out;
  spdlog::warn("{} ({}): data digest error on opcode {:#x} ITT {:#x}; {}", peer_,
               params_.initiator_name, static_cast<unsigned>(bhs.opcode()), bhs.itt(),
               data_out  ? "rejected; the command will end with CHECK CONDITION"
               : command ? "rejected, closing the connection (ErrorRecoveryLevel 0)"
                         : "rejected and discarded");
  reject(bhs, RejectReason::data_digest_error, "data digest error");
  if (data_out) {
    rx_.task->data_failed = true;  // counted as received, so the sequence can end
    return;
  }
  if (command) {
    closing_ = true;
  } else if (bhs.opcode() == Opcode::text_request) {
    text_.in.clear();  // the pieces before it are no use without it
  }
  rx_.task = nullptr;
}

void Connection::segment_complete() {
  switch (rx_.bhs.opcode()) {
    case Opcode::scsi_command:
    case Opcode::data_out:
      scsi_data_complete();
      break;
    case Opcode::nop_out:
      nop_out_complete();
      break;
    case Opcode::text_request:
      text_complete();
      break;
    case Opcode::logout_request:
      logout(rx_.bhs);
      break;
    case Opcode::task_mgmt_request:
      task_management(rx_.bhs);
      break;
    default:
      break;
  }
}

// ---------------------------------------------------------------- time, teardown

void Connection::on_tick(Clock::time_point now) {
  if (closing_) return;
  if (phase_ == Phase::login) return check_login_deadline(now);
  if (phase_ != Phase::full_feature) return;
  if (data_out_stalled(now)) {
    spdlog::warn(
        "{} ({}): no Data-Out for {}s while a WRITE waits for its data; closing the "
        "connection",
        peer_, params_.initiator_name, settings_.nop_timeout.count());
    closing_ = true;
    return;
  }
  keep_alive(now);
}

void Connection::request_close(const char* why) {
  spdlog::info("closing connection {} ({} on {}): {}", peer_, params_.initiator_name,
               params_.target_name, why);
  closing_ = true;
}

void Connection::shut_down() {
  if (!shut_down_ && target_ && phase_ != Phase::login) {
    // The I_T nexus is gone: what the SCSI layer kept for it goes too.
    if (auto map = target_->luns()) map->nexus_lost(nexus_);
  }
  shut_down_ = true;
  closing_ = true;
  for (IscsiTask* t = tasks_.first(); t;) {
    IscsiTask* next = t->next;
    if (t->state == IscsiTask::State::receiving) release_task(*t);
    t = next;
  }
  for (OutPdu* p = take_output(); p;) {
    OutPdu* next = p->next;
    sent(p);
    p = next;
  }
}

bool Connection::idle() const {
  return tasks_.in_use() == 0 && out_.unsent() == 0;
}

}  // namespace ringtgt::iscsi
