// Reload diff: which steps a new configuration turns into, and what needs a restart.
#include "ringtgt/admin/change_plan.hpp"

#include <gtest/gtest.h>

#include <algorithm>

namespace ringtgt::admin {
namespace {

using Kind = ChangeStep::Kind;

config::Config base() {
  return config::load_string(
      "workers = 2\n"
      "[[portal]]\nlisten = \"127.0.0.1:3260\"\n"
      "[[target]]\nname = \"iqn.2025-01.com.example:a\"\n"
      "  [[target.lun]]\n  number = 1\n  path = \"/tmp/a1.img\"\n  size = \"1M\"\n"
      "  [[target.lun]]\n  number = 2\n  path = \"/tmp/a2.img\"\n  size = \"1M\"\n"
      "[[target]]\nname = \"iqn.2025-01.com.example:b\"\n"
      "  [[target.lun]]\n  number = 1\n  path = \"/tmp/b1.img\"\n  size = \"1M\"\n",
      "base.toml");
}

std::vector<Kind> kinds(const ChangePlan& p) {
  std::vector<Kind> k;
  for (const auto& s : p.steps) k.push_back(s.kind);
  return k;
}

TEST(ChangePlan, SameConfigChangesNothing) {
  auto p = plan_changes(base(), base());
  EXPECT_TRUE(p.steps.empty());
  EXPECT_TRUE(p.needs_restart.empty());
}

TEST(ChangePlan, AddedAndRemovedTargetsLunsAndPortals) {
  auto next = base();
  next.targets.erase(next.targets.begin() + 1);  // b goes
  config::Target c;
  c.name = "iqn.2025-01.com.example:c";
  next.targets.push_back(c);
  next.targets[0].luns.erase(next.targets[0].luns.begin());  // a LUN 1 goes
  config::Lun l3;
  l3.number = 3;
  l3.path = "/tmp/a3.img";
  next.targets[0].luns.push_back(l3);
  next.portals.push_back({"::1", 3261});
  next.portals.erase(next.portals.begin());
  auto p = plan_changes(base(), next);
  // Additions first, removals last.
  EXPECT_EQ(kinds(p),
            (std::vector<Kind>{Kind::add_portal, Kind::add_lun, Kind::add_target, Kind::remove_lun,
                               Kind::remove_target, Kind::remove_portal}));
  EXPECT_EQ(p.steps[1].target, "iqn.2025-01.com.example:a");
  EXPECT_EQ(p.steps[1].lun, 3u);
  EXPECT_EQ(p.steps[1].lun_cfg.path, "/tmp/a3.img");
  EXPECT_EQ(p.steps[2].target, "iqn.2025-01.com.example:c");
  EXPECT_EQ(p.steps[3].lun, 1u);
  EXPECT_EQ(p.steps[4].target, "iqn.2025-01.com.example:b");
  EXPECT_EQ(p.steps[5].portal.to_string(), "127.0.0.1:3260");
  EXPECT_TRUE(p.needs_restart.empty());
}

TEST(ChangePlan, UntouchedTargetHasNoStep) {
  auto next = base();
  next.targets[1].luns[0].path = "/tmp/b1-new.img";
  auto p = plan_changes(base(), next);
  ASSERT_EQ(p.steps.size(), 1u);
  EXPECT_EQ(p.steps[0].kind, Kind::replace_lun);
  EXPECT_EQ(p.steps[0].target, "iqn.2025-01.com.example:b");
  for (const auto& s : p.steps) EXPECT_NE(s.target, "iqn.2025-01.com.example:a");
}

TEST(ChangePlan, BackingChangesReplaceTheLun) {
  for (int field = 0; field < 5; ++field) {
    auto next = base();
    auto& l = next.targets[0].luns[1];
    switch (field) {
      case 0:
        l.block_size = 4096;
        break;
      case 1:
        l.read_only = true;
        break;
      case 2:
        l.write_ack = config::WriteAckPolicy::writeback;
        break;
      case 3:
        l.direct_io = true;
        break;
      case 4:
        l.serial = "X";
        break;
    }
    auto p = plan_changes(base(), next);
    ASSERT_EQ(p.steps.size(), 1u) << field;
    EXPECT_EQ(p.steps[0].kind, Kind::replace_lun) << field;
    EXPECT_EQ(p.steps[0].lun, 2u);
  }
}

TEST(ChangePlan, GrowIsAResizeShrinkIsLeft) {
  auto next = base();
  next.targets[0].luns[0].size = 2u << 20;
  auto p = plan_changes(base(), next);
  ASSERT_EQ(p.steps.size(), 1u);
  EXPECT_EQ(p.steps[0].kind, Kind::resize_lun);
  EXPECT_EQ(*p.steps[0].lun_cfg.size, 2u << 20);

  next = base();
  next.targets[0].luns[0].size = 512u << 10;
  p = plan_changes(base(), next);
  EXPECT_TRUE(p.steps.empty());
  ASSERT_EQ(p.needs_restart.size(), 1u);
  EXPECT_NE(p.needs_restart[0].find("shrinking is not supported"), std::string::npos);
}

TEST(ChangePlan, AclAndChapChangesAreLive) {
  auto next = base();
  next.targets[0].allowed_initiators = {"iqn.2025-01.com.example:i"};
  next.targets[0].luns[0].allowed_initiators = {"iqn.2025-01.com.example:i"};
  config::Chap chap;
  chap.user = "u";
  chap.secret = "0123456789abcdef";
  next.targets[1].chap = chap;
  auto p = plan_changes(base(), next);
  EXPECT_EQ(kinds(p), (std::vector<Kind>{Kind::set_target_initiators, Kind::set_lun_initiators,
                                         Kind::set_target_chap}));
  EXPECT_EQ(p.steps[0].target_cfg.allowed_initiators, next.targets[0].allowed_initiators);
}

TEST(ChangePlan, SettingsThatNeedARestartAreReportedAndLeft) {
  auto next = base();
  next.workers = 4;
  next.iscsi.queue_depth = 64;
  next.iscsi.header_digest = false;
  next.log_level = "debug";
  next.targets[0].alias = "new";
  next.admin.socket = "/tmp/other.sock";
  auto p = plan_changes(base(), next);
  EXPECT_TRUE(p.steps.empty());
  auto has = [&](const std::string& s) {
    return std::any_of(p.needs_restart.begin(), p.needs_restart.end(),
                       [&](const auto& n) { return n.find(s) != std::string::npos; });
  };
  EXPECT_EQ(p.needs_restart.size(), 6u);
  EXPECT_TRUE(has("workers: 2 -> 4"));
  EXPECT_TRUE(has("iscsi.queue_depth: 128 -> 64"));
  EXPECT_TRUE(has("iscsi.header_digest: allowed -> never"));
  EXPECT_TRUE(has("log_level: info -> debug"));
  EXPECT_TRUE(has("alias"));
  EXPECT_TRUE(has("admin.socket"));
}

}  // namespace
}  // namespace ringtgt::admin

