// fault.inject|list|clear over a registry whose LUNs the factory opened with
// fault injection, and their refusals.
#include "fault_methods.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "ringtgt/lun/lun_factory.hpp"
#include "ringtgt/net/registry.hpp"
#include "ringtgt/storage/fault_injection.hpp"

namespace ringtgt::admin {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("ringtgt-faults-" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
};

constexpr const char* kTarget = "iqn.2025-01.com.example:f";

config::Config one_lun(const fs::path& dir) {
  return config::load_string(std::string("[[portal]]\nlisten = \"127.0.0.1:3260\"\n"
                                         "[[target]]\nname = \"") +
                                 kTarget + "\"\n  [[target.lun]]\n  number = 0\n  path = \"" +
                                 (dir / "f0.img").string() + "\"\n  size = \"1M\"\n",
                             "t.toml");
}

net::LunOpener opener(const config::Config& cfg, bool faults) {
  auto f = std::make_shared<lun::LunFactory>(cfg.state_dir, 1, faults);
  return [f](const std::string& target, const config::Lun& l) { return f->open(target, l); };
}

// A registry of one LUN, opened by the factory with or without fault
// injection, and the fault methods over it.
struct FaultyTarget {
  explicit FaultyTarget(bool faults) : cfg(one_lun(tmp.path)), reg(cfg, opener(cfg, faults)) {
    add_fault_methods(d, reg.catalog(), faults);
  }
  storage::Backend& backend() {
    return reg.catalog().find_target(kTarget)->luns()->find(0)->backend();
  }
  TempDir tmp;
  config::Config cfg;
  net::Registry reg;
  Dispatcher d;
};

// The answer to one request: its "result", or its "error".
json call(const Dispatcher& d, const std::string& method, const json& params) {
  json answer;
  d.handle_line(json{{"jsonrpc", "2.0"}, {"id", 1}, {"method", method}, {"params", params}}.dump(),
                [&answer](const std::string& s) { answer = json::parse(s); });
  return answer.contains("result") ? answer["result"] : answer["error"];
}

TEST(FaultMethods, InjectListAndClearOnAFaultInjectingLun) {
  FaultyTarget t(true);
  const Dispatcher& d = t.d;

  json r = call(d, "fault.inject",
                {{"target", kTarget},
                 {"lun", 0},
                 {"fault", "eio"},
                 {"lba", 8},
                 {"blocks", 2},
                 {"io", "read"}});
  EXPECT_EQ(r["id"], 1);
  EXPECT_EQ(r["lba"], 8);
  EXPECT_EQ(r["blocks"], 2);
  EXPECT_EQ(r["io"], "read");
  auto& backend = dynamic_cast<storage::FaultInjectingBackend&>(t.backend());
  ASSERT_EQ(backend.plan().rules().size(), 1u);
  EXPECT_EQ(backend.plan().rules()[0].offset, 8u * 512);
  EXPECT_EQ(backend.plan().rules()[0].length, 2u * 512);
  EXPECT_FALSE(backend.plan().rules()[0].writes);

  r = call(d, "fault.inject",
           {{"target", kTarget}, {"lun", 0}, {"fault", "delay"}, {"delay_ms", 1500}});
  EXPECT_EQ(r["delay_ms"], 1500);
  r = call(d, "fault.list", json::object());
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0]["faults"].size(), 2u);
  EXPECT_EQ(r[0]["injected"]["eio"], 0);

  EXPECT_EQ(call(d, "fault.clear", {{"target", kTarget}, {"lun", 0}, {"id", 1}})["cleared"], 1);
  EXPECT_EQ(call(d, "fault.clear", {{"target", kTarget}, {"lun", 0}})["cleared"], 1);
  EXPECT_TRUE(backend.plan().rules().empty());
}

TEST(FaultMethods, BadRequestsAreRefusedSayingWhy) {
  FaultyTarget t(true);
  const Dispatcher& d = t.d;
  auto message = [&](const json& p) { return call(d, "fault.inject", p)["message"]; };
  EXPECT_EQ(message({{"target", kTarget}, {"lun", 0}, {"fault", "melt"}}),
            "fault \"melt\" is not one of eio, enospc, short, flush, delay");
  EXPECT_EQ(message({{"target", kTarget}, {"lun", 0}, {"fault", "eio"}, {"delay_ms", 5}}),
            "delay_ms is for fault \"delay\" only");
  EXPECT_EQ(message({{"target", kTarget}, {"lun", 7}, {"fault", "eio"}}),
            std::string("target ") + kTarget + " has no LUN 7");
  EXPECT_EQ(
      call(d, "fault.clear", {{"target", kTarget}, {"lun", 0}, {"id", 9}})["message"],
      std::string("no fault 9 armed on target ") + kTarget + " LUN 0 (ringtgtctl fault list)");
}

TEST(FaultMethods, OffUnlessTheConfigTurnedItOn) {
  FaultyTarget t(false);
  const json e = call(t.d, "fault.list", json::object());
  EXPECT_EQ(e["code"], rpc_error::refused);
  EXPECT_NE(e["message"].get<std::string>().find("[testing] fault_injection = true"),
            std::string::npos);
  EXPECT_EQ(dynamic_cast<storage::FaultInjectingBackend*>(&t.backend()), nullptr);
}

}  // namespace
}  // namespace ringtgt::admin
