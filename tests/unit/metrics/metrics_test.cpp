// metrics/: bucket logic, per-worker aggregation, the families a scrape returns.
#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include <cmath>
#include <thread>

#include "ringtgt/metrics/collector.hpp"
#include "ringtgt/metrics/counters.hpp"
#include "ringtgt/metrics/store_counters.hpp"
#include "ringtgt/metrics/watchdog.hpp"

namespace ringtgt::metrics {
namespace {

TEST(LatencyBucket, BoundsAreLogSpacedFrom10usTo1s) {
  EXPECT_EQ(kLatencyBoundsNs.front(), 10'000u);
  EXPECT_EQ(kLatencyBoundsNs.back(), 1'000'000'000u);
  for (std::size_t i = 1; i < kLatencyBoundsNs.size(); ++i) {
    double ratio = static_cast<double>(kLatencyBoundsNs[i]) / kLatencyBoundsNs[i - 1];
    EXPECT_GE(ratio, 2.0) << i;
    EXPECT_LE(ratio, 2.5) << i;
  }
}

TEST(LatencyBucket, LeSemantics) {
  EXPECT_EQ(latency_bucket(0), 0u);
  EXPECT_EQ(latency_bucket(10'000), 0u);  // le="1e-05" includes 10 us exactly
  EXPECT_EQ(latency_bucket(10'001), 1u);
  EXPECT_EQ(latency_bucket(20'000), 1u);
  EXPECT_EQ(latency_bucket(150'000), 4u);  // (100 us, 200 us]
  EXPECT_EQ(latency_bucket(1'000'000'000), 15u);
  EXPECT_EQ(latency_bucket(1'000'000'001), 16u);  // +Inf
  EXPECT_EQ(latency_bucket(~0ull), 16u);
  // Every bound lands in its own bucket, one past it in the next.
  for (std::size_t i = 0; i < kLatencyBoundsNs.size(); ++i) {
    EXPECT_EQ(latency_bucket(kLatencyBoundsNs[i]), i);
    EXPECT_EQ(latency_bucket(kLatencyBoundsNs[i] + 1), i + 1);
  }
}

TEST(OpKind, ByOpcode) {
  EXPECT_EQ(op_kind(0x28), OpKind::read);
  EXPECT_EQ(op_kind(0x88), OpKind::read);
  EXPECT_EQ(op_kind(0x2a), OpKind::write);
  EXPECT_EQ(op_kind(0x8a), OpKind::write);
  EXPECT_EQ(op_kind(0x35), OpKind::flush);
  EXPECT_EQ(op_kind(0x91), OpKind::flush);
  EXPECT_EQ(op_kind(0x42), OpKind::unmap);
  EXPECT_EQ(op_kind(0x12), OpKind::other);  // INQUIRY
  EXPECT_EQ(op_kind(0x00), OpKind::other);  // TEST UNIT READY
}

TEST(ErrorReason, StatusAndSenseKey) {
  EXPECT_EQ(error_reason(0x00, 0), kErrorReasons);  // GOOD: no error
  EXPECT_EQ(error_reason(0x02, 0x05), 5u);
  EXPECT_STREQ(error_reason_name(error_reason(0x02, 0x05)), "illegal_request");
  EXPECT_STREQ(error_reason_name(error_reason(0x02, 0x03)), "medium_error");
  EXPECT_STREQ(error_reason_name(error_reason(0x02, 0x06)), "unit_attention");
  EXPECT_STREQ(error_reason_name(error_reason(0x18, 0)), "reservation_conflict");
  EXPECT_STREQ(error_reason_name(error_reason(0x28, 0)), "task_set_full");
  EXPECT_STREQ(error_reason_name(error_reason(0x08, 0)), "busy");
}

TEST(Aggregate, SumsWorkersAndDerivesInFlight) {
  LunStats stats(3);
  // Worker 0: two reads of 4 KiB, 15 us and 3 ms.
  stats.slot(0).started.add(2);
  stats.slot(0).record(OpKind::read, 15'000, 4096, kErrorReasons);
  stats.slot(0).record(OpKind::read, 3'000'000, 4096, kErrorReasons);
  // Worker 2: one write of 8 KiB (5 ms), one failed write, one still running.
  stats.slot(2).started.add(3);
  stats.slot(2).record(OpKind::write, 5'000'000, 8192, kErrorReasons);
  stats.slot(2).record(OpKind::write, 40'000, 0, error_reason(0x02, 0x03));
  LunTotals t = aggregate(stats);
  const auto& rd = t.kinds[static_cast<std::size_t>(OpKind::read)];
  const auto& wr = t.kinds[static_cast<std::size_t>(OpKind::write)];
  EXPECT_EQ(rd.operations, 2u);
  EXPECT_EQ(rd.bytes, 8192u);
  EXPECT_EQ(rd.latency_sum_ns, 3'015'000u);
  EXPECT_EQ(rd.buckets[latency_bucket(15'000)], 1u);
  EXPECT_EQ(rd.buckets[latency_bucket(3'000'000)], 1u);
  EXPECT_EQ(wr.operations, 2u);
  EXPECT_EQ(wr.bytes, 8192u);
  EXPECT_EQ(t.kinds[static_cast<std::size_t>(OpKind::flush)].operations, 0u);
  EXPECT_EQ(t.errors[3], 1u);  // medium error
  EXPECT_EQ(t.in_flight, 1u);
}

TEST(Histogram, CumulativeWithInfEqualToCount) {
  std::array<std::uint64_t, kLatencyBuckets> b{};
  b[0] = 2;
  b[3] = 5;
  b[kLatencyBuckets - 1] = 1;  // above 1 s
  auto h = latency_histogram(b, 2'500'000'000ull);
  ASSERT_EQ(h.bucket.size(), kLatencyBuckets);
  EXPECT_EQ(h.sample_count, 8u);
  EXPECT_DOUBLE_EQ(h.sample_sum, 2.5);
  EXPECT_DOUBLE_EQ(h.bucket[0].upper_bound, 1e-5);
  EXPECT_EQ(h.bucket[0].cumulative_count, 2u);
  EXPECT_EQ(h.bucket[2].cumulative_count, 2u);
  EXPECT_EQ(h.bucket[3].cumulative_count, 7u);
  EXPECT_DOUBLE_EQ(h.bucket[kLatencyBuckets - 2].upper_bound, 1.0);
  EXPECT_EQ(h.bucket[kLatencyBuckets - 2].cumulative_count, 7u);
  EXPECT_TRUE(std::isinf(h.bucket.back().upper_bound));
  EXPECT_EQ(h.bucket.back().cumulative_count, h.sample_count);
}

// A block written by its own thread while another reads: the reader sees
// monotonic values and, at the end, every count (relaxed atomics, one writer).
TEST(LunStats, OneWriterPerSlotConcurrentReader) {
  LunStats stats(2);
  constexpr int kOps = 200000;
  auto writer = [&](unsigned slot) {
    set_thread_slot(slot);
    for (int i = 0; i < kOps; ++i) {
      LunCounters* c = stats.local();
      c->started.add();
      c->record(OpKind::write, 100'000, 512, kErrorReasons);
    }
  };
  std::thread a(writer, 0), b(writer, 1);
  std::uint64_t last = 0;
  for (int i = 0; i < 1000; ++i) {
    auto ops = aggregate(stats).kinds[static_cast<std::size_t>(OpKind::write)].operations;
    EXPECT_GE(ops, last);
    last = ops;
  }
  a.join();
  b.join();
  LunTotals t = aggregate(stats);
  EXPECT_EQ(t.kinds[static_cast<std::size_t>(OpKind::write)].operations, 2u * kOps);
  EXPECT_EQ(t.kinds[static_cast<std::size_t>(OpKind::write)].bytes, 2ull * kOps * 512);
  EXPECT_EQ(t.in_flight, 0u);
}

TEST(LunStats, ThreadWithoutSlotDoesNotCount) {
  LunStats stats(2);
  set_thread_slot(kNoSlot);
  EXPECT_EQ(stats.local(), nullptr);
  set_thread_slot(5);  // beyond this LUN's workers
  EXPECT_EQ(stats.local(), nullptr);
  set_thread_slot(1);
  EXPECT_EQ(stats.local(), &stats.slot(1));
  set_thread_slot(kNoSlot);
}

std::string scrape(const Collector& c) {
  prometheus::TextSerializer s;
  return s.Serialize(c.Collect());
}

TEST(Collector, ExposesLunTargetWorkerAndGlobalFamilies) {
  auto lun = std::make_shared<LunStats>(1);
  lun->slot(0).started.add(3);
  lun->slot(0).record(OpKind::read, 30'000, 4096, kErrorReasons);
  lun->slot(0).record(OpKind::write, 30'000, 4096, kErrorReasons);
  lun->slot(0).record(OpKind::other, 30'000, 0, error_reason(0x02, 0x05));
  auto target = std::make_shared<TargetCounters>();
  target->sessions = 2;
  target->connections = 2;
  WorkerCounters worker;
  worker.busy_ns.add(1'500'000'000);
  worker.heartbeat.add(42);
  auto cat = std::make_shared<Catalog>();
  cat->buffer_memory_held = [] { return std::size_t{3} << 20; };
  cat->buffer_memory_limit = std::size_t{64} << 20;
  cat->luns.push_back({"iqn.2025-01.com.example:t", 7, lun});
  cat->targets.push_back({"iqn.2025-01.com.example:t", target});
  cat->workers.push_back({0, &worker, [] { return std::size_t{3}; }});
  Collector c;
  c.set_catalog(cat);
  const std::string text = scrape(c);
  const std::string l = "target=\"iqn.2025-01.com.example:t\",lun=\"7\"";
  EXPECT_NE(text.find("ringtgt_lun_operations_total{" + l + ",kind=\"read\"} 1"), std::string::npos)
      << text;
  EXPECT_NE(text.find("ringtgt_lun_bytes_total{" + l + ",kind=\"write\"} 4096"), std::string::npos);
  EXPECT_NE(text.find("ringtgt_lun_latency_seconds_bucket{" + l + ",kind=\"read\",le=\"5e-05\"} 1"),
            std::string::npos);
  EXPECT_NE(text.find("ringtgt_lun_latency_seconds_bucket{" + l + ",kind=\"read\",le=\"+Inf\"} 1"),
            std::string::npos);
  EXPECT_NE(text.find("ringtgt_lun_errors_total{" + l + ",reason=\"illegal_request\"} 1"),
            std::string::npos);
  // Reasons without errors are there too, at 0, so that rate() sees the first one.
  EXPECT_NE(text.find("ringtgt_lun_errors_total{" + l + ",reason=\"medium_error\"} 0"),
            std::string::npos);
  EXPECT_NE(text.find("ringtgt_target_sessions{target=\"iqn.2025-01.com.example:t\"} 2"),
            std::string::npos);
  EXPECT_NE(text.find("ringtgt_reactor_busy_seconds_total{worker=\"0\"} 1.5"), std::string::npos);
  EXPECT_NE(text.find("ringtgt_connections{worker=\"0\"} 3"), std::string::npos);
  EXPECT_NE(text.find("ringtgt_reactor_ticks_total{worker=\"0\"} 42"), std::string::npos);
  EXPECT_NE(text.find("ringtgt_buffer_memory_bytes 3145728"), std::string::npos);
  EXPECT_NE(text.find("ringtgt_buffer_memory_limit_bytes 67108864"), std::string::npos);
  EXPECT_NE(text.find("ringtgt_digest_errors_total{kind=\"header\"}"), std::string::npos);
  EXPECT_NE(text.find("ringtgt_login_failures_total{reason=\"auth\"}"), std::string::npos);
}

TEST(Collector, MirroredLunsReportTheirCopies) {
  auto stats = std::make_shared<LunStats>(1);
  auto mirror = std::make_shared<MirrorCounters>();
  mirror->copies.push_back(std::make_unique<MirrorCounters::Copy>("primary", "disk:a"));
  mirror->copies.push_back(std::make_unique<MirrorCounters::Copy>("disk2", "disk:b"));
  mirror->ack_quorum = 2;
  mirror->redundancy_warning = true;
  mirror->copies[0]->writes = 7;
  mirror->copies[1]->writes = 5;
  mirror->copies[1]->in_sync = false;
  mirror->copies[1]->state = MirrorCounters::State::resyncing;
  mirror->copies[1]->dirty_bytes = 3 << 20;
  mirror->copies[1]->resynced_bytes = 9 << 20;
  mirror->read_repairs = 3;
  mirror->quorum_losses = 1;
  mirror->writes_on_all_copies = 11;
  mirror->writes_at_quorum_only = 4;
  mirror->copies[1]->record_write_latency(150'000);    // le 0.0002
  mirror->copies[1]->record_write_latency(3'000'000);  // le 0.005
  auto cat = std::make_shared<Catalog>();
  cat->luns.push_back({"iqn.2025-01.com.example:t", 0, stats});
  Collector c;
  c.set_catalog(cat);
  EXPECT_EQ(scrape(c).find("ringtgt_lun_copy_state"), std::string::npos);
  cat = std::make_shared<Catalog>(*cat);
  cat->luns.back().mirror = mirror;
  c.set_catalog(cat);
  const std::string text = scrape(c);
  const std::string l = "target=\"iqn.2025-01.com.example:t\",lun=\"0\"";
  for (const std::string& want :
       {"ringtgt_lun_copy_state{" + l + ",copy=\"primary\",state=\"in_sync\"} 1",
        "ringtgt_lun_copy_state{" + l + ",copy=\"primary\",state=\"out_of_sync\"} 0",
        "ringtgt_lun_copy_state{" + l + ",copy=\"disk2\",state=\"in_sync\"} 0",
        "ringtgt_lun_copy_state{" + l + ",copy=\"disk2\",state=\"out_of_sync\"} 0",
        "ringtgt_lun_copy_state{" + l + ",copy=\"disk2\",state=\"resyncing\"} 1",
        "ringtgt_lun_copy_state{" + l + ",copy=\"primary\",state=\"resyncing\"} 0",
        "ringtgt_lun_copy_dirty_bytes{" + l + ",copy=\"disk2\"} 3145728",
        "ringtgt_lun_copy_dirty_bytes{" + l + ",copy=\"primary\"} 0",
        "ringtgt_lun_copy_resynced_bytes_total{" + l + ",copy=\"disk2\"} 9437184",
        "ringtgt_lun_copy_writes_total{" + l + ",copy=\"primary\"} 7",
        "ringtgt_lun_copy_writes_total{" + l + ",copy=\"disk2\"} 5",
        "ringtgt_lun_copies_in_sync{" + l + "} 1",
        "ringtgt_lun_ack_quorum{" + l + "} 2",
        "ringtgt_lun_copy_losses_survivable{" + l + "} 0",
        "ringtgt_lun_failure_domain_shared{" + l + "} 1",
        "ringtgt_lun_read_repairs_total{" + l + "} 3",
        "ringtgt_lun_quorum_losses_total{" + l + "} 1",
        "ringtgt_lun_mirrored_writes_total{" + l + ",copies=\"all\"} 11",
        "ringtgt_lun_mirrored_writes_total{" + l + ",copies=\"quorum\"} 4",
        "ringtgt_lun_copy_write_latency_seconds_bucket{" + l + ",copy=\"disk2\",le=\"0.0001\"} 0",
        "ringtgt_lun_copy_write_latency_seconds_bucket{" + l + ",copy=\"disk2\",le=\"0.0002\"} 1",
        "ringtgt_lun_copy_write_latency_seconds_bucket{" + l + ",copy=\"disk2\",le=\"0.005\"} 2",
        "ringtgt_lun_copy_write_latency_seconds_count{" + l + ",copy=\"disk2\"} 2",
        "ringtgt_lun_copy_write_latency_seconds_sum{" + l + ",copy=\"disk2\"} 0.00315",
        "ringtgt_lun_copy_write_latency_seconds_count{" + l + ",copy=\"primary\"} 0"}) {
    EXPECT_NE(text.find(want), std::string::npos) << want << "\n" << text;
  }
  // A remote copy out of sync whose target is not connected shows connecting.
  mirror->copies[1]->state = MirrorCounters::State::out_of_sync;
  mirror->copies[1]->connected = false;
  const std::string down = scrape(c);
  for (const std::string& want :
       {"ringtgt_lun_copy_state{" + l + ",copy=\"disk2\",state=\"connecting\"} 1",
        "ringtgt_lun_copy_state{" + l + ",copy=\"disk2\",state=\"out_of_sync\"} 0",
        "ringtgt_lun_copy_state{" + l + ",copy=\"primary\",state=\"connecting\"} 0"}) {
    EXPECT_NE(down.find(want), std::string::npos) << want << "\n" << down;
  }
}

TEST(Collector, InjectedFaultsOnlyForLunsThatInjectThem) {
  auto plain = std::make_shared<LunStats>(1);
  auto faulty = std::make_shared<LunStats>(1);
  auto faults = std::make_shared<FaultCounters>();
  faults->count(FaultKind::eio);
  faults->count(FaultKind::eio);
  faults->count(FaultKind::delay);
  auto cat = std::make_shared<Catalog>();
  cat->luns.push_back({"iqn.2025-01.com.example:t", 0, plain});
  Collector c;
  c.set_catalog(cat);
  EXPECT_EQ(scrape(c).find("ringtgt_lun_faults_injected_total"), std::string::npos);
  cat = std::make_shared<Catalog>(*cat);
  cat->luns.push_back({"iqn.2025-01.com.example:t", 1, faulty, nullptr, faults});
  c.set_catalog(cat);
  const std::string text = scrape(c);
  const std::string l = "target=\"iqn.2025-01.com.example:t\",lun=\"1\"";
  EXPECT_NE(text.find("ringtgt_lun_faults_injected_total{" + l + ",fault=\"eio\"} 2"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("ringtgt_lun_faults_injected_total{" + l + ",fault=\"delay\"} 1"),
            std::string::npos);
  EXPECT_NE(text.find("ringtgt_lun_faults_injected_total{" + l + ",fault=\"flush\"} 0"),
            std::string::npos);
  EXPECT_EQ(text.find("ringtgt_lun_faults_injected_total{target=\"iqn.2025-01.com.example:t\","
                      "lun=\"0\""),
            std::string::npos);
}

TEST(Collector, RemoteStoreSeriesOnlyForLunsWithOne) {
  auto store = std::make_shared<StoreCounters>();
  store->not_open.store(true);
  store->open_failures.store(3);
  auto cat = std::make_shared<Catalog>();
  cat->luns.push_back({"iqn.2025-01.com.example:t", 0, std::make_shared<LunStats>(1)});
  cat->luns.push_back({"iqn.2025-01.com.example:t", 1, std::make_shared<LunStats>(1), store});
  Collector c;
  c.set_catalog(cat);
  std::string text = scrape(c);
  const std::string l = "{target=\"iqn.2025-01.com.example:t\",lun=\"1\"}";
  EXPECT_NE(text.find("ringtgt_lun_store_open" + l + " 0"), std::string::npos) << text;
  EXPECT_NE(text.find("ringtgt_lun_store_open_failures_total" + l + " 3"), std::string::npos);
  EXPECT_EQ(text.find("ringtgt_lun_store_open{target=\"iqn.2025-01.com.example:t\",lun=\"0\"}"),
            std::string::npos);
  // The image opened: the same counters go on, open.
  store->not_open.store(false);
  text = scrape(c);
  EXPECT_NE(text.find("ringtgt_lun_store_open" + l + " 1"), std::string::npos);
  EXPECT_NE(text.find("ringtgt_lun_store_open_failures_total" + l + " 3"), std::string::npos);
}

TEST(Collector, GlobalCountersMove) {
  Collector c;  // no catalog: the process-wide families still appear
  auto value_of = [&](const std::string& series) {
    std::string text = scrape(c);
    auto at = text.find("\n" + series + " ");
    EXPECT_NE(at, std::string::npos) << series << " in\n" << text;
    return std::stod(text.substr(at + series.size() + 2));
  };
  double auth = value_of("ringtgt_login_failures_total{reason=\"auth\"}");
  double attempts = value_of("ringtgt_login_attempts_total");
  double data = value_of("ringtgt_digest_errors_total{kind=\"data\"}");
  double negotiation = value_of("ringtgt_login_failures_total{reason=\"negotiation\"}");
  double memory = value_of("ringtgt_commands_refused_total{cause=\"buffer_memory\"}");
  double slots = value_of("ringtgt_commands_refused_total{cause=\"task_slots\"}");
  count_login_failure(LoginFailureReason::auth);
  count_login_failure(LoginFailureReason::negotiation);
  count_login_success();
  count_digest_error(DigestKind::data);
  count_refused_command(RefusalCause::buffer_memory);
  EXPECT_EQ(value_of("ringtgt_login_failures_total{reason=\"auth\"}"), auth + 1);
  EXPECT_EQ(value_of("ringtgt_login_failures_total{reason=\"negotiation\"}"), negotiation + 1);
  EXPECT_EQ(value_of("ringtgt_login_attempts_total"), attempts + 3);
  EXPECT_EQ(value_of("ringtgt_digest_errors_total{kind=\"data\"}"), data + 1);
  EXPECT_EQ(value_of("ringtgt_commands_refused_total{cause=\"buffer_memory\"}"), memory + 1);
  EXPECT_EQ(value_of("ringtgt_commands_refused_total{cause=\"task_slots\"}"), slots);
}

TEST(HeartbeatCheck, StalledUntilTheHeartbeatMoves) {
  WorkerCounters a, b;
  HeartbeatCheck check({&a, &b});
  a.heartbeat.add();
  EXPECT_EQ(check.stalled(), std::vector<unsigned>{1});
  a.heartbeat.add();
  b.heartbeat.add();
  EXPECT_TRUE(check.stalled().empty());
  EXPECT_EQ(check.stalled(), (std::vector<unsigned>{0, 1}));
}

}  // namespace
}  // namespace ringtgt::metrics
