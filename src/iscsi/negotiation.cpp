#include "ringtgt/iscsi/negotiation.hpp"

#include <algorithm>
#include <optional>
#include <utility>

namespace ringtgt::iscsi {

namespace {

constexpr std::uint32_t kMinDataLength = 512;
constexpr std::uint32_t kMaxDataLength = 16777215;  // 2^24 - 1
constexpr std::size_t kMaxNameLength = 223;         // iSCSI names (RFC 7143 §4.2.7.1)

// Numerical values: decimal-constant or hex-constant "0x..." (RFC 7143 §6.1).
std::optional<std::uint64_t> parse_number(std::string_view s) {
  if (s.empty()) return std::nullopt;
  std::uint64_t v = 0;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    s.remove_prefix(2);
    for (char c : s) {
      unsigned d;
      if (c >= '0' && c <= '9') {
        d = static_cast<unsigned>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        d = static_cast<unsigned>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        d = static_cast<unsigned>(c - 'A' + 10);
      } else {
        return std::nullopt;
      }
      if (v > (UINT64_MAX >> 4)) return std::nullopt;
      v = v << 4 | d;
    }
    return v;
  }
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    auto d = static_cast<std::uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

std::optional<bool> parse_bool(std::string_view s) {
  if (s == "Yes") return true;
  if (s == "No") return false;
  return std::nullopt;
}

// The comma-separated options of a list-valued key, in the initiator's preference order.
std::vector<std::string_view> split_list(std::string_view s) {
  std::vector<std::string_view> items;
  while (true) {
    std::size_t comma = s.find(',');
    items.push_back(s.substr(0, comma));
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  return items;
}

enum class Result { minimum, maximum };
enum class BoolResult { logical_or, logical_and };

struct NumericKey {
  std::string_view name;
  std::uint32_t lo, hi;
  Result result;
  std::uint32_t SessionParams::*field;
  std::uint32_t TargetLimits::*ours;
  bool irrelevant_in_discovery;
};

constexpr NumericKey kNumericKeys[] = {
    {"MaxConnections", 1, 65535, Result::minimum, &SessionParams::max_connections,
     &TargetLimits::max_connections, true},
    {"MaxBurstLength", kMinDataLength, kMaxDataLength, Result::minimum,
     &SessionParams::max_burst_length, &TargetLimits::max_burst_length, true},
    {"FirstBurstLength", kMinDataLength, kMaxDataLength, Result::minimum,
     &SessionParams::first_burst_length, &TargetLimits::first_burst_length, true},
    {"DefaultTime2Wait", 0, 3600, Result::maximum, &SessionParams::default_time2wait,
     &TargetLimits::default_time2wait, false},
    {"DefaultTime2Retain", 0, 3600, Result::minimum, &SessionParams::default_time2retain,
     &TargetLimits::default_time2retain, false},
    {"MaxOutstandingR2T", 1, 65535, Result::minimum, &SessionParams::max_outstanding_r2t,
     &TargetLimits::max_outstanding_r2t, true},
    {"ErrorRecoveryLevel", 0, 2, Result::minimum, &SessionParams::error_recovery_level,
     &TargetLimits::error_recovery_level, false},
};

struct BooleanKey {
  std::string_view name;
  BoolResult result;
  bool SessionParams::*field;
  bool ours;  // when not a TargetLimits setting: what this target implements
  bool TargetLimits::*ours_setting;
  bool irrelevant_in_discovery;
};

constexpr BooleanKey kBooleanKeys[] = {
    {"InitialR2T", BoolResult::logical_or, &SessionParams::initial_r2t, false,
     &TargetLimits::initial_r2t, true},
    {"ImmediateData", BoolResult::logical_and, &SessionParams::immediate_data, false,
     &TargetLimits::immediate_data, true},
    // We only deliver and accept data in order.
    {"DataPDUInOrder", BoolResult::logical_or, &SessionParams::data_pdu_in_order, true, nullptr,
     true},
    {"DataSequenceInOrder", BoolResult::logical_or, &SessionParams::data_sequence_in_order, true,
     nullptr, true},
};

std::uint32_t combine(Result r, std::uint32_t a, std::uint32_t b) {
  return r == Result::minimum ? std::min(a, b) : std::max(a, b);
}
bool combine(BoolResult r, bool a, bool b) {
  return r == BoolResult::logical_or ? a || b : a && b;
}

std::uint32_t clamp_length(std::uint32_t v) {
  return std::clamp(v, kMinDataLength, kMaxDataLength);
}

bool is_chap_key(std::string_view key) {
  return key.starts_with("CHAP_");
}

}  // namespace

const char* to_string(NegotiationError e) {
  switch (e) {
    case NegotiationError::none:
      return "none";
    case NegotiationError::initiator_error:
      return "initiator error";
    case NegotiationError::missing_parameter:
      return "missing parameter";
    case NegotiationError::auth_failed:
      return "authentication failed";
    case NegotiationError::no_acceptable_value:
      return "no acceptable value";
  }
  return "unknown";
}

LoginNegotiator::LoginNegotiator(TargetLimits limits, std::string target_alias,
                                 std::uint16_t portal_group_tag)
    : limits_(std::move(limits)),
      target_alias_(std::move(target_alias)),
      portal_group_tag_(portal_group_tag) {
  // Keep a misconfigured target inside what RFC 7143 lets it declare.
  limits_.max_recv_data_segment_length = clamp_length(limits_.max_recv_data_segment_length);
  limits_.max_burst_length = clamp_length(limits_.max_burst_length);
  limits_.first_burst_length =
      std::min(clamp_length(limits_.first_burst_length), limits_.max_burst_length);
  limits_.max_connections = std::clamp<std::uint32_t>(limits_.max_connections, 1, 65535);
  limits_.max_outstanding_r2t = std::clamp<std::uint32_t>(limits_.max_outstanding_r2t, 1, 65535);
  limits_.default_time2wait = std::min<std::uint32_t>(limits_.default_time2wait, 3600);
  limits_.default_time2retain = std::min<std::uint32_t>(limits_.default_time2retain, 3600);
  limits_.error_recovery_level = 0;  // the only level implemented

  // A key the initiator never offers keeps its RFC default, bounded by what we support
  // (the key's result function applied to the default and our value).
  params_.target_max_recv_data_segment_length = limits_.max_recv_data_segment_length;
  for (const auto& k : kNumericKeys) {
    params_.*k.field = combine(k.result, params_.*k.field, limits_.*k.ours);
  }
  params_.first_burst_length = std::min(params_.first_burst_length, params_.max_burst_length);
  for (const auto& k : kBooleanKeys) {
    bool ours = k.ours_setting ? limits_.*k.ours_setting : k.ours;
    params_.*k.field = combine(k.result, params_.*k.field, ours);
  }
  authenticated_ = accepts_auth_method("None");
}

LoginNegotiator::~LoginNegotiator() = default;

bool LoginNegotiator::accepts_auth_method(std::string_view method) const {
  // A session with a CHAP policy accepts CHAP only; one without, what the limits list
  // among the methods this negotiator implements without a policy ("None").
  if (method == "CHAP") return auth_policy_.has_value();
  if (method != "None" || auth_policy_) return false;
  return std::find(limits_.auth_methods.begin(), limits_.auth_methods.end(), method) !=
         limits_.auth_methods.end();
}

bool LoginNegotiator::auth_pending() const {
  return chap_ && chap_->status() == ChapExchange::Status::in_progress;
}

NegotiationError LoginNegotiator::fail(NegotiationError e, std::string detail) {
  error_ = e;
  detail_ = std::move(detail);
  return e;
}

std::string LoginNegotiator::unmet_digest_requirement() const {
  if (params_.session_type != SessionType::normal) return "";
  if (limits_.require_header_digest && !params_.header_digest) {
    return "the initiator did not offer HeaderDigest=CRC32C and this target requires it "
           "(header_digest = \"required\")";
  }
  if (limits_.require_data_digest && !params_.data_digest) {
    return "the initiator did not offer DataDigest=CRC32C and this target requires it "
           "(data_digest = \"required\")";
  }
  return "";
}

NegotiationError LoginNegotiator::negotiate_digest(const KeyValue& kv,
                                                   std::vector<Answer>& answers) {
  const bool header = kv.key == "HeaderDigest";
  // A discovery session carries no data worth a digest: "required" is for normal sessions.
  const bool required = params_.session_type == SessionType::normal &&
                        (header ? limits_.require_header_digest : limits_.require_data_digest);
  const bool crc_allowed =
      required || (header ? limits_.allow_header_digest : limits_.allow_data_digest);
  bool SessionParams::*field = header ? &SessionParams::header_digest : &SessionParams::data_digest;
  // RFC 7143 §6.2: the first value of the initiator's list that the target supports.
  for (std::string_view option : split_list(kv.value)) {
    if ((option == "None" && !required) || (option == "CRC32C" && crc_allowed)) {
      params_.*field = option == "CRC32C";
      answers.push_back({kv.key, std::string(option)});
      return NegotiationError::none;
    }
  }
  // Answering Reject would leave the key at None, which an initiator that offered only
  // CRC32C cannot accept (Linux fails its login), while an initiator that offered only None
  // would go on without the digest the target requires. Either way no usable session
  // comes of it, so end the login now and say why (RFC 7143 §6.2 allows terminating).
  const char* setting = required      ? "requires CRC32C"
                        : crc_allowed ? "allows None and CRC32C"
                                      : "allows None only";
  return fail(NegotiationError::no_acceptable_value,
              "the initiator offered " + kv.key + "=" + kv.value + " and this target " + setting +
                  " (" + (header ? "header_digest" : "data_digest") + " = \"" +
                  (required      ? "required"
                   : crc_allowed ? "allowed"
                                 : "never") +
                  "\")");
}

void LoginNegotiator::reject(const KeyValue& kv, std::vector<Answer>& answers,
                             std::string_view why) {
  // A rejected offer leaves the key at its default; the initiator may offer it again.
  seen_.erase(kv.key);
  answers.push_back({kv.key, "Reject"});
  detail_ = "rejected " + kv.key + "=" + kv.value + ": " + std::string(why);
}

NegotiationError LoginNegotiator::negotiate(std::uint8_t stage, const std::vector<KeyValue>& keys,
                                            std::string& response) {
  if (error_ != NegotiationError::none) return error_;
  if (stage != 0 && stage != 1) {
    return fail(NegotiationError::initiator_error,
                "login stage " + std::to_string(stage) + " carries no keys");
  }
  const bool first = requests_++ == 0;

  if (first) {
    // Leading keys decide how the rest of this request is read, wherever they appear in it.
    const KeyValue* initiator_name = nullptr;
    const KeyValue* target_name = nullptr;
    const KeyValue* session_type = nullptr;
    for (const auto& kv : keys) {
      if (kv.key == "InitiatorName" && !initiator_name) initiator_name = &kv;
      if (kv.key == "TargetName" && !target_name) target_name = &kv;
      if (kv.key == "SessionType" && !session_type) session_type = &kv;
    }
    if (!initiator_name) {
      return fail(NegotiationError::missing_parameter, "InitiatorName missing in first login");
    }
    if (initiator_name->value.empty() || initiator_name->value.size() > kMaxNameLength) {
      return fail(NegotiationError::initiator_error,
                  "invalid InitiatorName '" + initiator_name->value + "'");
    }
    params_.initiator_name = initiator_name->value;
    if (session_type) {
      if (session_type->value == "Discovery") {
        params_.session_type = SessionType::discovery;
      } else if (session_type->value != "Normal") {
        return fail(NegotiationError::initiator_error,
                    "invalid SessionType '" + session_type->value + "'");
      }
    }
    if (target_name) {
      if (target_name->value.empty() || target_name->value.size() > kMaxNameLength) {
        return fail(NegotiationError::initiator_error,
                    "invalid TargetName '" + target_name->value + "'");
      }
      params_.target_name = target_name->value;
    } else if (params_.session_type == SessionType::normal) {
      return fail(NegotiationError::missing_parameter,
                  "TargetName missing in first login of a normal session");
    }
    if (auth_lookup_) {
      auth_policy_ = auth_lookup_(params_.session_type, params_.target_name);
      authenticated_ = accepts_auth_method("None");
    }
  }

  if (stage == 1 && !authenticated_) {
    return fail(NegotiationError::auth_failed,
                "operational stage reached without authentication (AuthMethod not negotiated)");
  }

  std::vector<Answer> answers;
  NegotiationError result = NegotiationError::none;
  chap_keys_.clear();
  for (const auto& kv : keys) {
    result = handle(stage, first, kv, answers);
    if (result != NegotiationError::none) break;
  }
  if (result == NegotiationError::none && !chap_keys_.empty()) {
    // The CHAP keys of a request are one step of the exchange (CHAP_N and CHAP_R together).
    std::vector<std::pair<std::string, std::string>> chap_answers;
    ChapExchange::Status st = chap_->step(chap_keys_, chap_answers);
    for (auto& [k, v] : chap_answers) answers.push_back({std::move(k), std::move(v)});
    if (st == ChapExchange::Status::failed) {
      result = fail(NegotiationError::auth_failed, chap_->detail());
    } else if (st == ChapExchange::Status::done) {
      authenticated_ = true;
    }
  }
  chap_keys_.clear();

  // FirstBurstLength never exceeds MaxBurstLength, whichever was negotiated first.
  params_.first_burst_length = std::min(params_.first_burst_length, params_.max_burst_length);

  for (const auto& a : answers) {
    if (a.number) {
      append_key(response, a.key, std::to_string(params_.*a.number));
    } else if (a.flag) {
      append_key(response, a.key, params_.*a.flag ? "Yes" : "No");
    } else {
      append_key(response, a.key, a.text);
    }
  }
  if (result == NegotiationError::none && params_.session_type == SessionType::normal &&
      !sent_tpgt_) {
    append_key(response, "TargetPortalGroupTag", std::to_string(portal_group_tag_));
    sent_tpgt_ = true;
  }
  return result;
}

NegotiationError LoginNegotiator::handle(std::uint8_t stage, bool first, const KeyValue& kv,
                                         std::vector<Answer>& answers) {
  const std::string& key = kv.key;
  if (!seen_.insert(key).second) {
    return fail(NegotiationError::initiator_error, "key " + key + " sent more than once");
  }
  const bool discovery = params_.session_type == SessionType::discovery;

  // Leading, declarative keys: taken in negotiate() from the first request; never answered.
  if (key == "InitiatorName" || key == "TargetName" || key == "SessionType") {
    if (!first) {
      return fail(NegotiationError::initiator_error, key + " after the first login request");
    }
    return NegotiationError::none;
  }
  if (key == "InitiatorAlias") {
    params_.initiator_alias = kv.value;
    return NegotiationError::none;
  }
  if (key == "TargetAlias" || key == "TargetAddress" || key == "TargetPortalGroupTag") {
    return fail(NegotiationError::initiator_error, key + " is declared by targets only");
  }

  // Security keys.
  if (key == "AuthMethod") {
    if (stage != 0) {
      return fail(NegotiationError::initiator_error, "AuthMethod outside the security stage");
    }
    for (std::string_view option : split_list(kv.value)) {
      if (accepts_auth_method(option)) {
        auth_method_ = std::string(option);
        if (auth_method_ == "CHAP") {
          authenticated_ = false;  // until the CHAP exchange succeeds
          chap_ = std::make_unique<ChapExchange>(*auth_policy_);
        } else {
          authenticated_ = true;  // "None" completes at once
        }
        answers.push_back({key, auth_method_});
        return NegotiationError::none;
      }
    }
    answers.push_back({key, "Reject"});
    authenticated_ = false;
    return fail(NegotiationError::auth_failed, "no acceptable AuthMethod in '" + kv.value + "'");
  }
  if (is_chap_key(key)) {
    if (auth_method_ != "CHAP" || !chap_) {
      return fail(NegotiationError::initiator_error, key + " sent but CHAP was not negotiated");
    }
    if (stage != 0) {
      return fail(NegotiationError::initiator_error, key + " outside the security stage");
    }
    chap_keys_.push_back(kv);
    return NegotiationError::none;
  }

  // Operational keys (accepted in the security stage too: some initiators send them early).
  if (key == "HeaderDigest" || key == "DataDigest") return negotiate_digest(kv, answers);

  if (key == "MaxRecvDataSegmentLength") {
    auto v = parse_number(kv.value);
    if (!v || *v < kMinDataLength || *v > kMaxDataLength) {
      reject(kv, answers, "out of range 512..16777215");
      return NegotiationError::none;
    }
    params_.initiator_max_recv_data_segment_length = static_cast<std::uint32_t>(*v);
    if (!declared_mrdsl_) {
      // Declarative on each side: our answer under the same key is our own declaration.
      answers.push_back({key, {}, &SessionParams::target_max_recv_data_segment_length});
      declared_mrdsl_ = true;
    }
    return NegotiationError::none;
  }

  for (const auto& k : kNumericKeys) {
    if (key != k.name) continue;
    if (discovery && k.irrelevant_in_discovery) {
      answers.push_back({key, "Irrelevant"});
      return NegotiationError::none;
    }
    auto v = parse_number(kv.value);
    if (!v || *v < k.lo || *v > k.hi) {
      reject(kv, answers, "not a number in " + std::to_string(k.lo) + ".." + std::to_string(k.hi));
      return NegotiationError::none;
    }
    std::uint32_t value = combine(k.result, static_cast<std::uint32_t>(*v), limits_.*k.ours);
    if (k.field == &SessionParams::first_burst_length) {
      value = std::min(value, params_.max_burst_length);
    }
    params_.*k.field = value;
    answers.push_back({key, {}, k.field});
    return NegotiationError::none;
  }

  for (const auto& k : kBooleanKeys) {
    if (key != k.name) continue;
    if (discovery && k.irrelevant_in_discovery) {
      answers.push_back({key, "Irrelevant"});
      return NegotiationError::none;
    }
    auto v = parse_bool(kv.value);
    if (!v) {
      reject(kv, answers, "not Yes or No");
      return NegotiationError::none;
    }
    bool ours = k.ours_setting ? limits_.*k.ours_setting : k.ours;
    params_.*k.field = combine(k.result, *v, ours);
    answers.push_back({key, {}, nullptr, k.field});
    return NegotiationError::none;
  }

  // RFC 3720 markers, gone from RFC 7143: we never use them.
  if (key == "OFMarker" || key == "IFMarker") {
    if (!parse_bool(kv.value)) {
      reject(kv, answers, "not Yes or No");
    } else {
      answers.push_back({key, "No"});
    }
    return NegotiationError::none;
  }
  if (key == "OFMarkInt" || key == "IFMarkInt") {
    answers.push_back({key, "Irrelevant"});
    return NegotiationError::none;
  }
  if (key == "TaskReporting") {
    if (discovery) {
      answers.push_back({key, "Irrelevant"});
      return NegotiationError::none;
    }
    for (std::string_view option : split_list(kv.value)) {
      if (option == "RFC3720") {
        answers.push_back({key, "RFC3720"});
        return NegotiationError::none;
      }
    }
    reject(kv, answers, "only RFC3720 task reporting");
    return NegotiationError::none;
  }

  // X-, X# and every other key we do not know.
  answers.push_back({key, "NotUnderstood"});
  return NegotiationError::none;
}

void LoginNegotiator::finish(std::string& response) {
  if (finished_) return;
  finished_ = true;
  if (!declared_mrdsl_) {
    append_key(response, "MaxRecvDataSegmentLength",
               std::to_string(params_.target_max_recv_data_segment_length));
    declared_mrdsl_ = true;
  }
  if (params_.session_type == SessionType::normal) {
    if (!sent_tpgt_) {
      append_key(response, "TargetPortalGroupTag", std::to_string(portal_group_tag_));
      sent_tpgt_ = true;
    }
    if (!target_alias_.empty()) append_key(response, "TargetAlias", target_alias_);
  }
}

}  // namespace ringtgt::iscsi
