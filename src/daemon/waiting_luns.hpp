// LUNs whose store could not be opened when the daemon started (an RBD image
// missing or too small, a cluster away): the daemon serves every other LUN,
// these answer NOT READY, and each is retried on a thread of its own (never a
// reactor, never the control plane) until it opens and takes its place.
#pragma once

#include <utility>  // Boost 1.74 asio uses std::exchange without including it

#include <boost/asio/io_context.hpp>
#include <condition_variable>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "ringtgt/config/config.hpp"
#include "ringtgt/lun/lun_factory.hpp"
#include "ringtgt/net/registry.hpp"

namespace ringtgt::daemon {

class WaitingLuns {
 public:
  explicit WaitingLuns(const lun::LunFactory& luns);
  ~WaitingLuns();
  WaitingLuns(const WaitingLuns&) = delete;
  WaitingLuns& operator=(const WaitingLuns&) = delete;

  // The registry's LUN opener. Until start: an RBD LUN that cannot open gets
  // a LU that waits for it (logged, counted); from start on (live changes),
  // it is refused as before, so that `lun add` says at once what is wrong.
  std::shared_ptr<scsi::LogicalUnit> open(const std::string& target, const config::Lun& l);

  // Retries each waiting LUN, after 1 s, then twice as long each time up to
  // 30 s. Once one opens, on io's thread: it replaces its waiting LU in
  // registry and changed() runs (the /metrics catalog follows).
  void start(boost::asio::io_context& io, net::Registry& registry, std::function<void()> changed);
  // Ends the retries (an open under way finishes first: bounded by the
  // LUN's op_timeout). Before io and registry go.
  void stop();

 private:
  struct Waiting;
  void retry(Waiting& w);
  // Waits up to d, or until stop: false once stopping.
  bool pause(std::chrono::seconds d);

  const lun::LunFactory& luns_;
  bool started_ = false;
  std::list<Waiting> waiting_;
  boost::asio::io_context* io_ = nullptr;
  net::Registry* registry_ = nullptr;
  std::function<void()> changed_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
};

}  // namespace ringtgt::daemon
