#include "ringtgt/storage/durability_check.hpp"

#include <cerrno>
#include <set>
#include <utility>

namespace ringtgt::storage {

namespace {

using Kind = DurabilityEvent::Kind;
constexpr std::size_t kMaxProblemLines = 200;

struct Write {
  std::uint32_t store = 0;
  std::uint64_t offset = 0, length = 0;
  std::size_t done_at = 0;  // index of its write_done: the order of overlapping writes
  bool zeroes = false;
  bool durable = false;
  std::vector<std::uint64_t> hashes;
};

struct Version {
  std::size_t at = 0;  // write_done index of the content
  std::uint64_t hash = DurableImage::kZeroBlock;
};

struct Store {
  std::uint32_t block_size = 0;  // 0: no store_opened (unit tests): no image
  // Written and not durable yet: what the next flush to start covers, even
  // when an earlier flush still in flight (another reactor's) covers it too.
  std::set<std::uint64_t> in_cache;
  std::set<std::uint64_t> acked_not_durable;         // what a SYNCHRONIZE CACHE must make durable
  std::unordered_map<std::uint64_t, Version> image;  // the durable image, rebuilt
  std::unordered_map<std::uint64_t, std::size_t> owed;  // block -> newest write promised durable
  std::set<std::uint64_t> owed_changed;                 // blocks to look at, next flush point
};

class Replay {
 public:
  explicit Replay(DurabilityReport& r) : r_(r) {}

  void run(const std::vector<DurabilityEvent>& log) {
    for (i_ = 0; i_ < log.size(); ++i_) step(log[i_]);
    r_.events = log.size();
    for (auto& [id, s] : stores_) export_image(id, s);
  }

 private:
  void step(const DurabilityEvent& e) {
    switch (e.kind) {
      case Kind::store_opened:
        return opened(e);
      case Kind::write_done:
        return written(e);
      case Kind::flush_started:
        return flush_started(e);
      case Kind::flush_done:
        return flush_done(e);
      case Kind::ack:
        return backend_ack(e);
      case Kind::sync_requested:
        return sync_requested(e);
      case Kind::sync_ack:
        return sync_acked(e.id, e.result, "SYNCHRONIZE CACHE");
      case Kind::command_started:
        open_tags_.insert(e.tag);
        started_tags_.insert(e.tag);
        return;
      case Kind::command_done:
        return command_done(e);
    }
  }

  void problem(std::uint32_t store, std::string line) {
    ++r_.problem_count;
    ++r_.problems_by_store[store];
    if (r_.problems.size() < kMaxProblemLines) {
      r_.problems.push_back("event " + std::to_string(i_) + ": " + std::move(line));
    }
  }

  static std::string describe(std::uint64_t id, const Write& w) {
    return "write " + std::to_string(id) + " (offset " + std::to_string(w.offset) + ", " +
           std::to_string(w.length) + " bytes" + (w.zeroes ? ", zeroes" : "") + ")";
  }

  void opened(const DurabilityEvent& e) {
    Store& s = stores_[e.store];
    s.block_size = static_cast<std::uint32_t>(e.length);
    DurableImage& img = r_.images[e.store];
    img.name = e.name;
    img.size = e.offset;
    img.block_size = s.block_size;
    img.writeback = e.writeback;
    img.direct = e.direct;
  }

  void written(const DurabilityEvent& e) {
    Write w;
    w.store = e.store;
    w.offset = e.offset;
    w.length = e.length;
    w.done_at = i_;
    w.zeroes = e.zeroes;
    w.hashes = e.block_hashes;
    ++(e.zeroes ? r_.zeroings : r_.writes);
    if (e.tag != 0 && started_tags_.count(e.tag) != 0 && open_tags_.count(e.tag) == 0) {
      problem(w.store, describe(e.id, w) + " belongs to a command that was already answered");
    }
    writes_[e.id] = std::move(w);
    if (e.tag != 0) pending_[e.tag].push_back(e.id);
    if (e.durable) {
      make_durable(e.id);
      check_image(e.store);
    } else {
      stores_[e.store].in_cache.insert(e.id);
    }
  }

  void flush_started(const DurabilityEvent& e) {
    Store& s = stores_[e.store];
    covering_[e.flush_id].assign(s.in_cache.begin(), s.in_cache.end());
  }

  void flush_done(const DurabilityEvent& e) {
    ++r_.flushes;
    auto it = covering_.find(e.flush_id);
    if (it == covering_.end()) return;
    // A failed flush: the kernel may have dropped what it covered, and no
    // later flush brings it back, so those writes never become durable. One
    // that never ran (ECANCELED: the fallocate it was linked to failed)
    // leaves them waiting in the cache.
    Store& s = stores_[e.store];
    if (e.result == 0) {
      for (auto id : it->second) make_durable(id);
      check_image(e.store);
    } else if (e.result != -ECANCELED) {
      for (auto id : it->second) s.in_cache.erase(id);
    }
    covering_.erase(it);
  }

  void backend_ack(const DurabilityEvent& e) {
    if (e.result <= 0) return;
    auto it = writes_.find(e.id);
    if (it == writes_.end()) return;  // a flush's or a failed write's
    if (!it->second.durable) stores_[it->second.store].acked_not_durable.insert(e.id);
    if (!e.must_be_durable) return;
    promised(e.id, it->second);
    if (!it->second.durable) {
      problem(
          it->second.store,
          describe(e.id, it->second) +
              " acknowledged as durable before any flush covered it; a power cut here loses it");
    }
  }

