#include "ringtgt/storage/iscsi_copy_backend.hpp"

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include "ringtgt/reactor/foreign_completions.hpp"

namespace ringtgt::storage {

namespace {

// The unit attentions a login may meet before the LUN counts as broken.
constexpr int kMaxLoginUnitAttentions = 10;
// How often the initiator thread wakes to check deadlines while connected.
constexpr int kTickMs = 100;
// A connection this long without a command sends a NOP-Out ping: a remote
// target that stopped answering (hung, its process stopped) while the copy
// was idle is found by the ping's command_timeout, not by the next write,
// which would wait that long. TCP keepalives find only a vanished host.
constexpr std::uint64_t kIdlePingMs = 5000;
// Bounds on one command of an unmap or zeroing, so each answers well within
// the command timeout whatever the remote target does with it: blocks per
// WRITE SAME when the target states no limit, and bytes per WRITE of zeroes.
constexpr std::uint32_t kWriteSameBlocks = 1u << 16;
constexpr std::size_t kZeroWriteBytes = 1u << 20;

std::uint64_t now_ms() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

// The same ISID on every login of one copy: a reconnect reinstates the
// session the remote target may still hold, and two copies on one target
// (or two LUNs' copies) are distinct nexuses.
std::uint32_t isid_of(const std::string& label) {
  std::uint32_t h = 2166136261u;
  for (unsigned char c : label) h = (h ^ c) * 16777619u;
  return h & 0x3fffff;  // 22 bits: what the random ISID type carries
}

// The ISID's qualifier: which store of the copy this is in this process.
// A reload opens the LU's replacement (and a new store of each copy) while
// the old LU still writes through its own: with one ISID, the new login
// would reinstate the old session and fail the old LU's writes in flight.
// The first store of a copy gets 0, so a restarted daemon still reinstates
// the session a crash left on the remote target.
std::uint32_t isid_qualifier_of(const std::string& label) {
  static std::mutex mu;
  static std::map<std::string, std::uint32_t> opened;
  std::lock_guard lock(mu);
  return opened[label]++ & 0xffff;
}

// libiscsi's last error on ctx, for a log line: without the full stop and
// newline it sometimes ends with.
std::string error_of(iscsi_context* ctx) {
  std::string e = iscsi_get_error(ctx);
  while (!e.empty() && (e.back() == '\n' || e.back() == ' ' || e.back() == '.')) e.pop_back();
  return e.empty() ? std::string("connection lost") : e;
}

// How one piece of an unmap or zeroing reaches the remote LUN, best first:
// UNMAP, or WRITE SAME(16) with its UNMAP bit, where the LUN says its
// deallocated blocks read as zeroes (LBPRZ) and it takes that command; WRITE
// SAME(16) of a zero block; WRITE(16)s of zeroes where it refuses WRITE SAME.
enum class ZeroMethod : std::uint8_t { unmap, write_same_unmap, write_same, zero_writes };

const char* name_of(ZeroMethod m) {
  switch (m) {
    case ZeroMethod::unmap:
      return "UNMAP";
    case ZeroMethod::write_same_unmap:
      return "WRITE SAME with UNMAP";
    case ZeroMethod::write_same:
      return "WRITE SAME of zeroes";
    case ZeroMethod::zero_writes:
      return "writes of zeroes";
  }
  return "?";
}

// A command's status as an errno for the mirror: GOOD is 0.
int result_of(int status, const scsi_task* t) {
  if (status == SCSI_STATUS_GOOD) return 0;
  if (status == SCSI_STATUS_CANCELLED) return -ENOTCONN;  // the connection went away
  if (status == SCSI_STATUS_TIMEOUT) return -ETIMEDOUT;
  if (status == SCSI_STATUS_CHECK_CONDITION && t && t->sense.key == SCSI_SENSE_NOT_READY)
    return -ENOTCONN;
  return -EIO;
}

}  // namespace

// One operation on its way to the initiator thread and back: queued under
// the mutex, issued as a libiscsi task, handed back to the reactor that
// started it (it is the IoOp ForeignCompletions carries).
struct IscsiCopyBackend::Request final : reactor::IoOp {
  Kind kind;
  void* buf;
  std::size_t len;
  std::uint64_t offset;
  IoOp* op;
  reactor::ForeignCompletions* home;
  Initiator* owner = nullptr;
  scsi_task* task = nullptr;
  scsi_iovec iov{};  // a read lands in the caller's buffer through it
  // A read or write larger than the remote LUN takes goes as pieces, one
  // after another: bytes done, and the piece in flight.
  std::size_t done = 0;
  std::size_t piece = 0;
  std::uint64_t issued_ms = 0;
  unsigned unit_attentions = 0;  // answered with so far (each one re-issued)
  // An unmap or zeroing: how the piece in flight goes, the UNMAP's
  // descriptor (libiscsi keeps a pointer to it), whether the last step, a
  // SYNCHRONIZE CACHE, is in flight, and whether it may be left out (the
  // caller's next unmap syncs them all).
  ZeroMethod method = ZeroMethod::unmap;
  unmap_list range{};
  bool syncing = false;
  bool more_follow = false;

