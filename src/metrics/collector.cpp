#include "ringtgt/metrics/collector.hpp"

#include <prometheus/exposer.h>

#include <limits>
#include <stdexcept>

namespace ringtgt::metrics {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily family(const char* name, const char* help, MetricType type) {
  MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  return f;
}

ClientMetric sample(std::vector<ClientMetric::Label> labels) {
  ClientMetric m;
  m.label = std::move(labels);
  return m;
}

void add_counter(MetricFamily& f, std::vector<ClientMetric::Label> labels, double value) {
  ClientMetric m = sample(std::move(labels));
  m.counter.value = value;
  f.metric.push_back(std::move(m));
}

void add_gauge(MetricFamily& f, std::vector<ClientMetric::Label> labels, double value) {
  ClientMetric m = sample(std::move(labels));
  m.gauge.value = value;
  f.metric.push_back(std::move(m));
}

}  // namespace

LunTotals aggregate(const LunStats& stats) {
  LunTotals t;
  std::uint64_t started = 0, finished = 0;
  for (unsigned s = 0; s < stats.slots(); ++s) {
    const LunCounters& c = stats.slot(s);
    // finished before started: a command counted as finished is always
    // counted as started too, so in flight never goes below zero.
    finished += c.finished.get();
    started += c.started.get();
    for (std::size_t k = 0; k < kOpKinds; ++k) {
      const auto& in = c.kinds[k];
      auto& out = t.kinds[k];
      out.bytes += in.bytes.get();
      out.latency_sum_ns += in.latency_sum_ns.get();
      for (std::size_t b = 0; b < kLatencyBuckets; ++b) out.buckets[b] += in.buckets[b].get();
    }
    for (std::size_t e = 0; e < kErrorReasons; ++e) t.errors[e] += c.errors[e].get();
  }
  for (auto& k : t.kinds) {
    for (auto b : k.buckets) k.operations += b;
  }
  t.in_flight = started > finished ? started - finished : 0;
  return t;
}

ClientMetric::Histogram latency_histogram(const std::array<std::uint64_t, kLatencyBuckets>& buckets,
                                          std::uint64_t sum_ns) {
  ClientMetric::Histogram h;
  std::uint64_t cumulative = 0;
  for (std::size_t b = 0; b < kLatencyBuckets; ++b) {
    cumulative += buckets[b];
    double bound = b < kLatencyBoundsNs.size() ? static_cast<double>(kLatencyBoundsNs[b]) / 1e9
                                               : std::numeric_limits<double>::infinity();
    h.bucket.push_back({cumulative, bound});
  }
  h.sample_count = cumulative;
  h.sample_sum = static_cast<double>(sum_ns) / 1e9;
  return h;
}

namespace {

// A remote store's families: only where a LUN has one (RBD).
struct StoreFamilies {
  MetricFamily latency =
      family("ringtgt_lun_store_latency_seconds",
             "Time a remote store (librbd) took for the backend's operations, from submission to "
             "completion",
             MetricType::Histogram);
  MetricFamily errors = family("ringtgt_lun_store_errors_total",
                               "Operations the remote store (librbd) failed, by reason (timeout: "
                               "the cluster did not answer within op_timeout)",
                               MetricType::Counter);
  MetricFamily unreachable = family(
      "ringtgt_lun_store_unreachable",
      "1 while the remote store (a Ceph cluster) does not answer: its last operation timed out",
      MetricType::Gauge);
  MetricFamily open = family("ringtgt_lun_store_open",
                             "1 once the remote store (an RBD image) is open; 0 while it could not "
                             "be opened (missing, too small, cluster away) and is retried: the LUN "
                             "answers NOT READY meanwhile",
                             MetricType::Gauge);
  MetricFamily open_failures =
      family("ringtgt_lun_store_open_failures_total",
             "Attempts to open the remote store (an RBD image) that failed", MetricType::Counter);

