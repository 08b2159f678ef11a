// One iSCSI connection and its session (MaxConnections=1), as a sans-I/O
// state machine: the network layer feeds it received headers and data
// segments and sends what it queues; the SCSI layer executes its tasks.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ringtgt/iscsi/digest.hpp"
#include "ringtgt/iscsi/negotiation.hpp"
#include "ringtgt/iscsi/pdu.hpp"
#include "ringtgt/iscsi/text.hpp"
#include "ringtgt/scsi/logical_unit.hpp"

namespace ringtgt::iscsi {

using Clock = std::chrono::steady_clock;

// A target as the protocol engine sees it. Its name and alias are fixed; its initiator
// list and LUN map can be changed live by the control plane while sessions run: a changed
// LUN map is published as a new map (copy, change, set_luns) and each connection picks it
// up before its next command, keeping the map its in-flight commands run on alive until
// they finish. Readers on the I/O path only load an atomic version number.
class TargetEntry {
 public:
  std::string name;
  std::string alias;

  bool allows(std::string_view initiator) const;
  std::vector<std::string> allowed_initiators() const;  // empty: everyone
  void set_allowed_initiators(std::vector<std::string> initiators);

  std::shared_ptr<scsi::LunMap> luns() const;
  // Publishes map; it must not be changed afterwards.
  void set_luns(std::shared_ptr<scsi::LunMap> map);
  // Bumped by every set_luns.
  std::uint64_t luns_version() const { return luns_version_.load(std::memory_order_acquire); }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> allowed_initiators_;
  std::shared_ptr<scsi::LunMap> luns_;
  std::atomic<std::uint64_t> luns_version_{0};
};

// Why a login was refused, for logs and (later) metrics.
enum class LoginFailure {
  none,
  bad_request,  // malformed PDU or keys, protocol violation
  unknown_target,
  not_authorized,  // initiator not on the target's list
  auth_failed,
  unsupported,    // version, session type, adding a connection to a session
  limit_reached,  // [limits] max_sessions / max_sessions_per_initiator
  negotiation,    // a key the initiator insists on has no value the target accepts
};
const char* to_string(LoginFailure f);

// What the connection needs from the daemon around it. All calls come on the
// connection's own thread.
class ConnectionHost {
 public:
  virtual std::shared_ptr<const TargetEntry> find_target(std::string_view name) = 0;
  // Appends "TargetName=…\0TargetAddress=…\0" for each target the initiator
  // may log in to ("All"), or just the named one.
  virtual void append_send_targets(std::string_view initiator, std::string_view which,
                                   std::string& out) = 0;
  // The session passed login: returns its TSIH. Reinstatement of an older
  // session with the same initiator name and ISID happens here. 0: refused
  // (a session limit is reached; the host logs which): the login fails with
  // status 0x0302, out of resources.
  virtual std::uint16_t session_started(const SessionParams& params, std::uint64_t isid) = 0;
  // Called once session_started gave a TSIH: ready runs on this connection's thread once
  // every session this login reinstated has no command left in the SCSI layer (RFC 7143
  // §6.3.5), at once when it reinstated none; never after this connection is gone.
  // The final login response waits for it.
  virtual void after_reinstated_session(std::function<void()> ready) { ready(); }
  virtual void login_failed(LoginFailure why, const std::string& initiator,
                            const std::string& target, const std::string& detail) = 0;
  // The CHAP policy of a login to target (or of a discovery session), asked once the
  // first login request is in; nullopt: no CHAP. Holds secrets: never log it.
  virtual std::optional<AuthPolicy> auth_policy(SessionType type, std::string_view target) {
    return std::nullopt;
  }
  // Output was queued: the network layer should send.
  virtual void output_ready() = 0;

