// The admin socket's fault.* methods (ringtgtctl fault): arm, list and clear
// the faults of a LUN whose backend injects them ([testing] fault_injection).
#pragma once

#include "ringtgt/admin/json_rpc.hpp"
#include "ringtgt/net/target_catalog.hpp"

namespace ringtgt::admin {

// fault.inject {target, lun, fault, [lba, blocks, io, count, delay_ms]},
// fault.clear {target, lun, [id]}, fault.list {[target]}. With enabled false
// each answers that fault injection is off.
void add_fault_methods(Dispatcher& d, const net::TargetCatalog& catalog, bool enabled);

}  // namespace ringtgt::admin
