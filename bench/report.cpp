// The figures at the end of a run: text, or JSON with --json.
#include <cmath>

#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "bench.hpp"

namespace ringtgt::bench {

nlohmann::json op_json(const OpStats& s, double elapsed) {
  auto us = [](double ns) { return std::round(ns / 100.0) / 10.0; };
  return {
      {"ios", s.ios},
      {"bytes", s.bytes},
      {"iops", elapsed > 0 ? std::round(static_cast<double>(s.ios) / elapsed * 10) / 10 : 0.0},
      {"mib_s", elapsed > 0
                    ? std::round(static_cast<double>(s.bytes) / 1048576.0 / elapsed * 100) / 100
                    : 0.0},
      {"errors", s.errors},
      {"lat_us",
       {{"min", us(static_cast<double>(s.lat.min()))},
        {"mean", us(s.lat.mean())},
        {"p50", us(s.lat.percentile(0.50))},
        {"p99", us(s.lat.percentile(0.99))},
        {"p99_9", us(s.lat.percentile(0.999))},
        {"max", us(static_cast<double>(s.lat.max()))}}},
  };
}

void Bench::report(double elapsed) {
  OpStats tot;
  tot.ios = rd_.ios + wr_.ios;
  tot.bytes = rd_.bytes + wr_.bytes;
  tot.errors = rd_.errors + wr_.errors;
  tot.lat.merge(rd_.lat);
  tot.lat.merge(wr_.lat);
  std::uint64_t errors = tot.errors + connect_errors_;

  FILE* out = o_.json ? stderr : stdout;
  std::fprintf(out,
               "ringtgt-bench: %s bs=%" PRIu64 " qd=%d sessions=%d%s, LUN %u x %" PRIu64
               " blocks, range %" PRIu64 "+%" PRIu64 " blocks, %.2f s\n",
               o_.verify_only ? "verify-only" : mode_name(o_.mode), o_.bs, o_.qd, o_.sessions,
               o_.verify ? " verify" : "", lbs_, lun_blocks_, first_lba_, nblocks_, elapsed);
  std::fprintf(out, "%-6s %10s %11s %9s %10s %10s %10s %10s %7s\n", "op", "ios", "IOPS", "MiB/s",
               "p50 us", "p99 us", "p99.9 us", "max us", "errors");
  auto row = [&](const char* name, const OpStats& s) {
    double iops = elapsed > 0 ? static_cast<double>(s.ios) / elapsed : 0;
    double mib = elapsed > 0 ? static_cast<double>(s.bytes) / 1048576.0 / elapsed : 0;
    std::fprintf(out, "%-6s %10" PRIu64 " %11.1f %9.2f %10.1f %10.1f %10.1f %10.1f %7" PRIu64 "\n",
                 name, s.ios, iops, mib, s.lat.percentile(0.5) / 1000,
                 s.lat.percentile(0.99) / 1000, s.lat.percentile(0.999) / 1000,
                 static_cast<double>(s.lat.max()) / 1000, s.errors);
  };
  row("read", rd_);
  row("write", wr_);
  row("total", tot);
  std::fprintf(out,
               "errors: %" PRIu64 " (scsi %" PRIu64 ", transport %" PRIu64 ", timeout %" PRIu64
               ", connect %" PRIu64 ")\n",
               errors, scsi_errors_, transport_errors_, timeouts_, connect_errors_);
  if (o_.verify)
    std::fprintf(out,
                 "verify: %" PRIu64 " blocks checked, %" PRIu64 " failures, %" PRIu64
                 " unacknowledged writes\n",
                 blocks_checked_, verify_failures_, uncertain_writes_);
  if (o_.reconnect || caw_ || unmaps_ || overlaps_) {
    std::fprintf(out,
                 "ops: compare-and-write %" PRIu64 ", unmap %" PRIu64 ", overlapping pairs %" PRIu64
                 "\n",
                 caw_, unmaps_, overlaps_);
    std::fprintf(out, "chaos: seed %" PRIu64, o_.seed);
    for (int i = 0; i < static_cast<int>(Chaos::kCount); i++)
      std::fprintf(out, ", %s %" PRIu64 "/%" PRIu64, kChaosNames[i], chaos_done_[i],
                   chaos_sent_[i]);
    std::fprintf(out,
                 "; relogins %" PRIu64 " (failed %" PRIu64 "), held ranges released %" PRIu64
                 ", task management timeouts %" PRIu64 "\n",
                 relogins_, relogin_failures_, held_releases_, tmf_timeouts_);
  }

  if (!o_.json) return;
  nlohmann::json j = {
      {"tool", "ringtgt-bench"},
      {"config",
       {{"url", o_.url},
        {"rw", o_.verify_only ? "verify-only" : mode_name(o_.mode)},
        {"rwmixread", o_.rwmixread},
        {"bs", o_.bs},
        {"qd", o_.qd},
        {"sessions", o_.sessions},
        {"runtime_s", o_.runtime_s},
        {"ios_limit", o_.ios},
        {"offset", first_lba_ * lbs_},
        {"range", nblocks_ * lbs_},
        {"verify", o_.verify},
        {"seed", o_.seed},
        {"lun_block_size", lbs_},
        {"lun_blocks", lun_blocks_}}},
      {"elapsed_s", std::round(elapsed * 1000) / 1000},
      {"read", op_json(rd_, elapsed)},
      {"write", op_json(wr_, elapsed)},
      {"total", op_json(tot, elapsed)},
      {"iops", op_json(tot, elapsed)["iops"]},
      {"mib_s", op_json(tot, elapsed)["mib_s"]},
      {"errors", errors},
      {"error_detail",
       {{"scsi", scsi_errors_},
        {"transport", transport_errors_},
        {"timeout", timeouts_},
        {"connect", connect_errors_}}},
      {"verify",
       {{"enabled", o_.verify},
        {"blocks_checked", blocks_checked_},
        {"failures", verify_failures_},
        {"unacknowledged_writes", uncertain_writes_}}},
      {"verify_failures", verify_failures_},
      {"relogins", relogins_},
      {"relogin_failures", relogin_failures_},
      {"tmf_timeouts", tmf_timeouts_},
  };
  for (int i = 0; i < static_cast<int>(Chaos::kCount); i++)
    j["chaos"][kChaosNames[i]] = {{"sent", chaos_sent_[i]}, {"done", chaos_done_[i]}};
  std::printf("%s\n", j.dump(2).c_str());
}

}  // namespace ringtgt::bench