  void sync_requested(const DurabilityEvent& e) {
    Store& s = stores_[e.store];
    sync_owes_[e.id] = {e.store, {s.acked_not_durable.begin(), s.acked_not_durable.end()}};
    if (e.tag != 0) sync_of_tag_[e.tag] = e.id;
  }

  void sync_acked(std::uint64_t sync_id, int result, const char* who) {
    auto it = sync_owes_.find(sync_id);
    if (it == sync_owes_.end()) return;
    if (result == 0) {
      ++r_.syncs;
      for (auto id : it->second.second) {
        Write& w = writes_[id];
        promised(id, w);
        if (w.durable) continue;
        problem(w.store, std::string(who) + " " + std::to_string(sync_id) + " acknowledged while " +
                             describe(id, w) + ", acknowledged before it, is not durable");
      }
      check_image(it->second.first);
    }
    sync_owes_.erase(it);
  }

  void command_done(const DurabilityEvent& e) {
    open_tags_.erase(e.tag);
    auto ids = std::move(pending_[e.tag]);
    pending_.erase(e.tag);
    if (e.result != 1) return;  // not GOOD: nothing was promised
    ++r_.commands_good;
    for (auto id : ids) {
      Write& w = writes_[id];
      if (!w.durable) stores_[w.store].acked_not_durable.insert(id);
      if (!e.must_be_durable) continue;
      promised(id, w);
      if (w.durable) continue;
      problem(w.store, "GOOD sent for command " + std::to_string(e.tag) + " while its " +
                           describe(id, w) + " was not durable; a power cut here loses it");
    }
    if (e.sync) {
      auto s = sync_of_tag_.find(e.tag);
      if (s != sync_of_tag_.end()) {
        sync_acked(s->second, 0, "GOOD for SYNCHRONIZE CACHE");
        sync_of_tag_.erase(s);
      }
    }
  }

  // The blocks of w are owed to the initiator from now on: the image must
  // hold w's content, or a later write's, at every flush point after this.
  void promised(std::uint64_t, const Write& w) {
    ++r_.durable_promises;
    Store& s = stores_[w.store];
    if (s.block_size == 0) return;
    for (std::uint64_t b = w.offset / s.block_size; b < (w.offset + w.length) / s.block_size; ++b) {
      auto& owed = s.owed[b];
      if (owed < w.done_at + 1) owed = w.done_at + 1;  // +1: 0 means nothing owed
      s.owed_changed.insert(b);
    }
  }

  void make_durable(std::uint64_t id) {
    Write& w = writes_[id];
    if (w.durable) return;
    w.durable = true;
    Store& s = stores_[w.store];
    s.in_cache.erase(id);
    s.acked_not_durable.erase(id);
    if (s.block_size == 0) return;
    const std::uint64_t first = w.offset / s.block_size;
    for (std::uint64_t b = first; b < (w.offset + w.length) / s.block_size; ++b) {
      Version& v = s.image[b];
      if (v.at > w.done_at + 1) continue;  // a later write of the block is durable already
      v.at = w.done_at + 1;
      const std::size_t k = b - first;
      v.hash = w.zeroes || k >= w.hashes.size() ? DurableImage::kZeroBlock : w.hashes[k];
    }
    w.hashes.clear();
    w.hashes.shrink_to_fit();
  }

  // A flush point: what a power cut now leaves must hold every block owed.
  void check_image(std::uint32_t store) {
    Store& s = stores_[store];
    if (s.owed_changed.empty()) return;
    ++r_.image_points;
    for (auto b : s.owed_changed) {
      const std::size_t owed = s.owed[b];
      auto v = s.image.find(b);
      const std::size_t held = v == s.image.end() ? 0 : v->second.at;
      if (held >= owed) continue;
      problem(store, "store " + std::to_string(store) + " block " + std::to_string(b) +
                         ": the durable image holds the content of event " +
                         (held == 0 ? std::string("(none)") : std::to_string(held - 1)) +
                         ", older than the acknowledged write of event " +
                         std::to_string(owed - 1));
    }
    s.owed_changed.clear();
  }

  void export_image(std::uint32_t id, const Store& s) {
    if (s.block_size == 0) return;
    DurableImage& img = r_.images[id];
    for (const auto& [b, v] : s.image) img.blocks[b] = v.hash;
  }

  DurabilityReport& r_;
  std::size_t i_ = 0;
  std::unordered_map<std::uint64_t, Write> writes_;
  std::map<std::uint32_t, Store> stores_;
  std::unordered_map<std::uint64_t, std::vector<std::uint64_t>> covering_;  // flush -> writes
  std::unordered_map<std::uint64_t, std::vector<std::uint64_t>> pending_;   // tag -> writes
  std::set<std::uint64_t> open_tags_, started_tags_;
  std::map<std::uint64_t, std::pair<std::uint32_t, std::vector<std::uint64_t>>> sync_owes_;
  std::unordered_map<std::uint64_t, std::uint64_t> sync_of_tag_;
};

}  // namespace

DurabilityReport check_durability_log(const std::vector<DurabilityEvent>& log) {
  DurabilityReport r;
  Replay(r).run(log);
  return r;
}

std::vector<std::string> check_durability(const std::vector<DurabilityEvent>& log) {
  return check_durability_log(log).problems;
}

}  // namespace ringtgt::storage
