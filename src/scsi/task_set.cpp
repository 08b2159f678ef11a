#include "task_set.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

#include "ringtgt/metrics/counters.hpp"
#include "ringtgt/reactor/io_engine.hpp"
#include "ringtgt/reactor/reactor.hpp"
#include "ringtgt/scsi/logical_unit.hpp"

namespace ringtgt::scsi {

namespace {

// Worker slots (config: at most 1024 workers), plus one for threads without
// a slot (unit tests run tasks on their own thread).
constexpr unsigned kWorkerSlots = 1024;
constexpr unsigned kShards = kWorkerSlots + 1;

reactor::Reactor* reactor_of_this_thread() {
  return dynamic_cast<reactor::Reactor*>(reactor::IoEngine::current());
}

}  // namespace

// One abort in progress: the parts still to answer (one per other reactor
// asked, one per wait, one for abort() itself); the last brings done home.
struct TaskSet::Run {
  std::atomic<std::size_t> left{1};
  reactor::Reactor* home = nullptr;  // null: the caller has no reactor (tests)
  std::function<void()> done;
  void part_done() {
    if (left.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    if (home == nullptr || home == reactor_of_this_thread()) return done();
    home->post(std::move(done));
  }
};

// The tasks of one thread. Others read only home and size, to know whether
// to ask this thread at all. A cache line each: every reactor writes its
// own shard on every command, and must not invalidate its neighbour's.
struct alignas(64) TaskSet::Shard {
  Task* head = nullptr;
  std::atomic<std::uint32_t> size{0};  // written by the owner thread only
  std::atomic<reactor::Reactor*> home{nullptr};
  bool home_known = false;
  // Aborts waiting for tasks of this shard to leave.
  struct Wait {
    std::vector<Task*> tasks;
    std::shared_ptr<Run> run;
  };
  std::vector<Wait> waits;
};

TaskSet::TaskSet() : shards_(std::make_unique<Shard[]>(kShards)) {}
TaskSet::~TaskSet() = default;

TaskSet::Shard& TaskSet::local() {
  return shards_[std::min(metrics::thread_slot(), kWorkerSlots)];
}

void TaskSet::enter(Task& task, LogicalUnit& lu) {
  Shard& s = local();
  if (!s.home_known) {
    s.home_known = true;
    s.home.store(reactor_of_this_thread(), std::memory_order_release);
  }
  task.task_set_lu = &lu;
  task.task_set_awaited = false;
  task.task_set_prev = nullptr;
  task.task_set_next = s.head;
  if (s.head) s.head->task_set_prev = &task;
  s.head = &task;
  s.size.store(s.size.load(std::memory_order_relaxed) + 1, std::memory_order_release);
}

void TaskSet::leave(Task& task) {
  Shard& s = local();
  if (task.task_set_prev)
    task.task_set_prev->task_set_next = task.task_set_next;
  else
    s.head = task.task_set_next;
  if (task.task_set_next) task.task_set_next->task_set_prev = task.task_set_prev;
  task.task_set_prev = task.task_set_next = nullptr;
  task.task_set_lu = nullptr;
  s.size.store(s.size.load(std::memory_order_relaxed) - 1, std::memory_order_release);
  if (!task.task_set_awaited) return;
  task.task_set_awaited = false;
  std::vector<std::shared_ptr<Run>> over;
  for (auto it = s.waits.begin(); it != s.waits.end();) {
    std::erase(it->tasks, &task);
    if (it->tasks.empty()) {
      over.push_back(std::move(it->run));
      it = s.waits.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& run : over) run->part_done();
}

void TaskSet::abort(Filter filter, const Task* keep, std::function<void()> done,
                    std::shared_ptr<const void> self) {
  auto run = std::make_shared<Run>();
  run->home = reactor_of_this_thread();
  run->done = std::move(done);
  for (unsigned i = 0; i < kShards; ++i) {
    Shard& s = shards_[i];
    reactor::Reactor* home = s.home.load(std::memory_order_acquire);
    if (home == run->home) {
      // This thread's own tasks (or, without reactors, the only thread's).
      if (home != nullptr || &s == &local()) abort_in(s, filter, keep, run);
      continue;
    }
    // A thread with no task here now has none to abort: one arriving later
    // comes after the abort (a preempted nexus's meets its new reservation).
    if (s.size.load(std::memory_order_acquire) == 0) continue;
    if (home == nullptr || run->home == nullptr) {
      spdlog::error("task set: tasks on another thread not aborted: no reactor to reach it");
      continue;
    }
    run->left.fetch_add(1, std::memory_order_relaxed);
    home->post([this, &s, filter, keep, run, self] {
      abort_in(s, filter, keep, run);
      run->part_done();
    });
  }
  run->part_done();
}

void TaskSet::abort_in(Shard& shard, const Filter& filter, const Task* keep,
                       const std::shared_ptr<Run>& run) {
  Shard::Wait wait;
  for (Task* t = shard.head; t;) {
    Task* next = t->task_set_next;  // an aborted task may leave at once
    if (t != keep && filter(*t) && t->owner != nullptr && t->owner->task_aborted(*t) &&
        t->task_set_lu != nullptr) {
      t->task_set_awaited = true;
      wait.tasks.push_back(t);
    }
    t = next;
  }
  if (wait.tasks.empty()) return;
  run->left.fetch_add(1, std::memory_order_relaxed);
  wait.run = run;
  shard.waits.push_back(std::move(wait));
}

}  // namespace ringtgt::scsi

// ---------------------------------------------------------------- LogicalUnit

namespace ringtgt::scsi {

void LogicalUnit::enter_task_set(Task& task) {
  task_set_->enter(task, *this);
}

void LogicalUnit::leave_task_set(Task& task) {
  task_set_->leave(task);
}

void LogicalUnit::abort_task_set(std::function<bool(const Task&)> aborted, const Task* keep,
                                 std::function<void()> done) {
  // Null for an LU not held by a shared_ptr (unit tests): then only this
  // thread has tasks of it.
  task_set_->abort(std::move(aborted), keep, std::move(done), weak_from_this().lock());
}

}  // namespace ringtgt::scsi
