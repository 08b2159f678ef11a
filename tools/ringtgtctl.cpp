// ringtgtctl: the command line for a running ringtgt, over its admin socket
// (JSON-RPC 2.0, one JSON object per line; see include/ringtgt/admin/json_rpc.hpp).
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ringtgt/config/config.hpp"

namespace {

using json = nlohmann::json;

constexpr int kOk = 0, kRefused = 1, kUsage = 2, kNoConnection = 3, kDenied = 4;

const char* kHelp =
    "Usage: ringtgtctl [--socket PATH] [--json] [--timeout SECONDS] COMMAND ...\n"
    "\n"
    "Talks to a running ringtgt over its admin socket ([admin] socket in its config;\n"
    "default /run/ringtgt/admin.sock, or $RINGTGT_ADMIN_SOCKET).\n"
    "\n"
    "Commands:\n"
    "  version                                  daemon version and uptime\n"
    "  target list\n"
    "  target add IQN [--alias NAME] [--allow INITIATOR]...\n"
    "  target remove IQN [--force]              --force: even while sessions use it\n"
    "  lun list [--target IQN]\n"
    "  lun stats [--target IQN]                 operations, bytes, errors since start\n"
    "  lun add --target IQN --lun N --path FILE [--size SIZE] [--block-size 512|4096]\n"
    "          [--physical-block-size BYTES] [--read-only] [--direct-io]\n"
    "          [--write-ack writethrough|writeback] [--provisioning thin|full]\n"
    "          [--serial S] [--allow INITIATOR]... [--allow-sanitize]\n"
    "          [--sanitize-rate BYTES/S]\n"
    "          [--rbd-conf CEPH.CONF] [--rbd-client ID] [--rbd-keyring FILE]\n"
    "          [--rbd-op-timeout SECONDS]\n"
    "                                           a missing FILE is created sparse at SIZE;\n"
    "                                           --path rbd:POOL/IMAGE serves an RBD image\n"
    "  lun remove --target IQN --lun N [--force] refused while a session uses the target,\n"
    "                                           unless --force (its commands then get\n"
    "                                           LOGICAL UNIT NOT SUPPORTED)\n"
    "  lun resize --target IQN --lun N --size SIZE   grow only\n"
    "  acl list [--target IQN]\n"
    "  acl add|remove --target IQN --initiator IQN [--lun N]\n"
    "  portal list | portal add IP:PORT | portal remove IP:PORT\n"
    "  session list [--target IQN] [--all]      --all: also logins and discovery\n"
    "  session close --tsih N | --initiator IQN [--isid HEX]\n"
    "  connection close ID\n"
    "  reload [--force]                         re-read the config file, apply the difference;\n"
    "                                           a weaker write_ack (writethrough -> writeback)\n"
    "                                           waits until no session uses the target,\n"
    "                                           unless --force\n"
    "  config write [--path FILE]               write the running config (default: its file)\n"
    "  copy list [--target IQN]                 each copy of every mirrored LUN: state,\n"
    "                                           dirty bytes, resync progress; then what\n"
    "                                           each LUN survives, and each remote copy's\n"
    "                                           command size limit and how unmaps reach it\n"
    "  copy fail --target IQN --lun N --copy NAME   take a copy out of the in-sync set (the\n"
    "                                           writes it misses are tracked)\n"
    "  copy resync --target IQN --lun N --copy NAME copy its dirty regions back from an\n"
    "                                           in-sync copy; it rejoins when clean\n"
    "  copy replace --target IQN --lun N --copy NAME   open the copy's store afresh from\n"
    "                                           the config (a new disk or volume at its\n"
    "                                           path, a remote LUN made anew), close the\n"
    "                                           old one, and fill the new one in full\n"
    "  fault inject --target IQN --lun N --fault eio|enospc|short|flush|delay\n"
    "          [--copy NAME] [--lba LBA] [--blocks N] [--io read|write|both] [--count N]\n"
    "          [--delay-ms MS]                  tests only ([testing] fault_injection):\n"
    "                                           arm a fault on the LUN's backend (a mirrored\n"
    "                                           LUN: on copy NAME, default primary); --count:\n"
    "                                           fire N times (default: until cleared)\n"
    "  fault list [--target IQN]                armed faults and faults injected so far\n"
    "  fault clear --target IQN --lun N [--copy NAME] [--id ID]\n"
    "  call METHOD [JSON-OBJECT]                any JSON-RPC method, raw\n"
    "\n"
    "SIZE: bytes, or with K, M, G, T (powers of 1024): 512M, 10G.\n"
    "Live changes are kept in memory: 'config write' saves them; 'reload' goes back to\n"
    "the file.\n"
    "\n"
    "Options:\n"
    "  --socket PATH      the daemon's admin socket\n"
    "  --json             print the daemon's answer as JSON (for scripts)\n"
    "  --timeout SECONDS  how long to wait for an answer (default 60)\n"
    "  --help, --version\n"
    "\n"
    "Exit status:\n"
    "  0  done\n"
    "  1  the daemon refused or failed (its message says why)\n"
    "  2  usage error (bad command or option)\n"
    "  3  cannot connect to the daemon (not running, wrong --socket) or no answer\n"
    "  4  permission denied (run as root, the daemon's user or a member of [admin] group)\n";

[[noreturn]] void usage_error(const std::string& msg) {
  std::fprintf(stderr, "ringtgtctl: %s\nTry 'ringtgtctl --help'.\n", msg.c_str());
  std::exit(kUsage);
}

// The options of one command: --name VALUE, --flag, and positional words.
struct Args {
  std::map<std::string, std::vector<std::string>> values;
  std::vector<std::string> flags;
  std::vector<std::string> words;

