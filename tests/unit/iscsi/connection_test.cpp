// The connection state machine driven byte for byte, without a socket: request
// PDUs are built by hand, fed through header_extra/on_header/on_data, and the
// queued output is checked field by field against RFC 7143.
#include "ringtgt/iscsi/connection.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ringtgt/iscsi/digest.hpp"
#include "ringtgt/iscsi/pdu.hpp"
#include "ringtgt/iscsi/text.hpp"
#include "ringtgt/reactor/buffer_pool.hpp"
#include "ringtgt/scsi/logical_unit.hpp"
#include "ringtgt/storage/memory_backend.hpp"

namespace ringtgt::iscsi {
namespace {

using Bytes = std::vector<std::uint8_t>;
using namespace std::chrono_literals;

constexpr const char* kTarget = "iqn.2025-01.com.example:t";
constexpr const char* kInitiator = "iqn.2025-01.com.example:init";
constexpr std::uint64_t kIsid = 0x400001370000ull;
constexpr std::uint16_t kTsih = 0x1234;
constexpr std::uint32_t kBlock = 512;
constexpr std::uint64_t kLunBytes = 1u << 20;

struct Failure {
  LoginFailure why;
  std::string initiator, target, detail;
};

class FakeHost final : public ConnectionHost {
 public:
  FakeHost() {
    auto backend = std::make_unique<storage::MemoryBackend>(kLunBytes);
    mem = backend.get();
    scsi::LunParams lp;
    lp.block_size = kBlock;
    lp.serial = "SN1";
    lp.naa = 0x6001405000000001ull;
    auto luns = std::make_shared<scsi::LunMap>();
    luns->add(std::make_shared<scsi::LogicalUnit>(0, lp, std::move(backend)));
    target = std::make_shared<TargetEntry>();
    target->name = kTarget;
    target->set_luns(luns);
  }

  std::shared_ptr<const TargetEntry> find_target(std::string_view name) override {
    if (name == target->name) return target;
    return nullptr;
  }
  void append_send_targets(std::string_view initiator, std::string_view which,
                           std::string& out) override {
    send_targets_initiator = std::string(initiator);
    if (which == "All" || which == target->name) {
      append_key(out, "TargetName", target->name);
      append_key(out, "TargetAddress", "10.0.0.11:3260,1");
    }
  }
  std::uint16_t session_started(const SessionParams& params, std::uint64_t isid) override {
    if (refuse_sessions) return 0;
    ++sessions;
    session_params = params;
    session_isid = isid;
    return kTsih;
  }
  void login_failed(LoginFailure why, const std::string& initiator, const std::string& target_name,
                    const std::string& detail) override {
    failures.push_back({why, initiator, target_name, detail});
  }
  void output_ready() override { ++output_ready_calls; }
  // This host's own pool and counters: no test touches the process-wide ones.
  IoBuffer acquire_buffer(std::size_t min_size) override {
    std::size_t size = std::max(min_size, reactor::BufferPool::kMinSize);
    if (buffers_in_use + size > buffer_budget) return {nullptr, size};
    buffers_in_use += size;
    return {pool.acquire(size), size};
  }
  void release_buffer(IoBuffer buffer) override {
    buffers_in_use -= buffer.size;
    pool.release(buffer.data, buffer.size);
  }
  metrics::GlobalCounters& counters() override { return stats; }
  std::uint64_t digest_errors(metrics::DigestKind kind) const {
    return stats.digest_errors[static_cast<std::size_t>(kind)].load();
  }
  void after_reinstated_session(std::function<void()> ready) override {
    if (hold_reinstated)
      reinstated_ready = std::move(ready);
    else
      ready();
  }

  std::shared_ptr<TargetEntry> target;
  storage::MemoryBackend* mem = nullptr;
  reactor::BufferPool pool;
  std::size_t buffer_budget = std::numeric_limits<std::size_t>::max();
  std::size_t buffers_in_use = 0;
  metrics::GlobalCounters stats;
  std::vector<Failure> failures;
  int output_ready_calls = 0;
  int sessions = 0;
  bool refuse_sessions = false;  // as the registry does past a session limit
  SessionParams session_params;
  std::uint64_t session_isid = 0;
  std::string send_targets_initiator;
  // A reinstatement whose old session still has commands in the backend.
  bool hold_reinstated = false;
  std::function<void()> reinstated_ready;
};

// One PDU the connection queued, copied out before it was given back.
struct Out {
  Bhs bhs;
  Bytes data;
  std::uint8_t header_len = 0;
  std::uint32_t header_digest = 0;
  Bytes trailer;
  Opcode op() const { return bhs.opcode(); }
  std::map<std::string, std::string> keys() const {
    std::vector<KeyValue> kvs;
    EXPECT_EQ(parse_text(data.data(), data.size(), kvs), TextParseError::none);
    std::map<std::string, std::string> m;
    for (auto& kv : kvs) m[kv.key] = kv.value;
    return m;
  }
};

struct LoginOptions {
  std::string session_type = "Normal";
  std::string target = kTarget;
  std::string initiator = kInitiator;
  std::uint32_t mrdsl = 262144;  // the initiator's MaxRecvDataSegmentLength
  std::string initial_r2t = "No";
  std::string immediate_data = "Yes";
  std::uint32_t max_burst = 262144;
  std::uint32_t first_burst = 65536;
  std::uint32_t max_outstanding_r2t = 1;
  std::string header_digest = "None";
  std::string data_digest = "None";
};

Bytes cdb_rw10(std::uint8_t op, std::uint32_t lba, std::uint16_t blocks) {
  Bytes c(16, 0);
  c[0] = op;
  put_be32(&c[2], lba);
  put_be16(&c[7], blocks);
  return c;
}
Bytes read10(std::uint32_t lba, std::uint16_t blocks) {
  return cdb_rw10(0x28, lba, blocks);
}
Bytes write10(std::uint32_t lba, std::uint16_t blocks) {
  return cdb_rw10(0x2a, lba, blocks);
}
Bytes inquiry(std::uint16_t alloc) {
  Bytes c(16, 0);
  c[0] = 0x12;
  put_be16(&c[3], alloc);
  return c;
}

Bytes pattern(std::size_t n, std::uint8_t seed) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(seed + i * 7 + (i >> 9));
  return b;
}

class Driver {
 public:
  explicit Driver(ConnectionSettings s = {}) : settings(std::move(s)) {
    conn = std::make_unique<Connection>(host, settings, "127.0.0.1:50000", now);
  }

  // Feeds one PDU; false when the connection wants to close (on_header nullopt).
  bool send(Bhs bhs, const Bytes& data = {}, bool corrupt_header_digest = false) {
    bhs.set_data_segment_length(static_cast<std::uint32_t>(data.size()));
    Bytes header(bhs.bytes.begin(), bhs.bytes.end());
    std::uint32_t extra = conn->header_extra(header.data());
    EXPECT_EQ(extra, hdr_digest ? kDigestSize : 0u);
    if (hdr_digest) {
      std::uint32_t d = crc32c(header.data(), kBhsSize);
      if (corrupt_header_digest) d ^= 1;
      header.resize(kBhsSize + kDigestSize);
      store_digest(&header[kBhsSize], d);
    }
    auto plan = conn->on_header(header.data(), static_cast<std::uint32_t>(header.size()), now);
    if (!plan) return false;
    EXPECT_EQ(plan->len, data.size());
    if (plan->dest != nullptr && !data.empty()) std::memcpy(plan->dest, data.data(), data.size());
    Bytes trailer(padded(static_cast<std::uint32_t>(data.size())) - data.size(), 0);
    if (data_digest && !data.empty()) {
      trailer.resize(trailer.size() + kDigestSize);
      store_digest(&trailer[trailer.size() - kDigestSize], data_digest_of(data));
    }
    EXPECT_EQ(plan->trailer_len, trailer.size());
    conn->on_data(trailer.data(), static_cast<std::uint32_t>(trailer.size()));
    return true;
  }

  static std::uint32_t data_digest_of(const Bytes& data) {
    return iscsi::data_digest(data.data(), data.size());
  }

  // Takes the queued output and gives every PDU back as sent.
  std::vector<Out> drain() {
    std::vector<Out> out;
    for (OutPdu* p = conn->take_output(); p;) {
      OutPdu* next = p->next;
      Out o;
      o.bhs = p->bhs;
      o.header_len = p->header_len;
      o.header_digest = load_digest(p->header_digest);
      if (p->data_len) o.data.assign(p->data, p->data + p->data_len);
      o.trailer.assign(p->trailer, p->trailer + p->trailer_len);
      EXPECT_EQ(o.bhs.data_segment_length(), p->data_len);
      out.push_back(std::move(o));
      conn->sent(p);
      p = next;
    }
    return out;
  }

  Out only_one() {
    auto out = drain();
    EXPECT_EQ(out.size(), 1u);
    if (out.empty()) return {};
    return out.front();
  }

  static Bhs login_request(LoginStage csg, LoginStage nsg, bool transit, std::uint32_t cmd_sn,
                           std::uint32_t exp_stat_sn) {
    std::uint8_t flags =
        static_cast<std::uint8_t>((transit ? 0x80 : 0) | static_cast<unsigned>(csg) << 2 |
                                  (transit ? static_cast<unsigned>(nsg) : 0));
    Bhs b = Bhs::make(Opcode::login_request, flags);
    b.set_immediate(true);
    b.bytes[2] = 0;  // version max
    b.bytes[3] = 0;  // version min
    b.set_isid(kIsid);
    b.set_tsih(0);
    b.set_itt(0x11);
    b.set_u16(20, 0);  // CID
    b.set_u32(24, cmd_sn);
    b.set_u32(28, exp_stat_sn);
    return b;
  }

  static Bytes text(std::initializer_list<std::pair<std::string, std::string>> kvs) {
    std::string s;
    for (auto& [k, v] : kvs) append_key(s, k, v);
    return Bytes(s.begin(), s.end());
  }

  // Security then operational stage, into full feature phase. Returns both responses.
  std::vector<Out> login(const LoginOptions& o = {}) {
    std::string sec;
    append_key(sec, "InitiatorName", o.initiator);
    if (o.session_type == "Normal") append_key(sec, "TargetName", o.target);
    append_key(sec, "SessionType", o.session_type);
    append_key(sec, "AuthMethod", "None");
    std::vector<Out> all;
    EXPECT_TRUE(send(
        login_request(LoginStage::security, LoginStage::operational, true, cmd_sn, exp_stat_sn),
        Bytes(sec.begin(), sec.end())));
    auto r1 = drain();
    EXPECT_EQ(r1.size(), 1u);
    if (r1.empty()) return all;
    all.push_back(r1[0]);
    exp_stat_sn = r1[0].bhs.stat_sn() + 1;

    std::string op;
    append_key(op, "HeaderDigest", o.header_digest);
    append_key(op, "DataDigest", o.data_digest);
    append_key(op, "MaxRecvDataSegmentLength", std::to_string(o.mrdsl));
    if (o.session_type == "Normal") {
      append_key(op, "InitialR2T", o.initial_r2t);
      append_key(op, "ImmediateData", o.immediate_data);
      append_key(op, "MaxBurstLength", std::to_string(o.max_burst));
      append_key(op, "FirstBurstLength", std::to_string(o.first_burst));
      append_key(op, "MaxOutstandingR2T", std::to_string(o.max_outstanding_r2t));
    }
    append_key(op, "ErrorRecoveryLevel", "0");
    EXPECT_TRUE(send(
        login_request(LoginStage::operational, LoginStage::full_feature, true, cmd_sn, exp_stat_sn),
        Bytes(op.begin(), op.end())));
    auto r2 = drain();
    EXPECT_EQ(r2.size(), 1u);
    if (r2.empty()) return all;
    all.push_back(r2[0]);
    exp_stat_sn = r2[0].bhs.stat_sn() + 1;
    EXPECT_TRUE(conn->full_feature());
    hdr_digest = o.header_digest == "CRC32C";
    data_digest = o.data_digest == "CRC32C";
    return all;
  }

  Bhs command(std::uint32_t itt, const Bytes& cdb, std::uint32_t edtl, bool read, bool write,
              bool final = true, bool immediate = false) {
    std::uint8_t flags = static_cast<std::uint8_t>((final ? 0x80 : 0) | (read ? 0x40 : 0) |
                                                   (write ? 0x20 : 0) | 0x01 /* simple */);
    Bhs b = Bhs::make(Opcode::scsi_command, flags);
    b.set_immediate(immediate);
    b.set_lun_field(0);
    b.set_itt(itt);
    b.set_u32(20, edtl);
    b.set_u32(24, immediate ? cmd_sn : cmd_sn++);
    b.set_u32(28, exp_stat_sn);
    std::memcpy(&b.bytes[32], cdb.data(), 16);
    return b;
  }

  Bhs data_out(std::uint32_t itt, std::uint32_t ttt, std::uint32_t data_sn, std::uint32_t offset,
               bool final) {
    Bhs b = Bhs::make(Opcode::data_out, final ? 0x80 : 0);
    b.set_itt(itt);
    b.set_ttt(ttt);
    b.set_u32(28, exp_stat_sn);
    b.set_data_sn(data_sn);
    b.set_buffer_offset(offset);
    return b;
  }

  Bhs nop_out(std::uint32_t itt, std::uint32_t ttt, bool immediate = true) {
    Bhs b = Bhs::make(Opcode::nop_out, 0x80);
    b.set_immediate(immediate);
    b.set_itt(itt);
    b.set_ttt(ttt);
    b.set_u32(24, cmd_sn);
    if (!immediate && itt != kReservedTag) ++cmd_sn;
    b.set_u32(28, exp_stat_sn);
    return b;
  }

  Bhs tmf(TmfFunction fn, std::uint32_t itt, std::uint64_t lun_field, std::uint32_t ref_itt,
          std::uint32_t ref_cmd_sn) {
    Bhs b = Bhs::make(Opcode::task_mgmt_request, 0x80 | static_cast<std::uint8_t>(fn));
    b.set_immediate(true);
    b.set_lun_field(lun_field);
    b.set_itt(itt);
    b.set_u32(20, ref_itt);
    b.set_u32(24, cmd_sn);
    b.set_u32(28, exp_stat_sn);
    b.set_u32(32, ref_cmd_sn);
    return b;
  }

