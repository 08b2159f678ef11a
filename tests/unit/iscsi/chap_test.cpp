#include "ringtgt/iscsi/chap.hpp"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace ringtgt::iscsi {
namespace {

using Bytes = std::vector<std::uint8_t>;
using Answers = std::vector<std::pair<std::string, std::string>>;

// Deterministic "random" bytes: the identifier is 0x2a, a challenge is 0, 1, 2, ...
bool fixed_random(std::uint8_t* out, std::size_t len) {
  for (std::size_t i = 0; i < len; ++i) out[i] = len == 1 ? 0x2a : static_cast<std::uint8_t>(i);
  return true;
}

bool broken_random(std::uint8_t*, std::size_t) {
  return false;
}

Bytes counting(std::size_t n, std::uint8_t first = 0) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(first + i);
  return b;
}

Bytes hex(const std::string& s) {
  return *decode_binary("0x" + s);
}

const std::string kUser = "iqn.2025-01.com.jacobgade:node2";
const std::string kSecret = "twelve-bytes-secret";
const std::string kMutualUser = "iqn.2025-01.com.jacobgade:node1";
const std::string kMutualSecret = "another-secret-for-target";

AuthPolicy policy(bool mutual = false) {
  AuthPolicy p;
  p.initiator = {kUser, kSecret};
  if (mutual) p.target = ChapCredentials{kMutualUser, kMutualSecret};
  return p;
}

std::string value_of(const Answers& a, const std::string& key) {
  for (const auto& [k, v] : a)
    if (k == key) return v;
  return "<missing>";
}

// Known vectors: H(0x2a || "twelve-bytes-secret" || 00 01 .. 0f), computed outside OpenSSL
// (Python hashlib).
TEST(Chap, KnownResponseVectors) {
  const Bytes challenge = counting(16);
  EXPECT_EQ(chap_response(ChapAlgorithm::md5, 0x2a, kSecret, challenge),
            hex("fd7fac5eab7777e26bbe4c4df4ca1381"));
  EXPECT_EQ(chap_response(ChapAlgorithm::sha1, 0x2a, kSecret, challenge),
            hex("63e9a25c6a49ea4d8ba4a9ceea2a2868b7889adf"));
  EXPECT_EQ(chap_response(ChapAlgorithm::sha256, 0x2a, kSecret, challenge),
            hex("61d8783803638d2c39d5cfbe5ff1fe9216549bb03bf28a45e232db0291d8507f"));
  EXPECT_EQ(chap_response(ChapAlgorithm::sha3_256, 0x2a, kSecret, challenge),
            hex("39cbce8fc5360e743d8ad669c466012fb87708e3ea9f1a34f18e336049d93b9b"));
}

TEST(Chap, BinaryEncodings) {
  EXPECT_EQ(decode_binary("0x00ff10"), (Bytes{0x00, 0xff, 0x10}));
  EXPECT_EQ(decode_binary("0XAbC"), (Bytes{0x0a, 0xbc}));  // odd: implied leading zero
  EXPECT_EQ(decode_binary("0bAP8Q"), (Bytes{0x00, 0xff, 0x10}));
  EXPECT_EQ(decode_binary("0bAP8="), (Bytes{0x00, 0xff}));
  EXPECT_EQ(decode_binary("0bAA=="), (Bytes{0x00}));
  for (const char* bad : {"", "0x", "0b", "00ff", "0xzz", "0bAP8", "0bA=P8", "0b====", "ff"}) {
    EXPECT_FALSE(decode_binary(bad).has_value()) << bad;
  }
  EXPECT_EQ(encode_hex({0x00, 0xab, 0x10}), "0x00ab10");
}

TEST(Chap, OneWayMd5Success) {
  ChapExchange x(policy(), fixed_random);
  Answers a;
  ASSERT_EQ(x.step({{"CHAP_A", "5"}}, a), ChapExchange::Status::in_progress) << x.detail();
  EXPECT_EQ(a, (Answers{{"CHAP_A", "5"}, {"CHAP_I", "42"}, {"CHAP_C", encode_hex(counting(16))}}));
  a.clear();
  const std::string r = "0xfd7fac5eab7777e26bbe4c4df4ca1381";
  EXPECT_EQ(x.step({{"CHAP_N", kUser}, {"CHAP_R", r}}, a), ChapExchange::Status::done)
      << x.detail();
  EXPECT_TRUE(a.empty());
  EXPECT_FALSE(x.mutual());
  EXPECT_EQ(x.algorithm(), ChapAlgorithm::md5);
}

