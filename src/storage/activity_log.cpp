#include "activity_log.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "ringtgt/common/atomic_file.hpp"
#include "ringtgt/reactor/foreign_completions.hpp"

namespace ringtgt::storage {

namespace {

constexpr const char* kMagic = "ringtgt-mirror-state 1";

void put_words(std::string& out, const std::vector<std::uint64_t>& words) {
  for (std::uint64_t w : words) out += fmt::format(" {:x}", w);
  out += '\n';
}

bool get_words(std::istringstream& in, std::vector<std::uint64_t>& words) {
  std::string hex;
  while (in >> hex) {
    try {
      std::size_t used = 0;
      words.push_back(std::stoull(hex, &used, 16));
      if (used != hex.size()) return false;
    } catch (const std::exception&) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::string activity_log_text(const ActivityLog::Record& r) {
  std::string out = std::string(kMagic) + "\n";
  out += fmt::format("size {} region {}\n", r.size_bytes, r.region_size);
  out += "hot";
  put_words(out, r.hot);
  for (const auto& c : r.copies) {
    out += fmt::format("copy {} {}", c.name, c.in_sync ? "in_sync" : "out_of_sync");
    put_words(out, c.dirty);
    // The rest of its own line: a path may hold spaces.
    if (!c.location.empty()) out += "at " + c.location + "\n";
  }
  return out;
}

bool parse_activity_log(const std::string& text, ActivityLog::Record& out) {
  std::istringstream lines(text);
  std::string line;
  if (!std::getline(lines, line) || line != kMagic) return false;
  if (!std::getline(lines, line)) return false;
  {
    std::istringstream in(line);
    std::string size_word, region_word;
    if (!(in >> size_word >> out.size_bytes >> region_word >> out.region_size) ||
        size_word != "size" || region_word != "region")
      return false;
  }
  while (std::getline(lines, line)) {
    std::istringstream in(line);
    std::string kind;
    in >> kind;
    if (kind == "hot") {
      if (!get_words(in, out.hot)) return false;
    } else if (kind == "copy") {
      ActivityLog::CopyRecord c;
      std::string state;
      if (!(in >> c.name >> state)) return false;
      if (state != "in_sync" && state != "out_of_sync") return false;
      c.in_sync = state == "in_sync";
      if (!get_words(in, c.dirty)) return false;
      out.copies.push_back(std::move(c));
    } else if (kind == "at") {
      if (out.copies.empty() || line.size() <= 3 || line.compare(0, 3, "at ") != 0) return false;
      out.copies.back().location = line.substr(3);
    } else if (!kind.empty()) {
      return false;
    }
  }
  return true;
}

ActivityLog::ActivityLog(std::filesystem::path path, std::uint64_t size_bytes,
                         std::uint64_t region_size, Snapshot snapshot, Written written)
    : path_(std::move(path)),
      snapshot_(std::move(snapshot)),
      written_(std::move(written)),
      hot_(size_bytes, region_size) {}

std::optional<ActivityLog::Record> ActivityLog::load() const {
  std::ifstream f(path_);
  if (!f) return std::nullopt;
  std::stringstream text;
  text << f.rdbuf();
  Record r;
  if (!parse_activity_log(text.str(), r))
    throw std::runtime_error(path_.string() + " is not a mirror state file this ringtgt wrote");
  return r;
}

void ActivityLog::restore_hot(const std::vector<std::uint64_t>& words, std::uint64_t region_size) {
  hot_.mark_regions(words, region_size);
}

bool ActivityLog::all_hot(std::uint64_t offset, std::uint64_t len) const {
  if (len == 0) return true;
  const std::uint64_t first = offset / hot_.region_size();
  const std::uint64_t last = std::min(offset + len - 1, hot_.size_bytes() - 1) / hot_.region_size();
  for (std::uint64_t r = first; r <= last; ++r) {
    if (!hot_.dirty(r)) return false;
  }
  return true;
}

void ActivityLog::add_regions(std::vector<std::uint64_t>& words, std::uint64_t offset,
                              std::uint64_t len) const {
  if (len == 0) return;
  const std::uint64_t first = offset / hot_.region_size();
  const std::uint64_t last = std::min(offset + len - 1, hot_.size_bytes() - 1) / hot_.region_size();
  for (std::uint64_t r = first; r <= last; ++r) words[r / 64] |= std::uint64_t{1} << (r % 64);
}

bool ActivityLog::make_hot(std::uint64_t offset, std::uint64_t len) {
  // The common case, a region written recently: a few atomic loads.
  if (all_hot(offset, len)) return true;
  std::lock_guard lock(mu_);
  // Another thread's write may have made them hot (and durable) meanwhile:
  // concurrent writes to new regions share one file write this way.
  if (all_hot(offset, len)) return true;
  std::vector<std::uint64_t> hot = hot_.words();
  add_regions(hot, offset, len);
  if (!write_locked(hot)) return false;
  // Only now, durable, do other writes to these regions skip the file.
  hot_.mark(offset, len);
  return true;
}

ActivityLog::Hot ActivityLog::make_hot(std::uint64_t offset, std::uint64_t len,
                                       reactor::IoOp* resume, reactor::IoEngine* home) {
  if (all_hot(offset, len)) return Hot::hot;
  if (queue_waiter(offset, len, resume, home)) return Hot::later;
  return make_hot(offset, len) ? Hot::hot : Hot::failed;
}

bool ActivityLog::after_next_write(reactor::IoOp* resume, reactor::IoEngine* home) {
  // No region: the writer writes the file anyway for a queued waiter.
  return queue_waiter(0, 0, resume, home);
}

void ActivityLog::persist_soon(reactor::IoEngine* home) {
  if (home == nullptr || home->foreign_completions() == nullptr) {
    persist();
    return;
  }
  writer_.post([this] { persist(); });
}

bool ActivityLog::queue_waiter(std::uint64_t offset, std::uint64_t len, reactor::IoOp* resume,
                               reactor::IoEngine* home) {
  reactor::ForeignCompletions* fc = home != nullptr ? home->foreign_completions() : nullptr;
  if (fc == nullptr) return false;
  // Counted as in flight on its thread, so its reactor does not stop while
  // the write waits for the file.
  fc->expect();
  bool post = false;
  {
    std::lock_guard lock(waiting_mu_);
    waiting_.push_back({offset, len, resume, fc});
    post = !std::exchange(writer_queued_, true);
  }
  if (post) writer_.post([this] { write_waiting(); });
  return true;
}

void ActivityLog::write_waiting() {
  for (;;) {
    std::vector<Waiter> batch;
    {
      std::lock_guard lock(waiting_mu_);
      if (waiting_.empty()) {
        writer_queued_ = false;
        return;
      }
      batch.swap(waiting_);
    }
    bool ok = true;
    {
      std::lock_guard lock(mu_);
      std::vector<std::uint64_t> hot = hot_.words();
      for (const Waiter& w : batch) {
        add_regions(hot, w.offset, w.len);
      }
      ok = write_locked(hot);
      // Only now, durable, do other writes to these regions skip the file.
      if (ok) {
        for (const Waiter& w : batch) hot_.mark(w.offset, w.len);
      }
    }
    for (const Waiter& w : batch) w.home->complete(w.resume, ok ? 0 : -EIO);
  }
}

void ActivityLog::clear_hot(reactor::IoEngine* home, std::function<void()> done) {
  if (home == nullptr || home->foreign_completions() == nullptr) {
    clear_hot();
    return done();
  }
  writer_.post([this, done = std::move(done)] {
    clear_hot();
    done();
  });
}

bool ActivityLog::clear_hot() {
  std::lock_guard lock(mu_);
  if (next_ != nullptr) return true;  // next's regions are not ours to clear
  const std::vector<std::uint64_t> none(hot_.words().size(), 0);
  if (!write_locked(none)) return false;
  hot_.load(none);
  return true;
}

bool ActivityLog::persist() {
  std::lock_guard lock(mu_);
  return write_locked(hot_.words());
}

void ActivityLog::retire_into(ActivityLog& next) {
  std::lock_guard lock(mu_);
  next_ = &next;
  next.adopt_hot(hot_.words(), hot_.region_size());
}

void ActivityLog::unretire() {
  std::lock_guard lock(mu_);
  next_ = nullptr;
  write_locked(hot_.words());
}

bool ActivityLog::adopt_hot(const std::vector<std::uint64_t>& words, std::uint64_t region_size) {
  std::lock_guard lock(mu_);
  std::vector<std::uint64_t> hot = hot_.words();
  for (std::size_t w = 0; w < words.size(); ++w) {
    for (unsigned b = 0; b < 64; ++b) {
      const std::uint64_t at = (w * 64 + b) * region_size;
      if ((words[w] >> b) & 1 && at < hot_.size_bytes()) add_regions(hot, at, region_size);
    }
  }
  if (!write_locked(hot)) return false;
  hot_.load(hot);
  return true;
}

bool ActivityLog::write_locked(const std::vector<std::uint64_t>& hot) {
  if (next_ != nullptr) {
    // Retired: the regions go to the file next writes, and what this log's
    // caller waits for (its copies recorded) holds once next wrote it.
    if (!next_->adopt_hot(hot, hot_.region_size())) return false;
    if (written_) {
      std::vector<CopyRecord> copies;
      snapshot_(copies);
      written_(copies);
    }
    return true;
  }
  Record r;
  r.size_bytes = hot_.size_bytes();
  r.region_size = hot_.region_size();
  r.hot = hot;
  snapshot_(r.copies);
  try {
    common::write_file_atomically(path_, activity_log_text(r), 0600);
    if (written_) written_(r.copies);
    return true;
  } catch (const std::exception& e) {
    spdlog::error("mirror state {} not written: {}", path_.string(), e.what());
    return false;
  }
}

}  // namespace ringtgt::storage
