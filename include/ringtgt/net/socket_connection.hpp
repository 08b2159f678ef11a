// A TCP connection on a reactor: moves bytes between the socket and the
// protocol engine, with receives and sends as SQEs on the reactor's ring.
#pragma once

#include <sys/uio.h>

#include <array>
#include <memory>
#include <string>

#include "ringtgt/iscsi/connection.hpp"
#include "ringtgt/metrics/counters.hpp"
#include "ringtgt/net/session_id.hpp"
#include "ringtgt/net/session_peer.hpp"
#include "ringtgt/reactor/reactor.hpp"

namespace ringtgt::net {

class Registry;

// Lives on one reactor (its worker's, numbered worker_index) and is owned by
// that worker; knows the worker no further than its reactor and number.
class SocketConnection final : public iscsi::ConnectionHost,
                               public SessionPeer,
                               public std::enable_shared_from_this<SocketConnection> {
 public:
  SocketConnection(reactor::Reactor& reactor, unsigned worker_index, Registry& registry, int fd,
                   std::string peer, std::string local);
  ~SocketConnection();

  void start();
  // SessionPeer, reactor thread: flush what is queued, then close.
  void close(const char* why) override;
  // Called on every tick: time-outs, and the last step of a close.
  void on_tick(reactor::Clock::time_point now);
  // Closed and every task returned: the worker may drop it.
  bool finished() const { return finished_; }
  const iscsi::Connection& protocol() const { return conn_; }
  // For the admin socket (read on the reactor thread only): a number unique in this
  // process, the peer and local addresses, and the bytes moved so far.
  std::uint64_t id() const { return id_; }
  const std::string& peer() const { return peer_; }
  const std::string& local() const { return local_; }
  std::uint64_t bytes_in() const { return bytes_in_; }
  std::uint64_t bytes_out() const { return bytes_out_; }
  bool closing() const { return closing_; }

  // iscsi::ConnectionHost
  std::shared_ptr<const iscsi::TargetEntry> find_target(std::string_view name) override;
  void append_send_targets(std::string_view initiator, std::string_view which,
                           std::string& out) override;
  std::uint16_t session_started(const iscsi::SessionParams& params, std::uint64_t isid) override;
  void after_reinstated_session(std::function<void()> ready) override;
  void login_failed(iscsi::LoginFailure why, const std::string& initiator,
                    const std::string& target, const std::string& detail) override;
  void output_ready() override;
  std::optional<iscsi::AuthPolicy> auth_policy(iscsi::SessionType type,
                                               std::string_view target) override;
  iscsi::IoBuffer acquire_buffer(std::size_t min_size) override;
  void release_buffer(iscsi::IoBuffer buffer) override;
  metrics::GlobalCounters& counters() override { return metrics::global(); }

 private:
  struct Op final : reactor::IoOp {
    SocketConnection* self = nullptr;
    void (SocketConnection::*fn)(int) = nullptr;
    void on_complete(int result) override { (self->*fn)(result); }
  };
  enum class RxState { bhs, header_rest, data, trailer };

  void post_recv();
  // Over limits.max_session_output: stop taking PDUs (true) until on_sent resumes.
  bool pause_receive_if_over_limit();
  void on_recv(int result);
  void process();
  void try_send();
  void on_sent(int result);
  void begin_shutdown();
  void maybe_finish();
  SessionId session_id() const;

  reactor::Reactor& reactor_;
  unsigned worker_index_;
  Registry& registry_;
  int fd_;
  std::string peer_, local_;
  std::uint64_t id_;
  std::uint64_t bytes_in_ = 0, bytes_out_ = 0;
  iscsi::Connection conn_;

  // receiving
  static constexpr std::size_t kRxSize = 16384;
  static constexpr std::size_t kDirectThreshold = 2048;
  std::unique_ptr<std::uint8_t[]> rx_;
  std::size_t rx_begin_ = 0, rx_end_ = 0;
  RxState rx_state_ = RxState::bhs;
  std::array<std::uint8_t, iscsi::kBhsSize + 1024 + iscsi::kDigestSize> header_{};
  std::uint32_t header_len_ = 0, header_have_ = 0;
  iscsi::DataPlan plan_;
  std::uint32_t data_have_ = 0;
  std::array<std::uint8_t, 8> trailer_{};
  std::uint32_t trailer_have_ = 0;
  std::uint8_t drop_[4096];
  bool direct_recv_ = false;
  bool recv_inflight_ = false;
  bool rx_paused_ = false;  // the peer left too many responses unread: no receive posted
  bool processing_ = false;
  Op recv_op_, send_op_;

  // sending
  iscsi::OutPdu* tx_head_ = nullptr;  // being sent or waiting
  iscsi::OutPdu* tx_tail_ = nullptr;
  std::size_t tx_skip_ = 0;  // bytes of tx_head_ already sent
  std::array<iovec, 256> iov_{};
  msghdr msg_{};
  bool send_inflight_ = false;

  // closing
  bool closing_ = false;
  bool shut_ = false;
  bool finished_ = false;
  bool registered_ = false;
  // What this connection adds to the session gauges while it is logged in.
  std::shared_ptr<metrics::TargetCounters> target_counters_;
  bool discovery_counted_ = false;
};

}  // namespace ringtgt::net
