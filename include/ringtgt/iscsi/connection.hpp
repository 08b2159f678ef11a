// One iSCSI connection and its session (MaxConnections=1), as a sans-I/O
// state machine: the network layer feeds it received headers and data
// segments and sends what it queues; the SCSI layer executes its tasks.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ringtgt/iscsi/digest.hpp"
#include "ringtgt/iscsi/negotiation.hpp"
#include "ringtgt/iscsi/output_queue.hpp"
#include "ringtgt/iscsi/pdu.hpp"
#include "ringtgt/iscsi/session_window.hpp"
#include "ringtgt/iscsi/target_entry.hpp"
#include "ringtgt/iscsi/task_table.hpp"
#include "ringtgt/iscsi/text.hpp"
#include "ringtgt/metrics/counters.hpp"
#include "ringtgt/scsi/logical_unit.hpp"

namespace ringtgt::iscsi {

using Clock = std::chrono::steady_clock;

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

// A payload buffer the host lent the engine: size is what it holds (at least what was
// asked, rounded up as the host's pool does), and what the engine gives back.
struct IoBuffer {
  std::uint8_t* data = nullptr;
  std::size_t size = 0;
};

// What the connection needs from the daemon around it. All calls come on the
// connection's own thread.
class ConnectionHost {
 public:
  // Payload buffers for commands that move data, one call per command (none per PDU or
  // byte): the host lends its thread's pool, so the engine holds no global state.
  // data null: over the memory limit ([limits] max_buffer_memory) or out of memory.
  virtual IoBuffer acquire_buffer(std::size_t min_size) = 0;
  virtual void release_buffer(IoBuffer buffer) = 0;
  // Where the engine counts its rare events (Rejects, digest errors, refused commands):
  // the process-wide counters /metrics exports, or a test's own.
  virtual metrics::GlobalCounters& counters() = 0;
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
  bool has_output() const { return !out_.empty(); }
  void sent(OutPdu* pdu);
  // Backpressure: the bytes this connection holds for the initiator to read,
  // the buffers of its read commands (from the command until its Data-In is
  // sent) and the PDUs queued and not yet sent. Past
  // settings.max_unsent_output the network layer should take no further PDU
  // (the peer is not reading its responses), and go on once it is at half.
  // Write buffers do not count: their Data-Out must still come in.
  std::uint64_t output_bytes() const { return out_.bytes(); }
  bool should_pause_receive() const {
    return phase_ == Phase::full_feature && out_.bytes() > settings_.max_unsent_output;
  }
  bool may_resume_receive() const { return out_.bytes() <= settings_.max_unsent_output / 2; }

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
  std::uint32_t tasks_in_flight() const { return tasks_.in_use(); }
  // Digest errors on this connection (see digest.hpp for what each does).
  const DigestErrorCounts& digest_errors() const { return digest_errors_; }
  // Normal session: the target it logged in to (null before that, or discovery).
  const std::shared_ptr<const TargetEntry>& target() const { return target_; }

 private:
  enum class Phase { login, full_feature, logged_out };

  // --- receiving (connection.cpp): which concept a PDU belongs to ---
  std::optional<DataPlan> full_feature_header(Clock::time_point now);
  // The header digest of a received header, when digests are on (RFC 7143 §7.8).
  bool header_digest_ok(const std::uint8_t* header, std::uint32_t len);
  // The data digest of the segment just received; false: the PDU is discarded.
  bool data_digest_ok(const std::uint8_t* trailer, std::uint32_t trailer_len);
  void data_digest_error();
  void segment_complete();

