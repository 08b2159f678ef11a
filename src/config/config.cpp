// Reads the TOML configuration with toml++ and validates it into a Config.
// Every rejection is a ConfigError that points at the offending key or value.
#include "ringtgt/config/config.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>
#include <bit>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <map>
#include <set>
#include <span>
#include <string_view>

#include <toml++/toml.h>

namespace ringtgt::config {

namespace fs = std::filesystem;

ConfigError::ConfigError(std::string file, unsigned line, unsigned column, const std::string& what)
    : std::runtime_error(file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " +
                         what),
      file_(std::move(file)),
      line_(line),
      column_(column) {}

std::string Portal::to_string() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

std::optional<std::string> iscsi_name_problem(std::string_view name) {
  auto is_hex = [](std::string_view s) {
    for (char c : s) {
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
        return false;
      }
    }
    return true;
  };
  auto is_digits = [](std::string_view s) {
    for (char c : s) {
      if (c < '0' || c > '9') return false;
    }
    return true;
  };
  if (name.empty()) return "it is empty";
  if (name.size() > 223) {
    return "it is " + std::to_string(name.size()) + " bytes long, at most 223 are allowed";
  }
  if (name.starts_with("eui.")) {
    std::string_view hex = name.substr(4);
    if (hex.size() != 16 || !is_hex(hex)) return "\"eui.\" must be followed by 16 hex digits";
    return std::nullopt;
  }
  if (name.starts_with("naa.")) {
    std::string_view hex = name.substr(4);
    if ((hex.size() != 16 && hex.size() != 32) || !is_hex(hex)) {
      return "\"naa.\" must be followed by 16 or 32 hex digits";
    }
    return std::nullopt;
  }
  if (name.starts_with("iqn.")) {
    // iqn.YYYY-MM.reversed.domain[:anything]
    std::string_view rest = name.substr(4);
    if (rest.size() < 9 || !is_digits(rest.substr(0, 4)) || rest[4] != '-' ||
        !is_digits(rest.substr(5, 2)) || rest[7] != '.') {
      return "\"iqn.\" must be followed by a date yyyy-mm, a dot and a reversed domain name "
             "(iqn.2025-01.com.example:name)";
    }
    int month = (rest[5] - '0') * 10 + (rest[6] - '0');
    if (month < 1 || month > 12) return "the month in \"iqn.yyyy-mm.\" must be 01..12";
    for (char c : name) {
      if (c >= 'A' && c <= 'Z') return "iSCSI names must be lowercase";
      bool ok =
          (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == ':';
      if (!ok) {
        return std::string("character '") + c + "' is not allowed (use a-z, 0-9, '-', '.' and ':')";
      }
    }
    return std::nullopt;
  }
  for (char c : name.substr(0, 4)) {
    if (c >= 'A' && c <= 'Z') return "iSCSI names must be lowercase (\"iqn.\", \"eui.\", \"naa.\")";
  }
  return "it must start with \"iqn.\", \"eui.\" or \"naa.\"";
}

namespace {

const char* type_name(toml::node_type t) {
  switch (t) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    default:
      return "nothing";
  }
}

std::string join(std::span<const std::string_view> items) {
  std::string out;
  for (auto s : items) {
    if (!out.empty()) out += ", ";
    out += s;
  }
  return out;
}

class Loader {
 public:
  // base: the folder relative paths resolve against; none: relative paths are refused.
  Loader(std::string file, std::optional<fs::path> base)
      : file_(std::move(file)), base_(std::move(base)) {}

  Config load(std::string_view text) {
    toml::table root;
    try {
      root = toml::parse(text, std::string_view(file_));
    } catch (const toml::parse_error& e) {
      throw ConfigError(file_, e.source().begin.line, e.source().begin.column,
                        std::string(e.description()));
    }
    Config cfg;
    cfg.source = file_;
    read_root(root, cfg);
    return cfg;
  }

  // One [[target.lun]] table's keys on their own.
  Lun load_lun(std::string_view text) {
    toml::table t;
    try {
      t = toml::parse(text, std::string_view(file_));
    } catch (const toml::parse_error& e) {
      throw ConfigError(file_, e.source().begin.line, e.source().begin.column,
                        std::string(e.description()));
    }
    Lun lun = read_lun(t);
    lun.allowed_initiators = read_initiators(t, nullptr);
    return lun;
  }

 private:
  [[noreturn]] void fail(const toml::source_region& at, const std::string& msg) const {
    throw ConfigError(file_, at.begin.line, at.begin.column, msg);
  }
  [[noreturn]] void fail(const toml::node& at, const std::string& msg) const {
    fail(at.source(), msg);
  }

  void check_keys(const toml::table& t, std::string_view where,
                  std::initializer_list<std::string_view> allowed) const {
    check_keys(t, where, std::span<const std::string_view>(allowed.begin(), allowed.size()));
  }
  void check_keys(const toml::table& t, std::string_view where,
                  std::span<const std::string_view> allowed) const {
    for (auto&& [k, v] : t) {
      bool known = false;
      for (auto a : allowed) known = known || k.str() == a;
      if (!known) {
        fail(k.source(), "unknown key '" + std::string(k.str()) + "' in " + std::string(where) +
                             " (allowed: " + join(allowed) + ")");
      }
    }
  }

  // A value of type T under key, with a readable error when it has another type.
  template <typename T>
  std::optional<T> get(const toml::table& t, std::string_view key, std::string_view what,
                       const char* expected) const {
    const toml::node* n = t.get(key);
    if (!n) return std::nullopt;
    if (auto v = n->value_exact<T>()) return *v;
    fail(*n, std::string(what) + " must be " + expected + ", not " + type_name(n->type()));
  }

  std::optional<bool> get_bool(const toml::table& t, std::string_view key,
                               std::string_view what) const {
    return get<bool>(t, key, what, "true or false");
  }
  // A digest setting: "allowed", "never" or "required" (true and false: the first two).
  void get_digest(const toml::table& t, std::string_view key, std::string_view what, bool& allowed,
                  bool& required) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return;
    if (auto b = n->value<bool>(); b && n->is_boolean()) {
      allowed = *b;
      required = false;
      return;
    }
    if (auto s = n->value<std::string>(); s && n->is_string()) {
      if (*s == "allowed" || *s == "never" || *s == "required") {
        allowed = *s != "never";
        required = *s == "required";
        return;
      }
    }
    fail(*n, std::string(what) + " must be \"allowed\", \"never\" or \"required\"");
  }
  std::optional<std::string> get_string(const toml::table& t, std::string_view key,
                                        std::string_view what) const {
    return get<std::string>(t, key, what, "a string");
  }
  void get_uint(const toml::table& t, std::string_view key, std::string_view what, std::int64_t lo,
                std::int64_t hi, std::uint32_t& out) const {
    auto v = get<std::int64_t>(t, key, what, "an integer");
    if (!v) return;
    if (*v < lo || *v > hi) {
      fail(*t.get(key), std::string(what) + " must be " + std::to_string(lo) + ".." +
                            std::to_string(hi) + ", not " + std::to_string(*v));
    }
    out = static_cast<std::uint32_t>(*v);
  }

