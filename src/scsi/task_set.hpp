// The task set of a logical unit (SAM-5 4.6, TST 000b: one for every I_T
// nexus): the tasks that arrived for it and have not ended, so that ABORT
// TASK SET, CLEAR TASK SET, resets and PREEMPT AND ABORT are decided here.
// Private to the scsi layer.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "ringtgt/scsi/task.hpp"

namespace ringtgt::reactor {
class Reactor;
}

namespace ringtgt::scsi {

class TaskSet {
 public:
  // Which tasks an abort ends; called on the thread of each task.
  using Filter = std::function<bool(const Task&)>;

  TaskSet();
  ~TaskSet();
  TaskSet(const TaskSet&) = delete;
  TaskSet& operator=(const TaskSet&) = delete;

  // On the thread of task, which stays on it until it leaves: no lock, no
  // allocation (one list per reactor thread, keyed by metrics::thread_slot()).
  void enter(Task& task, LogicalUnit& lu);
  void leave(Task& task);

  // Asks the owner of every task of the set that filter accepts, except keep,
  // to abort it (TaskOwner::task_aborted), each on its own thread; then calls
  // done, on the caller's thread, once none of those it must wait for is
  // left. done is called exactly once, maybe before return. `self` keeps the
  // logical unit alive while other threads work for the abort.
  void abort(Filter filter, const Task* keep, std::function<void()> done,
             std::shared_ptr<const void> self);

 private:
  struct Run;
  struct Shard;
  Shard& local();
  // On the thread of shard: aborts its tasks; run waits for those that must be.
  void abort_in(Shard& shard, const Filter& filter, const Task* keep,
                const std::shared_ptr<Run>& run);

  std::unique_ptr<Shard[]> shards_;
};

}  // namespace ringtgt::scsi