// Issue 21: what a change of write_ack does to the promise a logged-in initiator holds.
namespace ringtgt::admin {
namespace {

config::Config with_ack(config::WriteAckPolicy a1) {
  auto c = base();
  c.targets[0].luns[0].write_ack = a1;
  return c;
}

TEST(ChangePlanAck, EachTransitionOfWriteAck) {
  using WriteAck = config::WriteAckPolicy;
  struct Row {
    WriteAck from, to;
    bool replaced, weakens, strengthens;
  };
  const Row rows[] = {
      {WriteAck::writethrough, WriteAck::writeback, true, true, false},
      {WriteAck::writeback, WriteAck::writethrough, true, false, true},
      {WriteAck::writethrough, WriteAck::writethrough, false, false, false},
      {WriteAck::writeback, WriteAck::writeback, false, false, false},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(std::to_string(static_cast<int>(r.from)) + " -> " +
                 std::to_string(static_cast<int>(r.to)));
    auto p = plan_changes(with_ack(r.from), with_ack(r.to));
    ASSERT_EQ(p.steps.size(), r.replaced ? 1u : 0u);
    if (!r.replaced) continue;
    EXPECT_EQ(p.steps[0].kind, Kind::replace_lun);
    EXPECT_EQ(p.steps[0].weakens_ack,
              r.weakens ? "write_ack writethrough -> writeback" : std::string());
    EXPECT_EQ(p.steps[0].strengthens_ack, r.strengthens);
  }
}

TEST(ChangePlanAck, OtherBackingChangesNeitherWeakenNorStrengthen) {
  auto next = base();
  next.targets[0].luns[0].path = "/tmp/elsewhere.img";
  next.targets[0].luns[1].read_only = true;
  auto p = plan_changes(base(), next);
  ASSERT_EQ(p.steps.size(), 2u);
  for (const auto& s : p.steps) {
    EXPECT_EQ(s.kind, Kind::replace_lun);
    EXPECT_TRUE(s.weakens_ack.empty());
    EXPECT_FALSE(s.strengthens_ack);
  }
}

TEST(ChangePlanAck, WeakeningWaitsWhileSessionsUseTheTarget) {
  auto running = base();
  auto next = base();
  next.targets[0].luns[0].write_ack = config::WriteAckPolicy::writeback;  // a LUN 1: weakened
  next.targets[0].luns[1].path = "/tmp/a2-new.img";                       // a LUN 2: only moved
  next.targets[1].luns[0].write_ack = config::WriteAckPolicy::writeback;  // b LUN 1: no session
  auto p = plan_changes(running, next);
  ASSERT_EQ(p.steps.size(), 3u);
  defer_ack_weakening(p, next, running, {"iqn.2025-01.com.example:a"});
  ASSERT_EQ(p.steps.size(), 2u);
  EXPECT_EQ(p.steps[0].lun, 2u);
  EXPECT_EQ(p.steps[1].target, "iqn.2025-01.com.example:b");
  ASSERT_EQ(p.deferred.size(), 1u);
  EXPECT_NE(p.deferred[0].find("target iqn.2025-01.com.example:a LUN 1: write_ack writethrough "
                               "-> writeback not applied while sessions use the target"),
            std::string::npos)
      << p.deferred[0];
  EXPECT_NE(p.deferred[0].find("--force"), std::string::npos);
  // The running configuration keeps saying what is served, so the next reload tries again.
  EXPECT_EQ(next.targets[0].luns[0].write_ack, config::WriteAckPolicy::writethrough);
  EXPECT_EQ(next.targets[1].luns[0].write_ack, config::WriteAckPolicy::writeback);
  auto later = plan_changes(next, [&] {
    auto c = next;
    c.targets[0].luns[0].write_ack = config::WriteAckPolicy::writeback;
    return c;
  }());
  ASSERT_EQ(later.steps.size(), 1u);
  EXPECT_FALSE(later.steps[0].weakens_ack.empty());
}

TEST(ChangePlanAck, StrengtheningIsNeverDeferred) {
  auto running = with_ack(config::WriteAckPolicy::writeback);
  auto next = base();
  auto p = plan_changes(running, next);
  defer_ack_weakening(p, next, running, {"iqn.2025-01.com.example:a"});
  ASSERT_EQ(p.steps.size(), 1u);
  EXPECT_TRUE(p.steps[0].strengthens_ack);
  EXPECT_TRUE(p.deferred.empty());
}

}  // namespace
}  // namespace ringtgt::admin
