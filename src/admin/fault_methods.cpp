#include "fault_methods.hpp"

#include <spdlog/spdlog.h>

#include "ringtgt/storage/fault_injection.hpp"
#include "ringtgt/storage/mirrored_backend.hpp"

namespace ringtgt::admin {

namespace {

using storage::FaultKind;
using storage::FaultRule;

void require_enabled(bool enabled) {
  if (!enabled) {
    throw RpcError(rpc_error::refused,
                   "fault injection is off: it needs [testing] fault_injection = true in the "
                   "config and a restart (tests only)");
  }
}

struct FaultyLun {
  std::shared_ptr<scsi::LogicalUnit> lu;  // keeps the backend alive
  storage::FaultInjectingBackend* backend;
};

// The fault-injecting backend of one copy of a mirrored LUN ("primary": its
// own path); null when the copy was opened without fault injection.
storage::FaultInjectingBackend* copy_of(storage::MirroredBackend& m, const std::string& copy,
                                        const std::string& lun) {
  for (std::size_t i = 0; i < m.copy_count(); ++i) {
    if (m.copy_name(i) == copy)
      return dynamic_cast<storage::FaultInjectingBackend*>(&m.copy_backend(i));
  }
  std::string names;
  for (std::size_t i = 0; i < m.copy_count(); ++i) names += (i ? ", " : "") + m.copy_name(i);
  throw RpcError(rpc_error::invalid_params, lun + " has no copy " + copy + " (" + names + ")");
}

// copy: which copy of a mirrored LUN (absent: the primary); a LUN without
// copies has only its own store.
FaultyLun faulty_lun(const net::TargetCatalog& catalog, const std::string& target, std::uint64_t n,
                     const std::optional<std::string>& copy = std::nullopt) {
  auto entry = catalog.find_target(target);
  if (!entry) {
    throw RpcError(rpc_error::invalid_params,
                   "no target named " + target + " (ringtgtctl target list shows them)");
  }
  auto lu = entry->luns()->find(n);
  if (!lu) {
    throw RpcError(rpc_error::invalid_params,
                   "target " + target + " has no LUN " + std::to_string(n));
  }
  const std::string name = "target " + target + " LUN " + std::to_string(n);
  storage::FaultInjectingBackend* b = nullptr;
  if (auto* m = dynamic_cast<storage::MirroredBackend*>(&lu->backend())) {
    b = copy_of(*m, copy.value_or("primary"), name);
  } else if (copy && *copy != "primary") {
    throw RpcError(rpc_error::invalid_params, name + " has no copies");
  } else {
    b = dynamic_cast<storage::FaultInjectingBackend*>(&lu->backend());
  }
  if (b == nullptr) {
    throw RpcError(rpc_error::refused, "target " + target + " LUN " + std::to_string(n) +
                                           " was opened without fault injection");
  }
  return {std::move(lu), b};
}

json rule_json(const FaultRule& r, std::uint32_t block_size) {
  json j{
      {"id", r.id}, {"fault", metrics::to_string(r.kind)}, {"fired", r.fired}, {"count", r.count}};
  if (r.kind == FaultKind::flush_failure) return j;
  j["lba"] = r.offset / block_size;
  j["blocks"] = r.length / block_size;  // 0: the whole LUN
  if (r.kind != FaultKind::enospc)
    j["io"] = r.reads && r.writes ? "both" : r.reads ? "read" : "write";
  if (r.kind == FaultKind::delay) j["delay_ms"] = r.delay.count();
  return j;
}

FaultRule rule_from_params(const Params& p, std::uint64_t block_size, std::uint64_t lun_blocks) {
  FaultRule r;
  const std::string kind = p.string("fault");
  auto k = storage::fault_kind_from_string(kind);
  if (!k) {
    throw RpcError(rpc_error::invalid_params,
                   "fault \"" + kind + "\" is not one of eio, enospc, short, flush, delay");
  }
  r.kind = *k;
  const std::uint64_t lba = p.optional_uint("lba", 0, lun_blocks - 1).value_or(0);
  const std::uint64_t blocks = p.optional_uint("blocks", 0, lun_blocks - lba).value_or(0);
  r.offset = lba * block_size;
  r.length = blocks * block_size;
  if (r.length == 0 && lba != 0) r.length = (lun_blocks - lba) * block_size;  // lba to the end
  const std::string io = p.optional_string("io").value_or("both");
  if (io != "read" && io != "write" && io != "both")
    throw RpcError(rpc_error::invalid_params, "io must be read, write or both, not " + io);
  r.reads = io != "write";
  r.writes = io != "read";
  r.count = p.optional_uint("count", 0, UINT32_MAX).value_or(0);
  if (r.kind == FaultKind::delay) {
    // Up to 10 s: a latency spike, not a hang (the reactor keeps serving meanwhile).
    r.delay = std::chrono::milliseconds(p.uint("delay_ms", 1, 10'000));
  } else if (p.has("delay_ms")) {
    throw RpcError(rpc_error::invalid_params, "delay_ms is for fault \"delay\" only");
  }
  return r;
}

json counts_json(const metrics::FaultCounters& c) {
  json j = json::object();
  for (std::size_t k = 0; k < metrics::kFaultKinds; ++k) {
    auto kind = static_cast<FaultKind>(k);
    j[metrics::to_string(kind)] = c.get(kind);
  }
  return j;
}

}  // namespace

void add_fault_methods(Dispatcher& d, const net::TargetCatalog& catalog, bool enabled) {
  d.add("fault.inject", [&catalog, enabled](const Params& p, const Responder& r) {
    require_enabled(enabled);
    p.only({"target", "lun", "copy", "fault", "lba", "blocks", "io", "count", "delay_ms"});
    const std::string target = p.string("target");
    const std::uint64_t n = p.uint("lun", 0, 16383);
    const auto copy = p.optional_string("copy");
    FaultyLun f = faulty_lun(catalog, target, n, copy);
    const std::uint32_t bs = f.lu->params().block_size;
    FaultRule rule = rule_from_params(p, bs, f.backend->size_bytes() / bs);
    rule.id = f.backend->plan().add(rule);
    spdlog::warn("admin: target {} LUN {}{}: fault {} armed (id {}, lba {}, blocks {}, count {})",
                 target, n, copy ? " copy " + *copy : "", metrics::to_string(rule.kind), rule.id,
                 rule.offset / bs, rule.length / bs, rule.count);
    r.ok(rule_json(rule, bs));
  });

  d.add("fault.clear", [&catalog, enabled](const Params& p, const Responder& r) {
    require_enabled(enabled);
    p.only({"target", "lun", "copy", "id"});
    const std::string target = p.string("target");
    const std::uint64_t n = p.uint("lun", 0, 16383);
    FaultyLun f = faulty_lun(catalog, target, n, p.optional_string("copy"));
    std::size_t cleared = 0;
    if (auto id = p.optional_uint("id", 1, UINT64_MAX)) {
      if (!f.backend->plan().remove(*id)) {
        throw RpcError(rpc_error::invalid_params,
                       "no fault " + std::to_string(*id) + " armed on target " + target + " LUN " +
                           std::to_string(n) + " (ringtgtctl fault list)");
      }
      cleared = 1;
    } else {
      cleared = f.backend->plan().rules().size();
      f.backend->plan().clear();
    }
    spdlog::info("admin: target {} LUN {}: {} fault(s) cleared", target, n, cleared);
    r.ok({{"cleared", cleared}});
  });

  d.add("fault.list", [&catalog, enabled](const Params& p, const Responder& r) {
    require_enabled(enabled);
    p.only({"target"});
    const auto only = p.optional_string("target");
    json out = json::array();
    for (const auto& entry : catalog.targets()) {
      if (only && entry->name != *only) continue;
      auto map = entry->luns();
      for (auto n : map->luns()) {
        auto lu = map->find(n);
        if (!lu) continue;
        // One row per store: a mirrored LUN's copies each have their own plan.
        std::vector<std::pair<std::string, storage::FaultInjectingBackend*>> stores;
        if (auto* m = dynamic_cast<storage::MirroredBackend*>(&lu->backend())) {
          for (std::size_t i = 0; i < m->copy_count(); ++i)
            stores.emplace_back(m->copy_name(i),
                                dynamic_cast<storage::FaultInjectingBackend*>(&m->copy_backend(i)));
        } else {
          stores.emplace_back("", dynamic_cast<storage::FaultInjectingBackend*>(&lu->backend()));
        }
        for (const auto& [copy, b] : stores) {
          if (b == nullptr) continue;
          json faults = json::array();
          for (const auto& rule : b->plan().rules())
            faults.push_back(rule_json(rule, lu->params().block_size));
          json row{{"target", entry->name},
                   {"lun", n},
                   {"faults", faults},
                   {"injected", counts_json(*b->plan().counters())}};
          if (!copy.empty()) row["copy"] = copy;
          out.push_back(std::move(row));
        }
      }
    }
    r.ok(out);
  });
}

}  // namespace ringtgt::admin
