// A reload cannot switch the durability log on, off or elsewhere: it is
// opened before any LUN (docs/durability-check.md).
#include <gtest/gtest.h>

#include "ringtgt/admin/change_plan.hpp"
#include "ringtgt/config/config.hpp"

namespace ringtgt::admin {
namespace {

TEST(ChangePlan, DurabilityTestingNeedsARestart) {
  config::Config running;
  config::Config next = running;
  next.durability_testing.log_path = "/tmp/d.log";
  ChangePlan p = plan_changes(running, next);
  ASSERT_EQ(p.needs_restart.size(), 1u);
  EXPECT_EQ(p.needs_restart[0], "testing.durability_log:  -> /tmp/d.log (needs a restart)");
  running = next;
  next.durability_testing.ack_before_flush = true;
  p = plan_changes(running, next);
  ASSERT_EQ(p.needs_restart.size(), 1u);
  EXPECT_EQ(p.needs_restart[0], "testing.ack_before_flush: false -> true (needs a restart)");
  EXPECT_TRUE(plan_changes(next, next).needs_restart.empty());
}

}  // namespace
}  // namespace ringtgt::admin
