// The output side: PDUs are numbered (StatSN, ExpCmdSN, MaxCmdSN), padded and digested
// as they are queued, and given back by the network layer once sent.
#include <spdlog/spdlog.h>

#include <cstring>

#include "iscsi_task.hpp"
#include "ringtgt/iscsi/connection.hpp"

namespace ringtgt::iscsi {

OutPdu* Connection::new_pdu(Opcode op, std::uint8_t flags) {
  return out_.make(op, flags);
}

void Connection::set_data(OutPdu& pdu, const std::uint8_t* data, std::uint32_t len) {
  pdu.data = data;
  pdu.data_len = len;
  pdu.bhs.set_data_segment_length(len);
}

void Connection::prepare(OutPdu* pdu, bool advance_stat_sn) {
  Opcode op = pdu->bhs.opcode();
  // Data-In carries a StatSN only with the status in its last PDU.
  if (op != Opcode::data_in || advance_stat_sn)
    pdu->bhs.set_stat_sn(window_.stat_sn(advance_stat_sn));
  pdu->bhs.set_exp_cmd_sn(window_.exp_cmd_sn());
  pdu->bhs.set_max_cmd_sn(max_cmd_sn());
  std::uint32_t pad = padded(pdu->data_len) - pdu->data_len;
  std::memset(pdu->trailer, 0, sizeof pdu->trailer);
  pdu->trailer_len = static_cast<std::uint8_t>(pad);
  if (phase_ == Phase::full_feature || phase_ == Phase::logged_out) {
    if (digest_header_) {
      Crc32c crc;
      crc.update(pdu->bhs.bytes.data(), kBhsSize);
      store_digest(pdu->header_digest, crc.value());
    }
    if (digest_data_ && pdu->data_len > 0) {
      Crc32c crc;
      crc.update(pdu->data, pdu->data_len);
      crc.update(pdu->trailer, pad);
      store_digest(pdu->trailer + pad, crc.value());
      pdu->trailer_len = static_cast<std::uint8_t>(pad + kDigestSize);
    }
  }
  pdu->header_len = static_cast<std::uint8_t>(
      kBhsSize + ((phase_ != Phase::login && digest_header_) ? kDigestSize : 0));
}

void Connection::queue(OutPdu* pdu, bool advance_stat_sn) {
  prepare(pdu, advance_stat_sn);
  out_.append(pdu);
  host_.output_ready();
}

OutPdu* Connection::take_output() {
  if (window_.take_reopen()) announce_window();
  return out_.take();
}

void Connection::sent(OutPdu* pdu) {
  IscsiTask* t = out_.recycle(pdu);
  // A task's last PDU is out: the initiator has its status, the task may go.
  if (t && --t->pdus_pending == 0 && t->state == IscsiTask::State::responding) release_task(*t);
}

void Connection::reject(const Bhs& bhs, RejectReason reason, const char* why) {
  spdlog::warn("{} ({}): reject opcode {:#x}: {}", peer_,
               params_.initiator_name.empty() ? "?" : params_.initiator_name,
               static_cast<unsigned>(bhs.opcode()), why);
  metrics::count_reject(host_.counters());
  OutPdu* pdu = new_pdu(Opcode::reject, 0x80);
  pdu->bhs.bytes[2] = static_cast<std::uint8_t>(reason);
  pdu->bhs.set_itt(kReservedTag);
  pdu->owned.assign(bhs.bytes.begin(), bhs.bytes.end());
  set_data(*pdu, pdu->owned.data(), kBhsSize);
  queue(pdu, true);
}

}  // namespace ringtgt::iscsi
