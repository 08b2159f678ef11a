// The PDUs beside SCSI: NOP-Out/NOP-In (pings both ways, RFC 7143 §11.18-11.19), Text
// (SendTargets, §11.10-11.11) and Logout (§11.14-11.15).
#include <spdlog/spdlog.h>

#include <algorithm>

#include "iscsi_task.hpp"
#include "ringtgt/iscsi/connection.hpp"

namespace ringtgt::iscsi {

std::uint32_t Connection::new_ttt() {
  std::uint32_t ttt = next_ttt_++;
  if (next_ttt_ == kReservedTag) next_ttt_ = 1;
  return ttt;
}

// A login or text request may come in pieces (the C bit): its keys are parsed once whole.
void Connection::keep_keys() {
  text_.in.append(reinterpret_cast<const char*>(rx_.segment.data()), rx_.segment.size());
}

TextParseError Connection::take_keys(std::vector<KeyValue>& keys) {
  TextParseError err =
      parse_text(reinterpret_cast<const std::uint8_t*>(text_.in.data()), text_.in.size(), keys);
  text_.in.clear();
  return err;
}

// ---------------------------------------------------------------- NOP

std::optional<DataPlan> Connection::nop_out_header(const Bhs& bhs) {
  std::uint32_t dsl = bhs.data_segment_length();
  if (bhs.itt() != kReservedTag && !check_cmd_sn(bhs)) {
    rx_.ignored = true;
    return DataPlan{};
  }
  rx_.segment.resize(dsl);
  return DataPlan{rx_.segment.data(), dsl, 0};
}

void Connection::nop_out_complete() {
  const Bhs& bhs = rx_.bhs;
  if (bhs.itt() == kReservedTag) {
    // The answer to our ping.
    if (keep_alive_.ping_sent && bhs.ttt() == keep_alive_.ping_ttt) keep_alive_.ping_sent.reset();
    return;
  }
  OutPdu* pdu = new_pdu(Opcode::nop_in, 0x80);
  pdu->bhs.set_lun_field(bhs.lun_field());
  pdu->bhs.set_itt(bhs.itt());
  pdu->bhs.set_ttt(kReservedTag);
  pdu->owned.assign(rx_.segment.begin(), rx_.segment.end());
  set_data(*pdu, pdu->owned.data(), static_cast<std::uint32_t>(pdu->owned.size()));
  queue(pdu, true);
}

void Connection::keep_alive(Clock::time_point now) {
  if (settings_.nop_interval.count() == 0) return;
  if (keep_alive_.ping_sent) {
    if (now - *keep_alive_.ping_sent > settings_.nop_timeout) {
      spdlog::warn("{} ({}): no answer to NOP-In for {}s; closing the connection", peer_,
                   params_.initiator_name, settings_.nop_timeout.count());
      closing_ = true;
    }
    return;
  }
  if (now - keep_alive_.last_rx < settings_.nop_interval) return;
  keep_alive_.ping_ttt = new_ttt();
  keep_alive_.ping_sent = now;
  OutPdu* pdu = new_pdu(Opcode::nop_in, 0x80);
  pdu->bhs.set_itt(kReservedTag);
  pdu->bhs.set_ttt(keep_alive_.ping_ttt);
  queue(pdu, false);
}

// ---------------------------------------------------------------- text

std::optional<DataPlan> Connection::text_header(const Bhs& bhs) {
  std::uint32_t dsl = bhs.data_segment_length();
  if (!check_cmd_sn(bhs)) {
    rx_.ignored = true;
    return DataPlan{};
  }
  if (text_.in.size() + dsl > kMaxTextBytes) {
    reject(bhs, RejectReason::protocol_error, "text request too long");
    closing_ = true;
    return std::nullopt;
  }
  rx_.segment.resize(dsl);
  return DataPlan{rx_.segment.data(), dsl, 0};
}

void Connection::text_complete() {
  const Bhs& bhs = rx_.bhs;
  if (bhs.ttt() != kReservedTag) {
    // The initiator asks for the next piece of a long response.
    if (bhs.ttt() != text_.ttt || text_.out.empty()) {
      reject(bhs, RejectReason::invalid_pdu_field, "text continuation with an unknown TTT");
      return;
    }
    return send_text_piece(bhs);
  }
  keep_keys();
  if (bhs.flags() & 0x40) {
    // Continued request: answer empty until the last piece.
    OutPdu* pdu = new_pdu(Opcode::text_response, 0x00);
    pdu->bhs.set_itt(bhs.itt());
    text_.ttt = next_ttt_++;
    pdu->bhs.set_ttt(text_.ttt);
    queue(pdu, true);
    return;
  }
  std::vector<KeyValue> keys;
  TextParseError perr = take_keys(keys);
  if (perr != TextParseError::none) {
    reject(bhs, RejectReason::protocol_error, "malformed text request");
    return;
  }
  answer_text_request(keys);
  send_text_piece(bhs);
}

void Connection::answer_text_request(const std::vector<KeyValue>& keys) {
  text_.out.clear();
  text_.out_pos = 0;
  for (const auto& kv : keys) {
    if (kv.key == "SendTargets") {
      // A normal session learns only about its own target (RFC 7143 appendix C).
      std::string_view which = kv.value;
      if (params_.session_type == SessionType::normal) which = params_.target_name;
      host_.append_send_targets(params_.initiator_name, which, text_.out);
    } else {
      append_key(text_.out, kv.key, "NotUnderstood");
    }
  }
}

void Connection::send_text_piece(const Bhs& bhs) {
  // At most what the initiator receives in one PDU; the rest when it asks (TTT).
  std::uint32_t max_seg =
      std::max<std::uint32_t>(512, params_.initiator_max_recv_data_segment_length);
  std::size_t left = text_.out.size() - text_.out_pos;
  std::size_t n = std::min<std::size_t>(left, max_seg);
  bool more = n < left;
  OutPdu* pdu = new_pdu(Opcode::text_response, more ? 0x40 : 0x80);
  pdu->bhs.set_lun_field(bhs.lun_field());
  pdu->bhs.set_itt(bhs.itt());
  if (more) text_.ttt = new_ttt();
  pdu->bhs.set_ttt(more ? text_.ttt : kReservedTag);
  pdu->owned.assign(text_.out.begin() + static_cast<std::ptrdiff_t>(text_.out_pos),
                    text_.out.begin() + static_cast<std::ptrdiff_t>(text_.out_pos + n));
  set_data(*pdu, pdu->owned.data(), static_cast<std::uint32_t>(n));
  text_.out_pos += n;
  if (!more) {
    text_.out.clear();
    text_.out_pos = 0;
  }
  queue(pdu, true);
}

// ---------------------------------------------------------------- logout

void Connection::logout(const Bhs& bhs) {
  if (!check_cmd_sn(bhs)) return;
  std::uint8_t reason = bhs.flags() & 0x7f;
  logout_.itt = bhs.itt();
  logout_.response = reason <= 1 ? 0 : 2;  // connection recovery: not supported at ERL 0
  logout_.pending = true;
  if (logout_.response == 0) {
    // Commands still waiting for Data-Out will not get it now.
    for (IscsiTask* t = tasks_.first(); t;) {
      IscsiTask* next = t->next;
      if (t->state == IscsiTask::State::receiving) release_task(*t);
      t = next;
    }
  }
  maybe_finish_logout();
}

void Connection::maybe_finish_logout() {
  if (!logout_.pending) return;
  if (logout_.response == 0) {
    // The response says the session's commands are done: wait for those executing.
    for (IscsiTask* t = tasks_.first(); t; t = t->next)
      if (t->state == IscsiTask::State::executing) return;
  }
  logout_.pending = false;
  OutPdu* pdu = new_pdu(Opcode::logout_response, 0x80);
  pdu->bhs.bytes[2] = logout_.response;
  pdu->bhs.set_itt(logout_.itt);
  pdu->bhs.set_u16(40, static_cast<std::uint16_t>(params_.default_time2wait));
  pdu->bhs.set_u16(42, static_cast<std::uint16_t>(params_.default_time2retain));
  queue(pdu, true);
  if (logout_.response == 0) {
    spdlog::info("logout: initiator {} target {} peer {} tsih {}", params_.initiator_name,
                 params_.target_name, peer_, tsih_);
    phase_ = Phase::logged_out;
    closing_ = true;
  }
}

}  // namespace ringtgt::iscsi
