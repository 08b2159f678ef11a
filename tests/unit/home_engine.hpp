// A reactor stand-in for unit tests of work done off the reactor thread (the
// APTPL file, the mirror's activity log): an IoEngine, current on the test's
// thread, whose ForeignCompletions wake an eventfd as a Reactor's do, so a
// test sees when the work comes back to "its" thread and runs it there.
#pragma once

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>

#include "ringtgt/reactor/foreign_completions.hpp"
#include "ringtgt/reactor/io_engine.hpp"

namespace ringtgt::testing {

struct HomeEngine final : reactor::IoEngine {
  HomeEngine() : wake(::eventfd(0, EFD_CLOEXEC)), foreign(wake) { set_current(this); }
  ~HomeEngine() override {
    set_current(nullptr);
    ::close(wake);
  }
  void read(int, void*, std::size_t, std::uint64_t, reactor::IoOp*) override {}
  void write(int, const void*, std::size_t, std::uint64_t, int, reactor::IoOp*) override {}
  void fsync(int, bool, reactor::IoOp*) override {}
  void recv(int, void*, std::size_t, int, reactor::IoOp*) override {}
  void sendmsg(int, const msghdr*, int, reactor::IoOp*) override {}
  reactor::ForeignCompletions* foreign_completions() override { return &foreign; }
  // Blocks until a foreign completion arrives, then runs it here.
  void wait_and_drain() {
    pollfd p{wake, POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 10000), 1) << "nothing came back from the other thread";
    std::uint64_t n = 0;
    ASSERT_EQ(::read(wake, &n, sizeof n), static_cast<ssize_t>(sizeof n));
    foreign.drain();
  }

  int wake;
  reactor::ForeignCompletions foreign;
};

}  // namespace ringtgt::testing
