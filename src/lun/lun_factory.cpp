#include "ringtgt/lun/lun_factory.hpp"

#include <spdlog/spdlog.h>

#include <bit>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include "redundancy.hpp"
#include "ringtgt/metrics/counters.hpp"
#include "ringtgt/storage/fault_injecting_engine.hpp"
#include "ringtgt/storage/fault_injection.hpp"
#include "ringtgt/storage/file_backend.hpp"
#include "ringtgt/storage/iscsi_copy_backend.hpp"
#include "ringtgt/storage/mirrored_backend.hpp"
#include "ringtgt/storage/rbd_backend.hpp"
#include "ringtgt/storage/unopened_backend.hpp"

namespace ringtgt::lun {

namespace {

storage::FileBackendOptions file_options(const config::Lun& l) {
  storage::FileBackendOptions o;
  o.path = l.path;
  o.create_size = l.size;
  o.read_only = l.read_only;
  o.direct_io = l.direct_io;
  o.block_size = l.block_size;  // checked against the device's logical block size
  o.policy = l.write_ack;
  // Tests only ([testing] durability_log): the recording seam, and the
  // broken acknowledgement order that only exists while it records.
  const storage::DurabilitySeam& seam = storage::durability_seam();
  o.durability_log = seam.log;
  o.broken_ack_before_flush_for_tests = seam.log != nullptr && seam.ack_before_flush;
  return o;
}

// Connects to the cluster and opens the image: blocking (bounded by
// op_timeout), so the factory runs on the control plane, never a reactor.
std::unique_ptr<storage::Backend> open_rbd_backend(
    const config::Lun& l, std::shared_ptr<metrics::StoreCounters> store_counters) {
  const config::RbdImage& r = *l.rbd;
  storage::RbdBackendOptions o;
  o.pool = r.pool;
  o.rados_namespace = r.rados_namespace;
  o.image = r.image;
  o.conf = r.conf;
  o.client = r.client;
  o.keyring = r.keyring;
  o.op_timeout_s = r.op_timeout;
  o.policy = l.write_ack;
  o.read_only = l.read_only;
  o.min_size = l.size.value_or(0);  // an image is never created or grown here
  o.counters = std::move(store_counters);
  return std::make_unique<storage::RbdBackend>(o);
}

std::string lun_name(const std::string& target, const config::Lun& l) {
  return "target " + target + " LUN " + std::to_string(l.number);
}

// A remote copy: a LUN of another iSCSI target, logged in to with the
// mirrored LUN's target name as InitiatorName. Its block size and capacity
// are checked when it connects; one that cannot connect now starts
// connecting (the LUN serves at quorum meanwhile).
std::unique_ptr<storage::Backend> open_remote_copy(const std::string& target, const config::Lun& l,
                                                   const config::LunCopy& c,
                                                   std::uint64_t primary_size,
                                                   const std::string& who) {
  storage::IscsiCopyBackendOptions o;
  o.label = "copy " + c.name + " of " + lun_name(target, l);
  o.portal = c.url->portal();
  o.target = c.url->target;
  o.lun = c.url->lun;
  o.url = c.url->text();
  o.initiator = target;
  if (c.chap) {
    o.chap_user = c.chap->user;
    o.chap_secret = c.chap->secret;
  }
  o.block_size = l.block_size;
  o.min_size = primary_size;
  o.command_timeout_ms = c.command_timeout_seconds * 1000;
  o.first_connect_wait_ms = c.connect_wait_seconds * 1000;
  o.backoff_max_ms = std::max(o.backoff_min_ms, c.reconnect_max_seconds * 1000);
  o.policy = l.write_ack;
  try {
    return std::make_unique<storage::IscsiCopyBackend>(std::move(o));
  } catch (const std::exception& e) {
    throw std::runtime_error(who + ": " + e.what());
  }
}

// A local store of mirrored LUN l at path, opened as the LUN's primary is
// (same block size, write_ack and direct_io rules). A missing file is created
// at the LUN's size; an existing one is never grown: smaller than min_size
// (than says what that is), it cannot hold the LUN. Errors start with who.
std::unique_ptr<storage::Backend> open_local_store(const config::Lun& l, const std::string& path,
                                                   bool fault_injection, std::uint64_t min_size,
                                                   const std::string& who,
                                                   const std::string& than) {
  config::Lun as_lun = l;
  as_lun.path = path;
  as_lun.copies.clear();
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) as_lun.size.reset();
  std::unique_ptr<storage::Backend> b;
  try {
    b = fault_injection ? open_fault_injecting_backend(as_lun) : open_backend(as_lun);
  } catch (const std::exception& e) {
    throw std::runtime_error(who + ": " + e.what());
  }
  if (b->size_bytes() < min_size) {
    throw std::runtime_error(who + ": " + path + " is " + std::to_string(b->size_bytes()) +
                             " bytes, smaller than " + than + " (" + std::to_string(min_size) +
                             " bytes)");
  }
  return b;
}

// One copy of a mirrored LUN: its own file or device, or a remote LUN. Errors
// name the copy's table in the config file.
std::unique_ptr<storage::Backend> open_copy(const std::string& target, const config::Lun& l,
                                            const config::LunCopy& c, bool fault_injection,
                                            std::uint64_t primary_size) {
  const std::string who = c.where + ": copy " + c.name + " of " + lun_name(target, l);
  if (c.url) return open_remote_copy(target, l, c, primary_size, who);
  return open_local_store(l, c.path, fault_injection, primary_size, who, "the primary " + l.path);
}

// Where copy c's store is, as the mirror's state file records it.
std::string copy_location(const config::LunCopy& c) {
  return c.url ? c.url->text() : c.path;
}

// The primary and its copies behind one MirroredBackend; logs what the LUN
// survives (a warning when copies share a failure domain). The primary comes
// first, then the local copies, then the remote ones, each in config order:
// reads and a crash's resync take the first in-sync copy as their source,
// and a write is answered before the copies after those that hold it
// (mirrored_backend.hpp), so the copies likely to be slow come last.
std::unique_ptr<storage::MirroredBackend> open_mirror(const std::string& target,
                                                      const config::Lun& l,
                                                      std::unique_ptr<storage::Backend> primary,
                                                      bool fault_injection,
                                                      std::string state_path) {
  std::vector<storage::MirrorCopy> copies;
  const std::uint64_t size = primary->size_bytes();
  copies.push_back({"primary", l.failure_domain, std::move(primary), l.path});
  for (const bool remote : {false, true}) {
    for (const auto& c : l.copies) {
      if (c.url.has_value() != remote) continue;
      copies.push_back({c.name, c.failure_domain, open_copy(target, l, c, fault_injection, size),
                        copy_location(c)});
    }
  }
  storage::MirrorOptions o;
  o.lun_label = lun_name(target, l);
  o.ack_quorum = l.quorum();
  switch (l.on_quorum_loss) {
    case config::QuorumLossPolicy::fail:
      o.on_quorum_loss = storage::QuorumLossAction::fail;
      break;
    case config::QuorumLossPolicy::wait:
      o.on_quorum_loss = storage::QuorumLossAction::wait;
      break;
    case config::QuorumLossPolicy::read_only:
      o.on_quorum_loss = storage::QuorumLossAction::read_only;
      break;
  }
  o.quorum_wait = std::chrono::seconds(l.quorum_wait_seconds);
  o.region_size = l.resync_region_size;
  o.resync_rate = l.resync_rate;
  o.state_path = std::move(state_path);
  const Redundancy r = redundancy_of(l);
  o.redundancy = r.text;
  o.redundancy_warning = r.warn;
  if (r.warn) {
    spdlog::warn("{}: {}", lun_name(target, l), r.text);
  } else {
    spdlog::info("{}: {}", lun_name(target, l), r.text);
  }
  return std::make_unique<storage::MirroredBackend>(std::move(copies), std::move(o));
}

}  // namespace

