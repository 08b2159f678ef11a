#include "waiting_luns.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>

#include "ringtgt/storage/unopened_backend.hpp"

namespace ringtgt::daemon {

namespace {

constexpr std::chrono::seconds kFirstRetry{1};
constexpr std::chrono::seconds kLongestRetry{30};

// What lun list shows: the store's error without the "target T LUN n: " the
// factory puts before it (the list has those columns).
std::string reason_of(const std::string& error, const std::string& target, std::uint32_t lun) {
  const std::string prefix = "target " + target + " LUN " + std::to_string(lun) + ": ";
  return error.starts_with(prefix) ? error.substr(prefix.size()) : error;
}

}  // namespace

struct WaitingLuns::Waiting {
  std::string target;
  config::Lun lun;
  // Weak: a LUN removed (or replaced) meanwhile is no longer waited for.
  std::weak_ptr<scsi::LogicalUnit> placeholder;
  storage::UnopenedBackend* backend;  // the placeholder's: use while it is held
  std::shared_ptr<metrics::StoreCounters> counters;
  std::string last_error;
  std::thread thread;
};

WaitingLuns::WaitingLuns(const lun::LunFactory& luns) : luns_(luns) {}

WaitingLuns::~WaitingLuns() {
  stop();
}

std::shared_ptr<scsi::LogicalUnit> WaitingLuns::open(const std::string& target,
                                                     const config::Lun& l) {
  try {
    return luns_.open(target, l);
  } catch (const std::exception& e) {
    if (started_ || !l.rbd) throw;
    auto counters = std::make_shared<metrics::StoreCounters>();
    counters->open_failures.fetch_add(1, std::memory_order_relaxed);
    const config::RbdImage& r = *l.rbd;
    const std::string spec = "rbd:" + r.pool + "/" +
                             (r.rados_namespace.empty() ? "" : r.rados_namespace + "/") + r.image;
    auto backend = std::make_unique<storage::UnopenedBackend>(
        spec, l.write_ack, reason_of(e.what(), target, l.number), counters);
    storage::UnopenedBackend* raw = backend.get();
    auto lu = luns_.unopened(target, l, std::move(backend));
    spdlog::error(
        "{}; the LUN answers NOT READY (02h/04h/01h) and the image is retried in the background "
        "(after {} s, backing off to every {} s)",
        e.what(), kFirstRetry.count(), kLongestRetry.count());
    waiting_.push_back(Waiting{target, l, lu, raw, std::move(counters), e.what(), {}});
    return lu;
  }
}

void WaitingLuns::start(boost::asio::io_context& io, net::Registry& registry,
                        std::function<void()> changed) {
  started_ = true;
  io_ = &io;
  registry_ = &registry;
  changed_ = std::move(changed);
  for (Waiting& w : waiting_) w.thread = std::thread([this, &w] { retry(w); });
}

void WaitingLuns::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (Waiting& w : waiting_)
    if (w.thread.joinable()) w.thread.join();
}

bool WaitingLuns::pause(std::chrono::seconds d) {
  std::unique_lock lock(mu_);
  return !wake_.wait_for(lock, d, [this] { return stopping_; });
}

void WaitingLuns::retry(Waiting& w) {
  const std::string name = "target " + w.target + " LUN " + std::to_string(w.lun.number);
  for (std::chrono::seconds delay = kFirstRetry; pause(delay);
       delay = std::min(delay * 2, kLongestRetry)) {
    std::shared_ptr<scsi::LogicalUnit> waiting = w.placeholder.lock();
    if (!waiting) {
      spdlog::info("{}: removed while its store was not open; no longer retried", name);
      return;
    }
    std::shared_ptr<scsi::LogicalUnit> lu;
    try {
      lu = luns_.open(w.target, w.lun, w.counters);
    } catch (const std::exception& e) {
      w.counters->open_failures.fetch_add(1, std::memory_order_relaxed);
      // Logged when the reason changes, not at every attempt.
      if (e.what() != w.last_error) {
        w.last_error = e.what();
        w.backend->set_reason(reason_of(e.what(), w.target, w.lun.number));
        spdlog::warn("{}; still NOT READY, retrying", e.what());
      }
      continue;
    }
    // Into the registry on the control plane, which makes every change.
    boost::asio::post(
        *io_, [this, &w, name, waiting = std::move(waiting), lu = std::move(lu)]() mutable {
          const std::string spec = w.backend->describe();
          if (registry_->replace_waiting_lun(w.target, w.lun, waiting.get(), std::move(lu))) {
            spdlog::info("{}: {} is open; the LUN is ready", name, spec);
            if (changed_) changed_();
          } else {
            spdlog::info("{}: {} opened, but the LUN was removed or replaced meanwhile: closed",
                         name, spec);
          }
        });
    return;
  }
}

}  // namespace ringtgt::daemon
