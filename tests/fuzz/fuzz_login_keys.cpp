// libFuzzer target: login and text key parsing and negotiation.
//
// Input: one mode byte, then login requests separated by 0xff bytes (a byte
// no key or value may hold, so a request is "key=value\0..." as on the wire).
// Each request is parsed with parse_text and, when it parses, negotiated in
// the stage the next mode bit says. Mode bits:
//   0x01  the target requires CHAP (one-way); 0x02: mutual CHAP offered too
//   0x04  header and data digests allowed
//   0x08  start in the operational stage
// CHAP randomness is fixed so a crash reproduces.
#include <spdlog/spdlog.h>

#include <cstring>
#include <string>
#include <vector>

#include "ringtgt/iscsi/chap.hpp"
#include "ringtgt/iscsi/negotiation.hpp"
#include "ringtgt/iscsi/text.hpp"

using namespace ringtgt;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Log lines cost more than the code under test; what they say is not checked here.
  spdlog::set_level(spdlog::level::off);
  return 0;
}

namespace {

bool fixed_random(std::uint8_t* out, std::size_t len) {
  for (std::size_t i = 0; i < len; ++i) out[i] = static_cast<std::uint8_t>(i * 13 + 7);
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::uint8_t mode = data[0];
  iscsi::TargetLimits limits;
  limits.allow_header_digest = mode & 0x04;
  limits.allow_data_digest = mode & 0x04;
  iscsi::LoginNegotiator negotiator(limits, "fuzz alias", 1);
  negotiator.set_auth_lookup(
      [mode](iscsi::SessionType, std::string_view) -> std::optional<iscsi::AuthPolicy> {
        if (!(mode & 0x01)) return std::nullopt;
        iscsi::AuthPolicy policy;
        policy.initiator = {"initiator-user", "initiator-secret-1"};
        if (mode & 0x02) policy.target = iscsi::ChapCredentials{"target-user", "target-secret-12"};
        return policy;
      });
  // Exercises the CHAP state machine directly as well (negotiate() builds its
  // own with RAND_bytes, which would make crashes not reproduce there).
  iscsi::AuthPolicy policy;
  policy.initiator = {"initiator-user", "initiator-secret-1"};
  if (mode & 0x02) policy.target = iscsi::ChapCredentials{"target-user", "target-secret-12"};
  iscsi::ChapExchange chap(policy, fixed_random);

  std::uint8_t stage = (mode & 0x08) ? 1 : 0;
  const std::uint8_t* p = data + 1;
  const std::uint8_t* end = data + size;
  std::vector<iscsi::KeyValue> keys;
  while (p <= end) {
    const void* sep = std::memchr(p, 0xff, static_cast<std::size_t>(end - p));
    const std::uint8_t* req_end = sep ? static_cast<const std::uint8_t*>(sep) : end;
    iscsi::TextParseError err = iscsi::parse_text(p, static_cast<std::size_t>(req_end - p), keys);
    if (err == iscsi::TextParseError::none) {
      for (const auto& kv : keys) {
        if (!iscsi::valid_key_name(kv.key)) __builtin_trap();
        if (kv.key.size() > 63 || kv.value.size() > 8192) __builtin_trap();
      }
      std::string response;
      negotiator.negotiate(stage, keys, response);
      // What the target answers must itself parse.
      std::vector<iscsi::KeyValue> answer;
      if (iscsi::parse_text(response, answer) != iscsi::TextParseError::none) __builtin_trap();
      std::vector<std::pair<std::string, std::string>> chap_answers;
      chap.step(keys, chap_answers);
      if (negotiator.authenticated() && stage == 0 && !(mode & 0x08)) stage = 1;
    }
    if (!sep) break;
    p = req_end + 1;
  }
  std::string final_keys;
  negotiator.finish(final_keys);
  (void)iscsi::decode_binary(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