CopyStore open_copy_store(const std::string& target, const config::Lun& l, const std::string& name,
                          bool fault_injection, std::uint64_t lun_size) {
  for (const auto& c : l.copies) {
    if (c.name == name)
      return {open_copy(target, l, c, fault_injection, lun_size), copy_location(c)};
  }
  if (name != "primary")
    throw std::runtime_error(lun_name(target, l) + " has no copy " + name + " in the config");
  return {open_local_store(l, l.path, fault_injection, lun_size, lun_name(target, l) + ": primary",
                           "the LUN"),
          l.path};
}

std::unique_ptr<storage::Backend> open_backend(
    const config::Lun& l, std::shared_ptr<metrics::StoreCounters> store_counters) {
  if (l.rbd) return open_rbd_backend(l, std::move(store_counters));
  return std::make_unique<storage::FileBackend>(file_options(l));
}

std::unique_ptr<storage::Backend> open_fault_injecting_backend(
    const config::Lun& l, std::shared_ptr<metrics::StoreCounters> store_counters) {
  // Faults are injected beneath the file backend (its I/O engine); an RBD
  // LUN is served as it is, and fault.inject refuses it.
  if (l.rbd) return open_rbd_backend(l, std::move(store_counters));
  auto plan = std::make_shared<storage::FaultPlan>(l.block_size);
  storage::FileBackendOptions o = file_options(l);
  o.engine_for_tests = [plan](reactor::IoEngine& thread_engine) {
    return std::make_unique<storage::FaultInjectingEngine>(thread_engine, plan);
  };
  return std::make_unique<storage::FaultInjectingBackend>(std::make_unique<storage::FileBackend>(o),
                                                          plan);
}

