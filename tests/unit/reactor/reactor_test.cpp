// The reactor against a real io_uring ring, run on its own thread.
#include "ringtgt/reactor/reactor.hpp"

#include "ringtgt/reactor/foreign_completions.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace ringtgt::reactor {
namespace {

using namespace std::chrono_literals;

struct FnOp final : IoOp {
  std::function<void(int)> fn;
  explicit FnOp(std::function<void(int)> f) : fn(std::move(f)) {}
  void on_complete(int result) override { fn(result); }
};

// A reactor running on a thread of its own; stops and joins on destruction.
class ReactorThread {
 public:
  ReactorThread() {
    try {
      reactor = std::make_unique<Reactor>(0, 64);
    } catch (const IoUringUnavailable& e) {
      unavailable = e.what();
    }
  }
  void start(std::function<void()> before_run = {}) {
    thread = std::thread([this, before_run] {
      if (before_run) before_run();
      reactor->run();
      engine_after_run = IoEngine::current();
      returned.store(true);
    });
  }
  ~ReactorThread() {
    if (thread.joinable()) {
      reactor->stop();
      thread.join();
    }
  }
  // Runs fn on the reactor thread and waits for it.
  void call(std::function<void()> fn) {
    std::promise<void> done;
    reactor->post([&] {
      fn();
      done.set_value();
    });
    ASSERT_EQ(done.get_future().wait_for(5s), std::future_status::ready);
  }