  FakeHost host;
  ConnectionSettings settings;
  Clock::time_point now{};
  std::unique_ptr<Connection> conn;
  std::uint32_t cmd_sn = 1;
  std::uint32_t exp_stat_sn = 7;
  bool hdr_digest = false, data_digest = false;
};

// ------------------------------------------------------------------ login

TEST(ConnectionLogin, FullLoginThroughOperationalStage) {
  Driver d;
  auto r = d.login();
  ASSERT_EQ(r.size(), 2u);

  const Out& sec = r[0];
  EXPECT_EQ(sec.op(), Opcode::login_response);
  EXPECT_EQ(sec.bhs.login_status(), LoginStatus::success);
  EXPECT_TRUE(sec.bhs.login_transit());
  EXPECT_FALSE(sec.bhs.login_continue());
  EXPECT_EQ(sec.bhs.login_csg(), LoginStage::security);
  EXPECT_EQ(sec.bhs.login_nsg(), LoginStage::operational);
  EXPECT_EQ(sec.bhs.version_max(), 0);
  EXPECT_EQ(sec.bhs.version_min(), 0);  // version active
  EXPECT_EQ(sec.bhs.isid(), kIsid);
  EXPECT_EQ(sec.bhs.tsih(), 0);
  EXPECT_EQ(sec.bhs.itt(), 0x11u);
  EXPECT_EQ(sec.bhs.stat_sn(), 7u);  // the initiator's ExpStatSN
  EXPECT_EQ(sec.bhs.exp_cmd_sn(), 1u);
  EXPECT_EQ(sec.bhs.max_cmd_sn(), 1u + d.settings.queue_depth - 1);
  auto k1 = sec.keys();
  EXPECT_EQ(k1["AuthMethod"], "None");
  EXPECT_EQ(k1["TargetPortalGroupTag"], "1");

  const Out& op = r[1];
  EXPECT_EQ(op.op(), Opcode::login_response);
  EXPECT_EQ(op.bhs.login_status(), LoginStatus::success);
  EXPECT_TRUE(op.bhs.login_transit());
  EXPECT_EQ(op.bhs.login_csg(), LoginStage::operational);
  EXPECT_EQ(op.bhs.login_nsg(), LoginStage::full_feature);
  EXPECT_EQ(op.bhs.tsih(), kTsih);
  EXPECT_NE(op.bhs.tsih(), 0);
  EXPECT_EQ(op.bhs.isid(), kIsid);
  EXPECT_EQ(op.bhs.stat_sn(), 8u);
  EXPECT_EQ(op.bhs.exp_cmd_sn(), 1u);
  EXPECT_EQ(op.bhs.max_cmd_sn(), 1u + d.settings.queue_depth - 1);
  auto k2 = op.keys();
  EXPECT_EQ(k2["HeaderDigest"], "None");
  EXPECT_EQ(k2["DataDigest"], "None");
  EXPECT_EQ(k2["InitialR2T"], "No");
  EXPECT_EQ(k2["ImmediateData"], "Yes");
  EXPECT_EQ(k2["MaxBurstLength"], "262144");
  EXPECT_EQ(k2["FirstBurstLength"], "65536");
  EXPECT_EQ(k2["MaxOutstandingR2T"], "1");
  EXPECT_EQ(k2["ErrorRecoveryLevel"], "0");
  EXPECT_EQ(k2["MaxRecvDataSegmentLength"],
            std::to_string(d.settings.limits.max_recv_data_segment_length));

  EXPECT_TRUE(d.conn->full_feature());
  EXPECT_FALSE(d.conn->closing());
  EXPECT_EQ(d.conn->tsih(), kTsih);
  EXPECT_EQ(d.conn->isid(), kIsid);
  EXPECT_EQ(d.conn->initiator_name(), kInitiator);
  EXPECT_EQ(d.conn->target_name(), kTarget);
  EXPECT_EQ(d.host.sessions, 1);
  EXPECT_EQ(d.host.session_isid, kIsid);
  EXPECT_EQ(d.host.session_params.initiator_name, kInitiator);
  EXPECT_EQ(d.host.session_params.initiator_max_recv_data_segment_length, 262144u);
  EXPECT_TRUE(d.host.failures.empty());
  EXPECT_GE(d.host.output_ready_calls, 2);
}

void expect_refused(Driver& d, LoginStatus status, LoginFailure why) {
  auto out = d.drain();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].op(), Opcode::login_response);
  EXPECT_EQ(out[0].bhs.login_status(), status);
  EXPECT_FALSE(out[0].bhs.login_transit());
  EXPECT_EQ(out[0].bhs.tsih(), 0);
  EXPECT_TRUE(out[0].data.empty());
  EXPECT_TRUE(d.conn->closing());
  EXPECT_FALSE(d.conn->full_feature());
  ASSERT_EQ(d.host.failures.size(), 1u);
  EXPECT_EQ(d.host.failures[0].why, why);
  EXPECT_EQ(d.host.sessions, 0);
}

TEST(ConnectionLogin, UnknownTargetIsRefusedWith0203) {
  Driver d;
  auto data = Driver::text({{"InitiatorName", kInitiator},
                            {"TargetName", "iqn.2025-01.com.example:nope"},
                            {"SessionType", "Normal"},
                            {"AuthMethod", "None"}});
  d.send(Driver::login_request(LoginStage::security, LoginStage::operational, true, 1, 0), data);
  expect_refused(d, LoginStatus::target_not_found, LoginFailure::unknown_target);
  EXPECT_EQ(static_cast<unsigned>(LoginStatus::target_not_found), 0x0203u);
  EXPECT_EQ(d.host.failures[0].initiator, kInitiator);
  EXPECT_EQ(d.host.failures[0].target, "iqn.2025-01.com.example:nope");
}

TEST(ConnectionLogin, InitiatorNotOnTheListIsRefusedWith0202) {
  Driver d;
  d.host.target->set_allowed_initiators({"iqn.2025-01.com.example:someone-else"});
  auto data = Driver::text({{"InitiatorName", kInitiator},
                            {"TargetName", kTarget},
                            {"SessionType", "Normal"},
                            {"AuthMethod", "None"}});
  d.send(Driver::login_request(LoginStage::security, LoginStage::operational, true, 1, 0), data);
  expect_refused(d, LoginStatus::authorization_failure, LoginFailure::not_authorized);
  EXPECT_EQ(d.host.failures[0].initiator, kInitiator);
}

TEST(ConnectionLogin, AllowedInitiatorLogsIn) {
  Driver d;
  d.host.target->set_allowed_initiators({"iqn.x:other", kInitiator});
  auto r = d.login();
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[1].bhs.login_status(), LoginStatus::success);
}

TEST(ConnectionLogin, MissingInitiatorNameIsRefusedWith0207) {
  Driver d;
  auto data = Driver::text({{"TargetName", kTarget}, {"AuthMethod", "None"}});
  d.send(Driver::login_request(LoginStage::security, LoginStage::operational, true, 1, 0), data);
  expect_refused(d, LoginStatus::missing_parameter, LoginFailure::bad_request);
}

TEST(ConnectionLogin, UnsupportedVersionIsRefusedWith0205) {
  Driver d;
  auto data = Driver::text(
      {{"InitiatorName", kInitiator}, {"TargetName", kTarget}, {"AuthMethod", "None"}});
  Bhs b = Driver::login_request(LoginStage::security, LoginStage::operational, true, 1, 0);
  b.bytes[2] = 2;  // version max
  b.bytes[3] = 1;  // version min
  d.send(b, data);
  expect_refused(d, LoginStatus::unsupported_version, LoginFailure::unsupported);
}

TEST(ConnectionLogin, NonLoginPduFirstCloses) {
  Driver d;
  EXPECT_FALSE(d.send(d.nop_out(1, kReservedTag)));
  EXPECT_TRUE(d.drain().empty());
  ASSERT_EQ(d.host.failures.size(), 1u);
  EXPECT_EQ(d.host.failures[0].why, LoginFailure::bad_request);
  EXPECT_FALSE(d.conn->full_feature());
}

TEST(ConnectionLogin, NonZeroTsihIsRefusedWith020a) {
  Driver d;
  auto data = Driver::text(
      {{"InitiatorName", kInitiator}, {"TargetName", kTarget}, {"AuthMethod", "None"}});
  Bhs b = Driver::login_request(LoginStage::security, LoginStage::operational, true, 1, 0);
  b.set_tsih(77);
  d.send(b, data);
  expect_refused(d, LoginStatus::session_does_not_exist, LoginFailure::unsupported);
}

// The security stage, then an operational request that asks for full feature phase.
void log_in_to_the_last_step(Driver& d) {
  ASSERT_TRUE(d.send(d.login_request(LoginStage::security, LoginStage::operational, true, 1, 7),
                     d.text({{"InitiatorName", "iqn.2025-01.com.example:init"},
                             {"TargetName", d.host.target->name},
                             {"SessionType", "Normal"},
                             {"AuthMethod", "None"}})));
  ASSERT_EQ(d.drain().size(), 1u);
  ASSERT_TRUE(d.send(d.login_request(LoginStage::operational, LoginStage::full_feature, true, 1, 8),
                     d.text({{"ErrorRecoveryLevel", "0"}})));
}

TEST(ConnectionLogin, FinalResponseWaitsForTheReinstatedSession) {
  Driver d;
  d.host.hold_reinstated = true;
  log_in_to_the_last_step(d);
  EXPECT_EQ(d.host.sessions, 1);
  EXPECT_TRUE(d.drain().empty());  // held: the old session's commands still run
  EXPECT_FALSE(d.conn->full_feature());
  ASSERT_TRUE(d.host.reinstated_ready);
  d.host.reinstated_ready();
  const Out r = d.only_one();
  EXPECT_EQ(r.op(), Opcode::login_response);
  EXPECT_EQ(r.bhs.login_status(), LoginStatus::success);
  EXPECT_TRUE(r.bhs.login_transit());
  EXPECT_EQ(r.bhs.login_csg(), LoginStage::operational);
  EXPECT_EQ(r.bhs.login_nsg(), LoginStage::full_feature);
  EXPECT_EQ(r.bhs.tsih(), kTsih);
  EXPECT_TRUE(d.conn->full_feature());
}

TEST(ConnectionLogin, HeldLoginTimesOutAndStaysSilent) {
  ConnectionSettings s;
  s.login_timeout = 5s;
  Driver d(s);
  d.host.hold_reinstated = true;
  log_in_to_the_last_step(d);
  d.conn->on_tick(d.now + 6s);
  EXPECT_TRUE(d.conn->closing());
  d.host.reinstated_ready();  // too late: nothing is sent on a closing connection
  EXPECT_TRUE(d.drain().empty());
  EXPECT_FALSE(d.conn->full_feature());
}

TEST(ConnectionLogin, TimesOutWhenLoginDoesNotComplete) {
  ConnectionSettings s;
  s.login_timeout = 5s;
  Driver d(s);
  d.conn->on_tick(d.now + 4s);
  EXPECT_FALSE(d.conn->closing());
  d.conn->on_tick(d.now + 6s);
  EXPECT_TRUE(d.conn->closing());
  ASSERT_EQ(d.host.failures.size(), 1u);
}

TEST(ConnectionDiscovery, SendTargetsAll) {
  Driver d;
  LoginOptions o;
  o.session_type = "Discovery";
  auto r = d.login(o);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[1].bhs.login_status(), LoginStatus::success);
  EXPECT_NE(r[1].bhs.tsih(), 0);
  EXPECT_EQ(d.conn->params().session_type, SessionType::discovery);
  EXPECT_TRUE(d.host.failures.empty());

  Bhs t = Bhs::make(Opcode::text_request, 0x80);
  t.set_immediate(true);
  t.set_itt(0x55);
  t.set_ttt(kReservedTag);
  t.set_u32(24, d.cmd_sn);
  t.set_u32(28, d.exp_stat_sn);
  ASSERT_TRUE(d.send(t, Driver::text({{"SendTargets", "All"}})));
  Out resp = d.only_one();
  EXPECT_EQ(resp.op(), Opcode::text_response);
  EXPECT_TRUE(resp.bhs.final_bit());
  EXPECT_FALSE(resp.bhs.flags() & 0x40);
  EXPECT_EQ(resp.bhs.itt(), 0x55u);
  EXPECT_EQ(resp.bhs.ttt(), kReservedTag);
  EXPECT_EQ(resp.bhs.stat_sn(), d.exp_stat_sn);
  EXPECT_EQ(resp.bhs.exp_cmd_sn(), d.cmd_sn);
  auto keys = resp.keys();
  EXPECT_EQ(keys["TargetName"], kTarget);
  EXPECT_EQ(keys["TargetAddress"], "10.0.0.11:3260,1");
  EXPECT_EQ(d.host.send_targets_initiator, kInitiator);
}

TEST(ConnectionDiscovery, ScsiCommandClosesTheConnection) {
  Driver d;
  LoginOptions o;
  o.session_type = "Discovery";
  d.login(o);
  EXPECT_FALSE(d.send(d.command(1, inquiry(36), 36, true, false)));
  auto out = d.drain();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].op(), Opcode::reject);
}

// ------------------------------------------------------------------ SCSI data transfer

// Reads lba..+blocks back through Data-In and returns the data.
Bytes read_back(Driver& d, std::uint32_t itt, std::uint32_t lba, std::uint16_t blocks) {
  std::uint32_t len = blocks * kBlock;
  EXPECT_TRUE(d.send(d.command(itt, read10(lba, blocks), len, true, false)));
  Bytes data;
  for (auto& o : d.drain()) {
    EXPECT_EQ(o.op(), Opcode::data_in);
    EXPECT_EQ(o.bhs.buffer_offset(), data.size());
    data.insert(data.end(), o.data.begin(), o.data.end());
  }
  return data;
}

TEST(ConnectionScsi, WriteWithImmediateDataThenReadBack) {
  Driver d;
  d.login();
  Bytes payload = pattern(4096, 3);
  std::uint32_t sn = d.cmd_sn;
  ASSERT_TRUE(d.send(d.command(0x100, write10(8, 8), 4096, false, true, true), payload));
  Out r = d.only_one();
  EXPECT_EQ(r.op(), Opcode::scsi_response);
  EXPECT_EQ(r.bhs.itt(), 0x100u);
  EXPECT_EQ(r.bhs.bytes[2], 0);  // response: completed at target
  EXPECT_EQ(r.bhs.bytes[3], 0);  // status GOOD
  EXPECT_EQ(r.bhs.flags() & 0x06, 0);
  EXPECT_EQ(r.bhs.residual(), 0u);
  EXPECT_EQ(r.bhs.exp_cmd_sn(), sn + 1);
  EXPECT_EQ(r.bhs.stat_sn(), d.exp_stat_sn);
  EXPECT_EQ(0, std::memcmp(d.host.mem->data() + 8 * kBlock, payload.data(), 4096));
  EXPECT_EQ(d.conn->tasks_in_flight(), 0u);

  EXPECT_EQ(read_back(d, 0x101, 8, 8), payload);
}

