// What a connection has queued for the peer, in send order, and the pool its PDUs come
// from: the network layer takes the list, sends it, and gives each PDU back.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "ringtgt/iscsi/digest.hpp"
#include "ringtgt/iscsi/pdu.hpp"

namespace ringtgt::iscsi {

struct IscsiTask;

// A PDU waiting to be sent: header (+digest), then a data slice that points
// into a task's buffer or into owned bytes, then padding (+digest).
struct OutPdu {
  Bhs bhs;
  std::uint8_t header_digest[kDigestSize]{};
  std::uint8_t header_len = kBhsSize;  // with the digest when digests are on
  const std::uint8_t* data = nullptr;
  std::uint32_t data_len = 0;
  std::uint8_t trailer[3 + kDigestSize]{};  // padding then data digest
  std::uint8_t trailer_len = 0;
  std::vector<std::uint8_t> owned;  // text, sense, ping data
  IscsiTask* task = nullptr;        // released when its last PDU is sent
  OutPdu* next = nullptr;
};

class OutputQueue {
 public:
  // A PDU with a fresh BHS from the pool, which grows only until the busiest moment
  // of the connection has been seen: the I/O path allocates nothing once warm.
  OutPdu* make(Opcode op, std::uint8_t flags);
  // pdu is numbered, padded and digested: it goes last in the send order.
  void append(OutPdu* pdu);
  // Every PDU queued so far (a list in send order); each stays counted until recycle().
  OutPdu* take();
  bool empty() const { return head_ == nullptr; }
  // The socket has pdu: back to the pool. Returns the task whose data it carried.
  IscsiTask* recycle(OutPdu* pdu);
  // PDUs taken or queued and not yet given back.
  std::uint32_t unsent() const { return unsent_; }

  // Bytes held for the peer to read: the PDUs' own bytes, plus what hold() added
  // (the buffers of read commands), for backpressure (Connection::output_bytes).
  std::uint64_t bytes() const { return bytes_; }
  void hold(std::uint64_t n) { bytes_ += n; }
  void let_go(std::uint64_t n) { bytes_ -= n; }

 private:
  OutPdu* head_ = nullptr;
  OutPdu* tail_ = nullptr;
  std::vector<std::unique_ptr<OutPdu>> store_;
  std::vector<OutPdu*> free_;
  std::uint32_t unsent_ = 0;
  std::uint64_t bytes_ = 0;
};

}  // namespace ringtgt::iscsi
