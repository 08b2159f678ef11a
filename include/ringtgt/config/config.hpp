// The validated configuration: what the daemon serves and how.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "ringtgt/config/iscsi_url.hpp"
#include "ringtgt/storage/write_ack_policy.hpp"

namespace ringtgt::config {

struct Portal {
  std::string host;  // IPv4 or IPv6 literal ("127.0.0.1", "::1", "0.0.0.0", "::")
  std::uint16_t port = 3260;
  std::string to_string() const;  // "127.0.0.1:3260", "[::1]:3260"
  bool operator==(const Portal&) const = default;
};

// write_ack = "writethrough" | "writeback": storage's policy, named as storage names it.
using storage::WriteAckPolicy;

// Logical block provisioning of a LUN: thin (UNMAP and WRITE SAME with UNMAP
// deallocate; LBPME=1) or full. Unset: thin when the backend can unmap
// (probed when it is opened), else full. "thin" on a backend that cannot
// unmap stops the daemon at startup naming the LUN; on a read_only LUN it is
// a config error.
enum class Provisioning { thin, full };

// The keys a [[target.lun]] may have: the config file's and the admin socket's lun.add
// (which calls number "lun").
inline constexpr std::array<std::string_view, 22> kLunKeys{
    "number",         "path",           "size",           "block_size", "physical_block_size",
    "read_only",      "direct_io",      "write_ack",      "serial",     "allowed_initiators",
    "provisioning",   "allow_sanitize", "sanitize_rate",  "rbd",        "ack_quorum",
    "on_quorum_loss", "quorum_wait",    "failure_domain", "copy",       "resync_region_size",
    "resync_rate",    "max_transfer"};

// The keys of a LUN's [[target.lun.copy]] tables.
inline constexpr std::array<std::string_view, 9> kCopyKeys{"name",
                                                           "path",
                                                           "url",
                                                           "failure_domain",
                                                           "chap_user",
                                                           "chap_secret_file",
                                                           "command_timeout",
                                                           "connect_wait",
                                                           "reconnect_max"};

// What a mirrored LUN answers writes with while fewer than ack_quorum of its
// copies are in sync (docs/replication.md): fail: a CHECK CONDITION Linux
// retries and then fails upward; read_only: DATA PROTECT, reads go on; wait:
// hold writes until the quorum is back, for at most quorum_wait seconds each,
// then answer them as fail does.
enum class QuorumLossPolicy { fail, wait, read_only };
const char* to_string(QuorumLossPolicy p);

// CHAP credentials ringtgt logs in with as an initiator (a remote copy): the
// secret read from its file when the configuration is loaded; never logged.
struct InitiatorChap {
  std::string user;
  std::string secret;
  std::string secret_file;
  bool operator==(const InitiatorChap&) const = default;
};

// A copy of a LUN besides its primary path that every write goes to as well
// (docs/replication.md): a local file or block device (path), or a LUN of
// another iSCSI target (url) that ringtgt logs in to as an initiator.
struct LunCopy {
  std::string name;                   // in logs, metrics and ringtgtctl; not "primary"
  std::string path;                   // absolute; empty for a remote copy
  std::optional<IscsiUrl> url;        // set: a remote copy
  std::optional<InitiatorChap> chap;  // a remote copy's login, if it needs one
  std::string failure_domain;         // free text ("disk:nvme1", "host:b"); empty: not said
  // A remote copy's bound, in seconds, on a command or a login left
  // unanswered: past it the connection is dropped and the copy leaves the
  // in-sync set (1..300).
  std::uint32_t command_timeout_seconds = 10;
  // How long the daemon waits for a remote copy's first login when it opens
  // the LUN (at start, on a reload) before it serves the LUN with the copy
  // still connecting (0..60: systemd's start timeout is 90 s).
  std::uint32_t connect_wait_seconds = 3;
  // The longest pause between reconnect attempts: the first comes 0.2 s after
  // the loss, each next one twice as late, up to this (1..300).
  std::uint32_t reconnect_max_seconds = 5;
  // "FILE:LINE:COL" of its table, for errors found when it is opened (a copy
  // smaller than the primary); not part of its identity.
  std::string where;
  bool operator==(const LunCopy& o) const {
    return name == o.name && path == o.path && url == o.url && chap == o.chap &&
           failure_domain == o.failure_domain &&
           command_timeout_seconds == o.command_timeout_seconds &&
           connect_wait_seconds == o.connect_wait_seconds &&
           reconnect_max_seconds == o.reconnect_max_seconds;
  }
};

// The keys of a LUN's [target.lun.rbd] table.
inline constexpr std::array<std::string_view, 7> kRbdKeys{
    "pool", "namespace", "image", "conf", "client", "keyring", "op_timeout"};

// A Ceph RBD image a LUN is served from: path = "rbd:POOL/IMAGE" (or
// "rbd:POOL/NAMESPACE/IMAGE"), or a [target.lun.rbd] table, which also says how
// to reach the cluster. Nothing here is checked against the cluster when the
// config is loaded; the LUN factory connects.
struct RbdImage {
  std::string pool;
  std::string rados_namespace;  // empty: the pool's default namespace
  std::string image;
  std::string conf;               // ceph.conf; empty: librados's search (/etc/ceph/ceph.conf)
  std::string client = "admin";   // the cephx user's id, without "client."
  std::string keyring;            // empty: what ceph.conf says
  std::uint32_t op_timeout = 20;  // seconds: rados_osd_op_timeout and rados_mon_op_timeout
  // "rbd:POOL/IMAGE" or "rbd:POOL/NAMESPACE/IMAGE": the LUN's path.
  std::string spec() const;
  bool operator==(const RbdImage&) const = default;
};

struct Lun {
  std::uint32_t number = 0;
  std::string path;                   // file or block device, absolute; or rbd->spec()
  std::optional<RbdImage> rbd;        // set: an RBD image, not a file
  std::optional<std::uint64_t> size;  // bytes; a missing file is created sparse at this size
  std::uint32_t block_size = 512;     // 512 or 4096
  // Physical block size reported to initiators (READ CAPACITY(16) LBPPBE), so
  // they align I/O to the medium's real blocks; 0: the same as block_size.
  std::uint32_t physical_block_size = 0;
  // Largest READ or WRITE the LUN takes (VPD Block Limits), in bytes; 0: the
  // default (32 MiB). Lower it to match what is under it, as LIO's max_sectors.
  std::uint32_t max_transfer = 0;
  bool read_only = false;
  // O_DIRECT; unset: on for a block device, off for a file (README, "direct_io").
  std::optional<bool> direct_io;
  WriteAckPolicy write_ack = WriteAckPolicy::writethrough;
  std::optional<Provisioning> provisioning;  // unset: thin if the backend can unmap
  std::string serial;                        // empty: derived from target name and LUN number
  // LUN masking: the initiators that see this LUN; empty: every initiator of the target.
  std::vector<std::string> allowed_initiators;
  // SANITIZE (SBC-4) erases the whole LUN: refused unless this is set.
  bool allow_sanitize = false;
  // Bytes per second a SANITIZE OVERWRITE writes at most, so that it leaves
  // the disk to the other LUNs on it; 0: as fast as the store takes them.
  std::uint64_t sanitize_rate = 0;
  // --- mirroring (docs/replication.md) ---
  // Copies every write goes to besides path; empty: an unmirrored LUN.
  std::vector<LunCopy> copies;
  // Copies (the primary counted) that must hold a write durably before
  // GOOD; 0: all of them (copies.size() + 1).
  std::uint32_t ack_quorum = 0;
  QuorumLossPolicy on_quorum_loss = QuorumLossPolicy::fail;
  // Seconds a write waits for the quorum under on_quorum_loss = "wait". Below
  // Linux's SCSI command timeout (30 s), so that the initiator hears the
  // answer before it aborts the command.
  std::uint32_t quorum_wait_seconds = 20;
  std::string failure_domain;  // the primary's; empty: not said
  // The dirty-region bitmap's grain: a write a copy misses marks the regions
  // it touches, and a resync copies whole regions. A power of two from
  // block_size to 1 GiB.
  std::uint64_t resync_region_size = std::uint64_t{1} << 20;
  // Bytes per second a resync copies at most, so that it leaves the disks to
  // the initiators; at least one region per second.
  std::uint64_t resync_rate = std::uint64_t{100} << 20;
  std::uint32_t quorum() const {
    return ack_quorum != 0 ? ack_quorum : static_cast<std::uint32_t>(copies.size() + 1);
  }
};

// CHAP credentials. The secrets are read from their files when the configuration is
// loaded (files must not be accessible by group or others); never log them.
struct Chap {
  std::string user;         // the CHAP_N the initiator must send
  std::string secret;       // its secret
  std::string secret_file;  // where the secret came from
  // Mutual CHAP (optional; empty user: none): what the target answers when the initiator
  // asks it to authenticate itself.
  std::string mutual_user;
  std::string mutual_secret;
  std::string mutual_secret_file;
  bool mutual() const { return !mutual_user.empty(); }
};

struct Target {
  std::string name;                             // IQN (or eui./naa. name)
  std::string alias;                            // TargetAlias, may be empty
  std::vector<std::string> allowed_initiators;  // empty: every initiator may log in
  std::optional<Chap> chap;                     // set: AuthMethod=CHAP is required
  std::vector<Lun> luns;
  // The [[portal]]s it is offered on (SendTargets) and reachable through
  // (login); each one of the listen values. Empty: every portal.
  std::vector<Portal> portals;
};

// Operational values the target offers or enforces in login negotiation.
struct IscsiSettings {
  std::uint32_t max_recv_data_segment_length = 262144;
  std::uint32_t max_burst_length = 1048576;
  std::uint32_t first_burst_length = 65536;
  bool initial_r2t = false;
  bool immediate_data = true;
  std::uint32_t max_outstanding_r2t = 1;
  // Digests, in the file "allowed" (default), "never" or "required":
  // allowed: the initiator chooses (RFC 7143: the target takes the first value of the
  //   initiator's list that it supports), so None or CRC32C;
  // never: None only (header_digest false here); required: CRC32C only (require_* true)
  //   for normal sessions. An initiator that insists otherwise is refused at login.
  // true and false are accepted as the old spellings of "allowed" and "never".
  bool header_digest = true;
  bool data_digest = true;
  bool require_header_digest = false;
  bool require_data_digest = false;
  // The file's name of a digest setting: "allowed", "never" or "required".
  static const char* digest_setting(bool allowed, bool required) {
    return required ? "required" : allowed ? "allowed" : "never";
  }
  std::uint32_t default_time2wait = 2;
  std::uint32_t default_time2retain = 0;
  std::uint32_t queue_depth = 128;          // commands outstanding per session (MaxCmdSN window)
  std::uint32_t nop_interval_seconds = 15;  // NOP-In ping on an idle connection; 0: never
  std::uint32_t nop_timeout_seconds = 30;   // drop the connection when a ping goes unanswered
  std::uint32_t login_timeout_seconds = 15;
};

// [metrics]: the Prometheus /metrics endpoint (HTTP); listen unset: no endpoint.
struct MetricsSettings {
  std::optional<Portal> listen;  // "A.B.C.D[:PORT]", literal IPv4 address, default port 9105
};

// [limits]: what one host gives all initiators together, so a hostile or
// broken one cannot exhaust it. Defaults protect a small host.
struct Limits {
  // Sessions in full feature phase (normal and discovery); a login over the
  // limit gets status 0x0302 (out of resources) and a log line naming it.
  std::uint32_t max_sessions = 64;
  std::uint32_t max_sessions_per_initiator = 16;  // by InitiatorName
  // TCP connections, logged in or not; one over it is accepted and closed at
  // once with a log line.
  std::uint32_t max_connections = 1024;
  // Bytes of command data buffers (Data-Out and Data-In) all workers may hold;
  // a command that does not fit gets TASK SET FULL (or BUSY when its session
  // has nothing else in flight), which initiators retry.
  std::uint64_t max_buffer_memory = 512ull << 20;
  // Bytes of responses (Data-In, status, NOP-In echoes) one connection may have
  // queued and not yet sent: past it the connection stops reading commands until
  // the initiator has read half of them, so a peer that does not read cannot pile
  // up the target's memory. Never refuses a command.
  std::uint64_t max_session_output = 16ull << 20;
};
// --- admin socket (ringtgtctl) ---
// [admin] socket = PATH (default kDefaultAdminSocket; relative: against the config file's
// folder), group = NAME (optional: its members may use the socket besides root and the
// daemon's own user). Changing either needs a restart.
inline constexpr const char* kDefaultAdminSocket = "/run/ringtgt/admin.sock";
struct AdminSettings {
  std::string socket = kDefaultAdminSocket;
  std::string group;  // empty: only root and the daemon's uid
};
// --- end admin socket ---

// [testing]: switches for tests; a production config has none of them.
// durability_log: the path of the durability log (storage/durability_log.hpp)
// the daemon then records every write, flush and acknowledgement in
// (relative: against the config file's folder); empty: none.
// ack_before_flush (needs durability_log): durable writes are acknowledged
// from the page cache, with no flush, a deliberate bug that
// ringtgt-durability-check must report.
struct DurabilityTesting {
  std::string log_path;
  bool ack_before_flush = false;
};

// [testing] fault_injection: every LUN's backend is wrapped in
// storage::FaultInjectingBackend, and the admin socket's fault.* methods
// (ringtgtctl fault) arm faults on it. The daemon warns loudly at start.
struct FaultTesting {
  bool fault_injection = false;
};

struct Config {
  std::string source;    // the file it came from
  unsigned workers = 0;  // reactor threads; 0: one per core
  std::string log_level = "info";
  std::string state_dir;  // absolute; relative paths resolve against the config file's folder
                          // (APTPL reservations: pr-<NAA>.state, one per LUN)
  std::vector<Portal> portals;
  IscsiSettings iscsi;
  std::optional<Chap> discovery_chap;  // [discovery]: CHAP for discovery sessions
  Limits limits;                       // [limits]
  std::vector<Target> targets;
  MetricsSettings metrics;
  AdminSettings admin;
  DurabilityTesting durability_testing;  // [testing] durability_log, ack_before_flush
  FaultTesting fault_testing;            // [testing] fault_injection
};

// A configuration that cannot be used: says where and why.
class ConfigError : public std::runtime_error {
 public:
  ConfigError(std::string file, unsigned line, unsigned column, const std::string& what);
  const std::string& file() const { return file_; }
  unsigned line() const { return line_; }
  unsigned column() const { return column_; }

