#include "ringtgt/iscsi/task_table.hpp"

#include <algorithm>

#include "iscsi_task.hpp"
#include "ringtgt/iscsi/pdu.hpp"

namespace ringtgt::iscsi {

TaskTable::TaskTable() {
  ended_itts_.fill(kReservedTag);
}

TaskTable::~TaskTable() = default;

void TaskTable::create(std::uint32_t count, std::uint32_t r2ts) {
  store_.reserve(count);
  for (std::uint32_t i = 0; i < count; ++i) {
    auto t = std::make_unique<IscsiTask>();
    t->r2ts.resize(std::max<std::uint32_t>(1, r2ts));
    free_.push_back(t.get());
    store_.push_back(std::move(t));
  }
}

IscsiTask* TaskTable::acquire() {
  if (free_.empty()) return nullptr;
  IscsiTask* t = free_.back();
  free_.pop_back();
  t->begin();
  t->prev = nullptr;
  t->next = active_;
  if (active_) active_->prev = t;
  active_ = t;
  ++in_use_;
  return t;
}

void TaskTable::release(IscsiTask& t) {
  if (t.prev)
    t.prev->next = t.next;
  else
    active_ = t.next;
  if (t.next) t.next->prev = t.prev;
  t.prev = t.next = nullptr;
  if (t.state == IscsiTask::State::responding) --responding_;
  t.state = IscsiTask::State::idle;
  --in_use_;
  free_.push_back(&t);
}

void TaskTable::responding(IscsiTask& t) {
  t.state = IscsiTask::State::responding;
  ++responding_;
}

IscsiTask* TaskTable::find(std::uint32_t itt) const {
  for (IscsiTask* t = active_; t; t = t->next)
    if (t->itt == itt) return t;
  return nullptr;
}

bool TaskTable::recently_ended(std::uint32_t itt) const {
  return std::find(ended_itts_.begin(), ended_itts_.end(), itt) != ended_itts_.end();
}

}  // namespace ringtgt::iscsi