  Request(Kind k, void* b, std::size_t l, std::uint64_t o, IoOp* caller,
          reactor::ForeignCompletions* h)
      : kind(k), buf(b), len(l), offset(o), op(caller), home(h) {}

  // On the reactor that started it. A read or write completes with its
  // length, the rest with 0.
  void on_complete(int result) override {
    if (result == 0 && (kind == Kind::read || kind == Kind::write)) result = static_cast<int>(len);
    IoOp* caller = op;
    delete this;
    caller->on_complete(result);
  }
};

class IscsiCopyBackend::Initiator {
 public:
  explicit Initiator(const IscsiCopyBackendOptions& o)
      : o_(o),
        isid_qualifier_(isid_qualifier_of(o.label)),
        size_(o.min_size),
        backoff_ms_(o.backoff_min_ms) {
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0) throw std::runtime_error(o_.label + ": cannot create an eventfd");
    thread_ = std::thread([this] { run(); });
  }

  ~Initiator() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    wake();
    thread_.join();
    ::close(wake_fd_);
  }

  // Waits until the first login ended (either way) or wait_ms passed; what
  // refuses the copy (a size or block size mismatch), or "".
  std::string wait_first_connect(unsigned wait_ms) {
    std::unique_lock lock(first_mu_);
    first_cv_.wait_for(lock, std::chrono::milliseconds(wait_ms), [this] { return first_done_; });
    return refused_;
  }

  // Any reactor thread.
  void submit(Request* r) {
    r->owner = this;
    {
      std::lock_guard lock(mu_);
      queue_.push_back(r);
    }
    wake();
  }

  bool connected() const { return connected_.load(std::memory_order_acquire); }
  Backend::RemoteLink link() const {
    std::lock_guard lock(link_mu_);
    return link_;
  }
  std::uint64_t connections() const { return connections_.load(std::memory_order_acquire); }
  std::uint64_t size() const { return size_.load(std::memory_order_relaxed); }

 private:
  enum class Phase : std::uint8_t { idle, connecting, connected };

  void wake() {
    const std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
  }

  bool stopping() {
    std::lock_guard lock(mu_);
    return stopping_;
  }

  void run() {
    start_connect();
    while (!stopping()) {
      pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {-1, 0, 0}};
      nfds_t n = 1;
      if (ctx_ != nullptr) {
        fds[1] = {iscsi_get_fd(ctx_), static_cast<short>(iscsi_which_events(ctx_)), 0};
        n = 2;
      }
      ::poll(fds, n, poll_timeout_ms());
      if (fds[0].revents != 0) {
        std::uint64_t v;
        [[maybe_unused]] auto r = ::read(wake_fd_, &v, sizeof v);
      }
      if (ctx_ != nullptr && n == 2 && fds[1].revents != 0 &&
          iscsi_service(ctx_, fds[1].revents) < 0)
        fail_later(error_of(ctx_));
      // The context is destroyed here, never inside one of its callbacks.
      if (!failure_.empty()) drop(std::exchange(failure_, std::string()));
      issue_queued();
      check_deadlines();
      if (phase_ == Phase::idle && now_ms() >= next_attempt_ms_ && refused_once_.empty())
        start_connect();
    }
    phase_ = Phase::idle;
    drop_context();
    issue_queued();  // fails what is left: not connected
  }

  int poll_timeout_ms() const {
    if (phase_ != Phase::idle) return kTickMs;
    if (!refused_once_.empty()) return -1;  // no more attempts: only requests and the stop wake it
    const std::uint64_t now = now_ms();
    return next_attempt_ms_ > now ? static_cast<int>(std::min<std::uint64_t>(next_attempt_ms_ - now,
                                                                             o_.backoff_max_ms))
                                  : 0;
  }

  // --- the login: TCP connect, iSCSI login, TEST UNIT READY, READ CAPACITY(16) ---

  void start_connect() {
    ctx_ = iscsi_create_context(o_.initiator.c_str());
    if (ctx_ == nullptr) return connect_failed("cannot create an iSCSI context");
    iscsi_set_targetname(ctx_, o_.target.c_str());
    iscsi_set_session_type(ctx_, ISCSI_SESSION_NORMAL);
    iscsi_set_header_digest(ctx_, ISCSI_HEADER_DIGEST_NONE_CRC32C);
    // A lost connection must fail the commands in flight to the mirror (the
    // copy leaves the in-sync set), not be retried behind its back.
    iscsi_set_noautoreconnect(ctx_, 1);
    iscsi_set_isid_random(ctx_, isid_of(o_.label), isid_qualifier_);
    if (!o_.chap_user.empty())
      iscsi_set_initiator_username_pwd(ctx_, o_.chap_user.c_str(), o_.chap_secret.c_str());
    phase_ = Phase::connecting;
    phase_deadline_ms_ = now_ms() + o_.command_timeout_ms;
    unit_attentions_ = 0;
    if (iscsi_connect_async(ctx_, o_.portal.c_str(), &Initiator::tcp_connected_cb, this) != 0)
      connect_failed(error_of(ctx_));
  }

  static void tcp_connected_cb(iscsi_context*, int status, void*, void* priv) {
    auto* self = static_cast<Initiator*>(priv);
    if (self->phase_ != Phase::connecting) return;  // inside destroy: let go
    if (status != SCSI_STATUS_GOOD) return self->fail_later(error_of(self->ctx_));
    if (iscsi_login_async(self->ctx_, &Initiator::login_cb, self) != 0)
      self->fail_later(error_of(self->ctx_));
  }

  static void login_cb(iscsi_context*, int status, void*, void* priv) {
    auto* self = static_cast<Initiator*>(priv);
    if (self->phase_ != Phase::connecting) return;
    if (status != SCSI_STATUS_GOOD)
      return self->fail_later(std::string("login refused: ") + error_of(self->ctx_));
    self->send_test_unit_ready();
  }

  void send_test_unit_ready() {
    login_task_ =
        iscsi_testunitready_task(ctx_, static_cast<int>(o_.lun), &Initiator::tur_cb, this);
    if (login_task_ == nullptr) fail_later(error_of(ctx_));
  }

  // command_data is not used: a cancelled command has none, and the task is
  // login_task_ either way.
  static void tur_cb(iscsi_context*, int status, void*, void* priv) {
    auto* self = static_cast<Initiator*>(priv);
    scsi_task* t = std::exchange(self->login_task_, nullptr);
    const bool unit_attention =
        status == SCSI_STATUS_CHECK_CONDITION && t && t->sense.key == SCSI_SENSE_UNIT_ATTENTION;
    std::string sense = t && status == SCSI_STATUS_CHECK_CONDITION
                            ? std::string(scsi_sense_key_str(t->sense.key))
                            : "status " + std::to_string(status);
    if (t) scsi_free_scsi_task(t);
    if (self->phase_ != Phase::connecting) return;
    if (unit_attention && ++self->unit_attentions_ <= kMaxLoginUnitAttentions)
      return self->send_test_unit_ready();
    if (status != SCSI_STATUS_GOOD)
      return self->fail_later("LUN " + std::to_string(self->o_.lun) +
                              " does not answer TEST UNIT READY: " + sense);
    // The largest transfer the LUN takes (VPD Block Limits), then its size.
    self->login_task_ =
        iscsi_inquiry_task(self->ctx_, static_cast<int>(self->o_.lun), 1,
                           SCSI_INQUIRY_PAGECODE_BLOCK_LIMITS, 255, &block_limits_cb, self);
    if (self->login_task_ == nullptr) self->fail_later(error_of(self->ctx_));
  }

  // A target without the Block Limits page states no maximum: none is assumed.
  static void block_limits_cb(iscsi_context*, int status, void*, void* priv) {
    auto* self = static_cast<Initiator*>(priv);
    scsi_task* t = std::exchange(self->login_task_, nullptr);
    std::uint32_t max_blocks = 0;
    self->max_unmap_blocks_ = 0;
    self->max_write_same_blocks_ = kWriteSameBlocks;
    if (status == SCSI_STATUS_GOOD && t) {
      if (auto* bl = static_cast<scsi_inquiry_block_limits*>(scsi_datain_unmarshall(t))) {
        max_blocks = bl->max_xfer_len;
        self->max_unmap_blocks_ = bl->max_unmap;
        if (bl->max_ws_len != 0 && bl->max_ws_len < kWriteSameBlocks)
          self->max_write_same_blocks_ = static_cast<std::uint32_t>(bl->max_ws_len);
      }
    }
    if (t) scsi_free_scsi_task(t);
    if (self->phase_ != Phase::connecting) return;
    // CHECK CONDITION: the page is not there. Anything else but GOOD is the
    // connection's failure, not the LUN's answer.
    if (status != SCSI_STATUS_GOOD && status != SCSI_STATUS_CHECK_CONDITION)
      return self->fail_later("INQUIRY (Block Limits) got no answer");
    self->max_transfer_bytes_ = max_blocks == 0 || max_blocks > SIZE_MAX / self->o_.block_size
                                    ? 0
                                    : std::size_t{max_blocks} * self->o_.block_size;
    // Then what it does with UNMAP and WRITE SAME (VPD Logical Block
    // Provisioning).
    self->login_task_ = iscsi_inquiry_task(self->ctx_, static_cast<int>(self->o_.lun), 1,
                                           SCSI_INQUIRY_PAGECODE_LOGICAL_BLOCK_PROVISIONING, 255,
                                           &provisioning_cb, self);
    if (self->login_task_ == nullptr) self->fail_later(error_of(self->ctx_));
  }

  // A LUN without the page deallocates nothing: unmaps go as WRITE SAME of
  // zeroes. Deallocation is used only where the LUN promises that the
  // blocks then read as zeroes (LBPRZ), as every other copy's do.
  static void provisioning_cb(iscsi_context*, int status, void*, void* priv) {
    auto* self = static_cast<Initiator*>(priv);
    scsi_task* t = std::exchange(self->login_task_, nullptr);
    bool lbpu = false;
    bool lbpws = false;
    bool lbprz = false;
    if (status == SCSI_STATUS_GOOD && t) {
      if (auto* lbp =
              static_cast<scsi_inquiry_logical_block_provisioning*>(scsi_datain_unmarshall(t))) {
        lbpu = lbp->lbpu != 0;
        lbpws = lbp->lbpws != 0;
        lbprz = lbp->lbprz != 0;
      }
    }
    if (t) scsi_free_scsi_task(t);
    if (self->phase_ != Phase::connecting) return;
    if (status != SCSI_STATUS_GOOD && status != SCSI_STATUS_CHECK_CONDITION)
      return self->fail_later("INQUIRY (Logical Block Provisioning) got no answer");
    self->unmap_method_ = !lbprz                                 ? ZeroMethod::write_same
                          : lbpu && self->max_unmap_blocks_ != 0 ? ZeroMethod::unmap
                          : lbpws                                ? ZeroMethod::write_same_unmap
                                                                 : ZeroMethod::write_same;
    self->write_same_refused_ = false;
    self->login_task_ =
        iscsi_readcapacity16_task(self->ctx_, static_cast<int>(self->o_.lun), &capacity_cb, self);
    if (self->login_task_ == nullptr) self->fail_later(error_of(self->ctx_));
  }

  static void capacity_cb(iscsi_context*, int status, void*, void* priv) {
    auto* self = static_cast<Initiator*>(priv);
    scsi_task* t = std::exchange(self->login_task_, nullptr);
    std::uint64_t bytes = 0;
    std::uint32_t block = 0;
    if (status == SCSI_STATUS_GOOD && t) {
      if (auto* rc = static_cast<scsi_readcapacity16*>(scsi_datain_unmarshall(t))) {
        block = rc->block_length;
        bytes = (rc->returned_lba + 1) * block;
      }
    }
    if (t) scsi_free_scsi_task(t);
    if (self->phase_ != Phase::connecting) return;
    if (block == 0) return self->fail_later("READ CAPACITY(16) failed");
    self->check_capacity(bytes, block);
  }

  void check_capacity(std::uint64_t bytes, std::uint32_t block) {
    std::string mismatch;
    if (block != o_.block_size) {
      mismatch = "the remote LUN has " + std::to_string(block) + "-byte blocks, this LUN " +
                 std::to_string(o_.block_size) + "-byte ones";
    } else if (bytes < o_.min_size) {
      mismatch = "the remote LUN is " + std::to_string(bytes) +
                 " bytes, smaller than the primary (" + std::to_string(o_.min_size) + " bytes)";
    }
    if (!mismatch.empty()) {
      bool at_start;
      {
        std::lock_guard lock(first_mu_);
        at_start = !first_done_;
        if (at_start) refused_ = mismatch;  // the constructor throws it
      }
      // Not written to: a LUN swapped under the copy waits for an operator
      // (a restart checks again).
      refused_once_ = mismatch;
      if (!at_start)
        spdlog::error("{}: {} refused: {}; no longer reconnecting", o_.label, o_.url, mismatch);
      return fail_later(mismatch);
    }
    size_.store(bytes, std::memory_order_relaxed);
    {
      std::lock_guard lock(link_mu_);
      link_ = {max_transfer_bytes_, name_of(unmap_method_)};
    }
    // While no command is in flight only TCP can tell that the remote host
    // vanished (a crash, a cut cable): keepalives find it within ~11 s.
    iscsi_set_tcp_keepalive(ctx_, 5, 3, 2);
    phase_ = Phase::connected;
    last_heard_ms_ = now_ms();
    ping_sent_ms_ = 0;
    backoff_ms_ = o_.backoff_min_ms;
    connections_.fetch_add(1, std::memory_order_acq_rel);
    connected_.store(true, std::memory_order_release);
    const std::string limit =
        max_transfer_bytes_ != 0
            ? ", at most " + std::to_string(max_transfer_bytes_) + " bytes a command"
            : std::string();
    spdlog::info("{}: connected to {} ({} bytes, {}-byte blocks{}; unmaps go as {})", o_.label,
                 o_.url, bytes, block, limit, name_of(unmap_method_));
    told_unreachable_ = false;
    first_login_ended();
  }

  void first_login_ended() {
    std::lock_guard lock(first_mu_);
    first_done_ = true;
    first_cv_.notify_all();
  }

  // A callback found the login failed or the connection broken: the loop
  // drops the context once the callback returned. The first reason counts.
  void fail_later(std::string why) {
    if (failure_.empty()) failure_ = why.empty() ? std::string("connection lost") : std::move(why);
  }

  // A login attempt failed: logged once until the copy connects again.
  void connect_failed(const std::string& why) {
    phase_ = Phase::idle;
    drop_context();
    if (!refused_once_.empty()) return first_login_ended();  // logged; no more attempts
    if (!told_unreachable_) {
      spdlog::warn("{}: cannot connect to {}: {}; retrying in the background ({}..{} ms apart)",
                   o_.label, o_.url, why, o_.backoff_min_ms, o_.backoff_max_ms);
      told_unreachable_ = true;
    }
    schedule_reconnect();
    first_login_ended();
  }

  // The connection was lost (or stopped answering): commands in flight fail.
  void drop(const std::string& why) {
    if (phase_ != Phase::connected) return connect_failed(why);
    phase_ = Phase::idle;
    connected_.store(false, std::memory_order_release);
    drop_context();
    spdlog::warn("{}: connection to {} lost: {}; reconnecting in the background", o_.label, o_.url,
                 why);
    told_unreachable_ = true;  // the attempts that fail from now on are this state
    backoff_ms_ = o_.backoff_min_ms;
    schedule_reconnect();
  }

  void schedule_reconnect() {
    next_attempt_ms_ = now_ms() + backoff_ms_;
    backoff_ms_ = std::min(backoff_ms_ * 2, o_.backoff_max_ms);
  }

  // Destroys the context: the callbacks of commands in flight run inside
  // with SCSI_STATUS_CANCELLED (phase_ is not connecting, so the login's
  // let go of their task); what is still listed after it fails here.
  void drop_context() {
    connected_.store(false, std::memory_order_release);
    if (ctx_ != nullptr) {
      iscsi_context* c = std::exchange(ctx_, nullptr);
      iscsi_destroy_context(c);
    }
    if (login_task_ != nullptr) scsi_free_scsi_task(std::exchange(login_task_, nullptr));
    std::vector<Request*> left(inflight_.begin(), inflight_.end());
    for (Request* r : left) finish(r, -ENOTCONN);
  }

  // --- commands ---

  void issue_queued() {
    std::vector<Request*> batch;
    {
      std::lock_guard lock(mu_);
      batch.swap(queue_);
    }
    for (Request* r : batch) {
      if (phase_ != Phase::connected) {
        r->home->complete(r, -ENOTCONN);
      } else {
        issue(r);
      }
    }
  }

  void issue(Request* r) {
    if (r->kind == Kind::unmap || r->kind == Kind::zeroes) return issue_zeroing(r);
    const int lun = static_cast<int>(o_.lun);
    const int bs = static_cast<int>(o_.block_size);
    r->piece = r->len - r->done;
    if (max_transfer_bytes_ != 0) r->piece = std::min(r->piece, max_transfer_bytes_);
    const std::uint64_t lba = (r->offset + r->done) / o_.block_size;
    const auto len = static_cast<std::uint32_t>(r->piece);
    auto* at = static_cast<unsigned char*>(r->buf) + r->done;
    switch (r->kind) {
      case Kind::read:
        r->iov = {at, r->piece};
        r->task = iscsi_read16_iov_task(ctx_, lun, lba, len, bs, 0, 0, 0, 0, 0, &command_cb, r,
                                        &r->iov, 1);
        break;
      case Kind::write:
        // FUA always: a GOOD from the copy must mean durable there.
        r->task = iscsi_write16_task(ctx_, lun, lba, at, len, bs, 0, 0, 1, 0, 0, &command_cb, r);
        break;
      case Kind::flush:
        r->task = iscsi_synchronizecache16_task(ctx_, lun, 0, 0, 0, 0, &command_cb, r);
        break;
      case Kind::unmap:
      case Kind::zeroes:
        return;  // issue_zeroing's
    }
    issued(r);
  }

  void issued(Request* r) {
    if (r->task == nullptr) {
      spdlog::error("{}: libiscsi refused a command: {}", o_.label, error_of(ctx_));
      return r->home->complete(r, -EIO);
    }
    r->issued_ms = now_ms();
    inflight_.insert(r);
  }

  // An unmap or zeroing: its pieces one after another, each by the best
  // method the LUN takes (ZeroMethod), then one SYNCHRONIZE CACHE, since
  // neither UNMAP nor WRITE SAME has FUA: done, it is durable there, as a
  // write is. An unmap with more_follow leaves that to the next one.
  void issue_zeroing(Request* r) {
    // Never a WRITE SAME of 0 blocks: that would mean "to the end of the LUN".
    if (r->done >= r->len) r->syncing = true;
    if (r->syncing) return sync_zeroing(r);
    r->method = r->kind == Kind::zeroes ? ZeroMethod::write_same : unmap_method_;
    if (write_same_refused_ && r->method != ZeroMethod::unmap) r->method = ZeroMethod::zero_writes;
    const int lun = static_cast<int>(o_.lun);
    const std::uint64_t lba = (r->offset + r->done) / o_.block_size;
    const std::uint64_t blocks_left = (r->len - r->done) / o_.block_size;
    std::uint64_t blocks = 0;
    switch (r->method) {
      case ZeroMethod::unmap:
        blocks = std::min<std::uint64_t>(blocks_left, max_unmap_blocks_);
        r->range = {lba, static_cast<std::uint32_t>(blocks)};
        r->task = iscsi_unmap_task(ctx_, lun, 0, 0, &r->range, 1, &command_cb, r);
        break;
      case ZeroMethod::write_same_unmap:
      case ZeroMethod::write_same:
        blocks = std::min<std::uint64_t>(blocks_left, max_write_same_blocks_);
        r->task = iscsi_writesame16_task(
            ctx_, lun, lba, zeroes(), o_.block_size, static_cast<std::uint32_t>(blocks), 0,
            r->method == ZeroMethod::write_same_unmap, 0, 0, &command_cb, r);
        break;
      case ZeroMethod::zero_writes: {
        std::size_t most = kZeroWriteBytes;
        if (max_transfer_bytes_ != 0) most = std::min(most, max_transfer_bytes_);
        blocks = std::min<std::uint64_t>(blocks_left, most / o_.block_size);
        const auto bytes = static_cast<std::uint32_t>(blocks * o_.block_size);
        r->task =
            iscsi_write16_task(ctx_, lun, lba, zeroes(), bytes, static_cast<int>(o_.block_size), 0,
                               0, 1, 0, 0, &command_cb, r);
        break;
      }
    }
    r->piece = static_cast<std::size_t>(blocks * o_.block_size);
    issued(r);
  }

  void sync_zeroing(Request* r) {
    r->piece = 0;
    r->task =
        iscsi_synchronizecache16_task(ctx_, static_cast<int>(o_.lun), 0, 0, 0, 0, &command_cb, r);
    issued(r);
  }

  // Zeroes for WRITE SAME's one block and for writes of zeroes: allocated
  // once, only read by libiscsi.
  unsigned char* zeroes() {
    if (zeroes_.empty()) zeroes_.assign(std::max<std::size_t>(kZeroWriteBytes, o_.block_size), 0);
    return zeroes_.data();
  }

  // The remote target refused WRITE SAME itself (not the range): from now
  // on, until it connects again, zeroes go as writes, and the piece goes
  // again that way.
  static bool refuses_write_same(int status, const Request* r) {
    if (status != SCSI_STATUS_CHECK_CONDITION || r->task == nullptr || r->syncing) return false;
    if (r->method != ZeroMethod::write_same && r->method != ZeroMethod::write_same_unmap)
      return false;
    return r->task->sense.key == SCSI_SENSE_ILLEGAL_REQUEST &&
           (r->task->sense.ascq == SCSI_SENSE_ASCQ_INVALID_OPERATION_CODE ||
            r->task->sense.ascq == SCSI_SENSE_ASCQ_INVALID_FIELD_IN_CDB);
  }

  // A step of an unmap or zeroing succeeded: the next piece, the sync, or
  // the end.
  void zeroing_step_done(Request* r) {
    if (r->syncing) return finish(r, 0);
    r->done += r->piece;
    if (r->done < r->len) return reissue(r);
    if (r->kind == Kind::unmap && r->more_follow) return finish(r, 0);
    r->syncing = true;
    reissue(r);
  }

  void reissue(Request* r) {
    inflight_.erase(r);
    scsi_free_scsi_task(std::exchange(r->task, nullptr));
    issue(r);
  }

  // A UNIT ATTENTION says the command was not run (a reset, a reservation or
  // capacity change on the remote target, meant for every initiator); as
  // Linux's sd does, the command goes again rather than the copy failing.
  // A bound keeps a target that answers nothing else from looping forever.
  static constexpr unsigned kUnitAttentionRetries = 8;

  static bool unit_attention(int status, const scsi_task* t) {
    return status == SCSI_STATUS_CHECK_CONDITION && t != nullptr &&
           t->sense.key == SCSI_SENSE_UNIT_ATTENTION;
  }

  static void command_cb(iscsi_context*, int status, void*, void* priv) {
    auto* r = static_cast<Request*>(priv);
    Initiator* self = r->owner;
    if (unit_attention(status, r->task) && r->unit_attentions < kUnitAttentionRetries) {
      ++r->unit_attentions;
      spdlog::info("{}: unit attention from the copy ({:02x}/{:02x}): the command goes again",
                   self->o_.label, r->task->sense.ascq >> 8, r->task->sense.ascq & 0xff);
      self->inflight_.erase(r);
      scsi_free_scsi_task(std::exchange(r->task, nullptr));
      return self->issue(r);
    }
    if (refuses_write_same(status, r)) {
      spdlog::warn(
          "{}: the copy's target refuses WRITE SAME: unmaps and zeroing reach it as writes "
          "of zeroes until it connects again",
          self->o_.label);
      self->write_same_refused_ = true;
      return self->reissue(r);
    }
    const int result = result_of(status, r->task);
    if (result == 0 && (r->kind == Kind::unmap || r->kind == Kind::zeroes))
      return self->zeroing_step_done(r);
    if (result == 0 && r->done + r->piece < r->len) {
      r->done += r->piece;  // the next piece
      return self->reissue(r);
    }
    if (result == -EIO && r->task != nullptr && status == SCSI_STATUS_CHECK_CONDITION) {
      spdlog::warn("{}: a command failed: {} ({:02x}/{:02x}/{:02x})", self->o_.label,
                   scsi_sense_key_str(r->task->sense.key), static_cast<int>(r->task->sense.key),
                   r->task->sense.ascq >> 8, r->task->sense.ascq & 0xff);
    }
    self->finish(r, result);
  }

  void finish(Request* r, int result) {
    if (result != -ENOTCONN) last_heard_ms_ = now_ms();
    inflight_.erase(r);
    if (r->task != nullptr) scsi_free_scsi_task(std::exchange(r->task, nullptr));
    r->home->complete(r, result);
  }

  // A login or a command that got no answer in time ends the connection: a
  // copy that does not answer within the bound errors.
  void check_deadlines() {
    const std::uint64_t now = now_ms();
    if (phase_ == Phase::connecting && now > phase_deadline_ms_)
      return connect_failed("no answer to the login within " +
                            std::to_string(o_.command_timeout_ms) + " ms");
    if (phase_ != Phase::connected) return;
    const bool overdue = std::any_of(inflight_.begin(), inflight_.end(), [&](const Request* r) {
      return now - r->issued_ms > o_.command_timeout_ms;
    });
    if (overdue)
      return drop("a command got no answer within " + std::to_string(o_.command_timeout_ms) +
                  " ms");
    if (ping_sent_ms_ != 0 && now - ping_sent_ms_ > o_.command_timeout_ms)
      return drop("no answer to a NOP-Out ping within " + std::to_string(o_.command_timeout_ms) +
                  " ms");
    if (ping_sent_ms_ == 0 && inflight_.empty() && now - last_heard_ms_ >= kIdlePingMs) ping();
  }

  void ping() {
    if (iscsi_nop_out_async(ctx_, &ping_cb, nullptr, 0, this) != 0)
      return fail_later("cannot send a NOP-Out ping: " + error_of(ctx_));
    ping_sent_ms_ = now_ms();
  }

  // Also called, cancelled, from inside the context's destruction.
  static void ping_cb(iscsi_context*, int status, void*, void* priv) {
    auto* self = static_cast<Initiator*>(priv);
    self->ping_sent_ms_ = 0;
    if (self->phase_ != Phase::connected) return;
    if (status != SCSI_STATUS_GOOD) return self->fail_later("the NOP-Out ping failed");
    self->last_heard_ms_ = now_ms();
  }

  const IscsiCopyBackendOptions& o_;
  const std::uint32_t isid_qualifier_;  // with isid_of(label): this store's ISID
  int wake_fd_ = -1;
  std::mutex mu_;  // guards queue_ and stopping_
  std::vector<Request*> queue_;
  bool stopping_ = false;
  std::atomic<bool> connected_{false};
  std::atomic<std::uint64_t> connections_{0};
  std::atomic<std::uint64_t> size_;
  // What the last login found, for copy list (any thread).
  mutable std::mutex link_mu_;
  Backend::RemoteLink link_;
  // Initiator thread only: the largest command the remote LUN takes (0: it
  // states none), and how its unmaps go (read at each login).
  std::size_t max_transfer_bytes_ = 0;
  std::uint32_t max_unmap_blocks_ = 0;
  std::uint32_t max_write_same_blocks_ = kWriteSameBlocks;
  ZeroMethod unmap_method_ = ZeroMethod::write_same;
  bool write_same_refused_ = false;
  std::vector<unsigned char> zeroes_;
  // The first login's outcome, for the constructor.
  std::mutex first_mu_;
  std::condition_variable first_cv_;
  bool first_done_ = false;
  std::string refused_;
  // The initiator thread's own.
  iscsi_context* ctx_ = nullptr;
  Phase phase_ = Phase::idle;
  std::uint64_t phase_deadline_ms_ = 0;
  std::uint64_t next_attempt_ms_ = 0;
  unsigned backoff_ms_;
  int unit_attentions_ = 0;
  std::string failure_;  // see fail_later
  scsi_task* login_task_ = nullptr;
  std::unordered_set<Request*> inflight_;
  // When the remote target last answered (a command, a ping), and when the
  // ping in flight went out (0: none).
  std::uint64_t last_heard_ms_ = 0;
  std::uint64_t ping_sent_ms_ = 0;
  bool told_unreachable_ = false;
  std::string refused_once_;  // set: the remote LUN does not fit; no more attempts
  std::thread thread_;        // last: started once everything above exists
};

