// The verify table: what each block must hold, given what the target
// acknowledged; checked on every read, saved and loaded across runs.
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "bench.hpp"

namespace ringtgt::bench {

void Bench::verify_failure(std::uint64_t lba, const char* fmt, ...) {
  verify_failures_++;
  if (failure_lines_ > kMaxDetailLines) return;
  if (failure_lines_++ == kMaxDetailLines) {
    std::fprintf(stderr, "ringtgt-bench: (further error details suppressed)\n");
    return;
  }
  va_list ap;
  va_start(ap, fmt);
  std::fprintf(stderr, "ringtgt-bench: VERIFY FAILED at LBA %" PRIu64 ": ", lba);
  std::vfprintf(stderr, fmt, ap);
  std::fprintf(stderr, "\n");
  va_end(ap);
}

void Bench::verify_read(const Io& io, const unsigned char* data) {
  for (std::uint32_t i = 0; i < io.nblocks; i++) {
    std::uint64_t lba = io.lba + i;
    const BlockState& st = table_[lba - first_lba_];
    BlockInfo b = inspect_block(data + static_cast<std::size_t>(i) * lbs_, lbs_, lba);
    blocks_checked_++;
    const std::uint32_t acked = st.acked & kGenMask, uncertain = st.uncertain & kGenMask;
    const bool acked_unmap = st.acked & kUnmapFlag;
    const bool known = st.acked != 0 || st.uncertain != 0;
    switch (b.kind) {
      case BlockKind::kZero:
        if (acked != 0 && !acked_unmap && !(st.uncertain & kUnmapFlag))
          verify_failure(lba, "reads as zeros, but generation %u was acknowledged", acked);
        break;
      case BlockKind::kValid:
        if (!known) break;  // written before this run's table: any well-formed block will do
        if (b.gen == acked && !acked_unmap) break;
        if (b.gen > acked && b.gen <= uncertain) break;  // an unacknowledged write landed
        if (b.gen < acked)
          verify_failure(lba,
                         "stale generation %" PRIu64 " (session %u): acknowledged %s %u is lost",
                         b.gen, b.session, acked_unmap ? "UNMAP" : "write", acked);
        else
          verify_failure(lba, "unexpected generation %" PRIu64 " (acknowledged %u, uncertain %u)",
                         b.gen, acked, uncertain);
        break;
      default:
        verify_failure(lba, "%s (block claims LBA %" PRIu64 " generation %" PRIu64 ")",
                       block_kind_name(b.kind), b.lba, b.gen);
        break;
    }
  }
}

void Bench::set_block(std::uint64_t lba, const std::uint32_t* gens, const int* results, int n) {
  BlockState& b = table_[lba - first_lba_];
  std::uint32_t lo = gens[0], hi = gens[0], flags = 0;
  bool any_acked = false;
  for (int i = 0; i < n; i++) {
    if ((gens[i] & kGenMask) < (lo & kGenMask)) lo = gens[i];
    if ((gens[i] & kGenMask) > (hi & kGenMask)) hi = gens[i];
    flags |= gens[i] & kUnmapFlag;
    any_acked |= results[i] == 1;
  }
  if (any_acked) {
    b.acked = lo;
    b.uncertain = (hi & kGenMask) > (lo & kGenMask) ? hi : 0;
    return;
  }
  uncertain_writes_++;
  std::uint32_t top = std::max(b.uncertain & kGenMask, hi & kGenMask);
  b.uncertain = top | flags | (b.uncertain & kUnmapFlag);
}

int write_result(const Io& io, bool ok, int status) {
  if (ok) return 1;
  return outcome_unknown(io, status) ? -1 : 0;
}

// A single write-like command answered: record it, then free or hold its blocks.
void Bench::settle_write(Io& io, bool ok) {
  if (!o_.verify) return;
  int result = write_result(io, ok, io.status);
  std::uint32_t gen = io.gen | (io.kind == Kind::kUnmap ? kUnmapFlag : 0);
  for (std::uint32_t i = 0; i < io.nblocks; i++) set_block(io.lba + i, &gen, &result, 1);
  if (result == -1)
    io.session->held.push_back({io.lba, io.nblocks, io.issue_seq});
  else
    unlock(io.lba, io.nblocks);
}

// Both WRITEs of an overlapping pair answered.
void Bench::settle_pair(Io& a, Io& b) {
  const int ra = write_result(a, a.status == SCSI_STATUS_GOOD && a.task, a.status);
  const int rb = write_result(b, b.status == SCSI_STATUS_GOOD && b.task, b.status);
  const std::uint64_t end = b.lba + b.nblocks;
  for (std::uint64_t lba = a.lba; lba < end; lba++) {
    std::uint32_t gens[2];
    int results[2], n = 0;
    if (lba < a.lba + a.nblocks) gens[n] = a.gen, results[n++] = ra;
    if (lba >= b.lba) gens[n] = b.gen, results[n++] = rb;
    set_block(lba, gens, results, n);
  }
  auto span = static_cast<std::uint32_t>(end - a.lba);
  if (ra == -1 || rb == -1)
    a.session->held.push_back({a.lba, span, std::max(a.issue_seq, b.issue_seq)});
  else
    unlock(a.lba, span);
}

bool Bench::load_state() {
  VerifyState st;
  std::string why = read_verify_state(o_.load_state, st);
  if (why.empty() &&
      (st.block_size != lbs_ || st.first_lba != first_lba_ || st.table.size() != nblocks_)) {
    char line[256];
    std::snprintf(line, sizeof line,
                  "%s was saved for block size %u, LBAs %" PRIu64
                  "+%zu; this run uses block size "
                  "%u, LBAs %" PRIu64 "+%" PRIu64 " (use the same --offset/--range)",
                  o_.load_state.c_str(), st.block_size, st.first_lba, st.table.size(), lbs_,
                  first_lba_, nblocks_);
    why = line;
  }
  if (!why.empty()) {
    std::fprintf(stderr, "ringtgt-bench: --load-state %s\n", why.c_str());
    return false;
  }
  table_ = std::move(st.table);
  next_gen_ = std::max<std::uint32_t>(st.next_gen, 1);
  return true;
}

bool Bench::save_state() {
  const std::string why =
      write_verify_state(o_.save_state, VerifyState{lbs_, first_lba_, next_gen_, table_});
  if (!why.empty()) std::fprintf(stderr, "ringtgt-bench: --save-state %s\n", why.c_str());
  return why.empty();
}

// Logs every idle session out (bounded), then frees every context.

}  // namespace ringtgt::bench
