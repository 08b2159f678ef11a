// libFuzzer target: the sans-I/O iscsi::Connection fed arbitrary bytes.
//
// Input: one mode byte, then a byte stream framed into PDUs as the socket
// layer frames it. Mode bits:
//   0x01  log in first (full feature phase); clear: the stream is the login
//   0x02  with HeaderDigest/DataDigest=CRC32C (full feature phase only)
//   0x04  the harness fixes the digests; clear: they come from the input
//   0x08  a discovery session instead of a normal one
//   0x10  a keep-alive tick (one minute later) after every PDU
// Each task runs on a memory backend and completes synchronously, so what
// one PDU starts is over before the next is fed.
#include <spdlog/spdlog.h>

#include <chrono>

#include "fuzz_support.hpp"

using namespace ringtgt;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Log lines cost more than the code under test; what they say is not checked here.
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  fuzz::Input in(data, size);
  const std::uint8_t mode = in.byte();
  const bool full_feature = mode & 0x01;
  const bool digests = full_feature && (mode & 0x02);
  const bool fix_digests = mode & 0x04;
  const bool discovery = mode & 0x08;
  const bool ticks = mode & 0x10;

  fuzz::FuzzHost host;
  auto now = iscsi::Clock::time_point{} + std::chrono::hours(1);
  iscsi::Connection conn(host, fuzz::fuzz_settings(), "fuzz:1", now);
  if (full_feature) fuzz::login(conn, discovery, digests, now);
  try {
    while (in.left() > 0) {
      if (!fuzz::feed_pdu(conn, in, fix_digests, digests, digests, now)) break;
      if (ticks) {
        now += std::chrono::minutes(1);
        conn.on_tick(now);
        fuzz::drain(conn);
        if (conn.closing()) break;
      }
    }
  } catch (const fuzz::Exhausted&) {
    // The peer went away mid-PDU.
  }
  conn.shut_down();
  fuzz::drain(conn);
  // Memory-backed tasks are synchronous: nothing may be left running.
  if (!conn.idle()) __builtin_trap();
  return 0;
}
