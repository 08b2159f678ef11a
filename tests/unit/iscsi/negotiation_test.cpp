#include "ringtgt/iscsi/negotiation.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace ringtgt::iscsi {
namespace {

using KVs = std::vector<KeyValue>;

KVs parsed(const std::string& response) {
  KVs out;
  EXPECT_EQ(parse_text(response, out), TextParseError::none);
  return out;
}

const KVs kLeadingNormal = {{"InitiatorName", "iqn.1994-05.com.redhat:node2"},
                            {"InitiatorAlias", "node2"},
                            {"SessionType", "Normal"},
                            {"TargetName", "iqn.2025-01.com.jacobgade:node2"},
                            {"AuthMethod", "None"}};

// Drives the security stage of a normal session, then returns the negotiator for the test.
struct Login {
  explicit Login(TargetLimits limits = {}, std::string alias = "storage")
      : n(std::move(limits), std::move(alias), 1) {}
  NegotiationError security(const KVs& keys = kLeadingNormal) {
    response.clear();
    return n.negotiate(0, keys, response);
  }
  NegotiationError operational(const KVs& keys) {
    response.clear();
    return n.negotiate(1, keys, response);
  }
  KVs answers() const { return parsed(response); }
  LoginNegotiator n;
  std::string response;
};

TEST(Negotiation, FirstRequestOfNormalSession) {
  Login l;
  ASSERT_EQ(l.security(), NegotiationError::none) << l.n.error_detail();
  // Declarative leading keys are not answered; TargetName is never echoed.
  EXPECT_EQ(l.answers(), (KVs{{"AuthMethod", "None"}, {"TargetPortalGroupTag", "1"}}));
  const auto& p = l.n.params();
  EXPECT_EQ(p.session_type, SessionType::normal);
  EXPECT_EQ(p.initiator_name, "iqn.1994-05.com.redhat:node2");
  EXPECT_EQ(p.initiator_alias, "node2");
  EXPECT_EQ(p.target_name, "iqn.2025-01.com.jacobgade:node2");
  EXPECT_TRUE(l.n.authenticated());
  EXPECT_EQ(l.n.auth_method(), "None");
}

TEST(Negotiation, SessionTypeDefaultsToNormal) {
  Login l;
  ASSERT_EQ(l.security({{"TargetName", "iqn.t"}, {"InitiatorName", "iqn.i"}}),
            NegotiationError::none);
  EXPECT_EQ(l.n.params().session_type, SessionType::normal);
  EXPECT_EQ(l.answers(), (KVs{{"TargetPortalGroupTag", "1"}}));
  // Skipping AuthMethod is fine while "None" is acceptable.
  ASSERT_EQ(l.operational({}), NegotiationError::none);
}

TEST(Negotiation, MissingInitiatorName) {
  Login l;
  EXPECT_EQ(l.security({{"SessionType", "Normal"}, {"TargetName", "iqn.t"}}),
            NegotiationError::missing_parameter);
  EXPECT_NE(l.n.error_detail().find("InitiatorName"), std::string::npos);
  // The error sticks.
  EXPECT_EQ(l.operational({}), NegotiationError::missing_parameter);
}

TEST(Negotiation, MissingTargetNameInNormalSession) {
  Login l;
  EXPECT_EQ(l.security({{"InitiatorName", "iqn.i"}, {"SessionType", "Normal"}}),
            NegotiationError::missing_parameter);
  EXPECT_NE(l.n.error_detail().find("TargetName"), std::string::npos);
  Login implicit;
  EXPECT_EQ(implicit.security({{"InitiatorName", "iqn.i"}}), NegotiationError::missing_parameter);
}

TEST(Negotiation, DiscoveryNeedsNoTargetName) {
  Login l;
  ASSERT_EQ(l.security({{"InitiatorName", "iqn.i"}, {"SessionType", "Discovery"}}),
            NegotiationError::none);
  EXPECT_EQ(l.n.params().session_type, SessionType::discovery);
  EXPECT_EQ(l.answers(), KVs{});  // no TargetPortalGroupTag for discovery
}

TEST(Negotiation, BadLeadingValues) {
  Login bad_type;
  EXPECT_EQ(bad_type.security({{"InitiatorName", "iqn.i"}, {"SessionType", "normal"}}),
            NegotiationError::initiator_error);
  Login empty_name;
  EXPECT_EQ(empty_name.security({{"InitiatorName", ""}, {"TargetName", "iqn.t"}}),
            NegotiationError::initiator_error);
  Login long_name;
  EXPECT_EQ(
      long_name.security({{"InitiatorName", "iqn." + std::string(220, 'a')}, {"TargetName", "t"}}),
      NegotiationError::initiator_error);
}

TEST(Negotiation, LeadingKeysOnlyInFirstRequest) {
  for (const char* key : {"InitiatorName", "TargetName", "SessionType"}) {
    Login l;
    ASSERT_EQ(l.security({{"InitiatorName", "iqn.i"}, {"TargetName", "iqn.t"}}),
              NegotiationError::none);
    EXPECT_EQ(l.operational({{key, "Normal"}}), NegotiationError::initiator_error) << key;
  }
  Login l;
  ASSERT_EQ(l.security({{"InitiatorName", "iqn.i"}, {"TargetName", "iqn.t"}}),
            NegotiationError::none);
  ASSERT_EQ(l.operational({{"InitiatorAlias", "late"}}), NegotiationError::none);
  EXPECT_EQ(l.n.params().initiator_alias, "late");
  EXPECT_EQ(l.answers(), KVs{});
}

TEST(Negotiation, LeadingKeysReadWhereverTheyAreInTheRequest) {
  Login l;
  ASSERT_EQ(
      l.security(
          {{"MaxBurstLength", "65536"}, {"InitiatorName", "iqn.i"}, {"SessionType", "Discovery"}}),
      NegotiationError::none);
  EXPECT_EQ(l.answers(), (KVs{{"MaxBurstLength", "Irrelevant"}}));
}

TEST(Negotiation, InvalidStage) {
  LoginNegotiator n({}, "", 1);
  std::string r;
  EXPECT_EQ(n.negotiate(3, {{"InitiatorName", "iqn.i"}, {"TargetName", "t"}}, r),
            NegotiationError::initiator_error);
}

struct AuthCase {
  std::vector<std::string> target_methods;
  std::string offer;
  std::string answer;
  NegotiationError error;
};

TEST(Negotiation, AuthMethodTable) {
  const AuthCase cases[] = {
      {{"None"}, "None", "None", NegotiationError::none},
      {{"None"}, "CHAP,None", "None", NegotiationError::none},
      {{"None"}, "KRB5,SRP,None,CHAP", "None", NegotiationError::none},
      {{"None"}, "CHAP", "Reject", NegotiationError::auth_failed},
      {{"None"}, "CHAP,SRP", "Reject", NegotiationError::auth_failed},
      {{"None"}, "none", "Reject", NegotiationError::auth_failed},
      {{"None"}, "", "Reject", NegotiationError::auth_failed},
      {{"CHAP"}, "None", "Reject", NegotiationError::auth_failed},
      // CHAP needs a policy from the auth lookup; without one only None can be chosen.
      {{"CHAP", "None"}, "CHAP,None", "None", NegotiationError::none},
  };
  for (const auto& c : cases) {
    TargetLimits limits;
    limits.auth_methods = c.target_methods;
    Login l(limits);
    EXPECT_EQ(
        l.security({{"InitiatorName", "iqn.i"}, {"TargetName", "iqn.t"}, {"AuthMethod", c.offer}}),
        c.error)
        << c.offer;
    ASSERT_FALSE(l.answers().empty());
    EXPECT_EQ(l.answers()[0], (KeyValue{"AuthMethod", c.answer})) << c.offer;
    EXPECT_EQ(l.n.authenticated(), c.error == NegotiationError::none) << c.offer;
  }
}

TEST(Negotiation, OperationalStageWithoutRequiredAuthentication) {
  TargetLimits limits;
  limits.auth_methods = {"CHAP"};
  Login l(limits);
  // First request straight in the operational stage.
  l.response.clear();
  EXPECT_EQ(l.n.negotiate(1, {{"InitiatorName", "iqn.i"}, {"TargetName", "iqn.t"}}, l.response),
            NegotiationError::auth_failed);
  EXPECT_FALSE(l.n.authenticated());
}

TEST(Negotiation, SecurityKeysOutOfPlace) {
  Login l;
  ASSERT_EQ(l.security({{"InitiatorName", "iqn.i"}, {"TargetName", "iqn.t"}}),
            NegotiationError::none);
  EXPECT_EQ(l.operational({{"AuthMethod", "None"}}), NegotiationError::initiator_error);

  Login chap;
  KVs keys = kLeadingNormal;
  keys.push_back({"CHAP_A", "5"});
  EXPECT_EQ(chap.security(keys), NegotiationError::initiator_error);
  EXPECT_NE(chap.n.error_detail().find("CHAP_A"), std::string::npos);
}

TEST(Negotiation, TargetDeclaredKeysFromInitiator) {
  for (const char* key : {"TargetAlias", "TargetAddress", "TargetPortalGroupTag"}) {
    Login l;
    ASSERT_EQ(l.security(), NegotiationError::none);
    EXPECT_EQ(l.operational({{key, "1"}}), NegotiationError::initiator_error) << key;
  }
}

struct OfferCase {
  const char* name;
  std::function<void(TargetLimits&)> configure;
  KVs offer;
  KVs expected;  // the answers, in order
  std::function<void(const SessionParams&)> check;
};

void none(TargetLimits&) {}
void any(const SessionParams&) {}

TEST(Negotiation, OperationalOfferTable) {
  const OfferCase cases[] = {
      {"MaxBurstLength min",
       none,
       {{"MaxBurstLength", "65536"}},
       {{"MaxBurstLength", "65536"}},
       [](const SessionParams& p) { EXPECT_EQ(p.max_burst_length, 65536u); }},
      {"MaxBurstLength bounded by ours",
       none,
       {{"MaxBurstLength", "16777215"}},
       {{"MaxBurstLength", "1048576"}},
       [](const SessionParams& p) { EXPECT_EQ(p.max_burst_length, 1048576u); }},
      {"MaxBurstLength=0",
       none,
       {{"MaxBurstLength", "0"}},
       {{"MaxBurstLength", "Reject"}},
       [](const SessionParams& p) { EXPECT_EQ(p.max_burst_length, 262144u); }},
      {"MaxBurstLength=511",
       none,
       {{"MaxBurstLength", "511"}},
       {{"MaxBurstLength", "Reject"}},
       any},
      {"MaxBurstLength=512", none, {{"MaxBurstLength", "512"}}, {{"MaxBurstLength", "512"}}, any},
      {"MaxBurstLength=2^24",
       none,
       {{"MaxBurstLength", "16777216"}},
       {{"MaxBurstLength", "Reject"}},
       [](const SessionParams& p) { EXPECT_EQ(p.max_burst_length, 262144u); }},
      {"MaxBurstLength non-numeric",
       none,
       {{"MaxBurstLength", "lots"}},
       {{"MaxBurstLength", "Reject"}},
       any},
      {"MaxBurstLength empty", none, {{"MaxBurstLength", ""}}, {{"MaxBurstLength", "Reject"}}, any},
      {"MaxBurstLength negative",
       none,
       {{"MaxBurstLength", "-1"}},
       {{"MaxBurstLength", "Reject"}},
       any},
      {"MaxBurstLength overflow",
       none,
       {{"MaxBurstLength", "99999999999999999999999"}},
       {{"MaxBurstLength", "Reject"}},
       any},
      {"MaxBurstLength hex",
       none,
       {{"MaxBurstLength", "0x10000"}},
       {{"MaxBurstLength", "65536"}},
       [](const SessionParams& p) { EXPECT_EQ(p.max_burst_length, 65536u); }},
      {"MaxBurstLength hex upper",
       none,
       {{"MaxBurstLength", "0X1fFfF"}},
       {{"MaxBurstLength", "131071"}},
       any},
      {"MaxBurstLength bare 0x",
       none,
       {{"MaxBurstLength", "0x"}},
       {{"MaxBurstLength", "Reject"}},
       any},
      {"MaxBurstLength bad hex",
       none,
       {{"MaxBurstLength", "0x1g"}},
       {{"MaxBurstLength", "Reject"}},
       any},
      {"MaxBurstLength hex overflow",
       none,
       {{"MaxBurstLength", "0x10000000000000000"}},
       {{"MaxBurstLength", "Reject"}},
       any},
      {"FirstBurstLength bounded by ours",
       none,
       {{"FirstBurstLength", "262144"}},
       {{"FirstBurstLength", "65536"}},
       [](const SessionParams& p) { EXPECT_EQ(p.first_burst_length, 65536u); }},
      {"FirstBurstLength min",
       none,
       {{"FirstBurstLength", "4096"}},
       {{"FirstBurstLength", "4096"}},
       any},
      {"FirstBurst after smaller MaxBurst",
       [](TargetLimits& t) { t.first_burst_length = 1048576; },
       {{"MaxBurstLength", "16384"}, {"FirstBurstLength", "65536"}},
       {{"MaxBurstLength", "16384"}, {"FirstBurstLength", "16384"}},
       [](const SessionParams& p) {
         EXPECT_EQ(p.max_burst_length, 16384u);
         EXPECT_EQ(p.first_burst_length, 16384u);
       }},
      {"FirstBurst before smaller MaxBurst",
       [](TargetLimits& t) { t.first_burst_length = 1048576; },
       {{"FirstBurstLength", "65536"}, {"MaxBurstLength", "16384"}},
       {{"FirstBurstLength", "16384"}, {"MaxBurstLength", "16384"}},
       [](const SessionParams& p) {
         EXPECT_EQ(p.max_burst_length, 16384u);
         EXPECT_EQ(p.first_burst_length, 16384u);
       }},
      {"InitialR2T=No with ours No",
       none,
       {{"InitialR2T", "No"}},
       {{"InitialR2T", "No"}},
       [](const SessionParams& p) { EXPECT_FALSE(p.initial_r2t); }},
      {"InitialR2T=Yes with ours No",
       none,
       {{"InitialR2T", "Yes"}},
       {{"InitialR2T", "Yes"}},
       [](const SessionParams& p) { EXPECT_TRUE(p.initial_r2t); }},
      {"InitialR2T=No with ours Yes",
       [](TargetLimits& t) { t.initial_r2t = true; },
       {{"InitialR2T", "No"}},
       {{"InitialR2T", "Yes"}},
       [](const SessionParams& p) { EXPECT_TRUE(p.initial_r2t); }},
      {"InitialR2T lower case",
       none,
       {{"InitialR2T", "yes"}},
       {{"InitialR2T", "Reject"}},
       [](const SessionParams& p) { EXPECT_TRUE(p.initial_r2t); }},
      {"InitialR2T numeric", none, {{"InitialR2T", "1"}}, {{"InitialR2T", "Reject"}}, any},
      {"ImmediateData=Yes",
       none,
       {{"ImmediateData", "Yes"}},
       {{"ImmediateData", "Yes"}},
       [](const SessionParams& p) { EXPECT_TRUE(p.immediate_data); }},
      {"ImmediateData=No",
       none,
       {{"ImmediateData", "No"}},
       {{"ImmediateData", "No"}},
       [](const SessionParams& p) { EXPECT_FALSE(p.immediate_data); }},
      {"ImmediateData=Yes with ours No",
       [](TargetLimits& t) { t.immediate_data = false; },
       {{"ImmediateData", "Yes"}},
       {{"ImmediateData", "No"}},
       [](const SessionParams& p) { EXPECT_FALSE(p.immediate_data); }},
      {"ImmediateData empty", none, {{"ImmediateData", ""}}, {{"ImmediateData", "Reject"}}, any},
      {"MaxConnections",
       none,
       {{"MaxConnections", "8"}},
       {{"MaxConnections", "1"}},
       [](const SessionParams& p) { EXPECT_EQ(p.max_connections, 1u); }},
      {"MaxConnections=0", none, {{"MaxConnections", "0"}}, {{"MaxConnections", "Reject"}}, any},
      {"DefaultTime2Wait max",
       none,
       {{"DefaultTime2Wait", "0"}},
       {{"DefaultTime2Wait", "2"}},
       [](const SessionParams& p) { EXPECT_EQ(p.default_time2wait, 2u); }},
      {"DefaultTime2Wait larger",
       none,
       {{"DefaultTime2Wait", "10"}},
       {{"DefaultTime2Wait", "10"}},
       any},
      {"DefaultTime2Wait=3601",
       none,
       {{"DefaultTime2Wait", "3601"}},
       {{"DefaultTime2Wait", "Reject"}},
       any},
      {"DefaultTime2Retain min",
       none,
       {{"DefaultTime2Retain", "20"}},
       {{"DefaultTime2Retain", "0"}},
       [](const SessionParams& p) { EXPECT_EQ(p.default_time2retain, 0u); }},
      {"MaxOutstandingR2T", none, {{"MaxOutstandingR2T", "16"}}, {{"MaxOutstandingR2T", "1"}}, any},
      {"MaxOutstandingR2T ours 4",
       [](TargetLimits& t) { t.max_outstanding_r2t = 4; },
       {{"MaxOutstandingR2T", "2"}},
       {{"MaxOutstandingR2T", "2"}},
       [](const SessionParams& p) { EXPECT_EQ(p.max_outstanding_r2t, 2u); }},
      {"MaxOutstandingR2T=0",
       none,
       {{"MaxOutstandingR2T", "0"}},
       {{"MaxOutstandingR2T", "Reject"}},
       any},
      {"DataPDUInOrder=No",
       none,
       {{"DataPDUInOrder", "No"}},
       {{"DataPDUInOrder", "Yes"}},
       [](const SessionParams& p) { EXPECT_TRUE(p.data_pdu_in_order); }},
      {"DataSequenceInOrder=No",
       none,
       {{"DataSequenceInOrder", "No"}},
       {{"DataSequenceInOrder", "Yes"}},
       [](const SessionParams& p) { EXPECT_TRUE(p.data_sequence_in_order); }},
      {"ErrorRecoveryLevel",
       none,
       {{"ErrorRecoveryLevel", "2"}},
       {{"ErrorRecoveryLevel", "0"}},
       [](const SessionParams& p) { EXPECT_EQ(p.error_recovery_level, 0u); }},
      {"ErrorRecoveryLevel=3",
       none,
       {{"ErrorRecoveryLevel", "3"}},
       {{"ErrorRecoveryLevel", "Reject"}},
       any},
      {"HeaderDigest unknown option skipped",
       none,
       {{"HeaderDigest", "MD5,CRC32C"}},
       {{"HeaderDigest", "CRC32C"}},
       any},
      {"Each digest key answered on its own",
       [](TargetLimits& t) { t.allow_header_digest = false; },
       {{"HeaderDigest", "CRC32C,None"}, {"DataDigest", "CRC32C,None"}},
       {{"HeaderDigest", "None"}, {"DataDigest", "CRC32C"}},
       [](const SessionParams& p) {
         EXPECT_FALSE(p.header_digest);
         EXPECT_TRUE(p.data_digest);
       }},
      {"Markers",
       none,
       {{"IFMarker", "Yes"}, {"OFMarker", "No"}, {"OFMarkInt", "2048~8192"}, {"IFMarkInt", "1"}},
       {{"IFMarker", "No"},
        {"OFMarker", "No"},
        {"OFMarkInt", "Irrelevant"},
        {"IFMarkInt", "Irrelevant"}},
       any},
      {"Marker malformed", none, {{"IFMarker", "Maybe"}}, {{"IFMarker", "Reject"}}, any},
      {"TaskReporting",
       none,
       {{"TaskReporting", "ResponseFence,RFC3720"}},
       {{"TaskReporting", "RFC3720"}},
       any},
      {"Unknown keys",
       none,
       {{"X-com.example.feature", "1"}, {"X#vendor", "2"}, {"Bogus", "3"}, {"SendTargets", "All"}},
       {{"X-com.example.feature", "NotUnderstood"},
        {"X#vendor", "NotUnderstood"},
        {"Bogus", "NotUnderstood"},
        {"SendTargets", "NotUnderstood"}},
       any},
      {"MaxRecvDataSegmentLength declared",
       none,
       {{"MaxRecvDataSegmentLength", "65536"}},
       {{"MaxRecvDataSegmentLength", "262144"}},
       [](const SessionParams& p) {
         EXPECT_EQ(p.initiator_max_recv_data_segment_length, 65536u);
         EXPECT_EQ(p.target_max_recv_data_segment_length, 262144u);
       }},
      {"MaxRecvDataSegmentLength above ours stays theirs",
       none,
       {{"MaxRecvDataSegmentLength", "16777215"}},
       {{"MaxRecvDataSegmentLength", "262144"}},
       [](const SessionParams& p) {
         EXPECT_EQ(p.initiator_max_recv_data_segment_length, 16777215u);
       }},
      {"MaxRecvDataSegmentLength hex",
       none,
       {{"MaxRecvDataSegmentLength", "0x1000"}},
       {{"MaxRecvDataSegmentLength", "262144"}},
       [](const SessionParams& p) { EXPECT_EQ(p.initiator_max_recv_data_segment_length, 4096u); }},
      {"MaxRecvDataSegmentLength=511",
       none,
       {{"MaxRecvDataSegmentLength", "511"}},
       {{"MaxRecvDataSegmentLength", "Reject"}},
       [](const SessionParams& p) { EXPECT_EQ(p.initiator_max_recv_data_segment_length, 8192u); }},
      {"MaxRecvDataSegmentLength=2^24",
       none,
       {{"MaxRecvDataSegmentLength", "16777216"}},
       {{"MaxRecvDataSegmentLength", "Reject"}},
       any},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    TargetLimits limits;
    c.configure(limits);
    Login l(limits);
    ASSERT_EQ(l.security(), NegotiationError::none);
    ASSERT_EQ(l.operational(c.offer), NegotiationError::none) << l.n.error_detail();
    EXPECT_EQ(l.answers(), c.expected);
    c.check(l.n.params());
  }
}

TEST(Negotiation, RejectDetailNamesTheKey) {
  Login l;
  ASSERT_EQ(l.security(), NegotiationError::none);
  ASSERT_EQ(l.operational({{"MaxBurstLength", "0"}}), NegotiationError::none);
  EXPECT_NE(l.n.error_detail().find("MaxBurstLength=0"), std::string::npos);
}

TEST(Negotiation, FirstBurstClampedByLaterMaxBurst) {
  TargetLimits limits;
  limits.first_burst_length = 1048576;
  Login l(limits);
  ASSERT_EQ(l.security(), NegotiationError::none);
  ASSERT_EQ(l.operational({{"FirstBurstLength", "131072"}}), NegotiationError::none);
  EXPECT_EQ(l.answers(), (KVs{{"FirstBurstLength", "131072"}}));
  ASSERT_EQ(l.operational({{"MaxBurstLength", "65536"}}), NegotiationError::none);
  EXPECT_EQ(l.n.params().max_burst_length, 65536u);
  EXPECT_EQ(l.n.params().first_burst_length, 65536u);
}

TEST(Negotiation, FirstBurstNeverAboveDefaultMaxBurst) {
  TargetLimits limits;
  limits.first_burst_length = 1048576;
  Login l(limits);
  ASSERT_EQ(l.security(), NegotiationError::none);
  // MaxBurstLength not offered: its default 262144 still bounds FirstBurstLength.
  ASSERT_EQ(l.operational({{"FirstBurstLength", "1048576"}}), NegotiationError::none);
  EXPECT_EQ(l.answers(), (KVs{{"FirstBurstLength", "262144"}}));
}

TEST(Negotiation, DuplicateKeys) {
  {
    Login l;
    ASSERT_EQ(l.security(), NegotiationError::none);
    EXPECT_EQ(l.operational({{"MaxBurstLength", "65536"}, {"MaxBurstLength", "65536"}}),
              NegotiationError::initiator_error);
    EXPECT_NE(l.n.error_detail().find("MaxBurstLength"), std::string::npos);
  }
  {
    Login l;
    ASSERT_EQ(
        l.security({{"InitiatorName", "iqn.i"}, {"TargetName", "iqn.t"}, {"HeaderDigest", "None"}}),
        NegotiationError::none);
    EXPECT_EQ(l.operational({{"HeaderDigest", "None"}}), NegotiationError::initiator_error);
  }
  {
    Login l;
    KVs keys = kLeadingNormal;
    keys.push_back({"InitiatorName", "iqn.other"});
    EXPECT_EQ(l.security(keys), NegotiationError::initiator_error);
  }
  {
    Login l;
    ASSERT_EQ(l.security(), NegotiationError::none);
    ASSERT_EQ(l.operational({{"X-foo", "1"}}), NegotiationError::none);
    EXPECT_EQ(l.operational({{"X-foo", "1"}}), NegotiationError::initiator_error);
  }
  {
    Login l;
    ASSERT_EQ(l.security(), NegotiationError::none);
    ASSERT_EQ(l.operational({{"MaxRecvDataSegmentLength", "8192"}}), NegotiationError::none);
    EXPECT_EQ(l.operational({{"MaxRecvDataSegmentLength", "8192"}}),
              NegotiationError::initiator_error);
  }
}

TEST(Negotiation, ReofferAfterRejectIsAllowed) {
  Login l;
  ASSERT_EQ(l.security(), NegotiationError::none);
  ASSERT_EQ(l.operational({{"MaxBurstLength", "0"}}), NegotiationError::none);
  EXPECT_EQ(l.answers(), (KVs{{"MaxBurstLength", "Reject"}}));
  ASSERT_EQ(l.operational({{"MaxBurstLength", "131072"}}), NegotiationError::none);
  EXPECT_EQ(l.answers(), (KVs{{"MaxBurstLength", "131072"}}));
  EXPECT_EQ(l.n.params().max_burst_length, 131072u);
}

TEST(Negotiation, OperationalKeysInSecurityStage) {
  Login l;
  KVs keys = kLeadingNormal;
  keys.push_back({"MaxBurstLength", "65536"});
  keys.push_back({"MaxRecvDataSegmentLength", "32768"});
  ASSERT_EQ(l.security(keys), NegotiationError::none);
  EXPECT_EQ(l.answers(), (KVs{{"AuthMethod", "None"},
                              {"MaxBurstLength", "65536"},
                              {"MaxRecvDataSegmentLength", "262144"},
                              {"TargetPortalGroupTag", "1"}}));
  EXPECT_EQ(l.n.params().initiator_max_recv_data_segment_length, 32768u);
  // Our declaration was made: finish() adds only the alias.
  std::string fin;
  l.n.finish(fin);
  EXPECT_EQ(parsed(fin), (KVs{{"TargetAlias", "storage"}}));
}

TEST(Negotiation, DiscoveryIrrelevantKeys) {
  Login l;
  ASSERT_EQ(l.security(
                {{"InitiatorName", "iqn.i"}, {"SessionType", "Discovery"}, {"AuthMethod", "None"}}),
            NegotiationError::none);
  EXPECT_EQ(l.answers(), (KVs{{"AuthMethod", "None"}}));
  const KVs irrelevant = {
      {"MaxConnections", "1"},   {"InitialR2T", "No"},          {"ImmediateData", "No"},
      {"MaxBurstLength", "512"}, {"FirstBurstLength", "512"},   {"MaxOutstandingR2T", "1"},
      {"DataPDUInOrder", "No"},  {"DataSequenceInOrder", "No"}, {"TaskReporting", "RFC3720"}};
  KVs offer = irrelevant;
  offer.push_back({"HeaderDigest", "CRC32C,None"});
  offer.push_back({"DefaultTime2Wait", "5"});
  offer.push_back({"MaxRecvDataSegmentLength", "65536"});
  ASSERT_EQ(l.operational(offer), NegotiationError::none) << l.n.error_detail();
  KVs expected;
  for (const auto& kv : irrelevant) expected.push_back({kv.key, "Irrelevant"});
  expected.push_back({"HeaderDigest", "CRC32C"});
  expected.push_back({"DefaultTime2Wait", "5"});
  expected.push_back({"MaxRecvDataSegmentLength", "262144"});
  EXPECT_EQ(l.answers(), expected);
  const auto& p = l.n.params();
  EXPECT_EQ(p.max_burst_length, 262144u);
  EXPECT_TRUE(p.immediate_data);
  EXPECT_TRUE(p.header_digest);
  std::string fin;
  l.n.finish(fin);
  EXPECT_EQ(fin, "");  // no alias nor portal group tag for discovery
}

TEST(Negotiation, DefaultsBoundedByTargetLimits) {
  {
    LoginNegotiator n({}, "", 1);
    const auto& p = n.params();
    EXPECT_EQ(p.session_type, SessionType::normal);
    EXPECT_FALSE(p.header_digest);
    EXPECT_FALSE(p.data_digest);
    EXPECT_EQ(p.max_connections, 1u);
    EXPECT_TRUE(p.initial_r2t);
    EXPECT_TRUE(p.immediate_data);
    EXPECT_EQ(p.initiator_max_recv_data_segment_length, 8192u);
    EXPECT_EQ(p.target_max_recv_data_segment_length, 262144u);
    EXPECT_EQ(p.max_burst_length, 262144u);
    EXPECT_EQ(p.first_burst_length, 65536u);
    EXPECT_EQ(p.default_time2wait, 2u);
    EXPECT_EQ(p.default_time2retain, 0u);  // min(20, ours 0)
    EXPECT_EQ(p.max_outstanding_r2t, 1u);
    EXPECT_TRUE(p.data_pdu_in_order);
    EXPECT_TRUE(p.data_sequence_in_order);
    EXPECT_EQ(p.error_recovery_level, 0u);
  }
  {
    TargetLimits limits;
    limits.max_burst_length = 131072;
    limits.first_burst_length = 16384;
    limits.immediate_data = false;
    limits.initial_r2t = true;
    limits.default_time2wait = 5;
    limits.default_time2retain = 30;
    limits.max_recv_data_segment_length = 65536;
    LoginNegotiator n(limits, "", 1);
    const auto& p = n.params();
    EXPECT_EQ(p.max_burst_length, 131072u);
    EXPECT_EQ(p.first_burst_length, 16384u);
    EXPECT_FALSE(p.immediate_data);
    EXPECT_TRUE(p.initial_r2t);
    EXPECT_EQ(p.default_time2wait, 5u);
    EXPECT_EQ(p.default_time2retain, 20u);
    EXPECT_EQ(p.target_max_recv_data_segment_length, 65536u);
  }
  {
    // Out-of-range configuration is pulled back into what RFC 7143 allows.
    TargetLimits limits;
    limits.max_recv_data_segment_length = 100;
    limits.max_burst_length = 4096;
    limits.first_burst_length = 8192;
    LoginNegotiator n(limits, "", 1);
    EXPECT_EQ(n.params().target_max_recv_data_segment_length, 512u);
    EXPECT_EQ(n.params().max_burst_length, 4096u);
    EXPECT_EQ(n.params().first_burst_length, 4096u);
  }
}

TEST(Negotiation, FinishDeclaresWhatIsMissing) {
  Login l;
  ASSERT_EQ(l.security(), NegotiationError::none);
  ASSERT_EQ(l.operational({{"MaxBurstLength", "65536"}}), NegotiationError::none);
  std::string fin;
  l.n.finish(fin);
  EXPECT_EQ(parsed(fin), (KVs{{"MaxRecvDataSegmentLength", "262144"}, {"TargetAlias", "storage"}}));
  std::string again;
  l.n.finish(again);
  EXPECT_EQ(again, "");

  Login no_alias({}, "");
  ASSERT_EQ(no_alias.security(), NegotiationError::none);
  ASSERT_EQ(no_alias.operational({{"MaxRecvDataSegmentLength", "8192"}}), NegotiationError::none);
  std::string fin2;
  no_alias.n.finish(fin2);
  EXPECT_EQ(fin2, "");
}

// A complete open-iscsi style login, byte for byte.
TEST(Negotiation, OpenIscsiLogin) {
  TargetLimits limits;
  limits.max_burst_length = 1048576;
  limits.first_burst_length = 262144;
  Login l(limits, "node2-lun");
  ASSERT_EQ(l.security(), NegotiationError::none);
  using namespace std::string_literals;
  EXPECT_EQ(l.response, "AuthMethod=None\0TargetPortalGroupTag=1\0"s);
  ASSERT_EQ(l.operational({{"HeaderDigest", "None"},
                           {"DataDigest", "None"},
                           {"DefaultTime2Wait", "2"},
                           {"DefaultTime2Retain", "0"},
                           {"IFMarker", "No"},
                           {"OFMarker", "No"},
                           {"ErrorRecoveryLevel", "0"},
                           {"InitialR2T", "No"},
                           {"ImmediateData", "Yes"},
                           {"MaxBurstLength", "16776192"},
                           {"FirstBurstLength", "262144"},
                           {"MaxOutstandingR2T", "1"},
                           {"MaxConnections", "1"},
                           {"DataPDUInOrder", "Yes"},
                           {"DataSequenceInOrder", "Yes"},
                           {"MaxRecvDataSegmentLength", "262144"}}),
            NegotiationError::none)
      << l.n.error_detail();
  l.n.finish(l.response);
  EXPECT_EQ(l.response,
            "HeaderDigest=None\0DataDigest=None\0DefaultTime2Wait=2\0DefaultTime2Retain=0\0"
            "IFMarker=No\0OFMarker=No\0ErrorRecoveryLevel=0\0InitialR2T=No\0ImmediateData=Yes\0"
            "MaxBurstLength=1048576\0FirstBurstLength=262144\0MaxOutstandingR2T=1\0"
            "MaxConnections=1\0DataPDUInOrder=Yes\0DataSequenceInOrder=Yes\0"
            "MaxRecvDataSegmentLength=262144\0TargetAlias=node2-lun\0"s);
  const auto& p = l.n.params();
  EXPECT_FALSE(p.initial_r2t);
  EXPECT_TRUE(p.immediate_data);
  EXPECT_EQ(p.max_burst_length, 1048576u);
  EXPECT_EQ(p.first_burst_length, 262144u);
  EXPECT_EQ(p.initiator_max_recv_data_segment_length, 262144u);
  EXPECT_EQ(p.default_time2retain, 0u);
}

// --- CHAP through the auth lookup ---

AuthPolicy chap_policy(bool mutual = false) {
  AuthPolicy p;
  p.initiator = {"iqn.1994-05.com.redhat:node2", "initiator-secret-1"};
  if (mutual) p.target = ChapCredentials{"iqn.2025-01.com.jacobgade:node1", "target-secret-22"};
  return p;
}

// Answers the CHAP challenge in response (the target's CHAP_I and CHAP_C) with secret.
std::string chap_answer(const KVs& response, std::string_view secret, ChapAlgorithm alg) {
  unsigned id = 0;
  std::vector<std::uint8_t> challenge;
  for (const auto& kv : response) {
    if (kv.key == "CHAP_I") id = static_cast<unsigned>(std::stoul(kv.value));
    if (kv.key == "CHAP_C") challenge = *decode_binary(kv.value);
  }
  return encode_hex(chap_response(alg, static_cast<std::uint8_t>(id), secret, challenge));
}

struct ChapLogin : Login {
  explicit ChapLogin(std::optional<AuthPolicy> p = chap_policy()) {
    n.set_auth_lookup([this, p](SessionType type, std::string_view target) {
      asked_type = type;
      asked_target = std::string(target);
      ++lookups;
      return p;
    });
  }
  SessionType asked_type = SessionType::normal;
  std::string asked_target;
  int lookups = 0;
};

TEST(Negotiation, ChapOneWayLogin) {
  ChapLogin l;
  KVs first = kLeadingNormal;
  first.back() = {"AuthMethod", "CHAP,None"};
  ASSERT_EQ(l.security(first), NegotiationError::none) << l.n.error_detail();
  EXPECT_EQ(l.lookups, 1);
  EXPECT_EQ(l.asked_type, SessionType::normal);
  EXPECT_EQ(l.asked_target, "iqn.2025-01.com.jacobgade:node2");
  EXPECT_EQ(l.answers()[0], (KeyValue{"AuthMethod", "CHAP"}));
  EXPECT_FALSE(l.n.authenticated());
  EXPECT_TRUE(l.n.auth_pending());

  ASSERT_EQ(l.security({{"CHAP_A", "7,5"}}), NegotiationError::none) << l.n.error_detail();
  KVs challenge = l.answers();
  ASSERT_EQ(challenge.size(), 3u);
  EXPECT_EQ(challenge[0], (KeyValue{"CHAP_A", "7"}));
  EXPECT_EQ(challenge[1].key, "CHAP_I");
  EXPECT_EQ(challenge[2].key, "CHAP_C");
  EXPECT_TRUE(l.n.auth_pending());

  ASSERT_EQ(
      l.security({{"CHAP_N", "iqn.1994-05.com.redhat:node2"},
                  {"CHAP_R", chap_answer(challenge, "initiator-secret-1", ChapAlgorithm::sha256)}}),
      NegotiationError::none)
      << l.n.error_detail();
  EXPECT_TRUE(l.answers().empty());
  EXPECT_TRUE(l.n.authenticated());
  EXPECT_FALSE(l.n.auth_pending());
  EXPECT_EQ(l.operational({{"MaxBurstLength", "65536"}}), NegotiationError::none);
  EXPECT_EQ(l.lookups, 1);
}

TEST(Negotiation, ChapWrongSecretFailsAuthentication) {
  ChapLogin l;
  KVs first = kLeadingNormal;
  first.back() = {"AuthMethod", "CHAP"};
  ASSERT_EQ(l.security(first), NegotiationError::none);
  ASSERT_EQ(l.security({{"CHAP_A", "5"}}), NegotiationError::none);
  EXPECT_EQ(
      l.security({{"CHAP_N", "iqn.1994-05.com.redhat:node2"},
                  {"CHAP_R", chap_answer(l.answers(), "wrong-secret-123", ChapAlgorithm::md5)}}),
      NegotiationError::auth_failed);
  EXPECT_NE(l.n.error_detail().find("wrong secret"), std::string::npos);
  EXPECT_EQ(l.n.error_detail().find("initiator-secret-1"), std::string::npos);
  EXPECT_FALSE(l.n.authenticated());
}

TEST(Negotiation, ChapMutualLogin) {
  ChapLogin l(chap_policy(true));
  KVs first = kLeadingNormal;
  first.back() = {"AuthMethod", "CHAP"};
  ASSERT_EQ(l.security(first), NegotiationError::none);
  ASSERT_EQ(l.security({{"CHAP_A", "5"}}), NegotiationError::none);
  const std::string their_challenge = "0x00112233445566778899aabbccddeeff";
  ASSERT_EQ(
      l.security({{"CHAP_N", "iqn.1994-05.com.redhat:node2"},
                  {"CHAP_R", chap_answer(l.answers(), "initiator-secret-1", ChapAlgorithm::md5)},
                  {"CHAP_I", "9"},
                  {"CHAP_C", their_challenge}}),
      NegotiationError::none)
      << l.n.error_detail();
  EXPECT_EQ(l.answers(),
            (KVs{{"CHAP_N", "iqn.2025-01.com.jacobgade:node1"},
                 {"CHAP_R", encode_hex(chap_response(ChapAlgorithm::md5, 9, "target-secret-22",
                                                     *decode_binary(their_challenge)))}}));
  EXPECT_TRUE(l.n.authenticated());
}

TEST(Negotiation, ChapRequiredRefusesNone) {
  ChapLogin l;
  EXPECT_EQ(l.security(), NegotiationError::auth_failed);  // AuthMethod=None
  EXPECT_EQ(l.answers()[0], (KeyValue{"AuthMethod", "Reject"}));
  EXPECT_FALSE(l.n.authenticated());

  // No AuthMethod at all, straight to the operational stage.
  ChapLogin skip;
  skip.response.clear();
  EXPECT_EQ(
      skip.n.negotiate(1, {{"InitiatorName", "iqn.i"}, {"TargetName", "iqn.t"}}, skip.response),
      NegotiationError::auth_failed);
}

TEST(Negotiation, NoPolicyKeepsNone) {
  ChapLogin l(std::nullopt);
  KVs first = kLeadingNormal;
  first.back() = {"AuthMethod", "CHAP,None"};
  ASSERT_EQ(l.security(first), NegotiationError::none);
  EXPECT_EQ(l.answers()[0], (KeyValue{"AuthMethod", "None"}));
  EXPECT_TRUE(l.n.authenticated());
  EXPECT_FALSE(l.n.auth_pending());
}

TEST(Negotiation, ChapForDiscovery) {
  ChapLogin l;
  ASSERT_EQ(l.security(
                {{"InitiatorName", "iqn.i"}, {"SessionType", "Discovery"}, {"AuthMethod", "CHAP"}}),
            NegotiationError::none);
  EXPECT_EQ(l.asked_type, SessionType::discovery);
  EXPECT_EQ(l.asked_target, "");
  EXPECT_TRUE(l.n.auth_pending());
}

TEST(Negotiation, ChapKeysOutsideTheSecurityStage) {
  ChapLogin l;
  KVs first = kLeadingNormal;
  first.back() = {"AuthMethod", "CHAP"};
  ASSERT_EQ(l.security(first), NegotiationError::none);
  // Operational stage before CHAP finished: not authenticated.
  EXPECT_EQ(l.operational({{"CHAP_A", "5"}}), NegotiationError::auth_failed);
}

TEST(Negotiation, ErrorStrings) {
  for (auto e : {NegotiationError::none, NegotiationError::initiator_error,
                 NegotiationError::missing_parameter, NegotiationError::auth_failed}) {
    EXPECT_NE(std::string(to_string(e)), "unknown");
  }
}

}  // namespace
}  // namespace ringtgt::iscsi

