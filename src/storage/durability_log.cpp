#include "ringtgt/storage/durability_log.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <system_error>

namespace ringtgt::storage {

namespace {

// The file: the magic, then records of a fixed header and a payload (block
// hashes of a write_done, the name of a store_opened), host byte order (the
// checker runs on the machine that recorded). Threads append whole buffers
// of records, so records are grouped by thread; seq gives the order.
constexpr char kMagic[8] = {'R', 'T', 'G', 'T', 'D', 'L', 'G', '1'};

struct WireRecord {
  std::uint64_t seq, id, tag, offset, length, flush_id;
  std::int32_t result;
  std::uint32_t store;
  std::uint8_t kind, flags;
  std::uint16_t unused;
  std::uint32_t payload_bytes;
};
static_assert(sizeof(WireRecord) == 64);

enum Flag : std::uint8_t {
  kDurable = 1,
  kMustBeDurable = 2,
  kZeroes = 4,
  kSync = 8,
  kWriteback = 16,
  kDirect = 32,
};

std::uint8_t flags_of(const DurabilityEvent& e) {
  return static_cast<std::uint8_t>((e.durable ? kDurable : 0) |
                                   (e.must_be_durable ? kMustBeDurable : 0) |
                                   (e.zeroes ? kZeroes : 0) | (e.sync ? kSync : 0) |
                                   (e.writeback ? kWriteback : 0) | (e.direct ? kDirect : 0));
}

void append_record(std::string& out, const DurabilityEvent& e, std::uint64_t seq) {
  WireRecord w{};
  w.seq = seq;
  w.id = e.id;
  w.tag = e.tag;
  w.offset = e.offset;
  w.length = e.length;
  w.flush_id = e.flush_id;
  w.result = e.result;
  w.store = e.store;
  w.kind = static_cast<std::uint8_t>(e.kind);
  w.flags = flags_of(e);
  const std::size_t hashes = e.block_hashes.size() * sizeof(std::uint64_t);
  w.payload_bytes = static_cast<std::uint32_t>(hashes + e.name.size());
  out.append(reinterpret_cast<const char*>(&w), sizeof w);
  out.append(reinterpret_cast<const char*>(e.block_hashes.data()), hashes);
  out.append(e.name);
}

DurabilityEvent parse_record(const WireRecord& w, const char* payload) {
  DurabilityEvent e{static_cast<DurabilityEvent::Kind>(w.kind), w.id};
  e.seq = w.seq;
  e.tag = w.tag;
  e.offset = w.offset;
  e.length = w.length;
  e.flush_id = w.flush_id;
  e.result = w.result;
  e.store = w.store;
  e.durable = (w.flags & kDurable) != 0;
  e.must_be_durable = (w.flags & kMustBeDurable) != 0;
  e.zeroes = (w.flags & kZeroes) != 0;
  e.sync = (w.flags & kSync) != 0;
  e.writeback = (w.flags & kWriteback) != 0;
  e.direct = (w.flags & kDirect) != 0;
  if (e.kind == DurabilityEvent::Kind::store_opened) {
    e.name.assign(payload, w.payload_bytes);
  } else {
    e.block_hashes.resize(w.payload_bytes / sizeof(std::uint64_t));
    // An empty vector's data() may be null, which memcpy must not be given.
    if (!e.block_hashes.empty()) {
      std::memcpy(e.block_hashes.data(), payload, e.block_hashes.size() * sizeof(std::uint64_t));
    }
  }
  return e;
}

// A thread writes out its buffer once it holds this much.
constexpr std::size_t kBufferBytes = 256 * 1024;

std::atomic<std::uint64_t> g_log_generations{0};
DurabilitySeam g_seam;

}  // namespace

std::uint64_t block_hash(const std::uint8_t* p, std::size_t n) {
  // Eight bytes per step, each mixed by a multiply and a shift (FNV-like).
  std::uint64_t h = 0xcbf29ce484222325ull ^ n;
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ w) * 0x100000001b3ull;
    h ^= h >> 31;
  }
  for (; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h ^ (h >> 29);
}

// One thread's records not yet in the file. Its mutex is only contended by
// flush(), so recording costs no shared lock.
struct DurabilityLog::ThreadBuffer {
  std::mutex mu;
  std::string bytes;
};

DurabilityLog::DurabilityLog() : generation_(++g_log_generations) {}

