#include "ringtgt/common/serial_worker.hpp"

#include <utility>

namespace ringtgt::common {

SerialWorker::~SerialWorker() {
  std::unique_lock lock(mutex_);
  if (!thread_.joinable()) return;
  lock.unlock();
  thread_.join();  // run() drains the queue before it returns
}

void SerialWorker::post(std::function<void()> job) {
  std::unique_lock lock(mutex_);
  jobs_.push_back(std::move(job));
  if (running_) return;
  running_ = true;
  // The previous thread has left run() (running_ was false) or is about to
  // return from it; joining it costs at most that return.
  std::thread finished = std::move(thread_);
  thread_ = std::thread([this] { run(); });
  lock.unlock();
  if (finished.joinable()) finished.join();
}

void SerialWorker::run() {
  std::unique_lock lock(mutex_);
  while (!jobs_.empty()) {
    std::function<void()> job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    job();
    lock.lock();
  }
  running_ = false;
}

}  // namespace ringtgt::common