 private:
  std::string file_;
  unsigned line_, column_;
};

// Why name is not a valid iSCSI name (RFC 7143 section 4.2.7: "iqn.yyyy-mm.reversed.domain[:x]",
// "eui." + 16 hex digits, "naa." + 16 or 32 hex digits; at most 223 bytes; iqn names lowercase
// a-z 0-9 '-' '.' ':'), or nullopt when it is valid. For target and initiator names alike.
std::optional<std::string> iscsi_name_problem(std::string_view name);

// A size as people write it: a number of bytes, or a number with the suffix K, M, G or
// T (powers of 1024). For the config's size keys and for ringtgtctl's --size.
enum class SizeProblem { none, not_a_size, zero, too_large };
SizeProblem parse_size_text(std::string_view text, std::uint64_t& bytes);

// Parses and validates; throws ConfigError ("FILE:LINE:COLUMN: message").
Config load_file(const std::string& path);
Config load_string(const std::string& text, const std::string& source_name);

// One LUN from the keys of a [[target.lun]] table (TOML text), by the rules of the config
// file: one set of rules for files and for lun.add. A relative path is refused (there is
// no config folder to resolve it against); allowed_initiators are checked as names only
// (whether the target admits them is validate()'s). Throws ConfigError.
Lun load_lun(const std::string& text, const std::string& source_name);

// --- writing (live changes, config.write) ---
// TOML text that load_string reads back to c: every key explicit, paths absolute, CHAP by
// secret file. Starts with a comment saying ringtgt wrote it and comments were not kept.
std::string to_toml(const Config& c);
// c as load_string sees it: throws ConfigError (locations in to_toml(c)) when a change
// made in code broke a rule of the loader; one set of rules for files and live changes.
Config validate(const Config& c);

}  // namespace ringtgt::config
