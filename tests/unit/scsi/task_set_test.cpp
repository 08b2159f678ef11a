// A logical unit's task set across reactors, as the daemon runs it: each
// reactor thread keeps its own tasks, an abort reaches the others by posting,
// and done comes back to the thread that asked.
#include <gtest/gtest.h>

#include <future>
#include <memory>
#include <thread>
#include <vector>

#include "ringtgt/metrics/counters.hpp"
#include "ringtgt/reactor/reactor.hpp"
#include "ringtgt/scsi/logical_unit.hpp"
#include "ringtgt/storage/memory_backend.hpp"

namespace ringtgt::scsi {
namespace {

// A reactor on its own thread, with worker slot `slot`, as a worker's.
class RunningReactor {
 public:
  explicit RunningReactor(unsigned slot)
      : r(slot), thread_([this, slot] {
          metrics::set_thread_slot(slot);
          r.run();
        }) {}
  ~RunningReactor() {
    r.stop();
    thread_.join();
  }
  // Runs fn on the reactor's thread and waits for it.
  void run(const std::function<void()>& fn) {
    std::promise<void> ran;
    r.post([&] {
      fn();
      ran.set_value();
    });
    ran.get_future().wait();
  }
  // Returns once what was posted before, and a few hops of what that posted, ran.
  void settle() {
    for (int i = 0; i < 4; ++i) run([] {});
  }

  reactor::Reactor r;

 private:
  std::thread thread_;
};

// A transport's task: records the thread it was asked to abort on.
struct RecordingOwner final : TaskOwner {
  Nexus nexus;
  Task task;
  bool in_backend = true;
  std::vector<std::thread::id> aborted_on;
  explicit RecordingOwner(std::string initiator) {
    nexus.initiator_name = std::move(initiator);
    task.nexus = &nexus;
    task.owner = this;
  }
  void task_complete(Task&) override {}
  bool task_aborted(Task&) override {
    aborted_on.push_back(std::this_thread::get_id());
    return in_backend;
  }
};

TEST(LuTaskSet, AnAbortReachesTasksOnOtherReactorsAndAnswersAtHome) {
  RunningReactor home(0), other(1);
  LunParams lp;
  auto lu = std::make_shared<LogicalUnit>(0, lp, std::make_unique<storage::MemoryBackend>(1 << 20));
  RecordingOwner b_write("iqn.b"), c_write("iqn.c"), b_here("iqn.b");
  b_here.in_backend = false;
  std::thread::id home_id, other_id;
  home.run([&] { home_id = std::this_thread::get_id(); });
  other.run([&] {
    other_id = std::this_thread::get_id();
    lu->enter_task_set(b_write.task);
    lu->enter_task_set(c_write.task);
  });
  home.run([&] { lu->enter_task_set(b_here.task); });

  int done = 0;
  std::thread::id done_on;
  home.run([&] {
    lu->abort_task_set([](const Task& t) { return t.nexus->initiator_name == "iqn.b"; }, nullptr,
                       [&] {
                         ++done;
                         done_on = std::this_thread::get_id();
                       });
  });
  other.settle();
  home.settle();
  // Each of b's tasks asked on its own thread; c's untouched.
  ASSERT_EQ(b_here.aborted_on.size(), 1u);
  EXPECT_EQ(b_here.aborted_on[0], home_id);
  ASSERT_EQ(b_write.aborted_on.size(), 1u);
  EXPECT_EQ(b_write.aborted_on[0], other_id);
  EXPECT_TRUE(c_write.aborted_on.empty());
  EXPECT_EQ(done, 0);  // b's WRITE is still in the backend over there

  other.run([&] { lu->leave_task_set(b_write.task); });
  other.settle();
  home.settle();
  EXPECT_EQ(done, 1);
  EXPECT_EQ(done_on, home_id);

  other.run([&] { lu->leave_task_set(c_write.task); });
  home.run([&] { lu->leave_task_set(b_here.task); });
  // Nothing left anywhere: done at once, on the asking thread.
  home.run([&] {
    lu->abort_task_set([](const Task&) { return true; }, nullptr, [&] { ++done; });
    EXPECT_EQ(done, 2);
  });
}

}  // namespace
}  // namespace ringtgt::scsi