 protected:
  ~ConnectionHost() = default;
};

// A PDU waiting to be sent: header (+digest), then a data slice that points
// into a task's buffer or into owned bytes, then padding (+digest).
struct OutPdu {
  Bhs bhs;
  std::uint8_t header_digest[kDigestSize]{};
  std::uint8_t header_len = kBhsSize;  // with the digest when digests are on
  const std::uint8_t* data = nullptr;
  std::uint32_t data_len = 0;
  std::uint8_t trailer[3 + kDigestSize]{};  // padding then data digest
  std::uint8_t trailer_len = 0;
  std::vector<std::uint8_t> owned;   // text, sense, ping data
  struct IscsiTask* task = nullptr;  // released when its last PDU is sent
  OutPdu* next = nullptr;
};

// Where the network layer must put the data segment it is about to receive.
struct DataPlan {
  std::uint8_t* dest = nullptr;   // null with len > 0: receive into scratch and drop
  std::uint32_t len = 0;          // data segment length (without padding)
  std::uint32_t trailer_len = 0;  // padding + data digest bytes that follow
};

struct ConnectionSettings {
  TargetLimits limits;
  std::string target_alias_default;
  std::uint16_t portal_group_tag = 1;
  std::uint32_t queue_depth = 128;
  std::chrono::seconds nop_interval{15};
  std::chrono::seconds nop_timeout{30};
  std::chrono::seconds login_timeout{15};
  std::uint32_t max_transfer_length = 32u << 20;  // largest EDTL accepted
  // Output held for the peer past which the network layer stops taking PDUs
  // ([limits] max_session_output; see Connection::output_bytes).
  std::uint64_t max_unsent_output = 16ull << 20;
};

class Connection final : private scsi::TaskOwner {
 public:
  Connection(ConnectionHost& host, ConnectionSettings settings, std::string peer,
             Clock::time_point now);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // --- receiving ---
  // Bytes of header to read after the 48-byte BHS (AHS + header digest).
  std::uint32_t header_extra(const std::uint8_t* bhs) const;
  // The whole header is in: validates it and says where its data goes.
  // nullopt: the connection must be closed (a Reject may be queued first).
  std::optional<DataPlan> on_header(const std::uint8_t* header, std::uint32_t len,
                                    Clock::time_point now);
  // The data segment and its trailer (padding + digest) are in.
  void on_data(const std::uint8_t* trailer, std::uint32_t trailer_len);

  // --- sending ---
  // Takes every PDU queued so far (a linked list in send order); give each
  // back with sent() once the socket has it.
  OutPdu* take_output();
  bool has_output() const { return out_head_ != nullptr; }
  void sent(OutPdu* pdu);
  // Backpressure: the bytes this connection holds for the initiator to read,
  // the buffers of its read commands (from the command until its Data-In is
  // sent) and the PDUs queued and not yet sent. Past
  // settings.max_unsent_output the network layer should take no further PDU
  // (the peer is not reading its responses), and go on once it is at half.
  // Write buffers do not count: their Data-Out must still come in.
  std::uint64_t output_bytes() const { return output_bytes_; }
  bool should_pause_receive() const {
    return phase_ == Phase::full_feature && output_bytes_ > settings_.max_unsent_output;
  }
  bool may_resume_receive() const { return output_bytes_ <= settings_.max_unsent_output / 2; }

  // --- time and teardown ---
  void on_tick(Clock::time_point now);
  // The socket is gone: abandon pending work. Tasks still running in the
  // SCSI layer complete later; the connection may be destroyed only once
  // idle() is true.
  void shut_down();
  bool idle() const;
  // The connection wants to be closed once its output is sent.
  bool closing() const { return closing_; }
  // Another login reinstated this session, or the operator closed it.
  void request_close(const char* why);
  bool full_feature() const { return phase_ == Phase::full_feature; }
  const SessionParams& params() const { return params_; }
  std::uint64_t isid() const { return isid_; }
  std::uint16_t tsih() const { return tsih_; }
  const std::string& peer() const { return peer_; }
  const std::string& target_name() const { return params_.target_name; }
  const std::string& initiator_name() const { return params_.initiator_name; }
  std::uint32_t tasks_in_flight() const { return active_tasks_; }
  // Digest errors on this connection (see digest.hpp for what each does).
  const DigestErrorCounts& digest_errors() const { return digest_errors_; }
  // Normal session: the target it logged in to (null before that, or discovery).
  const std::shared_ptr<const TargetEntry>& target() const { return target_; }

 private:
  enum class Phase { login, full_feature, logged_out };
  struct Pending;