  // One LUN's series.
  void add(const std::string& target, const std::string& lun, const StoreCounters& s) {
    std::array<std::uint64_t, kLatencyBuckets> buckets{};
    for (std::size_t b = 0; b < kLatencyBuckets; ++b)
      buckets[b] = s.buckets[b].load(std::memory_order_relaxed);
    ClientMetric m = sample({{"target", target}, {"lun", lun}});
    m.histogram = latency_histogram(buckets, s.latency_sum_ns.load(std::memory_order_relaxed));
    latency.metric.push_back(std::move(m));
    const std::uint64_t all = s.errors.load(std::memory_order_relaxed);
    const std::uint64_t timeouts = s.timeouts.load(std::memory_order_relaxed);
    add_counter(errors, {{"target", target}, {"lun", lun}, {"reason", "timeout"}},
                static_cast<double>(timeouts));
    add_counter(errors, {{"target", target}, {"lun", lun}, {"reason", "other"}},
                static_cast<double>(all > timeouts ? all - timeouts : 0));
    add_gauge(unreachable, {{"target", target}, {"lun", lun}},
              s.unreachable.load(std::memory_order_relaxed) ? 1.0 : 0.0);
    add_gauge(open, {{"target", target}, {"lun", lun}},
              s.not_open.load(std::memory_order_relaxed) ? 0.0 : 1.0);
    add_counter(open_failures, {{"target", target}, {"lun", lun}},
                static_cast<double>(s.open_failures.load(std::memory_order_relaxed)));
  }
};

// The series of mirrored LUNs: each copy's state and writes, and the LUN's
// quorum, read repairs and quorum losses.
struct MirrorFamilies {
  MetricFamily state = family("ringtgt_lun_copy_state",
                              "1 for the state a copy of a mirrored LUN is in (in_sync, "
                              "out_of_sync, resyncing, connecting), 0 for the others",
                              MetricType::Gauge);
  MetricFamily dirty =
      family("ringtgt_lun_copy_dirty_bytes",
             "Bytes of a copy's dirty regions: what a resync would copy now", MetricType::Gauge);
  MetricFamily resynced =
      family("ringtgt_lun_copy_resynced_bytes_total",
             "Bytes resyncs copied to a copy of a mirrored LUN", MetricType::Counter);
  MetricFamily behind =
      family("ringtgt_lun_copy_writes_behind",
             "Writes (and flushes) of a mirrored LUN answered GOOD at quorum that a copy is "
             "still doing",
             MetricType::Gauge);
  MetricFamily writes =
      family("ringtgt_lun_copy_writes_total",
             "Writes, zeroings and unmaps a copy of a mirrored LUN completed", MetricType::Counter);
  MetricFamily in_sync =
      family("ringtgt_lun_copies_in_sync",
             "Copies of a mirrored LUN (the primary included) in sync", MetricType::Gauge);
  MetricFamily quorum = family("ringtgt_lun_ack_quorum",
                               "Copies that must hold a write before GOOD (ack_quorum); below it "
                               "writes get the on_quorum_loss answer",
                               MetricType::Gauge);
  MetricFamily survivable =
      family("ringtgt_lun_copy_losses_survivable",
             "Copies of a mirrored LUN it can lose one at a time and still acknowledge writes "
             "(copies - ack_quorum); ringtgt_lun_failure_domain_shared says when one failure "
             "takes more",
             MetricType::Gauge);
  MetricFamily shared =
      family("ringtgt_lun_failure_domain_shared",
             "1 when copies of a mirrored LUN meant to protect each other share a failure "
             "domain (the daemon log and ringtgtctl copy list say which)",
             MetricType::Gauge);
  MetricFamily repairs =
      family("ringtgt_lun_read_repairs_total",
             "Failed reads served from another copy and written back", MetricType::Counter);
  MetricFamily losses = family("ringtgt_lun_quorum_losses_total",
                               "Times the in-sync copies of a mirrored LUN fell below ack_quorum",
                               MetricType::Counter);
  MetricFamily waiting = family("ringtgt_lun_writes_waiting_for_quorum",
                                "Writes of a mirrored LUN held below ack_quorum "
                                "(on_quorum_loss = \"wait\") right now",
                                MetricType::Gauge);
  MetricFamily latency =
      family("ringtgt_lun_copy_write_latency_seconds",
             "Time a copy of a mirrored LUN took to complete a WRITE", MetricType::Histogram);
  MetricFamily acknowledged =
      family("ringtgt_lun_mirrored_writes_total",
             "Writes, zeroings and unmaps of a mirrored LUN answered GOOD, by where they were "
             "then: on every copy (copies=\"all\") or on ack_quorum copies or more but not all "
             "(copies=\"quorum\": a degraded LUN, or answered before a slower copy had it)",
             MetricType::Counter);