TEST(ConnectionScsi, UnsolicitedDataOutAfterImmediateData) {
  Driver d;
  d.login();  // InitialR2T=No
  Bytes payload = pattern(8192, 9);
  ASSERT_TRUE(d.send(d.command(0x200, write10(0, 16), 8192, false, true, false),
                     Bytes(payload.begin(), payload.begin() + 1024)));
  EXPECT_TRUE(d.drain().empty());  // no R2T: the rest comes unsolicited
  ASSERT_TRUE(d.send(d.data_out(0x200, kReservedTag, 0, 1024, false),
                     Bytes(payload.begin() + 1024, payload.begin() + 4096)));
  EXPECT_TRUE(d.drain().empty());
  ASSERT_TRUE(d.send(d.data_out(0x200, kReservedTag, 1, 4096, true),
                     Bytes(payload.begin() + 4096, payload.end())));
  Out r = d.only_one();
  EXPECT_EQ(r.op(), Opcode::scsi_response);
  EXPECT_EQ(r.bhs.bytes[3], 0);
  EXPECT_EQ(0, std::memcmp(d.host.mem->data(), payload.data(), payload.size()));
}

TEST(ConnectionScsi, UnsolicitedFirstBurstThenR2tForTheRest) {
  Driver d;
  LoginOptions o;
  o.first_burst = 4096;
  d.login(o);
  Bytes payload = pattern(12288, 1);
  ASSERT_TRUE(d.send(d.command(0x300, write10(0, 24), 12288, false, true, false),
                     Bytes(payload.begin(), payload.begin() + 2048)));
  EXPECT_TRUE(d.drain().empty());
  ASSERT_TRUE(d.send(d.data_out(0x300, kReservedTag, 0, 2048, true),
                     Bytes(payload.begin() + 2048, payload.begin() + 4096)));
  Out r2t = d.only_one();
  ASSERT_EQ(r2t.op(), Opcode::r2t);
  EXPECT_EQ(r2t.bhs.itt(), 0x300u);
  EXPECT_EQ(r2t.bhs.data_sn(), 0u);  // R2TSN
  EXPECT_EQ(r2t.bhs.buffer_offset(), 4096u);
  EXPECT_EQ(r2t.bhs.desired_length(), 8192u);
  ASSERT_TRUE(d.send(d.data_out(0x300, r2t.bhs.ttt(), 0, 4096, true),
                     Bytes(payload.begin() + 4096, payload.end())));
  Out resp = d.only_one();
  EXPECT_EQ(resp.op(), Opcode::scsi_response);
  EXPECT_EQ(resp.bhs.bytes[3], 0);
  EXPECT_EQ(0, std::memcmp(d.host.mem->data(), payload.data(), payload.size()));
}

TEST(ConnectionScsi, SolicitedDataWithSmallMaxBurstSendsOneR2tAtATime) {
  Driver d;
  LoginOptions o;
  o.initial_r2t = "Yes";
  o.max_burst = 4096;
  o.first_burst = 4096;
  d.login(o);
  ASSERT_TRUE(d.conn->params().initial_r2t);
  Bytes payload = pattern(16384, 5);
  std::uint32_t stat_sn = d.exp_stat_sn;
  ASSERT_TRUE(d.send(d.command(0x400, write10(100, 32), 16384, false, true, true)));
  std::vector<std::uint32_t> ttts;
  for (std::uint32_t i = 0; i < 4; ++i) {
    auto out = d.drain();
    ASSERT_EQ(out.size(), 1u) << "burst " << i;  // MaxOutstandingR2T=1
    const Out& r2t = out[0];
    ASSERT_EQ(r2t.op(), Opcode::r2t);
    EXPECT_TRUE(r2t.bhs.final_bit());
    EXPECT_EQ(r2t.bhs.itt(), 0x400u);
    EXPECT_EQ(r2t.bhs.data_sn(), i);
    EXPECT_EQ(r2t.bhs.buffer_offset(), i * 4096);
    EXPECT_EQ(r2t.bhs.desired_length(), 4096u);
    EXPECT_EQ(r2t.bhs.stat_sn(), stat_sn);  // R2T does not take a StatSN
    EXPECT_NE(r2t.bhs.ttt(), kReservedTag);
    for (auto t : ttts) EXPECT_NE(t, r2t.bhs.ttt());
    ttts.push_back(r2t.bhs.ttt());
    std::uint32_t off = i * 4096;
    // Two Data-Out PDUs per burst; no new R2T before the burst is done.
    ASSERT_TRUE(d.send(d.data_out(0x400, r2t.bhs.ttt(), 0, off, false),
                       Bytes(payload.begin() + off, payload.begin() + off + 2048)));
    EXPECT_TRUE(d.drain().empty());
    ASSERT_TRUE(d.send(d.data_out(0x400, r2t.bhs.ttt(), 1, off + 2048, true),
                       Bytes(payload.begin() + off + 2048, payload.begin() + off + 4096)));
    if (i < 3) continue;
  }
  Out resp = d.only_one();
  EXPECT_EQ(resp.op(), Opcode::scsi_response);
  EXPECT_EQ(resp.bhs.bytes[3], 0);
  EXPECT_EQ(resp.bhs.stat_sn(), stat_sn);
  EXPECT_EQ(0, std::memcmp(d.host.mem->data() + 100 * kBlock, payload.data(), payload.size()));
}

// RFC 7143 §7.12/§7.8: a Data-Out whose DataSN is out of order means one was
// lost. The rest of the sequence is taken in, then the WRITE ends with CHECK
// CONDITION (ABORTED COMMAND, 47h/05h); nothing reaches the disk, no Reject is
// sent for the sound PDU, and the connection stays.
TEST(ConnectionScsi, DataSnOutOfOrderEndsTheWriteWithCheckCondition) {
  for (std::uint32_t first_sn : {1u, 0u}) {
    Driver d;
    LoginOptions o;
    o.initial_r2t = "Yes";
    d.login(o);
    Bytes payload = pattern(4096, 9);
    ASSERT_TRUE(d.send(d.command(0x600, write10(8, 8), 4096, false, true, true)));
    Out r2t = d.only_one();
    ASSERT_EQ(r2t.op(), Opcode::r2t);
    // (1, 0): reversed; (0, 0): the second repeats the first's DataSN.
    ASSERT_TRUE(d.send(d.data_out(0x600, r2t.bhs.ttt(), first_sn, 0, false),
                       Bytes(payload.begin(), payload.begin() + 2048)));
    EXPECT_TRUE(d.drain().empty());
    ASSERT_TRUE(d.send(d.data_out(0x600, r2t.bhs.ttt(), 0, 2048, true),
                       Bytes(payload.begin() + 2048, payload.end())));
    Out resp = d.only_one();
    ASSERT_EQ(resp.op(), Opcode::scsi_response) << "DataSN " << first_sn << ", 0";
    EXPECT_EQ(resp.bhs.bytes[3], 0x02);  // CHECK CONDITION
    ASSERT_GE(resp.data.size(), 2u + 14u);
    EXPECT_EQ(resp.data[2 + 2] & 0x0f, 0x0b);  // ABORTED COMMAND
    EXPECT_EQ(resp.data[2 + 12], 0x47);
    EXPECT_EQ(resp.data[2 + 13], 0x05);
    EXPECT_FALSE(d.conn->closing());
    EXPECT_NE(0, std::memcmp(d.host.mem->data() + 8 * kBlock, payload.data(), payload.size()));
    // The session goes on: the same WRITE with proper DataSNs succeeds.
    ASSERT_TRUE(d.send(d.command(0x601, write10(8, 8), 4096, false, true, true)));
    Out again = d.only_one();
    ASSERT_EQ(again.op(), Opcode::r2t);
    ASSERT_TRUE(d.send(d.data_out(0x601, again.bhs.ttt(), 0, 0, true), payload));
    Out ok = d.only_one();
    ASSERT_EQ(ok.op(), Opcode::scsi_response);
    EXPECT_EQ(ok.bhs.bytes[3], 0);
    EXPECT_EQ(0, std::memcmp(d.host.mem->data() + 8 * kBlock, payload.data(), payload.size()));
  }
}

TEST(ConnectionScsi, MaxOutstandingR2tTwoKeepsTwoInFlight) {
  ConnectionSettings s;
  s.limits.max_outstanding_r2t = 2;
  Driver d(s);
  LoginOptions o;
  o.initial_r2t = "Yes";
  o.max_burst = 4096;
  o.max_outstanding_r2t = 2;
  d.login(o);
  ASSERT_EQ(d.conn->params().max_outstanding_r2t, 2u);
  Bytes payload = pattern(12288, 2);
  ASSERT_TRUE(d.send(d.command(0x500, write10(0, 24), 12288, false, true, true)));
  auto r = d.drain();
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].bhs.data_sn(), 0u);
  EXPECT_EQ(r[0].bhs.buffer_offset(), 0u);
  EXPECT_EQ(r[1].bhs.data_sn(), 1u);
  EXPECT_EQ(r[1].bhs.buffer_offset(), 4096u);
  EXPECT_NE(r[0].bhs.ttt(), r[1].bhs.ttt());
  // Answer the second first: the third R2T follows.
  ASSERT_TRUE(d.send(d.data_out(0x500, r[1].bhs.ttt(), 0, 4096, true),
                     Bytes(payload.begin() + 4096, payload.begin() + 8192)));
  auto r3 = d.drain();
  ASSERT_EQ(r3.size(), 1u);
  EXPECT_EQ(r3[0].op(), Opcode::r2t);
  EXPECT_EQ(r3[0].bhs.data_sn(), 2u);
  EXPECT_EQ(r3[0].bhs.buffer_offset(), 8192u);
  EXPECT_EQ(r3[0].bhs.desired_length(), 4096u);
  ASSERT_TRUE(d.send(d.data_out(0x500, r3[0].bhs.ttt(), 0, 8192, true),
                     Bytes(payload.begin() + 8192, payload.end())));
  EXPECT_TRUE(d.drain().empty());
  ASSERT_TRUE(d.send(d.data_out(0x500, r[0].bhs.ttt(), 0, 0, true),
                     Bytes(payload.begin(), payload.begin() + 4096)));
  Out resp = d.only_one();
  EXPECT_EQ(resp.op(), Opcode::scsi_response);
  EXPECT_EQ(0, std::memcmp(d.host.mem->data(), payload.data(), payload.size()));
}

TEST(ConnectionScsi, DataInSplitByInitiatorMrdslWithStatusInLastPdu) {
  Driver d;
  LoginOptions o;
  o.mrdsl = 4096;
  d.login(o);
  Bytes payload = pattern(16384, 4);
  std::memcpy(d.host.mem->data() + 4 * kBlock, payload.data(), payload.size());
  std::uint32_t stat_sn = d.exp_stat_sn;
  std::uint32_t sn = d.cmd_sn;
  ASSERT_TRUE(d.send(d.command(0x600, read10(4, 32), 16384, true, false)));
  auto out = d.drain();
  ASSERT_EQ(out.size(), 4u);
  Bytes got;
  for (std::uint32_t i = 0; i < 4; ++i) {
    const Out& p = out[i];
    EXPECT_EQ(p.op(), Opcode::data_in);
    EXPECT_EQ(p.bhs.itt(), 0x600u);
    EXPECT_EQ(p.bhs.ttt(), kReservedTag);
    EXPECT_EQ(p.bhs.data_sn(), i);
    EXPECT_EQ(p.bhs.buffer_offset(), i * 4096);
    EXPECT_EQ(p.data.size(), 4096u);
    EXPECT_EQ(p.bhs.exp_cmd_sn(), sn + 1);
    bool last = i == 3;
    EXPECT_EQ(bool(p.bhs.flags() & 0x01), last) << i;  // S
    EXPECT_EQ(bool(p.bhs.flags() & 0x80), last) << i;  // F
    if (last) {
      EXPECT_EQ(p.bhs.bytes[3], 0);
      EXPECT_EQ(p.bhs.stat_sn(), stat_sn);
      EXPECT_EQ(p.bhs.flags() & 0x06, 0);
      EXPECT_EQ(p.bhs.residual(), 0u);
    }
    got.insert(got.end(), p.data.begin(), p.data.end());
  }
  EXPECT_EQ(got, payload);
  // The next response takes the next StatSN.
  ASSERT_TRUE(d.send(d.nop_out(0x601, kReservedTag)));
  EXPECT_EQ(d.only_one().bhs.stat_sn(), stat_sn + 1);
}

TEST(ConnectionScsi, DataInSequencesEndAtMaxBurstLength) {
  Driver d;
  LoginOptions o;
  o.mrdsl = 2048;
  o.max_burst = 4096;
  d.login(o);
  ASSERT_TRUE(d.send(d.command(0x610, read10(0, 16), 8192, true, false)));
  auto out = d.drain();
  ASSERT_EQ(out.size(), 4u);
  EXPECT_FALSE(out[0].bhs.final_bit());
  EXPECT_TRUE(out[1].bhs.final_bit());  // end of the first burst
  EXPECT_FALSE(out[2].bhs.final_bit());
  EXPECT_TRUE(out[3].bhs.final_bit());
  EXPECT_TRUE(out[3].bhs.flags() & 0x01);
  EXPECT_FALSE(out[1].bhs.flags() & 0x01);
}

TEST(ConnectionScsi, InquiryWithLargerEdtlReportsUnderflow) {
  Driver d;
  d.login();
  ASSERT_TRUE(d.send(d.command(0x700, inquiry(255), 255, true, false)));
  auto out = d.drain();
  ASSERT_EQ(out.size(), 1u);
  const Out& p = out[0];
  EXPECT_EQ(p.op(), Opcode::data_in);
  ASSERT_GE(p.data.size(), 36u);
  EXPECT_LT(p.data.size(), 255u);
  EXPECT_EQ(p.data.size(), p.data[4] + 5u);  // ADDITIONAL LENGTH + 5
  EXPECT_EQ(p.bhs.flags() & 0x81, 0x81);
  EXPECT_TRUE(p.bhs.flags() & 0x02);   // U
  EXPECT_FALSE(p.bhs.flags() & 0x04);  // O
  EXPECT_EQ(p.bhs.residual(), 255u - p.data.size());
}

