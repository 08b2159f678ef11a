// A connection's tasks: a pool made once at login (the queue depth plus a few for
// immediate commands) so the I/O path allocates nothing, the list of those in use, and
// the ITTs of recently ended ones whose late Data-Out is dropped without a Reject.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

namespace ringtgt::iscsi {

struct IscsiTask;

class TaskTable {
 public:
  TaskTable();
  ~TaskTable();
  TaskTable(const TaskTable&) = delete;
  TaskTable& operator=(const TaskTable&) = delete;

  // The pool: count tasks, each able to hold r2ts outstanding R2Ts.
  void create(std::uint32_t count, std::uint32_t r2ts);
  // Every task of the pool, in use or not.
  const std::vector<std::unique_ptr<IscsiTask>>& all() const { return store_; }

  // A task for a new command (begun, first in the list), or null when the pool is empty.
  IscsiTask* acquire();
  // Back to the pool.
  void release(IscsiTask& t);
  // Its status is on the way out: it no longer holds a slot of the queue depth.
  void responding(IscsiTask& t);

  // The tasks in use, newest first (follow IscsiTask::next).
  IscsiTask* first() const { return active_; }
  IscsiTask* find(std::uint32_t itt) const;
  std::uint32_t in_use() const { return in_use_; }
  std::uint32_t responding() const { return responding_; }
  std::size_t free() const { return free_.size(); }

  // Data-Out already on its way for the command with this ITT is dropped silently.
  void remember_ended(std::uint32_t itt) { ended_itts_[ended_next_++ % ended_itts_.size()] = itt; }
  bool recently_ended(std::uint32_t itt) const;

 private:
  std::vector<std::unique_ptr<IscsiTask>> store_;
  std::vector<IscsiTask*> free_;
  IscsiTask* active_ = nullptr;
  std::uint32_t in_use_ = 0;
  std::uint32_t responding_ = 0;
  std::array<std::uint32_t, 16> ended_itts_;
  std::uint32_t ended_next_ = 0;
};

}  // namespace ringtgt::iscsi