  // --- login (connection_login.cpp) ---
  std::optional<DataPlan> login_header(const Bhs& bhs);
  void login_data_complete();
  // The ISID, ITT and version of a login request fit the login so far (the first one sets
  // them); false: the login failed.
  bool login_request_fits(const Bhs& bhs);
  bool valid_login_stages(const Bhs& bhs) const;
  bool negotiated(LoginStage csg, const std::vector<KeyValue>& keys, std::string& response);
  bool target_allows_login();
  void leave_login(std::string response, LoginStage csg);
  void send_login_response(LoginStatus status, std::string keys, bool transit, LoginStage csg,
                           LoginStage nsg, bool cont = false);
  void fail_login(LoginStatus status, LoginFailure why, const std::string& detail);
  // The final login response, once the sessions this login reinstated are gone.
  void enter_full_feature(std::string response, LoginStage csg);
  void check_login_deadline(Clock::time_point now);

  // --- session window (connection_window.cpp) ---
  // A command, task management request, text request or ping that takes a CmdSN: false
  // when it must be ignored (out of order, RFC 7143 §4.2.2.1).
  bool check_cmd_sn(const Bhs& bhs);
  std::uint32_t max_cmd_sn();
  // Commands the window may offer now: the queue depth less the tasks that hold
  // a slot of it, and never more than the task pool has free.
  std::uint32_t window_room() const;
  // Queues a NOP-In that only carries a MaxCmdSN the window reopened to.
  void announce_window();

  // --- data transfer (connection_data.cpp): commands, R2T, Data-Out, Data-In ---
  std::optional<DataPlan> command_header(const Bhs& bhs);
  // No task left for a command: TASK SET FULL.
  std::optional<DataPlan> command_without_task(const Bhs& bhs);
  // Why a command cannot run at all (a sense to end it with), checked before its buffer.
  std::optional<scsi::SenseCode> command_refusal(IscsiTask& t, const Bhs& bhs);
  // A protocol error in a command's header that closes the connection, or null.
  const char* command_violation(const IscsiTask& t, const Bhs& bhs) const;
  // The command's data buffer: false when there is no memory for it (the command is
  // answered BUSY or TASK SET FULL).
  bool take_buffer(IscsiTask& t);
  void refuse_for_memory(IscsiTask& t);
  std::optional<DataPlan> data_out_header(const Bhs& bhs);
  // What is wrong with a Data-Out for t that the connection cannot survive (null: it
  // fits an R2T or the unsolicited burst); a DataSN out of order only fails t.
  const char* data_out_sequence_error(IscsiTask& t, const Bhs& bhs);
  void scsi_data_complete();
  void data_received(IscsiTask& t);
  void send_r2ts(IscsiTask& t);
  void execute(IscsiTask& t);
  // The LUN map commands run on (target_->luns() as of luns_version_); the maps replaced
  // since stay alive while commands started on them still execute.
  void refresh_luns();
  // The current LUN map, refreshed first when the target published a new one.
  scsi::LunMap& lun_map();
  void task_complete(scsi::Task& task) override;
  void respond(IscsiTask& t);
  void send_data_in(IscsiTask& t, std::uint32_t to_send);
  void send_scsi_response(IscsiTask& t);
  void data_sn_error(IscsiTask& t, const Bhs& bhs);
  void fail_task(IscsiTask& t, scsi::SenseCode code);
  void release_task(IscsiTask& t);
  // Some WRITE waits for Data-Out and none came (nor a command) for nop_timeout.
  bool data_out_stalled(Clock::time_point now) const;

  // --- task management (connection_tmf.cpp) ---
  void task_management(const Bhs& bhs);
  void abort_task(IscsiTask& t);
  // A logical unit aborted one of this session's tasks: its task set's
  // ABORT TASK SET, CLEAR TASK SET or reset, or a PREEMPT AND ABORT of this
  // I_T nexus (SPC-4 5.13.11.2.6), from this or another session. It ends as
  // by ABORT TASK, with no status (TAS 0); true while it is in the backend.
  bool task_aborted(scsi::Task& task) override;
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