  const toml::array* get_array_of_tables(const toml::table& t, std::string_view key,
                                         std::string_view what) const {
    const toml::node* n = t.get(key);
    if (!n) return nullptr;
    const toml::array* arr = n->as_array();
    bool ok = arr != nullptr;
    if (ok) {
      for (auto&& e : *arr) ok = ok && e.is_table();
    }
    if (!ok) {
      fail(*n, "'" + std::string(key) + "' must be an array of tables, written " +
                   std::string(what) + ", not " + type_name(n->type()));
    }
    return arr;
  }

  // p made absolute; the caller has refused a relative p when there is no base.
  std::string resolve(const std::string& p) const {
    fs::path path(p);
    if (path.is_relative() && base_) path = *base_ / path;
    return path.lexically_normal().string();
  }

  void read_root(const toml::table& root, Config& cfg) {
    check_keys(root, "the top level",
               {"workers", "log_level", "state_dir", "portal", "iscsi", "discovery", "target",
                "limits", "metrics", "admin", "testing"});

    std::uint32_t workers = 0;
    get_uint(root, "workers", "workers", 0, 1024, workers);
    cfg.workers = workers;

    if (auto lvl = get_string(root, "log_level", "log_level")) {
      static const std::set<std::string> levels = {"trace", "debug",    "info", "warn",
                                                   "error", "critical", "off"};
      if (!levels.contains(*lvl)) {
        fail(*root.get("log_level"), "log_level \"" + *lvl +
                                         "\" is not one of trace, debug, info, warn, error, "
                                         "critical, off");
      }
      cfg.log_level = *lvl;
    }

    std::string state_dir = "state";
    if (auto sd = get_string(root, "state_dir", "state_dir")) {
      if (sd->empty()) fail(*root.get("state_dir"), "state_dir must not be empty");
      state_dir = *sd;
    }
    cfg.state_dir = resolve(state_dir);

    read_portals(root, cfg);

    if (const toml::node* n = root.get("iscsi")) {
      const toml::table* t = n->as_table();
      if (!t)
        fail(*n,
             std::string("'iscsi' must be a table, written [iscsi], not ") + type_name(n->type()));
      read_iscsi(*t, cfg.iscsi);
    }

    if (const toml::node* n = root.get("limits")) {
      const toml::table* t = n->as_table();
      if (!t)
        fail(*n, std::string("'limits' must be a table, written [limits], not ") +
                     type_name(n->type()));
      read_limits(*t, cfg.limits);
    }

    if (const toml::node* n = root.get("discovery")) {
      const toml::table* t = n->as_table();
      if (!t) {
        fail(*n, std::string("'discovery' must be a table, written [discovery], not ") +
                     type_name(n->type()));
      }
      check_keys(*t, "[discovery]",
                 {"chap_user", "chap_secret_file", "mutual_user", "mutual_secret_file"});
      cfg.discovery_chap = read_chap(*t, "[discovery]");
    }

    read_metrics(root, cfg);
    read_targets(root, cfg);
    read_admin(root, cfg.admin);
    read_testing(root, cfg);
  }

  // [testing]: test-only switches.
  void read_testing(const toml::table& root, Config& cfg) const {
    const toml::node* n = root.get("testing");
    if (!n) return;
    const toml::table* t = n->as_table();
    if (!t) {
      fail(*n, std::string("'testing' must be a table, written [testing], not ") +
                   type_name(n->type()));
    }
    check_keys(*t, "[testing]", {"durability_log", "ack_before_flush", "fault_injection"});
    if (auto v = get_bool(*t, "fault_injection", "testing.fault_injection"))
      cfg.fault_testing.fault_injection = *v;
    DurabilityTesting& d = cfg.durability_testing;
    if (auto path = get_string(*t, "durability_log", "testing.durability_log")) {
      if (path->empty())
        fail(*t->get("durability_log"), "testing.durability_log must not be empty");
      d.log_path = resolve(*path);
    }
    d.ack_before_flush =
        get_bool(*t, "ack_before_flush", "testing.ack_before_flush").value_or(false);
    if (d.ack_before_flush && d.log_path.empty()) {
      fail(*t->get("ack_before_flush"),
           "testing.ack_before_flush needs testing.durability_log: the broken acknowledgement "
           "order exists only to show that the durability checker catches it");
    }
  }

  // [admin]: the ringtgtctl socket.
  void read_admin(const toml::table& root, AdminSettings& a) const {
    const toml::node* n = root.get("admin");
    if (!n) return;
    const toml::table* t = n->as_table();
    if (!t) {
      fail(*n,
           std::string("'admin' must be a table, written [admin], not ") + type_name(n->type()));
    }
    check_keys(*t, "[admin]", {"socket", "group"});
    if (auto s = get_string(*t, "socket", "admin.socket")) {
      const toml::node& at = *t->get("socket");
      if (s->empty()) fail(at, "admin.socket must not be empty");
      std::string path = resolve(*s);
      // sun_path holds 108 bytes with the terminating NUL.
      if (path.size() > 107) {
        fail(at, "admin.socket \"" + path + "\" is " + std::to_string(path.size()) +
                     " bytes long; a Unix socket path must be at most 107 bytes");
      }
      if (path.back() == '/') fail(at, "admin.socket must name a file, not a folder");
      a.socket = path;
    }
    if (auto g = get_string(*t, "group", "admin.group")) {
      const toml::node& at = *t->get("group");
      bool ok = !g->empty() && g->size() <= 32;
      for (char c : *g) {
        ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.');
      }
      if (!ok) {
        fail(at, "admin.group \"" + *g + "\" is not a group name (1..32 of a-z A-Z 0-9 _ - .)");
      }
      if (::getgrnam(g->c_str()) == nullptr) {
        fail(at, "admin.group \"" + *g + "\": no such group on this host");
      }
      a.group = *g;
    }
  }