std::uint64_t lun_naa(const std::string& target, std::uint32_t lun) {
  // FNV-1a over the names: stable across restarts and builds.
  std::uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&h](unsigned char c) {
    h ^= c;
    h *= 0x100000001b3ull;
  };
  for (unsigned char c : target) mix(c);
  mix(0);
  for (int i = 0; i < 4; ++i) mix(static_cast<unsigned char>(lun >> (8 * i)));
  return h;
}

LunFactory::LunFactory(std::string state_dir, unsigned workers, bool fault_injection)
    : state_dir_(std::move(state_dir)), workers_(workers), fault_injection_(fault_injection) {}

scsi::LunParams LunFactory::params_of(const std::string& target, const config::Lun& l,
                                      const storage::Backend& backend) const {
  scsi::LunParams p;
  p.block_size = l.block_size;
  p.physical_block_exponent =
      static_cast<std::uint8_t>(l.physical_block_size > l.block_size
                                    ? std::bit_width(l.physical_block_size / l.block_size) - 1
                                    : 0);
  p.read_only = l.read_only;
  if (l.max_transfer != 0) p.max_transfer_bytes = l.max_transfer;
  p.naa = lun_naa(target, l.number);
  p.serial = l.serial.empty() ? fmt::format("{:016x}", p.naa) : l.serial;
  p.device_name = target + ",lun," + std::to_string(l.number);
  p.spc2_reservations = true;  // released on nexus loss and resets by the transport
  // A read_only LUN may be thin: it reports which blocks its image holds
  // (LBPME, GET LBA STATUS), and UNMAP gets DATA PROTECT like any write.
  if (l.provisioning == config::Provisioning::thin && !backend.can_unmap() && !l.read_only) {
    throw std::runtime_error(lun_name(target, l) + ": provisioning = \"thin\" but " + l.path +
                             " cannot deallocate (no hole punching / WRITE ZEROES); use "
                             "provisioning = \"full\"");
  }
  p.thin_provisioned =
      l.provisioning ? *l.provisioning == config::Provisioning::thin : backend.can_unmap();
  // Unit attentions and persistent reservations: a new nexus hears 29h/00h,
  // and APTPL state lives in state_dir, one file per LUN named by its NAA.
  p.power_on_unit_attention = true;
  p.pr_state_path = fmt::format("{}/pr-{:016x}.state", state_dir_, p.naa);
  // SANITIZE only where the config allows it; a sanitize in progress (or
  // failed) is kept beside the APTPL file, so a restart resumes or reports it.
  p.allow_sanitize = l.allow_sanitize;
  p.sanitize_bytes_per_second = l.sanitize_rate;
  p.sanitize_state_path = fmt::format("{}/sanitize-{:016x}.state", state_dir_, p.naa);
  return p;
}