  std::unique_ptr<Reactor> reactor;
  std::string unavailable;
  std::thread thread;
  std::atomic<bool> returned{false};
  IoEngine* engine_after_run = reinterpret_cast<IoEngine*>(1);
};

#define START_OR_SKIP(rt)                                                            \
  do {                                                                               \
    if (!(rt).reactor) GTEST_SKIP() << "io_uring unavailable: " << (rt).unavailable; \
  } while (0)

TEST(Reactor, PostRunsOnTheReactorThreadWithCurrentEngineSet) {
  ReactorThread rt;
  START_OR_SKIP(rt);
  EXPECT_EQ(IoEngine::current(), nullptr);
  rt.start();
  std::thread::id where;
  IoEngine* engine = nullptr;
  rt.call([&] {
    where = std::this_thread::get_id();
    engine = IoEngine::current();
  });
  EXPECT_EQ(where, rt.thread.get_id());
  EXPECT_EQ(engine, rt.reactor.get());
  EXPECT_EQ(IoEngine::current(), nullptr);  // not on this thread
  rt.reactor->stop();
  rt.thread.join();
  EXPECT_TRUE(rt.returned.load());
  EXPECT_EQ(rt.engine_after_run, nullptr);
}

TEST(Reactor, PostedFunctionsRunInOrder) {
  ReactorThread rt;
  START_OR_SKIP(rt);
  rt.start();
  std::vector<int> seen;
  for (int i = 0; i < 100; ++i) rt.reactor->post([&seen, i] { seen.push_back(i); });
  rt.call([] {});
  ASSERT_EQ(seen.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(seen[i], i);
}

TEST(Reactor, TickFiresAboutEveryQuarterSecond) {
  ReactorThread rt;
  START_OR_SKIP(rt);
  std::mutex mu;
  std::vector<Clock::time_point> ticks;
  std::thread::id tick_thread;
  rt.start([&] {
    rt.reactor->on_tick([&](Clock::time_point now) {
      std::lock_guard lock(mu);
      ticks.push_back(now);
      tick_thread = std::this_thread::get_id();
    });
  });
  std::this_thread::sleep_for(1300ms);
  const std::thread::id reactor_thread = rt.thread.get_id();
  rt.reactor->stop();
  rt.thread.join();
  std::lock_guard lock(mu);
  // 1.3 s at 250 ms: about 5 ticks; be lenient with a loaded machine.
  EXPECT_GE(ticks.size(), 3u);
  EXPECT_LE(ticks.size(), 7u);
  for (std::size_t i = 1; i < ticks.size(); ++i) {
    auto gap = ticks[i] - ticks[i - 1];
    EXPECT_GE(gap, 200ms) << i;
    EXPECT_LE(gap, 600ms) << i;
  }
  EXPECT_EQ(tick_thread, reactor_thread);
}

class TempFile {
 public:
  TempFile() {
    char tmpl[] = "/tmp/ringtgt-reactor-XXXXXX";
    fd = ::mkstemp(tmpl);
    path = tmpl;
  }
  ~TempFile() {
    if (fd >= 0) ::close(fd);
    ::unlink(path.c_str());
  }
  int fd = -1;
  std::string path;
};

TEST(Reactor, FileWriteReadFsyncCompleteOnTheReactorThread) {
  ReactorThread rt;
  START_OR_SKIP(rt);
  TempFile f;
  ASSERT_GE(f.fd, 0);
  rt.start();

  std::vector<std::uint8_t> out(4096), in(4096, 0);
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::uint8_t>(i * 31);
  std::promise<void> done;
  int write_res = 1, read_res = 1, sync_res = 1, fsync_res = 1;
  std::vector<std::thread::id> threads;
  FnOp fsync_op([&](int r) {
    fsync_res = r;
    threads.push_back(std::this_thread::get_id());
    done.set_value();
  });
  FnOp sync_op([&](int r) {
    sync_res = r;
    threads.push_back(std::this_thread::get_id());
    rt.reactor->fsync(f.fd, false, &fsync_op);
  });
  FnOp read_op([&](int r) {
    read_res = r;
    threads.push_back(std::this_thread::get_id());
    rt.reactor->fsync(f.fd, true, &sync_op);
  });
  FnOp write_op([&](int r) {
    write_res = r;
    threads.push_back(std::this_thread::get_id());
    rt.reactor->read(f.fd, in.data(), in.size(), 8192, &read_op);
  });
  rt.reactor->post([&] { rt.reactor->write(f.fd, out.data(), out.size(), 8192, 0, &write_op); });
  ASSERT_EQ(done.get_future().wait_for(5s), std::future_status::ready);
  EXPECT_EQ(write_res, 4096);
  EXPECT_EQ(read_res, 4096);
  EXPECT_EQ(sync_res, 0);
  EXPECT_EQ(fsync_res, 0);
  EXPECT_EQ(in, out);
  ASSERT_EQ(threads.size(), 4u);
  for (auto id : threads) EXPECT_EQ(id, rt.thread.get_id());
  struct stat st {};
  ASSERT_EQ(::fstat(f.fd, &st), 0);
  EXPECT_EQ(st.st_size, 8192 + 4096);
}

TEST(Reactor, DsyncWriteAndReadPastEnd) {
  ReactorThread rt;
  START_OR_SKIP(rt);
  TempFile f;
  rt.start();
  std::vector<std::uint8_t> buf(512, 7);
  std::promise<void> done;
  int w = 1, r = 1;
  FnOp read_op([&](int res) {
    r = res;
    done.set_value();
  });
  FnOp write_op([&](int res) {
    w = res;
    rt.reactor->read(f.fd, buf.data(), buf.size(), 1 << 20, &read_op);
  });
  rt.reactor->post(
      [&] { rt.reactor->write(f.fd, buf.data(), buf.size(), 0, RWF_DSYNC, &write_op); });
  ASSERT_EQ(done.get_future().wait_for(5s), std::future_status::ready);
  EXPECT_EQ(w, 512);
  EXPECT_EQ(r, 0);  // end of file
}

TEST(Reactor, ErrorsComeBackAsNegativeErrno) {
  ReactorThread rt;
  START_OR_SKIP(rt);
  rt.start();
  std::promise<int> done;
  char c;
  FnOp op([&](int r) { done.set_value(r); });
  rt.reactor->post([&] { rt.reactor->read(-1, &c, 1, 0, &op); });
  auto fut = done.get_future();
  ASSERT_EQ(fut.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(fut.get(), -EBADF);
}

TEST(Reactor, RecvAndSendmsgOverASocketpair) {
  ReactorThread rt;
  START_OR_SKIP(rt);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  rt.start();

  char head[] = "hello ";
  char tail[] = "reactor";
  iovec iov[2] = {{head, 6}, {tail, 7}};
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = 2;
  std::promise<int> sent;
  FnOp send_op([&](int r) { sent.set_value(r); });
  rt.reactor->post([&] { rt.reactor->sendmsg(sv[0], &msg, 0, &send_op); });
  auto sf = sent.get_future();
  ASSERT_EQ(sf.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(sf.get(), 13);
  char got[32] = {};
  ASSERT_EQ(::read(sv[1], got, sizeof got), 13);
  EXPECT_STREQ(got, "hello reactor");

  // A receive waits for data that arrives later.
  char rbuf[16] = {};
  std::promise<int> recvd;
  std::thread::id where;
  FnOp recv_op([&](int r) {
    where = std::this_thread::get_id();
    recvd.set_value(r);
  });
  rt.reactor->post([&] { rt.reactor->recv(sv[1], rbuf, sizeof rbuf, 0, &recv_op); });
  auto rf = recvd.get_future();
  EXPECT_EQ(rf.wait_for(100ms), std::future_status::timeout);
  ASSERT_EQ(::write(sv[0], "ping", 4), 4);
  ASSERT_EQ(rf.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(rf.get(), 4);
  EXPECT_EQ(std::memcmp(rbuf, "ping", 4), 0);
  EXPECT_EQ(where, rt.thread.get_id());

  // The peer closes: a receive completes with 0.
  std::promise<int> eof;
  FnOp eof_op([&](int r) { eof.set_value(r); });
  rt.reactor->post([&] { rt.reactor->recv(sv[1], rbuf, sizeof rbuf, 0, &eof_op); });
  ::close(sv[0]);
  auto ef = eof.get_future();
  ASSERT_EQ(ef.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(ef.get(), 0);
  ::close(sv[1]);
}

TEST(Reactor, StopWaitsForInFlightOperations) {
  ReactorThread rt;
  START_OR_SKIP(rt);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  rt.start();
  char buf[8] = {};
  std::atomic<int> result{1};
  FnOp op([&](int r) { result.store(r); });
  rt.call([&] { rt.reactor->recv(sv[1], buf, sizeof buf, 0, &op); });
  rt.reactor->stop();
  std::this_thread::sleep_for(400ms);  // more than a tick
  EXPECT_FALSE(rt.returned.load()) << "run() returned with a receive in flight";
  ASSERT_EQ(::write(sv[0], "bye", 3), 3);
  rt.thread.join();
  EXPECT_TRUE(rt.returned.load());
  EXPECT_EQ(result.load(), 3);
  ::close(sv[0]);
  ::close(sv[1]);
}

TEST(Reactor, StopWithNothingInFlightReturnsPromptly) {
  ReactorThread rt;
  START_OR_SKIP(rt);
  rt.start();
  rt.call([] {});
  auto t0 = Clock::now();
  rt.reactor->stop();
  rt.thread.join();
  EXPECT_LT(Clock::now() - t0, 1s);
}

TEST(Reactor, ProbeDescriptionSaysIoUring) {
  std::string d = Reactor::probe_description();
  EXPECT_NE(d.find("io_uring"), std::string::npos) << d;
}

TEST(IoEngine, SetCurrentIsPerThread) {
  struct Dummy final : IoEngine {
    void read(int, void*, std::size_t, std::uint64_t, IoOp*) override {}
    void write(int, const void*, std::size_t, std::uint64_t, int, IoOp*) override {}
    void fsync(int, bool, IoOp*) override {}
    void recv(int, void*, std::size_t, int, IoOp*) override {}
    void sendmsg(int, const msghdr*, int, IoOp*) override {}
  } dummy;
  IoEngine::set_current(&dummy);
  EXPECT_EQ(IoEngine::current(), &dummy);
  IoEngine* other = &dummy;
  std::thread([&] { other = IoEngine::current(); }).join();
  EXPECT_EQ(other, nullptr);
  IoEngine::set_current(nullptr);
  EXPECT_EQ(IoEngine::current(), nullptr);
}

TEST(Reactor, DurableWriteReportsItsLengthAndManyRunAtOnce) {
  ReactorThread rt;
  START_OR_SKIP(rt);
  TempFile f;
  ASSERT_GE(f.fd, 0);
  rt.start();

  constexpr int kWrites = 64;
  std::vector<std::vector<std::uint8_t>> blocks(kWrites);
  std::vector<int> results(kWrites, 1);
  std::vector<std::unique_ptr<FnOp>> ops;
  std::promise<void> done;
  int left = kWrites;
  for (int i = 0; i < kWrites; ++i) {
    blocks[i].assign(4096, static_cast<std::uint8_t>(i + 1));
    ops.push_back(std::make_unique<FnOp>([&, i](int r) {
      results[i] = r;
      if (--left == 0) done.set_value();
    }));
  }
  rt.reactor->post([&] {
    for (int i = 0; i < kWrites; ++i)
      rt.reactor->write_durable(f.fd, blocks[i].data(), 4096, std::uint64_t(i) * 4096,
                                ops[i].get());
  });
  ASSERT_EQ(done.get_future().wait_for(10s), std::future_status::ready);
  for (int i = 0; i < kWrites; ++i) EXPECT_EQ(results[i], 4096) << "write " << i;
  std::vector<std::uint8_t> in(4096);
  for (int i = 0; i < kWrites; ++i) {
    ASSERT_EQ(::pread(f.fd, in.data(), in.size(), i * 4096), 4096);
    EXPECT_EQ(in, blocks[i]) << "block " << i;
  }
}

TEST(Reactor, DurableWriteThatFailsReportsAnErrorOnceAndStopStillReturns) {
  ReactorThread rt;
  START_OR_SKIP(rt);
  TempFile f;
  ASSERT_GE(f.fd, 0);
  int ro = ::open(f.path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(ro, 0);
  rt.start();
  std::vector<std::uint8_t> block(4096, 7);
  std::promise<int> done;
  int calls = 0;
  FnOp op([&](int r) {
    if (++calls == 1) done.set_value(r);
  });
  rt.reactor->post([&] { rt.reactor->write_durable(ro, block.data(), block.size(), 0, &op); });
  auto fut = done.get_future();
  ASSERT_EQ(fut.wait_for(5s), std::future_status::ready);
  EXPECT_LT(fut.get(), 0);
  rt.reactor->stop();
  rt.thread.join();
  EXPECT_EQ(calls, 1);
  ::close(ro);
}

TEST(Reactor, DurableHolePunchReadsZeroesAndLeavesAHole) {
  ReactorThread rt;
  START_OR_SKIP(rt);
  TempFile f;
  ASSERT_GE(f.fd, 0);
  std::vector<std::uint8_t> data(64 * 1024, 0x5a);
  ASSERT_EQ(::pwrite(f.fd, data.data(), data.size(), 0), static_cast<ssize_t>(data.size()));
  rt.start();
  std::promise<int> punched, zeroed;
  FnOp punch([&](int r) { punched.set_value(r); });
  FnOp zero([&](int r) { zeroed.set_value(r); });
  rt.reactor->post([&] {
    rt.reactor->fallocate_durable(f.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 16384, 16384,
                                  &punch);
    rt.reactor->fallocate(f.fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 4096, 4096, &zero);
  });
  auto p = punched.get_future();
  auto z = zeroed.get_future();
  ASSERT_EQ(p.wait_for(5s), std::future_status::ready);
  ASSERT_EQ(z.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(p.get(), 0);
  EXPECT_EQ(z.get(), 0);
  std::vector<std::uint8_t> in(data.size());
  ASSERT_EQ(::pread(f.fd, in.data(), in.size(), 0), static_cast<ssize_t>(in.size()));
  for (std::size_t i = 0; i < in.size(); ++i) {
    const bool zeroes = (i >= 4096 && i < 8192) || (i >= 16384 && i < 32768);
    ASSERT_EQ(in[i], zeroes ? 0 : 0x5a) << "byte " << i;
  }
  EXPECT_EQ(::lseek(f.fd, 16384, SEEK_HOLE), 16384);
  EXPECT_EQ(::lseek(f.fd, 16384, SEEK_DATA), 32768);
}

TEST(Reactor, DurableFallocateThatFailsReportsAnErrorOnce) {
  ReactorThread rt;
  START_OR_SKIP(rt);
  TempFile f;
  ASSERT_GE(f.fd, 0);
  int ro = ::open(f.path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(ro, 0);
  rt.start();
  std::promise<int> done;
  int calls = 0;
  FnOp op([&](int r) {
    if (++calls == 1) done.set_value(r);
  });
  rt.reactor->post([&] {
    rt.reactor->fallocate_durable(ro, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096, &op);
  });
  auto fut = done.get_future();
  ASSERT_EQ(fut.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(fut.get(), -EBADF);
  rt.reactor->stop();
  rt.thread.join();
  EXPECT_EQ(calls, 1);
  ::close(ro);
}

// Completions from threads the reactor does not own (librbd's callbacks):
// recorded with the thread they ran on.
struct RecordingOp final : IoOp {
  std::thread::id thread;
  int result = 1;
  std::atomic<bool> done{false};
  std::vector<int>* order = nullptr;
  int id = 0;
  void on_complete(int r) override {
    thread = std::this_thread::get_id();
    result = r;
    if (order) order->push_back(id);
    done.store(true);
  }
};

TEST(ForeignCompletions, AForeignThreadsCompletionRunsOnTheReactorInOrder) {
  ReactorThread rt;
  START_OR_SKIP(rt);
  rt.start();
  constexpr int kOps = 100;
  std::vector<RecordingOp> ops(kOps);
  std::vector<int> order;  // touched only on the reactor thread
  ForeignCompletions* home = nullptr;
  rt.call([&] {
    home = IoEngine::current()->foreign_completions();
    for (int i = 0; i < kOps; ++i) {
      ops[i].order = &order;
      ops[i].id = i;
      home->expect();
    }
  });
  ASSERT_NE(home, nullptr);
  // One foreign thread completes them all, in order, with its own results.
  std::thread foreign([&] {
    for (int i = 0; i < kOps; ++i) home->complete(&ops[i], i * 10);
  });
  foreign.join();
  for (auto& op : ops) {
    for (int i = 0; i < 500 && !op.done.load(); ++i) std::this_thread::sleep_for(10ms);
    ASSERT_TRUE(op.done.load());
  }
  for (int i = 0; i < kOps; ++i) {
    EXPECT_EQ(ops[i].thread, rt.thread.get_id());
    EXPECT_EQ(ops[i].result, i * 10);
  }
  rt.call([&] {
    std::vector<int> want(kOps);
    for (int i = 0; i < kOps; ++i) want[i] = i;
    EXPECT_EQ(order, want);
    EXPECT_EQ(home->outstanding(), 0u);
  });
}

TEST(ForeignCompletions, StopWaitsForExpectedCompletions) {
  ReactorThread rt;
  START_OR_SKIP(rt);
  rt.start();
  RecordingOp op;
  ForeignCompletions* home = nullptr;
  rt.call([&] {
    home = IoEngine::current()->foreign_completions();
    home->expect();
  });
  rt.reactor->stop();
  std::this_thread::sleep_for(300ms);
  EXPECT_FALSE(rt.returned.load()) << "run() returned with a foreign completion outstanding";
  home->complete(&op, 7);
  rt.thread.join();
  EXPECT_TRUE(rt.returned.load());
  EXPECT_TRUE(op.done.load());
  EXPECT_EQ(op.result, 7);
}

TEST(ForeignCompletions, AnEngineWithoutALoopHasNone) {
  struct Bare final : IoEngine {
    void read(int, void*, std::size_t, std::uint64_t, IoOp*) override {}
    void write(int, const void*, std::size_t, std::uint64_t, int, IoOp*) override {}
    void fsync(int, bool, IoOp*) override {}
    void recv(int, void*, std::size_t, int, IoOp*) override {}
    void sendmsg(int, const msghdr*, int, IoOp*) override {}
  } bare;
  EXPECT_EQ(bare.foreign_completions(), nullptr);
}

}  // namespace
}  // namespace ringtgt::reactor

// ---- heartbeat and busy time (read by the systemd watchdog and /metrics) ----
namespace ringtgt::reactor {
namespace {

TEST(Reactor, HeartbeatStopsWhileTheLoopIsBlockedAndBusyTimeCountsIt) {
  ReactorThread rt;
  START_OR_SKIP(rt);
  const metrics::WorkerCounters& c = rt.reactor->counters();
  rt.start();
  std::this_thread::sleep_for(700ms);
  const std::uint64_t idle_beats = c.heartbeat.get();
  EXPECT_GE(idle_beats, 2u);                                  // ticking every 250 ms
  EXPECT_LT(c.busy_ns.get(), 500'000'000u);                   // an idle loop is mostly waiting
  rt.reactor->post([] { std::this_thread::sleep_for(1s); });  // a stuck reactor
  std::this_thread::sleep_for(150ms);
  const std::uint64_t stalled_at = c.heartbeat.get();
  std::this_thread::sleep_for(600ms);
  EXPECT_EQ(c.heartbeat.get(), stalled_at) << "a blocked loop must not tick";
  std::this_thread::sleep_for(1s);  // the blockage is over
  EXPECT_GT(c.heartbeat.get(), stalled_at);
  EXPECT_GE(c.busy_ns.get(), 900'000'000u) << "the second spent blocked is busy time";
}

}  // namespace
}  // namespace ringtgt::reactor
