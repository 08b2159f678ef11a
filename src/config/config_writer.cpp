// Config -> TOML text that load_string reads back to the same Config (config.write
// and live changes; common/atomic_file.hpp writes it over a config file).
#include <filesystem>
#include <sstream>
#include <stdexcept>

#include <toml++/toml.h>

#include "ringtgt/config/config.hpp"

namespace ringtgt::config {

namespace {

toml::array strings(const std::vector<std::string>& v) {
  toml::array a;
  for (const auto& s : v) a.push_back(s);
  return a;
}

// The LUN's path names the pool, namespace and image; the table says how to
// reach the cluster.
toml::table rbd_table(const RbdImage& r) {
  toml::table t{{"client", r.client}, {"op_timeout", static_cast<std::int64_t>(r.op_timeout)}};
  if (!r.conf.empty()) t.insert("conf", r.conf);
  if (!r.keyring.empty()) t.insert("keyring", r.keyring);
  return t;
}

void put_chap(toml::table& t, const Chap& c) {
  t.insert("chap_user", c.user);
  t.insert("chap_secret_file", c.secret_file);
  if (c.mutual()) {
    t.insert("mutual_user", c.mutual_user);
    t.insert("mutual_secret_file", c.mutual_secret_file);
  }
}

std::int64_t i64(std::uint64_t v) {
  return static_cast<std::int64_t>(v);
}

}  // namespace

// A digest setting as the loader reads it: "allowed", "never" or "required".
static void put_digest(toml::table& t, std::string_view key, bool allowed, bool required) {
  t.insert(key, IscsiSettings::digest_setting(allowed, required));
}

std::string to_toml(const Config& c) {
  toml::table root;
  root.insert("workers", i64(c.workers));
  root.insert("log_level", c.log_level);
  root.insert("state_dir", c.state_dir);
  toml::array portals;
  for (const auto& p : c.portals) portals.push_back(toml::table{{"listen", p.to_string()}});
  root.insert("portal", std::move(portals));

  const IscsiSettings& s = c.iscsi;
  toml::table iscsi{
      {"max_recv_data_segment_length", i64(s.max_recv_data_segment_length)},
      {"max_burst_length", i64(s.max_burst_length)},
      {"first_burst_length", i64(s.first_burst_length)},
      {"initial_r2t", s.initial_r2t},
      {"immediate_data", s.immediate_data},
      {"max_outstanding_r2t", i64(s.max_outstanding_r2t)},
      {"default_time2wait", i64(s.default_time2wait)},
      {"default_time2retain", i64(s.default_time2retain)},
      {"queue_depth", i64(s.queue_depth)},
      {"nop_interval", i64(s.nop_interval_seconds)},
      {"nop_timeout", i64(s.nop_timeout_seconds)},
      {"login_timeout", i64(s.login_timeout_seconds)},
  };
  put_digest(iscsi, "header_digest", s.header_digest, s.require_header_digest);
  put_digest(iscsi, "data_digest", s.data_digest, s.require_data_digest);
  root.insert("iscsi", std::move(iscsi));
  if (c.discovery_chap) {
    toml::table d;
    put_chap(d, *c.discovery_chap);
    root.insert("discovery", std::move(d));
  }
  root.insert("limits",
              toml::table{
                  {"max_sessions", i64(c.limits.max_sessions)},
                  {"max_sessions_per_initiator", i64(c.limits.max_sessions_per_initiator)},
                  {"max_connections", i64(c.limits.max_connections)},
                  {"max_buffer_memory", i64(c.limits.max_buffer_memory)},
                  {"max_session_output", i64(c.limits.max_session_output)},
              });
  if (c.metrics.listen)
    root.insert("metrics", toml::table{{"listen", c.metrics.listen->to_string()}});
  toml::table admin{{"socket", c.admin.socket}};
  if (!c.admin.group.empty()) admin.insert("group", c.admin.group);
  root.insert("admin", std::move(admin));
  if (!c.durability_testing.log_path.empty()) {
    toml::table testing{{"durability_log", c.durability_testing.log_path}};
    if (c.durability_testing.ack_before_flush) testing.insert("ack_before_flush", true);
    root.insert("testing", std::move(testing));
  }
  if (c.fault_testing.fault_injection) {
    if (auto* t = root["testing"].as_table())
      t->insert("fault_injection", true);
    else
      root.insert("testing", toml::table{{"fault_injection", true}});
  }

  toml::array targets;
  for (const auto& t : c.targets) {
    toml::table tt{{"name", t.name}};
    if (!t.alias.empty()) tt.insert("alias", t.alias);
    if (!t.allowed_initiators.empty())
      tt.insert("allowed_initiators", strings(t.allowed_initiators));
    if (t.chap) put_chap(tt, *t.chap);
    if (!t.portals.empty()) {
      toml::array tp;
      for (const auto& p : t.portals) tp.push_back(p.to_string());
      tt.insert("portals", std::move(tp));
    }
    toml::array luns;
    for (const auto& l : t.luns) {
      toml::table lt{{"number", i64(l.number)},
                     {"path", l.path},
                     {"block_size", i64(l.block_size)},
                     {"read_only", l.read_only},
                     {"write_ack", storage::to_string(l.write_ack)}};
      if (l.size) lt.insert("size", i64(*l.size));
      if (l.direct_io) lt.insert("direct_io", *l.direct_io);
      if (l.allow_sanitize) lt.insert("allow_sanitize", true);
      if (l.sanitize_rate) lt.insert("sanitize_rate", i64(l.sanitize_rate));
      if (l.max_transfer) lt.insert("max_transfer", i64(l.max_transfer));
      if (l.physical_block_size) lt.insert("physical_block_size", i64(l.physical_block_size));
      if (!l.serial.empty()) lt.insert("serial", l.serial);
      if (l.provisioning) {
        lt.insert("provisioning", *l.provisioning == Provisioning::thin ? "thin" : "full");
      }
      if (!l.allowed_initiators.empty())
        lt.insert("allowed_initiators", strings(l.allowed_initiators));
      if (l.rbd) lt.insert("rbd", rbd_table(*l.rbd));
      if (!l.failure_domain.empty()) lt.insert("failure_domain", l.failure_domain);
      if (l.ack_quorum != 0) lt.insert("ack_quorum", i64(l.ack_quorum));
      if (!l.copies.empty()) {
        lt.insert("on_quorum_loss", to_string(l.on_quorum_loss));
        if (l.on_quorum_loss == QuorumLossPolicy::wait)
          lt.insert("quorum_wait", i64(l.quorum_wait_seconds));
        lt.insert("resync_region_size", i64(l.resync_region_size));
        lt.insert("resync_rate", i64(l.resync_rate));
        toml::array copies;
        for (const auto& c : l.copies) {
          toml::table ct{{"name", c.name}};
          if (c.url) {
            ct.insert("url", c.url->text());
          } else {
            ct.insert("path", c.path);
          }
          if (c.url && c.command_timeout_seconds != LunCopy{}.command_timeout_seconds)
            ct.insert("command_timeout", i64(c.command_timeout_seconds));
          if (c.url && c.connect_wait_seconds != LunCopy{}.connect_wait_seconds)
            ct.insert("connect_wait", i64(c.connect_wait_seconds));
          if (c.url && c.reconnect_max_seconds != LunCopy{}.reconnect_max_seconds)
            ct.insert("reconnect_max", i64(c.reconnect_max_seconds));
          if (c.chap) {
            ct.insert("chap_user", c.chap->user);
            ct.insert("chap_secret_file", c.chap->secret_file);
          }
          if (!c.failure_domain.empty()) ct.insert("failure_domain", c.failure_domain);
          copies.push_back(std::move(ct));
        }
        lt.insert("copy", std::move(copies));
      }
      luns.push_back(std::move(lt));
    }
    if (!luns.empty()) tt.insert("lun", std::move(luns));
    targets.push_back(std::move(tt));
  }
  root.insert("target", std::move(targets));

  std::ostringstream out;
  out << "# Written by ringtgt (ringtgtctl config write / config.write): the running\n"
         "# configuration. Comments and the layout of the file it replaced were not kept;\n"
         "# conf/demo.toml documents every key.\n\n"
      << toml::toml_formatter(root) << "\n";
  return out.str();
}

Config validate(const Config& candidate) {
  Config c = load_string(to_toml(candidate), candidate.source);
  c.source = candidate.source;
  return c;
}

}  // namespace ringtgt::config
