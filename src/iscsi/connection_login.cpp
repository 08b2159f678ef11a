// Login (RFC 7143 §6): the stages, key negotiation through LoginNegotiator, the target
// and its access list, and the step into full feature phase.
#include <spdlog/spdlog.h>

#include "iscsi_task.hpp"
#include "ringtgt/iscsi/connection.hpp"

namespace ringtgt::iscsi {

namespace {

constexpr std::uint32_t kLoginSegmentLimit = 8192;

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

std::optional<DataPlan> Connection::login_header(const Bhs& bhs) {
  if (bhs.opcode() != Opcode::login_request) {
    spdlog::warn("{}: opcode {:#x} before login completed; closing", peer_,
                 static_cast<unsigned>(bhs.opcode()));
    host_.login_failed(LoginFailure::bad_request, params_.initiator_name, params_.target_name,
                       "PDU other than Login Request during login");
    return std::nullopt;
  }
  std::uint32_t dsl = bhs.data_segment_length();
  if (dsl > kLoginSegmentLimit || text_.in.size() + dsl > kMaxTextBytes ||
      bhs.total_ahs_length() != 0) {
    fail_login(LoginStatus::initiator_error, LoginFailure::bad_request,
               "login data segment too long");
    return std::nullopt;
  }
  rx_.segment.resize(dsl);
  return DataPlan{rx_.segment.data(), dsl, padded(dsl) - dsl};
}

void Connection::fail_login(LoginStatus status, LoginFailure why, const std::string& detail) {
  host_.login_failed(why, params_.initiator_name, params_.target_name, detail);
  send_login_response(status, {}, false, rx_.bhs.login_csg(), rx_.bhs.login_nsg());
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
  pdu->bhs.set_itt(login_.itt);
  pdu->bhs.set_login_status(status);
  pdu->owned.assign(keys.begin(), keys.end());
  set_data(*pdu, pdu->owned.data(), static_cast<std::uint32_t>(pdu->owned.size()));
  queue(pdu, true);
}

void Connection::login_data_complete() {
  const Bhs& bhs = rx_.bhs;
  if (!login_request_fits(bhs)) return;
  if (!valid_login_stages(bhs)) {
    fail_login(LoginStatus::initiator_error, LoginFailure::bad_request, "invalid login stages");
    return;
  }
  LoginStage csg = bhs.login_csg();
  LoginStage nsg = bhs.login_nsg();
  bool transit = bhs.login_transit();
  keep_keys();
  if (bhs.login_continue()) {
    // More keys follow: acknowledge with an empty response in the same stage.
    send_login_response(LoginStatus::success, {}, false, csg, csg);
    return;
  }
  std::vector<KeyValue> keys;
  TextParseError perr = take_keys(keys);
  if (perr != TextParseError::none) {
    fail_login(LoginStatus::initiator_error, LoginFailure::bad_request,
               std::string("login keys: ") + to_string(perr));
    return;
  }
  std::string response;
  if (!negotiated(csg, keys, response) || !target_allows_login()) return;
  if (transit && csg == LoginStage::security && login_.negotiator.auth_pending()) {
    transit = false;  // CHAP still under way: answer T=0 and stay in the security stage
  }
  if (transit && csg == LoginStage::security && !login_.negotiator.authenticated()) {
    fail_login(LoginStatus::authentication_failed, LoginFailure::auth_failed,
               "left the security stage without authenticating");
    return;
  }
  if (transit) {
    login_.stage = nsg;
    if (nsg == LoginStage::full_feature) return leave_login(std::move(response), csg);
  }
  send_login_response(LoginStatus::success, std::move(response), transit, csg, nsg);
}

bool Connection::login_request_fits(const Bhs& bhs) {
  if (!login_.first_pdu) {
    if (bhs.isid() == isid_ && bhs.itt() == login_.itt) return true;
    fail_login(LoginStatus::initiator_error, LoginFailure::bad_request,
               "ISID or ITT changed during login");
    return false;
  }
  login_.first_pdu = false;
  isid_ = bhs.isid();
  login_.itt = bhs.itt();
  window_.begin(bhs.exp_stat_sn(), bhs.cmd_sn());
  login_.stage = bhs.login_csg();
  if (bhs.version_min() > 0) {
    fail_login(LoginStatus::unsupported_version, LoginFailure::unsupported,
               "iSCSI version " + std::to_string(bhs.version_min()) + " not supported");
    return false;
  }
  if (bhs.tsih() != 0) {
    // Adding a connection to a session (MaxConnections=1) or resuming one
    // we do not know: the initiator starts over with TSIH 0.
    fail_login(LoginStatus::session_does_not_exist, LoginFailure::unsupported,
               "login with TSIH " + std::to_string(bhs.tsih()) + " for no open session");
    return false;
  }
  return true;
}

bool Connection::valid_login_stages(const Bhs& bhs) const {
  // The current stage is the one we are in, never full feature nor the reserved 2; a
  // transit goes forward to a stage that exists and cannot also continue.
  auto csg = static_cast<unsigned>(bhs.login_csg());
  auto nsg = static_cast<unsigned>(bhs.login_nsg());
  bool transit = bhs.login_transit();
  if (bhs.login_csg() != login_.stage || bhs.login_csg() == LoginStage::full_feature || csg == 2)
    return false;
  return !(transit && (nsg <= csg || nsg == 2)) && !(transit && bhs.login_continue());
}

bool Connection::negotiated(LoginStage csg, const std::vector<KeyValue>& keys,
                            std::string& response) {
  LoginNegotiator& n = login_.negotiator;
  NegotiationError nerr = n.negotiate(static_cast<std::uint8_t>(csg), keys, response);
  params_ = n.params();
  switch (nerr) {
    case NegotiationError::none:
      return true;
    case NegotiationError::missing_parameter:
      fail_login(LoginStatus::missing_parameter, LoginFailure::bad_request, n.error_detail());
      return false;
    case NegotiationError::auth_failed:
      fail_login(LoginStatus::authentication_failed, LoginFailure::auth_failed, n.error_detail());
      return false;
    case NegotiationError::no_acceptable_value:
      fail_login(LoginStatus::initiator_error, LoginFailure::negotiation, n.error_detail());
      return false;
    default:
      fail_login(LoginStatus::initiator_error, LoginFailure::bad_request, n.error_detail());
      return false;
  }
}

bool Connection::target_allows_login() {
  // Asked once, as soon as a normal session names its target.
  if (login_.target_checked || params_.session_type != SessionType::normal) return true;
  login_.target_checked = true;
  target_ = host_.find_target(params_.target_name);
  if (!target_) {
    fail_login(LoginStatus::target_not_found, LoginFailure::unknown_target,
               "no target named " + params_.target_name);
    return false;
  }
  if (!target_->allows(params_.initiator_name)) {
    fail_login(LoginStatus::authorization_failure, LoginFailure::not_authorized,
               "initiator not allowed on this target");
    return false;
  }
  return true;
}

void Connection::leave_login(std::string response, LoginStage csg) {
  if (std::string why = login_.negotiator.unmet_digest_requirement(); !why.empty()) {
    fail_login(LoginStatus::initiator_error, LoginFailure::negotiation, why);
    return;
  }
  login_.negotiator.finish(response);
  params_ = login_.negotiator.params();
  tsih_ = host_.session_started(params_, isid_);
  if (tsih_ == 0) {
    fail_login(LoginStatus::out_of_resources, LoginFailure::limit_reached, "session limit reached");
    return;
  }
  // The task pool first: the final response's MaxCmdSN is what it can hold.
  tasks_.create(settings_.queue_depth + kImmediateTaskReserve, params_.max_outstanding_r2t);
  // A reinstated session's commands must be out of the backend before this
  // one's can run (RFC 7143 §6.3.5): the final response waits for that.
  login_.held = true;
  host_.after_reinstated_session([this, csg, response = std::move(response)]() mutable {
    enter_full_feature(std::move(response), csg);
  });
}

void Connection::enter_full_feature(std::string response, LoginStage csg) {
  login_.held = false;
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

void Connection::check_login_deadline(Clock::time_point now) {
  if (now <= login_.deadline) return;
  spdlog::warn("{}: login not completed within {}s{}; closing", peer_,
               settings_.login_timeout.count(),
               login_.held ? " (the session it reinstates still has commands in the backend)" : "");
  host_.login_failed(LoginFailure::bad_request, params_.initiator_name, params_.target_name,
                     "login timeout");
  closing_ = true;
}

}  // namespace ringtgt::iscsi