  // login
  std::optional<DataPlan> login_header(const Bhs& bhs);
  void login_data_complete();
  void send_login_response(LoginStatus status, std::string keys, bool transit, LoginStage csg,
                           LoginStage nsg, bool cont = false);
  void fail_login(LoginStatus status, LoginFailure why, const std::string& detail);
  // Some WRITE waits for Data-Out and none came (nor a command) for nop_timeout.
  bool data_out_stalled(Clock::time_point now) const;
  // ExpCmdSN moves past sn+1 and any CmdSN counted as received after it.
  void advance_exp_cmd_sn();
  // A CmdSN in the window whose command will never come (RFC 7143 §11.5.1 b).
  void count_as_received(std::uint32_t sn);
  // The final login response, once the sessions this login reinstated are gone.
  void enter_full_feature(std::string response, LoginStage csg);

  // full feature phase
  std::optional<DataPlan> command_header(const Bhs& bhs);
  std::optional<DataPlan> data_out_header(const Bhs& bhs);
  std::optional<DataPlan> nop_out_header(const Bhs& bhs);
  std::optional<DataPlan> text_header(const Bhs& bhs);
  void logout(const Bhs& bhs);
  void maybe_finish_logout();
  void task_management(const Bhs& bhs);
  void text_complete();
  void nop_out_complete();
  bool check_cmd_sn(const Bhs& bhs);
  void data_received(IscsiTask& t);
  void send_r2ts(IscsiTask& t);
  void execute(IscsiTask& t);
  void task_complete(scsi::Task& task) override;
  // A logical unit aborted one of this session's tasks: its task set's
  // ABORT TASK SET, CLEAR TASK SET or reset, or a PREEMPT AND ABORT of this
  // I_T nexus (SPC-4 5.13.11.2.6), from this or another session. It ends as
  // by ABORT TASK, with no status (TAS 0); true while it is in the backend.
  bool task_aborted(scsi::Task& task) override;
  void respond(IscsiTask& t);
  void send_scsi_response(IscsiTask& t, bool with_data_in);
  void reject(const Bhs& bhs, RejectReason reason, const char* why);
  void data_sn_error(IscsiTask& t, const Bhs& bhs);
  void fail_task(IscsiTask& t, scsi::SenseCode code);
  void abort_task(IscsiTask& t);
  // Aborts this session's tasks for lun (every LUN: nullopt) but keep: how many, and those
  // still executing in the SCSI layer, which the abort has to wait for.
  struct Aborted {
    std::size_t count = 0;
    std::vector<IscsiTask*> executing;
  };
  Aborted abort_tasks_of(std::optional<std::uint64_t> lun, const scsi::Task* keep);
  // Answers a task management request once the tasks it aborted here (executing) and
  // those the task sets of lus abort (every nexus's that `aborted` accepts) are out of the
  // SCSI layer: SAM-5 7.1: the response says the tasks are gone, so an aborted WRITE
  // cannot land after it.
  void answer_tmf_when_gone(std::uint32_t itt, TmfResponse response,
                            std::vector<IscsiTask*> executing,
                            std::vector<std::shared_ptr<scsi::LogicalUnit>> lus,
                            const std::function<bool(const scsi::Task&)>& aborted);
  void send_tmf_response(std::uint32_t itt, TmfResponse response);
  // An aborted task came back from the SCSI layer: the aborts waiting for
  // it may be over.
  void abort_wait_over(IscsiTask& t);

  // plumbing
  IscsiTask* acquire_task();
  void release_task(IscsiTask& t);
  IscsiTask* find_task(std::uint32_t itt);
  OutPdu* new_pdu(Opcode op, std::uint8_t flags = 0x80);
  void set_data(OutPdu& pdu, const std::uint8_t* data, std::uint32_t len);
  // Numbers (StatSN, ExpCmdSN, MaxCmdSN), pads and digests pdu, appends it to the
  // output, and tells the host.
  void queue(OutPdu* pdu, bool advance_stat_sn);
  void prepare(OutPdu* pdu, bool advance_stat_sn);
  void append(OutPdu* pdu);
  std::uint32_t max_cmd_sn();
  // Commands the window may offer now: the queue depth less the tasks that hold
  // a slot of it, and never more than the task pool has free.
  std::uint32_t window_room() const;
  // Queues a NOP-In that only carries a MaxCmdSN the window reopened to.
  void announce_window();
  // Tasks beyond the queue depth, for immediate commands (outside the CmdSN window).
  static constexpr std::uint32_t kImmediateTaskReserve = 4;

