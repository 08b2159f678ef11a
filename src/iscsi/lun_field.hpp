// The LUN field of a PDU's header. The LUN codec is scsi's (lun_addressing.hpp); these
// adapt it to the BHS field. Private to the protocol engine (src/iscsi).
#pragma once

#include <cstdint>

#include "ringtgt/iscsi/pdu.hpp"
#include "ringtgt/scsi/lun_addressing.hpp"

namespace ringtgt::iscsi {

// A field scsi cannot decode names no LUN we have.
inline constexpr std::uint64_t kNoLun = ~0ull;

inline std::uint64_t lun_of(const Bhs& bhs) {
  return scsi::decode_lun(&bhs.bytes[8]).value_or(kNoLun);
}

// The LUN field of a target PDU for lun; zero for kNoLun (a command to no LUN
// we have; Data-In never sets the A bit, so the field is reserved there).
inline std::uint64_t lun_field_of(std::uint64_t lun) {
  const auto wire = scsi::encode_lun(lun);
  return wire ? get_be64(wire->data()) : 0;
}

}  // namespace ringtgt::iscsi
