// EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (SPC-4 6.4, 6.18): the copy
// offload ESXi (VAAI XCOPY) and other initiators use to clone blocks without
// moving them over the network.
//
// The logical unit is the copy manager. A CSCD descriptor (identification
// descriptor, E4h) names a copy target by the NAA designator of its VPD page
// 83h: this LU, or another LU of the daemon that the initiator of the I_T
// nexus may use, as the LU's CopyTargetResolver (installed by the transport)
// finds it. A segment that uses any other CSCD fails with COPY ABORTED, COPY
// TARGET DEVICE NOT REACHABLE. Only block-to-block segments (02h) are
// supported; no inline or held data.
//
// A copy target is read and written as a READ or WRITE from the same nexus
// would be: a reservation it would conflict with, a write-protected
// destination or an LBA out of range aborts the copy with the status or
// sense that command would have had, embedded in the COPY ABORTED sense data
// (SPC-4 6.4.5). Every segment is checked before any data moves, and again
// when its turn comes, so that a reservation or SWP set meanwhile stops the
// copy at the next segment. Unit attentions pending for the nexus on another
// LU stay pending (they are for its next command to that LU; the copy
// manager's reads and writes are not commands of that nexus). A thin
// provisioned destination gets every block written, zeroes included, as a
// WRITE of them would: the copy allocates, and holes in the source are not
// carried over.
//
// Copy targets of different block lengths: BLOCK DEVICE NUMBER OF BLOCKS
// counts source blocks, or destination blocks when DC is set (SPC-4 6.4.6.5).
// A segment whose bytes do not fill whole blocks on both sides (an inexact
// segment) fails with COPY ABORTED, UNEXPECTED INEXACT SEGMENT before any data
// moves: residues are neither padded (PAD) nor carried into the next segment
// (CAT).
//
// The copy runs on the task's thread through the copy targets' backends, one
// chunk at a time through a bounce buffer (read, then write, then the next
// chunk), with the task as the IoOp. The destination range of the segment in
// progress is claimed with the destination LU's COMPARE AND WRITE range lock,
// so a COMPARE AND WRITE or a plain write into it meanwhile gets BUSY, and a
// copy into a range another command has claimed gets BUSY itself (the
// initiator retries the command; segments already copied are copied again,
// which is harmless unless the segments of one command overlap each other).
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "commands.hpp"
#include "ringtgt/scsi/cdb.hpp"