TEST(Chap, ResponseInBase64) {
  ChapExchange x(policy(), fixed_random);
  Answers a;
  ASSERT_EQ(x.step({{"CHAP_A", "5"}}, a), ChapExchange::Status::in_progress);
  // base64 of fd7fac5eab7777e26bbe4c4df4ca1381
  EXPECT_EQ(x.step({{"CHAP_N", kUser}, {"CHAP_R", "0b/X+sXqt3d+JrvkxN9MoTgQ=="}}, a),
            ChapExchange::Status::done)
      << x.detail();
}

TEST(Chap, AlgorithmChoiceFollowsInitiatorOrder) {
  struct Case {
    std::string offer;
    std::string chosen;
    std::size_t challenge_bytes;
  };
  const Case cases[] = {{"7,5", "7", 32}, {"5,7", "5", 16},    {"8", "8", 32},
                        {"6,5", "6", 20}, {"99,0x7", "7", 32}, {"junk,5", "5", 16}};
  for (const auto& c : cases) {
    ChapExchange x(policy(), fixed_random);
    Answers a;
    ASSERT_EQ(x.step({{"CHAP_A", c.offer}}, a), ChapExchange::Status::in_progress) << c.offer;
    EXPECT_EQ(value_of(a, "CHAP_A"), c.chosen) << c.offer;
    EXPECT_EQ(decode_binary(value_of(a, "CHAP_C"))->size(), c.challenge_bytes) << c.offer;
  }
}

TEST(Chap, Sha256AndSha3Success) {
  for (auto alg : {ChapAlgorithm::sha1, ChapAlgorithm::sha256, ChapAlgorithm::sha3_256}) {
    ChapExchange x(policy(), fixed_random);
    Answers a;
    ASSERT_EQ(x.step({{"CHAP_A", std::to_string(static_cast<unsigned>(alg))}}, a),
              ChapExchange::Status::in_progress);
    Bytes challenge = *decode_binary(value_of(a, "CHAP_C"));
    a.clear();
    auto r = encode_hex(chap_response(alg, 0x2a, kSecret, challenge));
    EXPECT_EQ(x.step({{"CHAP_N", kUser}, {"CHAP_R", r}}, a), ChapExchange::Status::done)
        << to_string(alg) << ": " << x.detail();
  }
}

TEST(Chap, UnsupportedAlgorithmList) {
  AuthPolicy p = policy();
  p.algorithms = {ChapAlgorithm::sha256};
  ChapExchange x(std::move(p), fixed_random);
  Answers a;
  EXPECT_EQ(x.step({{"CHAP_A", "5,128,129"}}, a), ChapExchange::Status::failed);
  EXPECT_EQ(a, (Answers{{"CHAP_A", "Reject"}}));
  EXPECT_NE(x.detail().find("no supported algorithm"), std::string::npos);
  a.clear();
  EXPECT_EQ(x.step({{"CHAP_A", "7"}}, a), ChapExchange::Status::failed);  // stays failed
}

TEST(Chap, WrongSecretWrongNameAndBadResponses) {
  const std::string good = "0xfd7fac5eab7777e26bbe4c4df4ca1381";
  auto wrong = encode_hex(chap_response(ChapAlgorithm::md5, 0x2a, "not-the-secret!", counting(16)));
  struct Case {
    std::vector<KeyValue> keys;
    std::string detail;
  };
  const Case cases[] = {
      {{{"CHAP_N", kUser}, {"CHAP_R", wrong}}, "wrong secret"},
      {{{"CHAP_N", "iqn.2025-01.com.jacobgade:node3"}, {"CHAP_R", good}}, "unknown CHAP_N"},
      {{{"CHAP_N", kUser}, {"CHAP_R", good.substr(0, 20)}}, "wrong secret"},  // truncated
      {{{"CHAP_N", kUser}, {"CHAP_R", good + "00"}}, "wrong secret"},
      {{{"CHAP_N", kUser}, {"CHAP_R", "fd7fac"}}, "not a binary value"},
      {{{"CHAP_N", kUser}}, "missing"},
      {{{"CHAP_R", good}}, "missing"},
      {{{"CHAP_A", "5"}}, "CHAP_A where"},
      {{{"CHAP_N", kUser}, {"CHAP_R", good}, {"CHAP_I", "1"}}, "CHAP_I without CHAP_C"},
  };
  for (const auto& c : cases) {
    ChapExchange x(policy(), fixed_random);
    Answers a;
    ASSERT_EQ(x.step({{"CHAP_A", "5"}}, a), ChapExchange::Status::in_progress);
    a.clear();
    EXPECT_EQ(x.step(c.keys, a), ChapExchange::Status::failed) << c.detail;
    EXPECT_NE(x.detail().find(c.detail), std::string::npos) << x.detail();
    EXPECT_EQ(x.detail().find(kSecret), std::string::npos);  // never the secret
    EXPECT_TRUE(a.empty());
  }
}

