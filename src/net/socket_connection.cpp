#include "ringtgt/net/socket_connection.hpp"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "ringtgt/metrics/counters.hpp"
#include "ringtgt/net/registry.hpp"
#include "ringtgt/reactor/buffer_pool.hpp"

namespace ringtgt::net {

namespace {
std::atomic<std::uint64_t> next_connection_id{1};  // once per accepted connection
}  // namespace

SocketConnection::SocketConnection(reactor::Reactor& reactor, unsigned worker_index,
                                   Registry& registry, int fd, std::string peer, std::string local)
    : reactor_(reactor),
      worker_index_(worker_index),
      registry_(registry),
      fd_(fd),
      peer_(std::move(peer)),
      local_(std::move(local)),
      id_(next_connection_id.fetch_add(1, std::memory_order_relaxed)),
      conn_(*this, registry.connection_settings(), peer_, reactor::Clock::now()),
      rx_(new std::uint8_t[kRxSize]) {
  recv_op_.self = this;
  recv_op_.fn = &SocketConnection::on_recv;
  send_op_.self = this;
  send_op_.fn = &SocketConnection::on_sent;
}

SocketConnection::~SocketConnection() {
  if (fd_ >= 0) ::close(fd_);
}

void SocketConnection::start() {
  spdlog::debug("connection from {} on {} (worker {})", peer_, local_, worker_index_);
  post_recv();
}

// ---------------------------------------------------------------- receive

void SocketConnection::post_recv() {
  if (closing_ || recv_inflight_) return;
  recv_inflight_ = true;
  if (rx_state_ == RxState::data && plan_.dest != nullptr &&
      plan_.len - data_have_ >= kDirectThreshold) {
    // Large payload: straight into the task's buffer, no copy.
    direct_recv_ = true;
    reactor_.recv(fd_, plan_.dest + data_have_, plan_.len - data_have_, MSG_WAITALL, &recv_op_);
    return;
  }
  direct_recv_ = false;
  if (rx_begin_ == rx_end_) rx_begin_ = rx_end_ = 0;
  if (rx_end_ == kRxSize) {
    std::memmove(rx_.get(), rx_.get() + rx_begin_, rx_end_ - rx_begin_);
    rx_end_ -= rx_begin_;
    rx_begin_ = 0;
  }
  reactor_.recv(fd_, rx_.get() + rx_end_, kRxSize - rx_end_, 0, &recv_op_);
}

void SocketConnection::on_recv(int result) {
  recv_inflight_ = false;
  if (result <= 0) {
    if (result < 0 && result != -ECONNRESET && result != -ECANCELED && !shut_)
      spdlog::info("{}: receive failed: {}", peer_, std::strerror(-result));
    closing_ = true;
    begin_shutdown();
    return;
  }
  bytes_in_ += static_cast<std::uint64_t>(result);
  if (direct_recv_) {
    data_have_ += static_cast<std::uint32_t>(result);
  } else {
    rx_end_ += static_cast<std::size_t>(result);
  }
  process();
  if (!rx_paused_) post_recv();
}

bool SocketConnection::pause_receive_if_over_limit() {
  if (!conn_.should_pause_receive()) return false;
  // The peer is not reading its responses: taking more commands from it would
  // only pile up more. What it sends meanwhile waits in rx_ and in TCP until
  // it has read (on_sent resumes).
  if (!rx_paused_) {
    spdlog::debug("{}: {} bytes held for responses unread; receive paused", peer_,
                  conn_.output_bytes());
    metrics::global().receive_pauses.fetch_add(1, std::memory_order_relaxed);
  }
  rx_paused_ = true;
  return true;
}

void SocketConnection::process() {
  processing_ = true;
  auto now = reactor::Clock::now();
  while (!closing_) {
    std::size_t avail = rx_end_ - rx_begin_;
    const std::uint8_t* in = rx_.get() + rx_begin_;
    if (rx_state_ == RxState::bhs || rx_state_ == RxState::header_rest) {
      if (rx_state_ == RxState::bhs && header_have_ == 0 && pause_receive_if_over_limit()) break;
      if (rx_state_ == RxState::bhs) {
        std::size_t n = std::min<std::size_t>(avail, iscsi::kBhsSize - header_have_);
        std::memcpy(header_.data() + header_have_, in, n);
        header_have_ += static_cast<std::uint32_t>(n);
        rx_begin_ += n;
        if (header_have_ < iscsi::kBhsSize) break;
        header_len_ = iscsi::kBhsSize + conn_.header_extra(header_.data());
        rx_state_ = RxState::header_rest;
        continue;
      }
      std::size_t n = std::min<std::size_t>(avail, header_len_ - header_have_);
      std::memcpy(header_.data() + header_have_, in, n);
      header_have_ += static_cast<std::uint32_t>(n);
      rx_begin_ += n;
      if (header_have_ < header_len_) break;
      auto plan = conn_.on_header(header_.data(), header_len_, now);
      header_have_ = 0;
      if (!plan) {
        close("protocol error");
        break;
      }
      plan_ = *plan;
      data_have_ = 0;
      trailer_have_ = 0;
      rx_state_ = RxState::data;
      continue;
    }
    if (rx_state_ == RxState::data) {
      if (data_have_ < plan_.len) {
        std::size_t n = std::min<std::size_t>(avail, plan_.len - data_have_);
        if (plan_.dest != nullptr) {
          std::memcpy(plan_.dest + data_have_, in, n);
        } else if (n > 0) {
          // Dropped data that still has to be checked against its digest.
        }
        data_have_ += static_cast<std::uint32_t>(n);
        rx_begin_ += n;
        if (data_have_ < plan_.len) break;
      }
      rx_state_ = RxState::trailer;
      continue;
    }
    // trailer
    std::size_t n = std::min<std::size_t>(avail, plan_.trailer_len - trailer_have_);
    std::memcpy(trailer_.data() + trailer_have_, in, n);
    trailer_have_ += static_cast<std::uint32_t>(n);
    rx_begin_ += n;
    if (trailer_have_ < plan_.trailer_len) break;
    rx_state_ = RxState::bhs;
    conn_.on_data(trailer_.data(), plan_.trailer_len);
    if (conn_.closing()) {
      close("session closed");
      break;
    }
  }
  processing_ = false;
  try_send();
}

// ---------------------------------------------------------------- send

void SocketConnection::output_ready() {
  if (!processing_) try_send();
}

void SocketConnection::try_send() {
  if (send_inflight_ || shut_) return;
  if (iscsi::OutPdu* more = conn_.take_output()) {
    if (tx_tail_)
      tx_tail_->next = more;
    else
      tx_head_ = more;
    tx_tail_ = more;
    while (tx_tail_->next) tx_tail_ = tx_tail_->next;
  }
  if (tx_head_ == nullptr) {
    if (closing_) begin_shutdown();
    return;
  }
  std::size_t n = 0;
  std::size_t skip = tx_skip_;
  for (iscsi::OutPdu* p = tx_head_; p && n + 4 <= iov_.size(); p = p->next) {
    auto add = [&](const void* base, std::size_t len) {
      if (len == 0) return;
      if (skip >= len) {
        skip -= len;
        return;
      }
      iov_[n].iov_base = const_cast<std::uint8_t*>(static_cast<const std::uint8_t*>(base) + skip);
      iov_[n].iov_len = len - skip;
      skip = 0;
      ++n;
    };
    add(p->bhs.bytes.data(), iscsi::kBhsSize);
    add(p->header_digest, p->header_len - iscsi::kBhsSize);
    add(p->data, p->data_len);
    add(p->trailer, p->trailer_len);
  }
  msg_ = {};
  msg_.msg_iov = iov_.data();
  msg_.msg_iovlen = n;
  send_inflight_ = true;
  reactor_.sendmsg(fd_, &msg_, 0, &send_op_);
}

void SocketConnection::on_sent(int result) {
  send_inflight_ = false;
  if (result < 0) {
    if (result != -EPIPE && result != -ECONNRESET)
      spdlog::info("{}: send failed: {}", peer_, std::strerror(-result));
    closing_ = true;
    // Give back what will never be sent.
    for (iscsi::OutPdu* p = tx_head_; p;) {
      iscsi::OutPdu* next = p->next;
      conn_.sent(p);
      p = next;
    }
    tx_head_ = tx_tail_ = nullptr;
    tx_skip_ = 0;
    begin_shutdown();
    return;
  }
  bytes_out_ += static_cast<std::uint64_t>(result);
  std::size_t done = tx_skip_ + static_cast<std::size_t>(result);
  while (tx_head_) {
    iscsi::OutPdu* p = tx_head_;
    std::size_t size = p->header_len + p->data_len + p->trailer_len;
    if (done < size) break;
    done -= size;
    tx_head_ = p->next;
    if (!tx_head_) tx_tail_ = nullptr;
    conn_.sent(p);
  }
  tx_skip_ = done;
  try_send();
  if (rx_paused_ && conn_.may_resume_receive() && !closing_) {
    rx_paused_ = false;
    process();  // what came in meanwhile
    if (!rx_paused_) post_recv();
  }
}

// ---------------------------------------------------------------- closing

void SocketConnection::close(const char* why) {
  if (!closing_) spdlog::debug("{}: closing: {}", peer_, why);
  closing_ = true;
  if (!conn_.closing()) conn_.request_close(why);
  try_send();  // flushes, then shuts the socket down
}

void SocketConnection::begin_shutdown() {
  if (!shut_) {
    shut_ = true;
    // Wakes the pending receive so the connection can be torn down.
    ::shutdown(fd_, SHUT_RDWR);
  }
  maybe_finish();
}

void SocketConnection::maybe_finish() {
  if (finished_ || recv_inflight_ || send_inflight_) return;
  for (iscsi::OutPdu* p = tx_head_; p;) {
    iscsi::OutPdu* next = p->next;
    conn_.sent(p);
    p = next;
  }
  tx_head_ = tx_tail_ = nullptr;
  tx_skip_ = 0;
  conn_.shut_down();          // idempotent: drops output and tasks not yet running
  if (!conn_.idle()) return;  // tasks still in the SCSI layer; retried on tick
  if (registered_) {
    registry_.sessions().session_ended(session_id(), conn_.tsih());
    registered_ = false;
    if (target_counters_) {
      target_counters_->sessions.fetch_sub(1, std::memory_order_relaxed);
      target_counters_->connections.fetch_sub(1, std::memory_order_relaxed);
      target_counters_.reset();
    }
    if (discovery_counted_) {
      metrics::global().discovery_sessions.fetch_sub(1, std::memory_order_relaxed);
      discovery_counted_ = false;
    }
  }
  finished_ = true;
}

void SocketConnection::on_tick(reactor::Clock::time_point now) {
  if (shut_) {
    maybe_finish();
    return;
  }
  conn_.on_tick(now);
  if (conn_.closing() && !closing_) close("time-out");
  try_send();
}

// ---------------------------------------------------------------- host

iscsi::IoBuffer SocketConnection::acquire_buffer(std::size_t min_size) {
  // The reactor thread's own pool: no lock, and reused once warm.
  std::size_t size = std::max(min_size, reactor::BufferPool::kMinSize);
  return {reactor::BufferPool::local().acquire(size), size};
}

void SocketConnection::release_buffer(iscsi::IoBuffer buffer) {
  reactor::BufferPool::local().release(buffer.data, buffer.size);
}

std::optional<iscsi::AuthPolicy> SocketConnection::auth_policy(iscsi::SessionType type,
                                                               std::string_view target) {
  return registry_.catalog().auth_policy(type, target);
}

std::shared_ptr<const iscsi::TargetEntry> SocketConnection::find_target(std::string_view name) {
  // A target limited to other portals is not there for this connection.
  if (!registry_.catalog().offered_on(name, local_)) {
    spdlog::info("{}: target {} is not offered on portal {} (target.portals)", peer_, name, local_);
    return nullptr;
  }
  return registry_.catalog().find_target(name);
}

void SocketConnection::append_send_targets(std::string_view initiator, std::string_view which,
                                           std::string& out) {
  registry_.catalog().append_send_targets(initiator, which, local_, out);
}

std::uint16_t SocketConnection::session_started(const iscsi::SessionParams& params,
                                                std::uint64_t isid) {
  const std::uint16_t tsih = registry_.sessions().session_started(
      {params.initiator_name, isid, params.target_name}, &reactor_, weak_from_this(), local_);
  registered_ = tsih != 0;
  if (!registered_) return 0;  // over a session limit: the login is refused
  metrics::count_login_success();
  if (params.session_type == iscsi::SessionType::discovery) {
    metrics::global().discovery_sessions.fetch_add(1, std::memory_order_relaxed);
    discovery_counted_ = true;
  } else if ((target_counters_ = registry_.catalog().target_counters(params.target_name))) {
    target_counters_->sessions.fetch_add(1, std::memory_order_relaxed);
    target_counters_->connections.fetch_add(1, std::memory_order_relaxed);
  }
  return tsih;
}

void SocketConnection::login_failed(iscsi::LoginFailure why, const std::string& initiator,
                                    const std::string& target, const std::string& detail) {
  switch (why) {
    case iscsi::LoginFailure::auth_failed:
      metrics::count_login_failure(metrics::LoginFailureReason::auth);
      break;
    case iscsi::LoginFailure::not_authorized:
      metrics::count_login_failure(metrics::LoginFailureReason::authorization);
      break;
    case iscsi::LoginFailure::bad_request:
      metrics::count_login_failure(metrics::LoginFailureReason::bad_request);
      break;
    case iscsi::LoginFailure::limit_reached:
      metrics::count_login_failure(metrics::LoginFailureReason::limit);
      break;
    case iscsi::LoginFailure::negotiation:
      metrics::count_login_failure(metrics::LoginFailureReason::negotiation);
      break;
    default:  // unknown target, unsupported version or session type
      metrics::count_login_failure(metrics::LoginFailureReason::other);
      break;
  }
  spdlog::warn("login refused: initiator {} target {} peer {}: {} ({})",
               initiator.empty() ? "?" : initiator, target.empty() ? "?" : target, peer_,
               iscsi::to_string(why), detail);
}

void SocketConnection::after_reinstated_session(std::function<void()> ready) {
  // Posted from the worker of the last old session to end; this connection may
  // be gone by then.
  registry_.sessions().after_reinstated(session_id(), conn_.tsih(), &reactor_,
                                        [self = weak_from_this(), ready = std::move(ready)] {
                                          if (auto alive = self.lock()) ready();
                                        });
}

SessionId SocketConnection::session_id() const {
  return {conn_.initiator_name(), conn_.isid(), conn_.target_name()};
}

}  // namespace ringtgt::net