TEST(ConnectionScsi, ReadWithSmallerEdtlReportsOverflow) {
  Driver d;
  d.login();
  ASSERT_TRUE(d.send(d.command(0x710, read10(0, 8), 2048, true, false)));
  auto out = d.drain();
  std::uint32_t total = 0;
  for (auto& o : out) total += static_cast<std::uint32_t>(o.data.size());
  EXPECT_EQ(total, 2048u);
  ASSERT_FALSE(out.empty());
  const Out& last = out.back();
  EXPECT_TRUE(last.bhs.flags() & 0x01);
  EXPECT_TRUE(last.bhs.flags() & 0x04);  // O
  EXPECT_FALSE(last.bhs.flags() & 0x02);
  EXPECT_EQ(last.bhs.residual(), 2048u);
}

TEST(ConnectionScsi, WriteWithSmallerEdtlReportsOverflowInResponse) {
  Driver d;
  d.login();
  ASSERT_TRUE(d.send(d.command(0x720, write10(0, 8), 1024, false, true, true), pattern(1024, 0)));
  Out r = d.only_one();
  EXPECT_EQ(r.op(), Opcode::scsi_response);
  EXPECT_TRUE(r.bhs.flags() & 0x04);
  EXPECT_EQ(r.bhs.residual(), 3072u);
}

TEST(ConnectionScsi, ReadBeyondTheEndGetsCheckConditionWithSense) {
  Driver d;
  d.login();
  ASSERT_TRUE(d.send(d.command(0x730, read10(kLunBytes / kBlock, 1), 512, true, false)));
  Out r = d.only_one();
  EXPECT_EQ(r.op(), Opcode::scsi_response);
  EXPECT_EQ(r.bhs.bytes[3], 0x02);
  ASSERT_GE(r.data.size(), 2u + 14u);
  EXPECT_EQ(get_be16(r.data.data()), r.data.size() - 2);
  EXPECT_EQ(r.data[2 + 2] & 0x0f, 0x05);  // ILLEGAL REQUEST
  EXPECT_EQ(r.data[2 + 12], 0x21);        // LBA out of range
}

// ------------------------------------------------------------------ CmdSN window

Bytes tur() {
  return Bytes(16, 0);
}

TEST(ConnectionCmdSn, CommandAtExpCmdSnIsAcceptedAndAdvancesIt) {
  Driver d;
  d.login();
  std::uint32_t sn = d.cmd_sn;
  ASSERT_TRUE(d.send(d.command(1, tur(), 0, false, false)));
  Out r = d.only_one();
  EXPECT_EQ(r.op(), Opcode::scsi_response);
  EXPECT_EQ(r.bhs.exp_cmd_sn(), sn + 1);
  // The finishing task's slot already counts as free in its own response, so
  // an initiator at exactly queue_depth outstanding commands is never stalled.
  EXPECT_EQ(r.bhs.max_cmd_sn(), sn + 1 + d.settings.queue_depth - 1);
  ASSERT_TRUE(d.send(d.nop_out(0x30, kReservedTag)));
  EXPECT_EQ(d.only_one().bhs.max_cmd_sn(), sn + 1 + d.settings.queue_depth - 1);
}

TEST(ConnectionCmdSn, CommandBeyondMaxCmdSnIsIgnored) {
  ConnectionSettings s;
  s.queue_depth = 4;
  Driver d(s);
  d.login();
  std::uint32_t sn = d.cmd_sn;
  Bhs b = d.command(1, tur(), 0, false, false);
  b.set_u32(24, sn + 4);  // MaxCmdSN is sn + 3
  ASSERT_TRUE(d.send(b));
  EXPECT_TRUE(d.drain().empty());
  // The window did not move: CmdSN sn is still the one expected.
  Bhs ok = d.command(2, tur(), 0, false, false);
  ok.set_u32(24, sn);
  ASSERT_TRUE(d.send(ok));
  Out r = d.only_one();
  EXPECT_EQ(r.bhs.itt(), 2u);
  EXPECT_EQ(r.bhs.exp_cmd_sn(), sn + 1);
}

TEST(ConnectionCmdSn, CommandBelowExpCmdSnIsIgnored) {
  Driver d;
  d.login();
  ASSERT_TRUE(d.send(d.command(1, tur(), 0, false, false)));
  d.drain();
  std::uint32_t stale = d.cmd_sn - 1;
  Bhs old = d.command(2, tur(), 0, false, false);
  --d.cmd_sn;
  old.set_u32(24, stale);
  ASSERT_TRUE(d.send(old));
  EXPECT_TRUE(d.drain().empty());
}

TEST(ConnectionCmdSn, NopOutBelowExpCmdSnIsIgnored) {
  Driver d;
  d.login();
  ASSERT_TRUE(d.send(d.command(1, tur(), 0, false, false)));
  d.drain();
  std::uint32_t stale = d.cmd_sn - 1;  // already used by the command
  Bhs old = d.nop_out(9, kReservedTag, false);
  --d.cmd_sn;
  old.set_u32(24, stale);
  ASSERT_TRUE(d.send(old, Bytes{'x', 'y', 'z', 'w'}));
  auto out = d.drain();
  EXPECT_TRUE(out.empty()) << "answered with opcode "
                           << (out.empty() ? 0 : static_cast<unsigned>(out[0].op()));
}

TEST(ConnectionCmdSn, TextRequestBelowExpCmdSnIsIgnored) {
  Driver d;
  d.login();
  ASSERT_TRUE(d.send(d.command(1, tur(), 0, false, false)));
  d.drain();
  Bhs t = Bhs::make(Opcode::text_request, 0x80);
  t.set_itt(0x56);
  t.set_ttt(kReservedTag);
  t.set_u32(24, d.cmd_sn - 1);  // already used by the command
  t.set_u32(28, d.exp_stat_sn);
  ASSERT_TRUE(d.send(t, Driver::text({{"SendTargets", "All"}})));
  auto out = d.drain();
  EXPECT_TRUE(out.empty()) << "answered with opcode "
                           << (out.empty() ? 0 : static_cast<unsigned>(out[0].op()));
}

TEST(ConnectionCmdSn, ImmediateCommandDoesNotAdvanceExpCmdSn) {
  Driver d;
  d.login();
  std::uint32_t sn = d.cmd_sn;
  ASSERT_TRUE(d.send(d.command(1, tur(), 0, false, false, true, /*immediate=*/true)));
  Out r = d.only_one();
  EXPECT_EQ(r.op(), Opcode::scsi_response);
  EXPECT_EQ(r.bhs.exp_cmd_sn(), sn);
  ASSERT_TRUE(d.send(d.command(2, tur(), 0, false, false)));
  EXPECT_EQ(d.only_one().bhs.exp_cmd_sn(), sn + 1);
}

TEST(ConnectionCmdSn, MaxCmdSnShrinksWithOutstandingTasks) {
  ConnectionSettings s;
  s.queue_depth = 4;
  Driver d(s);
  LoginOptions o;
  o.initial_r2t = "Yes";
  d.login(o);
  std::uint32_t sn = d.cmd_sn;
  // A write waiting for its data holds a task.
  ASSERT_TRUE(d.send(d.command(1, write10(0, 1), 512, false, true, true)));
  Out r2t = d.only_one();
  ASSERT_EQ(r2t.op(), Opcode::r2t);
  EXPECT_EQ(r2t.bhs.exp_cmd_sn(), sn + 1);
  EXPECT_EQ(r2t.bhs.max_cmd_sn(), sn + 1 + 3 - 1);
  ASSERT_TRUE(d.send(d.command(2, write10(1, 1), 512, false, true, true)));
  Out r2t2 = d.only_one();
  EXPECT_EQ(r2t2.bhs.max_cmd_sn(), sn + 2 + 2 - 1);
  EXPECT_EQ(d.conn->tasks_in_flight(), 2u);
  // Both finish: the window opens again.
  ASSERT_TRUE(d.send(d.data_out(1, r2t.bhs.ttt(), 0, 0, true), pattern(512, 1)));
  EXPECT_EQ(d.only_one().op(), Opcode::scsi_response);
  ASSERT_TRUE(d.send(d.data_out(2, r2t2.bhs.ttt(), 0, 0, true), pattern(512, 2)));
  EXPECT_EQ(d.only_one().op(), Opcode::scsi_response);
  EXPECT_EQ(d.conn->tasks_in_flight(), 0u);
  ASSERT_TRUE(d.send(d.nop_out(0x31, kReservedTag)));
  EXPECT_EQ(d.only_one().bhs.max_cmd_sn(), sn + 2 + 4 - 1);
}

// A peer that does not read its responses keeps their tasks: the window
// closes at what the task pool holds instead of offering commands that would
// get TASK SET FULL, and a NOP-In reopens it once the responses are read.
TEST(ConnectionCmdSn, WindowNeverOffersMoreThanTheTaskPoolAndReopensWithANopIn) {
  ConnectionSettings s;
  s.queue_depth = 4;
  Driver d(s);
  d.login();
  std::vector<OutPdu*> unread;  // responses queued, not yet "sent"
  std::uint32_t last_max = 0, last_exp = 0;
  for (std::uint32_t i = 0; i < 8; ++i) {  // the pool: queue depth + 4 for immediate commands
    ASSERT_TRUE(d.send(d.command(0xd00 + i, tur(), 0, false, false)));
    OutPdu* p = d.conn->take_output();
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(p->next, nullptr);
    EXPECT_EQ(p->bhs.opcode(), Opcode::scsi_response);
    EXPECT_EQ(p->bhs.bytes[3], 0x00) << "command " << i;  // never TASK SET FULL
    last_max = p->bhs.max_cmd_sn();
    last_exp = p->bhs.exp_cmd_sn();
    unread.push_back(p);
  }
  EXPECT_EQ(last_max, last_exp - 1);  // closed: every task holds an unread response
  // The initiator reads them: the window reopens, and a NOP-In says so.
  for (OutPdu* p : unread) d.conn->sent(p);
  Out nop = d.only_one();
  EXPECT_EQ(nop.op(), Opcode::nop_in);
  EXPECT_EQ(nop.bhs.itt(), kReservedTag);
  EXPECT_EQ(nop.bhs.ttt(), kReservedTag);
  EXPECT_EQ(nop.bhs.exp_cmd_sn(), last_exp);
  EXPECT_EQ(nop.bhs.max_cmd_sn(), last_exp + 4 - 1);
  EXPECT_TRUE(d.drain().empty());  // announced once
  ASSERT_TRUE(d.send(d.command(0xd10, tur(), 0, false, false)));
  EXPECT_EQ(d.only_one().bhs.bytes[3], 0x00);
}

// Backpressure: a read's buffer counts from the command until its Data-In is
// sent, with every queued PDU's own bytes; write buffers do not (their data
// must still come in), so a session waiting for Data-Out is never paused.
TEST(ConnectionLimits, UnreadResponsesPauseReceiveUntilHalfIsRead) {
  ConnectionSettings s;
  s.max_unsent_output = 6000;
  Driver d(s);
  LoginOptions o;
  o.initial_r2t = "Yes";
  d.login(o);
  EXPECT_FALSE(d.conn->should_pause_receive());
  ASSERT_TRUE(d.send(d.command(0xe00, write10(0, 16), 8192, false, true)));
  EXPECT_EQ(d.only_one().op(), Opcode::r2t);
  EXPECT_FALSE(d.conn->should_pause_receive());  // 8 KiB of write buffer: not output
  ASSERT_TRUE(d.send(d.command(0xe01, read10(0, 16), 8192, true, false)));
  EXPECT_GE(d.conn->output_bytes(), 8192u);
  EXPECT_TRUE(d.conn->should_pause_receive());
  EXPECT_FALSE(d.conn->may_resume_receive());
  d.drain();  // the initiator reads the Data-In
  EXPECT_LT(d.conn->output_bytes(), 1000u);
  EXPECT_FALSE(d.conn->should_pause_receive());
  EXPECT_TRUE(d.conn->may_resume_receive());
  // A ping's echo counts as its own bytes.
  ASSERT_TRUE(d.send(d.nop_out(0xe02, kReservedTag), pattern(7000, 1)));
  EXPECT_TRUE(d.conn->should_pause_receive());
  d.drain();
  EXPECT_FALSE(d.conn->should_pause_receive());
}

// ------------------------------------------------------------------ NOP

TEST(ConnectionNop, PingIsAnsweredWithItsData) {
  Driver d;
  d.login();
  Bytes ping{'p', 'i', 'n', 'g', '!'};
  std::uint32_t stat_sn = d.exp_stat_sn;
  Bhs b = d.nop_out(0x77, kReservedTag);
  b.set_lun_field(0x0001000000000000ull);
  ASSERT_TRUE(d.send(b, ping));
  Out r = d.only_one();
  EXPECT_EQ(r.op(), Opcode::nop_in);
  EXPECT_TRUE(r.bhs.final_bit());
  EXPECT_EQ(r.bhs.itt(), 0x77u);
  EXPECT_EQ(r.bhs.ttt(), kReservedTag);
  EXPECT_EQ(r.bhs.lun_field(), 0x0001000000000000ull);
  EXPECT_EQ(r.bhs.stat_sn(), stat_sn);
  EXPECT_EQ(r.data, ping);
  EXPECT_EQ(r.trailer.size(), 3u);  // padding to 8
}

TEST(ConnectionNop, IdleConnectionIsPingedAndAnswerKeepsItOpen) {
  ConnectionSettings s;
  s.nop_interval = 10s;
  s.nop_timeout = 20s;
  Driver d(s);
  d.login();
  std::uint32_t stat_sn = d.exp_stat_sn;
  d.conn->on_tick(d.now + 9s);
  EXPECT_TRUE(d.drain().empty());
  d.conn->on_tick(d.now + 10s);
  Out p = d.only_one();
  EXPECT_EQ(p.op(), Opcode::nop_in);
  EXPECT_EQ(p.bhs.itt(), kReservedTag);
  EXPECT_NE(p.bhs.ttt(), kReservedTag);
  EXPECT_EQ(p.bhs.stat_sn(), stat_sn);  // not advanced
  // No second ping while one is outstanding.
  d.conn->on_tick(d.now + 12s);
  EXPECT_TRUE(d.drain().empty());
  // The answer: ITT reserved, TTT echoed; no response to it.
  d.now += 13s;
  Bhs a = d.nop_out(kReservedTag, p.bhs.ttt());
  ASSERT_TRUE(d.send(a));
  EXPECT_TRUE(d.drain().empty());
  d.conn->on_tick(d.now + 15s);
  EXPECT_FALSE(d.conn->closing());
  // Idle again: the next ping.
  d.conn->on_tick(d.now + 10s);
  EXPECT_EQ(d.only_one().op(), Opcode::nop_in);
}