  // --- text, keep-alive, logout (connection_text.cpp) ---
  std::optional<DataPlan> nop_out_header(const Bhs& bhs);
  void nop_out_complete();
  std::optional<DataPlan> text_header(const Bhs& bhs);
  void text_complete();
  void answer_text_request(const std::vector<KeyValue>& keys);
  void send_text_piece(const Bhs& bhs);
  void logout(const Bhs& bhs);
  void maybe_finish_logout();
  void keep_alive(Clock::time_point now);
  // The data segment just received is a piece of a login or text request's keys.
  void keep_keys();
  // The keys of the request, whole: parsed, and the pieces let go.
  TextParseError take_keys(std::vector<KeyValue>& keys);
  // A target transfer tag for an R2T, a ping or a text response in pieces.
  std::uint32_t new_ttt();

  // --- output (connection_output.cpp) ---
  OutPdu* new_pdu(Opcode op, std::uint8_t flags = 0x80);
  void set_data(OutPdu& pdu, const std::uint8_t* data, std::uint32_t len);
  // Numbers (StatSN, ExpCmdSN, MaxCmdSN), pads and digests pdu, appends it to the
  // output, and tells the host.
  void queue(OutPdu* pdu, bool advance_stat_sn);
  void prepare(OutPdu* pdu, bool advance_stat_sn);
  void reject(const Bhs& bhs, RejectReason reason, const char* why);

  // Tasks beyond the queue depth, for immediate commands (outside the CmdSN window).
  static constexpr std::uint32_t kImmediateTaskReserve = 4;
  // Login and text keys across continuation PDUs, at most.
  static constexpr std::size_t kMaxTextBytes = 65536;
  // Ignored commands and refusals logged at warn per connection; the rest at debug.
  static constexpr std::uint32_t kWarningsLogged = 10;

  ConnectionHost& host_;
  ConnectionSettings settings_;
  std::string peer_;
  Phase phase_ = Phase::login;
  bool closing_ = false;
  bool shut_down_ = false;

  // What the login negotiated, and the session it made.
  SessionParams params_;
  std::shared_ptr<const TargetEntry> target_;
  std::uint64_t isid_ = 0;
  std::uint16_t tsih_ = 0;
  scsi::Nexus nexus_;

  struct Login {
    LoginNegotiator negotiator;
    std::uint32_t itt = 0;
    LoginStage stage = LoginStage::security;
    bool first_pdu = true;
    bool target_checked = false;
    bool held = false;  // the final login response waits for reinstated sessions
    Clock::time_point deadline;
  } login_;

  SessionWindow window_;
  std::uint32_t ignored_commands_ = 0;  // outside the CmdSN window

  // The LUN maps: see refresh_luns.
  struct Luns {
    std::shared_ptr<scsi::LunMap> current;
    std::uint64_t version = 0;
    std::vector<std::shared_ptr<scsi::LunMap>> retired;
    std::uint32_t tasks_on_retired = 0;
  } luns_;

  // Digests apply from the first PDU after the final login response.
  bool digest_header_ = false, digest_data_ = false;
  DigestErrorCounts digest_errors_;

  // The PDU being received.
  struct Receiving {
    Bhs bhs;
    std::vector<std::uint8_t> segment;  // login/text/nop data
    IscsiTask* task = nullptr;          // Data-Out or immediate data target
    bool ignored = false;               // outside the CmdSN window: no action
    bool dropped = false;               // its data segment is not kept
    std::uint32_t offset = 0;
  } rx_;

  struct Text {
    std::string in;   // login/text keys across continuation PDUs
    std::string out;  // a long text response being sent in pieces
    std::size_t out_pos = 0;
    std::uint32_t ttt = 0;
  } text_;

  struct Logout {
    bool pending = false;
    std::uint32_t itt = 0;
    std::uint8_t response = 0;
  } logout_;

  TaskTable tasks_;
  std::uint32_t next_ttt_ = 1;
  std::uint32_t busy_commands_ = 0;       // answered BUSY/TASK SET FULL: no buffer memory
  Clock::time_point last_data_progress_;  // the last SCSI command or Data-Out in
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

  OutputQueue out_;

  struct KeepAlive {
    Clock::time_point last_rx;
    std::optional<Clock::time_point> ping_sent;
    std::uint32_t ping_ttt = 0;
  } keep_alive_;
};

}  // namespace ringtgt::iscsi
