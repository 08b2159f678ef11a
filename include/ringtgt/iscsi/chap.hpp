// CHAP authentication, target side (RFC 7143 §12.1.3, RFC 1994), as a sans-I/O state machine:
// the CHAP_* keys of each login request in, the target's answer keys out. One-way (the
// initiator proves it knows a secret) and mutual (the target then proves it knows another).
//
// Algorithms (CHAP_A, IANA "PPP Authentication Algorithms"): 5 MD5, 6 SHA1, 7 SHA-256,
// 8 SHA3-256. Digests come from OpenSSL's EVP interface, challenges and identifiers from
// RAND_bytes, and responses are compared in constant time.
//
// Secrets never appear in error details: those are meant for logs.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ringtgt/iscsi/text.hpp"

namespace ringtgt::iscsi {

enum class ChapAlgorithm : std::uint8_t { md5 = 5, sha1 = 6, sha256 = 7, sha3_256 = 8 };

const char* to_string(ChapAlgorithm a);
// Digest (response) length in bytes.
std::size_t digest_size(ChapAlgorithm a);

// Shortest challenge accepted from an initiator for mutual CHAP, and the longest.
inline constexpr std::size_t kChapMinChallenge = 16;
inline constexpr std::size_t kChapMaxChallenge = 1024;
// Shortest secret the configuration accepts (RFC 7143 §12.1.3 asks for at least 12 bytes).
inline constexpr std::size_t kChapMinSecret = 12;

struct ChapCredentials {
  std::string user;
  std::string secret;
};

// The CHAP requirement of a target, or of discovery sessions.
struct AuthPolicy {
  ChapCredentials initiator;              // what the initiator must prove (CHAP_N, secret)
  std::optional<ChapCredentials> target;  // mutual CHAP: what the target answers with, if asked
  // Algorithms accepted, in no particular order; the initiator's order decides.
  std::vector<ChapAlgorithm> algorithms{ChapAlgorithm::md5, ChapAlgorithm::sha1,
                                        ChapAlgorithm::sha256, ChapAlgorithm::sha3_256};
};

// The CHAP response H(id || secret || challenge).
std::vector<std::uint8_t> chap_response(ChapAlgorithm a, std::uint8_t id, std::string_view secret,
                                        const std::vector<std::uint8_t>& challenge);

// Binary values (RFC 7143 §6.1): "0x" + hex digits (an odd count gets an implied leading
// zero) or "0b" + base64. nullopt when malformed or empty.
std::optional<std::vector<std::uint8_t>> decode_binary(std::string_view s);
std::string encode_hex(const std::vector<std::uint8_t>& bytes);  // "0x…"

class ChapExchange {
 public:
  enum class Status { in_progress, done, failed };

  // random: fills a buffer with random bytes and returns false on failure; tests inject
  // fixed bytes, the daemon leaves it empty (OpenSSL RAND_bytes).
  using RandomSource = bool (*)(std::uint8_t* out, std::size_t len);
  explicit ChapExchange(AuthPolicy policy, RandomSource random = nullptr);
  ~ChapExchange();
  ChapExchange(const ChapExchange&) = delete;
  ChapExchange& operator=(const ChapExchange&) = delete;

  // The CHAP_* keys of one login request (in their order) -> the answer keys to send.
  // After failed, every later call fails again.
  Status step(const std::vector<KeyValue>& keys,
              std::vector<std::pair<std::string, std::string>>& answers);

  Status status() const { return status_; }
  const std::string& detail() const { return detail_; }  // why it failed; no secrets
  std::optional<ChapAlgorithm> algorithm() const { return algorithm_; }
  // Whether the initiator asked the target to authenticate itself, and got the answer.
  bool mutual() const { return mutual_; }

 private:
  enum class State { want_algorithm, want_response, finished };
  Status fail(std::string detail);
  Status choose_algorithm(const std::vector<KeyValue>& keys,
                          std::vector<std::pair<std::string, std::string>>& answers);
  Status check_response(const std::vector<KeyValue>& keys,
                        std::vector<std::pair<std::string, std::string>>& answers);

  AuthPolicy policy_;
  RandomSource random_;
  State state_ = State::want_algorithm;
  Status status_ = Status::in_progress;
  std::optional<ChapAlgorithm> algorithm_;
  std::uint8_t id_ = 0;
  std::vector<std::uint8_t> challenge_;
  bool mutual_ = false;
  std::string detail_;
};

}  // namespace ringtgt::iscsi