std::shared_ptr<scsi::LogicalUnit> LunFactory::open(
    const std::string& target, const config::Lun& l,
    std::shared_ptr<metrics::StoreCounters> store_counters) const {
  std::unique_ptr<storage::Backend> backend;
  try {
    backend = fault_injection_ ? open_fault_injecting_backend(l, std::move(store_counters))
                               : open_backend(l, std::move(store_counters));
  } catch (const std::exception& e) {
    throw std::runtime_error(lun_name(target, l) + ": " + e.what());
  }
  storage::MirroredBackend* mirror = nullptr;  // set for a LUN with copies
  // Outside the try: a copy's errors start with its place in the config file.
  // The copies' states, bitmaps and activity log, one file per LUN named by
  // its NAA like its reservations.
  if (!l.copies.empty()) {
    std::string state_path =
        fmt::format("{}/mirror-{:016x}.state", state_dir_, lun_naa(target, l.number));
    // Benchmarks only (docs/replication.md, "Overhead"): the activity log's
    // cost is measured against the same daemon without it.
    if (const char* off = std::getenv("RINGTGT_BENCH_NO_ACTIVITY_LOG"); off && *off == '1') {
      spdlog::warn("{}: RINGTGT_BENCH_NO_ACTIVITY_LOG=1: no state file, a crash is not recovered",
                   lun_name(target, l));
      state_path.clear();
    }
    auto m = open_mirror(target, l, std::move(backend), fault_injection_, std::move(state_path));
    mirror = m.get();
    backend = std::move(m);
  }
  if (backend->size_bytes() % l.block_size != 0) {
    throw std::runtime_error(
        lun_name(target, l) + ": " + l.path + " is " + std::to_string(backend->size_bytes()) +
        " bytes, not a multiple of the block size " + std::to_string(l.block_size));
  }
  const scsi::LunParams p = params_of(target, l, *backend);
  spdlog::info("target {} LUN {}: {} ({} bytes, {} byte blocks, {}, {} provisioned{}{})", target,
               l.number, backend->describe(), backend->size_bytes(), l.block_size,
               storage::to_string(backend->ack_policy()), p.thin_provisioned ? "thin" : "fully",
               l.read_only ? ", read-only" : "",
               l.copies.empty()
                   ? ""
                   : fmt::format(", ack_quorum {} of {}, on_quorum_loss {}", l.quorum(),
                                 l.copies.size() + 1, config::to_string(l.on_quorum_loss)));
  auto lu = std::make_shared<scsi::LogicalUnit>(l.number, p, std::move(backend));
  lu->set_stats(std::make_shared<metrics::LunStats>(workers_));
  if (mirror != nullptr) mirror->set_owner(lu);
  return lu;
}

std::shared_ptr<scsi::LogicalUnit> LunFactory::unopened(
    const std::string& target, const config::Lun& l,
    std::unique_ptr<storage::UnopenedBackend> backend) const {
  scsi::LunParams p = params_of(target, l, *backend);
  p.becoming_ready = true;
  auto lu = std::make_shared<scsi::LogicalUnit>(l.number, p, std::move(backend));
  lu->set_stats(std::make_shared<metrics::LunStats>(workers_));
  return lu;
}

}  // namespace ringtgt::lun