  ConnectionHost& host_;
  ConnectionSettings settings_;
  std::string peer_;
  Phase phase_ = Phase::login;
  bool closing_ = false;
  bool shut_down_ = false;
  bool login_held_ = false;  // the final login response waits for reinstated sessions

  // login state
  LoginNegotiator negotiator_;
  SessionParams params_;
  std::shared_ptr<const TargetEntry> target_;
  // The LUN map commands run on (target_->luns() as of luns_version_), and the maps
  // replaced since that commands still executing were started on.
  void refresh_luns();
  std::shared_ptr<scsi::LunMap> luns_;
  std::uint64_t luns_version_ = 0;
  std::vector<std::shared_ptr<scsi::LunMap>> retired_luns_;
  std::uint32_t tasks_on_retired_luns_ = 0;
  std::uint64_t isid_ = 0;
  std::uint16_t tsih_ = 0;
  std::uint32_t itt_login_ = 0;
  LoginStage login_stage_ = LoginStage::security;
  bool first_login_pdu_ = true;
  bool target_checked_ = false;
  Clock::time_point login_deadline_;

  // sequence numbers
  std::uint32_t stat_sn_ = 0;
  std::uint32_t exp_cmd_sn_ = 0;
  Clock::time_point last_data_progress_;  // the last SCSI command or Data-Out in
  // CmdSNs ahead of exp_cmd_sn_ that count as received though no command
  // came with them (ABORT TASK of a command never sent); at most queue_depth.
  std::vector<std::uint32_t> abandoned_cmd_sns_;
  std::uint32_t max_cmd_sn_sent_ = 0;  // the largest MaxCmdSN advertised
  bool window_advertised_ = false;
  bool window_may_reopen_ = false;  // a task came back while the window was closed
  std::uint32_t responding_tasks_ = 0;
  std::uint32_t ignored_commands_ = 0;  // outside the CmdSN window
  std::uint32_t busy_commands_ = 0;     // answered BUSY/TASK SET FULL: no buffer memory
  bool digest_header_ = false, digest_data_ = false;
  DigestErrorCounts digest_errors_;

  // the PDU being received
  Bhs cur_;
  std::vector<std::uint8_t> segment_;  // login/text/nop data
  IscsiTask* cur_task_ = nullptr;      // Data-Out or immediate data target
  bool cur_ignored_ = false;           // outside the CmdSN window: no action
  bool cur_dropped_ = false;           // its data segment is not kept
  std::uint32_t cur_offset_ = 0;
  std::string text_in_;   // login/text keys across continuation PDUs
  std::string text_out_;  // a long text response being sent in pieces
  std::size_t text_out_pos_ = 0;
  std::uint32_t text_ttt_ = 0;
  bool logout_pending_ = false;
  std::uint32_t logout_itt_ = 0;
  std::uint8_t logout_response_ = 0;

  // tasks
  std::vector<std::unique_ptr<IscsiTask>> task_store_;
  std::vector<IscsiTask*> free_tasks_;
  IscsiTask* active_list_ = nullptr;
  std::uint32_t active_tasks_ = 0;
  std::uint32_t next_ttt_ = 1;
  std::array<std::uint32_t, 16> aborted_itts_;
  std::uint32_t aborted_next_ = 0;
  // Aborts (task management, PREEMPT AND ABORT) waiting for executing tasks they aborted
  // to come back.
  struct AbortWait {
    std::vector<IscsiTask*> tasks;
    std::function<void()> done;
  };
  std::vector<AbortWait> abort_waits_;
  // What an answer coming back from task sets on other reactors checks
  // first: this connection may be gone by then.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  scsi::Nexus nexus_;

  // output
  OutPdu* out_head_ = nullptr;
  OutPdu* out_tail_ = nullptr;
  std::vector<std::unique_ptr<OutPdu>> pdu_store_;
  std::vector<OutPdu*> free_pdus_;
  std::uint32_t pdus_unsent_ = 0;
  std::uint64_t output_bytes_ = 0;  // see output_bytes()

  // keep-alive
  Clock::time_point last_rx_;
  std::optional<Clock::time_point> ping_sent_;
  std::uint32_t ping_ttt_ = 0;
};

}  // namespace ringtgt::iscsi