TEST(Chap, KeysBeforeCHAP_A) {
  ChapExchange x(policy(), fixed_random);
  Answers a;
  EXPECT_EQ(x.step({{"CHAP_N", kUser}}, a), ChapExchange::Status::failed);
  ChapExchange y(policy(), fixed_random);
  EXPECT_EQ(y.step({}, a), ChapExchange::Status::failed);
}

TEST(Chap, NoRandomBytesFails) {
  ChapExchange x(policy(), broken_random);
  Answers a;
  EXPECT_EQ(x.step({{"CHAP_A", "5"}}, a), ChapExchange::Status::failed);
  EXPECT_TRUE(a.empty());
}

TEST(Chap, RealRandomChallengesDiffer) {
  ChapExchange x(policy()), y(policy());
  Answers a, b;
  ASSERT_EQ(x.step({{"CHAP_A", "7"}}, a), ChapExchange::Status::in_progress);
  ASSERT_EQ(y.step({{"CHAP_A", "7"}}, b), ChapExchange::Status::in_progress);
  EXPECT_NE(value_of(a, "CHAP_C"), value_of(b, "CHAP_C"));
  EXPECT_EQ(decode_binary(value_of(a, "CHAP_C"))->size(), 32u);
}

// Runs the one-way part successfully, then offers the mutual keys.
ChapExchange::Status mutual_step(ChapExchange& x, const std::string& id, const std::string& c,
                                 Answers& out) {
  Answers a;
  EXPECT_EQ(x.step({{"CHAP_A", "5"}}, a), ChapExchange::Status::in_progress);
  return x.step({{"CHAP_N", kUser},
                 {"CHAP_R", "0xfd7fac5eab7777e26bbe4c4df4ca1381"},
                 {"CHAP_I", id},
                 {"CHAP_C", c}},
                out);
}

TEST(Chap, MutualSuccess) {
  ChapExchange x(policy(true), fixed_random);
  Answers a;
  const Bytes theirs = counting(16, 0x80);
  ASSERT_EQ(mutual_step(x, "7", encode_hex(theirs), a), ChapExchange::Status::done) << x.detail();
  EXPECT_TRUE(x.mutual());
  EXPECT_EQ(
      a, (Answers{
             {"CHAP_N", kMutualUser},
             {"CHAP_R", encode_hex(chap_response(ChapAlgorithm::md5, 7, kMutualSecret, theirs))}}));
}

TEST(Chap, OneWayStillFineWhenMutualIsConfigured) {
  ChapExchange x(policy(true), fixed_random);
  Answers a;
  ASSERT_EQ(x.step({{"CHAP_A", "5"}}, a), ChapExchange::Status::in_progress);
  a.clear();
  EXPECT_EQ(x.step({{"CHAP_N", kUser}, {"CHAP_R", "0xfd7fac5eab7777e26bbe4c4df4ca1381"}}, a),
            ChapExchange::Status::done);
  EXPECT_TRUE(a.empty());
  EXPECT_FALSE(x.mutual());
}

TEST(Chap, MutualFailures) {
  struct Case {
    bool configured;
    std::string id, challenge, detail;
  };
  const Case cases[] = {
      {false, "7", encode_hex(counting(16, 0x80)), "no mutual credentials"},
      {true, "7", encode_hex(counting(16)), "reflected"},  // our own challenge back
      {true, "7", encode_hex(counting(15, 0x80)), "15 bytes"},
      {true, "7", encode_hex(counting(1025, 0x80)), "1025 bytes"},
      {true, "256", encode_hex(counting(16, 0x80)), "CHAP_I"},
      {true, "x", encode_hex(counting(16, 0x80)), "CHAP_I"},
      {true, "7", "0xnothex", "CHAP_C is not"},
  };
  for (const auto& c : cases) {
    ChapExchange x(policy(c.configured), fixed_random);
    Answers a;
    EXPECT_EQ(mutual_step(x, c.id, c.challenge, a), ChapExchange::Status::failed) << c.detail;
    EXPECT_NE(x.detail().find(c.detail), std::string::npos) << x.detail();
    EXPECT_TRUE(a.empty()) << c.detail;
    EXPECT_EQ(x.detail().find(kMutualSecret), std::string::npos);
  }
}

TEST(Chap, NothingAfterCompletion) {
  ChapExchange x(policy(), fixed_random);
  Answers a;
  ASSERT_EQ(x.step({{"CHAP_A", "5"}}, a), ChapExchange::Status::in_progress);
  ASSERT_EQ(x.step({{"CHAP_N", kUser}, {"CHAP_R", "0xfd7fac5eab7777e26bbe4c4df4ca1381"}}, a),
            ChapExchange::Status::done);
  EXPECT_EQ(x.step({{"CHAP_A", "5"}}, a), ChapExchange::Status::failed);
}

}  // namespace
}  // namespace ringtgt::iscsi
