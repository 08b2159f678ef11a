// Config -> backend -> logical unit: the one place a LUN is built, for the daemon at
// start, the admin socket's live changes and reload alike. It sits beside the layers
// (like config/ and admin/): it reads a config::Lun, opens a storage::Backend and
// wraps it in a scsi::LogicalUnit, so net serves LUs without ever seeing a backend.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "ringtgt/config/config.hpp"
#include "ringtgt/scsi/logical_unit.hpp"
#include "ringtgt/storage/backend.hpp"
#include "ringtgt/storage/unopened_backend.hpp"

namespace ringtgt::lun {

// The backing store a LUN's config names. One function per backend kind, chosen
// here: a file or block device today; an RBD image, or a mirror over several
// backends, is one more branch. Throws std::runtime_error saying why.
// store_counters: a remote store's /metrics series to go on counting in
// (null: new ones).
std::unique_ptr<storage::Backend> open_backend(
    const config::Lun& l, std::shared_ptr<metrics::StoreCounters> store_counters = nullptr);

// The same store inside a storage::FaultInjectingBackend, with the device
// faults injected beneath it ([testing] fault_injection; tests only).
std::unique_ptr<storage::Backend> open_fault_injecting_backend(
    const config::Lun& l, std::shared_ptr<metrics::StoreCounters> store_counters = nullptr);

// The store of copy `name` ("primary", or a [[target.lun.copy]]'s name) of
// mirrored LUN l, opened afresh for ringtgtctl copy replace, with where it is.
// Throws std::runtime_error saying why (no such copy, smaller than lun_size).
struct CopyStore {
  std::unique_ptr<storage::Backend> backend;
  std::string location;
};
CopyStore open_copy_store(const std::string& target, const config::Lun& l, const std::string& name,
                          bool fault_injection, std::uint64_t lun_size);

// A stable 64-bit identity for a LUN, from its target name and number, so
// INQUIRY's designators do not change across restarts.
std::uint64_t lun_naa(const std::string& target, std::uint32_t lun);

class LunFactory {
 public:
  // state_dir: where APTPL reservation files live (one per LUN, named by its NAA);
  // workers: reactor threads, one counter block each in the LUN's statistics;
  // fault_injection: every backend is a fault-injecting one ([testing]).
  LunFactory(std::string state_dir, unsigned workers, bool fault_injection = false);

  // Opens the backing store of LUN l of target (creating a sparse file when l.size
  // says so) and builds its LogicalUnit, not yet served. Throws std::runtime_error
  // naming the target and LUN. store_counters: as for open_backend.
  std::shared_ptr<scsi::LogicalUnit> open(
      const std::string& target, const config::Lun& l,
      std::shared_ptr<metrics::StoreCounters> store_counters = nullptr) const;

  // The LogicalUnit of a LUN whose store could not be opened yet: the same
  // identity as open's, answering NOT READY (LunParams::becoming_ready) until
  // a LU from open takes its place.
  std::shared_ptr<scsi::LogicalUnit> unopened(
      const std::string& target, const config::Lun& l,
      std::unique_ptr<storage::UnopenedBackend> backend) const;

 private:
  scsi::LunParams params_of(const std::string& target, const config::Lun& l,
                            const storage::Backend& backend) const;

  std::string state_dir_;
  unsigned workers_;
  bool fault_injection_;
};

}  // namespace ringtgt::lun