  // [metrics]: where the Prometheus endpoint listens; absent: no endpoint.
  void read_metrics(const toml::table& root, Config& cfg) {
    const toml::node* n = root.get("metrics");
    if (!n) return;
    const toml::table* t = n->as_table();
    if (!t) {
      fail(*n, std::string("'metrics' must be a table, written [metrics], not ") +
                   type_name(n->type()));
    }
    check_keys(*t, "[metrics]", {"listen"});
    auto listen = get_string(*t, "listen", "metrics.listen");
    if (!listen) fail(*t, "[metrics] needs listen = \"IP:PORT\" (for example \"127.0.0.1:9105\")");
    cfg.metrics.listen = parse_portal(*listen, *t->get("listen"), "metrics.listen", 9105);
    if (cfg.metrics.listen->host.find(':') != std::string::npos) {
      // Debian's civetweb (prometheus-cpp's HTTP server) is built without IPv6.
      fail(*t->get("listen"), "metrics.listen \"" + *listen +
                                  "\": the metrics endpoint listens on IPv4 addresses only");
    }
  }

  // A CHAP secret file: a regular file that group and others cannot access, holding the
  // secret (one trailing newline dropped), 12..255 bytes.
  std::string read_secret(const toml::node& at, const std::string& path) const {
    const std::string quoted = "secret file \"" + path + "\"";
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
      int err = errno;
      fail(at, "cannot open " + quoted + ": " + std::strerror(err));
    }
    struct Closer {
      int fd;
      ~Closer() { ::close(fd); }
    } closer{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      int err = errno;
      fail(at, "cannot stat " + quoted + ": " + std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) fail(at, quoted + " is not a regular file");
    if ((st.st_mode & 077) != 0) {
      char mode[8];
      std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
      fail(at, quoted + " has mode " + mode +
                   ": it must not be accessible by group or others (chmod 600 " + path + ")");
    }
    std::string secret;
    char buf[512];
    for (;;) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0) {
        if (errno == EINTR) continue;
        int err = errno;
        fail(at, "cannot read " + quoted + ": " + std::strerror(err));
      }
      if (n == 0) break;
      secret.append(buf, static_cast<std::size_t>(n));
      if (secret.size() > 1024) break;
    }
    if (!secret.empty() && secret.back() == '\n') secret.pop_back();
    if (!secret.empty() && secret.back() == '\r') secret.pop_back();
    if (secret.find_first_of(std::string_view("\0\n\r", 3)) != std::string::npos) {
      fail(at, quoted + " must hold the secret on a single line");
    }
    if (secret.size() < 12 || secret.size() > 255) {
      std::string n = std::to_string(secret.size());
      std::fill(secret.begin(), secret.end(), '\0');
      fail(at, "the secret in " + quoted + " is " + n + " bytes long; CHAP secrets must be " +
                   "12..255 bytes");
    }
    return secret;
  }

  // chap_user / chap_secret_file / mutual_user / mutual_secret_file of a [discovery] or
  // [[target]] table; nullopt when none is set.
  std::optional<Chap> read_chap(const toml::table& t, std::string_view where) const {
    auto user = get_string(t, "chap_user", "chap_user");
    auto file = get_string(t, "chap_secret_file", "chap_secret_file");
    auto muser = get_string(t, "mutual_user", "mutual_user");
    auto mfile = get_string(t, "mutual_secret_file", "mutual_secret_file");
    if (!user && !file && !muser && !mfile) return std::nullopt;
    const std::string w(where);
    if (!user) fail(t, w + " has CHAP settings but no chap_user");
    if (!file) fail(*t.get("chap_user"), w + ": chap_user needs chap_secret_file");
    if (muser.has_value() != mfile.has_value()) {
      fail(muser ? *t.get("mutual_user") : *t.get("mutual_secret_file"),
           w + ": mutual_user and mutual_secret_file go together");
    }
    auto check_name = [&](const std::string& name, const char* key) {
      if (name.empty() || name.size() > 255) {
        fail(*t.get(key), std::string(key) + " must be 1..255 bytes");
      }
      for (unsigned char c : name) {
        if (c < 0x20 || c == 0x7f) {
          fail(*t.get(key), std::string(key) + " must not hold control characters");
        }
      }
    };
    Chap chap;
    check_name(*user, "chap_user");
    chap.user = *user;
    if (file->empty()) fail(*t.get("chap_secret_file"), "chap_secret_file must not be empty");
    chap.secret_file = resolve(*file);
    chap.secret = read_secret(*t.get("chap_secret_file"), chap.secret_file);
    if (muser) {
      check_name(*muser, "mutual_user");
      chap.mutual_user = *muser;
      if (mfile->empty()) {
        fail(*t.get("mutual_secret_file"), "mutual_secret_file must not be empty");
      }
      chap.mutual_secret_file = resolve(*mfile);
      chap.mutual_secret = read_secret(*t.get("mutual_secret_file"), chap.mutual_secret_file);
      if (chap.mutual_secret == chap.secret) {
        fail(*t.get("mutual_secret_file"),
             w + ": the mutual secret must differ from the initiator's secret (RFC 7143 "
                 "§12.1.3)");
      }
    }
    return chap;
  }

  void read_portals(const toml::table& root, Config& cfg) {
    const toml::array* arr = get_array_of_tables(root, "portal", "[[portal]]");
    if (!arr || arr->empty()) {
      fail(root.source(), "no [[portal]]: at least one portal (listen = \"IP:PORT\") is needed");
    }
    std::map<std::string, unsigned> seen;  // portal -> line
    for (auto&& e : *arr) {
      const toml::table& t = *e.as_table();
      check_keys(t, "[[portal]]", {"listen"});
      auto listen = get_string(t, "listen", "listen");
      if (!listen) fail(t, "[[portal]] needs listen = \"IP:PORT\"");
      const toml::node& at = *t.get("listen");
      Portal p = parse_portal(*listen, at);
      auto [it, fresh] = seen.emplace(p.to_string(), at.source().begin.line);
      if (!fresh) {
        fail(at, "duplicate portal " + p.to_string() + " (already listed at line " +
                     std::to_string(it->second) + ")");
      }
      cfg.portals.push_back(std::move(p));
    }
  }

  Portal parse_portal(const std::string& s, const toml::node& at, const char* what = "portal",
                      std::uint16_t default_port = 3260) const {
    const std::string bad = std::string("bad ") + what + " \"" + s + "\": ";
    Portal p;
    p.port = default_port;
    std::string port;
    bool has_port = false;
    if (!s.empty() && s[0] == '[') {
      auto close = s.find(']');
      if (close == std::string::npos) fail(at, bad + "missing ']' after the IPv6 address");
      p.host = s.substr(1, close - 1);
      std::string rest = s.substr(close + 1);
      if (!rest.empty()) {
        if (rest[0] != ':') fail(at, bad + "expected ':PORT' after ']'");
        port = rest.substr(1);
        has_port = true;
      }
      in6_addr a6;
      if (inet_pton(AF_INET6, p.host.c_str(), &a6) != 1) {
        fail(at, bad + "'" + p.host + "' is not an IPv6 address literal");
      }
    } else {
      auto colon = s.find(':');
      if (colon != std::string::npos && s.find(':', colon + 1) != std::string::npos) {
        fail(at, bad + "an IPv6 address goes in brackets, as in \"[::1]:3260\"");
      }
      p.host = s.substr(0, colon);
      if (colon != std::string::npos) {
        port = s.substr(colon + 1);
        has_port = true;
      }
      in_addr a4;
      if (inet_pton(AF_INET, p.host.c_str(), &a4) != 1) {
        fail(at, bad + "'" + p.host +
                     "' is not an IPv4 address literal (use an address such as \"0.0.0.0\", "
                     "\"127.0.0.1\", or \"[::1]\" for IPv6; host names are not resolved)");
      }
    }
    if (has_port) {
      bool digits = !port.empty() && port.size() <= 5;
      for (char c : port) digits = digits && c >= '0' && c <= '9';
      long v = digits ? std::stol(port) : 0;
      if (!digits || v < 1 || v > 65535) {
        fail(at, bad + "port '" + port + "' must be a number 1..65535");
      }
      p.port = static_cast<std::uint16_t>(v);
    }
    return p;
  }

  void read_iscsi(const toml::table& t, IscsiSettings& s) {
    check_keys(t, "[iscsi]",
               {"max_recv_data_segment_length", "max_burst_length", "first_burst_length",
                "initial_r2t", "immediate_data", "max_outstanding_r2t", "header_digest",
                "data_digest", "default_time2wait", "default_time2retain", "queue_depth",
                "nop_interval", "nop_timeout", "login_timeout"});
    constexpr std::int64_t k24 = 16777215;  // 2^24 - 1, RFC 7143
    get_uint(t, "max_recv_data_segment_length", "iscsi.max_recv_data_segment_length", 512, k24,
             s.max_recv_data_segment_length);
    get_uint(t, "max_burst_length", "iscsi.max_burst_length", 512, k24, s.max_burst_length);
    get_uint(t, "first_burst_length", "iscsi.first_burst_length", 512, k24, s.first_burst_length);
    if (s.first_burst_length > s.max_burst_length) {
      const toml::node* at = t.get("first_burst_length");
      if (!at) at = t.get("max_burst_length");
      fail(*at, "iscsi.first_burst_length (" + std::to_string(s.first_burst_length) +
                    ") must not exceed iscsi.max_burst_length (" +
                    std::to_string(s.max_burst_length) + ")");
    }
    if (auto v = get_bool(t, "initial_r2t", "iscsi.initial_r2t")) s.initial_r2t = *v;
    if (auto v = get_bool(t, "immediate_data", "iscsi.immediate_data")) s.immediate_data = *v;
    get_uint(t, "max_outstanding_r2t", "iscsi.max_outstanding_r2t", 1, 65535,
             s.max_outstanding_r2t);
    get_digest(t, "header_digest", "iscsi.header_digest", s.header_digest, s.require_header_digest);
    get_digest(t, "data_digest", "iscsi.data_digest", s.data_digest, s.require_data_digest);
    get_uint(t, "default_time2wait", "iscsi.default_time2wait", 0, 3600, s.default_time2wait);
    get_uint(t, "default_time2retain", "iscsi.default_time2retain", 0, 3600, s.default_time2retain);
    get_uint(t, "queue_depth", "iscsi.queue_depth", 1, 4096, s.queue_depth);
    get_uint(t, "nop_interval", "iscsi.nop_interval", 0, 3600, s.nop_interval_seconds);
    get_uint(t, "nop_timeout", "iscsi.nop_timeout", 0, 3600, s.nop_timeout_seconds);
    get_uint(t, "login_timeout", "iscsi.login_timeout", 1, 3600, s.login_timeout_seconds);
  }

  // target.portals: a subset of the [[portal]] listen values.
  std::vector<Portal> read_target_portals(const toml::table& t, const Config& cfg) const {
    std::vector<Portal> out;
    const toml::node* n = t.get("portals");
    if (!n) return out;
    const toml::array* arr = n->as_array();
    if (!arr || arr->empty()) {
      fail(*n,
           "portals must be a non-empty array of \"IP:PORT\" strings, e.g. "
           "[\"127.0.0.1:3260\"]");
    }
    for (auto&& e : *arr) {
      auto s = e.value<std::string>();
      if (!s) fail(e, std::string("portals entries must be strings, not ") + type_name(e.type()));
      Portal p = parse_portal(*s, e);
      bool listed = false;
      std::string all;
      for (const auto& q : cfg.portals) {
        listed = listed || q.to_string() == p.to_string();
        all += (all.empty() ? "" : ", ") + q.to_string();
      }
      if (!listed) {
        fail(e, "portal " + p.to_string() + " is not one of the [[portal]] listen values (" + all +
                    ")");
      }
      for (const auto& q : out) {
        if (q.to_string() == p.to_string()) fail(e, "portal " + p.to_string() + " listed twice");
      }
      out.push_back(std::move(p));
    }
    return out;
  }

  void read_limits(const toml::table& t, Limits& l) {
    check_keys(t, "[limits]",
               {"max_sessions", "max_sessions_per_initiator", "max_connections",
                "max_buffer_memory", "max_session_output"});
    get_uint(t, "max_sessions", "limits.max_sessions", 1, 65535, l.max_sessions);
    get_uint(t, "max_sessions_per_initiator", "limits.max_sessions_per_initiator", 1, 65535,
             l.max_sessions_per_initiator);
    get_uint(t, "max_connections", "limits.max_connections", 1, 1000000, l.max_connections);
    if (const toml::node* n = t.get("max_buffer_memory")) {
      // Half of it is always left for buffers in use (workers keep at most the
      // other half for reuse), and the largest command (32 MiB) must fit there.
      constexpr std::uint64_t kMin = 64ull << 20;
      std::uint64_t v = parse_size(*n);
      if (v < kMin) {
        fail(*n,
             "limits.max_buffer_memory must be at least 64M (twice the largest command "
             "buffer), not " +
                 std::to_string(v) + " bytes");
      }
      l.max_buffer_memory = v;
    }
    if (const toml::node* n = t.get("max_session_output")) {
      constexpr std::uint64_t kMin = 256ull << 10, kMax = 1ull << 30;
      std::uint64_t v = parse_size(*n);
      if (v < kMin || v > kMax) {
        fail(*n, "limits.max_session_output must be from 256K to 1G, not " + std::to_string(v) +
                     " bytes");
      }
      l.max_session_output = v;
    }
  }

  void read_targets(const toml::table& root, Config& cfg) {
    const toml::array* arr = get_array_of_tables(root, "target", "[[target]]");
    if (!arr || arr->empty()) {
      fail(root.source(), "no [[target]]: at least one target (name = \"iqn....\") is needed");
    }
    std::map<std::string, unsigned> names;     // name -> line
    std::map<std::string, std::string> paths;  // resolved LUN path -> "target LUN n"
    for (auto&& e : *arr) {
      const toml::table& t = *e.as_table();
      check_keys(t, "[[target]]",
                 {"name", "alias", "allowed_initiators", "chap_user", "chap_secret_file",
                  "mutual_user", "mutual_secret_file", "lun", "portals"});
      Target tgt;
      auto name = get_string(t, "name", "target name");
      if (!name) fail(t, "[[target]] needs name = \"iqn.yyyy-mm.reversed.domain:name\"");
      const toml::node& name_at = *t.get("name");
      if (auto problem = iscsi_name_problem(*name)) {
        fail(name_at, "target name \"" + *name + "\" is not a valid iSCSI name: " + *problem);
      }
      auto [it, fresh] = names.emplace(*name, name_at.source().begin.line);
      if (!fresh) {
        fail(name_at, "duplicate target name \"" + *name + "\" (already defined at line " +
                          std::to_string(it->second) + ")");
      }
      tgt.name = *name;

      if (auto alias = get_string(t, "alias", "alias")) {
        if (alias->size() > 255) fail(*t.get("alias"), "alias is longer than 255 bytes");
        tgt.alias = *alias;
      }

      tgt.allowed_initiators = read_initiators(t, nullptr);
      tgt.portals = read_target_portals(t, cfg);
      tgt.chap = read_chap(t, "target \"" + tgt.name + "\"");

      if (const toml::array* luns = get_array_of_tables(t, "lun", "[[target.lun]]")) {
        std::map<std::uint32_t, unsigned> numbers;  // LUN -> line
        for (auto&& l : *luns) {
          Lun lun = read_lun(*l.as_table());
          lun.allowed_initiators = read_initiators(*l.as_table(), &tgt);
          const toml::node& num_at = *l.as_table()->get("number");
          auto [nit, nfresh] = numbers.emplace(lun.number, num_at.source().begin.line);
          if (!nfresh) {
            fail(num_at, "duplicate LUN number " + std::to_string(lun.number) + " in target \"" +
                             tgt.name + "\" (already defined at line " +
                             std::to_string(nit->second) + ")");
          }
          std::string user = "target \"" + tgt.name + "\" LUN " + std::to_string(lun.number);
          auto [pit, pfresh] = paths.emplace(lun.path, user);
          if (!pfresh) {
            const toml::node* at = l.as_table()->get("path");
            fail(at ? *at : *l.as_table()->get("rbd"),
                 "path \"" + lun.path + "\" is already used by " + pit->second);
          }
          check_copy_paths(*l.as_table(), lun, user, paths);
          tgt.luns.push_back(std::move(lun));
        }
      }
      cfg.targets.push_back(std::move(tgt));
    }
  }

  // A copy's file is nobody else's: not another LUN's, nor another LUN's
  // copy; nor is a remote copy's LUN (as its URL spells it).
  void check_copy_paths(const toml::table& lun_table, const Lun& lun, const std::string& user,
                        std::map<std::string, std::string>& paths) const {
    if (lun.copies.empty()) return;
    const toml::array& tables = *lun_table.get("copy")->as_array();
    for (std::size_t i = 0; i < lun.copies.size(); ++i) {
      const LunCopy& c = lun.copies[i];
      const bool remote = c.url.has_value();
      const std::string key = remote ? c.url->text() : c.path;
      auto [it, fresh] = paths.emplace(key, user + " (copy " + c.name + ")");
      if (!fresh) {
        fail(*tables[i].as_table()->get(remote ? "url" : "path"),
             (remote ? "url \"" : "path \"") + key + "\" is already used by " + it->second);
      }
    }
  }

  // allowed_initiators of a [[target]], or of a [[target.lun]] of target (whose list, when
  // not empty, must include every name the LUN lists: others could never log in).
  std::vector<std::string> read_initiators(const toml::table& t, const Target* target) const {
    std::vector<std::string> out;
    const toml::node* n = t.get("allowed_initiators");
    if (!n) return out;
    const toml::array* inits = n->as_array();
    if (!inits) {
      fail(*n, std::string("allowed_initiators must be an array of initiator names, not ") +
                   type_name(n->type()));
    }
    std::set<std::string> seen;
    for (auto&& i : *inits) {
      auto s = i.value_exact<std::string>();
      if (!s) {
        fail(i,
             std::string("allowed_initiators entries must be strings, not ") + type_name(i.type()));
      }
      if (auto problem = iscsi_name_problem(*s)) {
        fail(i, "initiator name \"" + *s + "\" is not a valid iSCSI name: " + *problem);
      }
      if (!seen.insert(*s).second) fail(i, "initiator \"" + *s + "\" is listed twice");
      if (target && !target->allowed_initiators.empty() &&
          std::find(target->allowed_initiators.begin(), target->allowed_initiators.end(), *s) ==
              target->allowed_initiators.end()) {
        fail(i, "initiator \"" + *s + "\" may not log in to target \"" + target->name +
                    "\" (not in its allowed_initiators), so it can never see this LUN");
      }
      out.push_back(*s);
    }
    return out;
  }

  Lun read_lun(const toml::table& t) {
    check_keys(t, "[[target.lun]]", kLunKeys);
    Lun lun;
    if (!t.get("number")) fail(t, "[[target.lun]] needs number = 0..16383");
    get_uint(t, "number", "LUN number", 0, 16383, lun.number);

    auto path = get_string(t, "path", "path");
    if (!path && !t.get("rbd"))
      fail(t, "[[target.lun]] needs path = \"FILE or block device\" (or \"rbd:POOL/IMAGE\")");
    if (path && path->empty()) fail(*t.get("path"), "path must not be empty");
    if (path && path->starts_with(kRbdPrefix)) {
      lun.rbd = read_rbd_spec(*t.get("path"), *path);
    } else if (path) {
      if (!base_ && fs::path(*path).is_relative())
        fail(*t.get("path"), "path must be absolute, not \"" + *path + "\"");
      lun.path = resolve(*path);
    }
    if (const toml::node* r = t.get("rbd")) read_rbd_table(*r, path.has_value(), lun);
    if (lun.rbd) {
      lun.path = lun.rbd->spec();
      if (t.get("direct_io"))
        fail(*t.get("direct_io"), "direct_io does not apply to an RBD image (librbd does its I/O)");
    }

    if (auto bs = get<std::int64_t>(t, "block_size", "block_size", "an integer")) {
      if (*bs != 512 && *bs != 4096) {
        fail(*t.get("block_size"), "block_size must be 512 or 4096, not " + std::to_string(*bs));
      }
      lun.block_size = static_cast<std::uint32_t>(*bs);
    }
    if (auto pbs =
            get<std::int64_t>(t, "physical_block_size", "physical_block_size", "an integer")) {
      if (*pbs < lun.block_size || *pbs > (std::int64_t{1} << 20) ||
          !std::has_single_bit(static_cast<std::uint64_t>(*pbs))) {
        fail(*t.get("physical_block_size"),
             "physical_block_size must be a power of two from block_size (" +
                 std::to_string(lun.block_size) + ") to 1048576, not " + std::to_string(*pbs));
      }
      lun.physical_block_size = static_cast<std::uint32_t>(*pbs);
    }
    if (const toml::node* n = t.get("max_transfer")) {
      const std::uint64_t max = parse_size(*n);
      constexpr std::uint64_t kLimit = 32u << 20;
      if (max < lun.block_size || max > kLimit || max % lun.block_size != 0) {
        fail(*n, "max_transfer must be a multiple of block_size (" +
                     std::to_string(lun.block_size) + ") from " + std::to_string(lun.block_size) +
                     " to 32M, not " + std::to_string(max));
      }
      lun.max_transfer = static_cast<std::uint32_t>(max);
    }

    if (const toml::node* n = t.get("size")) {
      std::uint64_t size = parse_size(*n);
      if (size % lun.block_size != 0) {
        fail(*n, "size " + std::to_string(size) + " is not a multiple of block_size " +
                     std::to_string(lun.block_size));
      }
      lun.size = size;
    }

    if (auto v = get_bool(t, "read_only", "read_only")) lun.read_only = *v;
    if (auto v = get_bool(t, "direct_io", "direct_io")) lun.direct_io = *v;
    if (auto v = get_bool(t, "allow_sanitize", "allow_sanitize")) lun.allow_sanitize = *v;
    if (const toml::node* n = t.get("sanitize_rate")) lun.sanitize_rate = parse_size(*n);

    if (auto wa = get_string(t, "write_ack", "write_ack")) {
      auto policy = storage::write_ack_policy_named(*wa);
      if (!policy) {
        fail(*t.get("write_ack"),
             "write_ack \"" + *wa + "\" is not one of \"writethrough\", \"writeback\"");
      }
      lun.write_ack = *policy;
    }

    if (auto prov = get_string(t, "provisioning", "provisioning")) {
      if (*prov == "thin") {
        lun.provisioning = Provisioning::thin;
      } else if (*prov == "full") {
        lun.provisioning = Provisioning::full;
      } else {
        fail(*t.get("provisioning"),
             "provisioning \"" + *prov + "\" is not one of \"thin\", \"full\"");
      }
    }

    read_mirroring(t, lun);

    if (auto serial = get_string(t, "serial", "serial")) {
      if (serial->size() > 64) fail(*t.get("serial"), "serial is longer than 64 characters");
      for (char c : *serial) {
        if (c < 0x21 || c > 0x7e) {
          fail(*t.get("serial"), "serial may hold only printable ASCII without spaces");
        }
      }
      lun.serial = *serial;
    }
    return lun;
  }

  // A failure domain: free text people read in warnings, on one line.
  std::string read_failure_domain(const toml::table& t, std::string_view what) const {
    auto d = get_string(t, "failure_domain", what);
    if (!d) return "";
    const toml::node& at = *t.get("failure_domain");
    if (d->empty() || d->size() > 128) fail(at, std::string(what) + " must be 1..128 characters");
    for (char c : *d) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
        fail(at, std::string(what) + " must not hold control characters");
    }
    return *d;
  }

  // ack_quorum, on_quorum_loss, failure_domain and [[target.lun.copy]]: a
  // mirrored LUN (docs/replication.md).
  void read_mirroring(const toml::table& t, Lun& lun) const {
    lun.failure_domain = read_failure_domain(t, "failure_domain");
    if (const toml::array* copies = get_array_of_tables(t, "copy", "[[target.lun.copy]]")) {
      if (lun.rbd) {
        fail(*t.get("copy"),
             "copies of an RBD image are not built yet (Ceph keeps the image's own replicas)");
      }
      for (auto&& c : *copies) {
        if (lun.copies.size() == 7) fail(c, "a LUN has at most 7 copies besides its path");
        lun.copies.push_back(read_copy(*c.as_table(), lun));
      }
    }
    const auto copies = static_cast<std::int64_t>(lun.copies.size());
    if (const toml::node* n = t.get("ack_quorum")) {
      auto v = n->value_exact<std::int64_t>();
      if (!v) fail(*n, std::string("ack_quorum must be an integer, not ") + type_name(n->type()));
      if (*v < 1 || *v > copies + 1) {
        fail(*n, "ack_quorum must be 1.." + std::to_string(copies + 1) + " (the primary and its " +
                     std::to_string(copies) + " cop" + (copies == 1 ? "y" : "ies") + "), not " +
                     std::to_string(*v));
      }
      lun.ack_quorum = static_cast<std::uint32_t>(*v);
    }
    if (auto policy = get_string(t, "on_quorum_loss", "on_quorum_loss")) {
      const toml::node& at = *t.get("on_quorum_loss");
      if (*policy == "fail") {
        lun.on_quorum_loss = QuorumLossPolicy::fail;
      } else if (*policy == "read_only") {
        lun.on_quorum_loss = QuorumLossPolicy::read_only;
      } else if (*policy == "wait") {
        lun.on_quorum_loss = QuorumLossPolicy::wait;
      } else {
        fail(at,
             "on_quorum_loss \"" + *policy + "\" is not one of \"fail\", \"wait\", \"read_only\"");
      }
      if (copies == 0)
        fail(at, "on_quorum_loss applies to a LUN with copies ([[target.lun.copy]])");
    }
    if (const toml::node* n = t.get("quorum_wait")) {
      if (lun.on_quorum_loss != QuorumLossPolicy::wait)
        fail(*n, "quorum_wait applies to on_quorum_loss = \"wait\"");
      get_uint(t, "quorum_wait", "quorum_wait (seconds)", 1, 3600, lun.quorum_wait_seconds);
    }
    read_resync(t, lun);
  }

  // resync_region_size and resync_rate: how a copy that missed writes is
  // brought back (docs/replication.md, "Resynchronisation").
  void read_resync(const toml::table& t, Lun& lun) const {
    if (const toml::node* n = t.get("resync_region_size")) {
      const std::uint64_t v = parse_size(*n);
      if (v < lun.block_size || v > (std::uint64_t{1} << 30) || !std::has_single_bit(v)) {
        fail(*n, "resync_region_size must be a power of two from block_size (" +
                     std::to_string(lun.block_size) + ") to 1GiB, not " + std::to_string(v));
      }
      if (lun.copies.empty())
        fail(*n, "resync_region_size applies to a LUN with copies ([[target.lun.copy]])");
      lun.resync_region_size = v;
    }
    if (const toml::node* n = t.get("resync_rate")) {
      const std::uint64_t v = parse_size(*n);
      if (v < lun.resync_region_size) {
        fail(*n, "resync_rate must be at least resync_region_size (" +
                     std::to_string(lun.resync_region_size) + ") per second, not " +
                     std::to_string(v));
      }
      if (lun.copies.empty())
        fail(*n, "resync_rate applies to a LUN with copies ([[target.lun.copy]])");
      lun.resync_rate = v;
    }
  }

  // A local copy's path: absolute, neither the LUN's own nor another copy's.
  void read_local_copy(const toml::table& t, const Lun& lun, LunCopy& c) const {
    for (std::string_view key :
         {"chap_user", "chap_secret_file", "command_timeout", "connect_wait", "reconnect_max"}) {
      if (const toml::node* n = t.get(key))
        fail(*n, "copy \"" + c.name + "\": " + std::string(key) +
                     " is for a remote copy (url), not a local one (path)");
    }
    auto path = get_string(t, "path", "copy path");
    if (!path)
      fail(t,
           "copy \"" + c.name +
               "\" needs path = \"FILE or block device\" or url = \"iscsi://HOST:PORT/IQN/LUN\"");
    const toml::node& path_at = *t.get("path");
    if (path->empty()) fail(path_at, "copy path must not be empty");
    if (!base_ && fs::path(*path).is_relative())
      fail(path_at, "copy path must be absolute, not \"" + *path + "\"");
    c.path = resolve(*path);
    if (c.path == lun.path) fail(path_at, "copy \"" + c.name + "\" is the LUN's own path");
    for (const auto& other : lun.copies) {
      if (other.path == c.path)
        fail(path_at, "copy \"" + c.name + "\" has the path of copy \"" + other.name + "\"");
    }
  }

  // A remote copy: url = "iscsi://HOST[:PORT]/IQN/LUN", and chap_user with
  // chap_secret_file when the target wants CHAP (both or neither).
  void read_remote_copy(const toml::table& t, const Lun& lun, LunCopy& c) const {
    auto url = get_string(t, "url", "copy url");
    const toml::node& url_at = *t.get("url");
    IscsiUrl u;
    std::string why;
    if (!parse_iscsi_url(*url, &u, &why))
      fail(url_at, "copy \"" + c.name + "\": url \"" + *url + "\" is not " +
                       "iscsi://HOST[:PORT]/IQN/LUN: " + why);
    for (const auto& other : lun.copies) {
      if (other.url == u)
        fail(url_at, "copy \"" + c.name + "\" has the url of copy \"" + other.name + "\"");
    }
    c.url = std::move(u);
    get_uint(t, "command_timeout", "copy command_timeout (seconds)", 1, 300,
             c.command_timeout_seconds);
    get_uint(t, "connect_wait", "copy connect_wait (seconds)", 0, 60, c.connect_wait_seconds);
    get_uint(t, "reconnect_max", "copy reconnect_max (seconds)", 1, 300, c.reconnect_max_seconds);
    auto user = get_string(t, "chap_user", "copy chap_user");
    auto file = get_string(t, "chap_secret_file", "copy chap_secret_file");
    if (user.has_value() != file.has_value()) {
      fail(user ? *t.get("chap_user") : *t.get("chap_secret_file"),
           "copy \"" + c.name + "\": chap_user and chap_secret_file go together");
    }
    if (!user) return;
    if (user->empty() || user->size() > 255)
      fail(*t.get("chap_user"), "copy chap_user must be 1..255 bytes");
    if (file->empty()) fail(*t.get("chap_secret_file"), "chap_secret_file must not be empty");
    InitiatorChap chap;
    chap.user = *user;
    chap.secret_file = resolve(*file);
    chap.secret = read_secret(*t.get("chap_secret_file"), chap.secret_file);
    c.chap = std::move(chap);
  }

  // One [[target.lun.copy]]: a local file or block device (path) or a LUN of
  // another iSCSI target (url).
  LunCopy read_copy(const toml::table& t, const Lun& lun) const {
    check_keys(t, "[[target.lun.copy]]", kCopyKeys);
    LunCopy c;
    c.where = file_ + ":" + std::to_string(t.source().begin.line) + ":" +
              std::to_string(t.source().begin.column);
    auto name = get_string(t, "name", "copy name");
    if (!name) fail(t, "[[target.lun.copy]] needs name = \"NAME\" (used in logs and metrics)");
    const toml::node& name_at = *t.get("name");
    bool ok = !name->empty() && name->size() <= 64;
    for (char ch : *name) {
      ok = ok && ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.');
    }
    if (!ok) fail(name_at, "copy name \"" + *name + "\" must be 1..64 of a-z A-Z 0-9 _ - .");
    if (*name == "primary") fail(name_at, "copy name \"primary\" is taken by the LUN's own path");
    for (const auto& other : lun.copies) {
      if (other.name == *name) fail(name_at, "duplicate copy name \"" + *name + "\" in this LUN");
    }
    c.name = *name;
    const bool has_url = t.get("url") != nullptr;
    if (has_url && t.get("path"))
      fail(*t.get("url"), "copy \"" + c.name + "\" has both path and url; a copy is one of them");
    if (has_url) {
      read_remote_copy(t, lun, c);
    } else {
      read_local_copy(t, lun, c);
    }
    c.failure_domain = read_failure_domain(t, "copy failure_domain");
    return c;
  }

  static constexpr std::string_view kRbdPrefix = "rbd:";

  // A pool, namespace or image name: what librbd accepts in a spec.
  void check_rbd_name(const toml::node& at, std::string_view what, const std::string& v) const {
    if (v.empty()) fail(at, "the RBD " + std::string(what) + " name must not be empty");
    if (v.find_first_of("/@") != std::string::npos || v.size() > 255)
      fail(at, "the RBD " + std::string(what) + " name \"" + v +
                   "\" must not contain '/' or '@' (or be longer than 255 characters)");
  }

  // path = "rbd:POOL/IMAGE" or "rbd:POOL/NAMESPACE/IMAGE".
  RbdImage read_rbd_spec(const toml::node& at, const std::string& path) const {
    std::string rest = path.substr(kRbdPrefix.size());
    std::vector<std::string> parts;
    for (std::size_t from = 0;;) {
      std::size_t slash = rest.find('/', from);
      parts.push_back(rest.substr(from, slash - from));
      if (slash == std::string::npos) break;
      from = slash + 1;
    }
    if (parts.size() < 2 || parts.size() > 3)
      fail(at, "path \"" + path + "\" is not \"rbd:POOL/IMAGE\" or \"rbd:POOL/NAMESPACE/IMAGE\"");
    RbdImage r;
    r.pool = parts.front();
    r.image = parts.back();
    if (parts.size() == 3) r.rados_namespace = parts[1];
    check_rbd_name(at, "pool", r.pool);
    check_rbd_name(at, "image", r.image);
    if (parts.size() == 3) check_rbd_name(at, "namespace", r.rados_namespace);
    return r;
  }

  // An existing file librados will read; relative to the config file.
  std::string read_ceph_file(const toml::table& t, std::string_view key) const {
    auto v = get_string(t, key, "rbd." + std::string(key));
    if (!v) return "";
    const toml::node& at = *t.get(key);
    if (v->empty()) fail(at, "rbd." + std::string(key) + " must not be empty");
    if (!base_ && fs::path(*v).is_relative())
      fail(at, "rbd." + std::string(key) + " must be absolute, not \"" + *v + "\"");
    std::string file = resolve(*v);
    std::error_code ec;
    if (!fs::is_regular_file(file, ec))
      fail(at, "rbd." + std::string(key) + " \"" + file + "\" is not a readable file");
    return file;
  }

  // [target.lun.rbd]: where the image is (unless path names it) and how to
  // reach its cluster.
  void read_rbd_table(const toml::node& n, bool have_path, Lun& lun) const {
    const toml::table* t = n.as_table();
    if (!t) fail(n, std::string("rbd must be a table, not ") + type_name(n.type()));
    check_keys(*t, "[target.lun.rbd]", kRbdKeys);
    if (have_path && !lun.rbd)
      fail(n, "a LUN with an rbd table has path = \"rbd:POOL/IMAGE\" or no path, not a file");
    RbdImage r = lun.rbd.value_or(RbdImage{});
    for (std::string_view key : {"pool", "namespace", "image"}) {
      auto v = get_string(*t, key, "rbd." + std::string(key));
      if (!v) continue;
      if (lun.rbd) fail(*t->get(key), "rbd." + std::string(key) + " is already given by path");
      check_rbd_name(*t->get(key), key, *v);
      (key == "pool" ? r.pool : key == "image" ? r.image : r.rados_namespace) = *v;
    }
    if (r.pool.empty() || r.image.empty())
      fail(n, "[target.lun.rbd] needs pool and image (or path = \"rbd:POOL/IMAGE\")");
    r.conf = read_ceph_file(*t, "conf");
    r.keyring = read_ceph_file(*t, "keyring");
    if (auto c = get_string(*t, "client", "rbd.client")) {
      std::string id = c->starts_with("client.") ? c->substr(7) : *c;
      if (id.empty() || id.find_first_of(" /") != std::string::npos)
        fail(*t->get("client"),
             "rbd.client \"" + *c + "\" is not a cephx user id (such as \"ringtgt\")");
      r.client = id;
    }
    get_uint(*t, "op_timeout", "rbd.op_timeout (seconds)", 1, 3600, r.op_timeout);
    lun.rbd = r;
  }

  std::uint64_t parse_size(const toml::node& n) const {
    const std::string hint =
        " (an integer of bytes, or a string such as \"512M\" or \"1G\" with suffix K, M, G or "
        "T: powers of 1024)";
    if (auto i = n.value_exact<std::int64_t>()) {
      if (*i <= 0) fail(n, "size must be greater than 0, not " + std::to_string(*i) + hint);
      return static_cast<std::uint64_t>(*i);
    }
    auto s = n.value_exact<std::string>();
    if (!s) fail(n, std::string("size must be an integer or a string, not ") + type_name(n.type()));
    std::uint64_t v = 0;
    switch (parse_size_text(*s, v)) {
      case SizeProblem::none:
        return v;
      case SizeProblem::zero:
        fail(n, "size must be greater than 0" + hint);
      case SizeProblem::too_large:
        fail(n, "size \"" + *s + "\" is too large");
      case SizeProblem::not_a_size:
        break;
    }
    fail(n, "size \"" + *s + "\" is not a size" + hint);
  }

  std::string file_;
  std::optional<fs::path> base_;
};

}  // namespace