namespace ringtgt::scsi::detail {

namespace {

// Limits, as RECEIVE COPY RESULTS (OPERATING PARAMETERS) reports them.
constexpr std::uint16_t kMaxCscdDescriptors = 8;
constexpr std::uint16_t kMaxSegmentDescriptors = 64;
constexpr std::uint32_t kMaxDescriptorListLength = 4096;
constexpr std::uint32_t kMaxSegmentBytes = 16u << 20;
// Copies in flight in the whole process; each holds one bounce buffer.
constexpr unsigned kMaxConcurrentCopies = 64;
// Bytes moved per backend read/write: a multiple of every block length
// (at most 64 KiB), so a chunk is whole blocks on both copy targets.
constexpr std::uint64_t kChunkBytes = 1u << 20;
constexpr std::size_t kBounceAlign = 4096;
// Copy statuses a nexus holds; the oldest finished ones make room.
constexpr std::size_t kMaxHeldStatuses = 16;

constexpr std::uint8_t kHeaderLength = 16;
constexpr std::uint8_t kCscdIdentification = 0xe4;
constexpr std::uint8_t kCscdLength = 32;
constexpr std::uint8_t kSegmentBlockToBlock = 0x02;
constexpr std::uint16_t kBlockToBlockLength = 0x18;  // DESCRIPTOR LENGTH: bytes after the fourth

constexpr std::uint8_t kSaCopyStatus = 0x00;
constexpr std::uint8_t kSaOperatingParameters = 0x03;
constexpr std::uint8_t kSaFailedSegmentDetails = 0x04;

constexpr std::uint8_t kSenseCopyAborted = 0x0a;
constexpr SenseCode kTooManyCscds{0x05, 0x26, 0x06};
constexpr SenseCode kUnsupportedCscdType{0x05, 0x26, 0x07};
constexpr SenseCode kTooManySegments{0x05, 0x26, 0x08};
constexpr SenseCode kUnsupportedSegmentType{0x05, 0x26, 0x09};
constexpr SenseCode kOperationInProgress{0x05, 0x00, 0x16};
constexpr SenseCode kCopyTargetNotReachable{kSenseCopyAborted, 0x0d, 0x02};
constexpr SenseCode kUnexpectedInexactSegment{kSenseCopyAborted, 0x26, 0x0a};
constexpr SenseCode kCopyAborted{kSenseCopyAborted, 0x00, 0x00};

std::atomic<unsigned> copies_in_flight{0};

std::uint8_t log2_block_size(const LunParams& params) {
  std::uint8_t n = 0;
  while ((1u << n) < params.block_size) ++n;
  return n;
}

// PARAMETER LIST LENGTH ERROR: the lengths in the header do not add up, or
// exceed what we take.
void fail_length(Task& task) {
  task.fail(sense::parameter_list_length_error);
  task.complete();
}

// ILLEGAL REQUEST about a field of the parameter list: the sense-key specific
// field pointer (C/D 0) names its byte.
void fail_param(Task& task, SenseCode code, std::uint64_t byte) {
  task.fail(code);
  if (byte <= 0xffff) {
    task.sense[15] = 0x80;  // SKSV
    put_be16(&task.sense[16], static_cast<std::uint16_t>(byte));
  }
  task.complete();
}

// Which copy target of a segment refused it (SPC-4 6.4.5): where the status
// and sense data it returned go in the COPY ABORTED sense data.
enum class Side { none, source, destination };

// What a copy target would have answered a READ or WRITE of the copy with:
// CHECK CONDITION with sense, or a status without sense data (RESERVATION
// CONFLICT).
struct TargetAnswer {
  Status status = Status::check_condition;
  SenseCode sense{};
};

TargetAnswer checked(SenseCode sense) {
  return {Status::check_condition, sense};
}

constexpr TargetAnswer kConflict{Status::reservation_conflict, {}};

// COPY ABORTED for segment `segment`. The third and fourth bytes of
// COMMAND-SPECIFIC INFORMATION hold the segment number; when a copy target
// refused (LBA out of range, write protected, a reservation, a medium
// error), its status byte (and, for CHECK CONDITION, its sense data in
// descriptor format, 8 bytes) follow at byte 18, and the first (source) or
// second (destination) byte of COMMAND-SPECIFIC INFORMATION points at them.
void set_copy_aborted(Task& task, SenseCode code, std::uint16_t segment, Side side = Side::none,
                      TargetAnswer answer = {}) {
  task.fail(code);
  put_be16(&task.sense[10], segment);
  if (side == Side::none) return;
  constexpr std::uint8_t kAt = 18;
  task.sense[side == Side::source ? 8 : 9] = kAt;
  task.sense[kAt] = static_cast<std::uint8_t>(answer.status);
  task.sense_len = kAt + 1;
  if (answer.status == Status::check_condition) {
    std::uint8_t* s = &task.sense[kAt + 1];
    s[0] = 0x72;  // current, descriptor format
    s[1] = answer.sense.key;
    s[2] = answer.sense.asc;
    s[3] = answer.sense.ascq;
    task.sense_len += 8;
  }
  task.sense[7] = task.sense_len - 8;  // ADDITIONAL SENSE LENGTH
}

struct Cscd {
  std::uint64_t designator = 0;  // NAA; 0 when the descriptor has none we know
  LogicalUnit* lu = nullptr;     // null: not a copy target we can reach
  // Another LU than the copy manager's: held until the copy ends.
  std::shared_ptr<LogicalUnit> keep;
};

struct Segment {
  std::uint16_t source, destination;  // CSCD indexes
  std::uint32_t blocks;
  bool dc;  // blocks counts destination blocks, not source blocks
  std::uint64_t source_lba, destination_lba;
};

struct ParsedList {
  std::uint8_t list_id = 0;
  bool hold_status = false;   // LIST ID USAGE 00b or 10b: COPY STATUS
  bool hold_details = false;  // 00b: FAILED SEGMENT DETAILS too
  std::uint16_t cscd_count = 0;
  Cscd cscds[kMaxCscdDescriptors];
  std::vector<Segment> segments;
};

// The NAA designator of an identification CSCD descriptor's designator
// (binary, associated with the LU, 8 bytes), or 0.
std::uint64_t naa_of(const std::uint8_t* d) {
  const std::uint8_t code_set = d[0] & 0x0f;
  const std::uint8_t association = (d[1] >> 4) & 0x03;
  const std::uint8_t type = d[1] & 0x0f;
  if (code_set != 0x01 || association != 0x00 || type != 0x03 || d[3] != 8) return 0;
  return get_be64(&d[4]);
}

// Finds the copy target c names: this LU, one named by an earlier CSCD
// descriptor of the list, or one the resolver lets the task's nexus use.
void resolve(LogicalUnit& lu, const Task& task, ParsedList& list, Cscd& c) {
  if (c.designator == 0) return;
  if (c.designator == naa_designator(lu.params())) {
    c.lu = &lu;
    return;
  }
  for (const Cscd* other = list.cscds; other != &c; ++other) {
    if (other->designator == c.designator) {
      c.lu = other->lu;
      c.keep = other->keep;
      return;
    }
  }
  if (!lu.copy_targets() || task.nexus == nullptr) return;
  c.keep = lu.copy_targets()(c.designator, *task.nexus);
  // Whatever the resolver says, only an LU that is what the descriptor names.
  if (c.keep && naa_designator(c.keep->params()) != c.designator) c.keep.reset();
  c.lu = c.keep.get();
}

// Checks the parameter list and fills out, resolving the copy targets its
// CSCD descriptors name. Returns false after failing and completing the task
// with the ILLEGAL REQUEST sense SPC-4 gives.
bool parse_list(LogicalUnit& lu, Task& task, const std::uint8_t* p, std::uint64_t len,
                ParsedList& out) {
  if (len < kHeaderLength) {
    fail_length(task);
    return false;
  }
  out.list_id = p[0];
  const std::uint8_t usage = (p[1] >> 3) & 0x03;
  if (usage == 0x01) {
    fail_param(task, sense::invalid_field_in_parameter_list, 1);
    return false;
  }
  out.hold_status = usage != 0x03;
  out.hold_details = usage == 0x00;
  const std::uint64_t cscd_len = get_be16(&p[2]);
  const std::uint64_t seg_len = get_be32(&p[8]);
  const std::uint64_t inline_len = get_be32(&p[12]);
  if (kHeaderLength + cscd_len + seg_len + inline_len > len) {
    fail_length(task);
    return false;
  }
  if (cscd_len + seg_len > kMaxDescriptorListLength) {
    fail_length(task);
    return false;
  }
  if (inline_len != 0) {  // MAXIMUM INLINE DATA LENGTH is 0
    fail_param(task, sense::invalid_field_in_parameter_list, 12);
    return false;
  }

  std::uint32_t block_lengths[kMaxCscdDescriptors] = {};  // DISK BLOCK LENGTH of each
  const std::uint8_t* cscd = p + kHeaderLength;
  for (std::uint64_t pos = 0; pos < cscd_len; pos += kCscdLength) {
    const std::uint64_t at = kHeaderLength + pos;
    if (out.cscd_count == kMaxCscdDescriptors) {
      fail_param(task, kTooManyCscds, at);
      return false;
    }
    const std::uint8_t* d = cscd + pos;
    if (d[0] != kCscdIdentification) {
      fail_param(task, kUnsupportedCscdType, at);
      return false;
    }
    if (pos + kCscdLength > cscd_len) {
      fail_length(task);
      return false;
    }
    // Byte 1: LU ID TYPE and NUL are obsolete in SPC-4 and ignored; the
    // device type must be a block device, whose parameters are bytes 28..31.
    if ((d[1] & 0x1f) != 0x00) {
      fail_param(task, sense::invalid_field_in_parameter_list, at + 1);
      return false;
    }
    if (d[7] > 20) {  // the designator must fit its 20 bytes
      fail_param(task, sense::invalid_field_in_parameter_list, at + 7);
      return false;
    }
    block_lengths[out.cscd_count] = get_be24(&d[29]);
    Cscd& c = out.cscds[out.cscd_count++];
    c.designator = naa_of(d + 4);
    resolve(lu, task, out, c);
    // DISK BLOCK LENGTH of a copy target we know must be its block length.
    if (c.lu != nullptr && block_lengths[out.cscd_count - 1] != c.lu->params().block_size) {
      fail_param(task, sense::invalid_field_in_parameter_list, at + 29);
      return false;
    }
  }

  const std::uint64_t seg_base = kHeaderLength + cscd_len;
  const std::uint8_t* seg = p + seg_base;
  for (std::uint64_t pos = 0; pos < seg_len;) {
    const std::uint64_t at = seg_base + pos;
    if (out.segments.size() == kMaxSegmentDescriptors) {
      fail_param(task, kTooManySegments, at);
      return false;
    }
    const std::uint8_t* d = seg + pos;
    if (d[0] != kSegmentBlockToBlock) {
      fail_param(task, kUnsupportedSegmentType, at);
      return false;
    }
    if (pos + 4 > seg_len || pos + 4 + get_be16(&d[2]) > seg_len) {
      fail_length(task);
      return false;
    }
    if (get_be16(&d[2]) != kBlockToBlockLength) {
      fail_param(task, sense::invalid_field_in_parameter_list, at + 2);
      return false;
    }
    Segment s;
    s.dc = d[1] & 0x02;
    s.source = get_be16(&d[4]);
    s.destination = get_be16(&d[6]);
    s.blocks = get_be16(&d[10]);
    s.source_lba = get_be64(&d[12]);
    s.destination_lba = get_be64(&d[20]);
    // MAXIMUM SEGMENT LENGTH, in the blocks of the side the count is in.
    const std::uint16_t counted = s.dc ? s.destination : s.source;
    const std::uint64_t block_length = counted < out.cscd_count ? block_lengths[counted] : 0;
    if (std::uint64_t{s.blocks} * block_length > kMaxSegmentBytes) {
      fail_param(task, sense::invalid_field_in_parameter_list, at + 10);
      return false;
    }
    out.segments.push_back(s);
    pos += 4 + kBlockToBlockLength;
  }
  return true;
}

bool in_range(const LogicalUnit& lu, std::uint64_t lba, std::uint64_t blocks) {
  return lba <= lu.block_count() && blocks <= lu.block_count() - lba;
}

// A segment as the copy moves it: bytes from one copy target to another.
struct Extent {
  LogicalUnit* source = nullptr;  // null: a copy target is not reachable
  LogicalUnit* destination = nullptr;
  std::uint64_t bytes = 0;
  std::uint64_t source_offset = 0, destination_offset = 0;  // bytes
  bool exact = true;                                        // whole blocks on both sides
  std::uint64_t source_blocks() const { return bytes / source->params().block_size; }
  std::uint64_t destination_blocks() const { return bytes / destination->params().block_size; }
};

Extent extent_of(const ParsedList& list, const Segment& s) {
  Extent e;
  if (s.source >= list.cscd_count || s.destination >= list.cscd_count) return e;
  e.source = list.cscds[s.source].lu;
  e.destination = list.cscds[s.destination].lu;
  if (e.source == nullptr || e.destination == nullptr) {
    e.source = e.destination = nullptr;
    return e;
  }
  const std::uint64_t sbs = e.source->params().block_size;
  const std::uint64_t dbs = e.destination->params().block_size;
  e.bytes = std::uint64_t{s.blocks} * (s.dc ? dbs : sbs);
  // Block lengths are powers of two: a multiple of the larger is one of both.
  e.exact = e.bytes % std::max(sbs, dbs) == 0;
  // An LBA past the end is refused before these are used; this cannot wrap
  // for an LBA within a LU's 64-bit byte size.
  e.source_offset = s.source_lba * sbs;
  e.destination_offset = s.destination_lba * dbs;
  return e;
}

// What the copy targets would refuse of segment i, as the nexus of the
// command would meet it with a READ of the source and a WRITE of the
// destination. Returns true with the task's sense set to COPY ABORTED.
bool segment_refused(const ParsedList& list, std::size_t i, const Nexus* nexus, Task& task) {
  const Segment& s = list.segments[i];
  const auto n = static_cast<std::uint16_t>(i);
  const Extent e = extent_of(list, s);
  if (e.source == nullptr) {
    set_copy_aborted(task, kCopyTargetNotReachable, n);
  } else if (!e.exact) {
    set_copy_aborted(task, kUnexpectedInexactSegment, n);
  } else if (e.bytes != 0 && e.source->reservation_blocks(nexus, PrAccess::read)) {
    set_copy_aborted(task, kCopyAborted, n, Side::source, kConflict);
  } else if (!in_range(*e.source, s.source_lba, e.source_blocks())) {
    set_copy_aborted(task, kCopyAborted, n, Side::source, checked(sense::lba_out_of_range));
  } else if (e.bytes != 0 && e.destination->reservation_blocks(nexus, PrAccess::write)) {
    set_copy_aborted(task, kCopyAborted, n, Side::destination, kConflict);
  } else if (!in_range(*e.destination, s.destination_lba, e.destination_blocks())) {
    set_copy_aborted(task, kCopyAborted, n, Side::destination, checked(sense::lba_out_of_range));
  } else if (e.bytes != 0 && e.destination->write_protected()) {
    set_copy_aborted(task, kCopyAborted, n, Side::destination,
                     checked(e.destination->write_protected_sense()));
  } else {
    return false;
  }
  return true;
}

HeldCopyStatus* find_held(const Task& task, const void* lu, std::uint8_t list_id) {
  if (task.nexus == nullptr) return nullptr;
  for (auto& h : task.nexus->copy_statuses) {
    if (h.lu == lu && h.list_id == list_id) return &h;
  }
  return nullptr;
}

// A fresh in-progress status for (lu, list_id) on the task's nexus, or
// nullptr when there is no room (every held one still in progress).
HeldCopyStatus* hold_new(const Task& task, const void* lu, std::uint8_t list_id,
                         bool hold_details) {
  auto& held = task.nexus->copy_statuses;
  HeldCopyStatus* h = find_held(task, lu, list_id);
  if (h == nullptr) {
    if (held.size() >= kMaxHeldStatuses) {
      auto done =
          std::find_if(held.begin(), held.end(), [](const auto& s) { return !s.in_progress; });
      if (done == held.end()) return nullptr;
      held.erase(done);
    }
    held.push_back({});
    h = &held.back();
  }
  *h = HeldCopyStatus{};
  h->lu = lu;
  h->list_id = list_id;
  h->in_progress = true;
  h->hold_details = hold_details;
  return h;
}

// The outcome of the copy task ran, into its held status.
void record_outcome(const Task& task, HeldCopyStatus& h, std::uint16_t segments,
                    std::uint64_t bytes) {
  h.in_progress = false;
  h.failed = task.status != Status::good;
  h.segments_processed = segments;
  h.bytes_copied = static_cast<std::uint32_t>(bytes);
  if (h.failed && h.hold_details) {
    h.command_status = task.status;
    h.sense_len = task.sense_len;
    h.sense = task.sense;
  } else {
    h.hold_details = false;
  }
}

}  // namespace

// A copy in flight; the task's CopyState points at it until it completes. Outside the
// anonymous namespace: scsi::Task names it (task.hpp).
struct CopyJob {
  LogicalUnit* lu = nullptr;  // the copy manager
  ParsedList list;            // its copy targets, held until the copy ends
  bool hold_status = false;
  std::uint64_t chunk_bytes = 0;  // what the bounce buffer holds
  std::uint8_t* bounce = nullptr;