  bool flag(const std::string& f) const {
    for (const auto& x : flags)
      if (x == f) return true;
    return false;
  }
  std::optional<std::string> opt(const std::string& n) const {
    auto it = values.find(n);
    if (it == values.end()) return std::nullopt;
    return it->second.back();
  }
  std::string need(const std::string& n) const {
    auto v = opt(n);
    if (!v) usage_error("missing --" + n);
    return *v;
  }
  std::vector<std::string> all(const std::string& n) const {
    auto it = values.find(n);
    return it == values.end() ? std::vector<std::string>{} : it->second;
  }
};

Args parse(const std::vector<std::string>& in, std::size_t from,
           const std::vector<std::string>& value_opts, const std::vector<std::string>& flag_opts,
           std::size_t max_words) {
  Args a;
  for (std::size_t i = from; i < in.size(); ++i) {
    const std::string& s = in[i];
    if (s.rfind("--", 0) == 0) {
      std::string name = s.substr(2), value;
      bool inline_value = false;
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        inline_value = true;
      }
      bool is_value = std::find(value_opts.begin(), value_opts.end(), name) != value_opts.end();
      bool is_flag = std::find(flag_opts.begin(), flag_opts.end(), name) != flag_opts.end();
      if (is_flag && !inline_value) {
        a.flags.push_back(name);
      } else if (is_value) {
        if (!inline_value) {
          if (i + 1 >= in.size()) usage_error("--" + name + " needs a value");
          value = in[++i];
        }
        a.values[name].push_back(value);
      } else {
        usage_error("unknown option " + s);
      }
    } else {
      a.words.push_back(s);
    }
  }
  if (a.words.size() > max_words) usage_error("unexpected argument '" + a.words[max_words] + "'");
  return a;
}

std::uint64_t parse_uint(const std::string& s, const std::string& what) {
  if (s.empty() || s.size() > 19 || s.find_first_not_of("0123456789") != std::string::npos)
    usage_error(what + " must be a number, not '" + s + "'");
  return std::stoull(s);
}

std::uint64_t parse_size(const std::string& s) {
  std::uint64_t v = 0;
  switch (ringtgt::config::parse_size_text(s, v)) {
    case ringtgt::config::SizeProblem::none:
      break;
    case ringtgt::config::SizeProblem::zero:
      usage_error("size must be greater than 0");
    case ringtgt::config::SizeProblem::too_large:
      usage_error("size '" + s + "' is too large");
    case ringtgt::config::SizeProblem::not_a_size:
      usage_error("size '" + s + "' is not a size (bytes, or a number with K, M, G or T)");
  }
  return v;
}