IscsiCopyBackend::IscsiCopyBackend(IscsiCopyBackendOptions options)
    : options_(std::move(options)), initiator_(std::make_unique<Initiator>(options_)) {
  const std::string refused = initiator_->wait_first_connect(options_.first_connect_wait_ms);
  if (!refused.empty()) throw std::runtime_error(options_.url + ": " + refused);
  if (!connected()) {
    spdlog::info(
        "{}: not connected within its connect_wait of {} ms: the LUN is served without "
        "it until it is",
        options_.label, options_.first_connect_wait_ms);
  }
}

IscsiCopyBackend::~IscsiCopyBackend() = default;

std::uint64_t IscsiCopyBackend::size_bytes() const {
  return initiator_->size();
}
bool IscsiCopyBackend::connected() const {
  return initiator_->connected();
}
std::uint64_t IscsiCopyBackend::connections() const {
  return initiator_->connections();
}
std::optional<Backend::RemoteLink> IscsiCopyBackend::remote_link() const {
  return initiator_->link();
}

namespace {

// The reactor an I/O starts on, which its completion goes back to.
reactor::ForeignCompletions* home_of_caller() {
  reactor::IoEngine* engine = reactor::IoEngine::current();
  return engine ? engine->foreign_completions() : nullptr;
}

}  // namespace