  std::size_t segment = 0;         // being copied
  Extent extent;                   // of that segment
  std::uint64_t done = 0;          // its bytes copied so far
  bool backward = false;           // its ranges overlap with destination above source
  LogicalUnit* claimed = nullptr;  // holds the range lock of its destination range
  std::uint64_t in_flight = 0;     // bytes of the read or write in flight
  bool writing = false;
  std::uint64_t bytes_copied = 0;

  bool issuing = false;      // inside a backend call
  bool inline_done = false;  // that call completed before returning
  int result = 0;
};

namespace {

// The source and destination byte offsets of the chunk of in_flight bytes:
// from the start, or from the end when the destination overlaps the source
// above it, so that no block is overwritten before it has been read.
std::pair<std::uint64_t, std::uint64_t> chunk_offsets(const CopyJob& job) {
  const Extent& e = job.extent;
  const std::uint64_t offset = job.backward ? e.bytes - job.done - job.in_flight : job.done;
  return {e.source_offset + offset, e.destination_offset + offset};
}

void release_claim(CopyJob& job) {
  if (job.claimed == nullptr) return;
  job.claimed->caw_unlock(job.list.segments[job.segment].destination_lba);
  job.claimed = nullptr;
}

void finish(Task& task, CopyJob* job) {
  release_claim(*job);
  if (job->hold_status) {
    if (HeldCopyStatus* h = find_held(task, job->lu, job->list.list_id)) {
      record_outcome(task, *h, static_cast<std::uint16_t>(job->segment), job->bytes_copied);
    }
  }
  std::free(job->bounce);
  delete job;  // and with it the hold on the other copy targets
  copies_in_flight.fetch_sub(1, std::memory_order_relaxed);
  task.command_state = std::monostate{};
  task.complete();
}

// Takes in the outcome of the read or write that just completed. Returns
// false when the copy has ended (the task is completed).
bool take_result(Task& task, CopyJob& job) {
  const auto segment = static_cast<std::uint16_t>(job.segment);
  if (job.result < 0 || static_cast<std::uint64_t>(job.result) != job.in_flight) {
    if (job.writing) {
      set_copy_aborted(task, kCopyAborted, segment, Side::destination, checked(sense::write_error));
    } else {
      set_copy_aborted(task, kCopyAborted, segment, Side::source,
                       checked(sense::unrecovered_read_error));
    }
    finish(task, &job);
    return false;
  }
  if (!job.writing) {
    job.writing = true;
    return true;
  }
  job.writing = false;
  job.done += job.in_flight;
  job.bytes_copied += job.in_flight;
  if (job.done == job.extent.bytes) {
    release_claim(job);
    ++job.segment;
    job.done = 0;
  }
  return true;
}

// Starts segment job.segment: checks it again against the copy targets as
// they are now, and claims its destination range. Returns false after
// finishing the copy.
bool begin_segment(Task& task, CopyJob& job) {
  if (segment_refused(job.list, job.segment, task.nexus, task)) {
    finish(task, &job);
    return false;
  }
  const Segment& s = job.list.segments[job.segment];
  job.extent = extent_of(job.list, s);
  Extent& e = job.extent;
  if (!e.destination->caw_lock(s.destination_lba,
                               static_cast<std::uint32_t>(e.destination_blocks()))) {
    task.status = Status::busy;
    finish(task, &job);
    return false;
  }
  job.claimed = e.destination;
  job.backward = e.source == e.destination && e.destination_offset > e.source_offset &&
                 e.destination_offset < e.source_offset + e.bytes;
  return true;
}

// Issues the next read or write, and keeps going for as long as the backend
// completes them before returning (the memory backend always does), so that
// a long copy does not recurse once per chunk.
void run(Task& task, CopyJob& job) {
  const auto& segments = job.list.segments;
  for (;;) {
    if (!job.writing) {
      while (job.segment < segments.size() && job.done == 0 &&
             extent_of(job.list, segments[job.segment]).bytes == 0) {
        ++job.segment;
      }
      if (job.segment == segments.size()) {
        task.status = Status::good;
        return finish(task, &job);
      }
      if (job.done == 0 && !begin_segment(task, job)) return;
      job.in_flight = std::min(job.extent.bytes - job.done, job.chunk_bytes);
    }
    const auto [src, dst] = chunk_offsets(job);
    job.issuing = true;
    job.inline_done = false;
    if (job.writing) {
      job.extent.destination->backend().write(job.bounce, job.in_flight, dst, false, &task);
    } else {
      job.extent.source->backend().read(job.bounce, job.in_flight, src, &task);
    }
    job.issuing = false;
    if (!job.inline_done) return;  // io_done carries on
    if (!take_result(task, job)) return;
  }
}

void io_done(Task& task, int result) {
  auto& job = *std::get<CopyState>(task.command_state).job;
  job.result = result;
  if (job.issuing) {
    job.inline_done = true;
    return;
  }
  if (take_result(task, job)) run(task, job);
}

}  // namespace

void extended_copy(LogicalUnit& lu, Task& task) {
  const auto& c = task.cdb;
  const std::uint32_t param_len = get_be32(&c[10]);
  task.transfer_length = param_len;
  if ((c[1] & 0x1f) != 0x00) {  // only LID1; EXTENDED COPY(LID4) is 01h
    task.fail_cdb_field(1, 4);
    return task.complete();
  }
  if (param_len == 0) {  // nothing to copy, and not an error
    task.status = Status::good;
    return task.complete();
  }
  // What arrived, whatever the CDB claims.
  const std::uint64_t room = task.buffer != nullptr ? task.buffer_len : 0;
  const std::uint64_t len = std::min<std::uint64_t>(param_len, room);

  // Owned here until the copy starts; then finish() deletes it.
  std::unique_ptr<CopyJob> owned(new (std::nothrow) CopyJob);
  if (!owned) {
    task.fail(sense::internal_target_failure);
    return task.complete();
  }
  ParsedList& list = owned->list;
  if (!parse_list(lu, task, task.buffer, len, list)) return;

  HeldCopyStatus* held = nullptr;
  const bool hold = list.hold_status && task.nexus != nullptr;
  if (hold) {
    if (const HeldCopyStatus* h = find_held(task, &lu, list.list_id); h && h->in_progress) {
      task.fail(kOperationInProgress);
      return task.complete();
    }
  }
  if (copies_in_flight.fetch_add(1, std::memory_order_relaxed) >= kMaxConcurrentCopies) {
    copies_in_flight.fetch_sub(1, std::memory_order_relaxed);
    task.status = Status::busy;
    return task.complete();
  }
  if (hold && (held = hold_new(task, &lu, list.list_id, list.hold_details)) == nullptr) {
    copies_in_flight.fetch_sub(1, std::memory_order_relaxed);
    task.status = Status::busy;
    return task.complete();
  }
  // From here on the copy has a status to hold, failed or not. What the copy
  // targets would refuse is found before any data moves: no segment was
  // processed then.
  for (std::size_t i = 0; i < list.segments.size(); ++i) {
    if (!segment_refused(list, i, task.nexus, task)) continue;
    copies_in_flight.fetch_sub(1, std::memory_order_relaxed);
    if (held != nullptr) record_outcome(task, *held, 0, 0);
    return task.complete();
  }

  std::uint64_t largest = 0;
  for (const Segment& s : list.segments) {
    largest = std::max(largest, extent_of(list, s).bytes);
  }
  const std::uint64_t chunk_bytes = std::min(largest, kChunkBytes);
  std::uint8_t* bounce = nullptr;
  if (chunk_bytes != 0) {
    const std::uint64_t bytes = (chunk_bytes + kBounceAlign - 1) / kBounceAlign * kBounceAlign;
    bounce = static_cast<std::uint8_t*>(std::aligned_alloc(kBounceAlign, bytes));
    if (bounce == nullptr) {
      copies_in_flight.fetch_sub(1, std::memory_order_relaxed);
      task.fail(sense::internal_target_failure);
      if (held != nullptr) record_outcome(task, *held, 0, 0);
      return task.complete();
    }
  }
  CopyJob* job = owned.release();
  job->lu = &lu;
  job->hold_status = hold;
  job->chunk_bytes = chunk_bytes;
  job->bounce = bounce;
  task.command_state = CopyState{job};
  task.io_continuation = &io_done;
  run(task, *job);
}

std::size_t third_party_copy_page(const LunParams& params, std::uint8_t* out) {
  std::size_t pos = 4;
  // Supported Commands: EXTENDED COPY(LID1); RECEIVE COPY RESULTS, COPY
  // STATUS, OPERATING PARAMETERS and FAILED SEGMENT DETAILS.
  const std::uint8_t commands[] = {
      0x83, 1, 0x00, 0x84, 3, kSaCopyStatus, kSaOperatingParameters, kSaFailedSegmentDetails};
  put_be16(&out[pos], 0x0001);
  put_be16(&out[pos + 2], 12);  // 1 + 8 bytes, padded to a multiple of 4
  out[pos + 4] = sizeof commands;
  std::memcpy(&out[pos + 5], commands, sizeof commands);
  pos += 4 + 12;
  // Parameter Data: the limits of the parameter list.
  put_be16(&out[pos], 0x0004);
  put_be16(&out[pos + 2], 0x1c);
  put_be16(&out[pos + 8], kMaxCscdDescriptors);
  put_be16(&out[pos + 10], kMaxSegmentDescriptors);
  put_be32(&out[pos + 12], kMaxDescriptorListLength);
  put_be32(&out[pos + 16], 0);  // MAXIMUM INLINE DATA LENGTH
  pos += 4 + 0x1c;
  // Supported Descriptors: block-to-block segments, identification CSCDs.
  put_be16(&out[pos], 0x0008);
  put_be16(&out[pos + 2], 4);
  out[pos + 4] = 2;
  out[pos + 5] = kSegmentBlockToBlock;
  out[pos + 6] = kCscdIdentification;
  pos += 4 + 4;
  // General Copy Operations.
  put_be16(&out[pos], 0x8001);
  put_be16(&out[pos + 2], 0x1c);
  put_be32(&out[pos + 4], kMaxConcurrentCopies);  // TOTAL CONCURRENT COPIES
  put_be32(&out[pos + 8], kMaxConcurrentCopies);  // MAXIMUM IDENTIFIED CONCURRENT COPIES
  put_be32(&out[pos + 12], kMaxSegmentBytes);
  out[pos + 16] = log2_block_size(params);  // DATA SEGMENT GRANULARITY
  pos += 4 + 0x1c;
  put_be16(&out[2], static_cast<std::uint16_t>(pos - 4));
  return pos;
}

void receive_copy_results(LogicalUnit& lu, Task& task) {
  const auto& c = task.cdb;
  const std::uint8_t sa = c[1] & 0x1f;
  const std::uint32_t alloc = get_be32(&c[10]);
  task.transfer_length = alloc;

  if (sa == kSaOperatingParameters) {
    std::uint8_t out[46] = {};
    put_be32(&out[0], sizeof out - 4);  // AVAILABLE DATA
    out[4] = 0x01;                      // SNLID: LIST ID USAGE 11b is supported
    put_be16(&out[8], kMaxCscdDescriptors);
    put_be16(&out[10], kMaxSegmentDescriptors);
    put_be32(&out[12], kMaxDescriptorListLength);
    put_be32(&out[16], kMaxSegmentBytes);
    // MAXIMUM INLINE DATA LENGTH, HELD DATA LIMIT, MAXIMUM STREAM DEVICE
    // TRANSFER SIZE: 0.
    put_be16(&out[34], kMaxConcurrentCopies);  // TOTAL CONCURRENT COPIES
    out[36] = kMaxConcurrentCopies;            // MAXIMUM CONCURRENT COPIES
    out[37] = log2_block_size(lu.params());    // DATA SEGMENT GRANULARITY: whole blocks
    out[43] = 2;                               // IMPLEMENTED DESCRIPTOR LIST LENGTH
    out[44] = kSegmentBlockToBlock;
    out[45] = kCscdIdentification;
    return finish_data_in(task, out, sizeof out, alloc);
  }
  if (sa == kSaCopyStatus) {
    const HeldCopyStatus* h = find_held(task, &lu, c[2]);
    if (h == nullptr) {  // no copy with this LIST IDENTIFIER held here
      task.fail_cdb_field(2);
      return task.complete();
    }
    std::uint8_t out[12] = {};
    put_be32(&out[0], sizeof out - 4);  // AVAILABLE DATA
    // COPY MANAGER STATUS: 00h done, 01h done with errors, 10h in progress
    // (foreground: the EXTENDED COPY command has not completed yet).
    out[4] = h->in_progress ? 0x10 : h->failed ? 0x01 : 0x00;
    put_be16(&out[5], h->segments_processed);
    out[7] = 0x00;  // TRANSFER COUNT UNITS: bytes
    put_be32(&out[8], h->bytes_copied);
    return finish_data_in(task, out, sizeof out, alloc);
  }
  if (sa == kSaFailedSegmentDetails) {
    HeldCopyStatus* h = find_held(task, &lu, c[2]);
    if (h == nullptr) {
      task.fail_cdb_field(2);
      return task.complete();
    }
    std::uint8_t out[60 + sizeof h->sense] = {};
    if (h->in_progress || !h->hold_details) {
      // Nothing failed (yet), or the details were read: AVAILABLE DATA 0.
      return finish_data_in(task, out, 4, alloc);
    }
    const std::size_t n = 60 + h->sense_len;
    put_be32(&out[0], static_cast<std::uint32_t>(n - 4));  // AVAILABLE DATA
    out[56] = static_cast<std::uint8_t>(h->command_status);
    put_be16(&out[58], h->sense_len);
    std::memcpy(&out[60], h->sense.data(), h->sense_len);
    // Discarded once read in full, or when asked for none of it.
    if (alloc == 0 || alloc >= n) h->hold_details = false;
    return finish_data_in(task, out, n, alloc);
  }
  task.fail_cdb_field(1, 4);  // SERVICE ACTION: not supported
  task.complete();
}

}  // namespace ringtgt::scsi::detail