namespace ringtgt::iscsi {
namespace {

TEST(Negotiation, RequiredDigestsMustBeNegotiatedForANormalSession) {
  TargetLimits limits;
  limits.require_data_digest = true;
  Login silent(limits);  // never offered: the default, None, stands
  ASSERT_EQ(silent.security(), NegotiationError::none);
  EXPECT_EQ(silent.n.unmet_digest_requirement(),
            "the initiator did not offer DataDigest=CRC32C and this target requires it "
            "(data_digest = \"required\")");
  Login with(limits);
  ASSERT_EQ(with.security(), NegotiationError::none);
  ASSERT_EQ(with.operational({{"DataDigest", "None,CRC32C"}}), NegotiationError::none);
  EXPECT_EQ(with.n.unmet_digest_requirement(), "");
}

// Issue 20's table: the initiator's offer (as iscsid.conf spells it) against each
// setting, for both keys. "refused" ends the login (0x0200 from the connection).
enum class DigestSetting { allowed, never, required };

TargetLimits with_digest_setting(DigestSetting s, bool header) {
  TargetLimits t;
  bool& allow = header ? t.allow_header_digest : t.allow_data_digest;
  bool& require = header ? t.require_header_digest : t.require_data_digest;
  allow = s != DigestSetting::never;
  require = s == DigestSetting::required;
  return t;
}

TEST(Negotiation, DigestOfferTimesSettingTable) {
  const char* offers[] = {"CRC32C", "None", "CRC32C,None", "None,CRC32C"};
  struct Row {
    DigestSetting setting;
    const char* name;
    const char* answers[4];
  };
  const Row rows[] = {
      {DigestSetting::allowed, "allowed", {"CRC32C", "None", "CRC32C", "None"}},
      {DigestSetting::never, "never", {"refused", "None", "None", "None"}},
      {DigestSetting::required, "required", {"CRC32C", "refused", "CRC32C", "CRC32C"}},
  };
  for (bool header : {true, false}) {
    const std::string key = header ? "HeaderDigest" : "DataDigest";
    for (const Row& row : rows) {
      for (int i = 0; i < 4; ++i) {
        SCOPED_TRACE(key + "=" + offers[i] + " with " + row.name);
        Login l(with_digest_setting(row.setting, header));
        ASSERT_EQ(l.security(), NegotiationError::none);
        NegotiationError e = l.operational({{key, offers[i]}});
        const std::string want = row.answers[i];
        if (want == "refused") {
          EXPECT_EQ(e, NegotiationError::no_acceptable_value);
          EXPECT_NE(l.n.error_detail().find(std::string("offered ") + key + "=" + offers[i]),
                    std::string::npos)
              << l.n.error_detail();
          EXPECT_NE(l.n.error_detail().find(std::string("= \"") + row.name + "\""),
                    std::string::npos)
              << l.n.error_detail();
          continue;
        }
        ASSERT_EQ(e, NegotiationError::none) << l.n.error_detail();
        EXPECT_EQ(l.answers(), (KVs{{key, want}}));
        const auto& p = l.n.params();
        EXPECT_EQ(header ? p.header_digest : p.data_digest, want == "CRC32C");
        EXPECT_EQ(l.n.unmet_digest_requirement(), "");
      }
    }
  }
}

TEST(Negotiation, DiscoveryIsNotHeldToRequiredDigests) {
  TargetLimits limits = with_digest_setting(DigestSetting::required, true);
  Login l(limits);
  ASSERT_EQ(l.security(
                {{"InitiatorName", "iqn.i"}, {"SessionType", "Discovery"}, {"AuthMethod", "None"}}),
            NegotiationError::none);
  ASSERT_EQ(l.operational({{"HeaderDigest", "None"}}), NegotiationError::none)
      << l.n.error_detail();
  EXPECT_EQ(l.answers(), (KVs{{"HeaderDigest", "None"}}));
  EXPECT_EQ(l.n.unmet_digest_requirement(), "");
}

}  // namespace
}  // namespace ringtgt::iscsi