TEST(ConnectionNop, UnansweredPingClosesAfterTheTimeout) {
  ConnectionSettings s;
  s.nop_interval = 10s;
  s.nop_timeout = 20s;
  Driver d(s);
  d.login();
  d.conn->on_tick(d.now + 10s);
  ASSERT_EQ(d.only_one().op(), Opcode::nop_in);
  d.conn->on_tick(d.now + 10s + 21s);
  EXPECT_TRUE(d.conn->closing());
}

TEST(ConnectionNop, PingTimeoutCountsFromThePingNotFromLastReceive) {
  ConnectionSettings s;
  s.nop_interval = 15s;
  s.nop_timeout = 30s;
  Driver d(s);
  d.login();
  d.conn->on_tick(d.now + 15s);
  ASSERT_EQ(d.only_one().op(), Opcode::nop_in);
  // 20 s after the ping the initiator still has 10 s of its 30 s to answer.
  d.conn->on_tick(d.now + 35s);
  EXPECT_FALSE(d.conn->closing());
  d.conn->on_tick(d.now + 46s);
  EXPECT_TRUE(d.conn->closing());
}

// ------------------------------------------------------------------ logout, TMF

TEST(ConnectionLogout, CloseSessionIsAnsweredAndCloses) {
  Driver d;
  d.login();
  std::uint32_t stat_sn = d.exp_stat_sn;
  std::uint32_t sn = d.cmd_sn;
  Bhs b = Bhs::make(Opcode::logout_request, 0x80 | 0);
  b.set_immediate(true);
  b.set_itt(0x99);
  b.set_u32(24, d.cmd_sn);
  b.set_u32(28, d.exp_stat_sn);
  ASSERT_TRUE(d.send(b));
  Out r = d.only_one();
  EXPECT_EQ(r.op(), Opcode::logout_response);
  EXPECT_TRUE(r.bhs.final_bit());
  EXPECT_EQ(r.bhs.bytes[2], 0);
  EXPECT_EQ(r.bhs.itt(), 0x99u);
  EXPECT_EQ(r.bhs.stat_sn(), stat_sn);
  EXPECT_EQ(r.bhs.exp_cmd_sn(), sn);
  EXPECT_EQ(r.bhs.u16(40), d.conn->params().default_time2wait);
  EXPECT_EQ(r.bhs.u16(42), d.conn->params().default_time2retain);
  EXPECT_TRUE(d.conn->closing());
  EXPECT_FALSE(d.conn->full_feature());
  EXPECT_TRUE(d.conn->idle());
}

TEST(ConnectionTmf, AbortUnknownTaskByRefCmdSn) {
  Driver d;
  d.login();
  ASSERT_TRUE(d.send(d.command(1, tur(), 0, false, false)));
  ASSERT_TRUE(d.send(d.command(2, tur(), 0, false, false)));
  d.drain();
  // RefCmdSN inside the window and below the TMF's CmdSN: function complete.
  ASSERT_TRUE(d.send(d.tmf(TmfFunction::abort_task, 0x50, 0, 0x1234, d.cmd_sn - 1)));
  Out r = d.only_one();
  EXPECT_EQ(r.op(), Opcode::task_mgmt_response);
  EXPECT_EQ(r.bhs.itt(), 0x50u);
  EXPECT_EQ(r.bhs.bytes[2], static_cast<std::uint8_t>(TmfResponse::complete));
  // RefCmdSN not yet received: task does not exist.
  ASSERT_TRUE(d.send(d.tmf(TmfFunction::abort_task, 0x51, 0, 0x1235, d.cmd_sn + 5)));
  r = d.only_one();
  EXPECT_EQ(r.bhs.itt(), 0x51u);
  EXPECT_EQ(r.bhs.bytes[2], static_cast<std::uint8_t>(TmfResponse::task_does_not_exist));
}

// RFC 7143 §11.5.1 (b): an aborted command the initiator never sent counts as
// received, so the commands after it are not stuck behind its CmdSN.
TEST(ConnectionTmf, AbortOfACommandNeverSentFillsItsCmdSnHole) {
  Driver d;
  d.login();
  const std::uint32_t hole = d.cmd_sn++;  // the command the initiator cancelled
  ASSERT_TRUE(d.send(d.tmf(TmfFunction::abort_task, 0x50, 0, 0x1234, hole)));
  EXPECT_EQ(d.only_one().bhs.bytes[2], static_cast<std::uint8_t>(TmfResponse::complete));
  ASSERT_TRUE(d.send(d.command(1, tur(), 0, false, false)));
  Out r = d.only_one();
  EXPECT_EQ(r.op(), Opcode::scsi_response);
  EXPECT_EQ(r.bhs.exp_cmd_sn(), hole + 2);

  // A hole further ahead (the immediate request overtook command `next`, still
  // queued): filled once the commands before it came.
  const std::uint32_t next = d.cmd_sn;
  d.cmd_sn = next + 2;
  ASSERT_TRUE(d.send(d.tmf(TmfFunction::abort_task, 0x51, 0, 0x1235, next + 1)));
  EXPECT_EQ(d.only_one().bhs.bytes[2], static_cast<std::uint8_t>(TmfResponse::complete));
  d.cmd_sn = next;
  ASSERT_TRUE(d.send(d.command(2, tur(), 0, false, false)));
  EXPECT_EQ(d.only_one().bhs.exp_cmd_sn(), next + 2);
  d.cmd_sn = next + 2;
  ASSERT_TRUE(d.send(d.command(3, tur(), 0, false, false)));
  r = d.only_one();
  EXPECT_EQ(r.op(), Opcode::scsi_response);
  EXPECT_EQ(r.bhs.itt(), 3u);
}

TEST(ConnectionTmf, AbortTaskWaitingForData) {
  Driver d;
  LoginOptions o;
  o.initial_r2t = "Yes";
  d.login(o);
  ASSERT_TRUE(d.send(d.command(7, write10(0, 8), 4096, false, true, true)));
  ASSERT_EQ(d.only_one().op(), Opcode::r2t);
  EXPECT_EQ(d.conn->tasks_in_flight(), 1u);
  ASSERT_TRUE(d.send(d.tmf(TmfFunction::abort_task, 0x52, 0, 7, d.cmd_sn - 1)));
  Out r = d.only_one();
  EXPECT_EQ(r.bhs.bytes[2], static_cast<std::uint8_t>(TmfResponse::complete));
  EXPECT_EQ(d.conn->tasks_in_flight(), 0u);
}

// A peer that keeps its connection alive but never sends a WRITE's data would
// hold its buffer for ever: nop_timeout without Data-Out closes the connection.
TEST(ConnectionLimits, WriteWhoseDataStopsComingClosesAfterNopTimeout) {
  ConnectionSettings s;
  s.nop_interval = 0s;  // no pings: only the data time-out can close it
  s.nop_timeout = 20s;
  Driver d(s);
  LoginOptions o;
  o.initial_r2t = "Yes";
  d.login(o);
  ASSERT_TRUE(d.send(d.command(7, write10(0, 8), 4096, false, true, true)));
  Out r2t = d.only_one();
  ASSERT_EQ(r2t.op(), Opcode::r2t);
  d.conn->on_tick(d.now + 19s);
  EXPECT_FALSE(d.conn->closing());
  // Some data 15 s later is progress: the time-out counts from it.
  d.now += 15s;
  ASSERT_TRUE(d.send(d.data_out(7, r2t.bhs.ttt(), 0, 0, false), pattern(1024, 1)));
  d.conn->on_tick(d.now + 19s);
  EXPECT_FALSE(d.conn->closing());
  d.conn->on_tick(d.now + 21s);
  EXPECT_TRUE(d.conn->closing());
}

TEST(ConnectionLimits, IdleSessionIsNotClosedForWantOfData) {
  ConnectionSettings s;
  s.nop_interval = 0s;
  s.nop_timeout = 20s;
  Driver d(s);
  d.login();
  ASSERT_TRUE(d.send(d.command(1, read10(0, 1), 512, true, false)));
  d.drain();
  d.conn->on_tick(d.now + 300s);
  EXPECT_FALSE(d.conn->closing());
}

TEST(ConnectionTmf, LateDataOutForAbortedTaskIsDroppedSilently) {
  Driver d;
  LoginOptions o;
  o.initial_r2t = "Yes";
  d.login(o);
  ASSERT_TRUE(d.send(d.command(8, write10(0, 8), 4096, false, true, true)));
  Out r2t = d.only_one();
  ASSERT_EQ(r2t.op(), Opcode::r2t);
  ASSERT_TRUE(d.send(d.tmf(TmfFunction::abort_task, 0x53, 0, 8, d.cmd_sn - 1)));
  EXPECT_EQ(d.only_one().bhs.bytes[2], 0);
  // Data the initiator had already sent for the aborted task.
  ASSERT_TRUE(d.send(d.data_out(8, r2t.bhs.ttt(), 0, 0, true), pattern(4096, 0)));
  auto out = d.drain();
  EXPECT_TRUE(out.empty()) << "answered with opcode "
                           << (out.empty() ? 0 : static_cast<unsigned>(out[0].op()));
  EXPECT_FALSE(d.conn->closing());
}

TEST(ConnectionTmf, LunResetOnMissingLun) {
  Driver d;
  d.login();
  ASSERT_TRUE(
      d.send(d.tmf(TmfFunction::logical_unit_reset, 0x60, 0x0005000000000000ull, kReservedTag, 0)));
  Out r = d.only_one();
  EXPECT_EQ(r.op(), Opcode::task_mgmt_response);
  EXPECT_EQ(r.bhs.bytes[2], 2);
}

TEST(ConnectionTmf, LunResetOnExistingLunCompletes) {
  Driver d;
  d.login();
  ASSERT_TRUE(d.send(d.tmf(TmfFunction::logical_unit_reset, 0x61, 0, kReservedTag, 0)));
  EXPECT_EQ(d.only_one().bhs.bytes[2], 0);
}

TEST(ConnectionTmf, UnsupportedFunction) {
  Driver d;
  d.login();
  ASSERT_TRUE(d.send(d.tmf(TmfFunction::clear_aca, 0x62, 0, kReservedTag, 0)));
  Out r = d.only_one();
  EXPECT_EQ(r.bhs.itt(), 0x62u);
  EXPECT_EQ(r.bhs.bytes[2], 5);
}

// ------------------------------------------------------------------ PREEMPT AND ABORT

// A PERSISTENT RESERVE OUT CDB with its 24-byte parameter list.
Bytes prout_cdb(std::uint8_t sa, std::uint8_t type) {
  Bytes c(16, 0);
  c[0] = 0x5f;
  c[1] = sa;
  c[2] = type;
  put_be32(&c[5], 24);
  return c;
}
Bytes prout_params(std::uint64_t key, std::uint64_t sark) {
  Bytes p(24, 0);
  put_be64(&p[0], key);
  put_be64(&p[8], sark);
  return p;
}

// A task of another session (another transport, as far as this connection
// knows) in a logical unit's task set: what the LU asked of it.
struct OtherSessionTask final : scsi::TaskOwner {
  scsi::Nexus nexus{"iqn.2025-01.com.example:other", kTarget, 7ull << 16 | 7, {}};
  scsi::Task task;
  bool in_backend = true;
  int aborts = 0;
  void task_complete(scsi::Task&) override {}
  bool task_aborted(scsi::Task&) override {
    ++aborts;
    return in_backend;
  }
  void arrive(scsi::LogicalUnit& lu) {
    task.nexus = &nexus;
    task.owner = this;
    lu.enter_task_set(task);
  }
};

std::shared_ptr<scsi::LogicalUnit> lun0(Driver& d) {
  return d.host.target->luns()->find(0);
}

// Its own key: the PR OUT's session is among the preempted; its WRITE waiting
// for Data-Out goes without status, the PR OUT itself is spared and answered.
TEST(ConnectionPreemptAbort, SelfPreemptDropsItsWaitingWriteAndAnswersThePrOut) {
  Driver d;
  LoginOptions o;
  o.initial_r2t = "Yes";
  d.login(o);
  auto good = [&](std::uint32_t itt, const Bytes& cdb, const Bytes& params) {
    ASSERT_TRUE(d.send(d.command(itt, cdb, 24, false, true), params));
    Out r = d.only_one();
    EXPECT_EQ(r.op(), Opcode::scsi_response);
    EXPECT_EQ(r.bhs.itt(), itt);
    EXPECT_EQ(r.bhs.bytes[3], 0x00);
  };
  good(0x10, prout_cdb(0, 0), prout_params(0, 0xaa));  // REGISTER
  good(0x11, prout_cdb(1, 1), prout_params(0xaa, 0));  // RESERVE Write Exclusive

  ASSERT_TRUE(d.send(d.command(0x12, write10(0, 8), 4096, false, true, true)));
  Out r2t = d.only_one();
  ASSERT_EQ(r2t.op(), Opcode::r2t);
  EXPECT_EQ(d.conn->tasks_in_flight(), 1u);
  ASSERT_TRUE(d.send(d.command(0x13, prout_cdb(5, 3), 24, false, true), prout_params(0xaa, 0xaa)));
  // The WRITE was not in the backend: nothing to wait for.
  Out r = d.only_one();  // the PR OUT's GOOD, nothing for the WRITE
  EXPECT_EQ(r.op(), Opcode::scsi_response);
  EXPECT_EQ(r.bhs.itt(), 0x13u);
  EXPECT_EQ(r.bhs.bytes[3], 0x00);
  EXPECT_EQ(d.conn->tasks_in_flight(), 0u);
  // The initiator's Data-Out for the aborted WRITE is dropped without a Reject.
  ASSERT_TRUE(d.send(d.data_out(0x12, r2t.bhs.ttt(), 0, 0, true), pattern(4096, 9)));
  EXPECT_TRUE(d.drain().empty());
  EXPECT_FALSE(d.conn->closing());
  EXPECT_EQ(d.host.mem->data()[0], 0);  // nothing written
  EXPECT_EQ(lun0(d)->persistent_reservations().type(), scsi::PrType::exclusive_access);
}

