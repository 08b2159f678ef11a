#include "ringtgt/iscsi/output_queue.hpp"

namespace ringtgt::iscsi {

namespace {

// What a queued PDU holds beyond its task's buffer (counted with the task).
std::uint64_t own_bytes(const OutPdu& pdu) {
  return std::uint64_t{pdu.header_len} + pdu.trailer_len + (pdu.task ? 0 : pdu.data_len);
}

}  // namespace

OutPdu* OutputQueue::make(Opcode op, std::uint8_t flags) {
  OutPdu* pdu;
  if (free_.empty()) {
    store_.push_back(std::make_unique<OutPdu>());
    pdu = store_.back().get();
  } else {
    pdu = free_.back();
    free_.pop_back();
  }
  pdu->bhs = Bhs::make(op, flags);
  pdu->data = nullptr;
  pdu->data_len = 0;
  pdu->trailer_len = 0;
  pdu->owned.clear();
  pdu->task = nullptr;
  pdu->next = nullptr;
  return pdu;
}

void OutputQueue::append(OutPdu* pdu) {
  if (tail_)
    tail_->next = pdu;
  else
    head_ = pdu;
  tail_ = pdu;
  ++unsent_;
  bytes_ += own_bytes(*pdu);
}

OutPdu* OutputQueue::take() {
  OutPdu* head = head_;
  head_ = tail_ = nullptr;
  return head;
}

IscsiTask* OutputQueue::recycle(OutPdu* pdu) {
  --unsent_;
  bytes_ -= own_bytes(*pdu);
  IscsiTask* t = pdu->task;
  pdu->owned.clear();
  pdu->task = nullptr;
  free_.push_back(pdu);
  return t;
}

}  // namespace ringtgt::iscsi