DurabilityLog::DurabilityLog(const std::string& path)
    : path_(path), generation_(++g_log_generations) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    throw std::system_error(errno, std::generic_category(), "cannot create " + path);
  }
  std::string magic(kMagic, sizeof kMagic);
  write_out(magic);
}

DurabilityLog::~DurabilityLog() {
  flush();
  if (fd_ >= 0) ::close(fd_);
}

DurabilityLog::ThreadBuffer& DurabilityLog::buffer() {
  struct Cached {
    std::uint64_t generation = 0;
    ThreadBuffer* buffer = nullptr;
  };
  thread_local Cached cached;
  if (cached.generation != generation_) {
    std::lock_guard lock(mu_);
    buffers_.push_back(std::make_unique<ThreadBuffer>());
    cached = {generation_, buffers_.back().get()};
  }
  return *cached.buffer;
}

void DurabilityLog::write_out(std::string& bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // a test log that cannot be written: the checker finds it short
    done += static_cast<std::size_t>(n);
  }
  bytes.clear();
}

void DurabilityLog::record(const DurabilityEvent& e) {
  if (fd_ < 0) {
    std::lock_guard lock(mu_);
    events_.push_back(e);
    events_.back().seq = seq_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  ThreadBuffer& b = buffer();
  std::lock_guard lock(b.mu);
  // Taken under the buffer's lock, after whatever this thread did before:
  // an event that caused another (a completion that started a flush) has the
  // lower number.
  append_record(b.bytes, e, seq_.fetch_add(1, std::memory_order_acq_rel));
  if (b.bytes.size() >= kBufferBytes) {
    std::lock_guard file(mu_);
    write_out(b.bytes);
  }
}

void DurabilityLog::record_write(DurabilityEvent e, const void* data, std::uint32_t block_size) {
  if (block_size != 0 && data != nullptr) {
    const auto* p = static_cast<const std::uint8_t*>(data);
    e.block_hashes.reserve(e.length / block_size);
    for (std::uint64_t at = 0; at + block_size <= e.length; at += block_size) {
      e.block_hashes.push_back(block_hash(p + at, block_size));
    }
  }
  record(e);
}

std::uint32_t DurabilityLog::add_store(const std::string& name, std::uint64_t size,
                                       std::uint32_t block_size, bool writeback, bool direct) {
  const std::uint32_t store = stores_.fetch_add(1) + 1;
  DurabilityEvent e{DurabilityEvent::Kind::store_opened, store};
  e.store = store;
  e.offset = size;
  e.length = block_size;
  e.writeback = writeback;
  e.direct = direct;
  e.name = name;
  record(e);
  return store;
}

void DurabilityLog::flush() {
  if (fd_ < 0) return;
  std::lock_guard lock(mu_);
  for (auto& b : buffers_) {
    std::lock_guard held(b->mu);
    write_out(b->bytes);
  }
}

std::vector<DurabilityEvent> DurabilityLog::events() const {
  std::lock_guard lock(mu_);
  auto out = events_;
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.seq < b.seq; });
  return out;
}

std::vector<DurabilityEvent> read_durability_log(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() < sizeof kMagic || std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0) {
    throw std::runtime_error(path + " is not a ringtgt durability log");
  }
  std::vector<DurabilityEvent> out;
  std::size_t at = sizeof kMagic;
  while (at < bytes.size()) {
    WireRecord w;
    if (bytes.size() - at < sizeof w) {
      throw std::runtime_error(path + ": truncated record at byte " + std::to_string(at));
    }
    std::memcpy(&w, bytes.data() + at, sizeof w);
    at += sizeof w;
    if (bytes.size() - at < w.payload_bytes) {
      throw std::runtime_error(path + ": truncated payload at byte " + std::to_string(at));
    }
    out.push_back(parse_record(w, bytes.data() + at));
    at += w.payload_bytes;
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.seq < b.seq; });
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (out[i].seq != i) {
      throw std::runtime_error(path + ": record " + std::to_string(i) +
                               " is missing (the daemon did not flush its log: was it "
                               "stopped with SIGKILL?)");
    }
  }
  return out;
}

const DurabilitySeam& durability_seam() {
  return g_seam;
}

void set_durability_seam(const DurabilitySeam& seam) {
  g_seam = seam;
}

}  // namespace ringtgt::storage