// Preempted by another session: a WRITE waiting for Data-Out (R2T sent) ends
// at once, without status; its late Data-Out is dropped without a Reject, and
// other LUNs' and later commands are untouched.
TEST(ConnectionPreemptAbort, WriteWaitingForDataOutIsDroppedSilently) {
  Driver d;
  LoginOptions o;
  o.initial_r2t = "Yes";
  d.login(o);
  ASSERT_TRUE(d.send(d.command(0x20, write10(0, 8), 4096, false, true, true)));
  Out r2t = d.only_one();
  ASSERT_EQ(r2t.op(), Opcode::r2t);
  int done = 0;
  // Another nexus's abort that spares this one's tasks: nothing.
  lun0(d)->abort_task_set([](const scsi::Task& t) { return t.nexus->initiator_name != kInitiator; },
                          nullptr, [&] { ++done; });
  EXPECT_EQ(done, 1);
  EXPECT_EQ(d.conn->tasks_in_flight(), 1u);
  // Another LUN's task set does not hold it.
  auto other_lu = std::make_shared<scsi::LogicalUnit>(
      1, scsi::LunParams{}, std::make_unique<storage::MemoryBackend>(kLunBytes));
  other_lu->abort_task_set([](const scsi::Task&) { return true; }, nullptr, [&] { ++done; });
  EXPECT_EQ(done, 2);
  EXPECT_EQ(d.conn->tasks_in_flight(), 1u);
  lun0(d)->abort_task_set([](const scsi::Task&) { return true; }, nullptr, [&] { ++done; });
  EXPECT_EQ(done, 3);  // nothing was executing: done at once
  EXPECT_EQ(d.conn->tasks_in_flight(), 0u);
  EXPECT_TRUE(d.drain().empty());  // no status, no TMF response
  ASSERT_TRUE(d.send(d.data_out(0x20, r2t.bhs.ttt(), 0, 0, true), pattern(4096, 3)));
  EXPECT_TRUE(d.drain().empty());
  EXPECT_FALSE(d.conn->closing());
  EXPECT_EQ(d.host.mem->data()[0], 0);
  ASSERT_TRUE(d.send(d.command(0x21, tur(), 0, false, false)));
  Out r = d.only_one();
  EXPECT_EQ(r.bhs.itt(), 0x21u);
  EXPECT_EQ(r.bhs.bytes[3], 0x00);
}

// An abort that comes between a Data-Out's header and its data: the data
// still lands in the task's buffer (the socket is receiving into it), and the
// task goes once it is in.
TEST(ConnectionPreemptAbort, AbortBetweenDataOutHeaderAndDataKeepsTheBufferUntilItIsIn) {
  Driver d;
  LoginOptions o;
  o.initial_r2t = "Yes";
  d.login(o);
  ASSERT_TRUE(d.send(d.command(0x30, write10(0, 8), 4096, false, true, true)));
  Out r2t = d.only_one();
  Bhs h = d.data_out(0x30, r2t.bhs.ttt(), 0, 0, true);
  h.set_data_segment_length(4096);
  auto plan = d.conn->on_header(h.bytes.data(), kBhsSize, d.now);
  ASSERT_TRUE(plan);
  ASSERT_NE(plan->dest, nullptr);
  int done = 0;
  lun0(d)->abort_task_set([](const scsi::Task&) { return true; }, nullptr, [&] { ++done; });
  EXPECT_EQ(done, 1);
  EXPECT_EQ(d.conn->tasks_in_flight(), 1u);  // its buffer is still being filled
  Bytes data = pattern(4096, 5);
  std::memcpy(plan->dest, data.data(), data.size());
  d.conn->on_data(nullptr, 0);
  EXPECT_EQ(d.conn->tasks_in_flight(), 0u);
  EXPECT_TRUE(d.drain().empty());
  EXPECT_EQ(d.host.mem->data()[0], 0);
}

// ------------------------------------------------------------------ malformed input

TEST(ConnectionMalformed, DataOutForUnknownTaskIsRejected) {
  Driver d;
  d.login();
  std::uint32_t stat_sn = d.exp_stat_sn;
  Bhs b = d.data_out(0xdead, 0x1111, 0, 0, true);
  ASSERT_TRUE(d.send(b, pattern(512, 0)));
  Out r = d.only_one();
  EXPECT_EQ(static_cast<unsigned>(r.op()), 0x3fu);
  EXPECT_TRUE(r.bhs.final_bit());
  EXPECT_EQ(r.bhs.bytes[2], 0x09);
  EXPECT_EQ(r.bhs.itt(), kReservedTag);
  EXPECT_EQ(r.bhs.stat_sn(), stat_sn);
  ASSERT_EQ(r.data.size(), kBhsSize);
  b.set_data_segment_length(512);
  EXPECT_EQ(0, std::memcmp(r.data.data(), b.bytes.data(), kBhsSize));
  EXPECT_FALSE(d.conn->closing());
}

// A command with an AHS (an extended CDB) keeps its CmdSN and ends with a
// status, so the initiator is not left waiting for one; its immediate data
// is dropped and the connection goes on.
TEST(ConnectionMalformed, CommandWithAhsEndsWithCheckConditionAndTheWindowMoves) {
  Driver d;
  d.login();
  std::uint32_t sn = d.cmd_sn;
  Bhs b = d.command(0xc00, write10(0, 1), 512, false, true);
  b.bytes[4] = 5;  // 20 bytes of AHS: an extended CDB
  b.set_data_segment_length(512);
  Bytes header(b.bytes.begin(), b.bytes.end());
  header.resize(kBhsSize + 20, 0);
  header[kBhsSize + 1] = 17;  // AHS length
  header[kBhsSize + 2] = 1;   // type: extended CDB
  ASSERT_EQ(d.conn->header_extra(header.data()), 20u);
  auto plan = d.conn->on_header(header.data(), static_cast<std::uint32_t>(header.size()), d.now);
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->dest, nullptr);  // the immediate data is dropped
  EXPECT_EQ(plan->len, 512u);
  d.conn->on_data(nullptr, 0);
  Out r = d.only_one();
  EXPECT_EQ(r.op(), Opcode::scsi_response);
  EXPECT_EQ(r.bhs.itt(), 0xc00u);
  EXPECT_EQ(r.bhs.bytes[3], 0x02);  // CHECK CONDITION
  ASSERT_GE(r.data.size(), 2u + 14u);
  EXPECT_EQ(r.data[2 + 2] & 0x0f, 0x05);  // ILLEGAL REQUEST
  EXPECT_EQ(r.data[2 + 12], 0x24);        // INVALID FIELD IN CDB
  EXPECT_EQ(r.bhs.exp_cmd_sn(), sn + 1);
  EXPECT_EQ(d.host.mem->data()[0], 0);  // nothing written
  ASSERT_TRUE(d.send(d.command(0xc01, tur(), 0, false, false)));
  Out next = d.only_one();
  EXPECT_EQ(next.bhs.itt(), 0xc01u);
  EXPECT_EQ(next.bhs.bytes[3], 0x00);
  EXPECT_FALSE(d.conn->closing());
}

TEST(ConnectionMalformed, SegmentLongerThanMrdslCloses) {
  Driver d;
  d.login();
  std::uint32_t max = d.conn->params().target_max_recv_data_segment_length;
  EXPECT_FALSE(d.send(d.nop_out(0x10, kReservedTag), Bytes(max + 4, 0)));
  EXPECT_TRUE(d.conn->closing());
  auto out = d.drain();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].op(), Opcode::reject);
}

LoginOptions with_digests() {
  LoginOptions o;
  o.header_digest = "CRC32C";
  o.data_digest = "CRC32C";
  return o;
}

ConnectionSettings digests_allowed() {
  ConnectionSettings s;
  s.limits.allow_header_digest = true;
  s.limits.allow_data_digest = true;
  return s;
}

// Issue 20: Linux with HeaderDigest = CRC32C alone against a target that allows None
// only. Answering Reject and going on would count and log a session the initiator
// never uses; the login ends with 0x0200 and the reason instead.
TEST(ConnectionDigest, AnInsistedDigestTheTargetRefusesEndsTheLogin) {
  ConnectionSettings s;
  s.limits.allow_header_digest = false;
  Driver d(s);
  auto sec = Driver::text({{"InitiatorName", kInitiator},
                           {"TargetName", kTarget},
                           {"SessionType", "Normal"},
                           {"AuthMethod", "None"}});
  ASSERT_TRUE(d.send(
      Driver::login_request(LoginStage::security, LoginStage::operational, true, 1, 0), sec));
  ASSERT_EQ(d.drain().size(), 1u);
  auto op = Driver::text({{"HeaderDigest", "CRC32C"}, {"DataDigest", "CRC32C"}});
  d.send(Driver::login_request(LoginStage::operational, LoginStage::full_feature, true, 1, 1), op);
  expect_refused(d, LoginStatus::initiator_error, LoginFailure::negotiation);
  EXPECT_EQ(d.host.failures[0].detail,
            "the initiator offered HeaderDigest=CRC32C and this target allows None only "
            "(header_digest = \"never\")");
}

TEST(ConnectionDigest, DigestsAreTheInitiatorsChoiceByDefault) {
  Driver d;  // default settings: digests allowed
  auto r = d.login(with_digests());
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[1].bhs.login_status(), LoginStatus::success);
  EXPECT_EQ(r[1].keys()["HeaderDigest"], "CRC32C");
  EXPECT_EQ(r[1].keys()["DataDigest"], "CRC32C");
  Driver plain;
  auto r2 = plain.login();
  ASSERT_EQ(r2.size(), 2u);
  EXPECT_EQ(r2[1].keys()["HeaderDigest"], "None");
  EXPECT_EQ(r2[1].keys()["DataDigest"], "None");
}

TEST(ConnectionDigest, NegotiatedDigestsProtectBothDirections) {
  Driver d(digests_allowed());
  auto r = d.login(with_digests());
  ASSERT_EQ(r.size(), 2u);
  auto keys = r[1].keys();
  EXPECT_EQ(keys["HeaderDigest"], "CRC32C");
  EXPECT_EQ(keys["DataDigest"], "CRC32C");
  EXPECT_EQ(r[1].header_len, kBhsSize);  // the login response itself has no digest
  Bytes ping{1, 2, 3, 4, 5, 6};
  ASSERT_TRUE(d.send(d.nop_out(0x20, kReservedTag), ping));
  Out p = d.only_one();
  EXPECT_EQ(p.op(), Opcode::nop_in);
  EXPECT_EQ(p.header_len, kBhsSize + kDigestSize);
  EXPECT_EQ(p.header_digest, crc32c(p.bhs.bytes.data(), kBhsSize));
  ASSERT_EQ(p.trailer.size(), 2u + kDigestSize);
  EXPECT_EQ(load_digest(&p.trailer[2]), data_digest(ping.data(), ping.size()));
  EXPECT_FALSE(d.conn->closing());
}

TEST(ConnectionDigest, HeaderDigestMismatchCloses) {
  Driver d(digests_allowed());
  d.login(with_digests());
  EXPECT_FALSE(d.send(d.nop_out(0x21, kReservedTag), {}, /*corrupt_header_digest=*/true));
  EXPECT_TRUE(d.conn->closing());
  EXPECT_EQ(d.conn->digest_errors().header, 1u);
  EXPECT_EQ(d.conn->digest_errors().data, 0u);
  // Counted in the host's counters (the daemon's are what /metrics exports).
  EXPECT_EQ(d.host.digest_errors(metrics::DigestKind::header), 1u);
  EXPECT_EQ(d.host.digest_errors(metrics::DigestKind::data), 0u);
}

// Feeds one PDU whose data digest is wrong.
void send_bad_data_digest(Driver& d, Bhs b, const Bytes& data) {
  b.set_data_segment_length(static_cast<std::uint32_t>(data.size()));
  Bytes header(b.bytes.begin(), b.bytes.end());
  header.resize(kBhsSize + kDigestSize);
  store_digest(&header[kBhsSize], crc32c(header.data(), kBhsSize));
  auto plan = d.conn->on_header(header.data(), static_cast<std::uint32_t>(header.size()), d.now);
  ASSERT_TRUE(plan);
  ASSERT_NE(plan->dest, nullptr);
  std::memcpy(plan->dest, data.data(), data.size());
  Bytes trailer(padded(static_cast<std::uint32_t>(data.size())) - data.size(), 0);
  trailer.resize(trailer.size() + kDigestSize);
  store_digest(&trailer[trailer.size() - kDigestSize], Driver::data_digest_of(data) ^ 0x100);
  ASSERT_EQ(plan->trailer_len, trailer.size());
  d.conn->on_data(trailer.data(), static_cast<std::uint32_t>(trailer.size()));
}

TEST(ConnectionDigest, DataDigestErrorOnNopOutRejectsAndDiscards) {
  Driver d(digests_allowed());
  d.login(with_digests());
  send_bad_data_digest(d, d.nop_out(0x22, kReservedTag), Bytes{'a', 'b', 'c', 'd'});
  // RFC 7143 7.8: Reject (data digest error), the PDU discarded (no NOP-In),
  // and for a non-data PDU nothing more: the connection stays.
  auto out = d.drain();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].op(), Opcode::reject);
  EXPECT_EQ(out[0].bhs.bytes[2], 0x02);
  EXPECT_FALSE(d.conn->closing());
  EXPECT_EQ(d.conn->digest_errors().data, 1u);
  EXPECT_EQ(d.host.digest_errors(metrics::DigestKind::data), 1u);
  EXPECT_EQ(d.host.stats.rejects.load(), 1u);
  // The session goes on: a ping with a good digest is answered.
  ASSERT_TRUE(d.send(d.nop_out(0x23, kReservedTag), Bytes{1, 2, 3, 4}));
  EXPECT_EQ(d.only_one().op(), Opcode::nop_in);
}

TEST(ConnectionDigest, DataDigestErrorOnImmediateDataRejectsAndCloses) {
  Driver d(digests_allowed());
  d.login(with_digests());
  send_bad_data_digest(d, d.command(0x30, write10(0, 8), 4096, false, true), pattern(4096, 1));
  auto out = d.drain();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].op(), Opcode::reject);
  EXPECT_EQ(out[0].bhs.bytes[2], 0x02);
  EXPECT_TRUE(d.conn->closing());
  // Nothing reached the disk.
  EXPECT_EQ(d.host.mem->data()[0], 0);
  EXPECT_EQ(d.conn->digest_errors().data, 1u);
}

