// Logical block provisioning (SBC-4 4.7, 5.30 UNMAP, 5.48 WRITE SAME, 5.8
// GET LBA STATUS): deallocation on a thin-provisioned LU. The backend does
// the work (a hole punched in a file, WRITE ZEROES with unmap on a device);
// here are the parameter checks and the walk over the descriptors. Reads of
// deallocated blocks return zeroes (LBPRZ 1), so deallocating is a way of
// writing zeroes, and is as durable as a write under the LU's ack policy.
#include <algorithm>
#include <cerrno>

#include "commands.hpp"
#include "ringtgt/scsi/cdb.hpp"

namespace ringtgt::scsi::detail {

namespace {

constexpr std::size_t kUnmapHeader = 8;
constexpr std::size_t kUnmapDescriptor = 16;

void complete_with(Task& task, SenseCode code) {
  task.fail(code);
  task.complete();
}

// UNMAP while in flight: an UnmapState.
void unmap_next(Task& task);

void unmap_done(Task& task, int result) {
  auto& state = std::get<UnmapState>(task.command_state);
  if (result < 0) {
    const std::uint8_t* d = task.buffer + kUnmapHeader + state.next * kUnmapDescriptor;
    task.fail(sense::for_io_error(result, sense::write_error), true, get_be64(d));
    return task.complete();
  }
  ++state.next;
  unmap_next(task);
}

void unmap_next(Task& task) {
  auto& state = std::get<UnmapState>(task.command_state);
  const std::uint64_t bs = state.block_size;
  while (state.next < state.count) {
    const std::uint8_t* d = task.buffer + kUnmapHeader + state.next * kUnmapDescriptor;
    const std::uint64_t lba = get_be64(d);
    const std::uint32_t blocks = get_be32(d + 8);
    if (blocks == 0) {
      ++state.next;
      continue;
    }
    task.io_continuation = &unmap_done;
    const bool more_follow = state.next < state.last;
    // The backend may complete before returning: nothing is touched after.
    return task.unit->backend().unmap(lba * bs, std::uint64_t{blocks} * bs, &task, more_follow);
  }
  task.status = Status::good;
  task.complete();
}

void zeroes_done(Task& task, int result) {
  auto& lu = *task.unit;
  const auto [lba, blocks] = std::get<ZeroRangeState>(task.command_state);
  if (result == -EOPNOTSUPP) {
    // A store that cannot zero a range in place (tmpfs has no ZERO_RANGE):
    // write the zeroes instead.
    return write_same_pattern(lu, task, lba, blocks, nullptr);
  }
  if (result < 0) {
    task.fail(sense::for_io_error(result, sense::write_error), true, lba);
  } else {
    task.status = Status::good;
  }
  task.complete();
}

}  // namespace

// SBC-4 5.30. The parameter list is an 8-byte header and 16-byte block
// descriptors; an incomplete last descriptor is ignored. Every descriptor is
// checked before anything is deallocated, so a bad list changes nothing.
void unmap(LogicalUnit& lu, Task& task) {
  const auto& c = task.cdb;
  const std::uint32_t param_len = get_be16(&c[7]);
  task.transfer_length = param_len;
  // ANCHOR: no anchored state (ANC_SUP 0).
  if (c[1] & 0x01) {
    task.fail_cdb_field(1, 0);
    return task.complete();
  }
  if (lu.write_protected()) return complete_with(task, lu.write_protected_sense());
  if (param_len == 0) {  // nothing to unmap, and not an error
    task.status = Status::good;
    return task.complete();
  }
  const std::uint32_t room =
      std::min(param_len, task.buffer != nullptr ? task.buffer_len : std::uint32_t{0});
  if (param_len < kUnmapHeader || room < kUnmapHeader) {
    return complete_with(task, sense::parameter_list_length_error);
  }
  const std::uint8_t* p = task.buffer;
  // UNMAP DATA LENGTH (bytes 0-1) is not needed: the BLOCK DESCRIPTOR DATA
  // LENGTH and what was sent bound the descriptors.
  const std::uint32_t desc_len = get_be16(&p[2]);
  const std::uint32_t usable = std::min<std::uint32_t>(desc_len, room - kUnmapHeader);
  const std::uint64_t count = usable / kUnmapDescriptor;
  if (count > max_unmap_descriptors) {
    return complete_with(task, sense::invalid_field_in_parameter_list);
  }
  std::uint64_t total = 0, last = 0;
  for (std::uint64_t i = 0; i < count; ++i) {
    const std::uint8_t* d = p + kUnmapHeader + i * kUnmapDescriptor;
    const std::uint64_t lba = get_be64(d);
    const std::uint32_t blocks = get_be32(d + 8);
    if (lba > lu.block_count() || blocks > lu.block_count() - lba) {
      task.fail(sense::lba_out_of_range);
      return task.complete();
    }
    total += blocks;
    if (blocks != 0) last = i;
  }
  if (total > max_unmap_lba_count) {
    return complete_with(task, sense::invalid_field_in_parameter_list);
  }
  task.command_state = UnmapState{0, count, lu.params().block_size, last};
  unmap_next(task);
}

void write_same_zeroes(LogicalUnit& lu, Task& task, std::uint64_t lba, std::uint64_t blocks,
                       bool unmap) {
  const std::uint64_t bs = lu.params().block_size;
  task.command_state = ZeroRangeState{lba, blocks};
  task.io_continuation = &zeroes_done;
  if (unmap && lu.params().thin_provisioned) {
    return lu.backend().unmap(lba * bs, blocks * bs, &task);
  }
  const bool fua = false;  // WRITE SAME has no FUA bit; writethrough makes it durable
  lu.backend().write_zeroes(lba * bs, blocks * bs, fua, &task);
}

// SBC-4 5.8: descriptors of consecutive blocks sharing one provisioning
// status, from the starting LBA on, as many as the allocation length holds
// (at least one, which may then be cut short). Extents the backend reports
// in bytes are rounded so that a block is deallocated only when all of it
// is: partly mapped counts as mapped.
void get_lba_status_thin(LogicalUnit& lu, Task& task, std::uint64_t lba, std::uint32_t alloc) {
  constexpr std::size_t kMaxDescriptors = 64;
  constexpr std::uint64_t kMaxBlocksPerDescriptor = 0xffffffffu;
  std::uint8_t out[kUnmapHeader + kMaxDescriptors * kUnmapDescriptor] = {};
  const std::size_t wanted = alloc > kUnmapHeader ? (alloc - kUnmapHeader) / kUnmapDescriptor : 0;
  const std::size_t limit = std::clamp<std::size_t>(wanted, 1, kMaxDescriptors);
  const std::uint64_t bs = lu.params().block_size;
  auto& backend = lu.backend();

  std::size_t n = 0;
  std::uint64_t at = lba;
  // Bounded work per command, whatever the backend's extents look like.
  for (int steps = 0; at < lu.block_count() && n < limit && steps < 4096; ++steps) {
    const std::uint64_t left = std::min(lu.block_count() - at, kMaxBlocksPerDescriptor);
    const auto e = backend.extent_at(at * bs, left * bs);
    std::uint64_t blocks;
    bool mapped = e.mapped;
    if (mapped) {
      blocks = (e.length + bs - 1) / bs;
    } else {
      blocks = e.length / bs;
      if (blocks == 0) {  // a hole smaller than a block: the block is mapped
        mapped = true;
        blocks = 1;
      }
    }
    blocks = std::clamp<std::uint64_t>(blocks, 1, left);
    std::uint8_t* prev = n > 0 ? &out[kUnmapHeader + (n - 1) * kUnmapDescriptor] : nullptr;
    const std::uint8_t status = mapped ? 0x00 : 0x01;  // mapped, deallocated
    if (prev != nullptr && prev[12] == status &&
        get_be32(&prev[8]) + blocks <= kMaxBlocksPerDescriptor) {
      put_be32(&prev[8], static_cast<std::uint32_t>(get_be32(&prev[8]) + blocks));
    } else {
      std::uint8_t* d = &out[kUnmapHeader + n * kUnmapDescriptor];
      put_be64(&d[0], at);
      put_be32(&d[8], static_cast<std::uint32_t>(blocks));
      d[12] = status;
      ++n;
    }
    at += blocks;
  }
  const std::size_t len = kUnmapHeader + n * kUnmapDescriptor;
  put_be32(&out[0], static_cast<std::uint32_t>(len - 4));  // PARAMETER DATA LENGTH
  finish_data_in(task, out, len, alloc);
}

}  // namespace ringtgt::scsi::detail
