// Blocking work (an fsync, a rename) that must not run on a reactor thread,
// done one job after another on a thread of this worker's own. The thread
// starts when a job is posted and none is running, and ends when the queue is
// empty, so an idle worker costs no thread.
#pragma once

#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace ringtgt::common {

class SerialWorker {
 public:
  SerialWorker() = default;
  SerialWorker(const SerialWorker&) = delete;
  SerialWorker& operator=(const SerialWorker&) = delete;
  // Runs the jobs still queued, then returns.
  ~SerialWorker();

  // Any thread: queues job; jobs run in the order they were posted.
  void post(std::function<void()> job);

 private:
  void run();

  std::mutex mutex_;
  std::deque<std::function<void()>> jobs_;
  bool running_ = false;
  std::thread thread_;
};

}  // namespace ringtgt::common