// One request, one answer. Exits with kNoConnection when the daemon cannot be reached.
json call(const std::string& socket_path, const std::string& method, const json& params,
          int timeout_s) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path) usage_error("--socket path is too long");
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    std::fprintf(stderr, "ringtgtctl: cannot connect to %s: %s\n", socket_path.c_str(),
                 std::strerror(err));
    if (err == ENOENT || err == ECONNREFUSED)
      std::fprintf(stderr,
                   "  is ringtgt running? Its config's [admin] socket names the path; "
                   "pass it with --socket.\n");
    if (err == EACCES)
      std::fprintf(stderr, "  run as root, the daemon's user or a member of its [admin] group.\n");
    std::exit(err == EACCES ? kDenied : kNoConnection);
  }
  std::string req =
      json{{"jsonrpc", "2.0"}, {"id", 1}, {"method", method}, {"params", params}}.dump() + "\n";
  std::size_t sent = 0;
  while (sent < req.size()) {
    ssize_t n = ::send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    sent += static_cast<std::size_t>(n);
  }
  std::string in;
  char buf[65536];
  while (in.find('\n') == std::string::npos) {
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, timeout_s * 1000);
    if (r == 0) {
      std::fprintf(stderr, "ringtgtctl: no answer from %s within %d s\n", socket_path.c_str(),
                   timeout_s);
      std::exit(kNoConnection);
    }
    if (r < 0 && errno == EINTR) continue;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    in.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  auto nl = in.find('\n');
  if (nl == std::string::npos) {
    std::fprintf(stderr, "ringtgtctl: the daemon closed the connection without an answer\n");
    std::exit(kNoConnection);
  }
  try {
    return json::parse(in.substr(0, nl));
  } catch (const json::exception& e) {
    std::fprintf(stderr, "ringtgtctl: the daemon's answer is not JSON: %s\n", e.what());
    std::exit(kNoConnection);
  }
}

std::string cell(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  if (v.is_null()) return "-";
  if (v.is_array()) {
    if (v.empty()) return "-";
    std::string out;
    for (const auto& e : v) out += (out.empty() ? "" : ",") + cell(e);
    return out;
  }
  if (v.is_object()) {
    if (v.empty()) return "-";
    std::string out;
    for (const auto& [k, e] : v.items()) out += (out.empty() ? "" : " ") + k + "=" + cell(e);
    return out;
  }
  return v.dump();
}

std::string human_bytes(std::uint64_t b) {
  const char* units[] = {"B", "K", "M", "G", "T"};
  int u = 0;
  double v = static_cast<double>(b);
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char out[32];
  if (u == 0 || v == static_cast<double>(static_cast<std::uint64_t>(v)))
    std::snprintf(out, sizeof out, "%.0f%s", v, units[u]);
  else
    std::snprintf(out, sizeof out, "%.1f%s", v, units[u]);
  return out;
}

// columns: {header, key}; size-like keys get human units.
void table(const json& rows, const std::vector<std::pair<std::string, std::string>>& columns) {
  std::vector<std::vector<std::string>> out;
  std::vector<std::string> head;
  for (const auto& c : columns) head.push_back(c.first);
  out.push_back(head);
  for (const auto& r : rows) {
    std::vector<std::string> line;
    for (const auto& c : columns) {
      const json& v = r.contains(c.second) ? r[c.second] : json(nullptr);
      bool bytes = c.second == "size" || c.second == "bytes_in" || c.second == "bytes_out" ||
                   c.second == "read_bytes" || c.second == "write_bytes" ||
                   c.second == "dirty_bytes" || c.second == "resynced_bytes";
      line.push_back(bytes && v.is_number() ? human_bytes(v.get<std::uint64_t>()) : cell(v));
    }
    out.push_back(line);
  }
  std::vector<std::size_t> width(columns.size(), 0);
  for (const auto& l : out)
    for (std::size_t i = 0; i < l.size(); ++i) width[i] = std::max(width[i], l[i].size());
  for (const auto& l : out) {
    std::string s;
    for (std::size_t i = 0; i < l.size(); ++i) {
      s += l[i];
      if (i + 1 < l.size()) s += std::string(width[i] - l[i].size() + 2, ' ');
    }
    std::printf("%s\n", s.c_str());
  }
  if (rows.empty()) std::printf("(none)\n");
}

// Under copy list's table, one line per mirrored LUN: what it survives,
// "warning:" first when its copies share a failure domain.
void print_redundancy(const json& rows) {
  std::string last;
  for (const auto& r : rows) {
    const std::string lun = "target " + cell(r["target"]) + " LUN " + cell(r["lun"]);
    if (lun == last || !r.contains("redundancy")) continue;
    last = lun;
    const bool warn = r.value("redundancy_warning", false);
    std::printf("%s%s: %s\n", warn ? "warning: " : "", lun.c_str(),
                r["redundancy"].get<std::string>().c_str());
  }
}