SizeProblem parse_size_text(std::string_view text, std::uint64_t& bytes) {
  unsigned shift = 0;
  if (!text.empty()) {
    switch (text.back()) {
      case 'K':
      case 'k':
        shift = 10;
        break;
      case 'M':
      case 'm':
        shift = 20;
        break;
      case 'G':
      case 'g':
        shift = 30;
        break;
      case 'T':
      case 't':
        shift = 40;
        break;
      default:
        break;
    }
    if (shift) text.remove_suffix(1);
  }
  if (text.empty() || text.size() > 19) return SizeProblem::not_a_size;
  for (char c : text)
    if (c < '0' || c > '9') return SizeProblem::not_a_size;
  const std::uint64_t v = std::stoull(std::string(text));
  if (v == 0) return SizeProblem::zero;
  if (v > (std::numeric_limits<std::uint64_t>::max() >> 1 >> shift)) return SizeProblem::too_large;
  bytes = v << shift;
  return SizeProblem::none;
}

Config load_string(const std::string& text, const std::string& source_name) {
  std::error_code ec;
  fs::path cwd = fs::current_path(ec);
  return Loader(source_name, cwd).load(text);
}

const char* to_string(QuorumLossPolicy p) {
  switch (p) {
    case QuorumLossPolicy::fail:
      return "fail";
    case QuorumLossPolicy::wait:
      return "wait";
    case QuorumLossPolicy::read_only:
      return "read_only";
  }
  return "fail";
}

std::string RbdImage::spec() const {
  return "rbd:" + pool + "/" + (rados_namespace.empty() ? "" : rados_namespace + "/") + image;
}

Lun load_lun(const std::string& text, const std::string& source_name) {
  return Loader(source_name, std::nullopt).load_lun(text);
}

Config load_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    throw ConfigError(path, 0, 0, std::string("cannot open: ") + std::strerror(err));
  }
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      throw ConfigError(path, 0, 0, std::string("cannot read: ") + std::strerror(err));
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  std::error_code ec;
  fs::path abs = fs::absolute(path, ec);
  if (ec) abs = path;
  return Loader(path, abs.parent_path()).load(text);
}

}  // namespace ringtgt::config