// RFC 7143 §7.8 option b: Reject the Data-Out, then end its command with
// CHECK CONDITION, PROTOCOL SERVICE CRC ERROR; the connection stays.
TEST(ConnectionDigest, DataDigestErrorOnDataOutRejectsThenCheckCondition) {
  Driver d(digests_allowed());
  LoginOptions o = with_digests();
  o.initial_r2t = "Yes";
  d.login(o);
  ASSERT_TRUE(d.send(d.command(0x31, write10(0, 8), 4096, false, true)));
  Out r2t = d.only_one();
  ASSERT_EQ(r2t.op(), Opcode::r2t);
  // The R2T carries a header digest and no data.
  EXPECT_EQ(r2t.header_len, kBhsSize + kDigestSize);
  EXPECT_EQ(r2t.header_digest, crc32c(r2t.bhs.bytes.data(), kBhsSize));
  EXPECT_TRUE(r2t.trailer.empty());
  send_bad_data_digest(d, d.data_out(0x31, r2t.bhs.ttt(), 0, 0, true), pattern(4096, 2));
  auto out = d.drain();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].op(), Opcode::reject);
  EXPECT_EQ(out[0].bhs.bytes[2], 0x02);
  ASSERT_EQ(out[1].op(), Opcode::scsi_response);
  EXPECT_EQ(out[1].bhs.itt(), 0x31u);
  EXPECT_EQ(out[1].bhs.bytes[3], 0x02);  // CHECK CONDITION
  ASSERT_GE(out[1].data.size(), 2u + 14u);
  EXPECT_EQ(out[1].data[2 + 2] & 0x0f, 0x0b);  // ABORTED COMMAND
  EXPECT_EQ(out[1].data[2 + 12], 0x47);
  EXPECT_EQ(out[1].data[2 + 13], 0x05);
  EXPECT_FALSE(d.conn->closing());
  EXPECT_EQ(d.host.mem->data()[0], 0);
}

TEST(ConnectionDigest, DataInAndResponsesCarryDigests) {
  Driver d(digests_allowed());
  d.login(with_digests());
  Bytes data = pattern(4096, 9);
  ASSERT_TRUE(d.send(d.command(0x40, write10(0, 8), 4096, false, true), data));
  Out rsp = d.only_one();
  ASSERT_EQ(rsp.op(), Opcode::scsi_response);
  EXPECT_EQ(rsp.header_digest, crc32c(rsp.bhs.bytes.data(), kBhsSize));
  ASSERT_TRUE(d.send(d.command(0x41, read10(0, 8), 4096, true, false)));
  auto out = d.drain();
  ASSERT_FALSE(out.empty());
  Bytes got;
  for (auto& o : out) {
    ASSERT_EQ(o.op(), Opcode::data_in);
    EXPECT_EQ(o.header_len, kBhsSize + kDigestSize);
    EXPECT_EQ(o.header_digest, crc32c(o.bhs.bytes.data(), kBhsSize));
    ASSERT_EQ(o.trailer.size(), kDigestSize);  // 4096-byte multiples: no padding
    EXPECT_EQ(load_digest(o.trailer.data()), data_digest(o.data.data(), o.data.size()));
    got.insert(got.end(), o.data.begin(), o.data.end());
  }
  EXPECT_EQ(got, data);
}

TEST(ConnectionDigest, DroppedDataOutWithGoodDigestIsOnlyRejected) {
  Driver d(digests_allowed());
  d.login(with_digests());
  // Data-Out for no task: the segment is dropped (plan.dest null) but its
  // digest is correct, so only the Reject for the unknown ITT is due.
  ASSERT_TRUE(d.send(d.data_out(0xbeef, 0x1111, 0, 0, true), pattern(512, 3)));
  auto out = d.drain();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].op(), Opcode::reject);
  EXPECT_EQ(out[0].bhs.bytes[2], 0x09);
  EXPECT_FALSE(d.conn->closing());
}

TEST(ConnectionLimits, SessionRefusedByTheHostFailsLoginOutOfResources) {
  Driver d;
  d.host.refuse_sessions = true;
  std::string sec;
  append_key(sec, "InitiatorName", kInitiator);
  append_key(sec, "TargetName", kTarget);
  append_key(sec, "AuthMethod", "None");
  ASSERT_TRUE(
      d.send(Driver::login_request(LoginStage::security, LoginStage::full_feature, true, 1, 0),
             Bytes(sec.begin(), sec.end())));
  Out r = d.only_one();
  ASSERT_EQ(r.op(), Opcode::login_response);
  EXPECT_EQ(r.bhs.login_status(), LoginStatus::out_of_resources);  // 0x0302
  EXPECT_EQ(r.bhs.tsih(), 0);
  EXPECT_TRUE(d.conn->closing());
  EXPECT_FALSE(d.conn->full_feature());
  ASSERT_EQ(d.host.failures.size(), 1u);
  EXPECT_EQ(d.host.failures[0].why, LoginFailure::limit_reached);
  EXPECT_EQ(d.host.failures[0].initiator, kInitiator);
}

// Login text past the limits of text.hpp (256 keys, 63-byte names) fails the
// login with 0x0200 and is logged, whatever else it holds.
TEST(ConnectionLimits, LoginKeyLimitsFailTheLogin) {
  auto attempt = [](const std::string& extra) {
    Driver d;
    std::string sec;
    append_key(sec, "InitiatorName", kInitiator);
    append_key(sec, "TargetName", kTarget);
    append_key(sec, "AuthMethod", "None");
    sec += extra;
    bool open =
        d.send(Driver::login_request(LoginStage::security, LoginStage::operational, true, 1, 0),
               Bytes(sec.begin(), sec.end()));
    auto out = d.drain();
    EXPECT_TRUE(open);
    EXPECT_EQ(out.size(), 1u);
    EXPECT_TRUE(d.conn->closing());
    EXPECT_EQ(d.host.failures.size(), 1u);
    return out.empty() ? LoginStatus::success : out[0].bhs.login_status();
  };
  std::string many;
  for (int i = 0; i < 300; ++i) append_key(many, "X#k" + std::to_string(i), "1");
  EXPECT_EQ(attempt(many), LoginStatus::initiator_error);
  std::string long_key;
  append_key(long_key, "X#" + std::string(70, 'k'), "1");
  EXPECT_EQ(attempt(long_key), LoginStatus::initiator_error);
}

TEST(ConnectionLimits, NoBufferMemoryAnswersBusyThenTaskSetFull) {
  Driver d;
  LoginOptions o;
  o.initial_r2t = "Yes";
  o.immediate_data = "No";
  d.login(o);
  d.host.buffer_budget = 64 * 1024;  // limits.max_buffer_memory, as the host enforces it
  // Alone in its session and too big: BUSY, no sense, not executed.
  ASSERT_TRUE(d.send(d.command(0x50, read10(0, 256), 128 * 1024, true, false)));
  Out busy = d.only_one();
  ASSERT_EQ(busy.op(), Opcode::scsi_response);
  EXPECT_EQ(busy.bhs.itt(), 0x50u);
  EXPECT_EQ(busy.bhs.bytes[3], static_cast<std::uint8_t>(scsi::Status::busy));
  EXPECT_TRUE(busy.data.empty());
  // A WRITE waiting for its Data-Out holds 64 KiB: the budget.
  ASSERT_TRUE(d.send(d.command(0x51, write10(0, 128), 64 * 1024, false, true)));
  Out r2t = d.only_one();
  ASSERT_EQ(r2t.op(), Opcode::r2t);
  // With a command of the session in flight the answer is TASK SET FULL.
  ASSERT_TRUE(d.send(d.command(0x52, read10(0, 8), 4096, true, false)));
  Out full = d.only_one();
  ASSERT_EQ(full.op(), Opcode::scsi_response);
  EXPECT_EQ(full.bhs.itt(), 0x52u);
  EXPECT_EQ(full.bhs.bytes[3], static_cast<std::uint8_t>(scsi::Status::task_set_full));
  // The WRITE finishes and gives its buffer back; the retried READ runs.
  Bytes data = pattern(64 * 1024, 5);
  ASSERT_TRUE(d.send(d.data_out(0x51, r2t.bhs.ttt(), 0, 0, true), data));
  Out w = d.only_one();
  ASSERT_EQ(w.op(), Opcode::scsi_response);
  EXPECT_EQ(w.bhs.bytes[3], 0);
  ASSERT_TRUE(d.send(d.command(0x53, read10(0, 8), 4096, true, false)));
  auto out = d.drain();
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.back().op(), Opcode::data_in);
  EXPECT_EQ(out.back().bhs.bytes[3], 0);
  EXPECT_EQ(Bytes(out.back().data.begin(), out.back().data.end()),
            Bytes(data.begin(), data.begin() + 4096));
  EXPECT_EQ(
      d.host.stats.refused_commands[static_cast<std::size_t>(metrics::RefusalCause::buffer_memory)],
      2u);
}

// ------------------------------------------------------------------ live LUN map changes

// The control plane publishes a new LUN map while the session runs: the session's next
// command sees it (a removed LUN answers LOGICAL UNIT NOT SUPPORTED, a returned one works).
TEST(ConnectionLiveLuns, NextCommandSeesThePublishedMap) {
  Driver d;
  d.login();
  auto original = d.host.target->luns();
  ASSERT_TRUE(d.send(d.command(0x900, read10(0, 1), 512, true, false)));
  for (auto& o : d.drain())
    if (o.op() == Opcode::scsi_response) {
      EXPECT_EQ(o.bhs.bytes[3], 0x00);
    }

  d.host.target->set_luns(std::make_shared<scsi::LunMap>());
  ASSERT_TRUE(d.send(d.command(0x901, read10(0, 1), 512, true, false)));
  Out r = d.only_one();
  EXPECT_EQ(r.op(), Opcode::scsi_response);
  EXPECT_EQ(r.bhs.bytes[3], 0x02);  // CHECK CONDITION
  ASSERT_GE(r.data.size(), 2u + 14u);
  EXPECT_EQ(r.data[2 + 2] & 0x0f, 0x05);  // ILLEGAL REQUEST
  EXPECT_EQ(r.data[2 + 12], 0x25);        // LOGICAL UNIT NOT SUPPORTED

  d.host.target->set_luns(original);
  ASSERT_TRUE(d.send(d.command(0x902, read10(0, 1), 512, true, false)));
  bool good = false;
  for (auto& o : d.drain())
    if (o.op() == Opcode::scsi_response || (o.op() == Opcode::data_in && (o.bhs.bytes[1] & 0x01)))
      good = o.bhs.bytes[3] == 0x00;
  EXPECT_TRUE(good);
}

// A backend that keeps its one operation until the test completes it.
class HeldBackend final : public storage::Backend {
 public:
  std::uint64_t size_bytes() const override { return kLunBytes; }
  storage::WriteAckPolicy ack_policy() const override {
    return storage::WriteAckPolicy::writethrough;
  }
  void read(void* buf, std::size_t len, std::uint64_t, storage::IoOp* op) override {
    std::memset(buf, 0x3c, len);
    held = op;
    held_len = static_cast<int>(len);
  }
  void write(const void*, std::size_t len, std::uint64_t, bool, storage::IoOp* op) override {
    held = op;
    held_len = static_cast<int>(len);
  }
  void flush(storage::IoOp* op) override { op->on_complete(0); }
  std::string describe() const override { return "held"; }
  void complete() {
    auto* op = std::exchange(held, nullptr);
    op->on_complete(held_len);
  }
  storage::IoOp* held = nullptr;
  int held_len = 0;
};

// A command in flight when its LUN is removed completes on the LU it started on; the
// replaced map (and the LU with it) is let go only once that command is done.
TEST(ConnectionLiveLuns, InFlightCommandKeepsItsMapUntilItCompletes) {
  Driver d;
  d.login();
  auto backend = std::make_unique<HeldBackend>();
  HeldBackend* held = backend.get();
  scsi::LunParams lp;
  lp.block_size = kBlock;
  auto map = std::make_shared<scsi::LunMap>();
  map->add(std::make_shared<scsi::LogicalUnit>(0, lp, std::move(backend)));
  std::weak_ptr<scsi::LunMap> watch = map;
  d.host.target->set_luns(std::move(map));

  ASSERT_TRUE(d.send(d.command(0xa00, read10(0, 1), 512, true, false)));
  ASSERT_NE(held->held, nullptr);  // the read is in flight
  EXPECT_TRUE(d.drain().empty());

  d.host.target->set_luns(std::make_shared<scsi::LunMap>());  // LUN 0 removed
  ASSERT_TRUE(d.send(d.command(0xa01, tur(), 0, false, false)));
  Out r = d.only_one();  // the new command already sees the new map
  EXPECT_EQ(r.bhs.itt(), 0xa01u);
  EXPECT_EQ(r.bhs.bytes[3], 0x02);
  EXPECT_FALSE(watch.expired());  // still held for the read in flight

  held->complete();
  bool good = false;
  for (auto& o : d.drain()) {
    if (o.bhs.itt() != 0xa00u) continue;
    if (o.op() == Opcode::data_in) {
      EXPECT_EQ(o.data, Bytes(512, 0x3c));
    }
    if (o.op() == Opcode::scsi_response || (o.op() == Opcode::data_in && (o.bhs.bytes[1] & 0x01)))
      good = o.bhs.bytes[3] == 0x00;
  }
  EXPECT_TRUE(good);
  EXPECT_TRUE(watch.expired());  // let go once the read finished
}

// LUN 0 on a backend that holds its one operation until the test completes it.
HeldBackend* serve_lun0_on_held_backend(Driver& d) {
  auto backend = std::make_unique<HeldBackend>();
  HeldBackend* held = backend.get();
  scsi::LunParams lp;
  lp.block_size = kBlock;
  auto map = std::make_shared<scsi::LunMap>();
  map->add(std::make_shared<scsi::LogicalUnit>(0, lp, std::move(backend)));
  d.host.target->set_luns(std::move(map));
  return held;
}

// SAM-5 7.1: "function complete" means the task is gone, so an aborted
// command still in the backend holds the response back until it is out, and
// gets no status of its own.
TEST(ConnectionTmfWaits, AbortTaskIsAnsweredOnceTheTaskIsOutOfTheBackend) {
  Driver d;
  d.login();
  HeldBackend* held = serve_lun0_on_held_backend(d);
  OtherSessionTask other;
  other.arrive(*lun0(d));
  ASSERT_TRUE(d.send(d.command(0xb00, write10(0, 1), 512, false, true), pattern(512, 4)));
  ASSERT_NE(held->held, nullptr);  // the write is in the backend
  ASSERT_TRUE(d.send(d.tmf(TmfFunction::abort_task, 0xb01, 0, 0xb00, d.cmd_sn - 1)));
  EXPECT_TRUE(d.drain().empty());  // no answer while the write can still land
  EXPECT_EQ(other.aborts, 0);      // ABORT TASK is this session's business
  held->complete();
  Out r = d.only_one();
  EXPECT_EQ(r.op(), Opcode::task_mgmt_response);
  EXPECT_EQ(r.bhs.itt(), 0xb01u);
  EXPECT_EQ(r.bhs.bytes[2], static_cast<std::uint8_t>(TmfResponse::complete));
  EXPECT_EQ(d.conn->tasks_in_flight(), 0u);
}

