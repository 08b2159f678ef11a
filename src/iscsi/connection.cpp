#include "ringtgt/iscsi/connection.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "ringtgt/iscsi/digest.hpp"
#include "ringtgt/metrics/counters.hpp"
#include "ringtgt/reactor/buffer_pool.hpp"
#include "ringtgt/scsi/lun_addressing.hpp"

namespace ringtgt::iscsi {

// The iSCSI side of a SCSI task: its tags, sequence numbers and data transfer.
struct IscsiTask final : scsi::Task {
  enum class State { idle, receiving, executing, responding };
  struct R2tSlot {
    std::uint32_t ttt = 0, offset = 0, len = 0, received = 0;
    std::uint32_t next_data_sn = 0;  // DataSN restarts at 0 in each R2T's sequence
    bool busy = false;
  };

  State state = State::idle;
  IscsiTask* prev = nullptr;
  IscsiTask* next = nullptr;
  std::uint32_t itt = 0;
  std::uint32_t cmd_sn = 0;
  std::uint32_t edtl = 0;
  bool reading = false, writing = false;
  bool aborted = false;
  // Some of its Data-Out was lost or out of order (a DataSN error or a data
  // digest error, RFC 7143 §7.8 and §7.12): once all its data is in, it ends
  // with CHECK CONDITION instead of running.
  bool data_failed = false;
  std::uint8_t* buf = nullptr;
  std::size_t buf_size = 0;
  std::uint32_t received = 0;  // Data-Out bytes in
  bool unsolicited_done = false;
  std::uint32_t r2t_next_offset = 0;
  std::uint32_t r2t_outstanding = 0;
  std::uint32_t r2t_sn = 0;
  std::uint32_t data_sn = 0;
  std::uint32_t unsolicited_data_sn = 0;
  std::uint32_t pdus_pending = 0;
  bool on_retired_luns = false;  // started on a LUN map replaced since
  std::vector<R2tSlot> r2ts;
};

namespace {

constexpr std::uint32_t kLoginSegmentLimit = 8192;

// What a queued PDU holds beyond its task's buffer (counted with the task).
std::uint64_t own_bytes(const OutPdu& pdu) {
  return std::uint64_t{pdu.header_len} + pdu.trailer_len + (pdu.task ? 0 : pdu.data_len);
}
constexpr std::size_t kMaxTextBytes = 65536;
constexpr std::uint32_t kIgnoredCommandsLogged = 10;  // per connection, at warn

// The LUN codec is scsi's (lun_addressing.hpp); these adapt it to the BHS field.
// A field scsi cannot decode names no LUN we have.
constexpr std::uint64_t kNoLun = ~0ull;

std::uint64_t lun_of(const Bhs& bhs) {
  return scsi::decode_lun(&bhs.bytes[8]).value_or(kNoLun);
}

// The LUN field of a target PDU for lun; zero for kNoLun (a command to no LUN
// we have; Data-In never sets the A bit, so the field is reserved there).
std::uint64_t lun_field_of(std::uint64_t lun) {
  const auto wire = scsi::encode_lun(lun);
  return wire ? get_be64(wire->data()) : 0;
}

}  // namespace

const char* to_string(LoginFailure f) {
  switch (f) {
    case LoginFailure::none:
      return "none";
    case LoginFailure::bad_request:
      return "bad_request";
    case LoginFailure::unknown_target:
      return "unknown_target";
    case LoginFailure::not_authorized:
      return "not_authorized";
    case LoginFailure::auth_failed:
      return "auth_failed";
    case LoginFailure::unsupported:
      return "unsupported";
    case LoginFailure::limit_reached:
      return "limit_reached";
    case LoginFailure::negotiation:
      return "negotiation";
  }
  return "unknown";
}

bool TargetEntry::allows(std::string_view initiator) const {
  std::lock_guard lock(mu_);
  if (allowed_initiators_.empty()) return true;
  return std::find(allowed_initiators_.begin(), allowed_initiators_.end(), initiator) !=
         allowed_initiators_.end();
}

std::vector<std::string> TargetEntry::allowed_initiators() const {
  std::lock_guard lock(mu_);
  return allowed_initiators_;
}

void TargetEntry::set_allowed_initiators(std::vector<std::string> initiators) {
  std::lock_guard lock(mu_);
  allowed_initiators_ = std::move(initiators);
}

std::shared_ptr<scsi::LunMap> TargetEntry::luns() const {
  std::lock_guard lock(mu_);
  return luns_;
}

void TargetEntry::set_luns(std::shared_ptr<scsi::LunMap> map) {
  std::lock_guard lock(mu_);
  luns_ = std::move(map);
  luns_version_.fetch_add(1, std::memory_order_release);
}

void Connection::refresh_luns() {
  // Commands executing now keep running on the maps they started on, and
  // those in a logical unit's task set run on that LU (LunMap::execute).
  for (IscsiTask* t = active_list_; t; t = t->next) {
    if ((t->state == IscsiTask::State::executing || t->task_set_lu) && !t->on_retired_luns) {
      t->on_retired_luns = true;
      ++tasks_on_retired_luns_;
    }
  }
  if (luns_ && tasks_on_retired_luns_ > 0) retired_luns_.push_back(std::move(luns_));
  luns_version_ = target_->luns_version();
  luns_ = target_->luns();
}

Connection::Connection(ConnectionHost& host, ConnectionSettings settings, std::string peer,
                       Clock::time_point now)
    : host_(host),
      settings_(std::move(settings)),
      peer_(std::move(peer)),
      negotiator_(settings_.limits, settings_.target_alias_default, settings_.portal_group_tag),
      login_deadline_(now + settings_.login_timeout),
      last_rx_(now) {
  aborted_itts_.fill(kReservedTag);
  negotiator_.set_auth_lookup([this](SessionType type, std::string_view target) {
    return host_.auth_policy(type, target);
  });
}

Connection::~Connection() {
  for (auto& t : task_store_) {
    if (t->buf) reactor::BufferPool::local().release(t->buf, t->buf_size);
  }
  // Only an idle connection is destroyed, so no abort is still waiting; if
  // one were, its PREEMPT AND ABORT must not wait forever.
  for (auto& w : abort_waits_) w.done();
}

// ---------------------------------------------------------------- receiving

std::uint32_t Connection::header_extra(const std::uint8_t* bhs) const {
  return bhs[4] * 4u + (digest_header_ ? kDigestSize : 0);
}

std::optional<DataPlan> Connection::on_header(const std::uint8_t* header, std::uint32_t len,
                                              Clock::time_point now) {
  cur_ = Bhs(header);
  last_rx_ = now;
  cur_task_ = nullptr;
  cur_ignored_ = false;
  cur_dropped_ = false;
  if (digest_header_) {
    Crc32c crc;
    crc.update(header, len - kDigestSize);
    if (crc.value() != load_digest(header + len - kDigestSize)) {
      // Its length fields cannot be trusted, so the next PDU cannot be found:
      // the connection goes (RFC 7143 §7.8; there are no markers).
      ++digest_errors_.header;
      count_digest_error(true);
      spdlog::warn("{} ({}): header digest error (opcode byte {:#x}); closing the connection",
                   peer_, params_.initiator_name, header[0]);
      closing_ = true;
      return std::nullopt;
    }
  }
  if (phase_ == Phase::login) return login_header(cur_);
  if (phase_ == Phase::logged_out) return std::nullopt;

  std::uint32_t dsl = cur_.data_segment_length();
  if (dsl > params_.target_max_recv_data_segment_length) {
    reject(cur_, RejectReason::protocol_error, "data segment longer than MaxRecvDataSegmentLength");
    closing_ = true;
    return std::nullopt;
  }
  bool discovery = params_.session_type == SessionType::discovery;
  std::optional<DataPlan> plan;
  switch (cur_.opcode()) {
    case Opcode::scsi_command:
      if (discovery) {
        reject(cur_, RejectReason::protocol_error, "SCSI command in a discovery session");
        closing_ = true;
        return std::nullopt;
      }
      last_data_progress_ = now;
      plan = command_header(cur_);
      break;
    case Opcode::data_out:
      last_data_progress_ = now;
      plan = data_out_header(cur_);
      break;
    case Opcode::nop_out:
      plan = nop_out_header(cur_);
      break;
    case Opcode::text_request:
      plan = text_header(cur_);
      break;
    case Opcode::logout_request:
      plan = DataPlan{};
      break;
    case Opcode::task_mgmt_request:
      if (discovery) {
        reject(cur_, RejectReason::protocol_error, "task management in a discovery session");
        closing_ = true;
        return std::nullopt;
      }
      plan = DataPlan{};
      break;
    case Opcode::snack_request:
      reject(cur_, RejectReason::command_not_supported, "SNACK (ErrorRecoveryLevel is 0)");
      plan = DataPlan{};
      break;
    case Opcode::login_request:
      reject(cur_, RejectReason::protocol_error, "login request in full feature phase");
      closing_ = true;
      return std::nullopt;
    default:
      reject(cur_, RejectReason::protocol_error, "unknown opcode");
      closing_ = true;
      return std::nullopt;
  }
  if (!plan) return plan;
  cur_dropped_ = plan->dest == nullptr;  // the segment is read into scratch and dropped
  plan->len = dsl;
  plan->trailer_len = padded(dsl) - dsl + (digest_data_ && dsl > 0 ? kDigestSize : 0);
  return plan;
}

void Connection::on_data(const std::uint8_t* trailer, std::uint32_t trailer_len) {
  std::uint32_t dsl = cur_.data_segment_length();
  if (cur_ignored_ && phase_ != Phase::login) return;  // out of window, rejected or dropped
  if (digest_data_ && dsl > 0 && phase_ != Phase::login && !cur_dropped_) {
    const std::uint8_t* data = nullptr;
    if (cur_task_)
      data = cur_task_->buf + cur_offset_;
    else
      data = segment_.data();
    if (data != nullptr) {
      Crc32c crc;
      crc.update(data, dsl);
      crc.update(trailer, padded(dsl) - dsl);
      if (crc.value() != load_digest(trailer + trailer_len - kDigestSize)) {
        // RFC 7143 §7.8: Reject with "data digest error" and discard the PDU.
        // A Data-Out: its task ends with CHECK CONDITION, PROTOCOL SERVICE
        // CRC ERROR once the rest of its data is in (option b; a recovery
        // R2T would need ErrorRecoveryLevel 1), and the connection stays.
        // Immediate data in a SCSI Command: the command itself is lost, a
        // hole in the CmdSN order that only ErrorRecoveryLevel 1 could fill,
        // so the connection goes and the initiator recovers the session. A
        // non-data PDU (NOP-Out, Text) needs nothing more.
        ++digest_errors_.data;
        count_digest_error(false);
        const bool data_out = cur_task_ != nullptr && cur_.opcode() == Opcode::data_out;
        const bool command = cur_task_ != nullptr && !data_out;
        spdlog::warn("{} ({}): data digest error on opcode {:#x} ITT {:#x}; {}", peer_,
                     params_.initiator_name, static_cast<unsigned>(cur_.opcode()), cur_.itt(),
                     data_out  ? "rejected; the command will end with CHECK CONDITION"
                     : command ? "rejected, closing the connection (ErrorRecoveryLevel 0)"
                               : "rejected and discarded");
        reject(cur_, RejectReason::data_digest_error, "data digest error");
        if (data_out) {
          cur_task_->data_failed = true;  // counted below, so the sequence can end
        } else {
          if (command) {
            closing_ = true;
          } else if (cur_.opcode() == Opcode::text_request) {
            text_in_.clear();  // the pieces before it are no use without it
          }
          cur_task_ = nullptr;
          return;
        }
      }
    }
  }
  if (phase_ == Phase::login) return login_data_complete();
  if (phase_ == Phase::logged_out) return;
  switch (cur_.opcode()) {
    case Opcode::scsi_command:
    case Opcode::data_out:
      if (cur_task_) {
        IscsiTask& t = *cur_task_;
        cur_task_ = nullptr;
        if (t.aborted) {
          // Aborted while this segment was arriving into its buffer.
          release_task(t);
          break;
        }
        t.received += dsl;
        if (cur_.opcode() == Opcode::data_out && cur_.ttt() != kReservedTag) {
          for (auto& slot : t.r2ts) {
            if (slot.busy && slot.ttt == cur_.ttt()) {
              slot.received += dsl;
              if (slot.received >= slot.len || cur_.final_bit()) {
                if (slot.received < slot.len) {
                  reject(cur_, RejectReason::protocol_error, "Data-Out sequence ended early");
                  closing_ = true;
                  return;
                }
                slot.busy = false;
                --t.r2t_outstanding;
              }
            }
          }
        } else if (cur_.opcode() == Opcode::data_out && cur_.final_bit()) {
          t.unsolicited_done = true;
        }
        data_received(t);
      }
      break;
    case Opcode::nop_out:
      nop_out_complete();
      break;
    case Opcode::text_request:
      text_complete();
      break;
    case Opcode::logout_request:
      logout(cur_);
      break;
    case Opcode::task_mgmt_request:
      task_management(cur_);
      break;
    default:
      break;
  }
}

// ---------------------------------------------------------------- login

std::optional<DataPlan> Connection::login_header(const Bhs& bhs) {
  if (bhs.opcode() != Opcode::login_request) {
    spdlog::warn("{}: opcode {:#x} before login completed; closing", peer_,
                 static_cast<unsigned>(bhs.opcode()));
    host_.login_failed(LoginFailure::bad_request, params_.initiator_name, params_.target_name,
                       "PDU other than Login Request during login");
    return std::nullopt;
  }
  std::uint32_t dsl = bhs.data_segment_length();
  if (dsl > kLoginSegmentLimit || text_in_.size() + dsl > kMaxTextBytes ||
      bhs.total_ahs_length() != 0) {
    fail_login(LoginStatus::initiator_error, LoginFailure::bad_request,
               "login data segment too long");
    return std::nullopt;
  }
  segment_.resize(dsl);
  return DataPlan{segment_.data(), dsl, padded(dsl) - dsl};
}

void Connection::fail_login(LoginStatus status, LoginFailure why, const std::string& detail) {
  host_.login_failed(why, params_.initiator_name, params_.target_name, detail);
  send_login_response(status, {}, false, cur_.login_csg(), cur_.login_nsg());
  closing_ = true;
  phase_ = Phase::logged_out;
}

void Connection::send_login_response(LoginStatus status, std::string keys, bool transit,
                                     LoginStage csg, LoginStage nsg, bool cont) {
  std::uint8_t flags = (transit ? 0x80 : 0) | (cont ? 0x40 : 0) |
                       static_cast<std::uint8_t>(static_cast<unsigned>(csg) << 2) |
                       (transit ? static_cast<std::uint8_t>(nsg) : 0);
  OutPdu* pdu = new_pdu(Opcode::login_response, flags);
  pdu->bhs.bytes[2] = 0;  // version max
  pdu->bhs.bytes[3] = 0;  // version active
  pdu->bhs.set_isid(isid_);
  pdu->bhs.set_tsih(transit && nsg == LoginStage::full_feature ? tsih_ : 0);
  pdu->bhs.set_itt(itt_login_);
  pdu->bhs.set_login_status(status);
  pdu->owned.assign(keys.begin(), keys.end());
  set_data(*pdu, pdu->owned.data(), static_cast<std::uint32_t>(pdu->owned.size()));
  queue(pdu, true);
}

void Connection::login_data_complete() {
  const Bhs& bhs = cur_;
  if (first_login_pdu_) {
    first_login_pdu_ = false;
    isid_ = bhs.isid();
    itt_login_ = bhs.itt();
    stat_sn_ = bhs.exp_stat_sn();
    exp_cmd_sn_ = bhs.cmd_sn();
    login_stage_ = bhs.login_csg();
    if (bhs.version_min() > 0) {
      fail_login(LoginStatus::unsupported_version, LoginFailure::unsupported,
                 "iSCSI version " + std::to_string(bhs.version_min()) + " not supported");
      return;
    }
    if (bhs.tsih() != 0) {
      // Adding a connection to a session (MaxConnections=1) or resuming one
      // we do not know: the initiator starts over with TSIH 0.
      fail_login(LoginStatus::session_does_not_exist, LoginFailure::unsupported,
                 "login with TSIH " + std::to_string(bhs.tsih()) + " for no open session");
      return;
    }
  } else if (bhs.isid() != isid_ || bhs.itt() != itt_login_) {
    fail_login(LoginStatus::initiator_error, LoginFailure::bad_request,
               "ISID or ITT changed during login");
    return;
  }
  LoginStage csg = bhs.login_csg();
  LoginStage nsg = bhs.login_nsg();
  bool transit = bhs.login_transit();
  if (csg != login_stage_ || csg == LoginStage::full_feature || static_cast<unsigned>(csg) == 2 ||
      (transit && (static_cast<unsigned>(nsg) <= static_cast<unsigned>(csg) ||
                   static_cast<unsigned>(nsg) == 2)) ||
      (transit && bhs.login_continue())) {
    fail_login(LoginStatus::initiator_error, LoginFailure::bad_request, "invalid login stages");
    return;
  }
  text_in_.append(reinterpret_cast<const char*>(segment_.data()), segment_.size());
  if (bhs.login_continue()) {
    // More keys follow: acknowledge with an empty response in the same stage.
    send_login_response(LoginStatus::success, {}, false, csg, csg);
    return;
  }
  std::vector<KeyValue> keys;
  TextParseError perr =
      parse_text(reinterpret_cast<const std::uint8_t*>(text_in_.data()), text_in_.size(), keys);
  text_in_.clear();
  if (perr != TextParseError::none) {
    fail_login(LoginStatus::initiator_error, LoginFailure::bad_request,
               std::string("login keys: ") + to_string(perr));
    return;
  }
  std::string response;
  NegotiationError nerr = negotiator_.negotiate(static_cast<std::uint8_t>(csg), keys, response);
  params_ = negotiator_.params();
  switch (nerr) {
    case NegotiationError::none:
      break;
    case NegotiationError::missing_parameter:
      fail_login(LoginStatus::missing_parameter, LoginFailure::bad_request,
                 negotiator_.error_detail());
      return;
    case NegotiationError::auth_failed:
      fail_login(LoginStatus::authentication_failed, LoginFailure::auth_failed,
                 negotiator_.error_detail());
      return;
    case NegotiationError::no_acceptable_value:
      fail_login(LoginStatus::initiator_error, LoginFailure::negotiation,
                 negotiator_.error_detail());
      return;
    default:
      fail_login(LoginStatus::initiator_error, LoginFailure::bad_request,
                 negotiator_.error_detail());
      return;
  }
  if (!target_checked_ && params_.session_type == SessionType::normal) {
    target_checked_ = true;
    target_ = host_.find_target(params_.target_name);
    if (!target_) {
      fail_login(LoginStatus::target_not_found, LoginFailure::unknown_target,
                 "no target named " + params_.target_name);
      return;
    }
    if (!target_->allows(params_.initiator_name)) {
      fail_login(LoginStatus::authorization_failure, LoginFailure::not_authorized,
                 "initiator not allowed on this target");
      return;
    }
  }
  if (transit && csg == LoginStage::security && negotiator_.auth_pending()) {
    transit = false;  // CHAP still under way: answer T=0 and stay in the security stage
  }
  if (transit && csg == LoginStage::security && !negotiator_.authenticated()) {
    fail_login(LoginStatus::authentication_failed, LoginFailure::auth_failed,
               "left the security stage without authenticating");
    return;
  }
  if (transit) {
    login_stage_ = nsg;
    if (nsg == LoginStage::full_feature) {
      if (std::string why = negotiator_.unmet_digest_requirement(); !why.empty()) {
        fail_login(LoginStatus::initiator_error, LoginFailure::negotiation, why);
        return;
      }
      negotiator_.finish(response);
      params_ = negotiator_.params();
      tsih_ = host_.session_started(params_, isid_);
      if (tsih_ == 0) {
        fail_login(LoginStatus::out_of_resources, LoginFailure::limit_reached,
                   "session limit reached");
        return;
      }
      // The task pool first: the final response's MaxCmdSN is what it can hold.
      std::uint32_t n = settings_.queue_depth + kImmediateTaskReserve;
      task_store_.reserve(n);
      for (std::uint32_t i = 0; i < n; ++i) {
        auto t = std::make_unique<IscsiTask>();
        t->r2ts.resize(std::max<std::uint32_t>(1, params_.max_outstanding_r2t));
        free_tasks_.push_back(t.get());
        task_store_.push_back(std::move(t));
      }
      // A reinstated session's commands must be out of the backend before this
      // one's can run (RFC 7143 §6.3.5): the final response waits for that.
      login_held_ = true;
      host_.after_reinstated_session([this, csg, response = std::move(response)]() mutable {
        enter_full_feature(std::move(response), csg);
      });
      return;
    }
  }
  send_login_response(LoginStatus::success, std::move(response), transit, csg, nsg);
}

void Connection::enter_full_feature(std::string response, LoginStage csg) {
  login_held_ = false;
  if (closing_ || shut_down_) return;
  send_login_response(LoginStatus::success, std::move(response), true, csg,
                      LoginStage::full_feature);
  phase_ = Phase::full_feature;
  // Digests apply from the first PDU after the final login response.
  digest_header_ = params_.header_digest;
  digest_data_ = params_.data_digest;
  nexus_.initiator_name = params_.initiator_name;
  nexus_.target_name = params_.target_name;
  nexus_.session_id = isid_ << 16 | tsih_;
  spdlog::info(
      "login: initiator {} target {} peer {} session {} tsih {} ({})", params_.initiator_name,
      params_.session_type == SessionType::discovery ? "(discovery)" : params_.target_name, peer_,
      params_.session_type == SessionType::discovery ? "discovery" : "normal", tsih_,
      params_.header_digest && params_.data_digest ? "header and data digests"
      : params_.header_digest                      ? "header digest"
      : params_.data_digest                        ? "data digest"
                                                   : "no digests");
}

// ---------------------------------------------------------------- commands

std::uint32_t Connection::max_cmd_sn() {
  // A task whose status is on its way out no longer holds a slot of the queue
  // depth: counting it would close the window of an initiator that keeps
  // exactly queue_depth commands outstanding. But it holds its place in the
  // task pool until the initiator has read it, so the window never offers more
  // commands than the pool can take: a peer that does not read its responses
  // sees the window close, not TASK SET FULL (the window reopens with a NOP-In,
  // see announce_window). It never moves backwards (RFC 7143 4.2.2.1).
  std::uint32_t now = exp_cmd_sn_ + window_room() - 1;
  if (!window_advertised_ || sn_lt(max_cmd_sn_sent_, now)) max_cmd_sn_sent_ = now;
  window_advertised_ = true;
  return max_cmd_sn_sent_;
}

std::uint32_t Connection::window_room() const {
  std::uint32_t busy = active_tasks_ - responding_tasks_;
  std::uint32_t room = settings_.queue_depth > busy ? settings_.queue_depth - busy : 0;
  if (phase_ == Phase::login) return room;  // no task pool yet
  return std::min<std::uint32_t>(room, static_cast<std::uint32_t>(free_tasks_.size()));
}

bool Connection::check_cmd_sn(const Bhs& bhs) {
  std::uint32_t sn = bhs.cmd_sn();
  if (bhs.immediate()) return true;
  if (sn == exp_cmd_sn_) {
    advance_exp_cmd_sn();
    return true;
  }
  // On one connection non-immediate commands arrive in CmdSN order, so a gap
  // can only come from a broken or hostile initiator: the command is ignored,
  // as one outside the window must be.
  // Logged, but a peer sending a stream of them must not flood the log.
  auto level =
      ++ignored_commands_ <= kIgnoredCommandsLogged ? spdlog::level::warn : spdlog::level::debug;
  spdlog::log(level, "{} ({}): CmdSN {} is not ExpCmdSN {} (window ends at {}); command ignored{}",
              peer_, params_.initiator_name, sn, exp_cmd_sn_, max_cmd_sn_sent_,
              ignored_commands_ == kIgnoredCommandsLogged ? " (further ones logged at debug)" : "");
  return false;
}

void Connection::advance_exp_cmd_sn() {
  ++exp_cmd_sn_;
  // CmdSNs already counted as received (abandoned commands) are passed too.
  for (auto it = std::find(abandoned_cmd_sns_.begin(), abandoned_cmd_sns_.end(), exp_cmd_sn_);
       it != abandoned_cmd_sns_.end();
       it = std::find(abandoned_cmd_sns_.begin(), abandoned_cmd_sns_.end(), exp_cmd_sn_)) {
    abandoned_cmd_sns_.erase(it);
    ++exp_cmd_sn_;
  }
}

void Connection::count_as_received(std::uint32_t sn) {
  if (sn == exp_cmd_sn_) return advance_exp_cmd_sn();
  if (!sn_lt(exp_cmd_sn_, sn) || abandoned_cmd_sns_.size() >= settings_.queue_depth) return;
  if (std::find(abandoned_cmd_sns_.begin(), abandoned_cmd_sns_.end(), sn) ==
      abandoned_cmd_sns_.end())
    abandoned_cmd_sns_.push_back(sn);
}

IscsiTask* Connection::acquire_task() {
  if (free_tasks_.empty()) return nullptr;
  IscsiTask* t = free_tasks_.back();
  free_tasks_.pop_back();
  t->state = IscsiTask::State::receiving;
  t->aborted = false;
  t->data_failed = false;
  t->received = 0;
  t->unsolicited_done = false;
  t->r2t_next_offset = 0;
  t->r2t_outstanding = 0;
  t->r2t_sn = 0;
  t->data_sn = 0;
  t->unsolicited_data_sn = 0;
  t->pdus_pending = 0;
  for (auto& s : t->r2ts) s = {};
  t->reset_outcome();
  t->prev = nullptr;
  t->next = active_list_;
  if (active_list_) active_list_->prev = t;
  active_list_ = t;
  ++active_tasks_;
  return t;
}

void Connection::release_task(IscsiTask& t) {
  if (t.task_set_lu) t.task_set_lu->leave_task_set(t);  // before its map may go
  if (t.buf) {
    if (t.reading) output_bytes_ -= t.buf_size;
    reactor::BufferPool::local().release(t.buf, t.buf_size);
    t.buf = nullptr;
    t.buf_size = 0;
  }
  if (t.prev)
    t.prev->next = t.next;
  else
    active_list_ = t.next;
  if (t.next) t.next->prev = t.prev;
  t.prev = t.next = nullptr;
  if (t.state == IscsiTask::State::responding) --responding_tasks_;
  if (t.on_retired_luns) {
    t.on_retired_luns = false;
    if (--tasks_on_retired_luns_ == 0) retired_luns_.clear();
  }
  t.state = IscsiTask::State::idle;
  --active_tasks_;
  free_tasks_.push_back(&t);
  // Checked when output is next taken: this can run inside the network
  // layer's handling of a send, which must not be asked to send again.
  if (sn_lt(max_cmd_sn_sent_, exp_cmd_sn_)) window_may_reopen_ = true;
}

void Connection::announce_window() {
  // The initiator may send nothing until it hears a larger MaxCmdSN, and no
  // response is on its way to carry one: a NOP-In that asks for no answer
  // does (RFC 7143 11.19: TTT and ITT reserved, StatSN not advanced).
  window_may_reopen_ = false;
  if (phase_ != Phase::full_feature || closing_ || shut_down_) return;
  if (window_room() == 0) return;  // still closed: a later release reopens it
  OutPdu* pdu = new_pdu(Opcode::nop_in, 0x80);
  pdu->bhs.set_itt(kReservedTag);
  pdu->bhs.set_ttt(kReservedTag);
  prepare(pdu, false);
  append(pdu);
}

IscsiTask* Connection::find_task(std::uint32_t itt) {
  for (IscsiTask* t = active_list_; t; t = t->next)
    if (t->itt == itt) return t;
  return nullptr;
}

std::optional<DataPlan> Connection::command_header(const Bhs& bhs) {
  std::uint32_t dsl = bhs.data_segment_length();
  if (!check_cmd_sn(bhs)) return DataPlan{};
  IscsiTask* t = acquire_task();
  if (t == nullptr) {
    metrics::count_refused_command(metrics::RefusalCause::task_slots);
    OutPdu* pdu = new_pdu(Opcode::scsi_response, 0x80);
    pdu->bhs.bytes[3] = static_cast<std::uint8_t>(scsi::Status::task_set_full);
    pdu->bhs.set_itt(bhs.itt());
    queue(pdu, true);
    return DataPlan{};
  }
  t->itt = bhs.itt();
  t->cmd_sn = bhs.cmd_sn();
  t->edtl = bhs.edtl();
  t->reading = bhs.flags() & 0x40;
  t->writing = bhs.flags() & 0x20;
  std::memcpy(t->cdb.data(), bhs.cdb(), 16);
  t->lun = lun_of(bhs);
  t->unsolicited_done = bhs.final_bit();
  // The task is in its logical unit's task set from now on (SAM-5), so that
  // an abort reaches it while its Data-Out is still coming.
  t->nexus = &nexus_;
  t->owner = this;
  if (target_) {
    if (target_->luns_version() != luns_version_ || !luns_) refresh_luns();
    luns_->enter_task_set(*t);
  }

  auto fail_now = [&](scsi::SenseCode code) {
    t->state = IscsiTask::State::executing;
    fail_task(*t, code);
    return DataPlan{};
  };
  if (bhs.total_ahs_length() != 0) {
    // An extended CDB or a bidirectional read length (RFC 7143 §11.2.1.2): no
    // command we offer takes either. The command has taken its CmdSN, so it
    // ends with a status like any command we cannot run; a Reject alone would
    // leave the initiator waiting for one. Its Data-Out is dropped silently.
    spdlog::warn("{} ({}): command ITT {:#x} with {} bytes of AHS: CHECK CONDITION", peer_,
                 params_.initiator_name, t->itt, bhs.total_ahs_length());
    aborted_itts_[aborted_next_++ % aborted_itts_.size()] = t->itt;
    return fail_now(scsi::sense::invalid_field_in_cdb);
  }
  if (t->reading && t->writing) return fail_now(scsi::sense::invalid_field_in_cdb);
  if (t->edtl > settings_.max_transfer_length) return fail_now(scsi::sense::invalid_field_in_cdb);
  if (dsl > 0) {
    std::uint32_t first_burst = std::min(params_.first_burst_length, t->edtl);
    if (!t->writing || !params_.immediate_data || dsl > first_burst) {
      reject(bhs, RejectReason::protocol_error, "immediate data not allowed here");
      release_task(*t);
      closing_ = true;
      return std::nullopt;
    }
  }
  if (!t->writing && !bhs.final_bit()) {
    reject(bhs, RejectReason::protocol_error, "F bit clear on a command without Data-Out");
    release_task(*t);
    closing_ = true;
    return std::nullopt;
  }
  if ((t->writing || t->reading) && t->edtl > 0) {
    t->buf_size = std::max<std::size_t>(t->edtl, reactor::BufferPool::kMinSize);
    t->buf = reactor::BufferPool::local().acquire(t->buf_size);
    if (t->buf == nullptr) {
      // Over limits.max_buffer_memory (or out of memory): a status initiators
      // retry after a while (Linux and QEMU both do), never a failed command.
      // TASK SET FULL when the session has other commands whose completion
      // frees memory, BUSY when it has none (SAM-5 5.3).
      t->buf_size = 0;
      scsi::Status st = active_tasks_ > 1 ? scsi::Status::task_set_full : scsi::Status::busy;
      metrics::count_refused_command(metrics::RefusalCause::buffer_memory);
      auto level =
          ++busy_commands_ <= kIgnoredCommandsLogged ? spdlog::level::warn : spdlog::level::debug;
      spdlog::log(level,
                  "{} ({}): no buffer memory for a {}-byte command (limits.max_buffer_memory); "
                  "answered {}",
                  peer_, params_.initiator_name, t->edtl,
                  st == scsi::Status::busy ? "BUSY" : "TASK SET FULL");
      // Data-Out already on its way for it is dropped without a Reject.
      aborted_itts_[aborted_next_++ % aborted_itts_.size()] = t->itt;
      t->state = IscsiTask::State::executing;
      t->owner = this;
      t->status = st;
      task_complete(*t);
      return DataPlan{};
    }
  }
  if (t->reading && t->buf) output_bytes_ += t->buf_size;  // held until its Data-In is sent
  if (params_.initial_r2t) t->unsolicited_done = true;
  if (dsl > 0) {
    cur_task_ = t;
    cur_offset_ = 0;
    return DataPlan{t->buf, dsl, 0};
  }
  data_received(*t);
  return DataPlan{};
}

std::optional<DataPlan> Connection::data_out_header(const Bhs& bhs) {
  std::uint32_t dsl = bhs.data_segment_length();
  IscsiTask* t = find_task(bhs.itt());
  if (t == nullptr || t->state != IscsiTask::State::receiving || !t->writing) {
    // A late Data-Out for a task that was aborted is normal; anything else is not.
    bool aborted =
        t ? t->aborted
          : std::find(aborted_itts_.begin(), aborted_itts_.end(), bhs.itt()) != aborted_itts_.end();
    if (!aborted)
      reject(bhs, RejectReason::invalid_pdu_field, "Data-Out for no task awaiting data");
    return DataPlan{};
  }
  std::uint32_t off = bhs.buffer_offset();
  if (off > t->edtl || dsl > t->edtl - off) {
    reject(bhs, RejectReason::protocol_error, "Data-Out beyond the expected transfer length");
    closing_ = true;
    return std::nullopt;
  }
  if (bhs.ttt() == kReservedTag) {
    std::uint32_t limit = std::min(params_.first_burst_length, t->edtl);
    if (t->unsolicited_done || off + dsl > limit) {
      reject(bhs, RejectReason::protocol_error, "unsolicited Data-Out not allowed here");
      closing_ = true;
      return std::nullopt;
    }
    if (bhs.data_sn() != t->unsolicited_data_sn++) data_sn_error(*t, bhs);
  } else {
    bool ok = false;
    for (auto& slot : t->r2ts) {
      if (slot.busy && slot.ttt == bhs.ttt()) {
        ok = off >= slot.offset && off + dsl <= slot.offset + slot.len;
        if (ok && bhs.data_sn() != slot.next_data_sn++) data_sn_error(*t, bhs);
        break;
      }
    }
    if (!ok) {
      reject(bhs, RejectReason::protocol_error, "Data-Out outside its R2T");
      closing_ = true;
      return std::nullopt;
    }
  }
  cur_task_ = t;
  cur_offset_ = off;
  return DataPlan{t->buf + off, dsl, 0};
}

void Connection::data_received(IscsiTask& t) {
  if (t.state != IscsiTask::State::receiving) return;
  if (t.received >= t.edtl || !t.writing) {
    if (t.data_failed) {
      // Later Data-Out of it (a repeated offset can make the count look
      // complete early) is dropped without a Reject.
      aborted_itts_[aborted_next_++ % aborted_itts_.size()] = t.itt;
      t.state = IscsiTask::State::executing;
      return fail_task(t, scsi::sense::protocol_service_crc_error);
    }
    execute(t);
    return;
  }
  if (!t.unsolicited_done) return;
  if (t.r2t_next_offset < t.received && t.r2t_outstanding == 0 && t.r2t_sn == 0)
    t.r2t_next_offset = t.received;
  send_r2ts(t);
}

void Connection::send_r2ts(IscsiTask& t) {
  for (auto& slot : t.r2ts) {
    if (t.r2t_next_offset >= t.edtl) break;
    if (slot.busy) continue;
    std::uint32_t len = std::min(params_.max_burst_length, t.edtl - t.r2t_next_offset);
    std::uint32_t ttt = next_ttt_++;
    if (next_ttt_ == kReservedTag) next_ttt_ = 1;
    slot = {ttt, t.r2t_next_offset, len, 0, 0, true};
    ++t.r2t_outstanding;
    OutPdu* pdu = new_pdu(Opcode::r2t, 0x80);
    pdu->bhs.set_lun_field(lun_field_of(t.lun));
    pdu->bhs.set_itt(t.itt);
    pdu->bhs.set_ttt(ttt);
    pdu->bhs.set_data_sn(t.r2t_sn++);
    pdu->bhs.set_buffer_offset(t.r2t_next_offset);
    pdu->bhs.set_desired_length(len);
    queue(pdu, false);
    t.r2t_next_offset += len;
  }
}

void Connection::execute(IscsiTask& t) {
  if (target_->luns_version() != luns_version_ || !luns_) refresh_luns();
  t.state = IscsiTask::State::executing;
  t.buffer = t.buf;
  t.buffer_len = t.writing ? std::min(t.received, t.edtl) : (t.reading ? t.edtl : 0);
  t.expected_length = t.edtl;
  t.direction = t.writing   ? scsi::DataDirection::to_device
                : t.reading ? scsi::DataDirection::from_device
                            : scsi::DataDirection::none;
  t.nexus = &nexus_;
  t.owner = this;
  luns_->execute(t);
}

void Connection::data_sn_error(IscsiTask& t, const Bhs& bhs) {
  // RFC 7143 §7.12: a DataSN out of order means an earlier Data-Out was lost
  // (an implied digest error), handled as §7.8 says for a data PDU. No
  // Reject: the PDU itself is sound, and initiators end a command they see
  // rejected, so the CHECK CONDITION that follows would match nothing.
  if (!t.data_failed) {
    spdlog::warn(
        "{} ({}): Data-Out for ITT {:#x} with DataSN {} out of order; the command "
        "will end with CHECK CONDITION",
        peer_, params_.initiator_name, t.itt, bhs.data_sn());
  }
  t.data_failed = true;
}

void Connection::fail_task(IscsiTask& t, scsi::SenseCode code) {
  t.owner = this;
  t.fail(code);
  task_complete(t);
}

void Connection::task_complete(scsi::Task& task) {
  auto& t = static_cast<IscsiTask&>(task);
  // Tests: the moment GOOD is committed to go out, before it is queued.
  if (t.durability_promise != scsi::DurabilityPromise::none) {
    scsi::record_command_done(t, !(shut_down_ || t.aborted) && t.status == scsi::Status::good);
  }
  if (shut_down_ || t.aborted) {
    abort_wait_over(t);
    release_task(t);
    maybe_finish_logout();
    return;
  }
  t.state = IscsiTask::State::responding;
  ++responding_tasks_;
  respond(t);
  if (t.pdus_pending == 0) release_task(t);
  maybe_finish_logout();
}

void Connection::respond(IscsiTask& t) {
  bool good = t.status == scsi::Status::good;
  std::uint32_t to_send = 0;
  if (t.reading && good) to_send = std::min(t.data_in_length, t.edtl);
  if (to_send == 0) return send_scsi_response(t, false);

  std::uint32_t max_seg =
      std::max<std::uint32_t>(512, params_.initiator_max_recv_data_segment_length);
  std::uint32_t burst = std::max<std::uint32_t>(512, params_.max_burst_length);
  std::uint32_t off = 0, in_burst = 0;
  while (off < to_send) {
    std::uint32_t len = std::min({max_seg, to_send - off, burst - in_burst});
    bool last = off + len == to_send;
    in_burst += len;
    bool end_of_burst = last || in_burst == burst;
    if (in_burst == burst) in_burst = 0;
    OutPdu* pdu = new_pdu(Opcode::data_in, end_of_burst ? 0x80 : 0);
    pdu->bhs.set_lun_field(lun_field_of(t.lun));
    pdu->bhs.set_itt(t.itt);
    pdu->bhs.set_ttt(kReservedTag);
    pdu->bhs.set_data_sn(t.data_sn++);
    pdu->bhs.set_buffer_offset(off);
    set_data(*pdu, t.buf + off, len);
    pdu->task = &t;
    ++t.pdus_pending;
    if (last) {
      // Status rides in the last Data-In when the command succeeded.
      std::uint8_t flags = 0x80 | 0x01;
      std::uint32_t residual = 0;
      if (t.transfer_length > t.edtl) {
        flags |= 0x04;
        residual = t.transfer_length - t.edtl;
      } else if (to_send < t.edtl) {
        flags |= 0x02;
        residual = t.edtl - to_send;
      }
      pdu->bhs.set_flags(flags);
      pdu->bhs.bytes[3] = static_cast<std::uint8_t>(t.status);
      pdu->bhs.set_residual(residual);
      queue(pdu, true);
    } else {
      queue(pdu, false);
    }
    off += len;
  }
}

void Connection::send_scsi_response(IscsiTask& t, bool) {
  OutPdu* pdu = new_pdu(Opcode::scsi_response, 0x80);
  pdu->bhs.set_itt(t.itt);
  pdu->bhs.bytes[2] = 0;  // command completed at target
  pdu->bhs.bytes[3] = static_cast<std::uint8_t>(t.status);
  if (t.status == scsi::Status::good) {
    std::uint32_t moved = t.reading ? std::min(t.data_in_length, t.edtl) : t.transfer_length;
    if (t.transfer_length > t.edtl) {
      pdu->bhs.set_flags(0x80 | 0x04);
      pdu->bhs.set_residual(t.transfer_length - t.edtl);
    } else if (moved < t.edtl) {
      pdu->bhs.set_flags(0x80 | 0x02);
      pdu->bhs.set_residual(t.edtl - moved);
    }
  }
  if (t.sense_len > 0) {
    pdu->owned.resize(2 + t.sense_len);
    put_be16(pdu->owned.data(), t.sense_len);
    std::memcpy(pdu->owned.data() + 2, t.sense.data(), t.sense_len);
    set_data(*pdu, pdu->owned.data(), static_cast<std::uint32_t>(pdu->owned.size()));
  }
  pdu->bhs.set_data_sn(t.data_sn);  // ExpDataSN
  pdu->task = &t;
  ++t.pdus_pending;
  queue(pdu, true);
}

// ---------------------------------------------------------------- other PDUs

std::optional<DataPlan> Connection::nop_out_header(const Bhs& bhs) {
  std::uint32_t dsl = bhs.data_segment_length();
  if (bhs.itt() != kReservedTag && !check_cmd_sn(bhs)) {
    cur_ignored_ = true;
    return DataPlan{};
  }
  segment_.resize(dsl);
  return DataPlan{segment_.data(), dsl, 0};
}

void Connection::nop_out_complete() {
  const Bhs& bhs = cur_;
  if (bhs.itt() == kReservedTag) {
    // The answer to our ping.
    if (ping_sent_ && bhs.ttt() == ping_ttt_) ping_sent_.reset();
    return;
  }
  OutPdu* pdu = new_pdu(Opcode::nop_in, 0x80);
  pdu->bhs.set_lun_field(bhs.lun_field());
  pdu->bhs.set_itt(bhs.itt());
  pdu->bhs.set_ttt(kReservedTag);
  pdu->owned.assign(segment_.begin(), segment_.end());
  set_data(*pdu, pdu->owned.data(), static_cast<std::uint32_t>(pdu->owned.size()));
  queue(pdu, true);
}

std::optional<DataPlan> Connection::text_header(const Bhs& bhs) {
  std::uint32_t dsl = bhs.data_segment_length();
  if (!check_cmd_sn(bhs)) {
    cur_ignored_ = true;
    return DataPlan{};
  }
  if (text_in_.size() + dsl > kMaxTextBytes) {
    reject(bhs, RejectReason::protocol_error, "text request too long");
    closing_ = true;
    return std::nullopt;
  }
  segment_.resize(dsl);
  return DataPlan{segment_.data(), dsl, 0};
}

void Connection::text_complete() {
  const Bhs& bhs = cur_;
  auto send_piece = [&] {
    std::uint32_t max_seg =
        std::max<std::uint32_t>(512, params_.initiator_max_recv_data_segment_length);
    std::size_t left = text_out_.size() - text_out_pos_;
    std::size_t n = std::min<std::size_t>(left, max_seg);
    bool more = n < left;
    OutPdu* pdu = new_pdu(Opcode::text_response, more ? 0x40 : 0x80);
    pdu->bhs.set_lun_field(bhs.lun_field());
    pdu->bhs.set_itt(bhs.itt());
    if (more) {
      text_ttt_ = next_ttt_++;
      if (next_ttt_ == kReservedTag) next_ttt_ = 1;
    }
    pdu->bhs.set_ttt(more ? text_ttt_ : kReservedTag);
    pdu->owned.assign(text_out_.begin() + static_cast<std::ptrdiff_t>(text_out_pos_),
                      text_out_.begin() + static_cast<std::ptrdiff_t>(text_out_pos_ + n));
    set_data(*pdu, pdu->owned.data(), static_cast<std::uint32_t>(n));
    text_out_pos_ += n;
    if (!more) {
      text_out_.clear();
      text_out_pos_ = 0;
    }
    queue(pdu, true);
  };
  if (bhs.ttt() != kReservedTag) {
    // The initiator asks for the next piece of a long response.
    if (bhs.ttt() != text_ttt_ || text_out_.empty()) {
      reject(bhs, RejectReason::invalid_pdu_field, "text continuation with an unknown TTT");
      return;
    }
    return send_piece();
  }
  text_in_.append(reinterpret_cast<const char*>(segment_.data()), segment_.size());
  if (bhs.flags() & 0x40) {
    // Continued request: answer empty until the last piece.
    OutPdu* pdu = new_pdu(Opcode::text_response, 0x00);
    pdu->bhs.set_itt(bhs.itt());
    text_ttt_ = next_ttt_++;
    pdu->bhs.set_ttt(text_ttt_);
    queue(pdu, true);
    return;
  }
  std::vector<KeyValue> keys;
  TextParseError perr =
      parse_text(reinterpret_cast<const std::uint8_t*>(text_in_.data()), text_in_.size(), keys);
  text_in_.clear();
  if (perr != TextParseError::none) {
    reject(bhs, RejectReason::protocol_error, "malformed text request");
    return;
  }
  text_out_.clear();
  text_out_pos_ = 0;
  for (const auto& kv : keys) {
    if (kv.key == "SendTargets") {
      // A normal session learns only about its own target (RFC 7143 appendix C).
      std::string_view which = kv.value;
      if (params_.session_type == SessionType::normal) which = params_.target_name;
      host_.append_send_targets(params_.initiator_name, which, text_out_);
    } else {
      append_key(text_out_, kv.key, "NotUnderstood");
    }
  }
  send_piece();
}

void Connection::logout(const Bhs& bhs) {
  if (!check_cmd_sn(bhs)) return;
  std::uint8_t reason = bhs.flags() & 0x7f;
  logout_itt_ = bhs.itt();
  logout_response_ = reason <= 1 ? 0 : 2;  // connection recovery: not supported at ERL 0
  logout_pending_ = true;
  if (logout_response_ == 0) {
    // Commands still waiting for Data-Out will not get it now.
    for (IscsiTask* t = active_list_; t;) {
      IscsiTask* next = t->next;
      if (t->state == IscsiTask::State::receiving) release_task(*t);
      t = next;
    }
  }
  maybe_finish_logout();
}

void Connection::maybe_finish_logout() {
  if (!logout_pending_) return;
  if (logout_response_ == 0) {
    for (IscsiTask* t = active_list_; t; t = t->next)
      if (t->state == IscsiTask::State::executing) return;
  }
  logout_pending_ = false;
  OutPdu* pdu = new_pdu(Opcode::logout_response, 0x80);
  pdu->bhs.bytes[2] = logout_response_;
  pdu->bhs.set_itt(logout_itt_);
  pdu->bhs.set_u16(40, static_cast<std::uint16_t>(params_.default_time2wait));
  pdu->bhs.set_u16(42, static_cast<std::uint16_t>(params_.default_time2retain));
  queue(pdu, true);
  if (logout_response_ == 0) {
    spdlog::info("logout: initiator {} target {} peer {} tsih {}", params_.initiator_name,
                 params_.target_name, peer_, tsih_);
    phase_ = Phase::logged_out;
    closing_ = true;
  }
}

void Connection::task_management(const Bhs& bhs) {
  if (!check_cmd_sn(bhs)) return;
  auto fn = static_cast<TmfFunction>(bhs.flags() & 0x7f);
  TmfResponse response = TmfResponse::complete;
  std::uint64_t lun = lun_of(bhs);
  std::vector<IscsiTask*> executing;  // aborted here, still in the SCSI layer
  // The task sets that abort, and which of their tasks.
  std::vector<std::shared_ptr<scsi::LogicalUnit>> lus;
  std::function<bool(const scsi::Task&)> aborted = [](const scsi::Task&) { return true; };
  switch (fn) {
    case TmfFunction::abort_task: {
      IscsiTask* t = find_task(bhs.ref_task_tag());
      if (t && t->state != IscsiTask::State::responding) {
        if (t->state == IscsiTask::State::executing && !t->only_waiting()) executing.push_back(t);
        abort_task(*t);
      } else if (!t) {
        std::uint32_t ref = bhs.u32(32);
        bool in_window =
            sn_lt(ref, bhs.cmd_sn()) && !sn_lt(ref, bhs.cmd_sn() - settings_.queue_depth);
        response = in_window ? TmfResponse::complete : TmfResponse::task_does_not_exist;
        // RFC 7143 §11.5.1 (b): the initiator aborted a command it never sent
        // (libiscsi does, for one still in its send queue). Its CmdSN counts as
        // received, or every later command would wait behind the gap.
        if (in_window) count_as_received(ref);
      }
      break;
    }
    case TmfFunction::abort_task_set:
    case TmfFunction::clear_task_set:
    case TmfFunction::logical_unit_reset:
      if (target_->luns_version() != luns_version_ || !luns_) refresh_luns();
      if (!luns_->find(lun) || !luns_->visible(lun, &nexus_)) {
        response = TmfResponse::lun_does_not_exist;
        break;
      }
      // ABORT TASK SET ends this nexus's tasks only; the task set is shared
      // (TST 000b), so CLEAR TASK SET and a reset end every nexus's.
      lus.push_back(luns_->find(lun));
      if (fn == TmfFunction::abort_task_set)
        aborted = [me = &nexus_](const scsi::Task& t) { return t.nexus == me; };
      if (fn == TmfFunction::logical_unit_reset) lus.back()->reset();
      break;
    case TmfFunction::target_warm_reset:
    case TmfFunction::target_cold_reset:
      // This session's tasks of every LUN (some may be in no task set), and
      // every other nexus's in the task sets of the target's LUs.
      executing = abort_tasks_of(std::nullopt, nullptr).executing;
      if (target_->luns_version() != luns_version_ || !luns_) refresh_luns();
      for (std::uint64_t l : luns_->luns()) lus.push_back(luns_->find(l));
      aborted = [me = &nexus_](const scsi::Task& t) { return t.nexus != me; };
      luns_->reset_all();
      break;
    case TmfFunction::task_reassign:
      response = TmfResponse::reassignment_not_supported;
      break;
    default:
      response = TmfResponse::not_supported;
      break;
  }
  spdlog::info(
      "task management {} from {} ({}): response {}{}", static_cast<unsigned>(fn),
      params_.initiator_name, peer_, static_cast<unsigned>(response),
      executing.empty() && lus.empty()
          ? ""
          : fmt::format(
                " once the aborted tasks of {} task set(s){} are out of the "
                "backend",
                lus.size(),
                executing.empty() ? "" : fmt::format(" and {} of this session", executing.size())));
  answer_tmf_when_gone(bhs.itt(), response, std::move(executing), std::move(lus), aborted);
}

void Connection::answer_tmf_when_gone(std::uint32_t itt, TmfResponse response,
                                      std::vector<IscsiTask*> executing,
                                      std::vector<std::shared_ptr<scsi::LogicalUnit>> lus,
                                      const std::function<bool(const scsi::Task&)>& aborted) {
  if (executing.empty() && lus.empty()) return send_tmf_response(itt, response);
  // One part for this function, so that a task set done at once cannot
  // answer before the others were asked.
  auto parts_left = std::make_shared<std::size_t>(1 + lus.size() + (executing.empty() ? 0 : 1));
  auto part_done = [this, alive = std::weak_ptr<bool>(alive_), parts_left, itt, response] {
    if (!alive.expired() && --*parts_left == 0) send_tmf_response(itt, response);
  };
  if (!executing.empty()) abort_waits_.push_back({std::move(executing), part_done});
  for (const auto& lu : lus) lu->abort_task_set(aborted, nullptr, part_done);
  part_done();
}

void Connection::send_tmf_response(std::uint32_t itt, TmfResponse response) {
  if (shut_down_) return;  // nobody to answer
  OutPdu* pdu = new_pdu(Opcode::task_mgmt_response, 0x80);
  pdu->bhs.bytes[2] = static_cast<std::uint8_t>(response);
  pdu->bhs.set_itt(itt);
  queue(pdu, true);
}

void Connection::abort_task(IscsiTask& t) {
  t.aborted = true;
  // Data-Out already on the wire for it is dropped without a Reject.
  aborted_itts_[aborted_next_++ % aborted_itts_.size()] = t.itt;
  // Not yet running: it ends here. Running: it ends, silently, when the
  // SCSI layer gives it back (the backend may already have the data).
  if (t.state == IscsiTask::State::receiving) {
    // A data segment being received into its buffer (an abort from another
    // session can come between a Data-Out's header and its data): the
    // buffer is let go once that segment is in (on_data).
    if (cur_task_ == &t) return;
    release_task(t);
  }
}

Connection::Aborted Connection::abort_tasks_of(std::optional<std::uint64_t> lun,
                                               const scsi::Task* keep) {
  Aborted aborted;
  for (IscsiTask* t = active_list_; t;) {
    IscsiTask* next = t->next;
    if ((!lun || t->lun == *lun) && t != keep && t->state != IscsiTask::State::responding) {
      ++aborted.count;
      // A PREEMPT AND ABORT of this session waiting for its own aborts is
      // not waited for: those may be waiting for this one.
      if (t->state == IscsiTask::State::executing && !t->only_waiting()) {
        aborted.executing.push_back(t);
      }
      abort_task(*t);
    }
    t = next;
  }
  return aborted;
}

bool Connection::task_aborted(scsi::Task& task) {
  auto& t = static_cast<IscsiTask&>(task);
  if (t.state == IscsiTask::State::responding || t.state == IscsiTask::State::idle) return false;
  // A PREEMPT AND ABORT of this session waiting for its own aborts is not
  // waited for: those may be waiting for this one.
  bool in_backend = t.state == IscsiTask::State::executing && !t.only_waiting();
  spdlog::info("{} ({}): task {:#x} for LUN {} aborted by its logical unit, {}", peer_,
               params_.initiator_name, t.itt, t.lun,
               in_backend ? "waited for in the backend" : "not in the backend");
  abort_task(t);
  return in_backend;
}

void Connection::abort_wait_over(IscsiTask& t) {
  if (abort_waits_.empty()) return;
  std::vector<std::function<void()>> over;
  for (auto it = abort_waits_.begin(); it != abort_waits_.end();) {
    std::erase(it->tasks, &t);
    if (it->tasks.empty()) {
      over.push_back(std::move(it->done));
      it = abort_waits_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& done : over) done();
}

void Connection::reject(const Bhs& bhs, RejectReason reason, const char* why) {
  spdlog::warn("{} ({}): reject opcode {:#x}: {}", peer_,
               params_.initiator_name.empty() ? "?" : params_.initiator_name,
               static_cast<unsigned>(bhs.opcode()), why);
  metrics::count_reject();
  OutPdu* pdu = new_pdu(Opcode::reject, 0x80);
  pdu->bhs.bytes[2] = static_cast<std::uint8_t>(reason);
  pdu->bhs.set_itt(kReservedTag);
  pdu->owned.assign(bhs.bytes.begin(), bhs.bytes.end());
  set_data(*pdu, pdu->owned.data(), kBhsSize);
  queue(pdu, true);
}

// ---------------------------------------------------------------- output

OutPdu* Connection::new_pdu(Opcode op, std::uint8_t flags) {
  OutPdu* pdu;
  if (free_pdus_.empty()) {
    pdu_store_.push_back(std::make_unique<OutPdu>());
    pdu = pdu_store_.back().get();
  } else {
    pdu = free_pdus_.back();
    free_pdus_.pop_back();
  }
  pdu->bhs = Bhs::make(op, flags);
  pdu->data = nullptr;
  pdu->data_len = 0;
  pdu->trailer_len = 0;
  pdu->owned.clear();
  pdu->task = nullptr;
  pdu->next = nullptr;
  return pdu;
}

void Connection::set_data(OutPdu& pdu, const std::uint8_t* data, std::uint32_t len) {
  pdu.data = data;
  pdu.data_len = len;
  pdu.bhs.set_data_segment_length(len);
}

void Connection::prepare(OutPdu* pdu, bool advance_stat_sn) {
  Opcode op = pdu->bhs.opcode();
  if (op != Opcode::data_in || advance_stat_sn) {
    pdu->bhs.set_stat_sn(advance_stat_sn ? stat_sn_++ : stat_sn_);
  }
  pdu->bhs.set_exp_cmd_sn(exp_cmd_sn_);
  pdu->bhs.set_max_cmd_sn(max_cmd_sn());
  std::uint32_t pad = padded(pdu->data_len) - pdu->data_len;
  std::memset(pdu->trailer, 0, sizeof pdu->trailer);
  pdu->trailer_len = static_cast<std::uint8_t>(pad);
  if (phase_ == Phase::full_feature || phase_ == Phase::logged_out) {
    if (digest_header_) {
      Crc32c crc;
      crc.update(pdu->bhs.bytes.data(), kBhsSize);
      store_digest(pdu->header_digest, crc.value());
    }
    if (digest_data_ && pdu->data_len > 0) {
      Crc32c crc;
      crc.update(pdu->data, pdu->data_len);
      crc.update(pdu->trailer, pad);
      store_digest(pdu->trailer + pad, crc.value());
      pdu->trailer_len = static_cast<std::uint8_t>(pad + kDigestSize);
    }
  }
  pdu->header_len = static_cast<std::uint8_t>(
      kBhsSize + ((phase_ != Phase::login && digest_header_) ? kDigestSize : 0));
}

void Connection::append(OutPdu* pdu) {
  if (out_tail_)
    out_tail_->next = pdu;
  else
    out_head_ = pdu;
  out_tail_ = pdu;
  ++pdus_unsent_;
  output_bytes_ += own_bytes(*pdu);
}

void Connection::queue(OutPdu* pdu, bool advance_stat_sn) {
  prepare(pdu, advance_stat_sn);
  append(pdu);
  host_.output_ready();
}

OutPdu* Connection::take_output() {
  if (window_may_reopen_) announce_window();
  OutPdu* head = out_head_;
  out_head_ = out_tail_ = nullptr;
  return head;
}

void Connection::sent(OutPdu* pdu) {
  --pdus_unsent_;
  output_bytes_ -= own_bytes(*pdu);
  IscsiTask* t = pdu->task;
  pdu->owned.clear();
  pdu->task = nullptr;
  free_pdus_.push_back(pdu);
  if (t && --t->pdus_pending == 0 && t->state == IscsiTask::State::responding) release_task(*t);
}

// ---------------------------------------------------------------- time, teardown

void Connection::on_tick(Clock::time_point now) {
  if (closing_) return;
  if (phase_ == Phase::login) {
    if (now > login_deadline_) {
      spdlog::warn(
          "{}: login not completed within {}s{}; closing", peer_, settings_.login_timeout.count(),
          login_held_ ? " (the session it reinstates still has commands in the backend)" : "");
      host_.login_failed(LoginFailure::bad_request, params_.initiator_name, params_.target_name,
                         "login timeout");
      closing_ = true;
    }
    return;
  }
  if (phase_ != Phase::full_feature) return;
  if (data_out_stalled(now)) {
    spdlog::warn(
        "{} ({}): no Data-Out for {}s while a WRITE waits for its data; closing the "
        "connection",
        peer_, params_.initiator_name, settings_.nop_timeout.count());
    closing_ = true;
    return;
  }
  if (settings_.nop_interval.count() == 0) return;
  if (ping_sent_) {
    if (now - *ping_sent_ > settings_.nop_timeout) {
      spdlog::warn("{} ({}): no answer to NOP-In for {}s; closing the connection", peer_,
                   params_.initiator_name, settings_.nop_timeout.count());
      closing_ = true;
    }
    return;
  }
  if (now - last_rx_ >= settings_.nop_interval) {
    ping_ttt_ = next_ttt_++;
    if (next_ttt_ == kReservedTag) next_ttt_ = 1;
    ping_sent_ = now;
    OutPdu* pdu = new_pdu(Opcode::nop_in, 0x80);
    pdu->bhs.set_itt(kReservedTag);
    pdu->bhs.set_ttt(ping_ttt_);
    queue(pdu, false);
  }
}

bool Connection::data_out_stalled(Clock::time_point now) const {
  // A peer that answers pings but never sends the data of its WRITEs would
  // hold their buffers for ever (RFC 7143 leaves the time-out to the target;
  // at ErrorRecoveryLevel 0 the connection goes). While receive is paused
  // the data may be waiting unread in the socket: not the peer's stall.
  if (settings_.nop_timeout.count() == 0 || should_pause_receive()) return false;
  if (now - last_data_progress_ <= settings_.nop_timeout) return false;
  for (const IscsiTask* t = active_list_; t; t = t->next)
    if (t->state == IscsiTask::State::receiving) return true;
  return false;
}

void Connection::request_close(const char* why) {
  spdlog::info("closing connection {} ({} on {}): {}", peer_, params_.initiator_name,
               params_.target_name, why);
  closing_ = true;
}

void Connection::shut_down() {
  if (!shut_down_ && target_ && phase_ != Phase::login) {
    // The I_T nexus is gone: what the SCSI layer kept for it goes too.
    if (auto map = target_->luns()) map->nexus_lost(nexus_);
  }
  shut_down_ = true;
  closing_ = true;
  for (IscsiTask* t = active_list_; t;) {
    IscsiTask* next = t->next;
    if (t->state == IscsiTask::State::receiving) release_task(*t);
    t = next;
  }
  for (OutPdu* p = take_output(); p;) {
    OutPdu* next = p->next;
    sent(p);
    p = next;
  }
}

bool Connection::idle() const {
  return active_tasks_ == 0 && pdus_unsent_ == 0;
}

}  // namespace ringtgt::iscsi
