// The session table alone: [limits] and reinstatement, with connections
// replaced by recording peers on a real reactor. (Task-set aborts are the
// logical unit's: tests/unit/scsi/task_set_test.cpp.)
#include "ringtgt/net/session_table.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace ringtgt::net {
namespace {

const std::string kTarget = "iqn.2025-01.com.example:t";

// What the table asked of one connection.
struct RecordingPeer final : SessionPeer {
  void close(const char* why) override { closed.emplace_back(why); }
  std::vector<std::string> closed;
};

// A reactor on its own thread for the length of a test, as a worker's.
class RunningReactor {
 public:
  RunningReactor() : thread_([this] { r.run(); }) {}
  ~RunningReactor() {
    r.stop();
    thread_.join();
  }
  // Returns once what was posted to r, and what that posted in turn (a few hops:
  // a peer's answer, then the completion posted home), has run.
  void settle() {
    std::promise<void> settled;
    post_round(4, settled);
    settled.get_future().wait();
  }

  reactor::Reactor r{0};

 private:
  // Each round goes behind everything posted before it.
  void post_round(int left, std::promise<void>& settled) {
    r.post([this, left, &settled] {
      if (left == 0) return settled.set_value();
      post_round(left - 1, settled);
    });
  }

  std::thread thread_;
};

config::Limits limits(std::uint32_t total, std::uint32_t per_initiator) {
  config::Limits l;
  l.max_sessions = total;
  l.max_sessions_per_initiator = per_initiator;
  return l;
}

TEST(SessionTable, LimitsRefuseNewSessionsButNeverAReinstatement) {
  RunningReactor w;
  reactor::Reactor& r = w.r;
  SessionTable table(limits(2, 1));
  auto a = std::make_shared<RecordingPeer>();
  EXPECT_NE(table.session_started({"iqn.a", 1, kTarget}, &r, a), 0);
  EXPECT_EQ(table.session_started({"iqn.a", 2, kTarget}, &r, a), 0);  // per initiator
  EXPECT_NE(table.session_started({"iqn.b", 1, kTarget}, &r, a), 0);
  EXPECT_EQ(table.session_started({"iqn.c", 1, kTarget}, &r, a), 0);  // in all
  EXPECT_NE(table.session_started({"iqn.a", 1, kTarget}, &r, a), 0);  // reinstates
  EXPECT_EQ(table.session_count(), 2u);
  w.settle();
}

TEST(SessionTable, ReinstatementClosesTheOldSessionAndTheNewOneWaitsForIt) {
  RunningReactor w;
  reactor::Reactor& r = w.r;
  SessionTable table(limits(8, 8));
  const SessionId id{"iqn.a", 7, kTarget};
  auto old_peer = std::make_shared<RecordingPeer>();
  auto new_peer = std::make_shared<RecordingPeer>();
  const std::uint16_t old_tsih = table.session_started(id, &r, old_peer);
  const std::uint16_t new_tsih = table.session_started(id, &r, new_peer);
  ASSERT_NE(old_tsih, new_tsih);
  w.settle();
  EXPECT_EQ(old_peer->closed.size(), 1u);
  EXPECT_TRUE(new_peer->closed.empty());

  bool ready = false;
  table.after_reinstated(id, new_tsih, &r, [&] { ready = true; });
  w.settle();
  EXPECT_FALSE(ready);  // the old session still has commands in the backend
  table.session_ended(id, old_tsih);
  w.settle();
  EXPECT_TRUE(ready);

  // With nothing left to wait for, the login goes on at once.
  bool at_once = false;
  table.after_reinstated(id, new_tsih, &r, [&] { at_once = true; });
  EXPECT_TRUE(at_once);
}

TEST(SessionTable, ALoginThatWentAwayIsNotReleased) {
  RunningReactor w;
  reactor::Reactor& r = w.r;
  SessionTable table(limits(8, 8));
  const SessionId id{"iqn.a", 7, kTarget};
  auto peer = std::make_shared<RecordingPeer>();
  const std::uint16_t old_tsih = table.session_started(id, &r, peer);
  const std::uint16_t new_tsih = table.session_started(id, &r, peer);
  bool ready = false;
  table.after_reinstated(id, new_tsih, &r, [&] { ready = true; });
  table.session_ended(id, new_tsih);
  table.session_ended(id, old_tsih);
  w.settle();
  EXPECT_FALSE(ready);
  EXPECT_EQ(table.session_count(), 0u);
}

TEST(SessionTable, PortalOfANexusIsWhereItsSessionCameIn) {
  SessionTable table(limits(8, 8));
  const std::uint16_t tsih = table.session_started({"iqn.a", 5, kTarget}, nullptr, {}, "1.2.3.4:1");
  scsi::Nexus nexus;
  nexus.initiator_name = "iqn.a";
  nexus.target_name = kTarget;
  nexus.session_id = (std::uint64_t{5} << 16) | tsih;
  EXPECT_EQ(table.portal_of(nexus), "1.2.3.4:1");
  nexus.session_id = (std::uint64_t{5} << 16) | static_cast<std::uint16_t>(tsih + 1);
  EXPECT_FALSE(table.portal_of(nexus));  // another session of that port
}

}  // namespace
}  // namespace ringtgt::net