  void add(const std::string& target, const std::string& lun, const MirrorCounters& m) {
    std::size_t synced = 0;
    using State = MirrorCounters::State;
    for (const auto& c : m.copies) {
      const State now = c->shown_state();
      synced += now == State::in_sync ? 1 : 0;
      for (State st : MirrorCounters::kStates) {
        add_gauge(state,
                  {{"target", target},
                   {"lun", lun},
                   {"copy", c->name},
                   {"state", MirrorCounters::to_string(st)}},
                  now == st ? 1.0 : 0.0);
      }
      add_gauge(dirty, {{"target", target}, {"lun", lun}, {"copy", c->name}},
                static_cast<double>(c->dirty_bytes.load(std::memory_order_relaxed)));
      add_counter(resynced, {{"target", target}, {"lun", lun}, {"copy", c->name}},
                  static_cast<double>(c->resynced_bytes.load(std::memory_order_relaxed)));
      add_gauge(behind, {{"target", target}, {"lun", lun}, {"copy", c->name}},
                static_cast<double>(c->writes_behind.load(std::memory_order_relaxed)));
      add_counter(writes, {{"target", target}, {"lun", lun}, {"copy", c->name}},
                  static_cast<double>(c->writes.load(std::memory_order_relaxed)));
      add_latency(target, lun, *c);
    }
    add_gauge(waiting, {{"target", target}, {"lun", lun}},
              static_cast<double>(m.writes_waiting_for_quorum.load(std::memory_order_relaxed)));
    add_counter(acknowledged, {{"target", target}, {"lun", lun}, {"copies", "all"}},
                static_cast<double>(m.writes_on_all_copies.load(std::memory_order_relaxed)));
    add_counter(acknowledged, {{"target", target}, {"lun", lun}, {"copies", "quorum"}},
                static_cast<double>(m.writes_at_quorum_only.load(std::memory_order_relaxed)));
    add_gauge(in_sync, {{"target", target}, {"lun", lun}}, static_cast<double>(synced));
    add_gauge(quorum, {{"target", target}, {"lun", lun}}, static_cast<double>(m.ack_quorum));
    add_gauge(survivable, {{"target", target}, {"lun", lun}},
              static_cast<double>(m.copies.size() - m.ack_quorum));
    add_gauge(shared, {{"target", target}, {"lun", lun}}, m.redundancy_warning ? 1.0 : 0.0);
    add_counter(repairs, {{"target", target}, {"lun", lun}},
                static_cast<double>(m.read_repairs.load(std::memory_order_relaxed)));
    add_counter(losses, {{"target", target}, {"lun", lun}},
                static_cast<double>(m.quorum_losses.load(std::memory_order_relaxed)));
  }

  void add_latency(const std::string& target, const std::string& lun,
                   const MirrorCounters::Copy& c) {
    std::array<std::uint64_t, kLatencyBuckets> buckets{};
    for (std::size_t b = 0; b < kLatencyBuckets; ++b)
      buckets[b] = c.write_latency[b].load(std::memory_order_relaxed);
    ClientMetric m;
    m.label = {{"target", target}, {"lun", lun}, {"copy", c.name}};
    m.histogram =
        latency_histogram(buckets, c.write_latency_sum_ns.load(std::memory_order_relaxed));
    latency.metric.push_back(std::move(m));
  }

  void move_to(std::vector<MetricFamily>& out) {
    for (auto* f : {&state, &dirty, &resynced, &behind, &writes, &in_sync, &quorum, &survivable,
                    &shared, &repairs, &losses, &waiting, &latency, &acknowledged}) {
      if (!f->metric.empty()) out.push_back(std::move(*f));
    }
  }
};

}  // namespace

void Collector::set_catalog(std::shared_ptr<const Catalog> catalog) {
  std::lock_guard lock(mu_);
  catalog_ = std::move(catalog);
}