// Then one line per remote copy: its LUN as the last login found it.
void print_remote_links(const json& rows) {
  for (const auto& r : rows) {
    if (!r.contains("remote") || r["remote"].is_null()) continue;
    const json& link = r["remote"];
    std::string what = link["unmaps_as"].is_null() ? std::string("not logged in yet")
                       : link["max_transfer_bytes"].is_null()
                           ? "no transfer limit stated"
                           : "at most " + cell(link["max_transfer_bytes"]) + " bytes a command";
    if (!link["unmaps_as"].is_null()) what += ", unmaps as " + cell(link["unmaps_as"]);
    std::printf("copy %s of target %s LUN %s: %s (%s)\n", cell(r["copy"]).c_str(),
                cell(r["target"]).c_str(), cell(r["lun"]).c_str(), cell(link["url"]).c_str(),
                what.c_str());
  }
}

void print_change(const json& r) {
  const json& applied = r.value("applied", json::array());
  if (applied.empty()) std::printf("no change\n");
  for (const auto& a : applied) std::printf("applied: %s\n", cell(a).c_str());
  for (const auto& n : r.value("needs_restart", json::array()))
    std::printf("not applied: %s\n", cell(n).c_str());
  for (const auto& n : r.value("deferred", json::array()))
    std::printf("deferred: %s\n", cell(n).c_str());
}