// A LOGICAL UNIT RESET ends every nexus's tasks for the LU: it is answered
// when both this session's and the other sessions' aborted tasks are gone.
TEST(ConnectionTmfWaits, LunResetWaitsForItsOwnTasksAndTheOtherSessions) {
  Driver d;
  d.login();
  HeldBackend* held = serve_lun0_on_held_backend(d);
  OtherSessionTask other;  // another session's task, in the backend
  other.arrive(*lun0(d));
  ASSERT_TRUE(d.send(d.command(0xb10, read10(0, 1), 512, true, false)));
  ASSERT_NE(held->held, nullptr);
  ASSERT_TRUE(d.send(d.tmf(TmfFunction::logical_unit_reset, 0xb11, 0, kReservedTag, 0)));
  EXPECT_EQ(other.aborts, 1);
  EXPECT_TRUE(d.drain().empty());
  held->complete();
  EXPECT_TRUE(d.drain().empty());  // the other session's task is still in the backend
  lun0(d)->leave_task_set(other.task);
  Out r = d.only_one();  // the response, and nothing for the aborted READ
  EXPECT_EQ(r.op(), Opcode::task_mgmt_response);
  EXPECT_EQ(r.bhs.itt(), 0xb11u);
  EXPECT_EQ(r.bhs.bytes[2], static_cast<std::uint8_t>(TmfResponse::complete));
}

TEST(ConnectionTmfWaits, TargetResetReachesEveryLunOfTheOtherSessions) {
  Driver d;
  d.login();
  // LUN 1 besides LUN 0; another session has a task on each, not in the backend.
  auto map = std::make_shared<scsi::LunMap>(*d.host.target->luns());
  map->add(std::make_shared<scsi::LogicalUnit>(
      1, scsi::LunParams{}, std::make_unique<storage::MemoryBackend>(kLunBytes)));
  d.host.target->set_luns(map);
  OtherSessionTask on0, on1;
  on0.in_backend = on1.in_backend = false;
  on0.arrive(*map->find(0));
  on1.arrive(*map->find(1));
  ASSERT_TRUE(d.send(d.tmf(TmfFunction::target_warm_reset, 0xb20, 0, kReservedTag, 0)));
  EXPECT_EQ(on0.aborts, 1);
  EXPECT_EQ(on1.aborts, 1);
  EXPECT_EQ(d.only_one().bhs.bytes[2], static_cast<std::uint8_t>(TmfResponse::complete));
  map->find(0)->leave_task_set(on0.task);
  map->find(1)->leave_task_set(on1.task);
}

TEST(ConnectionTmfWaits, ClearTaskSetReachesOtherSessionsAbortTaskSetDoesNot) {
  Driver d;
  d.login();
  OtherSessionTask other;
  other.in_backend = false;
  other.arrive(*lun0(d));
  ASSERT_TRUE(d.send(d.tmf(TmfFunction::abort_task_set, 0xb30, 0, kReservedTag, 0)));
  EXPECT_EQ(d.only_one().bhs.bytes[2], static_cast<std::uint8_t>(TmfResponse::complete));
  EXPECT_EQ(other.aborts, 0);
  ASSERT_TRUE(d.send(d.tmf(TmfFunction::clear_task_set, 0xb31, 0, kReservedTag, 0)));
  EXPECT_EQ(d.only_one().bhs.bytes[2], static_cast<std::uint8_t>(TmfResponse::complete));
  EXPECT_EQ(other.aborts, 1);
  lun0(d)->leave_task_set(other.task);
}

// The connection goes while a reset waits: nothing is sent, nothing leaks.
TEST(ConnectionTmfWaits, ShutDownWhileWaitingAnswersNothing) {
  Driver d;
  d.login();
  HeldBackend* held = serve_lun0_on_held_backend(d);
  ASSERT_TRUE(d.send(d.command(0xb40, read10(0, 1), 512, true, false)));
  ASSERT_TRUE(d.send(d.tmf(TmfFunction::abort_task, 0xb41, 0, 0xb40, d.cmd_sn - 1)));
  d.conn->shut_down();
  EXPECT_FALSE(d.conn->idle());  // the READ is still in the backend
  held->complete();
  EXPECT_TRUE(d.drain().empty());
  EXPECT_TRUE(d.conn->idle());
}

// The BHS LUN field goes through scsi's LUN codec: flat space addressing for
// LUNs from 256 in and out, and a field naming a bus other than 0 is no LUN.
TEST(ConnectionLunField, FlatSpaceLunInAndOutAndNoOtherBus) {
  Driver d;
  d.login();
  scsi::LunParams lp;
  lp.block_size = kBlock;
  auto map = std::make_shared<scsi::LunMap>();
  map->add(std::make_shared<scsi::LogicalUnit>(
      300, lp, std::make_unique<storage::MemoryBackend>(kLunBytes)));
  map->add(std::make_shared<scsi::LogicalUnit>(
      44, lp, std::make_unique<storage::MemoryBackend>(kLunBytes)));
  d.host.target->set_luns(std::move(map));
  constexpr std::uint64_t kFlat300 = 0x412c000000000000ull;

  Bhs read = d.command(0xc00, read10(0, 1), 512, true, false);
  read.set_lun_field(kFlat300);
  ASSERT_TRUE(d.send(read));
  bool good = false;
  bool saw_data = false;
  for (auto& o : d.drain()) {
    if (o.op() == Opcode::data_in) {
      saw_data = true;
      EXPECT_EQ(o.bhs.lun_field(), kFlat300);
    }
    if (o.op() == Opcode::scsi_response || (o.op() == Opcode::data_in && (o.bhs.bytes[1] & 0x01)))
      good = o.bhs.bytes[3] == 0x00;
  }
  EXPECT_TRUE(saw_data);
  EXPECT_TRUE(good);

  Bhs other_bus = d.command(0xc01, tur(), 0, false, false);
  other_bus.set_lun_field(0x012c000000000000ull);  // peripheral addressing, bus 1, LUN 44
  ASSERT_TRUE(d.send(other_bus));
  Out r = d.only_one();
  EXPECT_EQ(r.bhs.itt(), 0xc01u);
  EXPECT_EQ(r.bhs.bytes[3], 0x02);  // CHECK CONDITION: LUN 44 of bus 0 is not it
}

// A command already in the backend when its session is preempted: the abort
// is done only when the backend gives it back, and it then ends without status.
TEST(ConnectionPreemptAbort, WaitsForATaskInTheBackendThenDropsIt) {
  Driver d;
  d.login();
  auto backend = std::make_unique<HeldBackend>();
  HeldBackend* held = backend.get();
  scsi::LunParams lp;
  lp.block_size = kBlock;
  auto map = std::make_shared<scsi::LunMap>();
  map->add(std::make_shared<scsi::LogicalUnit>(0, lp, std::move(backend)));
  d.host.target->set_luns(std::move(map));

  ASSERT_TRUE(d.send(d.command(0xb00, write10(0, 1), 512, false, true), pattern(512, 1)));
  ASSERT_NE(held->held, nullptr);  // the write is in flight
  int done = 0;
  lun0(d)->abort_task_set([](const scsi::Task&) { return true; }, nullptr, [&] { ++done; });
  EXPECT_EQ(done, 0);
  EXPECT_EQ(d.conn->tasks_in_flight(), 1u);
  // Another command of the session runs meanwhile.
  ASSERT_TRUE(d.send(d.command(0xb01, tur(), 0, false, false)));
  EXPECT_EQ(d.only_one().bhs.itt(), 0xb01u);
  held->complete();
  EXPECT_EQ(done, 1);
  EXPECT_EQ(d.conn->tasks_in_flight(), 0u);
  EXPECT_TRUE(d.drain().empty());  // no status for the aborted write
}

// Its own key, with a READ of the session in the backend: the READ is
// aborted and waited for, the PR OUT answered only once it is out, and the
// READ gets no status.
TEST(ConnectionPreemptAbort, SelfPreemptWaitsForItsReadInTheBackend) {
  Driver d;
  d.login();
  HeldBackend* held = serve_lun0_on_held_backend(d);
  auto good = [&](std::uint32_t itt, const Bytes& cdb, const Bytes& params) {
    ASSERT_TRUE(d.send(d.command(itt, cdb, 24, false, true), params));
    Out r = d.only_one();
    EXPECT_EQ(r.bhs.itt(), itt);
    EXPECT_EQ(r.bhs.bytes[3], 0x00);
  };
  good(0xd0, prout_cdb(0, 0), prout_params(0, 0xaa));  // REGISTER
  good(0xd1, prout_cdb(1, 1), prout_params(0xaa, 0));  // RESERVE Write Exclusive
  ASSERT_TRUE(d.send(d.command(0xd2, read10(0, 1), 512, true, false)));
  ASSERT_NE(held->held, nullptr);
  ASSERT_TRUE(d.send(d.command(0xd3, prout_cdb(5, 3), 24, false, true), prout_params(0xaa, 0xaa)));
  EXPECT_TRUE(d.drain().empty());  // no GOOD while the READ is in the backend
  EXPECT_EQ(d.conn->tasks_in_flight(), 2u);
  held->complete();
  Out r = d.only_one();  // the PR OUT's GOOD, nothing for the READ
  EXPECT_EQ(r.op(), Opcode::scsi_response);
  EXPECT_EQ(r.bhs.itt(), 0xd3u);
  EXPECT_EQ(r.bhs.bytes[3], 0x00);
  EXPECT_EQ(d.conn->tasks_in_flight(), 0u);
}

// Two sessions sharing the target's LUN map, as every session of a target
// does: a CLEAR TASK SET on one ends the other's WRITE waiting for its
// Data-Out, silently; an ABORT TASK SET does not reach it.
TEST(ConnectionTaskSet, ClearTaskSetOnOneSessionEndsAnothersTasks) {
  Driver a, b;
  b.host.target->set_luns(a.host.target->luns());
  LoginOptions o;
  o.initial_r2t = "Yes";
  a.login(o);
  o.initiator = "iqn.2025-01.com.example:other";
  b.login(o);
  ASSERT_TRUE(a.send(a.command(0xe0, write10(0, 8), 4096, false, true, true)));
  Out r2t = a.only_one();
  ASSERT_EQ(r2t.op(), Opcode::r2t);
  ASSERT_TRUE(b.send(b.tmf(TmfFunction::abort_task_set, 0xe1, 0, kReservedTag, 0)));
  EXPECT_EQ(b.only_one().bhs.bytes[2], static_cast<std::uint8_t>(TmfResponse::complete));
  EXPECT_EQ(a.conn->tasks_in_flight(), 1u);
  ASSERT_TRUE(b.send(b.tmf(TmfFunction::clear_task_set, 0xe2, 0, kReservedTag, 0)));
  EXPECT_EQ(b.only_one().bhs.bytes[2], static_cast<std::uint8_t>(TmfResponse::complete));
  EXPECT_EQ(a.conn->tasks_in_flight(), 0u);
  EXPECT_TRUE(a.drain().empty());
  ASSERT_TRUE(a.send(a.data_out(0xe0, r2t.bhs.ttt(), 0, 0, true), pattern(4096, 7)));
  EXPECT_TRUE(a.drain().empty());  // dropped without a Reject
  EXPECT_FALSE(a.conn->closing());
  EXPECT_EQ(a.host.mem->data()[0], 0);
}

// A command is in its LU's task set from its arrival: when the LUN map is
// replaced before its Data-Out is in, it still runs on the LU it arrived for
// (whose map is kept until it is done), and that LU's aborts reach it, not
// the new one's.
TEST(ConnectionTaskSet, CommandRunsOnTheLuItArrivedForAcrossALiveMapChange) {
  Driver d;
  LoginOptions o;
  o.initial_r2t = "Yes";
  d.login(o);
  std::weak_ptr<scsi::LunMap> old_map = d.host.target->luns();
  std::shared_ptr<scsi::LogicalUnit> old_lu = lun0(d);
  ASSERT_TRUE(d.send(d.command(0xf0, write10(0, 1), 512, false, true, true)));
  Out r2t = d.only_one();
  ASSERT_EQ(r2t.op(), Opcode::r2t);

  auto backend = std::make_unique<storage::MemoryBackend>(kLunBytes);
  storage::MemoryBackend* new_mem = backend.get();
  scsi::LunParams lp;
  lp.block_size = kBlock;
  auto map = std::make_shared<scsi::LunMap>();
  map->add(std::make_shared<scsi::LogicalUnit>(0, lp, std::move(backend)));
  d.host.target->set_luns(map);
  ASSERT_TRUE(d.send(d.command(0xf1, tur(), 0, false, false)));  // the new map is in use
  EXPECT_EQ(d.only_one().bhs.bytes[3], 0x00);
  EXPECT_FALSE(old_map.expired());

  int done = 0;
  map->find(0)->abort_task_set([](const scsi::Task&) { return true; }, nullptr, [&] { ++done; });
  EXPECT_EQ(done, 1);
  EXPECT_EQ(d.conn->tasks_in_flight(), 1u);  // not in the new LU's task set

  ASSERT_TRUE(d.send(d.data_out(0xf0, r2t.bhs.ttt(), 0, 0, true), pattern(512, 9)));
  Out r = d.only_one();
  EXPECT_EQ(r.bhs.itt(), 0xf0u);
  EXPECT_EQ(r.bhs.bytes[3], 0x00);
  EXPECT_EQ(d.host.mem->data()[0], pattern(512, 9)[0]);  // the old LU's medium
  EXPECT_EQ(new_mem->data()[0], 0);
  EXPECT_EQ(d.conn->tasks_in_flight(), 0u);
  ASSERT_TRUE(d.send(d.command(0xf2, tur(), 0, false, false)));
  d.drain();
  EXPECT_TRUE(old_map.expired());  // let go once its last command left
  old_lu.reset();
}

}  // namespace
}  // namespace ringtgt::iscsi
