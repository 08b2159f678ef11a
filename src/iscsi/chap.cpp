#include "ringtgt/iscsi/chap.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>

namespace ringtgt::iscsi {

namespace {

const EVP_MD* evp_of(ChapAlgorithm a) {
  switch (a) {
    case ChapAlgorithm::md5:
      return EVP_md5();
    case ChapAlgorithm::sha1:
      return EVP_sha1();
    case ChapAlgorithm::sha256:
      return EVP_sha256();
    case ChapAlgorithm::sha3_256:
      return EVP_sha3_256();
  }
  return nullptr;
}

bool openssl_random(std::uint8_t* out, std::size_t len) {
  return RAND_bytes(out, static_cast<int>(len)) == 1;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int base64_digit(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// A CHAP_A option or CHAP_I value: decimal, or 0x hex.
std::optional<unsigned> parse_small_number(std::string_view s) {
  if (s.empty() || s.size() > 8) return std::nullopt;
  unsigned v = 0;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    for (char c : s.substr(2)) {
      int d = hex_digit(c);
      if (d < 0) return std::nullopt;
      v = v * 16 + static_cast<unsigned>(d);
    }
    return v;
  }
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  return v;
}

std::vector<std::string_view> split_commas(std::string_view s) {
  std::vector<std::string_view> items;
  while (true) {
    std::size_t comma = s.find(',');
    items.push_back(s.substr(0, comma));
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  return items;
}

}  // namespace

const char* to_string(ChapAlgorithm a) {
  switch (a) {
    case ChapAlgorithm::md5:
      return "MD5";
    case ChapAlgorithm::sha1:
      return "SHA1";
    case ChapAlgorithm::sha256:
      return "SHA-256";
    case ChapAlgorithm::sha3_256:
      return "SHA3-256";
  }
  return "unknown";
}

std::size_t digest_size(ChapAlgorithm a) {
  switch (a) {
    case ChapAlgorithm::md5:
      return 16;
    case ChapAlgorithm::sha1:
      return 20;
    case ChapAlgorithm::sha256:
    case ChapAlgorithm::sha3_256:
      return 32;
  }
  return 0;
}

std::vector<std::uint8_t> chap_response(ChapAlgorithm a, std::uint8_t id, std::string_view secret,
                                        const std::vector<std::uint8_t>& challenge) {
  std::vector<std::uint8_t> out;
  const EVP_MD* md = evp_of(a);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (!md || !ctx) {
    EVP_MD_CTX_free(ctx);
    return out;
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  bool ok = EVP_DigestInit_ex(ctx, md, nullptr) == 1 && EVP_DigestUpdate(ctx, &id, 1) == 1 &&
            EVP_DigestUpdate(ctx, secret.data(), secret.size()) == 1 &&
            EVP_DigestUpdate(ctx, challenge.data(), challenge.size()) == 1 &&
            EVP_DigestFinal_ex(ctx, digest, &len) == 1;
  EVP_MD_CTX_free(ctx);
  if (ok) out.assign(digest, digest + len);
  OPENSSL_cleanse(digest, sizeof digest);
  return out;
}

std::optional<std::vector<std::uint8_t>> decode_binary(std::string_view s) {
  if (s.size() < 3 || s[0] != '0') return std::nullopt;
  std::vector<std::uint8_t> out;
  const char kind = s[1];
  s.remove_prefix(2);
  if (kind == 'x' || kind == 'X') {
    out.reserve(s.size() / 2 + 1);
    std::size_t i = 0;
    if (s.size() % 2 == 1) {  // implied leading zero
      int d = hex_digit(s[0]);
      if (d < 0) return std::nullopt;
      out.push_back(static_cast<std::uint8_t>(d));
      i = 1;
    }
    for (; i < s.size(); i += 2) {
      int hi = hex_digit(s[i]), lo = hex_digit(s[i + 1]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out.push_back(static_cast<std::uint8_t>(hi << 4 | lo));
    }
    return out;
  }
  if (kind == 'b' || kind == 'B') {
    // RFC 4648 base64 with padding: groups of 4 characters.
    if (s.size() % 4 != 0) return std::nullopt;
    out.reserve(s.size() / 4 * 3);
    for (std::size_t i = 0; i < s.size(); i += 4) {
      const bool last = i + 4 == s.size();
      int pad = 0;
      if (last && s[i + 3] == '=') pad = s[i + 2] == '=' ? 2 : 1;
      std::uint32_t v = 0;
      for (std::size_t j = 0; j < 4; ++j) {
        int d = 0;
        if (j >= 4 - static_cast<std::size_t>(pad)) {
          if (s[i + j] != '=') return std::nullopt;
        } else {
          d = base64_digit(s[i + j]);
          if (d < 0) return std::nullopt;
        }
        v = v << 6 | static_cast<std::uint32_t>(d);
      }
      out.push_back(static_cast<std::uint8_t>(v >> 16));
      if (pad < 2) out.push_back(static_cast<std::uint8_t>(v >> 8));
      if (pad < 1) out.push_back(static_cast<std::uint8_t>(v));
    }
    if (out.empty()) return std::nullopt;
    return out;
  }
  return std::nullopt;
}

std::string encode_hex(const std::vector<std::uint8_t>& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out = "0x";
  out.reserve(2 + bytes.size() * 2);
  for (std::uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xf]);
  }
  return out;
}

ChapExchange::ChapExchange(AuthPolicy policy, RandomSource random)
    : policy_(std::move(policy)), random_(random ? random : &openssl_random) {}

ChapExchange::~ChapExchange() {
  OPENSSL_cleanse(policy_.initiator.secret.data(), policy_.initiator.secret.size());
  if (policy_.target) {
    OPENSSL_cleanse(policy_.target->secret.data(), policy_.target->secret.size());
  }
}

ChapExchange::Status ChapExchange::fail(std::string detail) {
  status_ = Status::failed;
  state_ = State::finished;
  detail_ = "CHAP: " + std::move(detail);
  return status_;
}

ChapExchange::Status ChapExchange::step(const std::vector<KeyValue>& keys,
                                        std::vector<std::pair<std::string, std::string>>& answers) {
  if (status_ == Status::failed) return status_;
  switch (state_) {
    case State::want_algorithm:
      return choose_algorithm(keys, answers);
    case State::want_response:
      return check_response(keys, answers);
    case State::finished:
      break;
  }
  return fail("key " + (keys.empty() ? std::string("?") : keys.front().key) +
              " after the exchange completed");
}

ChapExchange::Status ChapExchange::choose_algorithm(
    const std::vector<KeyValue>& keys, std::vector<std::pair<std::string, std::string>>& answers) {
  const KeyValue* offer = nullptr;
  for (const auto& kv : keys) {
    if (kv.key != "CHAP_A") return fail(kv.key + " before CHAP_A");
    offer = &kv;
  }
  if (!offer) return fail("CHAP_A missing");
  for (std::string_view option : split_commas(offer->value)) {
    auto v = parse_small_number(option);
    if (!v) continue;
    auto it = std::find_if(policy_.algorithms.begin(), policy_.algorithms.end(),
                           [&](ChapAlgorithm a) { return static_cast<unsigned>(a) == *v; });
    if (it == policy_.algorithms.end()) continue;
    algorithm_ = *it;
    break;
  }
  if (!algorithm_) {
    answers.emplace_back("CHAP_A", "Reject");
    return fail("no supported algorithm in CHAP_A=" + offer->value);
  }
  // A challenge at least as long as the digest, and never shorter than 16 bytes.
  challenge_.resize(std::max(kChapMinChallenge, digest_size(*algorithm_)));
  if (!random_(&id_, 1) || !random_(challenge_.data(), challenge_.size())) {
    return fail("no random bytes for the challenge");
  }
  answers.emplace_back("CHAP_A", std::to_string(static_cast<unsigned>(*algorithm_)));
  answers.emplace_back("CHAP_I", std::to_string(id_));
  answers.emplace_back("CHAP_C", encode_hex(challenge_));
  state_ = State::want_response;
  return status_;
}

ChapExchange::Status ChapExchange::check_response(
    const std::vector<KeyValue>& keys, std::vector<std::pair<std::string, std::string>>& answers) {
  const KeyValue *name = nullptr, *response = nullptr, *their_id = nullptr,
                 *their_challenge = nullptr;
  for (const auto& kv : keys) {
    if (kv.key == "CHAP_N") {
      name = &kv;
    } else if (kv.key == "CHAP_R") {
      response = &kv;
    } else if (kv.key == "CHAP_I") {
      their_id = &kv;
    } else if (kv.key == "CHAP_C") {
      their_challenge = &kv;
    } else {
      return fail(kv.key + " where CHAP_N and CHAP_R were expected");
    }
  }
  if (!name || !response) return fail("CHAP_N or CHAP_R missing");
  if (name->value != policy_.initiator.user) {
    return fail("unknown CHAP_N '" + name->value + "'");
  }
  auto got = decode_binary(response->value);
  if (!got) return fail("CHAP_R is not a binary value (0x… or 0b…)");
  auto expected = chap_response(*algorithm_, id_, policy_.initiator.secret, challenge_);
  if (expected.empty()) return fail(std::string(to_string(*algorithm_)) + " digest unavailable");
  if (got->size() != expected.size() ||
      CRYPTO_memcmp(got->data(), expected.data(), expected.size()) != 0) {
    return fail("wrong response for user '" + name->value + "' (wrong secret)");
  }

  if (their_id || their_challenge) {
    // Mutual CHAP: the initiator wants the target to prove itself.
    if (!their_id || !their_challenge) return fail("CHAP_I without CHAP_C or the reverse");
    if (!policy_.target) {
      return fail("the initiator asked for mutual CHAP, but no mutual credentials are set");
    }
    auto id = parse_small_number(their_id->value);
    if (!id || *id > 255) return fail("CHAP_I '" + their_id->value + "' is not 0..255");
    auto challenge = decode_binary(their_challenge->value);
    if (!challenge) return fail("CHAP_C is not a binary value (0x… or 0b…)");
    if (challenge->size() < kChapMinChallenge || challenge->size() > kChapMaxChallenge) {
      return fail("initiator challenge of " + std::to_string(challenge->size()) + " bytes; " +
                  std::to_string(kChapMinChallenge) + ".." + std::to_string(kChapMaxChallenge) +
                  " accepted");
    }
    if (*challenge == challenge_) return fail("initiator reflected the target's challenge");
    auto ours = chap_response(*algorithm_, static_cast<std::uint8_t>(*id), policy_.target->secret,
                              *challenge);
    if (ours.empty()) return fail(std::string(to_string(*algorithm_)) + " digest unavailable");
    answers.emplace_back("CHAP_N", policy_.target->user);
    answers.emplace_back("CHAP_R", encode_hex(ours));
    mutual_ = true;
  }
  state_ = State::finished;
  status_ = Status::done;
  return status_;
}

}  // namespace ringtgt::iscsi