std::string absolute(const std::string& p) {
  std::error_code ec;
  auto a = std::filesystem::absolute(p, ec);
  return ec ? p : a.lexically_normal().string();
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> in(argv + 1, argv + argc);
  std::string socket_path = ringtgt::config::kDefaultAdminSocket;
  if (const char* env = std::getenv("RINGTGT_ADMIN_SOCKET"); env && *env) socket_path = env;
  bool as_json = false;
  int timeout = 60;
  std::size_t i = 0;
  for (; i < in.size() && in[i].rfind("--", 0) == 0; ++i) {
    const std::string& a = in[i];
    if (a == "--help") {
      std::fputs(kHelp, stdout);
      return kOk;
    } else if (a == "--version") {
      std::printf("ringtgtctl %s\n", RINGTGT_VERSION);
      return kOk;
    } else if (a == "--json") {
      as_json = true;
    } else if (a == "--socket" || a == "--timeout") {
      if (i + 1 >= in.size()) usage_error(a + " needs a value");
      if (a == "--socket")
        socket_path = in[++i];
      else
        timeout =
            static_cast<int>(std::min<std::uint64_t>(parse_uint(in[++i], "--timeout"), 86400));
    } else if (a.rfind("--socket=", 0) == 0) {
      socket_path = a.substr(9);
    } else {
      usage_error("unknown option " + a);
    }
  }
  if (i >= in.size()) usage_error("no command given");
  const std::string noun = in[i];
  const std::string verb = i + 1 < in.size() ? in[i + 1] : "";
  auto cmd = [&](const char* n, const char* v) { return noun == n && verb == v; };

  std::string method;
  json params = json::object();
  std::function<void(const json&)> show;

  if (noun == "version") {
    parse(in, i + 1, {}, {}, 0);
    method = "version";
    show = [](const json& r) {
      std::printf("ringtgt %s, up %llds, pid %s, %s workers, config %s\n",
                  cell(r["version"]).c_str(), static_cast<long long>(r.value("uptime_seconds", 0)),
                  cell(r["pid"]).c_str(), cell(r["workers"]).c_str(), cell(r["config"]).c_str());
    };
  } else if (cmd("target", "list")) {
    parse(in, i + 2, {}, {}, 0);
    method = "target.list";
    show = [](const json& r) {
      table(r, {{"TARGET", "name"},
                {"ALIAS", "alias"},
                {"LUNS", "luns"},
                {"SESSIONS", "sessions"},
                {"CHAP", "chap"},
                {"ALLOWED INITIATORS", "allowed_initiators"}});
    };
  } else if (cmd("target", "add")) {
    auto a = parse(in, i + 2, {"alias", "allow"}, {}, 1);
    if (a.words.empty()) usage_error("target add needs the target's name (IQN)");
    method = "target.add";
    params["name"] = a.words[0];
    if (auto v = a.opt("alias")) params["alias"] = *v;
    if (!a.all("allow").empty()) params["allowed_initiators"] = a.all("allow");
  } else if (cmd("target", "remove")) {
    auto a = parse(in, i + 2, {}, {"force"}, 1);
    if (a.words.empty()) usage_error("target remove needs the target's name (IQN)");
    method = "target.remove";
    params["name"] = a.words[0];
    params["force"] = a.flag("force");
  } else if (cmd("lun", "list")) {
    auto a = parse(in, i + 2, {"target"}, {}, 0);
    method = "lun.list";
    if (auto v = a.opt("target")) params["target"] = *v;
    show = [](const json& r) {
      table(r, {{"TARGET", "target"},
                {"LUN", "lun"},
                {"SIZE", "size"},
                {"BLOCK", "block_size"},
                {"WRITE_ACK", "write_ack"},
                {"RO", "read_only"},
                {"PATH", "path"},
                {"STATE", "state"},
                {"ALLOWED INITIATORS", "allowed_initiators"}});
    };
  } else if (cmd("lun", "stats")) {
    auto a = parse(in, i + 2, {"target"}, {}, 0);
    method = "lun.stats";
    if (auto v = a.opt("target")) params["target"] = *v;
    show = [](const json& r) {
      table(r, {{"TARGET", "target"},
                {"LUN", "lun"},
                {"READS", "reads"},
                {"WRITES", "writes"},
                {"READ", "read_bytes"},
                {"WRITTEN", "write_bytes"},
                {"ERRORS", "error_total"},
                {"IN FLIGHT", "in_flight"}});
    };
  } else if (cmd("lun", "add")) {
    auto a = parse(in, i + 2,
                   {"target", "lun", "path", "size", "block-size", "physical-block-size",
                    "write-ack", "provisioning", "serial", "allow", "sanitize-rate", "rbd-conf",
                    "rbd-client", "rbd-keyring", "rbd-op-timeout"},
                   {"read-only", "direct-io", "allow-sanitize"}, 0);
    method = "lun.add";
    params["target"] = a.need("target");
    params["lun"] = parse_uint(a.need("lun"), "--lun");
    const std::string path = a.need("path");
    params["path"] = path.starts_with("rbd:") ? path : absolute(path);
    // How to reach an RBD image's cluster: the LUN's [target.lun.rbd] table.
    if (auto v = a.opt("rbd-conf")) params["rbd"]["conf"] = absolute(*v);
    if (auto v = a.opt("rbd-client")) params["rbd"]["client"] = *v;
    if (auto v = a.opt("rbd-keyring")) params["rbd"]["keyring"] = absolute(*v);
    if (auto v = a.opt("rbd-op-timeout"))
      params["rbd"]["op_timeout"] = parse_uint(*v, "--rbd-op-timeout");
    if (auto v = a.opt("size")) params["size"] = parse_size(*v);
    if (auto v = a.opt("block-size")) params["block_size"] = parse_uint(*v, "--block-size");
    if (auto v = a.opt("physical-block-size"))
      params["physical_block_size"] = parse_uint(*v, "--physical-block-size");
    if (auto v = a.opt("write-ack")) params["write_ack"] = *v;
    if (auto v = a.opt("provisioning")) params["provisioning"] = *v;
    if (auto v = a.opt("serial")) params["serial"] = *v;
    if (a.flag("read-only")) params["read_only"] = true;
    if (a.flag("direct-io")) params["direct_io"] = true;
    if (a.flag("allow-sanitize")) params["allow_sanitize"] = true;
    if (auto v = a.opt("sanitize-rate")) params["sanitize_rate"] = parse_size(*v);
    if (!a.all("allow").empty()) params["allowed_initiators"] = a.all("allow");
  } else if (cmd("lun", "remove")) {
    auto a = parse(in, i + 2, {"target", "lun"}, {"force"}, 0);
    method = "lun.remove";
    params["target"] = a.need("target");
    params["lun"] = parse_uint(a.need("lun"), "--lun");
    params["force"] = a.flag("force");
  } else if (cmd("lun", "resize")) {
    auto a = parse(in, i + 2, {"target", "lun", "size"}, {}, 0);
    method = "lun.resize";
    params["target"] = a.need("target");
    params["lun"] = parse_uint(a.need("lun"), "--lun");
    params["size"] = parse_size(a.need("size"));
  } else if (cmd("acl", "list")) {
    auto a = parse(in, i + 2, {"target"}, {}, 0);
    method = "acl.list";
    if (auto v = a.opt("target")) params["target"] = *v;
    show = [](const json& r) {
      table(r, {{"TARGET", "target"},
                {"ALLOWED INITIATORS", "allowed_initiators"},
                {"PER-LUN", "lun_allowed_initiators"},
                {"CHAP", "chap"}});
    };
  } else if (cmd("acl", "add") || cmd("acl", "remove")) {
    auto a = parse(in, i + 2, {"target", "initiator", "lun"}, {}, 0);
    method = "acl." + verb;
    params["target"] = a.need("target");
    params["initiator"] = a.need("initiator");
    if (auto v = a.opt("lun")) params["lun"] = parse_uint(*v, "--lun");
  } else if (cmd("portal", "list")) {
    parse(in, i + 2, {}, {}, 0);
    method = "portal.list";
    show = [](const json& r) { table(r, {{"PORTAL", "listen"}}); };
  } else if (cmd("portal", "add") || cmd("portal", "remove")) {
    auto a = parse(in, i + 2, {}, {}, 1);
    if (a.words.empty()) usage_error("portal " + verb + " needs IP:PORT");
    method = "portal." + verb;
    params["listen"] = a.words[0];
  } else if (cmd("session", "list")) {
    auto a = parse(in, i + 2, {"target"}, {"all"}, 0);
    method = "session.list";
    if (auto v = a.opt("target")) params["target"] = *v;
    if (a.flag("all")) params["all"] = true;
    show = [](const json& r) {
      table(r, {{"CONN", "connection_id"},
                {"TSIH", "tsih"},
                {"INITIATOR", "initiator"},
                {"ISID", "isid"},
                {"PEER", "peer"},
                {"TARGET", "target"},
                {"IN-FLIGHT", "commands_in_flight"},
                {"IN", "bytes_in"},
                {"OUT", "bytes_out"}});
    };
  } else if (cmd("session", "close")) {
    auto a = parse(in, i + 2, {"tsih", "initiator", "isid"}, {}, 0);
    method = "session.close";
    if (auto v = a.opt("tsih")) params["tsih"] = parse_uint(*v, "--tsih");
    if (auto v = a.opt("initiator")) params["initiator"] = *v;
    if (auto v = a.opt("isid")) params["isid"] = *v;
    if (!params.contains("tsih") && !params.contains("initiator"))
      usage_error("session close needs --tsih N or --initiator IQN");
    show = [](const json& r) {
      for (const auto& c : r["closed"])
        std::printf("closed session tsih %s of %s (%s)\n", cell(c["tsih"]).c_str(),
                    cell(c["initiator"]).c_str(), cell(c["peer"]).c_str());
    };
  } else if (cmd("connection", "close")) {
    auto a = parse(in, i + 2, {}, {}, 1);
    if (a.words.empty())
      usage_error("connection close needs the connection's ID (session list --all)");
    method = "connection.close";
    params["id"] = parse_uint(a.words[0], "connection ID");
    show = [](const json& r) {
      std::printf("closed connection %s (%s)\n", cell(r["closed"]["connection_id"]).c_str(),
                  cell(r["closed"]["peer"]).c_str());
    };
  } else if (noun == "reload") {
    auto a = parse(in, i + 1, {}, {"force"}, 0);
    method = "config.reload";
    params["force"] = a.flag("force");
  } else if (cmd("config", "write")) {
    auto a = parse(in, i + 2, {"path"}, {}, 0);
    method = "config.write";
    if (auto v = a.opt("path")) params["path"] = absolute(*v);
    show = [](const json& r) { std::printf("written to %s\n", cell(r["path"]).c_str()); };
  } else if (cmd("copy", "list")) {
    auto a = parse(in, i + 2, {"target"}, {}, 0);
    method = "copy.list";
    if (auto v = a.opt("target")) params["target"] = *v;
    show = [](const json& r) {
      table(r, {{"TARGET", "target"},
                {"LUN", "lun"},
                {"COPY", "copy"},
                {"STATE", "state"},
                {"DIRTY", "dirty_bytes"},
                {"RESYNC", "resync_progress"},
                {"RESYNCED", "resynced_bytes"},
                {"BEHIND", "writes_behind"},
                {"DOMAIN", "failure_domain"}});
      print_redundancy(r);
      print_remote_links(r);
    };
  } else if (cmd("copy", "fail") || cmd("copy", "resync") || cmd("copy", "replace")) {
    auto a = parse(in, i + 2, {"target", "lun", "copy"}, {}, 0);
    method = "copy." + verb;
    params["target"] = a.need("target");
    params["lun"] = parse_uint(a.need("lun"), "--lun");
    params["copy"] = a.need("copy");
    show = [](const json& r) {
      std::printf("copy %s: %s (%s dirty bytes)\n", cell(r["copy"]).c_str(),
                  cell(r["state"]).c_str(), cell(r["dirty_bytes"]).c_str());
      if (r.contains("location")) {
        std::printf("store: %s; full sync: %s\n", cell(r["location"]).c_str(),
                    cell(r["full_sync"]).c_str());
      }
    };
  } else if (cmd("fault", "inject")) {
    auto a = parse(in, i + 2,
                   {"target", "lun", "copy", "fault", "lba", "blocks", "io", "count", "delay-ms"},
                   {}, 0);
    method = "fault.inject";
    params["target"] = a.need("target");
    params["lun"] = parse_uint(a.need("lun"), "--lun");
    if (auto v = a.opt("copy")) params["copy"] = *v;
    params["fault"] = a.need("fault");
    if (auto v = a.opt("lba")) params["lba"] = parse_uint(*v, "--lba");
    if (auto v = a.opt("blocks")) params["blocks"] = parse_uint(*v, "--blocks");
    if (auto v = a.opt("io")) params["io"] = *v;
    if (auto v = a.opt("count")) params["count"] = parse_uint(*v, "--count");
    if (auto v = a.opt("delay-ms")) params["delay_ms"] = parse_uint(*v, "--delay-ms");
    show = [](const json& r) {
      std::printf("fault %s armed: %s\n", cell(r["id"]).c_str(), cell(r).c_str());
    };
  } else if (cmd("fault", "list")) {
    auto a = parse(in, i + 2, {"target"}, {}, 0);
    method = "fault.list";
    if (auto v = a.opt("target")) params["target"] = *v;
    show = [](const json& r) {
      table(r, {{"TARGET", "target"},
                {"LUN", "lun"},
                {"COPY", "copy"},
                {"ARMED", "faults"},
                {"INJECTED", "injected"}});
    };
  } else if (cmd("fault", "clear")) {
    auto a = parse(in, i + 2, {"target", "lun", "copy", "id"}, {}, 0);
    method = "fault.clear";
    params["target"] = a.need("target");
    params["lun"] = parse_uint(a.need("lun"), "--lun");
    if (auto v = a.opt("copy")) params["copy"] = *v;
    if (auto v = a.opt("id")) params["id"] = parse_uint(*v, "--id");
    show = [](const json& r) { std::printf("%s fault(s) cleared\n", cell(r["cleared"]).c_str()); };
  } else if (noun == "call") {
    if (verb.empty()) usage_error("call needs a METHOD");
    method = verb;
    if (i + 2 < in.size()) {
      try {
        params = json::parse(in[i + 2]);
      } catch (const json::exception& e) {
        usage_error(std::string("JSON-OBJECT is not JSON: ") + e.what());
      }
    }
    as_json = true;
  } else {
    usage_error("unknown command '" + noun + (verb.empty() ? "" : " " + verb) + "'");
  }
  if (!show) show = print_change;

  json answer = call(socket_path, method, params, timeout);
  if (answer.contains("error")) {
    const json& e = answer["error"];
    int code = e.value("code", 0);
    if (as_json) std::printf("%s\n", answer.dump(2).c_str());
    std::fprintf(stderr, "ringtgtctl: %s: %s\n", method.c_str(),
                 e.value("message", std::string("error")).c_str());
    return code == -32001 ? kDenied : kRefused;
  }
  const json& r = answer.contains("result") ? answer["result"] : json(nullptr);
  if (as_json)
    std::printf("%s\n", r.dump(2).c_str());
  else
    show(r);
  return kOk;
}
