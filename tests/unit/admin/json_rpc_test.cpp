// The admin socket's JSON-RPC answers to good and hostile messages, without a socket.
#include "ringtgt/admin/json_rpc.hpp"

#include <gtest/gtest.h>

namespace ringtgt::admin {
namespace {

struct Rig {
  Dispatcher d;
  std::vector<json> answers;
  Rig() {
    d.add("echo", [](const Params& p, const Responder& r) {
      p.only({"text", "n"});
      json out{{"text", p.string("text")}};
      if (auto n = p.optional_uint("n", 1, 10)) out["n"] = *n;
      r.ok(out);
    });
    d.add("later",
          [this](const Params&, const Responder& r) { later_r = std::make_unique<Responder>(r); });
    d.add("boom",
          [](const Params&, const Responder&) { throw std::runtime_error("disk on fire"); });
  }
  std::unique_ptr<Responder> later_r;
  bool send(std::string_view line) {
    return d.handle_line(line, [this](std::string s) { answers.push_back(json::parse(s)); });
  }
  int code() const { return answers.back()["error"]["code"].get<int>(); }
  std::string message() const { return answers.back()["error"]["message"].get<std::string>(); }
};

TEST(JsonRpc, GoodRequestGetsItsResultAndId) {
  Rig r;
  EXPECT_TRUE(r.send(R"({"jsonrpc":"2.0","id":7,"method":"echo","params":{"text":"hi","n":3}})"));
  ASSERT_EQ(r.answers.size(), 1u);
  EXPECT_EQ(r.answers[0]["id"], 7);
  EXPECT_EQ(r.answers[0]["jsonrpc"], "2.0");
  EXPECT_EQ(r.answers[0]["result"]["text"], "hi");
  EXPECT_EQ(r.answers[0]["result"]["n"], 3);
}

TEST(JsonRpc, MalformedJsonIsAParseError) {
  Rig r;
  r.send(R"({"jsonrpc":"2.0","id":1,"method":)");
  ASSERT_EQ(r.answers.size(), 1u);
  EXPECT_EQ(r.code(), rpc_error::parse_error);
  EXPECT_TRUE(r.answers[0]["id"].is_null());
  EXPECT_NE(r.message().find("not valid JSON"), std::string::npos);
}

TEST(JsonRpc, InvalidRequests) {
  Rig r;
  r.send(R"([{"jsonrpc":"2.0","id":1,"method":"echo"}])");
  EXPECT_EQ(r.code(), rpc_error::invalid_request);
  EXPECT_NE(r.message().find("batches are not supported"), std::string::npos);
  r.send(R"("hello")");
  EXPECT_EQ(r.code(), rpc_error::invalid_request);
  r.send(R"({"id":1,"method":"echo"})");
  EXPECT_EQ(r.code(), rpc_error::invalid_request);
  EXPECT_EQ(r.message(), "\"jsonrpc\" must be \"2.0\"");
  r.send(R"({"jsonrpc":"2.0","id":1,"method":5})");
  EXPECT_EQ(r.code(), rpc_error::invalid_request);
  r.send(R"({"jsonrpc":"2.0","id":[1],"method":"echo"})");
  EXPECT_EQ(r.code(), rpc_error::invalid_request);
  std::string deep = R"({"jsonrpc":"2.0","id":1,"method":"echo","params":{"text":)" +
                     std::string(1000, '[') + std::string(1000, ']') + "}}";
  r.send(deep);
  EXPECT_EQ(r.code(), rpc_error::invalid_request);
  EXPECT_NE(r.message().find("nested deeper"), std::string::npos);
  r.send(std::string(kMaxMessageBytes + 1, ' '));
  EXPECT_EQ(r.code(), rpc_error::invalid_request);
  EXPECT_EQ(r.answers.size(), 7u);
}

TEST(JsonRpc, UnknownMethodIsMethodNotFound) {
  Rig r;
  r.send(R"({"jsonrpc":"2.0","id":"x","method":"nope"})");
  EXPECT_EQ(r.code(), rpc_error::method_not_found);
  EXPECT_EQ(r.answers[0]["id"], "x");
  EXPECT_NE(r.message().find("\"nope\""), std::string::npos);
}

TEST(JsonRpc, BadParamsSayWhatToFix) {
  Rig r;
  r.send(R"({"jsonrpc":"2.0","id":1,"method":"echo","params":{}})");
  EXPECT_EQ(r.code(), rpc_error::invalid_params);
  EXPECT_EQ(r.message(), "missing parameter \"text\"");
  r.send(R"({"jsonrpc":"2.0","id":1,"method":"echo","params":{"text":3}})");
  EXPECT_EQ(r.message(), "parameter \"text\" must be a non-empty string, not a number");
  r.send(R"({"jsonrpc":"2.0","id":1,"method":"echo","params":{"text":"a","n":11}})");
  EXPECT_EQ(r.message(), "parameter \"n\" must be 1..10, not 11");
  r.send(R"({"jsonrpc":"2.0","id":1,"method":"echo","params":{"text":"a","n":-1}})");
  EXPECT_EQ(r.message(), "parameter \"n\" must be an integer 1..10, not -1");
  r.send(R"({"jsonrpc":"2.0","id":1,"method":"echo","params":{"text":"a","m":1}})");
  EXPECT_EQ(r.message(), "unknown parameter \"m\" (allowed: text, n)");
  r.send(R"({"jsonrpc":"2.0","id":1,"method":"echo","params":[1]})");
  EXPECT_EQ(r.code(), rpc_error::invalid_params);
  for (const auto& a : r.answers) EXPECT_EQ(a["error"]["code"], rpc_error::invalid_params);
}

TEST(JsonRpc, HandlerFailureIsAnErrorNotACrash) {
  Rig r;
  r.send(R"({"jsonrpc":"2.0","id":1,"method":"boom"})");
  EXPECT_EQ(r.code(), rpc_error::refused);
  EXPECT_EQ(r.message(), "disk on fire");
}

TEST(JsonRpc, NotificationsGetNoAnswer) {
  Rig r;
  EXPECT_FALSE(r.send(R"({"jsonrpc":"2.0","method":"echo","params":{"text":"a"}})"));
  EXPECT_TRUE(r.answers.empty());
}

TEST(JsonRpc, AsynchronousAnswerComesLater) {
  Rig r;
  EXPECT_TRUE(r.send(R"({"jsonrpc":"2.0","id":9,"method":"later"})"));
  EXPECT_TRUE(r.answers.empty());
  ASSERT_TRUE(r.later_r);
  r.later_r->ok(json{{"done", true}});
  ASSERT_EQ(r.answers.size(), 1u);
  EXPECT_EQ(r.answers[0]["id"], 9);
  EXPECT_EQ(r.answers[0]["result"]["done"], true);
}

}  // namespace
}  // namespace ringtgt::admin