void IscsiCopyBackend::submit(Kind kind, void* buf, std::size_t len, std::uint64_t offset, IoOp* op,
                              bool more_follow) {
  reactor::ForeignCompletions* home = home_of_caller();
  if (home == nullptr) {
    spdlog::error("{}: I/O from a thread without a reactor loop", options_.label);
    return op->on_complete(-EOPNOTSUPP);
  }
  // Not connected: at once, so the mirror takes the copy out without waiting.
  if (!initiator_->connected()) return op->on_complete(-ENOTCONN);
  auto* r = new Request(kind, buf, len, offset, op, home);
  r->more_follow = more_follow;
  home->expect();
  initiator_->submit(r);
}

void IscsiCopyBackend::read(void* buf, std::size_t len, std::uint64_t offset, IoOp* op) {
  submit(Kind::read, buf, len, offset, op);
}

void IscsiCopyBackend::write(const void* buf, std::size_t len, std::uint64_t offset, bool,
                             IoOp* op) {
  // libiscsi only reads from a write's buffer.
  submit(Kind::write, const_cast<void*>(buf), len, offset, op);
}

void IscsiCopyBackend::flush(IoOp* op) {
  submit(Kind::flush, nullptr, 0, 0, op);
}

void IscsiCopyBackend::unmap(std::uint64_t offset, std::uint64_t len, IoOp* op, bool more_follow) {
  submit(Kind::unmap, nullptr, static_cast<std::size_t>(len), offset, op, more_follow);
}

void IscsiCopyBackend::write_zeroes(std::uint64_t offset, std::uint64_t len, bool, IoOp* op) {
  submit(Kind::zeroes, nullptr, static_cast<std::size_t>(len), offset, op);
}

}  // namespace ringtgt::storage