std::vector<MetricFamily> Collector::Collect() const {
  std::shared_ptr<const Catalog> cat;
  {
    std::lock_guard lock(mu_);
    cat = catalog_;
  }
  auto ops = family("ringtgt_lun_operations_total", "SCSI commands completed, by kind",
                    MetricType::Counter);
  auto bytes = family("ringtgt_lun_bytes_total",
                      "Data-In and Data-Out bytes of commands that completed GOOD, by kind",
                      MetricType::Counter);
  auto latency = family("ringtgt_lun_latency_seconds",
                        "Time from the start of a SCSI command's execution to its status",
                        MetricType::Histogram);
  auto errors =
      family("ringtgt_lun_errors_total",
             "Commands that did not complete GOOD, by sense key or status", MetricType::Counter);
  auto in_flight = family("ringtgt_lun_commands_in_flight",
                          "SCSI commands executing in the logical unit", MetricType::Gauge);
  StoreFamilies store;
  auto sessions =
      family("ringtgt_target_sessions", "Logged-in normal sessions per target", MetricType::Gauge);
  auto connections = family("ringtgt_target_connections", "Full-feature connections per target",
                            MetricType::Gauge);
  auto discovery =
      family("ringtgt_discovery_sessions", "Logged-in discovery sessions", MetricType::Gauge);
  auto worker_conns = family("ringtgt_connections", "Open TCP connections (any phase) per worker",
                             MetricType::Gauge);
  auto busy =
      family("ringtgt_reactor_busy_seconds_total",
             "Time each reactor loop spent working rather than waiting", MetricType::Counter);
  auto ticks = family("ringtgt_reactor_ticks_total",
                      "Ticks of each reactor loop (4 a second); flat while the loop is stuck",
                      MetricType::Counter);
  auto buffer_held =
      family("ringtgt_buffer_memory_bytes",
             "Command data buffer memory held by all workers (in use and kept for reuse)",
             MetricType::Gauge);
  auto buffer_limit = family("ringtgt_buffer_memory_limit_bytes",
                             "limits.max_buffer_memory: past it commands are answered "
                             "TASK SET FULL or BUSY",
                             MetricType::Gauge);
  auto refused = family("ringtgt_commands_refused_total",
                        "Commands answered BUSY or TASK SET FULL before reaching a LUN, by cause",
                        MetricType::Counter);
  auto faults =
      family("ringtgt_lun_faults_injected_total",
             "Faults injected for tests ([testing] fault_injection), by kind", MetricType::Counter);
  auto attempts = family("ringtgt_login_attempts_total", "Logins that ended, accepted or refused",
                         MetricType::Counter);
  auto failures =
      family("ringtgt_login_failures_total", "Refused logins by reason", MetricType::Counter);
  auto rejects = family("ringtgt_pdu_rejects_total", "Reject PDUs sent", MetricType::Counter);
  auto pauses = family("ringtgt_receive_pauses_total",
                       "Times a connection stopped reading commands because its peer left "
                       "limits.max_session_output of responses unread",
                       MetricType::Counter);
  auto digests = family("ringtgt_digest_errors_total", "Header and data digest (CRC32C) errors",
                        MetricType::Counter);
  MirrorFamilies mirror;

  if (cat) {
    for (const auto& l : cat->luns) {
      if (!l.stats) continue;
      const LunTotals t = aggregate(*l.stats);
      const std::string lun = std::to_string(l.lun);
      for (std::size_t k = 0; k < kOpKinds; ++k) {
        std::vector<ClientMetric::Label> labels = {
            {"target", l.target}, {"lun", lun}, {"kind", to_string(static_cast<OpKind>(k))}};
        add_counter(ops, labels, static_cast<double>(t.kinds[k].operations));
        add_counter(bytes, labels, static_cast<double>(t.kinds[k].bytes));
        ClientMetric m = sample(labels);
        m.histogram = latency_histogram(t.kinds[k].buckets, t.kinds[k].latency_sum_ns);
        latency.metric.push_back(std::move(m));
      }
      // Every reason, zeros included: a series that exists before its first
      // error lets rate() and alerts see that first error.
      for (std::size_t e = 0; e < kErrorReasons; ++e) {
        add_counter(errors, {{"target", l.target}, {"lun", lun}, {"reason", error_reason_name(e)}},
                    static_cast<double>(t.errors[e]));
      }
      add_gauge(in_flight, {{"target", l.target}, {"lun", lun}}, static_cast<double>(t.in_flight));
      if (l.store) store.add(l.target, lun, *l.store);
      if (l.mirror) mirror.add(l.target, lun, *l.mirror);
      if (l.faults) {
        for (std::size_t k = 0; k < kFaultKinds; ++k) {
          const auto kind = static_cast<FaultKind>(k);
          add_counter(faults, {{"target", l.target}, {"lun", lun}, {"fault", to_string(kind)}},
                      static_cast<double>(l.faults->get(kind)));
        }
      }
    }
    for (const auto& t : cat->targets) {
      if (!t.counters) continue;
      add_gauge(sessions, {{"target", t.name}},
                static_cast<double>(t.counters->sessions.load(std::memory_order_relaxed)));
      add_gauge(connections, {{"target", t.name}},
                static_cast<double>(t.counters->connections.load(std::memory_order_relaxed)));
    }
    for (const auto& w : cat->workers) {
      const std::string idx = std::to_string(w.index);
      if (w.counters) {
        add_counter(busy, {{"worker", idx}}, static_cast<double>(w.counters->busy_ns.get()) / 1e9);
        add_counter(ticks, {{"worker", idx}}, static_cast<double>(w.counters->heartbeat.get()));
      }
      if (w.connections)
        add_gauge(worker_conns, {{"worker", idx}}, static_cast<double>(w.connections()));
    }
    if (cat->buffer_memory_held)
      add_gauge(buffer_held, {}, static_cast<double>(cat->buffer_memory_held()));
    if (cat->buffer_memory_limit > 0)
      add_gauge(buffer_limit, {}, static_cast<double>(cat->buffer_memory_limit));
  }
  const GlobalCounters& g = global();
  add_gauge(discovery, {},
            static_cast<double>(g.discovery_sessions.load(std::memory_order_relaxed)));
  add_counter(attempts, {}, static_cast<double>(g.login_attempts.load(std::memory_order_relaxed)));
  for (std::size_t r = 0; r < kLoginFailureReasons; ++r) {
    add_counter(failures, {{"reason", to_string(static_cast<LoginFailureReason>(r))}},
                static_cast<double>(g.login_failures[r].load(std::memory_order_relaxed)));
  }
  add_counter(rejects, {}, static_cast<double>(g.rejects.load(std::memory_order_relaxed)));
  add_counter(pauses, {}, static_cast<double>(g.receive_pauses.load(std::memory_order_relaxed)));
  add_counter(digests, {{"kind", "header"}},
              static_cast<double>(g.digest_errors[0].load(std::memory_order_relaxed)));
  add_counter(digests, {{"kind", "data"}},
              static_cast<double>(g.digest_errors[1].load(std::memory_order_relaxed)));

  for (std::size_t c = 0; c < kRefusalCauses; ++c) {
    add_counter(refused, {{"cause", to_string(static_cast<RefusalCause>(c))}},
                static_cast<double>(g.refused_commands[c].load(std::memory_order_relaxed)));
  }

  std::vector<MetricFamily> out;
  for (auto* f : {&ops, &bytes, &latency, &errors, &in_flight, &sessions, &connections, &discovery,
                  &worker_conns, &busy, &ticks, &buffer_held, &buffer_limit, &attempts, &failures,
                  &rejects, &pauses, &digests, &refused}) {
    out.push_back(std::move(*f));
  }
  // Only where a LUN has a remote store (RBD).
  for (auto* f :
       {&store.latency, &store.errors, &store.unreachable, &store.open, &store.open_failures}) {
    if (!f->metric.empty()) out.push_back(std::move(*f));
  }
  if (!faults.metric.empty()) out.push_back(std::move(faults));
  mirror.move_to(out);  // only where a LUN is mirrored
  return out;
}

Endpoint::Endpoint(const std::string& listen, std::shared_ptr<Collector> collector)
    : collector_(std::move(collector)) {
  try {
    // One serving thread: scrapes are rare, and it never touches a reactor.
    exposer_ = std::make_unique<prometheus::Exposer>(listen, 1);
  } catch (const std::exception& e) {
    throw std::runtime_error("metrics endpoint " + listen + ": cannot listen: " + e.what());
  }
  exposer_->RegisterCollectable(collector_);
}

Endpoint::~Endpoint() = default;

}  // namespace ringtgt::metrics
