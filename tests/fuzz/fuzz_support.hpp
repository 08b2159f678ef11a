// What the libFuzzer targets share: a ConnectionHost over one memory-backed
// target, and a feeder that frames a byte stream into PDUs the way
// net::SocketConnection does (BHS, AHS + header digest, data, trailer).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "ringtgt/iscsi/connection.hpp"
#include "ringtgt/iscsi/digest.hpp"
#include "ringtgt/iscsi/pdu.hpp"
#include "ringtgt/iscsi/text.hpp"
#include "ringtgt/reactor/buffer_pool.hpp"
#include "ringtgt/scsi/logical_unit.hpp"
#include "ringtgt/storage/memory_backend.hpp"

namespace ringtgt::fuzz {

inline constexpr const char* kTarget = "iqn.2025-01.com.example:fuzz";
inline constexpr const char* kInitiator = "iqn.2025-01.com.example:init";
inline constexpr std::uint64_t kLunBytes = 64 * 1024;

// Input that ran out in the middle of something.
struct Exhausted {};

class Input {
 public:
  Input(const std::uint8_t* data, std::size_t size) : p_(data), end_(data + size) {}
  std::size_t left() const { return static_cast<std::size_t>(end_ - p_); }
  std::uint8_t byte() {
    if (p_ == end_) throw Exhausted{};
    return *p_++;
  }
  // Copies n bytes to dest (or skips them when dest is null).
  void take(std::uint8_t* dest, std::size_t n) {
    if (left() < n) throw Exhausted{};
    if (dest) std::memcpy(dest, p_, n);
    p_ += n;
  }

 private:
  const std::uint8_t* p_;
  const std::uint8_t* end_;
};

class FuzzHost final : public iscsi::ConnectionHost {
 public:
  FuzzHost() {
    auto luns = std::make_shared<scsi::LunMap>();
    for (std::uint64_t lun = 0; lun < 2; ++lun) {
      scsi::LunParams lp;
      lp.block_size = lun == 0 ? 512 : 4096;
      lp.serial = "FUZZ" + std::to_string(lun);
      lp.naa = 0x6001405000000001ull + lun;
      lp.spc2_reservations = true;
      luns->add(std::make_shared<scsi::LogicalUnit>(
          lun, lp, std::make_unique<storage::MemoryBackend>(kLunBytes)));
    }
    // LUN 1 is masked from every initiator but one the fuzzer never names.
    luns->set_allowed_initiators(1, {"iqn.2025-01.com.example:other"});
    target_ = std::make_shared<iscsi::TargetEntry>();
    target_->name = kTarget;
    target_->set_luns(luns);
  }

  std::shared_ptr<const iscsi::TargetEntry> find_target(std::string_view name) override {
    return name == target_->name ? target_ : nullptr;
  }
  void append_send_targets(std::string_view, std::string_view which, std::string& out) override {
    if (which == "All" || which == target_->name) {
      iscsi::append_key(out, "TargetName", target_->name);
      iscsi::append_key(out, "TargetAddress", "127.0.0.1:3260,1");
    }
  }
  std::uint16_t session_started(const iscsi::SessionParams&, std::uint64_t) override { return 1; }
  void login_failed(iscsi::LoginFailure, const std::string&, const std::string&,
                    const std::string&) override {}
  void output_ready() override {}
  iscsi::IoBuffer acquire_buffer(std::size_t min_size) override {
    std::size_t size = std::max(min_size, reactor::BufferPool::kMinSize);
    return {pool_.acquire(size), size};
  }
  void release_buffer(iscsi::IoBuffer buffer) override { pool_.release(buffer.data, buffer.size); }
  metrics::GlobalCounters& counters() override { return counters_; }

