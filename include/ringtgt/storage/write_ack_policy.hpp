// The write-acknowledgement policy of a LUN: what an initiator may be told about a
// write before it is durable. Header-only so that the config (which names it in
// write_ack = "...") and every backend share this one enum.
#pragma once

#include <optional>
#include <string_view>

namespace ringtgt::storage {

enum class WriteAckPolicy {
  writethrough,  // every write is durable before it is acknowledged; WCE=0
  writeback,     // acknowledged once the host has it; WCE=1; FUA/SYNC CACHE make it durable
};

// The config's and the admin socket's word for it.
constexpr const char* to_string(WriteAckPolicy p) {
  return p == WriteAckPolicy::writeback ? "writeback" : "writethrough";
}

constexpr std::optional<WriteAckPolicy> write_ack_policy_named(std::string_view name) {
  if (name == to_string(WriteAckPolicy::writethrough)) return WriteAckPolicy::writethrough;
  if (name == to_string(WriteAckPolicy::writeback)) return WriteAckPolicy::writeback;
  return std::nullopt;
}

}  // namespace ringtgt::storage
