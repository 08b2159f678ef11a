// The 8-byte LUN field of SAM-5 as REPORT LUNS and transport headers carry it:
// peripheral device addressing for LUNs below 256, flat space addressing up
// to 16383. Single level only; nothing larger is addressable here.
#pragma once

#include <array>
#include <cstdint>
#include <optional>

namespace ringtgt::scsi {

inline constexpr std::uint64_t max_addressable_lun = 16383;

// The wire form of lun, or nothing when lun > max_addressable_lun.
std::optional<std::array<std::uint8_t, 8>> encode_lun(std::uint64_t lun);

// The LUN number of a single-level peripheral or flat space address; nothing
// for other methods, bus numbers, or non-zero second-level bytes.
std::optional<std::uint64_t> decode_lun(const std::uint8_t* field);

}  // namespace ringtgt::scsi