 private:
  std::shared_ptr<iscsi::TargetEntry> target_;
  reactor::BufferPool pool_;  // this host's own: the fuzzer touches no global state
  metrics::GlobalCounters counters_;
};

// Gives every queued PDU back as sent, checking what the engine built.
inline void drain(iscsi::Connection& conn) {
  for (iscsi::OutPdu* p = conn.take_output(); p;) {
    iscsi::OutPdu* next = p->next;
    if (p->bhs.data_segment_length() != p->data_len) __builtin_trap();
    if (p->data_len > 0 && p->data == nullptr) __builtin_trap();
    // Touch every byte that would go on the wire: ASan sees a stale slice.
    volatile std::uint8_t sink = 0;
    for (std::uint32_t i = 0; i < p->data_len; ++i) sink = sink ^ p->data[i];
    (void)sink;
    conn.sent(p);
    p = next;
  }
}

// Feeds one PDU from the input. fix_digests: the harness computes correct
// digests (so the fuzzer reaches what lies behind them) instead of taking
// them from the input. Returns false when the connection wants to close.
inline bool feed_pdu(iscsi::Connection& conn, Input& in, bool fix_digests, bool header_digest,
                     bool data_digest, iscsi::Clock::time_point now) {
  std::uint8_t header[iscsi::kBhsSize + 1020 + iscsi::kDigestSize];
  in.take(header, iscsi::kBhsSize);
  std::uint32_t extra = conn.header_extra(header);
  if (extra > sizeof header - iscsi::kBhsSize) __builtin_trap();
  std::uint32_t len = iscsi::kBhsSize + extra;
  if (fix_digests && header_digest) {
    in.take(header + iscsi::kBhsSize, extra - iscsi::kDigestSize);
    iscsi::store_digest(header + len - iscsi::kDigestSize,
                        iscsi::crc32c(header, len - iscsi::kDigestSize));
  } else {
    in.take(header + iscsi::kBhsSize, extra);
  }
  auto plan = conn.on_header(header, len, now);
  drain(conn);
  if (!plan) return false;
  if (plan->trailer_len > 7) __builtin_trap();
  std::vector<std::uint8_t> scratch;
  std::uint8_t* dest = plan->dest;
  if (dest == nullptr) {
    scratch.resize(plan->len);
    dest = scratch.data();
  }
  in.take(dest, plan->len);
  std::uint8_t trailer[8] = {};
  std::uint32_t pad = iscsi::padded(plan->len) - plan->len;
  if (fix_digests && data_digest && plan->len > 0 && plan->trailer_len == pad + 4) {
    in.take(trailer, pad);
    iscsi::Crc32c crc;
    crc.update(dest, plan->len);
    crc.update(trailer, pad);
    iscsi::store_digest(trailer + pad, crc.value());
  } else {
    in.take(trailer, plan->trailer_len);
  }
  conn.on_data(trailer, plan->trailer_len);
  drain(conn);
  return !conn.closing();
}

inline std::vector<std::uint8_t> login_pdu(std::uint8_t csg, std::uint8_t nsg,
                                           std::uint32_t exp_stat_sn, const std::string& keys) {
  iscsi::Bhs b = iscsi::Bhs::make(iscsi::Opcode::login_request,
                                  static_cast<std::uint8_t>(0x80 | csg << 2 | nsg));
  b.set_immediate(true);
  b.set_isid(0x400001370000ull);
  b.set_itt(1);
  b.set_u32(24, 1);  // CmdSN
  b.set_u32(28, exp_stat_sn);
  b.set_data_segment_length(static_cast<std::uint32_t>(keys.size()));
  std::vector<std::uint8_t> pdu(b.bytes.begin(), b.bytes.end());
  pdu.insert(pdu.end(), keys.begin(), keys.end());
  pdu.resize(iscsi::kBhsSize + iscsi::padded(static_cast<std::uint32_t>(keys.size())), 0);
  return pdu;
}

// A login straight to full feature phase (security and operational keys in
// one request), with or without digests. Traps if it does not succeed: the
// full feature phase target would silently fuzz nothing.
inline void login(iscsi::Connection& conn, bool discovery, bool digests,
                  iscsi::Clock::time_point now) {
  std::string keys;
  iscsi::append_key(keys, "InitiatorName", kInitiator);
  if (discovery) {
    iscsi::append_key(keys, "SessionType", "Discovery");
  } else {
    iscsi::append_key(keys, "TargetName", kTarget);
    iscsi::append_key(keys, "SessionType", "Normal");
  }
  iscsi::append_key(keys, "AuthMethod", "None");
  std::string op;
  iscsi::append_key(op, "HeaderDigest", digests ? "CRC32C" : "None");
  iscsi::append_key(op, "DataDigest", digests ? "CRC32C" : "None");
  iscsi::append_key(op, "MaxRecvDataSegmentLength", "8192");
  if (!discovery) {
    iscsi::append_key(op, "InitialR2T", "No");
    iscsi::append_key(op, "ImmediateData", "Yes");
    iscsi::append_key(op, "FirstBurstLength", "16384");
    iscsi::append_key(op, "MaxBurstLength", "65536");
    iscsi::append_key(op, "MaxOutstandingR2T", "2");
  }
  auto p1 = login_pdu(0, 1, 0, keys);
  auto p2 = login_pdu(1, 3, 1, op);
  for (auto* p : {&p1, &p2}) {
    Input in(p->data(), p->size());
    if (!feed_pdu(conn, in, false, false, false, now)) __builtin_trap();
  }
  if (!conn.full_feature()) __builtin_trap();
}

inline iscsi::ConnectionSettings fuzz_settings() {
  iscsi::ConnectionSettings s;
  s.limits.allow_header_digest = true;
  s.limits.allow_data_digest = true;
  s.limits.max_recv_data_segment_length = 16384;
  s.limits.max_burst_length = 65536;
  s.limits.first_burst_length = 16384;
  s.limits.max_outstanding_r2t = 2;
  s.queue_depth = 8;
  s.max_transfer_length = 128 * 1024;
  return s;
}

}  // namespace ringtgt::fuzz
