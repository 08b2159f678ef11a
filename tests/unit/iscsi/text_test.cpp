#include "ringtgt/iscsi/text.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ringtgt::iscsi {
namespace {

using namespace std::string_literals;

std::vector<KeyValue> parse_ok(const std::string& text, const TextLimits& limits = {}) {
  std::vector<KeyValue> out;
  EXPECT_EQ(parse_text(text, out, limits), TextParseError::none) << text;
  return out;
}

TextParseError parse_err(const std::string& text, const TextLimits& limits = {}) {
  std::vector<KeyValue> out;
  return parse_text(text, out, limits);
}

TEST(Text, ParsesPairs) {
  auto kv = parse_ok("InitiatorName=iqn.1994-05.com.redhat:abc\0SessionType=Normal\0"s);
  ASSERT_EQ(kv.size(), 2u);
  EXPECT_EQ(kv[0], (KeyValue{"InitiatorName", "iqn.1994-05.com.redhat:abc"}));
  EXPECT_EQ(kv[1], (KeyValue{"SessionType", "Normal"}));
}

TEST(Text, ByteOverload) {
  const std::uint8_t data[] = {'A', '=', 'b', 0, 0, 0, 0, 0};
  std::vector<KeyValue> out;
  ASSERT_EQ(parse_text(data, sizeof data, out), TextParseError::none);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], (KeyValue{"A", "b"}));
}

TEST(Text, EmptyInput) {
  EXPECT_TRUE(parse_ok("").empty());
  EXPECT_TRUE(parse_ok("\0\0\0\0"s).empty());
}

TEST(Text, MissingFinalNul) {
  auto kv = parse_ok("A=1\0B=2"s);
  ASSERT_EQ(kv.size(), 2u);
  EXPECT_EQ(kv[1], (KeyValue{"B", "2"}));
}

TEST(Text, PaddingIgnoredAnywhere) {
  auto kv = parse_ok("A=1\0\0\0\0B=2\0\0\0"s);
  ASSERT_EQ(kv.size(), 2u);
  EXPECT_EQ(kv[0], (KeyValue{"A", "1"}));
  EXPECT_EQ(kv[1], (KeyValue{"B", "2"}));
}

TEST(Text, ValueMayContainEqualsAndBeEmpty) {
  auto kv = parse_ok("CHAP_C=0xab=cd\0X-empty=\0"s);
  ASSERT_EQ(kv.size(), 2u);
  EXPECT_EQ(kv[0].value, "0xab=cd");
  EXPECT_EQ(kv[1], (KeyValue{"X-empty", ""}));
}

TEST(Text, KeyCharacters) {
  auto kv = parse_ok("X-com.example.a+b@c_d=1\0X#vendor.key=2\0"s);
  ASSERT_EQ(kv.size(), 2u);
  EXPECT_EQ(kv[0].key, "X-com.example.a+b@c_d");
  EXPECT_EQ(kv[1].key, "X#vendor.key");
  EXPECT_TRUE(valid_key_name("MaxBurstLength"));
  EXPECT_FALSE(valid_key_name(""));
  EXPECT_FALSE(valid_key_name("a b"));
  EXPECT_FALSE(valid_key_name("a#b"));
  EXPECT_FALSE(valid_key_name("X#"));
  EXPECT_FALSE(valid_key_name("k:v"));
}

TEST(Text, Malformed) {
  EXPECT_EQ(parse_err("NoEquals\0"s), TextParseError::malformed);
  EXPECT_EQ(parse_err("A=1\0NoEquals"s), TextParseError::malformed);
  EXPECT_EQ(parse_err("=value\0"s), TextParseError::malformed);
  EXPECT_EQ(parse_err("bad key=1\0"s), TextParseError::malformed);
  EXPECT_EQ(parse_err("k\xc3\xa9y=1\0"s), TextParseError::malformed);
}

TEST(Text, ErrorKeepsPairsBefore) {
  std::vector<KeyValue> out;
  EXPECT_EQ(parse_text("A=1\0B\0C=3\0"s, out), TextParseError::malformed);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].key, "A");
}

TEST(Text, KeyLengthLimit) {
  std::string key63(63, 'k'), key64(64, 'k');
  EXPECT_EQ(parse_ok(key63 + "=v\0"s).at(0).key, key63);
  EXPECT_EQ(parse_err(key64 + "=v\0"s), TextParseError::key_too_long);
}

TEST(Text, ValueLengthLimit) {
  std::string v8192(8192, 'v'), v8193(8193, 'v');
  EXPECT_EQ(parse_ok("K=" + v8192).at(0).value.size(), 8192u);
  EXPECT_EQ(parse_err("K=" + v8193), TextParseError::value_too_long);
  TextLimits small;
  small.max_value = 3;
  parse_ok("K=abc\0"s, small);
  EXPECT_EQ(parse_err("K=abcd\0"s, small), TextParseError::value_too_long);
}

TEST(Text, PairLimit) {
  TextLimits limits;
  limits.max_pairs = 3;
  parse_ok("A=1\0B=2\0C=3\0\0"s, limits);
  EXPECT_EQ(parse_err("A=1\0B=2\0C=3\0D=4\0"s, limits), TextParseError::too_many_keys);
  std::string many;
  for (int i = 0; i < 256; ++i) append_key(many, "K" + std::to_string(i), "v");
  EXPECT_EQ(parse_ok(many).size(), 256u);
  append_key(many, "K256", "v");
  EXPECT_EQ(parse_err(many), TextParseError::too_many_keys);
}

TEST(Text, ByteLimit) {
  TextLimits limits;
  limits.max_bytes = 8;
  parse_ok("A=123\0\0\0"s, limits);  // exactly 8 bytes
  EXPECT_EQ(parse_err("A=1234\0\0\0"s, limits), TextParseError::too_large);
}

TEST(Text, AppendKeyRoundTrip) {
  std::string out;
  append_key(out, "MaxBurstLength", "262144");
  append_key(out, "TargetAlias", "");
  EXPECT_EQ(out, "MaxBurstLength=262144\0TargetAlias=\0"s);
  auto kv = parse_ok(out);
  ASSERT_EQ(kv.size(), 2u);
  EXPECT_EQ(kv[0], (KeyValue{"MaxBurstLength", "262144"}));
  EXPECT_EQ(kv[1], (KeyValue{"TargetAlias", ""}));
}

TEST(Text, ErrorStrings) {
  for (auto e : {TextParseError::none, TextParseError::malformed, TextParseError::too_large,
                 TextParseError::too_many_keys, TextParseError::key_too_long,
                 TextParseError::value_too_long}) {
    EXPECT_NE(std::string(to_string(e)), "unknown");
  }
}

}  // namespace
}  // namespace ringtgt::iscsi
