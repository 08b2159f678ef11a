// Login key negotiation (RFC 7143 §6, §13): what the target answers to the keys of each
// login request, and the operational parameters in force once login completes. Sans-I/O:
// keys in, answer text and parameters out.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "ringtgt/iscsi/chap.hpp"
#include "ringtgt/iscsi/text.hpp"

namespace ringtgt::iscsi {

enum class SessionType { normal, discovery };

// What the target offers/enforces (filled from config::IscsiSettings).
struct TargetLimits {
  std::uint32_t max_recv_data_segment_length = 262144;  // what we accept per PDU (declared)
  std::uint32_t max_burst_length = 1048576;
  std::uint32_t first_burst_length = 65536;
  bool initial_r2t = false;  // false: we allow unsolicited data (result is OR with initiator)
  bool immediate_data = true;
  std::uint32_t max_outstanding_r2t = 1;
  // Digests: the initiator chooses between None and CRC32C (it pays for them) unless the
  // target forbids CRC32C (allow false) or requires it of normal sessions (require true).
  bool allow_header_digest = true;
  bool allow_data_digest = true;
  bool require_header_digest = false;
  bool require_data_digest = false;
  std::uint32_t default_time2wait = 2;
  std::uint32_t default_time2retain = 0;
  std::uint32_t max_connections = 1;
  std::uint32_t error_recovery_level = 0;
  // AuthMethod values the target accepts when no CHAP policy applies, e.g. {"None"}. When
  // the auth lookup returns a policy for the session, only "CHAP" is accepted.
  std::vector<std::string> auth_methods{"None"};
};

// The operational values in force once login completes.
struct SessionParams {
  SessionType session_type = SessionType::normal;
  std::string initiator_name, initiator_alias, target_name;
  bool header_digest = false, data_digest = false;
  std::uint32_t max_connections = 1;
  bool initial_r2t = true, immediate_data = true;
  // Max data segment WE may send (initiator's declaration; 8192 if not declared).
  std::uint32_t initiator_max_recv_data_segment_length = 8192;
  // Max data segment we ACCEPT (our declaration).
  std::uint32_t target_max_recv_data_segment_length = 8192;
  std::uint32_t max_burst_length = 262144, first_burst_length = 65536;
  std::uint32_t default_time2wait = 2, default_time2retain = 20;
  std::uint32_t max_outstanding_r2t = 1;
  bool data_pdu_in_order = true, data_sequence_in_order = true;
  std::uint32_t error_recovery_level = 0;
};

enum class NegotiationError {
  none,
  initiator_error,    // protocol violation -> login status 0x0200
  missing_parameter,  // 0x0207
  auth_failed,        // 0x0201
  // A key the initiator offered with no value the target may accept (a digest it insists
  // on): the session could not be used, so the login ends here -> 0x0200.
  no_acceptable_value,
};

const char* to_string(NegotiationError);

// The CHAP policy for a session, asked once the first login request named its type and
// target: nullopt means no CHAP (AuthMethod=None, if TargetLimits allows it).
using AuthLookup =
    std::function<std::optional<AuthPolicy>(SessionType type, std::string_view target_name)>;

class LoginNegotiator {
 public:
  LoginNegotiator(TargetLimits limits, std::string target_alias, std::uint16_t portal_group_tag);
  ~LoginNegotiator();

  // Set before the first negotiate(); without it no session uses CHAP.
  void set_auth_lookup(AuthLookup lookup) { auth_lookup_ = std::move(lookup); }

  // Processes the keys of one complete login request (all its continuation PDUs joined), in
  // stage `stage` (0 security, 1 operational), appending the answers to `response`.
  // Returns the error that must fail the login, or none. After an error every later call
  // returns that error again.
  NegotiationError negotiate(std::uint8_t stage, const std::vector<KeyValue>& keys,
                             std::string& response);

  // Call once when the response that moves to full feature phase is built: appends the
  // target's declarations the initiator did not already get (MaxRecvDataSegmentLength, and
  // for normal sessions TargetAlias if non-empty).
  void finish(std::string& response);

  const SessionParams& params() const { return params_; }
  // For a normal session entering full feature phase: why the negotiated digests fall
  // short of what TargetLimits requires ("" when they do not).
  std::string unmet_digest_requirement() const;
  std::string error_detail() const { return detail_; }

  // Whether the initiator may enter full feature phase as far as authentication goes:
  // check before a transit from the security stage straight to full feature phase.
  bool authenticated() const { return authenticated_; }
  // The AuthMethod chosen, or empty if none was negotiated.
  const std::string& auth_method() const { return auth_method_; }
  // CHAP was chosen and its exchange is not over yet: a request to leave the security stage
  // is answered without the transit (T=0) instead of failing the login.
  bool auth_pending() const;

 private:
  struct Answer {
    std::string key;
    std::string text;                                // fixed answer, unless one of:
    std::uint32_t SessionParams::*number = nullptr;  // answer the final value of this
    bool SessionParams::*flag = nullptr;
  };

  NegotiationError handle(std::uint8_t stage, bool first, const KeyValue& kv,
                          std::vector<Answer>& answers);
  NegotiationError negotiate_digest(const KeyValue& kv, std::vector<Answer>& answers);
  NegotiationError fail(NegotiationError e, std::string detail);
  void reject(const KeyValue& kv, std::vector<Answer>& answers, std::string_view why);
  bool accepts_auth_method(std::string_view method) const;

  TargetLimits limits_;
  AuthLookup auth_lookup_;
  std::optional<AuthPolicy> auth_policy_;
  std::unique_ptr<ChapExchange> chap_;
  std::vector<KeyValue> chap_keys_;  // the CHAP_* keys of the request being processed
  std::string target_alias_;
  std::uint16_t portal_group_tag_;
  SessionParams params_;
  std::set<std::string, std::less<>> seen_;
  unsigned requests_ = 0;
  bool authenticated_ = false;
  std::string auth_method_;
  bool declared_mrdsl_ = false;
  bool sent_tpgt_ = false;
  bool finished_ = false;
  NegotiationError error_ = NegotiationError::none;
  std::string detail_;
};

}  // namespace ringtgt::iscsi
